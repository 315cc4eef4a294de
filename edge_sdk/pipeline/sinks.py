"""Where results go. A sink has ``write(record, kind, timestamp)``, ``flush()`` and ``close()``.

This matches the encrypted private log (``edge_sdk.store``), so any of them can be plugged in.
``kind`` is ``"frame"`` for per-frame records and ``"event"`` for alerts, gaps and lifecycle events.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TextIO

from edge_sdk.errors import InputError
from edge_sdk.privacy import EXCLUDED_FIELDS  # what the encrypted log drops too


class Sink(Protocol):
    def write(self, record: Mapping[str, Any], kind: str = "frame", timestamp: float | None = None) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SinkHealth:
    """What a sink says about itself; the runner polls it (``sink_health``) and turns faults into the
    ``fault`` state and ``log_fault`` events. A sink without a ``health()`` method is always healthy."""

    ok: bool = True
    problem: str = ""  # the current fault in words ('' when ok), e.g. "disk full: 1,204 rows held in memory"
    dropped: int = 0  # rows dropped so far (counted in an event, never silently)
    pending: int = 0  # rows accepted but not yet on disk


def sink_health(sink: object) -> SinkHealth:
    """``sink.health()`` when the sink has one (it must not block), else healthy."""
    health = getattr(sink, "health", None)
    return health() if callable(health) else SinkHealth()


def minimised(value: Any) -> Any:
    """``value`` as the logs store it: :data:`EXCLUDED_FIELDS` dropped at any depth, NaN and infinity as null,
    numpy values as plain lists and numbers."""
    if isinstance(value, Mapping):
        return {key: minimised(item) for key, item in value.items() if key not in EXCLUDED_FIELDS}
    if isinstance(value, (list, tuple)):
        return [minimised(item) for item in value]
    if type(value).__module__ == "numpy":
        return minimised(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonLinesSink:
    """One JSON object per line: ``{"kind": ..., "timestamp": ..., **record}``. Events are flushed at once.

    Plain text, for bench tests only: the file is created 0600 and holds what the encrypted log holds, no more
    (:func:`minimised`). A folder or file that cannot be written is an :class:`InputError` naming it; a write
    that fails later (disk full) drops the row, counts it and turns :meth:`health` into a fault. Every row is
    one unbuffered write, so a failure is known (and counted) for that row, never for a buffer of rows later.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise InputError(
                f"log dir {self.path.parent}: cannot write the result log {self.path.name} there "
                f"({exc.strerror or exc}); expected a writable folder"
            ) from None
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, 0o600)  # an existing file keeps no wider mode
        self._file: BinaryIO | None = os.fdopen(fd, "ab", buffering=0)  # unbuffered: a lost row is known at once
        self.records = 0
        self.dropped = 0
        self._problem = ""

    def write(self, record: Mapping[str, Any], kind: str = "frame", timestamp: float | None = None) -> None:
        if self._file is None:
            return
        line = {"kind": kind, "timestamp": timestamp if timestamp is not None else record.get("timestamp")}
        line.update(record)
        data = memoryview((json.dumps(minimised(line), separators=(",", ":"), allow_nan=False) + "\n").encode())
        try:
            while data:  # an unbuffered write may take only part of the line
                written = self._file.write(data)
                if not written:
                    raise OSError(errno.EIO, "the write made no progress")
                data = data[written:]
        except OSError as exc:
            self._failed(exc, rows=1)
            return
        self.records += 1

    def flush(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                self._failed(exc)

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as exc:
                self._failed(exc)

    def health(self) -> SinkHealth:
        """A fault once a write failed (the rows it lost are counted in ``dropped``)."""
        return SinkHealth(ok=not self._problem, problem=self._problem, dropped=self.dropped)

    def _failed(self, exc: OSError, rows: int = 0) -> None:
        self.dropped += rows
        self._problem = f"cannot write {self.path}: {exc.strerror or exc}; {self.dropped} rows dropped"


def run_log_path(log_dir: str | Path) -> Path:
    """A new JSON-lines file name in ``log_dir`` for this run."""
    return Path(log_dir) / time.strftime("edge-sdk-run-%Y%m%d-%H%M%S.jsonl")


class StdoutSink:
    """Records on a text stream (stdout unless ``stream``): one line per event, and per frame when ``frames``.

    ``json_lines=False``: readable lines (``[event] alert_raised from=clear to=alert ...``, ``frame 12: 1 face(s)
    state=clear pspi=0.41``). ``json_lines=True``: each record as one JSON object per line, the same shape as
    :class:`JsonLinesSink` writes (``{"kind": ..., "timestamp": ..., **record}``, :func:`minimised`), for a
    program reading the stream. ``events=False`` leaves events out. The ``run_stopped`` event is left out
    (``quiet_events``): the CLI prints the run's summary itself.

    A reader that went away (a closed pipe) ends the output quietly: later records are not written,
    :attr:`reader_gone` says so, and ``on_reader_gone()`` is called once (``edge-sdk run`` stops the run
    there, as a Unix tool stops on SIGPIPE); it is not a fault of the monitor.
    """

    quiet_events = frozenset({"run_stopped"})

    def __init__(
        self, stream: TextIO | None = None, frames: bool = False, json_lines: bool = False, events: bool = True
    ) -> None:
        self.stream = stream or sys.stdout
        self.frames = frames
        self.json_lines = json_lines
        self.events = events
        self.reader_gone = False
        self.on_reader_gone: Callable[[], object] | None = None

    def write(self, record: Mapping[str, Any], kind: str = "frame", timestamp: float | None = None) -> None:
        if self.reader_gone:
            return
        if kind == "event" and (not self.events or record.get("event") in self.quiet_events):
            return
        if kind != "event" and not self.frames:
            return
        if self.json_lines:
            line = {"kind": kind, "timestamp": timestamp if timestamp is not None else record.get("timestamp")}
            line.update(record)
            text = json.dumps(minimised(line), separators=(",", ":"), allow_nan=False)
        else:
            text = self.text_line(record, kind)
        try:
            self.stream.write(text + "\n")
            if kind == "event":
                self.stream.flush()
        except BrokenPipeError:
            self._gone()

    @staticmethod
    def text_line(record: Mapping[str, Any], kind: str) -> str:
        """The readable line of one record."""
        if kind == "event":
            detail = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("event", "timestamp"))
            return f"[event] {record.get('event')} {detail}".rstrip()
        faces = record.get("faces") or []
        pspi = record.get("pspi")
        state = f"frame {record.get('frame')}: {len(faces)} face(s) state={record.get('state')}"
        return state + (f" pspi={pspi:.2f}" if pspi is not None else "")

    def flush(self) -> None:
        if self.reader_gone:
            return
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._gone()

    def close(self) -> None:
        self.flush()

    def _gone(self) -> None:
        self.reader_gone = True
        if self.on_reader_gone is not None:
            self.on_reader_gone()


class CallbackSink:
    """Calls ``callback(record, kind)`` for every record: the local API for kiosk apps in the same process."""

    def __init__(self, callback: Callable[[Mapping[str, Any], str], None]) -> None:
        self.callback = callback

    def write(self, record: Mapping[str, Any], kind: str = "frame", timestamp: float | None = None) -> None:
        self.callback(record, kind)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
