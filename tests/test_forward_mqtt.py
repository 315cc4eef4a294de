"""Store-and-forward over MQTT with a real Mosquitto (TLS, passwords, ACL) and real ``edge-sdk run`` processes.

* a run on the demo video with an alert-prone pain config publishes its alerts and states; the broker is
  stopped in the middle of the run and restarted; a station subscriber gets every alert of the device's log,
  each id once; an ack sent by the station is recorded in the device's log and forwarded back;
* SIGKILL of a run while the broker is down, then a restart: the outbox drains, no alert is lost;
* the ACL: a bed cannot publish under another bed's topic nor read its acks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_sdk.forward import messages as m
from edge_sdk.store.db import LogDatabase
from edge_sdk.store.keys import KeySource
from edge_sdk.store.reader import read_records
from tests.conftest import REPO, shared_file
from tests.mqtt_broker import Broker, Collector, running_broker

pytest.importorskip("paho.mqtt")
VIDEO = "data/faces/WolfgangLanger_Pexels.mp4"
YUNET = "models/yunet/yunet_s_640_640.onnx"
# Alert-prone on the demo model and this video (its smoothed PSPI crosses 1.6 several times): ~5 alerts.
PAIN = (
    "threshold = 1.6\nclear_threshold = 1.3\nraise_after_s = 0.2\nclear_after_s = 0.2\n"
    'smoothing = "ema"\nwindow_s = 0.2\n'
)


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[Broker]:
    yield from running_broker(tmp_path / "broker")


def write_config(tmp_path: Path, broker: Broker, device: str = "bed-12", extra: str = "") -> Path:
    config = tmp_path / "edge-sdk.toml"
    config.write_text(
        f'model = "demo"\nsource = "{shared_file(VIDEO)}"\nlog_dir = "{tmp_path / "log"}"\nstatus_every_s = 0\n{extra}'
        f'[detector]\nmodel = "{shared_file(YUNET)}"\n'
        f"[pain]\n{PAIN}"
        f'[log]\nkey_file = "{tmp_path / "key.json"}"\n'
        f'[forward]\ndevice_id = "{device}"\nstate_every_s = 1\ndrain_s = 15\nretry_max_s = 1\n'
        f'[forward.mqtt]\nurl = "{broker.url()}"\nusername = "{device}"\n'
        f'password_file = "{broker.password_file(device)}"\nca_file = "{broker.ca_file}"\n'
    )
    return config


def start_run(config: Path, *flags: str, log_file: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log_file.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_sdk", "run", "--config", str(config), *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )


def log_events(tmp_path: Path) -> list[tuple[str, dict]]:
    """(wire id, record) of every event row in the device's log."""
    ring = KeySource(key_file=tmp_path / "key.json").load(create=False)
    db = LogDatabase.open(tmp_path / "log", ring, read_only=True)
    try:
        log_id = db.sealer.log_id.hex()
        return [(f"{log_id}:{r.seq}", r.record) for r in read_records(db, kinds=["event"])]
    finally:
        db.close()


def alert_ids(tmp_path: Path) -> set[str]:
    return {i for i, r in log_events(tmp_path) if r.get("event") in m.ALERT_EVENTS}


def received(collector: Collector, device: str = "bed-12") -> list[m.Event]:
    return [m.parse_event(p) for p in collector.payloads(f"{device}/events")]


