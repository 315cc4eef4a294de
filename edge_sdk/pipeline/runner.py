"""The runtime loop: frames -> analysis -> pain state -> sinks, with pacing, status, watchdog and clean stop."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from edge_sdk.capture.base import Frame
from edge_sdk.capture.stream import Capture, CaptureEvent
from edge_sdk.pipeline.alerts import PainMonitor, PainState
from edge_sdk.pipeline.analyze import PAIN_UNAVAILABLE, FaceAnalyzer
from edge_sdk.pipeline.result import STAGES, FrameResult
from edge_sdk.pipeline.sinks import Sink


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
        }


class Pipeline:
    """Wire an analyzer, a pain monitor and sinks; ``run(capture)`` until the source ends or ``stop()``.

    ``on_result(FrameResult)`` is the in-process callback for kiosk apps. Notices go to ``log`` (stderr).
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
        log: TextIO | None = None,
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
        self.log = log or sys.stderr
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
        if not pain.available:
            self.notice(PAIN_UNAVAILABLE)
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

    def notice(self, text: str) -> None:
        print(text, file=self.log, flush=True)

    # ---- output --------------------------------------------------------------------------------
    def emit_event(self, record: Mapping[str, Any]) -> None:
        with self._sink_lock:
            for sink in self.sinks:
                sink.write(record, kind="event", timestamp=record.get("timestamp"))

    def on_capture_event(self, event: CaptureEvent) -> None:
        if event.kind in ("source_lost", "source_restored"):
            detail = f" after {event.detail['gap_s']} s" if "gap_s" in event.detail else ""
            self.notice(f"capture: {event.kind.replace('_', ' ')}{detail} ({event.detail.get('reason', '')})".rstrip())
        self.emit_event(event.to_record())

    # ---- one frame -----------------------------------------------------------------------------
    def process(self, frame: Frame) -> FrameResult:
        """Analyse one frame, update the pain state, deliver the result to sinks and the callback."""
        latency: dict[str, float] = {"decode": frame.decode_ms}
        self._busy_since, self._stage = time.monotonic(), "analyze"
        faces, ran = self.analyzer.analyze(frame.image, latency)
        t0 = time.perf_counter()
        primary = faces[0].pspi if faces and self.pain.available else None
        if faces and self.pain.available and primary is None:
            primary = 0.0  # unreachable with a valid card: has_pain guarantees a PSPI
        status = self.pain.update(frame.clock, primary)
        latency["post"] = latency.get("post", 0.0) + (time.perf_counter() - t0) * 1000.0
        result = FrameResult(frame.index, frame.timestamp, frame.media_time, tuple(faces), status, latency, ran)
        self._stage = "sink"
        t1 = time.perf_counter()
        record = result.to_record()
        with self._sink_lock:
            for sink in self.sinks:
                sink.write(record, kind="frame", timestamp=frame.timestamp)
        for event in status.events:
            self.emit_event(event.to_record())
            if event.kind in ("alert_raised", "alert_cleared", "face_lost", "face_found"):
                self.notice(f"pain: {event.kind.replace('_', ' ')} at t={event.timestamp:.2f}s -> {event.state}")
        # The record was written before its own sink time was known: "sink" is in the FrameResult, the status
        # line and the summary, not in the logged record.
        latency["sink"] = (time.perf_counter() - t1) * 1000.0
        if self.on_result is not None:
            self.on_result(result)
        self._finish_frame()
        self._account(result)
        return result

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
            self.notice(f"watchdog: processing resumed after {stalled} s")
            self.emit_event({"event": "pipeline_recovered", "timestamp": time.monotonic(), "stalled_s": stalled})

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
                self.notice(f"watchdog: one frame has been in '{self._stage}' for {busy:.1f} s (backend stuck?)")
                self.emit_event(
                    {"event": "pipeline_stalled", "timestamp": time.monotonic(), "stage": self._stage, "busy_s": busy}
                )

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
        started = last_status = self._last_frame_at = time.monotonic()
        period_frames_start = 0
        self.emit_event({"event": "run_started", "timestamp": started, "source": capture.source.name})
        try:
            for frame in capture.frames():
                if self._stop.is_set():
                    break
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
                        for sink in self.sinks:
                            sink.flush()
                if self._stop.is_set():
                    break
                if self.max_fps:
                    self._stop.wait(max(0.0, tick + 1.0 / self.max_fps - time.monotonic()))
        finally:
            self.summary.wall_s = time.monotonic() - started
            self._stop.set()  # ends the watchdog
            capture.stop()
            self.summary.stage_ms = whole.means()
            self.summary.final_state = self.pain.state.value
            self.summary.capture = capture.stats.to_dict()
            if self._stop_reason:
                self.summary.stopped_by = self._stop_reason
            self.emit_event({"timestamp": time.monotonic(), **self.summary.to_record()})
            with self._sink_lock:
                for sink in self.sinks:
                    sink.flush()
                    sink.close()
            if self.preview is not None:
                self.preview.close()
        return self.summary

    def _status_line(self, capture: Capture, period: StageStats, frames: int, seconds: float) -> None:
        stats = capture.stats
        stages = " ".join(f"{k} {v:.1f}" for k, v in period.means().items())
        state = self.pain.state.value if self.pain.state is not PainState.UNAVAILABLE else "no pain head"
        self.notice(
            f"[status] {frames / seconds:.1f} fps | frames {self.summary.frames} | drops {stats.dropped} | "
            f"bad {stats.bad_frames} | reconnects {stats.reconnects} | ms: {stages} | pain: {state}"
        )
