"""The ward model: what the station knows about every bed, in memory, fed by MQTT messages.

Per bed: the last state heartbeat (state, smoothed PSPI, health), the PSPI trend of the last hour, the time
since the last heartbeat, and the active alerts with their acknowledgement. Events are deduplicated by id
(the devices deliver at least once: the same id may arrive twice, it counts once).

A bed that has not sent a heartbeat for more than ``SILENT_AFTER`` x its ``every_s``, or whose last will
("offline") arrived, is shown as **no signal**: a silent bed is its own alarm state, not the last thing it said.

Time: the station's own clocks, never the device's (a bed's clock may be wrong): ``time.monotonic()`` for
silence, ``time.time()`` for the trend. Both are injectable (``now=`` arguments) for tests. Thread-safe:
the MQTT thread writes, the web server reads snapshots.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_sdk.forward.messages import DEFAULT_STATE_EVERY_S, SILENT_AFTER, Event, State

log = logging.getLogger(__name__)

#: The PSPI trend window (seconds).
TREND_WINDOW_S = 3600.0
#: Trend points sent to the page per bed (the window in buckets; each bucket shows its highest PSPI).
TREND_POINTS = 120
#: Every heartbeat of the last hour is kept up to this many points per bed (5 s heartbeats: 720).
TREND_MAX_POINTS = 4000
#: Event ids remembered for deduplication (oldest forgotten first).
SEEN_IDS = 100_000
#: Acknowledgements kept per bed for alerts not seen yet (their alert_raised may still be on its way).
EARLY_ACKS = 64
#: Recent events kept per bed for the page.
RECENT_EVENTS = 8


@dataclass(frozen=True)
class StateStyle:
    """How a state shows on the page: its text (never colour alone), its severity (sort order, alarm) and CSS class."""

    label: str
    severity: int  # 0 fine .. 3 alarm
    css: str


#: One row per state a bed can be in (device states, plus the station's own "no_signal_silent"/"offline").
STATE_STYLES: dict[str, StateStyle] = {
    "alert": StateStyle("ALERT - pain", 3, "alert"),
    "silent": StateStyle("NO SIGNAL", 3, "silent"),
    "offline": StateStyle("NO SIGNAL", 3, "silent"),
    "no_signal": StateStyle("NO SIGNAL (camera)", 3, "silent"),
    "fault": StateStyle("FAULT", 3, "fault"),
    "unavailable": StateStyle("Pain score unavailable", 2, "fault"),
    "watch": StateStyle("Watch", 2, "watch"),
    "calibrating": StateStyle("Calibrating", 1, "unknown"),
    "no_face": StateStyle("No face in view", 1, "noface"),
    "unknown": StateStyle("Starting / unknown", 1, "unknown"),
    "stopped": StateStyle("Stopped", 1, "unknown"),
    "clear": StateStyle("Clear", 0, "clear"),
}


@dataclass
class Alert:
    """An active alert on a bed: raised by ``event_id``, maybe acknowledged."""

    event_id: str
    raised_time: float | None  # device wall clock (epoch seconds), as sent
    pspi: float | None
    received: float  # station time.time()
    interrupted: bool = False
    ack_sent_by: str | None = None  # an ack was published from this station, the device has not confirmed yet
    ack_sent_at: float | None = None
    acknowledged_by: str | None = None  # the device recorded the ack (its alert_acknowledged event)
    acknowledged_time: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "raised_time": self.raised_time,
            "pspi": self.pspi,
            "interrupted": self.interrupted,
            "ack_sent_by": self.ack_sent_by,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_time": self.acknowledged_time,
        }


@dataclass
class Bed:
    """What the station knows about one bed."""

    device_id: str
    state: str = "unknown"
    pspi: float | None = None
    fault: str | None = None
    every_s: float = DEFAULT_STATE_EVERY_S
    health: dict[str, Any] = field(default_factory=dict)
    state_time: float | None = None  # device wall clock of the last state message
    last_heartbeat: float | None = None  # station monotonic time of the last state message
    offline: bool = False  # the bed's last will arrived (its connection to the broker died)
    state_alert_id: str | None = None  # the alert the last state message named as active
    trend: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=TREND_MAX_POINTS))
    alerts: dict[str, Alert] = field(default_factory=dict)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS))
    # acks confirmed by the device before the alert itself arrived (QoS 1 topics are not ordered with each other)
    early_acks: dict[str, tuple[str, float | None]] = field(default_factory=dict)

    def silent_for(self, now: float) -> float | None:
        """Seconds since the last heartbeat, None if none was ever received."""
        return None if self.last_heartbeat is None else max(0.0, now - self.last_heartbeat)

    def shown_state(self, now: float) -> tuple[str, str]:
        """``(style key, reason text)``: the device's state, or the station's own no-signal when it went quiet."""
        if self.offline:
            return "offline", "bed offline: its connection to the broker was lost"
        since = self.silent_for(now)
        if since is not None and since > SILENT_AFTER * self.every_s:
            return "silent", f"no heartbeat for {since:.0f} s (expected every {self.every_s:g} s)"
        if self.state == "fault":
            return "fault", self.fault or "the device reports a fault"
        if self.state == "no_signal":
            return "no_signal", "the device reports no video signal"
        if self.state not in STATE_STYLES:
            return "unknown", f"unknown state {self.state!r}"
        return self.state, ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def downsample(points: list[tuple[float, float]], start: float, end: float, buckets: int) -> list[list[float]]:
    """``points`` (time, value) in [start, end] as at most ``buckets`` points, each the highest value of its
    bucket at the bucket's latest time (a pain peak must not vanish from the sparkline)."""
    if end <= start:
        return []
    width = (end - start) / buckets
    out: dict[int, tuple[float, float]] = {}
    for t, v in points:
        if t < start or t > end:
            continue
        b = min(buckets - 1, int((t - start) / width))
        old = out.get(b)
        out[b] = (max(t, old[0]), max(v, old[1])) if old else (t, v)
    return [[round(t, 3), round(v, 3)] for _, (t, v) in sorted(out.items())]


