"""PSPI over time: smoothing in seconds, an optional neutral baseline, and an alert state machine.

States (:class:`PainState`):

- ``unavailable``: the model has no AU-intensity head, so there is no PSPI at all.
- ``calibrating``: collecting the patient's neutral baseline (first ``baseline_s`` seconds with a face).
- ``clear``: a face is visible and the (smoothed, baseline-corrected) PSPI does not warrant an alert.
- ``alert``: PSPI stayed >= ``threshold`` for ``raise_after_s``; it clears only after staying below
  ``clear_threshold`` (< threshold: hysteresis) for ``clear_after_s``.
- ``no_face``: no face for ``face_lost_after_s``. This is not "no pain": smoothing and timers restart
  when the face returns. Shorter gaps hold the current state.

All durations are in seconds of the frame clock (media time for files, monotonic time for cameras), so
behaviour does not depend on the frame rate.
"""

from __future__ import annotations

import collections
import math
import statistics
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from edge_sdk.errors import InputError


class PainState(str, Enum):
    UNAVAILABLE = "unavailable"
    CALIBRATING = "calibrating"
    CLEAR = "clear"
    ALERT = "alert"
    NO_FACE = "no_face"


@dataclass(frozen=True)
class PainSettings:
    """Thresholds are PSPI points (0-16); durations are seconds."""

    threshold: float = 4.0
    clear_threshold: float = 3.0
    raise_after_s: float = 3.0
    clear_after_s: float = 5.0
    smoothing: str = "ema"  # "ema" | "median" | "none"
    window_s: float = 2.0
    baseline_s: float = 0.0
    face_lost_after_s: float = 2.0

    def __post_init__(self) -> None:
        if self.clear_threshold > self.threshold:
            raise InputError(
                f"pain.clear_threshold ({self.clear_threshold}) must not exceed pain.threshold ({self.threshold})"
            )
        if self.smoothing not in SMOOTHERS:
            raise InputError(f"pain.smoothing {self.smoothing!r}: expected one of {', '.join(SMOOTHERS)}")


