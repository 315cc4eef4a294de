"""The ward page end to end: a real Mosquitto (TLS, passwords, the ward ACL), a real ``edge-sdk station``
process, real beds on the broker and Debian's real headless chromium driven by Selenium.

Two beds appear; an alert shows within 2 s of its publication; Acknowledge publishes an ack that the bed
receives over the broker (the bed's client is logged in as ``bed-1``, so the ACL lets it read only its own
acks); the bed's ``alert_acknowledged`` event comes back and the page names who acknowledged; a bed that
stops its heartbeat turns "no signal"; a bed process killed with SIGKILL turns "no signal" by its last will.
Also: the page needs a login when it listens beyond loopback, and refuses to start without one.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_sdk.forward.messages import Ack, Event, State, event_payload, parse_ack, state_payload
from tests.conftest import REPO, shared_file
from tests.mqtt_broker import Broker, free_port, make_ca

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
LOG_ID = "5f1e"  # stands in for a device's log id in event ids
VIDEO = "data/faces/WolfgangLanger_Pexels.mp4"
YUNET = "models/yunet/yunet_s_640_640.onnx"


def _station(broker: Broker, port: int, folder: Path, *extra: str, listen: str | None = None) -> subprocess.Popen:
    log = (folder / f"station-{port}.log").open("wb")
    args = [
        sys.executable,
        "-m",
        "edge_sdk",
        "station",
        "--mqtt",
        broker.url("mqtts"),
        "--ca-file",
        str(broker.ca_file),
        "--username",
        "station",
        "--password-file",
        str(broker.password_file("station")),
        "--listen",
        listen or f"127.0.0.1:{port}",
        *extra,
    ]
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def _wait_http(port: int, proc: subprocess.Popen, log: Path, context: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"station exited {proc.returncode}: {log.read_text()[-3000:]}"
        try:
            conn = (
                http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=2)
                if context
                else http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            )
            conn.request("GET", "/login")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"station did not serve within 20 s: {log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Bed:
    """A simulated bed on the broker, logged in as its own user: publishes state and events, collects acks."""

    def __init__(self, broker: Broker, device_id: str) -> None:
        self.device_id = device_id
        self.acks: list[Ack] = []
        self.got_ack = threading.Event()
        self.seq = 0
        self.client = broker.client(device_id, client_id=f"test-{device_id}", connect=False)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"edge-sdk/{device_id}/ack", qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_ack
        self.client.connect("127.0.0.1", broker.port, keepalive=30)
        self.client.loop_start()
        assert subscribed.wait(10), f"{device_id} could not subscribe to its acks"

    def _on_ack(self, client, userdata, message) -> None:
        self.acks.append(parse_ack(message.payload))
        self.got_ack.set()

    def state(self, state: str, pspi: float | None, every_s: float, alert: str | None = None) -> None:
        payload = State(self.device_id, time.time(), state, pspi, None, alert, every_s, {"fps": 10.0, "model": "demo"})
        self.client.publish(
            f"edge-sdk/{self.device_id}/state", state_payload(payload), qos=1, retain=True
        ).wait_for_publish(5)

    def event(self, kind: str, state: str | None, pspi: float | None = None, **detail) -> str:
        self.seq += 1
        event = Event(f"{LOG_ID}:{self.seq}", self.device_id, kind, time.time(), state, pspi, detail)
        self.client.publish(f"edge-sdk/{self.device_id}/events", event_payload(event), qos=1).wait_for_publish(5)
        return event.id

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def ward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, int, Path]]:
    """The broker and a station on 127.0.0.1 (no login: loopback)."""
    folder = tmp_path_factory.mktemp("ward")
    broker = Broker(folder / "broker")
    broker.start()
    port = free_port()
    proc = _station(broker, port, folder)
    try:
        _wait_http(port, proc, folder / f"station-{port}.log")
        yield broker, port, folder
    finally:
        _stop(proc)
        broker.stop()
    assert proc.returncode == 0, (folder / f"station-{port}.log").read_text()[-3000:]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _card(driver, device_id: str):
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, f'section.bed[data-bed="{device_id}"]')
    return found[0] if found else None


def _wait(predicate, timeout: float, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # an element re-rendered between find and read (StaleElementReference): try again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(poll)


def _text(driver, device_id: str) -> str:
    card = _card(driver, device_id)
    return card.text if card is not None else ""


def test_ward_page_beds_alert_acknowledge_and_silence(ward, browser, tmp_path):
    from selenium.webdriver.common.by import By

    broker, port, folder = ward
    bed1, bed2 = Bed(broker, "bed-1"), Bed(broker, "bed-2")
    try:
        bed1.state("clear", 1.5, every_s=30)
        bed2.state("watch", 4.25, every_s=30)
        browser.get(f"http://127.0.0.1:{port}/")
        # two beds appear, each state in words (not colour alone)
        assert _wait(lambda: "Clear" in _text(browser, "bed-1") and "Watch" in _text(browser, "bed-2"), 10), (
            browser.page_source[-3000:]
        )
        assert "PSPI (smoothed) 4.3" in _text(browser, "bed-2") or "4.2" in _text(browser, "bed-2")
        assert _card(browser, "bed-1").find_elements(By.CSS_SELECTOR, "svg.trend polyline")

        # an alert shows within 2 s of its publication
        t0 = time.monotonic()
        raised = bed1.event("alert_raised", "alert", 9.5, score=9.5)
        bed1.state("alert", 9.5, every_s=30, alert=raised)
        assert _wait(lambda: _card(browser, "bed-1").find_element(By.CSS_SELECTOR, "button.ack").is_displayed(), 5)
        shown_after = time.monotonic() - t0
        assert shown_after < 2.0, f"the alert took {shown_after:.2f} s to show"
        assert "ALERT" in _text(browser, "bed-1")
        assert _card(browser, "bed-1").get_attribute("data-state") == "alert"
        # the same event again (at-least-once delivery) does not make a second alert
        bed1.client.publish(
            "edge-sdk/bed-1/events",
            event_payload(Event(raised, "bed-1", "alert_raised", time.time(), "alert", 9.5, {})),
            qos=1,
        ).wait_for_publish(5)
        time.sleep(0.5)
        assert len(_card(browser, "bed-1").find_elements(By.CSS_SELECTOR, ".alerts li")) == 1
        browser.save_screenshot(str(tmp_path / "alert.png"))

        # a heartbeat (new PSPI) updates the card but keeps the same button: a click is never lost to a re-render
        button = _card(browser, "bed-1").find_element(By.CSS_SELECTOR, "button.ack")
        bed1.state("alert", 11.0, every_s=30, alert=raised)
        assert _wait(lambda: "PSPI (smoothed) 11.0" in _text(browser, "bed-1"), 5)
        # Acknowledge -> the station publishes {base}/ack -> the bed (its own ACL'd user) receives it
        button.click()  # the element found before the update (StaleElementReferenceException if it was replaced)
        assert bed1.got_ack.wait(5), "the bed received no acknowledgement"
        ack = bed1.acks[0]
        assert ack.event_id == raised and "no login" in ack.by
        assert not bed2.acks
        assert _wait(lambda: "waiting for the bed" in _text(browser, "bed-1"), 5)
        # the device records it and forwards its alert_acknowledged event: the page says who acknowledged
        bed1.event("alert_acknowledged", None, ack_id=ack.id, event_id=ack.event_id, by=ack.by)
        assert _wait(lambda: f"acknowledged by {ack.by}" in _text(browser, "bed-1"), 5), _text(browser, "bed-1")
        assert not _card(browser, "bed-1").find_elements(By.CSS_SELECTOR, "button.ack")

        # a bed that stops its heartbeat turns "no signal" after 3 x every_s
        bed2.state("watch", 4.0, every_s=0.4)
        t0 = time.monotonic()
        assert _wait(lambda: _card(browser, "bed-2").get_attribute("data-state") == "silent", 6)
        silent_after = time.monotonic() - t0
        assert 1.0 < silent_after < 4.0, silent_after
        assert "NO SIGNAL" in _text(browser, "bed-2") and "no heartbeat for" in _text(browser, "bed-2")
        # ... and back when it speaks again
        bed2.state("clear", 1.0, every_s=30)
        assert _wait(lambda: _card(browser, "bed-2").get_attribute("data-state") == "clear", 5)

        # the alert clears
        bed1.event("alert_cleared", "clear", 2.0)
        bed1.state("clear", 2.0, every_s=30)
        assert _wait(lambda: not _card(browser, "bed-1").find_elements(By.CSS_SELECTOR, ".alerts li"), 5)

        # a decommissioned bed: its retained state cleared on the broker takes it off the page
        bed2.client.publish("edge-sdk/bed-2/state", b"", qos=1, retain=True).wait_for_publish(5)
        assert _wait(lambda: _card(browser, "bed-2") is None, 5)
        assert _card(browser, "bed-1") is not None
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe  # no script error, no failed request (CSP, favicon, ...)
    finally:
        bed1.close()
        bed2.close()


# Alert-prone on the demo model and this video; the first alert stays open (clear_after_s) until the run is stopped.
PAIN = (
    "threshold = 1.6\nclear_threshold = 1.3\nraise_after_s = 0.2\nclear_after_s = 600\n"
    'smoothing = "ema"\nwindow_s = 0.2\n'
)


def _run_config(folder: Path, broker: Broker, device: str) -> Path:
    config = folder / "edge-sdk.toml"
    config.write_text(
        f'model = "demo"\nsource = "{shared_file(VIDEO)}"\nlog_dir = "{folder / "log"}"\nstatus_every_s = 0\n'
        f'[detector]\nmodel = "{shared_file(YUNET)}"\n'
        f"[pain]\n{PAIN}"
        f'[log]\nkey_file = "{folder / "key.json"}"\n'
        f'[forward]\ndevice_id = "{device}"\nstate_every_s = 1\ndrain_s = 5\nretry_max_s = 1\n'
        f'[forward.mqtt]\nurl = "{broker.url()}"\nusername = "{device}"\n'
        f'password_file = "{broker.password_file(device)}"\nca_file = "{broker.ca_file}"\n'
    )
    return config


def _device_log_events(folder: Path) -> list[dict]:
    from edge_sdk.store.db import LogDatabase
    from edge_sdk.store.keys import KeySource
    from edge_sdk.store.reader import read_records

    ring = KeySource(key_file=folder / "key.json").load(create=False)
    db = LogDatabase.open(folder / "log", ring, read_only=True)
    try:
        return [r.record for r in read_records(db, kinds=["event"])]
    finally:
        db.close()


def test_acknowledge_on_the_page_is_recorded_in_the_devices_log(ward, browser, tmp_path):
    """The real device path: ``edge-sdk run`` forwards its alert, the page shows it, Acknowledge reaches the run,
    which records it in its encrypted log and forwards the ``alert_acknowledged`` event back to the page."""
    from selenium.webdriver.common.by import By

    broker, port, _ = ward
    config = _run_config(tmp_path, broker, "bed-12")
    out = tmp_path / "run.log"
    with out.open("wb") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "edge_sdk", "run", "--config", str(config), "--max-fps", "20"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        button = _wait(lambda: _card(browser, "bed-12").find_element(By.CSS_SELECTOR, "button.ack"), 40, poll=0.1)
        assert button, f"no alert from the run on the page: {out.read_text()[-3000:]}"
        raised = _card(browser, "bed-12").find_element(By.CSS_SELECTOR, ".alerts li").get_attribute("data-event-id")
        button.click()
        # "acknowledged by" shows only once the device's own alert_acknowledged event came back from its log
        assert _wait(lambda: "acknowledged by station@" in _text(browser, "bed-12"), 15), (
            _text(browser, "bed-12") + out.read_text()[-3000:]
        )
    finally:
        run.send_signal(signal.SIGTERM)
        try:
            run.wait(30)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
    acks = [r for r in _device_log_events(tmp_path) if r.get("event") == "alert_acknowledged"]
    assert len(acks) == 1, (acks, out.read_text()[-3000:])
    assert acks[0]["event_id"] == raised and acks[0]["by"].startswith("station@") and acks[0]["ack_id"]


KILLED_BED = """
import sys, time
import paho.mqtt.client as mqtt
from edge_sdk.forward.messages import State, offline_payload, state_payload
port, password, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="killed-bed-2")
c.username_pw_set("bed-2", password)
c.tls_set(ca_certs=ca)
c.will_set("edge-sdk/bed-2/state", offline_payload("bed-2", 30), qos=1, retain=True)
c.connect("127.0.0.1", port, keepalive=30)
c.loop_start()
c.publish("edge-sdk/bed-2/state", state_payload(State("bed-2", time.time(), "watch", 3.5, every_s=30)), qos=1,
          retain=True).wait_for_publish(5)
