"""The wire schema between bed devices and the ward station: topics, payload builders and parsers.

This module is the single source of truth (the ward station, :mod:`edge_sdk.station`, imports it). Three
JSON messages, each with a ``schema`` name and version:

* ``{base}/events`` (QoS 1, not retained), device -> station: one event (:func:`event_payload`). ``id`` is
  ``<log_id>:<seq>``, the event's row in the device's encrypted log: unique, stable across restarts, so
  receivers deduplicate on it (delivery is at least once).
* ``{base}/state`` (QoS 1, retained), device -> station: the state heartbeat (:func:`state_payload`), every
  ``state_every_s`` and on every state change; the MQTT last will is the same message with state
  ``offline``. A station treats no state for more than :data:`SILENT_AFTER` x ``every_s`` as "no signal".
* ``{base}/ack`` (QoS 1, not retained), station -> device: an acknowledgement of an alert
  (:func:`ack_payload`); the device records it as an ``alert_acknowledged`` event in its log, which is then
  forwarded on ``{base}/events`` like any event.

``base`` is ``forward.mqtt.topic`` with ``{device_id}`` filled in (default ``edge-sdk/{device_id}``).
``device_id`` is a pseudonymous bed/device name, never a patient id. Payloads carry numbers and labels only:
never pixels, never per-frame action units (those go to ``{base}/frames`` only with ``frames = true``).
Parsers raise :class:`MessageError` (a ``ValueError``) naming the field for anything malformed.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

EVENT_SCHEMA = "edge-sdk-event/1"
STATE_SCHEMA = "edge-sdk-state/1"
ACK_SCHEMA = "edge-sdk-ack/1"
FRAME_SCHEMA = "edge-sdk-frame/1"
DEFAULT_TOPIC = "edge-sdk/{device_id}"
EVENTS, STATE, ACK, FRAMES = "events", "state", "ack", "frames"
#: QoS of every topic (frames: best effort).
QOS = {EVENTS: 1, STATE: 1, ACK: 1, FRAMES: 0}
#: A station calls a bed "no signal" when no state came for this many heartbeat periods.
SILENT_AFTER = 3.0
DEFAULT_STATE_EVERY_S = 5.0

#: States on ``{base}/state``. ``offline`` is the last will; ``stopped`` the clean end of a run.
STATES = ("unknown", "calibrating", "unavailable", "no_face", "clear", "watch", "alert", "no_signal", "fault")
STATES_ALL = (*STATES, "stopped", "offline")

#: Log event name -> wire event name, for every event a device forwards (others stay in the log only).
FORWARDED_EVENTS: dict[str, str] = {
    "alert_raised": "alert_raised",
    "alert_cleared": "alert_cleared",
    "alert_interrupted": "alert_interrupted",
    "alert_resumed": "alert_resumed",
    "alert_acknowledged": "alert_acknowledged",
    "face_lost": "face_lost",
    "face_found": "face_found",
    "source_lost": "no_signal",
    "source_restored": "signal_back",
    "model_fault": "model_fault",
    "model_recovered": "model_recovered",
    "log_fault": "log_fault",
    "log_recovered": "log_recovered",
    "pipeline_stalled": "pipeline_stalled",
    "pipeline_recovered": "pipeline_recovered",
    "pain_unavailable": "pain_unavailable",
    "baseline_captured": "baseline_captured",
    "baseline_rejected": "baseline_rejected",
    "run_started": "run_started",
    "run_stopped": "run_stopped",
}
#: Wire events that are about an alert (a station lists these).
ALERT_EVENTS = frozenset({"alert_raised", "alert_cleared", "alert_interrupted", "alert_resumed", "alert_acknowledged"})
#: Fields of a log event that are not copied into ``detail`` (they are the payload's own fields, or
#: monotonic clock readings that mean nothing off the device).
_NOT_DETAIL = frozenset({"event", "timestamp", "to"})
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_MESSAGE_BYTES = 16384


class MessageError(ValueError):
    """A message that does not follow the wire schema (the text names the field)."""


def check_device_id(device_id: str) -> str:
    """``device_id`` when it is a valid topic level (letters, digits, ``_ . -``, at most 64); else MessageError.

    MQTT wildcards (``+ #``) and ``/`` are refused: a device id is one topic level.
    """
    if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
        raise MessageError(
            f"device_id {device_id!r}: expected 1-64 letters, digits, '_', '.' or '-' (one topic level, "
            "a pseudonymous bed/device name, never a patient id)"
        )
    return device_id


def topic_base(template: str, device_id: str) -> str:
    """``template`` (e.g. ``edge-sdk/{device_id}``) with the device id filled in."""
    base = template.replace("{device_id}", check_device_id(device_id)).strip("/")
    if not base or any(c in base for c in "+#") or "{" in base:
        raise MessageError(f"topic {template!r}: expected a topic without wildcards, e.g. {DEFAULT_TOPIC!r}")
    return base


def topic(base: str, kind: str) -> str:
    """``{base}/events``, ``{base}/state``, ``{base}/ack`` or ``{base}/frames``."""
    if kind not in QOS:
        raise MessageError(f"topic kind {kind!r}: expected one of {', '.join(QOS)}")
    return f"{base}/{kind}"


def subscription(kind: str, template: str = DEFAULT_TOPIC) -> str:
    """The station's wildcard subscription for ``kind`` over all devices (``edge-sdk/+/events``)."""
    return topic(template.replace("{device_id}", "+").strip("/"), kind)


def device_from_topic(name: str, template: str = DEFAULT_TOPIC) -> tuple[str, str]:
    """(device_id, kind) of a topic under ``template``; MessageError when it is not one."""
    prefix, _, suffix = template.partition("{device_id}")
    pattern = re.escape(prefix) + r"([^/]+)" + re.escape(suffix.rstrip("/")) + r"/(events|state|ack|frames)$"
    match = re.match(pattern, name)
    if match is None:
        raise MessageError(f"topic {name!r} is not under {template!r}")
    return check_device_id(match.group(1)), match.group(2)


def iso_time(seconds: float) -> str:
    """UTC wall-clock time as ``2026-12-02T21:00:00.123Z``."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str, field: str = "time") -> float:
    """Seconds since the epoch of an ISO time (``Z`` or an offset); MessageError otherwise."""
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise MessageError(f"{field} {text!r}: expected an ISO time such as 2026-12-02T21:00:00.123Z") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def event_id(log_id: bytes | str, seq: int) -> str:
    """The id of the event in row ``seq`` of the log ``log_id``: ``<log_id hex>:<seq>``."""
    return f"{log_id.hex() if isinstance(log_id, bytes) else log_id}:{int(seq)}"


def number(value: Any) -> float | None:
    """``value`` rounded to 4 decimals when it is a number (not a bool), else None."""
    return round(float(value), 4) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Event:
    """One forwarded event (the parsed ``{base}/events`` message)."""

    id: str
    device_id: str
    event: str
    time: float
    state: str | None
    pspi: float | None
    detail: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        return {
            "schema": EVENT_SCHEMA,
            "id": self.id,
            "device_id": self.device_id,
            "event": self.event,
            "time": iso_time(self.time),
            "state": self.state,
            "pspi": self.pspi,
            "detail": self.detail,
        }


def event_from_log(record: Mapping[str, Any], *, id: str, device_id: str, time: float) -> Event | None:
    """The wire event of a log event record (what ``Pipeline.emit_event`` wrote), None when it is not forwarded.

    ``time`` is the wall-clock time of the log row. The state is the event's ``to`` state; the PSPI its
    ``pspi_smoothed`` or ``score`` field (the smoothed score the alert thresholds saw).
    """
    name = FORWARDED_EVENTS.get(str(record.get("event")))
    if name is None:
        return None
    state = record.get("to")
    pspi = number(record.get("pspi_smoothed", record.get("score")))
    detail = {k: v for k, v in record.items() if k not in _NOT_DETAIL}
    if name != record.get("event"):
        detail["log_event"] = record.get("event")
    return Event(
        id, check_device_id(device_id), name, float(time), state if isinstance(state, str) else None, pspi, detail
    )


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON of a payload (refused beyond :data:`MAX_MESSAGE_BYTES`)."""
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=str).encode("utf-8")
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(data)} bytes, at most {MAX_MESSAGE_BYTES}")
    return data


