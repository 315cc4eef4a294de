"""MQTT to the ward broker (paho-mqtt >= 2.1): events (QoS 1), the retained state heartbeat, acks back.

* TLS by default (``mqtts://``, port 8883), verified against ``ca_file`` (or the system CAs), an optional
  client certificate; ``mqtt://`` only with ``insecure = true``. User name + ``password_file``.
* A persistent session (``clean_session = False``, client id ``edge-sdk-<device_id>``): acknowledgements the
  station sends while the device is away are queued by the broker and delivered when it returns.
* Events: :meth:`MqttForwarder.deliver` publishes one event on ``{base}/events`` at QoS 1 and returns only on
  the broker's PUBACK. State: ``{base}/state`` retained, every ``state_every_s`` and on every state change;
  the last will is the same topic with state ``offline``; a clean end publishes ``stopped``.
* Acks: ``{base}/ack`` messages are parsed and handed to ``on_ack`` (the hub records them in the log).

The broker ACL lets a bed (its MQTT user name is its device id) write only under its own topic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from edge_sdk.errors import InputError
from edge_sdk.forward import messages as m
from edge_sdk.forward.base import Check, DeliveryError, endpoint_checks, host_port, read_secret, tls_context

if TYPE_CHECKING:
    from edge_sdk.pipeline.config import ForwardSettings, MqttSettings

_log = logging.getLogger("edge_sdk.forward")
PUBACK_TIMEOUT_S = 10.0
KEEPALIVE_S = 30


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise InputError("[forward.mqtt] needs paho-mqtt: pip install 'edge-sdk[forward]'") from None
    return mqtt


class MqttForwarder:
    """See the module docstring. ``state()`` returns the current :class:`~edge_sdk.forward.messages.State`."""

    name = "mqtt"

    def __init__(
        self,
        settings: MqttSettings,
        forward: ForwardSettings,
        state: Callable[[], m.State] | None = None,
        on_ack: Callable[[m.Ack], None] | None = None,
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.device_id = m.check_device_id(forward.device_id or "")
        self.every_s = forward.state_every_s
        self.base = m.topic_base(settings.topic, self.device_id)
        self.state = state
        self.on_ack = on_ack
        self.on_connected = on_connected
        self.secure = urlsplit(settings.url or "").scheme == "mqtts"
        self.host, self.port = host_port(settings.url or "")
        self.password = (
            read_secret(settings.password_file, "forward.mqtt", "password_file") if settings.password_file else None
        )
        self.context = tls_context(settings.ca_file, settings.cert_file, settings.key_file) if self.secure else None
        self.connected = threading.Event()
        self.refused: str | None = None
        self._client: Any = None
        self._state_due = 0.0
        self._last_state: str | None = None
        self._state_info: Any = None

    # -- the client --------------------------------------------------------------------------------
    def _make_client(self, client_id: str, clean: bool) -> Any:
        mqtt = _paho()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean, protocol=mqtt.MQTTv311
        )
        if self.settings.username:
            client.username_pw_set(self.settings.username, self.password)
        if self.context is not None:
            client.tls_set_context(self.context)
        return client

    def start(self) -> None:
        """Connect in the background (never blocks: DNS and TCP happen on paho's network thread)."""
        client = self._make_client(f"edge-sdk-{self.device_id}", clean=False)
        client.will_set(
            m.topic(self.base, m.STATE), m.offline_payload(self.device_id, self.every_s), qos=1, retain=True
        )
        client.reconnect_delay_set(0.5, 10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.message_callback_add(m.topic(self.base, m.ACK), self._on_message)
        self._client = client
        client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
        client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            _log.warning("forward mqtt: broker %s:%s refused the connection: %s", self.host, self.port, reason)
            return
        self.refused = None
        client.subscribe(m.topic(self.base, m.ACK), qos=1)
        self._state_due = 0.0  # publish the state at once
        self.connected.set()
        if self.on_connected is not None:
            self.on_connected()
        _log.info("forward mqtt: connected to %s:%s as %s", self.host, self.port, self.settings.username)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        self.connected.clear()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            ack = m.parse_ack(message.payload)
        except m.MessageError as exc:
            _log.warning("forward mqtt: ignored a malformed ack on %s: %s", message.topic, exc)
            return
        if self.on_ack is not None:
            self.on_ack(ack)

    # -- sending -----------------------------------------------------------------------------------
    def wants(self, event: m.Event) -> bool:
        return True

    def _publish(self, kind: str, payload: bytes, retain: bool = False) -> Any:
        if self._client is None or not self.connected.is_set():
            raise DeliveryError(
                f"not connected to {self.host}:{self.port}" + (f" ({self.refused})" if self.refused else "")
            )
        info = self._client.publish(m.topic(self.base, kind), payload, qos=m.QOS[kind], retain=retain)
        if info.rc != 0:
            raise DeliveryError(f"publish failed (rc {info.rc})")
        return info

    def deliver(self, event: m.Event) -> None:
        """Publish one event; returns on the broker's PUBACK, else DeliveryError."""
        info = self._publish(m.EVENTS, m.event_payload(event))
        try:
            info.wait_for_publish(PUBACK_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryError(f"publish failed: {exc}") from None
        if not info.is_published():
            raise DeliveryError(f"no PUBACK from {self.host}:{self.port} within {PUBACK_TIMEOUT_S:g} s")

    def publish_frame(self, payload: bytes) -> None:
        """Best effort (QoS 0): a frame is dropped while the broker is away."""
        if self._client is not None and self.connected.is_set():
            self._client.publish(m.topic(self.base, m.FRAMES), payload, qos=0)

    def tick(self) -> None:
        """Publish the state when it changed or every ``state_every_s`` (never waits for the PUBACK)."""
        if self.state is None or not self.connected.is_set():
            return
        state = self.state()
        now = time.monotonic()
        key = f"{state.state}|{state.alert_event_id}"  # an alert's id arrives once its event was delivered
        if key == self._last_state and now < self._state_due:
            return
        self._publish(m.STATE, m.state_payload(state), retain=True)
        self._last_state, self._state_due = key, now + self.every_s

    def stop(self) -> None:
        """Publish ``stopped`` (retained; waited for briefly), then disconnect cleanly (no last will)."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if self.connected.is_set() and self.state is not None:
                final = self.state()
                stopped = m.State(self.device_id, time.time(), "stopped", every_s=self.every_s, health=final.health)
                info = client.publish(m.topic(self.base, m.STATE), m.state_payload(stopped), qos=1, retain=True)
                info.wait_for_publish(2.0)
        except (RuntimeError, ValueError) as exc:
            _log.debug("forward mqtt: final state not sent: %s", exc)
        finally:
            client.disconnect()
            client.loop_stop()

    # -- doctor ------------------------------------------------------------------------------------
    def check(self, timeout: float = 5.0) -> list[Check]:
        """DNS, TCP, TLS, then a real MQTT login (a separate clean session) and its verdict."""
        checks = endpoint_checks(self.settings.url or "", self.context, timeout)
        if not all(c.ok for c in checks if c.step != "tls" or self.secure):
            return checks
        client = self._make_client(f"edge-sdk-doctor-{self.device_id}", clean=True)
        result: dict[str, Any] = {}
        done = threading.Event()

        def on_connect(c: Any, u: Any, f: Any, reason: Any, p: Any = None) -> None:
            result["reason"] = reason
            done.set()

        client.on_connect = on_connect
        try:
            client.connect(self.host, self.port, keepalive=10)
        except Exception as exc:  # TLS or socket failure during the MQTT connect
            return [*checks, Check("auth", False, f"MQTT connect failed: {exc}")]
        client.loop_start()
        try:
            done.wait(timeout)
        finally:
            client.disconnect()
            client.loop_stop()
        reason = result.get("reason")
        if reason is None:
            return [*checks, Check("auth", False, f"no CONNACK within {timeout:g} s")]
        if reason.is_failure:
            return [*checks, Check("auth", False, f"broker refused user {self.settings.username!r}: {reason}")]
        return [*checks, Check("auth", True, f"logged in as {self.settings.username!r}; topic {self.base}/...")]
