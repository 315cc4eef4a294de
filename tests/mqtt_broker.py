"""A real Mosquitto broker on 127.0.0.1 for tests: TLS with a test CA, a password file and the ward ACL.

Usage (a test module)::

    from tests.mqtt_broker import mqtt_broker  # noqa: F401  (the fixture)

    def test_x(mqtt_broker):
        url = mqtt_broker.url("bed-12")            # mqtts://127.0.0.1:PORT
        client = mqtt_broker.client("station")     # a connected paho client (TLS, password)

Users ``station``, ``bed-1``, ``bed-2``, ``bed-12`` (``broker.passwords[user]``, also in
``broker.password_file(user)``). ACL (the deploy recipe's, :data:`ACL`): a bed writes only
``edge-sdk/<its user>/{events,state,frames}`` and reads ``edge-sdk/<its user>/ack``; the station reads
``edge-sdk/+/events``, ``edge-sdk/+/state`` (and ``edge-sdk/+/frames``, sent only by devices with
``frames = true``) and writes ``edge-sdk/+/ack``. ``plain_port`` is a password-checked plain listener
(``mqtt://``) for quick tests. ``stop()``/``start()`` simulate an outage (same ports, persistence on, so
retained states and queued QoS 1 messages survive like a real broker).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

USERS = ("station", "bed-1", "bed-2", "bed-12")
ACL = """\
# the ward station reads every bed and acknowledges alerts
user station
topic read edge-sdk/+/events
topic read edge-sdk/+/state
topic read edge-sdk/+/frames
topic write edge-sdk/+/ack

# every bed (its MQTT user name is its device_id) writes only under its own topic and reads its acks
pattern write edge-sdk/%u/events
pattern write edge-sdk/%u/state
pattern write edge-sdk/%u/frames
pattern read edge-sdk/%u/ack
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_ca(folder: Path, hostnames: tuple[str, ...] = ("localhost",)) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 (+ ``hostnames``): (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-sdk test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(h) for h in hostnames] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_path.write_bytes(ca.public_bytes(pem))
    cert_path.write_bytes(cert.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_path, cert_path, key_path


class Broker:
    """One mosquitto process (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            pytest.fail("mosquitto is not installed (Debian package `mosquitto`; .ci/run installs it)")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_file, cert, key = make_ca(folder)
        self.passwords = {user: secrets.token_urlsafe(12) for user in USERS}
        pw_file = folder / "passwd"
        pw_file.touch(mode=0o600)
        for user, password in self.passwords.items():
            subprocess.run(["mosquitto_passwd", "-b", str(pw_file), user, password], check=True, capture_output=True)
            self.password_file(user).write_text(password + "\n")
        (folder / "acl").write_text(ACL)
        (folder / "data").mkdir(exist_ok=True)
        self.port, self.plain_port = free_port(), free_port()
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            f"password_file {pw_file}\n"
            f"acl_file {folder / 'acl'}\n"
            "persistence true\n"
            f"persistence_location {folder / 'data'}/\n"
            "autosave_interval 1\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"listener {self.port} 127.0.0.1\n"
            f"cafile {self.ca_file}\ncertfile {cert}\nkeyfile {key}\n"
            "require_certificate false\n"
            f"listener {self.plain_port} 127.0.0.1\n"
        )
        if os.geteuid() == 0:  # mosquitto drops root for the `mosquitto` user, which cannot read tmp files
            with self.config.open("a") as f:
                f.write("user root\n")
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def password_file(self, user: str) -> Path:
        return self.folder / f"{user}.password"

    def url(self, scheme: str = "mqtts") -> str:
        port = self.port if scheme == "mqtts" else self.plain_port
        return f"{scheme}://127.0.0.1:{port}"

    def start(self, timeout: float = 10.0) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([exe, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.plain_port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"mosquitto did not listen within {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Stop the broker (SIGTERM: it saves its persistence file, like a service restart)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(
        self, user: str, *, client_id: str = "", protocol: str = "3.1.1", tls: bool = True, connect: bool = True
    ):
        """A paho client logged in as ``user`` (its network loop started), connected unless ``connect`` is False."""
        import paho.mqtt.client as mqtt

        version = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version)
        client.username_pw_set(user, self.passwords[user])
        if tls:
            client.tls_set_context(self.tls_context())
        if connect:
            connected = threading.Event()
            client.on_connect = lambda c, u, f, rc, p=None: connected.set() if not rc.is_failure else None
            client.connect("127.0.0.1", self.port if tls else self.plain_port, keepalive=30)
            client.loop_start()
            if not connected.wait(10):
                client.loop_stop()
                pytest.fail(f"MQTT user {user} could not connect to the test broker")
        return client


class Collector:
    """A station-side subscriber that keeps every message it gets: ``messages[topic] -> [payload, ...]``."""

    def __init__(self, broker: Broker, topics: tuple[str, ...] = ("edge-sdk/+/events", "edge-sdk/+/state")) -> None:
        import paho.mqtt.client as mqtt

        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes, bool]] = []
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"collector-{secrets.token_hex(4)}", clean_session=False
        )
        self.client.username_pw_set("station", broker.passwords["station"])
        self.client.tls_set_context(broker.tls_context())
        self.client.reconnect_delay_set(0.2, 1)
        subscribed = threading.Event()

        def on_connect(client, userdata, flags, reason, properties=None):
            client.subscribe([(t, 1) for t in topics])

        def on_message(client, userdata, msg):
            with self.lock:
                self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        if not subscribed.wait(10):
            pytest.fail("the station collector could not subscribe")

    def payloads(self, suffix: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return predicate()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def running_broker(folder: Path) -> Iterator[Broker]:
    """A started broker in ``folder``, stopped when the generator ends (``yield from`` it in a fixture)."""
    broker = Broker(folder)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[Broker]:
    """A running test broker (stopped at the end)."""
    yield from running_broker(tmp_path / "broker")
