"""The runtime loop: frames -> analysis -> pain state -> sinks, with pacing, status, watchdog and clean stop.

The loop signals its own faults: a detector or model failure or bad outputs (``model_fault``), a sink that
fails to write or reports itself unhealthy (``log_fault``, polled with :func:`sink_health` every
``HEALTH_EVERY_S``, never blocking), a frame stuck for ``watchdog_s`` (``pipeline_stalled``: a ``watchdog``
fault until ``pipeline_recovered``), and a source that is lost or frozen (``source_lost``: ``no_signal``).
Each one is an event, a log line (logger ``edge_sdk.pipeline.runner``: warnings for faults, info for state
changes and status lines; ``edge-sdk run`` shows them on stderr) and a state
(:class:`~edge_sdk.pipeline.alerts.PainState`); the run's :class:`RunSummary` lists the faults, which make
``edge-sdk run`` exit non-zero.

Every record and event is stamped on one clock, the capture clock (``time.monotonic()`` when the frame was
read, :attr:`Frame.timestamp <edge_sdk.capture.base.Frame>`), which the encrypted log stores as wall time.
Frames and pain events of a file source also carry ``media_time`` (seconds into the file); the pain
timers run on it so that a file behaves the same at any processing speed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_sdk.capture.base import Frame, redact_url
from edge_sdk.capture.stream import Capture, CaptureEvent
from edge_sdk.pipeline.alerts import PainEvent, PainMonitor, PainState
from edge_sdk.pipeline.analyze import MAX_PROBLEM_CHARS, PAIN_UNAVAILABLE, AnalysisFault, FaceAnalyzer
from edge_sdk.pipeline.result import STAGES, FaceResult, FrameResult
from edge_sdk.pipeline.sinks import Sink, SinkHealth, sink_health

log = logging.getLogger(__name__)

HEALTH_EVERY_S = 1.0  # how often the sinks' health is polled (a clock comparison per frame otherwise)
IDLE_S = 0.5  # how often the loop wakes up while no frame arrives
PAIN_NOTICES = frozenset(
    {"alert_raised", "alert_cleared", "alert_interrupted", "alert_resumed"}
    | {"face_lost", "face_found", "baseline_rejected"}
)


@dataclass
class StageStats:
    """Running sums of per-stage milliseconds (for means over a period or the whole run)."""

    frames: int = 0
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def add(self, latency: Mapping[str, float]) -> None:
        self.frames += 1
        for stage in STAGES:
            self.totals[stage] += latency.get(stage, 0.0)

    def means(self) -> dict[str, float]:
        n = max(1, self.frames)
        return {stage: round(total / n, 3) for stage, total in self.totals.items()}


@dataclass
class RunSummary:
    """What a run did, printed at the end and recorded as the ``run_stopped`` event."""

    frames: int = 0
    frames_with_face: int = 0
    faces: int = 0
    wall_s: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)
    capture: dict[str, Any] = field(default_factory=dict)
    alerts_raised: int = 0
    final_state: str = ""
    stopped_by: str = "end of source"
    # "model" / "watchdog" -> the run's first problem of that kind; "log" -> its first, or the one at close
    faults: dict[str, str] = field(default_factory=dict)
    log_rows_dropped: int = 0  # result rows the sinks dropped or failed to write

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def detection_rate(self) -> float:
        return self.frames_with_face / self.frames if self.frames else 0.0

    def to_record(self) -> dict[str, Any]:
        return {
            "event": "run_stopped",
            "frames": self.frames,
            "frames_with_face": self.frames_with_face,
            "detection_rate": round(self.detection_rate, 4),
            "faces": self.faces,
            "wall_s": round(self.wall_s, 3),
            "fps": round(self.fps, 2),
            "stage_ms": self.stage_ms,
            "capture": self.capture,
            "alerts_raised": self.alerts_raised,
            "final_state": self.final_state,
            "stopped_by": self.stopped_by,
            "faults": dict(self.faults),
            "log_rows_dropped": self.log_rows_dropped,
        }


class Pipeline:
    """Wire an analyzer, a pain monitor and sinks; ``run(capture)`` until the source ends or ``stop()``.

    ``on_result(FrameResult)`` is the in-process callback for kiosk apps. Notices are logged (this module's
    logger): faults and lost signals as warnings, the rest as info.
    """

    def __init__(
        self,
        analyzer: FaceAnalyzer,
        pain: PainMonitor,
        sinks: Sequence[Sink] = (),
        on_result: Callable[[FrameResult], None] | None = None,
        max_fps: float | None = None,
        max_frames: int | None = None,
        status_every_s: float = 5.0,
        watchdog_s: float = 10.0,
        preview: Any = None,
    ) -> None:
        self.analyzer = analyzer
        self.pain = pain
        self.sinks = list(sinks)
        self.on_result = on_result
        self.max_fps = max_fps
        self.max_frames = max_frames
        self.status_every_s = status_every_s
        self.watchdog_s = watchdog_s
        self.preview = preview
        self.summary = RunSummary()
        self._stop = threading.Event()
        self._stop_reason = ""
        self._sink_lock = threading.Lock()
        self._busy_since: float | None = None  # when the current frame's processing began
        self._stage = ""
        self._stalled = False
        self._capture: Capture | None = None
        self._last_frame_at = self._last_wait_notice = time.monotonic()
        self._shown = pain.state  # the state last announced on stderr
        self._write_errors: dict[int, str] = {}  # sink index -> its last write failure (cleared by a good write)
        self._write_lost: dict[int, int] = {}  # sink index -> records it failed to take
        self._log_fault_since: float | None = None
        self._dropped_seen = 0
        self._health_at = 0.0
        self._started = time.monotonic()  # (reset by run()): camera events are shown as seconds since it
        if not pain.available:
            self.warn(PAIN_UNAVAILABLE)
            self.emit_event({"event": "pain_unavailable", "timestamp": time.monotonic(), "reason": PAIN_UNAVAILABLE})

    # ---- control -------------------------------------------------------------------------------
    def stop(self, reason: str = "stop requested") -> None:
        """Ask the loop to finish after the current frame (safe from signal handlers and other threads)."""
        if not self._stop.is_set():
            self._stop_reason = reason
        self._stop.set()
        if self._capture is not None:
            self._capture.request_stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def notice(self, text: str, level: int = logging.INFO) -> None:
        """One line for the person watching (URL credentials redacted): a log record of this module."""
        log.log(level, "%s", redact_url(text))

    def warn(self, text: str) -> None:
        """A :meth:`notice` at warning level: faults, lost signals, alerts."""
        self.notice(text, logging.WARNING)

    # ---- output --------------------------------------------------------------------------------
    def emit_event(self, record: Mapping[str, Any]) -> None:
        """Write an event to every sink (URL credentials in its text redacted)."""
        record = {k: redact_url(v) if isinstance(v, str) else v for k, v in record.items()}
        with self._sink_lock:
            for index, sink in enumerate(self.sinks):
                self._write(index, sink, record, "event", record.get("timestamp"))

    def _write(self, index: int, sink: Sink, record: Mapping[str, Any], kind: str, timestamp: Any) -> None:
        """``sink.write``; a sink that raises is a log fault (polled in :meth:`check_sinks`), never a crash."""
        try:
            sink.write(record, kind=kind, timestamp=timestamp)
        except Exception as exc:  # a full disk, a closed pipe, a record the sink refuses
            self._write_errors[index] = f"{type(sink).__name__} write failed: {type(exc).__name__}: {exc}"
            self._write_lost[index] = self._write_lost.get(index, 0) + 1
        else:
            if self._write_errors:
                self._write_errors.pop(index, None)

    def on_capture_event(self, event: CaptureEvent) -> None:
        """A capture event (delivered on the loop's thread): lost/frozen sources are ``no_signal``."""
        pain_events = self.pain.signal_lost() if event.kind == "source_lost" else []
        if event.kind in ("source_lost", "source_restored"):
            detail = f" after {event.detail['gap_s']} s" if "gap_s" in event.detail else ""
            text = f"capture: {event.kind.replace('_', ' ')}{detail} ({event.detail.get('reason', '')})".rstrip()
            self.notice(text, logging.WARNING if event.kind == "source_lost" else logging.INFO)
        self.emit_event(event.to_record())
        for pain_event in pain_events:  # an alert cut by the loss (never silent)
            self.emit_event(pain_event.to_record())
            self._announce_event(pain_event)
        self._announce_state()

    def _announce_state(self) -> None:
        """One stderr line when the state shown enters or leaves ``fault``/``no_signal``/``unknown``."""
        state = self.pain.state
        if state is self._shown:
            return
        previous, self._shown = self._shown, state
        loud = (PainState.FAULT, PainState.NO_SIGNAL, PainState.UNKNOWN)
        if state in loud or previous in loud:
            why = f" ({self.pain.fault})" if state is PainState.FAULT else ""
            self.notice(
                f"state: {previous.value} -> {state.value}{why}", logging.WARNING if state in loud else logging.INFO
            )

    # ---- one frame -----------------------------------------------------------------------------
    def process(self, frame: Frame) -> FrameResult:
        """Analyse one frame, update the pain state, deliver the result to sinks and the callback."""
        latency: dict[str, float] = {"decode": frame.decode_ms}
        self._busy_since, self._stage = time.monotonic(), "analyze"
        faces, ran, fault = self._analyze(frame, latency)
        t0 = time.perf_counter()
        primary = faces[0].pspi if faces and self.pain.available else None
        if fault is None and faces and self.pain.available and primary is None:
            fault = "the model gave no PSPI for a face"  # never a silent 0: has_pain promises one
        # The timers run on the frame clock (a file's media time); events are stamped with the capture time.
        at = None if frame.media_time is None else frame.timestamp
        status = self.pain.update(frame.clock, primary, fault, face=bool(faces) and fault is None, at=at)
        latency["post"] = latency.get("post", 0.0) + (time.perf_counter() - t0) * 1000.0
        result = FrameResult(frame.index, frame.timestamp, frame.media_time, tuple(faces), status, latency, ran)
        self._stage = "sink"
        t1 = time.perf_counter()
        record = result.to_record()
        with self._sink_lock:
            for index, sink in enumerate(self.sinks):
                self._write(index, sink, record, "frame", frame.timestamp)
        for event in status.events:
            self.emit_event(event.to_record())
            self._announce_event(event)
        self._announce_state()
        # The record was written before its own sink time was known: "sink" is in the FrameResult, the status
        # line and the summary, not in the logged record.
        latency["sink"] = (time.perf_counter() - t1) * 1000.0
        if self.on_result is not None:
            self.on_result(result)
        self._finish_frame()
        self._account(result)
        return result

    def _analyze(self, frame: Frame, latency: dict[str, float]) -> tuple[list[FaceResult], bool, str | None]:
        """Faces, whether the detector ran, and the fault that keeps this frame from being scored (or None)."""
        try:
            faces, ran, timings = self.analyzer.analyze_frame(frame.image)
        except AnalysisFault as exc:
            return [], True, exc.problem
        latency.update(timings)
        return faces, ran, next((f.problem for f in faces if f.problem), None)

    def _announce_event(self, event: PainEvent) -> None:
        """The stderr line for a pain event; a model fault is also the run's (exit code)."""
        when = self._when(event)
        if event.kind in PAIN_NOTICES:
            loud = event.kind in ("alert_raised", "alert_interrupted", "alert_resumed", "face_lost")
            text = f"pain: {event.kind.replace('_', ' ')} at {when} -> {event.state}"
            self.notice(text, logging.WARNING if loud else logging.INFO)
        elif event.kind == "model_fault":
            self.summary.faults.setdefault("model", event.detail["problem"])
            self.warn(f"model: FAULT at {when}: {event.detail['problem']}")
        elif event.kind == "model_recovered":
            self.notice(f"model: recovered at {when} after {event.detail['bad_frames']} bad frame(s)")

    def _when(self, event: PainEvent) -> str:
        """When an event happened, for a person: the position in the file, else seconds since the run began."""
        if event.media_time is not None:
            return f"media t={event.media_time:.2f}s"
        return f"t={event.timestamp - self._started:.2f}s"

    # ---- sink health ----------------------------------------------------------------------------
    def check_sinks(self, now: float | None = None, announce: bool = True) -> None:
        """Poll every sink (never blocks). A problem starts a ``log_fault`` episode (one event, the ``fault``
        state); its end is ``log_recovered``. Dropped and unwritten rows are counted in both and the summary.
        ``announce=False`` (sinks closed) only records the fault in the summary and on stderr: this last poll's
        problem replaces the summary's log fault (rows lost at close are in it)."""
        now = time.monotonic() if now is None else now
        self._health_at = now
        problems, dropped, pending = self._sink_problems()
        if dropped > self._dropped_seen and not problems:
            problems.append(f"{dropped - self._dropped_seen} result row(s) dropped")
        self._dropped_seen = self.summary.log_rows_dropped = dropped
        problem = "; ".join(problems)[:MAX_PROBLEM_CHARS] or None
        if problem is not None:
            self.pain.log_fault(problem)
            if not announce:  # the final poll, sinks closed: what the log finally lost is the run's log fault
                self.summary.faults["log"] = problem
            if self._log_fault_since is None:
                self._log_fault_since = now
                self.summary.faults.setdefault("log", problem)
                self.warn(f"log: FAULT: {problem}")
                if announce:
                    event = {"event": "log_fault", "timestamp": now, "problem": problem}
                    self.emit_event({**event, "dropped": dropped, "pending": pending})
            elif not announce:
                self.warn(f"log: FAULT at close: {problem} ({dropped} row(s) dropped in this run)")
        elif self._log_fault_since is not None:
            fault_s = round(now - self._log_fault_since, 3)
            self._log_fault_since = None
            self.pain.log_fault(None)
            self.notice(f"log: recovered after {fault_s} s ({dropped} row(s) dropped in this run)")
            if announce:
                self.emit_event({"event": "log_recovered", "timestamp": now, "fault_s": fault_s, "dropped": dropped})
        self._announce_state()

    def _sink_problems(self) -> tuple[list[str], int, int]:
        """Every sink's current problem, and the rows dropped (in all) and pending over all sinks."""
        problems: list[str] = []
        dropped = pending = 0
        for index, sink in enumerate(self.sinks):
            try:
                health = sink_health(sink)
            except Exception as exc:  # a health() that fails is itself a fault
                health = SinkHealth(False, f"health check failed: {type(exc).__name__}: {exc}")
            if not health.ok:
                problems.append(f"{type(sink).__name__}: {health.problem or 'unhealthy'}")
            error = self._write_errors.get(index)  # (the watchdog thread may write events meanwhile)
            if error is not None:
                problems.append(error)
            dropped += health.dropped + self._write_lost.get(index, 0)
            pending += health.pending
        return problems, dropped, pending

    def _account(self, result: FrameResult) -> None:
        s = self.summary
        s.frames += 1
        s.faces += len(result.faces)
        s.frames_with_face += bool(result.faces)
        s.alerts_raised += sum(e.kind == "alert_raised" for e in result.pain.events)
        s.final_state = result.pain.state.value

    # ---- watchdog -------------------------------------------------------------------------------
    def _finish_frame(self) -> None:
        self._last_frame_at = time.monotonic()
        started, self._busy_since = self._busy_since, None
        if self._stalled and started is not None:
            self._stalled = False
            stalled = round(time.monotonic() - started, 3)
            self.pain.log_fault(None, source="watchdog")
            self.notice(f"watchdog: processing resumed after {stalled} s")
            self.emit_event({"event": "pipeline_recovered", "timestamp": time.monotonic(), "stalled_s": stalled})
            self._announce_state()

    def _watchdog(self) -> None:
        period = min(1.0, self.watchdog_s / 4)
        while not self._stop.wait(period):
            self._waiting_notice()
            started = self._busy_since
            if started is None or self._stalled:
                continue
            busy = time.monotonic() - started
            if busy >= self.watchdog_s:
                self._stalled = True
                stage = self._stage
                problem = f"pipeline stalled: one frame in '{stage}' for {busy:.1f} s"
                self.pain.log_fault(problem, source="watchdog")  # the fault state (never over an alert)
                self.summary.faults.setdefault("watchdog", problem)  # a fault of the run: exit 1
                self.warn(f"watchdog: one frame has been in '{stage}' for {busy:.1f} s (backend stuck?)")
                self.emit_event(
                    {"event": "pipeline_stalled", "timestamp": time.monotonic(), "stage": stage, "busy_s": busy}
                )
                self._announce_state()

    def _waiting_notice(self) -> None:
        """The status line's stand-in while no frame arrives (camera unplugged, stream down)."""
        now = time.monotonic()
        if not self.status_every_s or now - max(self._last_frame_at, self._last_wait_notice) < self.status_every_s:
            return
        self._last_wait_notice = now
        source = self._capture.source.name if self._capture is not None else "the source"
        self.notice(f"[status] waiting for frames from {source} for {now - self._last_frame_at:.0f} s")

    # ---- the loop --------------------------------------------------------------------------------
    def run(self, capture: Capture) -> RunSummary:
        """Process frames until the source ends, ``max_frames`` or ``stop()``; always flushes sinks and releases
        the source."""
        self._capture = capture
        watchdog = threading.Thread(target=self._watchdog, name="watchdog", daemon=True)
        watchdog.start()
        period = StageStats()
        whole = StageStats()
        started = last_status = self._last_frame_at = self._started = time.monotonic()
        period_frames_start = 0
        settings = dataclasses.asdict(self.pain.settings)  # what plots and readers of the log judge it against
        self.emit_event({"event": "run_started", "timestamp": started, "source": capture.source.name, "pain": settings})
        frames = capture.poll_frames(IDLE_S, self.pain.settings.frame_timeout_s)
        try:
            for frame in frames:
                if self._stop.is_set():
                    break
                if frame is None:  # no frame yet: the sinks are still watched
                    if time.monotonic() - self._health_at >= HEALTH_EVERY_S:
                        self.check_sinks()
                    continue
                tick = time.monotonic()
                result = self.process(frame)
                whole.add(result.latency_ms)
                period.add(result.latency_ms)
                if self.preview is not None and not self.preview.show(frame, result):
                    self.stop("preview window closed")
                if self.max_frames and self.summary.frames >= self.max_frames:
                    self.stop("max_frames reached")
                now = time.monotonic()
                if self.status_every_s and now - last_status >= self.status_every_s:
                    self._status_line(capture, period, self.summary.frames - period_frames_start, now - last_status)
                    period, last_status, period_frames_start = StageStats(), now, self.summary.frames
                    with self._sink_lock:
                        for index, sink in enumerate(self.sinks):
                            self._guard(index, sink, sink.flush)  # (must not stall the loop while its disk is full)
                if now - self._health_at >= HEALTH_EVERY_S:
                    self.check_sinks(now)
                if self._stop.is_set():
                    break
                if self.max_fps:
                    self._stop.wait(max(0.0, tick + 1.0 / self.max_fps - time.monotonic()))
        finally:
            frames.close()
            self.summary.wall_s = time.monotonic() - started
            self._stop.set()  # ends the watchdog
            capture.stop()
            self._finish(whole)
            if self.preview is not None:
                self.preview.close()
        return self.summary

    def _finish(self, whole: StageStats) -> None:
        """Last health poll, the ``run_stopped`` event, flush and close every sink, then one more poll (rows
        a sink could not commit at close are a fault of the run too)."""
        self.summary.stage_ms = whole.means()
        self.summary.capture = self._capture.stats.to_dict() if self._capture is not None else {}
        if self._stop_reason:
            self.summary.stopped_by = self._stop_reason
        with self._sink_lock:
            for index, sink in enumerate(self.sinks):
                self._guard(index, sink, sink.flush)
        self.check_sinks()
        self.summary.final_state = self.pain.state.value
        self.emit_event({"timestamp": time.monotonic(), **self.summary.to_record()})
        with self._sink_lock:
            for index, sink in enumerate(self.sinks):
                self._guard(index, sink, sink.flush)
                self._guard(index, sink, sink.close)
        self.check_sinks(announce=False)
        self.summary.final_state = self.pain.state.value

    def _guard(self, index: int, sink: Sink, call: Callable[[], object]) -> None:
        """``call()`` (a sink's flush or close); its failure is that sink's write error, never a crash."""
        try:
            call()
        except Exception as exc:
            self._write_errors[index] = f"{type(sink).__name__} {call.__name__} failed: {type(exc).__name__}: {exc}"

    def _status_line(self, capture: Capture, period: StageStats, frames: int, seconds: float) -> None:
        stats = capture.stats
        stages = " ".join(f"{k} {v:.1f}" for k, v in period.means().items())
        state = self.pain.state.value if self.pain.state is not PainState.UNAVAILABLE else "no pain head"
        fault = f" | FAULT: {self.pain.fault}" if self.pain.fault else ""
        self.notice(
            f"[status] {frames / seconds:.1f} fps | frames {self.summary.frames} | drops {stats.dropped} | "
            f"bad {stats.bad_frames} | reconnects {stats.reconnects} | ms: {stages} | pain: {state}{fault}"
        )
