"""A signed webhook: each event POSTed as the same JSON as on MQTT (``edge-sdk-event/1``).

Headers: ``X-Edge-SDK-Timestamp`` (unix seconds), ``X-Edge-SDK-Signature: sha256=<hex>`` where the hex is
``HMAC-SHA256(secret, timestamp + "." + body)``, ``X-Edge-SDK-Event-Id`` and ``Idempotency-Key`` (the event
id: at-least-once delivery, receivers deduplicate). A receiver checks the signature with
:func:`verify_signature` (constant-time) and rejects timestamps older than a few minutes (replays). Only an
HTTP 2xx marks the event delivered; anything else (including redirects) is retried with back-off.
Standard library only (``urllib.request``); ``https://`` verified against ``ca_file`` or the system CAs.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from edge_sdk.forward import messages as m
from edge_sdk.forward.base import Check, HttpForwarder, endpoint_checks, post, read_secret, tls_context

if TYPE_CHECKING:
    from edge_sdk.pipeline.config import ForwardSettings, WebhookSettings

SIGNATURE_HEADER = "X-Edge-SDK-Signature"
TIMESTAMP_HEADER = "X-Edge-SDK-Timestamp"
EVENT_ID_HEADER = "X-Edge-SDK-Event-Id"
MAX_SKEW_S = 300.0


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256 over ``timestamp.body``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: bytes, timestamp: str, body: bytes, signature: str, now: float | None = None, max_skew_s: float = MAX_SKEW_S
) -> bool:
    """True when ``signature`` is this body's and ``timestamp`` is within ``max_skew_s`` of ``now``."""
    try:
        skew = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return skew <= max_skew_s and hmac.compare_digest(sign(secret, timestamp, body), signature or "")


class WebhookForwarder(HttpForwarder):
    """POSTs events to ``[forward.webhook] url`` (see the module docstring)."""

    name = "webhook"

    def __init__(self, settings: WebhookSettings, forward: ForwardSettings) -> None:
        self.settings = settings
        self.url = settings.url or ""
        self.secret = read_secret(settings.secret_file, "forward.webhook", "secret_file").encode()
        super().__init__(tls_context(settings.ca_file) if self.url.startswith("https://") else None)

    def wants(self, event: m.Event) -> bool:
        return True

    def request(self, event: m.Event, now: float | None = None) -> urllib.request.Request:
        body = m.event_payload(event)
        stamp = str(int(time.time() if now is None else now))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(self.secret, stamp, body),
            EVENT_ID_HEADER: event.id,
            "Idempotency-Key": event.id,
            "User-Agent": "edge-sdk-forward",
        }
        return urllib.request.Request(self.url, data=body, headers=headers, method="POST")

    def deliver(self, event: m.Event) -> None:
        post(self._opener, self.request(event), self.url, self.settings.timeout_s)

    def check(self, timeout: float = 5.0) -> list[Check]:
        return endpoint_checks(self.url, self.context, timeout)
