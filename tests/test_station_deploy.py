"""The ward station's deploy recipe (deploy/station) for real: its scripts make a CA, a server certificate
and broker users; Mosquitto starts from its config and ACL (paths and port moved to a temporary folder);
a bed cannot publish under another bed's topic nor read another bed's acks; anonymous and wrong-password
clients are refused. The systemd unit verifies and is hardened. The test broker (tests/mqtt_broker.py)
uses the same ACL rules as the recipe.

Needs mosquitto, openssl and systemd-analyze (a missing tool fails with the package to install).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.mqtt_broker import ACL, free_port

STATION = REPO / "deploy" / "station"


def _tool(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install -y {package}")
    return path


def _rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_test_broker_uses_the_recipe_acl():
    assert _rules((STATION / "mosquitto" / "edge-sdk.acl").read_text()) == _rules(ACL)


def test_station_unit_verifies_and_is_hardened(tmp_path: Path):
    analyze = _tool("systemd-analyze", "systemd")
    unit = STATION / "edge-sdk-station.service"
    stub = tmp_path / "stub"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/edge-sdk/venv/bin/edge-sdk", str(stub)))
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr
    lines = set(unit.read_text().splitlines())
    for setting in (
        "User=edge-sdk-station",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ):
        assert setting in lines, f"{unit}: missing {setting}"
    text = unit.read_text()
    assert "--listen 127.0.0.1:" in text and "mqtts://" in text and "--password-file" in text


class Client:
    def __init__(self, port: int, ca: Path, user: str | None, password: str | None, subscribe: str | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes]] = []
        self.refused: str | None = None
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{os.getpid()}-{id(self)}")
        if user:
            self.client.username_pw_set(user, password)
        self.client.tls_set_context(ssl.create_default_context(cafile=str(ca)))

        def on_connect(client, userdata, flags, reason, properties=None):
            if reason.is_failure:
                self.refused = str(reason)
                self.ready.set()
            elif subscribe:
                client.subscribe(subscribe, qos=1)
            else:
                self.ready.set()

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.connect("localhost", port, keepalive=10)  # the certificate names localhost
        self.client.loop_start()
        assert self.ready.wait(10), f"{user}: no answer from the broker"

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_recipe_broker_tls_passwords_and_acl(tmp_path: Path):
    mosquitto = _tool("mosquitto", "mosquitto")
    _tool("mosquitto_passwd", "mosquitto")
    _tool("openssl", "openssl")
    etc = tmp_path / "etc"
    subprocess.run([STATION / "make-certs.sh", etc, "ward.local"], check=True, capture_output=True, timeout=60)
    assert {p.name for p in etc.iterdir()} >= {"ca.pem", "ca.key", "server.pem", "server.key"}
    assert (etc / "server.key").stat().st_mode & 0o077 == 0
    passwords = {}
    for user in ("station", "bed-1", "bed-2"):
        out = tmp_path / f"{user}.password"
        done = subprocess.run(
            [STATION / "add-user.sh", etc / "passwd", user, out], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert out.stat().st_mode & 0o777 == 0o600
        passwords[user] = out.read_text().strip()
    first = passwords["bed-1"]
    subprocess.run([STATION / "add-user.sh", etc / "passwd", "bed-1", tmp_path / "bed-1.password"], check=True)
    passwords["bed-1"] = (tmp_path / "bed-1.password").read_text().strip()
    entries = (etc / "passwd").read_text().splitlines()
    assert sorted(line.split(":")[0] for line in entries) == ["bed-1", "bed-2", "station"]  # replaced, not added
    assert first != passwords["bed-1"] and all(p not in (etc / "passwd").read_text() for p in passwords.values())
    bad = subprocess.run([STATION / "add-user.sh", etc / "passwd", "bed/+"], capture_output=True, text=True)
    assert bad.returncode == 2 and "error: NAME" in bad.stderr

    shutil.copy(STATION / "mosquitto" / "edge-sdk.acl", etc / "edge-sdk.acl")
    port = free_port()
    config = (STATION / "mosquitto" / "edge-sdk.conf").read_text()
    config = config.replace("/etc/mosquitto/edge-sdk", str(etc)).replace("listener 8883", f"listener {port} 127.0.0.1")
    assert str(etc) in config and "listener 8883" not in config
    if os.geteuid() == 0:
        config += "user root\n"  # mosquitto would drop to the `mosquitto` user, who cannot read the tmp folder
    (tmp_path / "mosquitto.conf").write_text(config + "log_dest stderr\n")
    log = (tmp_path / "mosquitto.log").open("wb")
    broker = subprocess.Popen([mosquitto, "-c", tmp_path / "mosquitto.conf"], stdout=log, stderr=subprocess.STDOUT)
    clients: list[Client] = []
    try:
        for _ in range(100):
            assert broker.poll() is None, (tmp_path / "mosquitto.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        ca = etc / "ca.pem"
        station = Client(port, ca, "station", passwords["station"], "edge-sdk/+/state")
        bed1 = Client(port, ca, "bed-1", passwords["bed-1"], "edge-sdk/bed-1/ack")
        spy = Client(port, ca, "bed-2", passwords["bed-2"], "edge-sdk/bed-1/ack")  # another bed's acks
        clients += [station, bed1, spy]
        assert not (station.refused or bed1.refused or spy.refused)
        anonymous = Client(port, ca, None, None)
        wrong = Client(port, ca, "bed-1", "not the password")
        clients += [anonymous, wrong]
        assert anonymous.refused and wrong.refused

        bed1.publish("edge-sdk/bed-2/state", b"spoofed")  # under another bed's topic: dropped by the ACL
        bed1.publish("edge-sdk/bed-1/state", b"own")
        station.publish("edge-sdk/bed-1/ack", b"ack")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (station.messages and bed1.messages):
            time.sleep(0.05)
        time.sleep(0.3)  # anything the ACL wrongly let through would have arrived by now
        assert station.messages == [("edge-sdk/bed-1/state", b"own")]
        assert bed1.messages == [("edge-sdk/bed-1/ack", b"ack")]
        assert spy.messages == []
    finally:
        for client in clients:
            client.close()
        broker.terminate()
        broker.wait(10)