def test_a_run_forwards_every_alert_across_a_broker_outage_and_records_the_stations_ack(
    mqtt_broker: Broker, tmp_path: Path
) -> None:
    collector = Collector(mqtt_broker)
    station = mqtt_broker.client("station", client_id="station-acks")
    acked: list[str] = []

    def ack_first_alert() -> None:  # the station acknowledges the first alert it sees
        while not acked:
            raised = [e for e in received(collector) if e.event == "alert_raised"]
            if raised:
                acked.append(raised[0].id)
                station.publish("edge-sdk/bed-12/ack", m.ack_payload(raised[0].id, "nurse-a"), qos=1).wait_for_publish(
                    5
                )
            time.sleep(0.1)

    run = start_run(write_config(tmp_path, mqtt_broker), "--max-fps", "30", log_file=tmp_path / "run.log")
    acker = threading.Thread(target=ack_first_alert, daemon=True)
    acker.start()
    try:
        assert collector.wait_for(lambda: acked, 40), (tmp_path / "run.log").read_text()[-3000:]
        mqtt_broker.stop()  # the broker goes away mid-run ...
        time.sleep(4)
        mqtt_broker.start()  # ... and comes back
        assert run.wait(60) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if run.poll() is None:
            run.kill()
    events = log_events(tmp_path)
    in_log = {i for i, r in events if r.get("event") in m.ALERT_EVENTS}
    raised = [i for i, r in events if r.get("event") == "alert_raised"]
    assert len(raised) >= 2, "the alert-prone config raised fewer than 2 alerts: the test would prove little"
    # the alerts committed while the broker was down arrived after it came back
    assert collector.wait_for(lambda: in_log <= {e.id for e in received(collector)}, 20)
    got = [e for e in received(collector) if e.event in m.ALERT_EVENTS]
    assert {e.id for e in got} == in_log  # every alert, and nothing that is not in the device's log
    by_id: dict[str, bytes] = {}
    for payload in collector.payloads("bed-12/events"):  # a repeat is only ever the same id and content
        event = m.parse_event(payload)
        assert by_id.setdefault(event.id, payload) == payload
    raised_events = [e for e in got if e.event == "alert_raised"]
    assert all(e.device_id == "bed-12" and e.state == "alert" and e.pspi is not None for e in raised_events)
    # the station's ack reached the device's log and came back as an event
    acks = [(i, r) for i, r in events if r.get("event") == "alert_acknowledged"]
    assert [(r["event_id"], r["by"]) for _, r in acks] == [(acked[0], "nurse-a")]
    assert acks[0][0] in {e.id for e in got}
    # states: retained heartbeats with the alert's id while alerting, and "stopped" at the clean end
    states = [m.parse_state(p) for p in collector.payloads("bed-12/state")]
    assert {"alert", "stopped"} <= {s.state for s in states}
    assert any(s.state == "alert" and s.alert_event_id in raised for s in states)
    assert states[-1].state == "stopped" and states[-1].health["model"]
    # never pixels, never per-frame action units, never the patient id
    everything = b"".join(p for _, p, _ in collector.messages)
    assert b'"au"' not in everything and b'"box"' not in everything and b"landmarks" not in everything
    collector.close()
    station.loop_stop()