print("up", flush=True)
time.sleep(60)
"""


def test_bed_killed_turns_no_signal_by_its_last_will(ward, browser):
    broker, port, _ = ward
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_BED, str(broker.port), broker.passwords["bed-2"], str(broker.ca_file)],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert proc.stdout.readline().strip() == b"up"
        browser.get(f"http://127.0.0.1:{port}/")
        assert _wait(lambda: _card(browser, "bed-2").get_attribute("data-state") == "watch", 10)
        os.kill(proc.pid, signal.SIGKILL)
        t0 = time.monotonic()
        # every_s is 30: only the last will (not the silence timer) can turn it "no signal" this soon
        assert _wait(lambda: _card(browser, "bed-2").get_attribute("data-state") == "offline", 5)
        assert time.monotonic() - t0 < 5
        assert "NO SIGNAL" in _text(browser, "bed-2") and "offline" in _text(browser, "bed-2")
    finally:
        proc.kill()
        proc.wait()


def test_beyond_loopback_a_login_is_required(ward, tmp_path):
    broker, _, folder = ward
    port = free_port()
    # no users file: refuses to start, one error line naming the flag
    done = subprocess.run(
        [sys.executable, "-m", "edge_sdk", "station", "--mqtt", broker.url(), "--listen", f"0.0.0.0:{port}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().startswith("error: --listen 0.0.0.0:") and "--users-file" in done.stderr

    users = tmp_path / "users"
    made = subprocess.run(
        [sys.executable, "-m", "edge_sdk", "station", "passwd", "--users-file", str(users), "alice"],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert users.read_text().startswith("alice:scrypt:") and "correct horse" not in users.read_text()
    assert (users.stat().st_mode & 0o777) == 0o600
    ca, cert, key = make_ca(tmp_path)
    proc = _station(
        broker,
        port,
        folder,
        "--users-file",
        str(users),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        listen=f"0.0.0.0:{port}",
    )
    context = ssl.create_default_context(cafile=str(ca))
    try:
        _wait_http(port, proc, folder / f"station-{port}.log", context)

        def request(method: str, path: str, body: bytes | None = None, headers: dict | None = None):
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response, response.read()

        response, _ = request("GET", "/")
        assert response.status == 303 and response.getheader("location") == "login"
        assert request("GET", "/api/ward")[0].status == 401
        assert request("GET", "/api/stream")[0].status == 401
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        wrong = urllib.parse.urlencode({"user": "alice", "password": "wrong password"}).encode()
        assert request("POST", "/login", wrong, form)[0].status == 401
        right = urllib.parse.urlencode({"user": "alice", "password": "correct horse battery"}).encode()
        response, _ = request("POST", "/login", right, form)
        assert response.status == 303, response.status
        cookie = response.getheader("set-cookie")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie, cookie
        session = {"Cookie": cookie.split(";")[0]}
        response, body = request("GET", "/api/ward", headers=session)
        assert response.status == 200 and "beds" in json.loads(body)
        response, body = request("GET", "/", headers=session)
        assert response.status == 200 and b"alice" in body
        assert "script-src 'nonce-" in response.getheader("content-security-policy")
        # a cross-site form post cannot acknowledge (it cannot send application/json)
        ack = json.dumps({"device_id": "bed-1", "event_id": "x:1"}).encode()
        assert request("POST", "/api/ack", ack, {**session, **form})[0].status == 415
        assert request("POST", "/api/ack", ack, {"Content-Type": "application/json"})[0].status == 401
        # guessing is throttled per address: after MAX_FAILED_LOGINS failures even the right password gets 429
        from edge_sdk.station.web import MAX_FAILED_LOGINS

        for _ in range(MAX_FAILED_LOGINS):
            assert request("POST", "/login", wrong, form)[0].status == 401
        response, body = request("POST", "/login", right, form)
        assert response.status == 429 and b"Too many failed logins" in body, response.status
    finally:
        _stop(proc)
    assert proc.returncode == 0, (folder / f"station-{port}.log").read_text()[-3000:]


def test_the_station_names_what_is_wrong_with_the_broker(ward, tmp_path):
    """paho retries silently; the station says why (shown on the page): an untrusted certificate, a refused login."""
    from edge_sdk.station.settings import build_settings
    from edge_sdk.station.subscriber import StationClient
    from edge_sdk.station.ward import Ward

    broker, _, _ = ward
    other_ca, _, _ = make_ca(tmp_path)
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not the password\n")
    cases = [
        (other_ca, broker.password_file("station"), "certificate is not trusted"),
        (broker.ca_file, wrong, "refused the connection: Not authorized"),
    ]
    for ca, password, expected in cases:
        settings = build_settings(mqtt=broker.url(), ca_file=ca, username="station", password_file=password)
        client = StationClient(settings.broker, Ward())
        client.start()
        try:
            assert _wait(lambda c=client, e=expected: e in (c.status()["error"] or ""), 5), client.status()
            assert not client.status()["connected"]
        finally:
            client.stop()


def test_a_broker_outage_shows_on_the_page_and_the_ward_comes_back(ward, browser):
    from selenium.webdriver.common.by import By

    broker, port, _ = ward
    browser.get(f"http://127.0.0.1:{port}/")

    def pill() -> str:
        return browser.find_element(By.ID, "broker").text

    assert _wait(lambda: pill().startswith("broker connected"), 5), pill()
    broker.stop()
    try:
        assert _wait(lambda: pill().startswith("BROKER NOT CONNECTED"), 3), pill()
    finally:
        broker.start()
    assert _wait(lambda: pill().startswith("broker connected"), 10), pill()
    # the retained states come back with the subscription: the beds are still there, with fresh heartbeats
    assert _card(browser, "bed-1") is not None and _card(browser, "bed-2") is not None
