"""PSPI over time: smoothing in seconds, an optional neutral baseline, and an alert state machine.

The monitor never says "no pain" without evidence: ``clear`` needs a finite score of a face seen within
``face_lost_after_s``, and every way of not knowing is a state of its own. States (:class:`PainState`):

- ``unknown``: no frame scored yet (the start of a run, or after the signal came back). After any (re)start
  (run start, signal back, face found, fault recovered, baseline done) the first score leaves ``unknown`` for
  ``clear`` only when it is below ``threshold``; at or above it the state stays ``unknown`` until the raise
  timer fires ``alert`` (or the score drops). An alert interrupted by signal loss (``alert_interrupted``)
  resumes at once (``alert_resumed``) if the first score after the return is still >= ``clear_threshold``.
- ``unavailable``: the model has no AU-intensity head, so there is no PSPI at all.
- ``calibrating``: collecting the patient's neutral baseline (first ``baseline_s`` seconds with a face). A
  baseline at or above ``clear_threshold`` (taken during pain) is not used: ``baseline_rejected``, baseline 0.
- ``clear``: a face is visible and the (smoothed, baseline-corrected) PSPI does not warrant an alert.
- ``alert``: PSPI stayed >= ``threshold`` for ``raise_after_s``; it clears only after staying below
  ``clear_threshold`` (< threshold: hysteresis) for ``clear_after_s``.
- ``no_face``: no face for ``face_lost_after_s``. This is not "no pain": smoothing and timers restart
  when the face returns. Shorter gaps hold the current state.
- ``no_signal``: the source is lost, frozen (no frame for ``frame_timeout_s``) or was never there
  (:meth:`PainMonitor.signal_lost`). The next frame starts over from ``unknown``.
- ``fault``: the monitor itself is failing. The model or the detector failed, or gave non-finite or
  out-of-range outputs, for ``fault_after_s`` (a ``model_fault`` event marks the first bad frame; a good
  frame ends the episode with ``model_recovered`` and the state it interrupted resumes); or the result log
  is failing or the pipeline is stalled (:meth:`PainMonitor.log_fault`). Such a fault never hides an
  ``alert``: the pain alert stays the state shown, and the fault is in ``PainStatus.fault`` and its own event.

Bad frames are never scored: their pain is null and smoothing skips them. All durations are in seconds
of the frame clock (media time for files, monotonic time for cameras), so behaviour does not depend on
the frame rate or on how fast a file is processed.

Events are stamped on the record clock, the one frames are stamped with (the capture time): for a file,
the runner passes the capture time as ``at`` and the event keeps its media time as ``media_time``, so
events and frames line up in the log while the timers run on the media clock.
"""

from __future__ import annotations

import collections
import math
import statistics
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from edge_sdk.contract.ranges import Range
from edge_sdk.errors import InputError

# How long the monitor waits before saying the signal or the model is gone: > 0 and at most a minute.
SIGNAL_S = Range(0, 60, low_open=True)
PSPI_MAX = 16.0
MAX_FAULT_CHARS = 240  # PainStatus.fault goes into every record: one short line (the log refuses long strings)


class PainState(str, Enum):
    UNKNOWN = "unknown"
    UNAVAILABLE = "unavailable"
    CALIBRATING = "calibrating"
    CLEAR = "clear"
    ALERT = "alert"
    NO_FACE = "no_face"
    NO_SIGNAL = "no_signal"
    FAULT = "fault"


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
    frame_timeout_s: float = 2.0  # no new frame for this long: no_signal
    fault_after_s: float = 1.0  # bad model/detector output for this long: fault

    def __post_init__(self) -> None:
        for name in ("frame_timeout_s", "fault_after_s"):
            problem = SIGNAL_S(getattr(self, name))
            if problem:
                raise InputError(f"pain.{name} = {getattr(self, name)!r}: {problem}")
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
    """A change the monitor reports: ``alert_raised``, ``alert_cleared``, ``alert_interrupted`` (signal lost
    during an alert), ``alert_resumed``, ``face_lost``, ``face_found``, ``baseline_captured``,
    ``baseline_rejected``, ``model_fault`` (first bad frame of an episode), ``model_recovered``.

    ``previous``/``state`` are the pain assessment's states before and after (a log fault shown over them
    is not part of it)."""

    kind: str
    timestamp: float  # the record clock: the capture time of the frame that caused it
    previous: str
    state: str
    detail: dict[str, Any] = field(default_factory=dict)
    media_time: float | None = None  # seconds into the file (file sources), else None

    def to_record(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "timestamp": round(self.timestamp, 6),
            "media_time": None if self.media_time is None else round(self.media_time, 4),
            "from": self.previous,
            "to": self.state,
            **self.detail,
        }