def test_sigkill_during_an_outage_then_a_restart_drains_the_outbox(mqtt_broker: Broker, tmp_path: Path) -> None:
    collector = Collector(mqtt_broker)
    config = write_config(tmp_path, mqtt_broker)
    run = start_run(config, "--max-fps", "30", log_file=tmp_path / "run1.log")
    try:
        assert collector.wait_for(lambda: any(e.event == "run_started" for e in received(collector)), 40)
        mqtt_broker.stop()
        # wait until the log holds alerts the broker never saw, then kill the run without warning
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and len(alert_ids(tmp_path) - {e.id for e in received(collector)}) < 2:
            time.sleep(0.5)
        run.send_signal(signal.SIGKILL)
        run.wait(10)
    finally:
        if run.poll() is None:
            run.kill()
    undelivered = alert_ids(tmp_path) - {e.id for e in received(collector)}
    assert len(undelivered) >= 2, (tmp_path / "run1.log").read_text()[-3000:]
    mqtt_broker.start()
    # the next run (a short one) delivers what the killed one left in its outbox
    rerun = start_run(config, "--max-frames", "5", log_file=tmp_path / "run2.log")
    assert rerun.wait(60) == 0, (tmp_path / "run2.log").read_text()[-3000:]
    every = alert_ids(tmp_path)
    assert collector.wait_for(lambda: every <= {e.id for e in received(collector)}, 20)
    got = [e.id for e in received(collector) if e.event in m.ALERT_EVENTS]
    assert set(got) == every
    collector.close()
    # the delivery marks live beside the sealed rows: the log still verifies
    verify = subprocess.run(
        [sys.executable, "-m", "edge_sdk", "log", "verify", "--log-dir", str(tmp_path / "log")]
        + ["--key-file", str(tmp_path / "key.json")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_bed_cannot_publish_under_another_beds_topic_nor_read_its_acks(mqtt_broker: Broker) -> None:
    collector = Collector(mqtt_broker)
    intruder = mqtt_broker.client("bed-1", client_id="bed-1")
    got_acks: list[bytes] = []
    intruder.on_message = lambda c, u, msg: got_acks.append(msg.payload)
    intruder.subscribe("edge-sdk/bed-2/ack", qos=1)
    fake = m.Event("x:1", "bed-2", "alert_cleared", time.time(), "clear", 0.0, {})
    for name in ("edge-sdk/bed-2/events", "edge-sdk/bed-2/state"):
        intruder.publish(name, m.event_payload(fake), qos=1).wait_for_publish(5)
    own = m.Event("y:1", "bed-1", "run_started", time.time(), None, None, {})
    intruder.publish("edge-sdk/bed-1/events", m.event_payload(own), qos=1).wait_for_publish(5)
    station = mqtt_broker.client("station", client_id="station")
    station.publish("edge-sdk/bed-2/ack", m.ack_payload("x:1", "nurse"), qos=1).wait_for_publish(5)
    assert collector.wait_for(lambda: collector.payloads("bed-1/events"), 5)
    time.sleep(0.5)
    assert [json.loads(p)["id"] for p in collector.payloads("/events")] == ["y:1"]
    assert collector.payloads("bed-2/state") == [] and got_acks == []
    for client in (intruder, station):
        client.disconnect()
        client.loop_stop()
    collector.close()


def test_doctor_checks_each_step_to_the_broker_and_reports_the_outbox(mqtt_broker: Broker, tmp_path: Path) -> None:
    from edge_sdk.cli.doctor import Setup, check_forward
    from edge_sdk.pipeline.config import ForwardSettings, LogSettings, MqttSettings
    from edge_sdk.store import EncryptedLogSink
    from edge_sdk.store.outbox import Outbox

    def findings(**mqtt: str) -> dict[str, tuple[str, str]]:
        settings = {"url": mqtt_broker.url(), "username": "bed-12", "ca_file": str(mqtt_broker.ca_file)}
        settings["password_file"] = str(mqtt_broker.password_file("bed-12"))
        forward = ForwardSettings(device_id="bed-12", mqtt=MqttSettings(**{**settings, **mqtt}))
        setup = Setup(log_dir=str(tmp_path / "log"), key_file=str(tmp_path / "key.json"), forward=forward)
        return {f.check: (f.status, f.detail) for f in check_forward(setup)}

    # a log whose outbox holds one alert that was never delivered
    sink = EncryptedLogSink.open(tmp_path / "log", LogSettings(key_file=str(tmp_path / "key.json")))
    outbox = Outbox.open(tmp_path / "log", KeySource(key_file=tmp_path / "key.json").load(create=False))
    outbox.start("mqtt", from_seq=0)
    sink.write({"event": "alert_raised", "to": "alert", "score": 5.0}, kind="event")
    sink.close()
    outbox.close()
    good = findings()
    assert [good[f"forward mqtt {step}"][0] for step in ("dns", "tcp", "tls", "auth")] == ["ok"] * 4
    assert good["forward mqtt outbox"][0] == "warn" and good["forward mqtt outbox"][1].startswith("1 event(s)")
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    assert findings(password_file=str(wrong))["forward mqtt auth"][0] == "FAIL"
    other_ca = make_ca_folder(tmp_path / "other-ca")
    assert findings(ca_file=str(other_ca))["forward mqtt tls"][0] == "FAIL"
    mqtt_broker.stop()
    assert findings()["forward mqtt tcp"][0] == "FAIL"


def make_ca_folder(folder: Path) -> Path:
    from tests.mqtt_broker import make_ca

    folder.mkdir()
    return make_ca(folder)[0]


def test_per_frame_action_units_leave_only_with_frames_true(mqtt_broker: Broker, tmp_path: Path) -> None:
    from edge_sdk.forward.hub import ForwardHub
    from edge_sdk.pipeline.config import ForwardSettings, LogSettings, MqttSettings
    from edge_sdk.store import EncryptedLogSink

    collector = Collector(mqtt_broker, topics=("edge-sdk/+/frames", "edge-sdk/+/state"))
    sink = EncryptedLogSink.open(tmp_path / "log", LogSettings(key_file=str(tmp_path / "key.json")))
    ring = KeySource(key_file=tmp_path / "key.json").load(create=False)
    frame = {
        "frame": 7,
        "faces": [{"box": [1, 2, 3, 4], "landmarks": [[1, 2]], "au_intensity": {"AU4": 1.25, "AU43": 0.5}}],
        "state": "clear",
        "pspi": 1.75,
        "pspi_smoothed": 1.5,
    }
    for device, frames in (("bed-1", False), ("bed-2", True)):
        mqtt = MqttSettings(
            url=mqtt_broker.url(),
            username=device,
            password_file=str(mqtt_broker.password_file(device)),
            ca_file=str(mqtt_broker.ca_file),
        )
        settings = ForwardSettings(device_id=device, frames=frames, drain_s=1, mqtt=mqtt)
        hub = ForwardHub(settings, tmp_path / "log", ring, model="demo")
        hub.start()
        assert hub.forwarders[0].connected.wait(10)
        for _ in range(3):
            hub.write(frame, kind="frame")
        assert collector.wait_for(lambda d=device: collector.payloads(f"{d}/state"), 10)
        hub.close()
    assert collector.wait_for(lambda: len(collector.payloads("bed-2/frames")) == 3, 10)
    assert collector.payloads("bed-1/frames") == []
    sent = json.loads(collector.payloads("bed-2/frames")[0])
    assert sent["au"] == {"AU4": 1.25, "AU43": 0.5} and sent["pspi"] == 1.75 and sent["state"] == "clear"
    assert "box" not in sent and "landmarks" not in json.dumps(sent)
    sink.close()
    collector.close()
