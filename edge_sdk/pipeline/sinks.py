"""Where results go. A sink has ``write(record, kind, timestamp)``, ``flush()`` and ``close()``.

This matches the encrypted private log (``edge_sdk.store``), so any of them can be plugged in.
``kind`` is ``"frame"`` for per-frame records and ``"event"`` for alerts, gaps and lifecycle events.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO


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


class JsonLinesSink:
    """One JSON object per line: ``{"kind": ..., "timestamp": ..., **record}``. Events are flushed at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.records = 0

    def write(self, record: Mapping[str, Any], kind: str = "frame", timestamp: float | None = None) -> None:
        if self._file is None:
            return
        line = {"kind": kind, "timestamp": timestamp if timestamp is not None else record.get("timestamp")}
        line.update(record)
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.records += 1
        if kind == "event":
            self._file.flush()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None


def run_log_path(log_dir: str | Path) -> Path:
    """A new JSON-lines file name in ``log_dir`` for this run."""
    return Path(log_dir) / time.strftime("edge-sdk-run-%Y%m%d-%H%M%S.jsonl")


class StdoutSink:
    """Events as one readable line each; frames only when ``frames=True`` (one compact line per frame).

    ``run_stopped`` is left out: the CLI prints its own summary of it.
    """

    quiet_events = frozenset({"run_stopped"})

    def __init__(self, stream: TextIO | None = None, frames: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.frames = frames

    def write(self, record: Mapping[str, Any], kind: str = "frame", timestamp: float | None = None) -> None:
        if kind == "event":
            if record.get("event") in self.quiet_events:
                return
            detail = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("event", "timestamp"))
            print(f"[event] {record.get('event')} {detail}".rstrip(), file=self.stream)
        elif self.frames:
            faces = record.get("faces") or []
            pspi = record.get("pspi")
            print(
                f"frame {record.get('frame')}: {len(faces)} face(s) state={record.get('state')}"
                + (f" pspi={pspi:.2f}" if pspi is not None else ""),
                file=self.stream,
            )

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.flush()


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