def event_payload(event: Event) -> bytes:
    """The ``{base}/events`` message of ``event``."""
    return encode(event.payload())


def _decode(data: bytes | str, schema: str) -> dict[str, Any]:
    if isinstance(data, (bytes, bytearray)) and len(data) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(data)} bytes, at most {MAX_MESSAGE_BYTES}")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError(f"not a JSON message ({exc})") from None
    if not isinstance(doc, dict):
        raise MessageError("expected a JSON object")
    if doc.get("schema") != schema:
        raise MessageError(f"schema {doc.get('schema')!r}: expected {schema!r}")
    return doc


def _text(doc: Mapping[str, Any], field: str, *, optional: bool = False) -> str | None:
    value = doc.get(field)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > 256:
        raise MessageError(f"field {field!r} = {value!r}: expected a non-empty string of at most 256 characters")
    return value


def parse_event(data: bytes | str) -> Event:
    """The :class:`Event` of a ``{base}/events`` message; MessageError naming the bad field."""
    doc = _decode(data, EVENT_SCHEMA)
    detail = doc.get("detail") or {}
    if not isinstance(detail, dict):
        raise MessageError(f"field 'detail' = {detail!r}: expected an object")
    pspi = doc.get("pspi")
    if pspi is not None and number(pspi) is None:
        raise MessageError(f"field 'pspi' = {pspi!r}: expected a number or null")
    return Event(
        id=_text(doc, "id"),  # type: ignore[arg-type]
        device_id=check_device_id(doc.get("device_id")),  # type: ignore[arg-type]
        event=_text(doc, "event"),  # type: ignore[arg-type]
        time=parse_time(doc.get("time")),  # type: ignore[arg-type]
        state=_text(doc, "state", optional=True),
        pspi=number(pspi),
        detail=detail,
    )