@dataclass(frozen=True)
class PainStatus:
    """The pain picture after one frame. PSPI values are None unless this frame's face was scored.

    ``fault`` is the active fault in words ("model: ...", "log: ..."), None when there is none."""

    state: PainState
    pspi: float | None = None  # this frame, raw
    smoothed: float | None = None
    score: float | None = None  # smoothed minus baseline (what the thresholds see)
    baseline: float | None = None
    events: tuple[PainEvent, ...] = ()
    fault: str | None = None

    def to_record(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "state": self.state.value,
            "pspi": r(self.pspi),
            "pspi_smoothed": r(self.smoothed),
            "pain_score": r(self.score),
            "baseline": r(self.baseline),
            "fault": self.fault,
        }


@dataclass
class FaultEpisode:
    """Consecutive bad frames: since when, how many, the first problem, and whether ``fault`` was entered."""

    since: float
    problem: str
    frames: int = 0
    entered: bool = False


class PainMonitor:
    """Feed ``update(t, pspi_or_None, fault)`` once per frame; read the state and the transition events.

    ``pspi`` None means no face this frame; ``fault`` (a problem in words) means the frame could not be
    scored (model or detector failure, bad outputs). :meth:`signal_lost` and :meth:`log_fault` report the
    conditions that arrive without a frame.

    >>> monitor = PainMonitor(PainSettings(threshold=3.0, raise_after_s=1.0, smoothing="none"))
    >>> [monitor.update(t, 5.0).state.value for t in (0.0, 0.5, 1.0)]
    ['unknown', 'unknown', 'alert']
    """

    def __init__(self, settings: PainSettings | None = None, available: bool = True) -> None:
        self.settings = settings or PainSettings()
        self.available = available
        self._smoother = SMOOTHERS[self.settings.smoothing](self.settings.window_s)
        self._pain = PainState.UNKNOWN if available else PainState.UNAVAILABLE
        self.baseline: float | None = None
        self._baseline_values: list[float] = []
        self._baseline_start: float | None = None
        self._looking_since: float | None = None  # when the current search for a face began
        self._last_face: float | None = None
        self._above_since: float | None = None
        self._below_since: float | None = None
        self._no_signal = False
        self._model: FaultEpisode | None = None
        self._outside: dict[str, str] = {}  # source ("log", "watchdog") -> its problem (replaced, never mutated)
        self._fresh = True  # the next scored face (re)starts the assessment (see _enter)
        self._last_t: float | None = None  # the last frame's time
        self._alert_since: float | None = None  # when the current alert was raised
        self._interrupted: float | None = None  # an alert cut by signal loss: when it was raised
        self._media = False  # the frame clock is a file's media clock (events then carry media_time)
        self._record_times: dict[float, float] = {}  # frame clock -> record clock, for the instants remembered

    # ---- what is shown -------------------------------------------------------------------------
    @property
    def state(self) -> PainState:
        """The state shown: a fault first (a log fault never over an alert), then no signal, then the pain state."""
        if self._model is not None and self._model.entered:
            return PainState.FAULT
        if self._outside and self._pain is not PainState.ALERT:
            return PainState.FAULT
        if self._no_signal:
            return PainState.NO_SIGNAL
        return self._pain

    @property
    def fault(self) -> str | None:
        """The active faults in words, or None."""
        parts = []
        if self._model is not None:
            parts.append(f"model: {self._model.problem}")
        parts += [f"{source}: {problem}" for source, problem in self._outside.items()]
        return "; ".join(parts)[:MAX_FAULT_CHARS] or None

    def _status(
        self,
        events: list[PainEvent],
        pspi: float | None = None,
        smoothed: float | None = None,
        score: float | None = None,
    ) -> PainStatus:
        return PainStatus(self.state, pspi, smoothed, score, self.baseline, tuple(events), self.fault)

    # ---- inputs ----------------------------------------------------------------------------------
    def update(
        self,
        t: float,
        pspi: float | None,
        fault: str | None = None,
        face: bool | None = None,
        at: float | None = None,
    ) -> PainStatus:
        """One frame at time ``t``: its PSPI (None: no face), or the ``fault`` that kept it from being scored.

        ``face`` says a face was analysed without a fault (default: ``pspi is not None``; a model without
        pain passes it). Only such a frame ends a fault episode: a frame without a face proves nothing.
        ``at``: the frame's capture time when ``t`` is a file's media time; events are then stamped ``at``
        with ``t`` as their ``media_time`` (None: ``t`` is the capture time itself)."""
        events: list[PainEvent] = []
        self._media = at is not None
        self._record_times[t] = t if at is None else at
        try:
            return self._update(t, pspi, fault, face, events)
        finally:
            self._forget_record_times()

    def _update(
        self, t: float, pspi: float | None, fault: str | None, face: bool | None, events: list[PainEvent]
    ) -> PainStatus:
        self._last_t = t
        if self._looking_since is None or self._no_signal:
            self._looking_since = t  # the run starts, or frames are back: a new search for a face
            self._no_signal = False
        if fault is None and pspi is not None and not 0.0 <= pspi <= PSPI_MAX:  # also NaN and infinities
            fault = f"PSPI {pspi} is not a number in [0, {PSPI_MAX:g}]"
        if fault is not None:
            self._model_bad(t, fault, events)
            return self._status(events)
        analysed = pspi is not None if face is None else face
        if analysed:
            self._model_ok(t, events)
        if not self.available:
            return self._status(events)
        if pspi is None:
            self._no_face(t, events)
            return self._status(events)
        if self._fresh:
            self._smoother.reset()
        self._last_face = t
        smoothed = self._smoother.update(t, pspi)
        score = max(0.0, smoothed - (self.baseline or 0.0))
        if self._fresh:
            self._fresh = False
            self._enter(t, score, events)
        if self._pain is PainState.CALIBRATING:
            if not self._calibrate(t, pspi, smoothed, events):
                return self._status(events, pspi, smoothed)
            score = max(0.0, smoothed - (self.baseline or 0.0))
        self._hysteresis(t, score, events)
        return self._status(events, pspi, smoothed, score)

    def signal_lost(self) -> list[PainEvent]:
        """The source is lost, frozen or absent: ``no_signal`` until the next frame, which starts over
        from ``unknown`` (timers, smoothing and an unfinished baseline restart; a captured baseline stays).

        Returns the events: ``alert_interrupted`` (at the last frame's time, with how long the alert had
        lasted) when an alert was active."""
        events: list[PainEvent] = []
        if self._no_signal:
            return events
        self._no_signal = True
        if self.available:
            if self._pain is PainState.ALERT:
                t = self._last_t if self._last_t is not None else 0.0
                since = self._alert_since if self._alert_since is not None else t
                self._interrupted = since
                detail = {"reason": "signal lost", "alert_since": self._at(since), "alert_s": round(t - since, 3)}
                events.append(
                    self._event("alert_interrupted", t, PainState.ALERT.value, PainState.UNKNOWN.value, detail)
                )
            self._pain = PainState.UNKNOWN
        self._restart()
        return events

    def log_fault(self, problem: str | None, source: str = "log") -> None:
        """A fault outside the model (``source``: the result log, or the runner's ``watchdog`` for a stalled
        pipeline) in words or, with None, over."""
        outside = dict(self._outside)  # replaced whole: the watchdog thread calls this too
        if problem is None:
            outside.pop(source, None)
        else:
            outside[source] = problem
        self._outside = outside

    # ---- the record clock ------------------------------------------------------------------------
    def _at(self, t: float | None) -> float | None:
        """Frame-clock time ``t`` (one this monitor remembers) on the record clock."""
        return None if t is None else self._record_times.get(t, t)

    def _event(self, kind: str, t: float, previous: str, state: str, detail: dict[str, Any]) -> PainEvent:
        """An event of the frame at frame-clock ``t``, stamped on the record clock."""
        at = self._at(t)
        assert at is not None
        return PainEvent(kind, at, previous, state, detail, t if self._media else None)

    def _forget_record_times(self) -> None:
        """Keep the record-clock times of the instants still remembered (a few), drop the rest."""
        kept = {
            self._last_t,
            self._looking_since,
            self._last_face,
            self._above_since,
            self._below_since,
            self._alert_since,
            self._interrupted,
        }
        self._record_times = {t: at for t, at in self._record_times.items() if t in kept}

    # ---- steps -------------------------------------------------------------------------------------
    def _enter(self, t: float, score: float, events: list[PainEvent]) -> None:
        """The first scored face after a (re)start: ``clear`` only below ``threshold`` (else ``unknown`` until
        the raise timer fires); an alert cut by signal loss resumes while the score is >= ``clear_threshold``;
        an alert that a model fault interrupted goes on."""
        interrupted, self._interrupted = self._interrupted, None
        if self._pain is PainState.ALERT:
            return
        if self._calibrating():
            state = PainState.CALIBRATING
        elif interrupted is not None and score >= self.settings.clear_threshold:
            since = self._at(interrupted)
            self._move(PainState.ALERT, "alert_resumed", t, events, score=round(score, 4), alert_since=since)
            return
        else:
            state = PainState.CLEAR if score < self.settings.threshold else PainState.UNKNOWN
        if self._pain is PainState.NO_FACE:
            self._move(state, "face_found", t, events)
        else:
            self._pain = state  # nothing but unknown (or a fault) was shown before it

    def _move(self, state: PainState, kind: str, t: float, events: list[PainEvent], **detail: Any) -> None:
        events.append(self._event(kind, t, self._pain.value, state.value, detail))
        if state is PainState.ALERT:
            self._alert_since = t if kind == "alert_raised" else self._alert_since
        self._pain = state

    def _restart(self) -> None:
        """Forget the timers and the smoothing history (and an unfinished baseline)."""
        self._above_since = self._below_since = None
        self._smoother.reset()
        self._fresh = True
        if self._calibrating():  # an interrupted baseline restarts with the next face
            self._baseline_values.clear()
            self._baseline_start = None

    def _calibrating(self) -> bool:
        return self.settings.baseline_s > 0 and self.baseline is None

    def _model_bad(self, t: float, problem: str, events: list[PainEvent]) -> None:
        """A frame that could not be scored: the first of an episode is a ``model_fault`` event; after
        ``fault_after_s`` of them the state is ``fault`` (timers and smoothing restart, as after a lost face)."""
        episode = self._model
        if episode is None:
            episode = self._model = FaultEpisode(t, problem)
            events.append(self._event("model_fault", t, self._pain.value, self._pain.value, {"problem": problem}))
        episode.frames += 1
        if not episode.entered and t - episode.since >= self.settings.fault_after_s:
            episode.entered = True
            if self._pain is PainState.CLEAR:  # its timers are gone: the return must prove clear again
                self._pain = PainState.UNKNOWN
            self._restart()

    def _model_ok(self, t: float, events: list[PainEvent]) -> None:
        """A face analysed without a fault ends a fault episode (``model_recovered``); the state the
        fault interrupted is shown again."""
        episode, self._model = self._model, None
        if episode is not None:
            detail = {"bad_frames": episode.frames, "fault_s": round(t - episode.since, 3), "problem": episode.problem}
            events.append(self._event("model_recovered", t, self._pain.value, self._pain.value, detail))

    def _no_face(self, t: float, events: list[PainEvent]) -> None:
        if self._pain is PainState.NO_FACE:
            return
        assert self._looking_since is not None
        since = max(self._looking_since, self._last_face if self._last_face is not None else self._looking_since)
        if t - since >= self.settings.face_lost_after_s:
            self._move(PainState.NO_FACE, "face_lost", t, events, last_face_at=self._at(self._last_face))
            self._interrupted = None
            self._restart()

    def _calibrate(self, t: float, pspi: float, smoothed: float, events: list[PainEvent]) -> bool:
        """Collect the baseline; True once it is done (captured, or rejected: taken during pain)."""
        if self._baseline_start is None:
            self._baseline_start = t
        self._baseline_values.append(pspi)
        if t - self._baseline_start < self.settings.baseline_s:
            return False
        measured = float(statistics.median(self._baseline_values))
        frames = len(self._baseline_values)
        if measured >= self.settings.clear_threshold:  # a "neutral" face in pain would hide that pain
            self.baseline = 0.0
            kind = "baseline_rejected"
            detail = {
                "measured": round(measured, 4),
                "frames": frames,
                "reason": f"baseline {measured:g} >= clear_threshold {self.settings.clear_threshold:g}: not neutral",
            }
        else:
            self.baseline = measured
            kind, detail = "baseline_captured", {"baseline": round(measured, 4), "frames": frames}
        score = max(0.0, smoothed - self.baseline)
        state = PainState.CLEAR if score < self.settings.threshold else PainState.UNKNOWN
        self._move(state, kind, t, events, **detail)
        return True

    def _hysteresis(self, t: float, score: float, events: list[PainEvent]) -> None:
        s = self.settings
        if self._pain in (PainState.CLEAR, PainState.UNKNOWN):
            if score >= s.threshold:
                self._above_since = t if self._above_since is None else self._above_since
                if t - self._above_since >= s.raise_after_s:
                    self._move(
                        PainState.ALERT,
                        "alert_raised",
                        t,
                        events,
                        score=round(score, 4),
                        above_since=self._at(self._above_since),
                    )
                    self._above_since = None
            else:
                self._above_since = None
                self._pain = PainState.CLEAR  # from unknown: the score is below the alert now
        elif self._pain is PainState.ALERT:
            if score < s.clear_threshold:
                self._below_since = t if self._below_since is None else self._below_since
                if t - self._below_since >= s.clear_after_s:
                    self._move(
                        PainState.CLEAR,
                        "alert_cleared",
                        t,
                        events,
                        score=round(score, 4),
                        below_since=self._at(self._below_since),
                    )
                    self._below_since = None
            else:
                self._below_since = None
