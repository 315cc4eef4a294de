"""Capture: turns any FrameSource into an iterator of Frames, with the live-source policies.

- A reader thread overlaps decoding with the caller's work.
- Live sources never build a backlog: only the newest frame is kept, older ones are counted as dropped.
  Files and folders are read through a small bounded queue instead, so every frame is processed.
- A live source that disappears is reopened with exponential backoff; the gap becomes an event.
- A live source that stays open but delivers nothing (a frozen camera or stream) is lost too, once no frame
  came for ``frame_timeout_s``: ``source_lost`` says so long before the driver's own read timeout.
- An empty or corrupt frame is skipped and counted.
- Events are delivered from the consumer's thread (the one iterating ``frames()``/``poll_frames()``), in
  order with the frames, so a callback never races the caller's own state.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_sdk.capture.base import EndOfStream, Frame, FrameSource, SourceLost, is_valid_image, redact_url, short


@dataclass(frozen=True)
class CaptureEvent:
    """Something that happened to the source: ``source_lost``, ``source_restored``, ``source_ended``."""

    kind: str
    timestamp: float
    detail: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {"event": self.kind, "timestamp": round(self.timestamp, 6), **self.detail}


@dataclass
class CaptureStats:
    """Counters since the capture started."""

    frames_read: int = 0  # valid frames read from the source
    frames_delivered: int = 0  # handed to the caller
    dropped: int = 0  # live frames replaced by a newer one before the caller took them
    bad_frames: int = 0  # empty/corrupt frames skipped
    reconnects: int = 0
    gap_s: float = 0.0  # total time a live source was unavailable

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gap_s"] = round(self.gap_s, 3)
        return data


_END = object()


@dataclass(frozen=True)
class _Lost:
    """Reader -> consumer: the source failed (``at`` on the capture clock)."""

    reason: str
    at: float


@dataclass(frozen=True)
class _Reopened:
    """Reader -> consumer: the source opened again after ``attempts`` tries (``first``: the very first open)."""

    at: float
    attempts: int
    first: bool


class Capture:
    """Iterate ``frames()`` to get :class:`Frame` objects from ``source`` until it ends or ``stop()``.

    ``frame_timeout_s``: a live source that delivers no frame for this long is reported lost
    (``source_lost``, reason "no new frame ...") and restored with its next frame; None turns this off.
    """

    def __init__(
        self,
        source: FrameSource,
        on_event: Callable[[CaptureEvent], None] | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 8.0,
        queue_size: int = 4,
        clock: Callable[[], float] = time.monotonic,
        frame_timeout_s: float | None = None,
    ) -> None:
        self.source = source
        self.stats = CaptureStats()
        self.frame_timeout_s = frame_timeout_s
        self._on_event = on_event or (lambda event: None)
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._capacity = 1 if source.live else max(1, queue_size)
        self._clock = clock
        self._items: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reads = 0
        self._lost_since: float | None = None  # consumer side: when the source went away (None: it is there)

    # ---- consumer side ----------------------------------------------------------------------
    def frames(self) -> Iterator[Frame]:
        """Frames in order; returns at end of a file/folder or after ``stop()``; re-raises reader errors."""
        for frame in self.poll_frames():
            if frame is not None:
                yield frame

    def poll_frames(self, idle_s: float = 0.25, frame_timeout_s: float | None = None) -> Iterator[Frame | None]:
        """Like :meth:`frames`, but yields None after every ``idle_s`` without a frame, so the caller can do
        its periodic work while a live source is silent. ``frame_timeout_s`` overrides the constructor's."""
        timeout = self.frame_timeout_s if frame_timeout_s is None else frame_timeout_s
        self._start()
        idle_since = self._clock()
        waiting_since: float | None = None  # the frozen clock: runs only while the source is open
        while True:
            item = self._next_item(min(idle_s, 0.25))
            if item is None:
                if self._stop.is_set():
                    return
                now = self._clock()
                if (
                    timeout
                    and self.source.live
                    and self._lost_since is None
                    and waiting_since is not None
                    and now - waiting_since >= timeout
                ):
                    self._frozen(waiting_since, timeout)
                if now - idle_since >= idle_s:
                    idle_since = now
                    yield None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if not isinstance(item, Frame):
                self._deliver(item)
                if isinstance(item, _Reopened):  # (re)opened: the frozen clock starts now, not at the old frame
                    waiting_since = item.at
                continue
            if self._lost_since is not None:  # frames again after a freeze
                self._restored(item.timestamp, {"reason": "frames again"})
            self.stats.frames_delivered += 1
            yield item
            waiting_since = idle_since = self._clock()

    def _next_item(self, wait_s: float) -> Any:
        """The next queued item, waiting up to ``wait_s``; None when there is none (or we are stopping)."""
        with self._cond:
            if not self._items and not self._stop.is_set():
                self._cond.wait(wait_s)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def _deliver(self, item: Any) -> None:
        """Turn a reader notice into the event the caller sees (and the gap statistics)."""
        if isinstance(item, CaptureEvent):
            self._on_event(item)
        elif isinstance(item, _Lost):
            if self._lost_since is None:  # (already lost when it froze first: the same gap goes on)
                self._lost_since = item.at
                self._event("source_lost", item.at, reason=item.reason)
        elif isinstance(item, _Reopened):
            if not item.first:
                self.stats.reconnects += 1
            if self._lost_since is not None:
                self._restored(item.at, {"attempts": item.attempts})

    def _deliver_queued(self) -> None:
        """Deliver the notices still queued (frames are left: nobody will process them)."""
        with self._cond:
            items = [x for x in self._items if isinstance(x, (CaptureEvent, _Lost, _Reopened))]
            self._items.clear()
        for item in items:
            self._deliver(item)

    def _frozen(self, since: float, timeout: float) -> None:
        """The source is open but has delivered nothing since ``since``: report it lost."""
        self._lost_since = since
        self._event("source_lost", self._clock(), reason=f"no new frame for {timeout:g} s (camera or stream frozen)")

    def _restored(self, at: float, detail: dict[str, Any]) -> None:
        """The source is back: the gap since it was lost becomes the ``source_restored`` event."""
        assert self._lost_since is not None
        gap = max(0.0, at - self._lost_since)
        self.stats.gap_s += gap
        self._lost_since = None
        self._event("source_restored", at, gap_s=round(gap, 3), **detail)

    def _event(self, kind: str, at: float, **detail: Any) -> None:
        detail = {k: short(v) if isinstance(v, str) else v for k, v in detail.items()}  # every string fits the log
        self._on_event(CaptureEvent(kind, at, {"source": self.source.name, **detail}))

    def request_stop(self) -> None:
        """Ask ``frames()`` to return soon, without waiting (safe from a signal handler)."""
        self._stop.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop reading and release the source (from any thread; safe to call twice). Events still queued
        are delivered here, so a loss just before the stop is never missing from the log."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self.source.close()
        self._deliver_queued()
        if self._lost_since is not None:  # stopped while the source was still gone
            self.stats.gap_s += max(0.0, self._clock() - self._lost_since)
            self._lost_since = None

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- reader thread ----------------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is None:
            name = f"capture:{self.source.name}"
            self._thread = threading.Thread(target=self._reader, name=name, daemon=True)
            self._thread.start()

    def _put(self, item: Any) -> None:
        """Queue ``item``. Live frames replace any queued frame; file frames wait for room; notices never wait."""
        with self._cond:
            if isinstance(item, Frame) and self.source.live:
                kept = [x for x in self._items if not isinstance(x, Frame)]
                self.stats.dropped += len(self._items) - len(kept)  # keep only the newest frame
                self._items = collections.deque(kept)
            elif isinstance(item, Frame):
                while sum(isinstance(x, Frame) for x in self._items) >= self._capacity and not self._stop.is_set():
                    self._cond.wait(0.25)
            self._items.append(item)
            self._cond.notify_all()

    def _reader(self) -> None:
        try:
            self._connect(first=True)
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    raw = self.source.read()
                except EndOfStream:
                    self._put(CaptureEvent("source_ended", self._clock(), {"source": self.source.name}))
                    break
                except SourceLost as lost:
                    self._reconnect(str(lost))
                    continue
                self._reads += 1
                if not is_valid_image(raw.image):
                    self.stats.bad_frames += 1
                    continue
                self.stats.frames_read += 1
                decode_ms = (time.perf_counter() - started) * 1000.0
                frame = Frame(raw.image, self._clock(), self._reads - 1, raw.media_time, raw.display, decode_ms)
                self._put(frame)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            self._put(exc)
        finally:
            self.source.close()
            self._put(_END)

    def _connect(self, first: bool) -> None:
        try:
            self.source.open()
        except SourceLost as lost:
            if not self.source.live:
                raise
            self._reconnect(str(lost), first=first)
        else:
            self._put(_Reopened(self._clock(), 0, first))  # open: starts the consumer's frozen clock

    def _reconnect(self, reason: str, first: bool = False) -> None:
        """Reopen a live source with exponential backoff until it works or we are stopped."""
        if not self.source.live:
            raise SourceLost(reason)
        self._put(_Lost(short(redact_url(reason)), self._clock()))
        self.source.close()
        delay, attempts = self._backoff[0], 0
        while not self._stop.wait(delay):
            attempts += 1
            try:
                self.source.open()
            except SourceLost:
                delay = min(delay * 2, self._backoff[1])
                continue
            self._put(_Reopened(self._clock(), attempts, first))
            return
