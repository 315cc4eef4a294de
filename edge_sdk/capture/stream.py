"""Capture: turns any FrameSource into an iterator of Frames, with the live-source policies.

- A reader thread overlaps decoding with the caller's work.
- Live sources never build a backlog: only the newest frame is kept, older ones are counted as dropped.
  Files and folders are read through a small bounded queue instead, so every frame is processed.
- A live source that disappears is reopened with exponential backoff; the gap becomes an event.
- An empty or corrupt frame is skipped and counted.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_sdk.capture.base import EndOfStream, Frame, FrameSource, SourceLost, is_valid_image


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


class Capture:
    """Iterate ``frames()`` to get :class:`Frame` objects from ``source`` until it ends or ``stop()``."""

    def __init__(
        self,
        source: FrameSource,
        on_event: Callable[[CaptureEvent], None] | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 8.0,
        queue_size: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.stats = CaptureStats()
        self._on_event = on_event or (lambda event: None)
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._capacity = 1 if source.live else max(1, queue_size)
        self._clock = clock
        self._items: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reads = 0

    # ---- consumer side ----------------------------------------------------------------------
    def frames(self) -> Iterator[Frame]:
        """Frames in order; returns at end of a file/folder or after ``stop()``; re-raises reader errors."""
        self._start()
        while True:
            with self._cond:
                while not self._items and not self._stop.is_set():
                    self._cond.wait(0.25)
                if not self._items:  # stopped
                    return
                item = self._items.popleft()
                self._cond.notify_all()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            self.stats.frames_delivered += 1
            yield item

    def request_stop(self) -> None:
        """Ask ``frames()`` to return soon, without waiting (safe from a signal handler)."""
        self._stop.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop reading and release the source (from any thread; safe to call twice)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self.source.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- reader thread ----------------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._reader, name=f"capture:{self.source.name}", daemon=True)
            self._thread.start()

    def _put(self, item: Any) -> None:
        with self._cond:
            if self.source.live and isinstance(item, Frame):
                while len(self._items) >= self._capacity and isinstance(self._items[-1], Frame):
                    self._items.pop()  # keep only the newest frame
                    self.stats.dropped += 1
            else:
                while len(self._items) >= self._capacity and not self._stop.is_set():
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
                    self._on_event(CaptureEvent("source_ended", self._clock(), {"source": self.source.name}))
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

    def _reconnect(self, reason: str, first: bool = False) -> None:
        """Reopen a live source with exponential backoff until it works or we are stopped."""
        if not self.source.live:
            raise SourceLost(reason)
        lost_at = self._clock()
        self._on_event(CaptureEvent("source_lost", lost_at, {"source": self.source.name, "reason": reason}))
        self.source.close()
        delay, attempts = self._backoff[0], 0
        while not self._stop.wait(delay):
            attempts += 1
            try:
                self.source.open()
            except SourceLost:
                delay = min(delay * 2, self._backoff[1])
                continue
            gap = self._clock() - lost_at
            self.stats.gap_s += gap
            if not first:
                self.stats.reconnects += 1
            self._on_event(
                CaptureEvent(
                    "source_restored",
                    self._clock(),
                    {"source": self.source.name, "gap_s": round(gap, 3), "attempts": attempts},
                )
            )
            return
        self.stats.gap_s += self._clock() - lost_at  # stopped while the source was still gone