@dataclass(frozen=True)
class State:
    """The parsed ``{base}/state`` heartbeat."""

    device_id: str
    time: float
    state: str
    pspi: float | None = None
    fault: str | None = None
    alert_event_id: str | None = None
    every_s: float = DEFAULT_STATE_EVERY_S
    health: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "schema": STATE_SCHEMA,
            "device_id": self.device_id,
            "time": iso_time(self.time),
            "state": self.state,
            "pspi": self.pspi,
            "fault": self.fault,
            "alert_event_id": self.alert_event_id,
            "every_s": self.every_s,
            "health": dict(self.health or {}),
        }


def state_payload(state: State) -> bytes:
    """The ``{base}/state`` message (retained)."""
    if state.state not in STATES_ALL:
        raise MessageError(f"state {state.state!r}: expected one of {', '.join(STATES_ALL)}")
    return encode(state.payload())


def offline_payload(device_id: str, every_s: float = DEFAULT_STATE_EVERY_S, time: float | None = None) -> bytes:
    """The MQTT last will on ``{base}/state``: state ``offline`` (``time`` is when the will was set)."""
    import time as _time

    return state_payload(
        State(check_device_id(device_id), _time.time() if time is None else time, "offline", every_s=every_s)
    )


def parse_state(data: bytes | str) -> State:
    """The :class:`State` of a ``{base}/state`` message; MessageError naming the bad field."""
    doc = _decode(data, STATE_SCHEMA)
    state = doc.get("state")
    if state not in STATES_ALL:
        raise MessageError(f"field 'state' = {state!r}: expected one of {', '.join(STATES_ALL)}")
    every = doc.get("every_s", DEFAULT_STATE_EVERY_S)
    if number(every) is None or not 0 < float(every) <= 3600:
        raise MessageError(f"field 'every_s' = {every!r}: expected seconds in (0, 3600]")
    health = doc.get("health") or {}
    if not isinstance(health, dict):
        raise MessageError(f"field 'health' = {health!r}: expected an object")
    return State(
        device_id=check_device_id(doc.get("device_id")),  # type: ignore[arg-type]
        time=parse_time(doc.get("time")),  # type: ignore[arg-type]
        state=state,
        pspi=number(doc.get("pspi")),
        fault=_text(doc, "fault", optional=True),
        alert_event_id=_text(doc, "alert_event_id", optional=True),
        every_s=float(every),
        health=health,
    )


@dataclass(frozen=True)
class Ack:
    """An acknowledgement of an alert, station -> device."""

    id: str
    event_id: str
    by: str
    time: float

    def payload(self) -> dict[str, Any]:
        return {
            "schema": ACK_SCHEMA,
            "id": self.id,
            "event_id": self.event_id,
            "by": self.by,
            "time": iso_time(self.time),
        }

    def log_record(self) -> dict[str, Any]:
        """The ``alert_acknowledged`` event the device records in its log."""
        return {"event": "alert_acknowledged", "ack_id": self.id, "event_id": self.event_id, "by": self.by}


def ack_payload(event_id: str, by: str, *, ack_id: str | None = None, time: float | None = None) -> bytes:
    """A ``{base}/ack`` message acknowledging the alert ``event_id`` (a new uuid4 id unless given)."""
    import time as _time

    ack = Ack(ack_id or str(uuid.uuid4()), event_id, by, _time.time() if time is None else time)
    for field in ("id", "event_id", "by"):
        _text(ack.payload(), field)
    return encode(ack.payload())


def parse_ack(data: bytes | str) -> Ack:
    """The :class:`Ack` of a ``{base}/ack`` message; MessageError naming the bad field."""
    doc = _decode(data, ACK_SCHEMA)
    return Ack(
        id=_text(doc, "id"),  # type: ignore[arg-type]
        event_id=_text(doc, "event_id"),  # type: ignore[arg-type]
        by=_text(doc, "by"),  # type: ignore[arg-type]
        time=parse_time(doc.get("time")),  # type: ignore[arg-type]
    )


def frame_payload(device_id: str, time: float, record: Mapping[str, Any]) -> bytes:
    """A ``{base}/frames`` message (only with ``frames = true``): the frame's pain status and the primary
    face's action units, numbers only (no box, no landmarks, no pixels)."""
    faces = record.get("faces") or []
    face = faces[0] if faces and isinstance(faces[0], Mapping) else {}
    units = face.get("au_intensity")
    return encode(
        {
            "schema": FRAME_SCHEMA,
            "device_id": check_device_id(device_id),
            "time": iso_time(time),
            "state": record.get("state"),
            "pspi": number(record.get("pspi")),
            "pspi_smoothed": number(record.get("pspi_smoothed")),
            "au": {str(k): number(v) for k, v in units.items()} if isinstance(units, Mapping) else None,
        }
    )
