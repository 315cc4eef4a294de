"""The station's MQTT side: subscribes to every bed's events and state, publishes acknowledgements.

paho-mqtt (the ``station`` extra) is imported when a :class:`StationClient` is made, so this module imports
on a base install. The client reconnects by itself (paho's loop thread, backoff 1-30 s); while it is
disconnected the page says so, and every bed turns "no signal" after its own silence limit.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from edge_sdk.errors import InputError
from edge_sdk.forward.messages import (
    ACK,
    EVENTS,
    QOS,
    STATE,
    MessageError,
    ack_payload,
    check_device_id,
    device_from_topic,
    parse_event,
    parse_state,
    subscription,
    topic,
    topic_base,
)
from edge_sdk.station.settings import BrokerSettings
from edge_sdk.station.ward import Ward

log = logging.getLogger(__name__)


def read_password(path: Path) -> str:
    """The first line of a password file (trailing newline dropped); InputError when it is unreadable or empty."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--password-file {path}: cannot be read ({exc})") from None
    if not lines or not lines[0]:
        raise InputError(f"--password-file {path}: expected the password on its first line, found nothing")
    return lines[0]


def probe(host: str, port: int, context: ssl.SSLContext | None, timeout_s: float = 5.0) -> str:
    """Why the broker cannot be reached: DNS, TCP or TLS (certificate) - paho retries without saying."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            if context is not None:
                with context.wrap_socket(sock, server_hostname=host):
                    pass
    except ssl.SSLCertVerificationError as exc:
        return f"TLS: the broker's certificate is not trusted ({exc.verify_message}); check --ca-file"
    except (OSError, ssl.SSLError) as exc:
        return f"cannot reach {host}:{port} ({exc})"
    return f"{host}:{port} answers, but the MQTT connection failed"


class AckError(Exception):
    """An acknowledgement could not be published (the text says why; shown on the page)."""


class StationClient:
    """Subscribes to ``{topic}/events`` and ``{topic}/state`` of every bed and feeds ``ward``."""

    def __init__(self, settings: BrokerSettings, ward: Ward) -> None:
        import paho.mqtt.client as mqtt  # the station extra

        self._mqtt = mqtt
        self.settings = settings
        self.ward = ward
        self.connected = False
        self.last_error: str | None = None
        self.connected_since: float | None = None
        self.rejected = 0  # messages that did not follow the schema
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id, clean_session=True, protocol=mqtt.MQTTv311
        )
        # verified TLS (the certificate must name the host), against --ca-file or else the system's CAs
        self._context = (
            ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
            if settings.tls
            else None
        )
        if self._context is not None:
            client.tls_set_context(self._context)
        if settings.username:
            password = read_password(settings.password_file) if settings.password_file else None
            client.username_pw_set(settings.username, password)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        self._client = client

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (never blocks on the network; paho retries until :meth:`stop`)."""
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "broker": f"{'mqtts' if self.settings.tls else 'mqtt'}://{self.settings.host}:{self.settings.port}",
            "error": None if self.connected else self.last_error,
            "rejected": self.rejected,
            "duplicates": self.ward.duplicates,
        }

    # -- callbacks (paho's thread) -------------------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            error = f"the broker refused the connection: {reason} (check --username and --password-file)"
            if error != self.last_error:
                log.error("MQTT: %s; retrying", error)
            self.connected, self.last_error = False, error
            self.ward.touch()
            return
        self.connected, self.last_error, self.connected_since = True, None, time.time()
        template = self.settings.topic
        client.subscribe([(subscription(EVENTS, template), QOS[EVENTS]), (subscription(STATE, template), QOS[STATE])])
        log.info("connected to %s:%s, subscribed", self.settings.host, self.settings.port)
        self.ward.touch()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        reason = probe(self.settings.host, self.settings.port, self._context)
        if reason != self.last_error:
            log.error("MQTT: %s; retrying", reason)
        self.connected, self.last_error = False, reason
        self.ward.touch()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not self.connected:
            return  # a refused connection: its reason stands (on_connect)
        self.connected = False
        self.last_error = f"disconnected from the broker ({reason})"
        log.warning("MQTT: %s; reconnecting", self.last_error)
        self.ward.touch()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            device_id, kind = device_from_topic(message.topic, self.settings.topic)
            if kind == EVENTS:
                event = parse_event(message.payload)
                self._same_device(device_id, event.device_id)
                self.ward.apply_event(event)
            elif kind == STATE:
                if not message.payload:  # retained state cleared: the bed was decommissioned
                    self.ward.forget(device_id)
                    return
                state = parse_state(message.payload)
                self._same_device(device_id, state.device_id)
                self.ward.apply_state(state)
        except MessageError as exc:
            self.rejected += 1
            log.warning("message on %s dropped: %s", message.topic, exc)
        except Exception:  # never let one bad message kill the subscriber thread
            self.rejected += 1
            log.exception("message on %s could not be applied", message.topic)

    @staticmethod
    def _same_device(from_topic: str, from_payload: str) -> None:
        # the broker's ACL lets bed-1 write only under its own topic; its payload must say the same
        if from_topic != from_payload:
            raise MessageError(f"device_id {from_payload!r} published under the topic of {from_topic!r}")

    # -- acknowledgements (web thread) ---------------------------------------------------------------------
    def acknowledge(self, device_id: str, event_id: str, by: str, timeout_s: float = 5.0) -> str:
        """Publish an ack of alert ``event_id`` to ``device_id`` and wait for the broker's PUBACK; the ack's id."""
        import json

        try:
            base = topic_base(self.settings.topic, check_device_id(device_id))
            payload = ack_payload(event_id, by)
        except MessageError as exc:
            raise AckError(str(exc)) from None
        if not self.connected:
            raise AckError("not connected to the broker; the acknowledgement was not sent")
        info = self._client.publish(topic(base, ACK), payload, qos=QOS[ACK], retain=False)
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            raise AckError(f"publish failed ({self._mqtt.error_string(info.rc)})")
        try:
            info.wait_for_publish(timeout=timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise AckError(f"publish failed ({exc})") from None
        if not info.is_published():
            raise AckError(f"the broker did not confirm the acknowledgement within {timeout_s:g} s")
        ack_id = json.loads(payload)["id"]
        log.info("ack %s for %s on %s by %s published", ack_id, event_id, device_id, by)
        return ack_id
