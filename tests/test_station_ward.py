"""The ward station's parts without a network: the ward model (dedupe, trend window, silence, alerts and
their acknowledgement), the settings rules (loopback unless told, login + TLS beyond it), the users file
(salted scrypt) and the ``edge-sdk station`` CLI's errors (one line naming the flag, no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_sdk.errors import InputError
from edge_sdk.forward.messages import Event, State, event_payload, parse_event
from edge_sdk.station.settings import build_settings, is_loopback
from edge_sdk.station.users import load_users, set_password, verify_password
from edge_sdk.station.ward import TREND_POINTS, TREND_WINDOW_S, Ward, downsample
from tests.conftest import REPO

T0 = 1_800_000_000.0  # device wall clock of the first message


class Clock:
    def __init__(self) -> None:
        self.mono, self.wall = 100.0, T0

    def tick(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ward(clock: Clock) -> Ward:
    return Ward(monotonic=lambda: clock.mono, wall=lambda: clock.wall)


def state(device: str, value: str, when: float, pspi: float | None = 1.0, every_s: float = 5.0, alert=None) -> State:
    return State(device, when, value, pspi, None, alert, every_s, {"fps": 9.0})


def event(device: str, seq: int, kind: str, when: float, to: str | None = None, **detail) -> Event:
    return Event(f"abcd:{seq}", device, kind, when, to, 8.0, detail)


def bed(ward: Ward, device: str) -> dict:
    return next(b for b in ward.snapshot()["beds"] if b["device_id"] == device)


def test_events_are_deduplicated_by_id(ward: Ward):
    raised = event("bed-1", 7, "alert_raised", T0, "alert")
    assert ward.apply_event(raised) is True
    wire = parse_event(event_payload(Event(raised.id, "bed-1", "alert_raised", T0 + 1, "alert", 8.0, {})))
    assert ward.apply_event(wire) is False  # the same id again (redelivered), even as a new object
    assert ward.apply_event(raised) is False
    assert ward.duplicates == 2
    assert [a["event_id"] for a in bed(ward, "bed-1")["alerts"]] == ["abcd:7"]
    assert len(bed(ward, "bed-1")["recent"]) == 1
    # the same id from another bed is another event
    assert ward.apply_event(event("bed-2", 7, "alert_raised", T0, "alert")) is True


def test_trend_keeps_the_last_hour_only(ward: Ward, clock: Clock):
    for i in range(800):  # 800 heartbeats 5 s apart: 66 minutes
        ward.apply_state(state("bed-1", "clear", clock.wall, pspi=float(i % 10)))
        clock.tick(5)
    snap = bed(ward, "bed-1")
    assert len(snap["trend"]) <= TREND_POINTS
    times = [t for t, _ in snap["trend"]]
    assert min(times) >= clock.wall - TREND_WINDOW_S and max(times) <= clock.wall
    assert max(v for _, v in snap["trend"]) == 9.0  # each bucket keeps its peak
    clock.tick(TREND_WINDOW_S + 1)  # an hour later with no heartbeat: the trend is empty
    assert bed(ward, "bed-1")["trend"] == []


def test_downsample_keeps_peaks():
    points = [(float(t), 1.0) for t in range(100)] + [(50.5, 12.0)]
    out = downsample(points, 0.0, 100.0, 10)
    assert len(out) == 10 and max(v for _, v in out) == 12.0


def test_a_silent_bed_is_no_signal_after_three_heartbeat_periods(ward: Ward, clock: Clock):
    ward.apply_state(state("bed-1", "clear", clock.wall, every_s=2.0))
    clock.tick(5.9)
    assert bed(ward, "bed-1")["shown"] == "clear"
    clock.tick(0.2)  # 6.1 s > 3 x 2 s
    silent = bed(ward, "bed-1")
    assert silent["shown"] == "silent" and silent["label"] == "NO SIGNAL" and silent["severity"] >= 3
    assert "no heartbeat for 6 s" in silent["reason"]
    ward.apply_state(state("bed-1", "clear", clock.wall, every_s=2.0))
    assert bed(ward, "bed-1")["shown"] == "clear"


def test_the_last_will_turns_the_bed_no_signal_at_once(ward: Ward, clock: Clock):
    ward.apply_state(state("bed-1", "watch", clock.wall, every_s=60))
    ward.apply_state(State("bed-1", clock.wall, "offline", every_s=60))
    snap = bed(ward, "bed-1")
    assert snap["shown"] == "offline" and snap["label"] == "NO SIGNAL" and "offline" in snap["reason"]
    assert snap["pspi"] == 1.0  # what it said last is kept for the nurse, the state says it is stale
    ward.apply_state(state("bed-1", "clear", clock.wall + 1, every_s=60))
    assert bed(ward, "bed-1")["shown"] == "clear"


def test_alert_lifecycle_with_acknowledgement(ward: Ward, clock: Clock):
    raised = event("bed-1", 1, "alert_raised", T0, "alert")
    ward.apply_event(raised)
    ward.apply_state(state("bed-1", "alert", T0 + 0.1, pspi=8.0, alert=raised.id))
    assert ward.has_alert("bed-1", raised.id) and not ward.has_alert("bed-1", "abcd:99")
    first = bed(ward, "bed-1")
    assert first["severity"] == 4  # alarm + not acknowledged sorts first
    ward.apply_event(event("bed-1", 10, "alert_interrupted", T0 + 0.5, "unknown"))
    assert bed(ward, "bed-1")["alerts"][0]["interrupted"] is True
    ward.apply_event(event("bed-1", 11, "alert_resumed", T0 + 0.7, "alert"))
    assert bed(ward, "bed-1")["alerts"][0]["interrupted"] is False
    assert ward.ack_sent("bed-1", raised.id, "alice")
    assert bed(ward, "bed-1")["alerts"][0]["ack_sent_by"] == "alice"
    ward.apply_event(event("bed-1", 2, "alert_acknowledged", T0 + 2, None, ack_id="u", event_id=raised.id, by="alice"))
    alert = bed(ward, "bed-1")["alerts"][0]
    assert alert["acknowledged_by"] == "alice" and alert["acknowledged_time"] == T0 + 2
    assert bed(ward, "bed-1")["severity"] == 3
    ward.apply_event(event("bed-1", 3, "alert_cleared", T0 + 10, "clear"))
    assert bed(ward, "bed-1")["alerts"] == []


def test_a_station_started_late_learns_the_alert_from_the_retained_state(ward: Ward):
    ward.apply_state(state("bed-1", "alert", T0, alert="abcd:5"))
    assert [a["event_id"] for a in bed(ward, "bed-1")["alerts"]] == ["abcd:5"]
    ward.apply_state(state("bed-1", "clear", T0 + 5))  # the state no longer names it: it is over
    assert bed(ward, "bed-1")["alerts"] == []


def test_ack_before_alert_and_state_overtaking_the_event(ward: Ward):
    # the acknowledged event overtakes the alert_raised (two topics, no order between them)
    ward.apply_event(event("bed-1", 2, "alert_acknowledged", T0 + 2, None, event_id="abcd:1", by="bob"))
    ward.apply_state(state("bed-1", "watch", T0 - 1))  # an older state without the alert ...
    ward.apply_event(event("bed-1", 1, "alert_raised", T0, "alert"))
    ward.apply_state(state("bed-1", "watch", T0 - 0.5))  # ... does not drop an alert raised after it
    alerts = bed(ward, "bed-1")["alerts"]
    assert [(a["event_id"], a["acknowledged_by"]) for a in alerts] == [("abcd:1", "bob")]


def test_an_old_alert_redelivered_after_an_outage_is_history(ward: Ward):
    ward.apply_state(state("bed-1", "clear", T0 + 100))
    assert ward.apply_event(event("bed-1", 1, "alert_raised", T0, "alert")) is True
    snap = bed(ward, "bed-1")
    assert snap["alerts"] == [] and snap["state"] == "clear" and snap["recent"][0]["event"] == "alert_raised"


def test_unknown_fault_and_camera_states_read_as_text(ward: Ward, clock: Clock):
    ward.apply_state(State("bed-3", clock.wall, "fault", None, "model file unreadable", None, 5.0, {}))
    ward.apply_state(state("bed-4", "no_signal", clock.wall))
    snap = {b["device_id"]: b for b in ward.snapshot()["beds"]}
    assert snap["bed-3"]["label"] == "FAULT" and snap["bed-3"]["reason"] == "model file unreadable"
    assert snap["bed-4"]["label"] == "NO SIGNAL (camera)"


def test_settings_rules(tmp_path: Path):
    users, cert = tmp_path / "users", tmp_path / "cert.pem"
    set_password(users, "alice", "long enough pw")
    cert.write_text("x")
    assert build_settings(mqtt="mqtts://broker").broker.port == 8883
    assert build_settings(mqtt="mqtt://b:1884", insecure=True).broker.tls is False
    web = build_settings(mqtt="mqtts://b", listen="0.0.0.0:8443", users_file=users, tls_cert=cert, tls_key=cert).web
    assert web.login_required and not web.loopback
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("ward.lan")
    bad = [
        ({"mqtt": "mqtt://b"}, "--mqtt"),
        ({"mqtt": "http://b"}, "--mqtt"),
        ({"mqtt": "mqtts://u:p@b"}, "--mqtt"),
        ({"mqtt": "mqtts://b", "listen": "8080"}, "--listen"),
        ({"mqtt": "mqtts://b", "listen": "0.0.0.0:8080"}, "--users-file"),
        ({"mqtt": "mqtts://b", "listen": "ward.lan:8080", "users_file": users}, "--tls-cert"),
        ({"mqtt": "mqtts://b", "tls_cert": cert}, "--tls-key"),
        ({"mqtt": "mqtts://b", "password_file": users}, "--username"),
        ({"mqtt": "mqtts://b", "ca_file": tmp_path / "nope"}, "--ca-file"),
        ({"mqtt": "mqtts://b", "topic": "edge-sdk/+"}, "--topic"),
    ]
    for kwargs, flag in bad:
        with pytest.raises(InputError, match=flag.replace("-", r"\-")):
            build_settings(**kwargs)


def test_users_file_salted_scrypt(tmp_path: Path):
    path = tmp_path / "users"
    assert set_password(path, "alice", "first password") is True
    assert set_password(path, "bob", "second password") is True
    first = load_users(path)["alice"]
    assert set_password(path, "alice", "first password") is False  # changed, not added
    users = load_users(path)
    assert users["alice"] != first  # a fresh salt every time
    assert verify_password("first password", users["alice"]) and not verify_password("first passwore", users["alice"])
    assert not verify_password("x", "garbage") and (path.stat().st_mode & 0o777) == 0o600
    with pytest.raises(InputError, match="at least 8"):
        set_password(path, "carol", "short")
    path.write_text("alice:plaintext\n")
    with pytest.raises(InputError, match="line 1"):
        load_users(path)


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_sdk", "station", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=REPO,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        ((), "--mqtt"),
        (("--mqtt", "mqtt://127.0.0.1:1"), "--mqtt"),
        (("--mqtt", "mqtts://127.0.0.1", "--listen", "10.1.2.3:8080"), "--listen"),
        (("--mqtt", "mqtts://127.0.0.1", "--password-file", "/nonexistent", "--username", "s"), "--password-file"),
        (("passwd", "--users-file", "/nonexistent/dir/users", "alice"), "--users-file"),
    ],
)
def test_cli_errors_are_one_line_naming_the_flag(args, flag):
    done = _cli(*args, stdin="a long password\n")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}"), done.stderr


def test_an_alert_state_that_names_no_alert_yet_drops_nothing(ward: Ward):
    # the device names the alert in its state only once the alert_raised event was delivered
    ward.apply_event(event("bed-1", 1, "alert_raised", T0, "alert"))
    ward.apply_state(state("bed-1", "alert", T0 + 0.1))
    ward.apply_state(state("bed-2", "alert", T0 + 0.1))  # the other order: the state first, then the older event
    ward.apply_event(event("bed-2", 1, "alert_raised", T0, "alert"))
    for device in ("bed-1", "bed-2"):
        assert [a["event_id"] for a in bed(ward, device)["alerts"]] == ["abcd:1"], device
        assert bed(ward, device)["alerts"][0]["raised_time"] == T0


def test_a_port_in_use_is_one_error_naming_listen():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _cli("--mqtt", "mqtt://127.0.0.1:1", "--insecure", "--listen", f"127.0.0.1:{port}")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: --listen 127.0.0.1:{port}: could not serve"), errors