# ---- smoothing -------------------------------------------------------------------------------------
class Smoother:
    """``update(t, value) -> smoothed``; ``reset()`` forgets the history."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s

    def update(self, t: float, value: float) -> float:
        return value

    def reset(self) -> None:
        pass


class EmaSmoother(Smoother):
    """Exponential moving average with time constant ``window_s``: weights adapt to uneven frame spacing."""

    def __init__(self, window_s: float) -> None:
        super().__init__(window_s)
        self._value: float | None = None
        self._t = 0.0

    def update(self, t: float, value: float) -> float:
        if self._value is None or self.window_s <= 0:
            self._value = value
        else:
            alpha = 1.0 - math.exp(-max(0.0, t - self._t) / self.window_s)
            self._value += alpha * (value - self._value)
        self._t = t
        return self._value

    def reset(self) -> None:
        self._value = None


class MedianSmoother(Smoother):
    """Median of the values in the last ``window_s`` seconds (robust to single-frame spikes)."""

    def __init__(self, window_s: float) -> None:
        super().__init__(window_s)
        self._values: collections.deque[tuple[float, float]] = collections.deque()

    def update(self, t: float, value: float) -> float:
        self._values.append((t, value))
        while self._values and self._values[0][0] <= t - self.window_s:
            self._values.popleft()
        return statistics.median(v for _, v in self._values)

    def reset(self) -> None:
        self._values.clear()


SMOOTHERS: dict[str, type[Smoother]] = {"ema": EmaSmoother, "median": MedianSmoother, "none": Smoother}


# ---- the state machine -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PainEvent:
    """A state change: ``alert_raised``, ``alert_cleared``, ``face_lost``, ``face_found``, ``baseline_captured``."""

    kind: str
    timestamp: float
    previous: str
    state: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "timestamp": round(self.timestamp, 6),
            "from": self.previous,
            "to": self.state,
            **self.detail,
        }


@dataclass(frozen=True)
class PainStatus:
    """The pain picture after one frame. PSPI values are None when there is no face or no AU head."""

    state: PainState
    pspi: float | None = None  # this frame, raw
    smoothed: float | None = None
    score: float | None = None  # smoothed minus baseline (what the thresholds see)
    baseline: float | None = None
    events: tuple[PainEvent, ...] = ()

    def to_record(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "state": self.state.value,
            "pspi": r(self.pspi),
            "pspi_smoothed": r(self.smoothed),
            "pain_score": r(self.score),
            "baseline": r(self.baseline),
        }


class PainMonitor:
    """Feed ``update(t, pspi_or_None)`` once per frame; read the state and the transition events."""

    def __init__(self, settings: PainSettings | None = None, available: bool = True) -> None:
        self.settings = settings or PainSettings()
        self.available = available
        self._smoother = SMOOTHERS[self.settings.smoothing](self.settings.window_s)
        self.state = PainState.CLEAR if available else PainState.UNAVAILABLE
        self.baseline: float | None = None
        self._baseline_values: list[float] = []
        self._baseline_start: float | None = None
        self._start: float | None = None
        self._last_face: float | None = None
        self._above_since: float | None = None
        self._below_since: float | None = None
        if available and self.settings.baseline_s > 0:
            self.state = PainState.CALIBRATING

    def update(self, t: float, pspi: float | None) -> PainStatus:
        if not self.available:
            return PainStatus(PainState.UNAVAILABLE)
        if self._start is None:
            self._start = t
        events: list[PainEvent] = []
        if pspi is None:
            self._no_face(t, events)
            return PainStatus(self.state, baseline=self.baseline, events=tuple(events))
        if self.state is PainState.NO_FACE:
            self._move(PainState.CALIBRATING if self._calibrating() else PainState.CLEAR, "face_found", t, events)
            self._smoother.reset()
        self._last_face = t
        smoothed = self._smoother.update(t, pspi)
        if self.state is PainState.CALIBRATING:
            self._calibrate(t, pspi, events)
            return PainStatus(self.state, pspi, smoothed, None, self.baseline, tuple(events))
        score = max(0.0, smoothed - (self.baseline or 0.0))
        self._hysteresis(t, score, events)
        return PainStatus(self.state, pspi, smoothed, score, self.baseline, tuple(events))

    # ---- steps -------------------------------------------------------------------------------------
    def _move(self, state: PainState, kind: str, t: float, events: list[PainEvent], **detail: Any) -> None:
        events.append(PainEvent(kind, t, self.state.value, state.value, detail))
        self.state = state

    def _calibrating(self) -> bool:
        return self.settings.baseline_s > 0 and self.baseline is None

    def _no_face(self, t: float, events: list[PainEvent]) -> None:
        if self.state is PainState.NO_FACE:
            return
        since = self._last_face if self._last_face is not None else self._start
        assert since is not None
        if t - since >= self.settings.face_lost_after_s:
            self._move(PainState.NO_FACE, "face_lost", t, events, last_face_at=self._last_face)
            self._above_since = self._below_since = None
            self._smoother.reset()
            if self._calibrating():  # an interrupted baseline restarts with the next face
                self._baseline_values.clear()
                self._baseline_start = None

    def _calibrate(self, t: float, pspi: float, events: list[PainEvent]) -> None:
        if self._baseline_start is None:
            self._baseline_start = t
        self._baseline_values.append(pspi)
        if t - self._baseline_start >= self.settings.baseline_s:
            self.baseline = float(statistics.median(self._baseline_values))
            self._move(
                PainState.CLEAR,
                "baseline_captured",
                t,
                events,
                baseline=round(self.baseline, 4),
                frames=len(self._baseline_values),
            )

    def _hysteresis(self, t: float, score: float, events: list[PainEvent]) -> None:
        s = self.settings
        if self.state is PainState.CLEAR:
            if score >= s.threshold:
                self._above_since = t if self._above_since is None else self._above_since
                if t - self._above_since >= s.raise_after_s:
                    self._move(
                        PainState.ALERT, "alert_raised", t, events, score=round(score, 4), above_since=self._above_since
                    )
                    self._above_since = None
            else:
                self._above_since = None
        elif self.state is PainState.ALERT:
            if score < s.clear_threshold:
                self._below_since = t if self._below_since is None else self._below_since
                if t - self._below_since >= s.clear_after_s:
                    self._move(
                        PainState.CLEAR,
                        "alert_cleared",
                        t,
                        events,
                        score=round(score, 4),
                        below_since=self._below_since,
                    )
                    self._below_since = None
            else:
                self._below_since = None