class Ward:
    """All beds, fed by :meth:`apply_state` / :meth:`apply_event`, read with :meth:`snapshot`.

    ``monotonic`` and ``wall`` are the clocks (injectable for tests). ``version`` goes up on every change (the
    page's stream sends the ward again when it moved).
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._beds: dict[str, Bed] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.version = 0  # bumped on every change
        self.duplicates = 0  # events dropped because their id was seen before

    # -- writers (MQTT thread) -------------------------------------------------------------------------------
    def touch(self) -> None:
        """Something outside the beds changed (the broker connection): the page should redraw."""
        with self._lock:
            self._changed()

    def _changed(self) -> None:
        self.version += 1

    def _bed(self, device_id: str) -> Bed:
        bed = self._beds.get(device_id)
        if bed is None:
            bed = self._beds[device_id] = Bed(device_id)
            log.info("new bed %s", device_id)
        return bed

    def apply_state(self, state: State) -> None:
        """A state heartbeat (or the bed's last will, ``state = "offline"``)."""
        with self._lock:
            bed = self._bed(state.device_id)
            if state.state == "offline":
                bed.offline = True
                self._changed()
                return
            bed.offline = False
            bed.last_heartbeat = self._monotonic()
            bed.state = state.state
            bed.state_time = state.time
            bed.pspi = _number(state.pspi)
            bed.fault = state.fault
            bed.every_s = state.every_s if state.every_s > 0 else DEFAULT_STATE_EVERY_S
            bed.health = dict(state.health or {})
            wall = self._wall()
            if bed.pspi is not None:
                bed.trend.append((wall, bed.pspi))
            self._prune_trend(bed, wall)
            self._reconcile_alerts(bed, state.alert_event_id, wall)
            self._changed()

    def _reconcile_alerts(self, bed: Bed, active: str | None, wall: float) -> None:
        """The device's state is the authority on which alert is active: a station that started after the alert
        was raised learns it from the (retained) state; alerts the state no longer names are over.

        A state ``alert`` that names no alert yet (the device names it once the ``alert_raised`` event was
        delivered) drops nothing."""
        bed.state_alert_id = active
        if active and active not in bed.alerts:
            bed.alerts[active] = Alert(active, None, bed.pspi, wall)
            self._apply_early_ack(bed, active)
        if active is None and bed.state == "alert":
            return
        state_time = bed.state_time
        for event_id, alert in list(bed.alerts.items()):
            if event_id == active:
                continue
            # only drop alerts raised before this state was sent (a state may overtake the alert_raised event)
            if state_time and alert.raised_time and alert.raised_time > state_time:
                continue
            del bed.alerts[event_id]

    def _apply_early_ack(self, bed: Bed, event_id: str) -> None:
        early = bed.early_acks.pop(event_id, None)
        if early:
            bed.alerts[event_id].acknowledged_by, bed.alerts[event_id].acknowledged_time = early

    @staticmethod
    def _prune_trend(bed: Bed, wall: float) -> None:
        while bed.trend and bed.trend[0][0] < wall - TREND_WINDOW_S:
            bed.trend.popleft()

    def apply_event(self, event: Event) -> bool:
        """An event from a bed; False (and nothing changes) when its id was seen before."""
        with self._lock:
            key = f"{event.device_id}\0{event.id}"
            if key in self._seen:
                self.duplicates += 1
                return False
            self._seen[key] = None
            if len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
            bed = self._bed(event.device_id)
            kind, when, detail, pspi, event_id = event.event, event.time, event.detail, _number(event.pspi), event.id
            wall = self._wall()
            bed.recent.appendleft({"id": event_id, "event": kind, "time": when, "pspi": pspi})
            # an event older than the last state message is history (redelivered after an outage): it is listed,
            # but the state, which is newer, says what is active now
            historic = bool(when and bed.state_time and when < bed.state_time)
            if kind == "alert_raised":
                if (
                    historic
                    and bed.state_alert_id != event_id
                    and not (bed.state == "alert" and not bed.state_alert_id)
                ):
                    pass  # the newer state names another alert, or none while not alerting: this one is over
                elif event_id not in bed.alerts:
                    bed.alerts[event_id] = Alert(event_id, when, pspi, wall)
                else:
                    bed.alerts[event_id].raised_time = bed.alerts[event_id].raised_time or when
                self._apply_early_ack(bed, event_id)
            elif kind == "alert_cleared":
                raised = detail.get("alert_event_id") or detail.get("event_id")
                if isinstance(raised, str) and raised in bed.alerts:
                    del bed.alerts[raised]
                else:  # one alert at a time per bed: the clear ends whatever was active before it
                    for key_, alert in list(bed.alerts.items()):
                        if not (when and alert.raised_time and alert.raised_time > when):
                            del bed.alerts[key_]
            elif kind in ("alert_interrupted", "alert_resumed"):
                for alert in bed.alerts.values():
                    alert.interrupted = kind == "alert_interrupted"
            elif kind == "alert_acknowledged":
                target = detail.get("event_id")
                by = str(detail.get("by") or "?")
                if isinstance(target, str):
                    if target in bed.alerts:
                        bed.alerts[target].acknowledged_by = by
                        bed.alerts[target].acknowledged_time = when
                    else:
                        bed.early_acks[target] = (by, when)
                        while len(bed.early_acks) > EARLY_ACKS:  # acks of alerts that never came: oldest go
                            bed.early_acks.pop(next(iter(bed.early_acks)))
            if not historic and event.state and not bed.offline:
                bed.state = event.state
                if pspi is not None:
                    bed.pspi = pspi
            self._changed()
            return True

    def ack_sent(self, device_id: str, event_id: str, by: str) -> bool:
        """Record that this station published an ack for ``event_id`` (shown until the device confirms)."""
        with self._lock:
            bed = self._beds.get(device_id)
            alert = bed.alerts.get(event_id) if bed else None
            if alert is None:
                return False
            alert.ack_sent_by = by
            alert.ack_sent_at = self._wall()
            self._changed()
            return True

    def has_alert(self, device_id: str, event_id: str) -> bool:
        with self._lock:
            bed = self._beds.get(device_id)
            return bool(bed and event_id in bed.alerts)

    def forget(self, device_id: str) -> None:
        """Drop a bed (its retained state was cleared from the broker: it was decommissioned)."""
        with self._lock:
            if self._beds.pop(device_id, None) is not None:
                self._changed()

    # -- readers (web server) ----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Every bed as plain JSON-able data, most urgent first, then by name."""
        with self._lock:
            now, wall = self._monotonic(), self._wall()
            beds = []
            for bed in self._beds.values():
                self._prune_trend(bed, wall)
                key, reason = bed.shown_state(now)
                style = STATE_STYLES[key]
                unacked = any(a.acknowledged_by is None for a in bed.alerts.values())
                silent = bed.silent_for(now)
                beds.append(
                    {
                        "device_id": bed.device_id,
                        "state": bed.state,
                        "shown": key,
                        "label": style.label,
                        "css": style.css,
                        "severity": style.severity + (1 if unacked else 0),
                        "reason": reason,
                        "pspi": bed.pspi,
                        "fault": bed.fault,
                        "every_s": bed.every_s,
                        "since_heartbeat_s": None if silent is None else round(silent, 1),
                        "health": bed.health,
                        "trend": downsample(list(bed.trend), wall - TREND_WINDOW_S, wall, TREND_POINTS),
                        "alerts": [a.to_json() for a in bed.alerts.values()],
                        "recent": list(bed.recent),
                    }
                )
            beds.sort(key=lambda b: (-b["severity"], b["device_id"]))
            return {"time": wall, "window_s": TREND_WINDOW_S, "beds": beds}
