"""The webhook and FHIR forwarders against real HTTP servers on 127.0.0.1, fed from a real encrypted log.

* webhook (HTTPS with a test CA): the receiver checks each HMAC-SHA256 signature and timestamp; a 503 is
  retried, only a 2xx marks an event delivered; every event arrives once per id; a forged body fails the check;
* FHIR: the transaction Bundle of an alert (Observation + DetectedIssue) validates with ``fhir.resources``
  (R4B models: fhir.resources 8 ships R4B, whose Observation/DetectedIssue/Bundle are R4's), carries the
  bearer token, and is conditional on the event id;
* settings: ``mqtt://`` without ``insecure``, a bad device id, a webhook without a secret are refused.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from edge_sdk.errors import InputError
from edge_sdk.forward import fhir, webhook
from edge_sdk.forward import messages as m
from edge_sdk.forward.base import Sender
from edge_sdk.pipeline.config import FhirSettings, ForwardSettings, LogSettings, MqttSettings, WebhookSettings
from edge_sdk.store import EncryptedLogSink, KeySource
from edge_sdk.store.outbox import Outbox
from tests.mqtt_broker import make_ca

EVENTS = [
    {"event": "run_started", "timestamp": 1.0, "source": "cam"},
    {"event": "alert_raised", "timestamp": 2.0, "from": "clear", "to": "alert", "score": 5.25},
    {"event": "face_lost", "timestamp": 3.0, "from": "alert", "to": "no_face"},
    {"event": "alert_cleared", "timestamp": 4.0, "from": "alert", "to": "clear", "score": 1.5},
]


class Receiver:
    """An HTTP(S) server on 127.0.0.1 that keeps (headers, body) of every POST and answers ``statuses`` in turn
    (then 200)."""

    def __init__(self, statuses: list[int], context: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[Any, bytes]] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.headers, body))  # case-insensitive names
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_log(tmp_path: Path):
    """A real encrypted log holding :data:`EVENTS`; (log_dir, ring, event ids by name)."""
    log_dir, key = tmp_path / "log", tmp_path / "key.json"
    sink = EncryptedLogSink.open(log_dir, LogSettings(key_file=str(key), retention_days=None))
    ring = KeySource(key_file=key).load(create=False)
    outbox = Outbox.open(log_dir, ring)
    for name in ("webhook", "fhir"):
        outbox.start(name, from_seq=0)  # deliver everything in this log
    for event in EVENTS:
        sink.write(event, kind="event", timestamp=time.time())
    sink.close()
    ids = {
        row.record["event"]: outbox.event_id(row.seq)
        for row in outbox.pending("webhook", 100)[0]
        if "event" in row.record
    }
    outbox.close()
    return log_dir, ring, ids


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)
    return predicate()


def test_webhook_events_are_signed_retried_and_marked_only_on_2xx(tmp_path: Path) -> None:
    ca, cert, key = make_ca(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    receiver = Receiver([503], server_tls)  # the first POST fails: it must be retried
    secret = tmp_path / "secret"
    secret.write_text("s3cret-signing-key\n")
    log_dir, ring, ids = make_log(tmp_path)
    settings = WebhookSettings(url=f"https://127.0.0.1:{receiver.port}/hook", secret_file=str(secret), ca_file=str(ca))
    forward = ForwardSettings(device_id="bed-12", webhook=settings)
    sender = Sender(webhook.WebhookForwarder(settings, forward), log_dir, ring, "bed-12", retry_max_s=0.2, idle_s=0.1)
    sender.start()
    try:
        forwarded = [i for name, i in ids.items() if name in m.FORWARDED_EVENTS]
        assert wait_until(lambda: len(receiver.requests) >= len(forwarded) + 1, 15)
    finally:
        assert sender.finish(2.0)
        receiver.close()
    first, *delivered = receiver.requests
    bodies = [m.parse_event(body) for _, body in delivered]
    assert [e.id for e in bodies] == forwarded  # in log order, each once after the retried one
    assert m.parse_event(first[1]).id == forwarded[0]
    for headers, body in receiver.requests:
        stamp, signature = headers[webhook.TIMESTAMP_HEADER], headers[webhook.SIGNATURE_HEADER]
        assert webhook.verify_signature(b"s3cret-signing-key", stamp, body, signature)
        assert headers[webhook.EVENT_ID_HEADER] == json.loads(body)["id"]
        forged = body.replace(b'"bed-12"', b'"bed-13"')
        assert not webhook.verify_signature(b"s3cret-signing-key", stamp, forged, signature)
        assert not webhook.verify_signature(b"another-key", stamp, body, signature)
    stale = str(int(time.time()) - 3600)
    assert not webhook.verify_signature(b"k", stale, b"{}", webhook.sign(b"k", stale, b"{}"))
    raised = next(e for e in bodies if e.event == "alert_raised")
    assert raised.pspi == 5.25 and raised.state == "alert" and raised.device_id == "bed-12"
    outbox = Outbox.open(log_dir, ring)
    assert outbox.backlog("webhook").waiting == 0 and outbox.backlog("webhook").delivered == len(forwarded)
    outbox.close()


def test_fhir_alert_bundles_validate_and_carry_the_token(tmp_path: Path) -> None:
    bundle_model = pytest.importorskip("fhir.resources.R4B.bundle").Bundle
    observation_model = pytest.importorskip("fhir.resources.R4B.observation").Observation
    issue_model = pytest.importorskip("fhir.resources.R4B.detectedissue").DetectedIssue
    receiver = Receiver([])
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    log_dir, ring, ids = make_log(tmp_path)
    settings = FhirSettings(base_url=f"http://127.0.0.1:{receiver.port}/fhir", token_file=str(token), insecure=True)
    forward = ForwardSettings(device_id="bed-12", fhir=settings)
    sender = Sender(fhir.FhirForwarder(settings, forward, synthetic=True), log_dir, ring, "bed-12", 0.2, idle_s=0.1)
    sender.start()
    try:
        assert wait_until(lambda: len(receiver.requests) >= 2, 15)
    finally:
        assert sender.finish(2.0)
        receiver.close()
    assert len(receiver.requests) == 2  # alert_raised and alert_cleared only
    (raised_headers, raised_body), (_, cleared_body) = receiver.requests
    assert raised_headers["Authorization"] == "Bearer tok-123"
    assert raised_headers["Content-Type"] == "application/fhir+json"
    raised, cleared = json.loads(raised_body), json.loads(cleared_body)
    bundle_model.model_validate(raised)
    bundle_model.model_validate(cleared)
    obs, issue = (entry["resource"] for entry in raised["entry"])
    observation_model.model_validate(obs)
    issue_model.model_validate(issue)
    assert obs["valueQuantity"]["value"] == 5.25 and obs["code"]["coding"][0]["system"] == fhir.CODE_SYSTEM
    assert issue["code"]["coding"][0]["code"] == "22253000" and issue["evidence"][0]["detail"][0]["reference"]
    assert raised["entry"][0]["request"]["ifNoneExist"] == f"identifier={fhir.EVENT_ID_SYSTEM}|{ids['alert_raised']}"
    assert [e["resource"]["resourceType"] for e in cleared["entry"]] == ["Observation"]
    assert "subject" not in obs and "patient" not in issue  # the device never knows the patient


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: MqttSettings(url="mqtt://broker:1883"), "insecure = true"),
        (lambda: MqttSettings(url="https://broker"), "expected mqtts://"),
        (lambda: ForwardSettings(mqtt=MqttSettings(url="mqtts://b")), "'device_id' is required"),
        (lambda: ForwardSettings(device_id="bed/12"), "one MQTT topic level"),
        (lambda: WebhookSettings(url="https://x/hook"), "'secret_file' is required"),
        (lambda: FhirSettings(base_url="http://fhir.local"), "insecure = true"),
    ],
)
def test_forward_settings_refuse_unsafe_or_incomplete_values(build, expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        build()
