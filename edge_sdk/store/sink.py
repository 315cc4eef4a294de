"""``EncryptedLogSink``: the default result sink of ``edge-sdk run`` (encrypted, chained, pseudonymous).

Usage::

    from edge_sdk.pipeline.config import LogSettings

    sink = EncryptedLogSink.open("/var/lib/edge-sdk/log", LogSettings(patient_id="bed-12", device_id="pi-7"))
    sink.write(frame_result.to_record())              # kind="frame"
    sink.write({"alert": "pain", "pspi": 6.0}, kind="alert")
    sink.close()

``write`` validates the record (results only: see :mod:`edge_sdk.store.records`), wraps it with its exact
time and the patient/device pseudonyms, and hands it to the background :class:`LogWriter`; it never
blocks on the disk. Raw ids are turned into keyed HMAC pseudonyms here and never stored.

A full disk never stops the monitor: rows are held in memory (oldest frames dropped and counted beyond
``LogTuning.queue_limit``) and written when space returns, also when the disk was already full at
``open`` (the log is then *unavailable* and opened later). :meth:`EncryptedLogSink.health` says so
(:class:`~edge_sdk.pipeline.sinks.SinkHealth`, what the runner polls); :meth:`EncryptedLogSink.writer_health`
has the details. A log directory that cannot be written at all (permissions, read-only) is refused at
``open`` with an :class:`~edge_sdk.errors.InputError` naming it.

:class:`~edge_sdk.pipeline.config.LogSettings` is the ``[log]`` section of ``edge-sdk run``'s config (key,
ids, retention, quota in bytes); :class:`~edge_sdk.store.writer.LogTuning` the writer's engineering knobs.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from edge_sdk.errors import InputError
from edge_sdk.store.db import LogDatabase, LogDatabaseError, LogDiskFullError, PendingRow, is_disk_full
from edge_sdk.store.keys import KeyRing, KeySource
from edge_sdk.store.records import check_kind, envelope, normalise_record
from edge_sdk.store.writer import DEFAULT_TUNING, CommitReport, LogTuning, LogWriter, WriterHealth
from edge_sdk.version import __version__

if TYPE_CHECKING:  # importing edge_sdk.pipeline loads OpenCV; log readers import this module without it
    from edge_sdk.pipeline.config import LogSettings
    from edge_sdk.pipeline.sinks import SinkHealth

_PLAUSIBLE_WALL_TIME = 946_684_800.0  # 2000-01-01; smaller timestamps are monotonic clock readings


@dataclass(frozen=True)
class PseudonymousIds:
    """The pseudonyms one sink writes under (``None`` patient = not assigned to a patient)."""

    session: str
    patient: str | None
    device: str

    @classmethod
    def derive(cls, ring: KeyRing, *, session_id: str | None, patient_id: str | None, device_id: str | None):
        return cls(
            session=ring.pseudonym("session", session_id or uuid.uuid4().hex),
            patient=ring.pseudonym("patient", patient_id) if patient_id else None,
            device=ring.pseudonym("device", device_id or socket.gethostname()),
        )


class EncryptedLogSink:
    """Writes result records to the private log in ``log_dir``; see the module docstring."""

    def __init__(self, writer: LogWriter, ids: PseudonymousIds) -> None:
        self.writer = writer
        self.ids = ids
        self._closed = False
        self._monotonic_offset = time.time() - time.monotonic()
        self._event({"event": "session_start", "edge_sdk": __version__})

    @classmethod
    def open(
        cls,
        log_dir: Path | str,
        settings: LogSettings,
        tuning: LogTuning = DEFAULT_TUNING,
        *,
        session_id: str | None = None,
        on_commit: Callable[[CommitReport], None] | None = None,
        on_problem: Callable[[str], None] | None = None,
    ) -> EncryptedLogSink:
        """Open (or create) the log. The key is loaded first: without one nothing is created or written.

        The key ring comes from ``settings.key_command``, else ``settings.key_file`` (created 0600 on first
        use), else ``$EDGE_SDK_LOG_KEY`` or the default key file. ``settings.format`` is not read: this sink
        is the encrypted format. ``session_id`` (default: random) names this session's pseudonym.
        """
        key_file = Path(settings.key_file) if settings.key_file else None
        ring = KeySource(key_file=key_file, key_command=settings.key_command).load(create=True)
        check_log_dir_writable(Path(log_dir))
        opener = partial(_open_for_writing, Path(log_dir), ring, tuning.hard_limit_bytes)
        db, unavailable = None, None
        try:
            db = opener()
        except LogDiskFullError as exc:  # a full disk at start: monitor anyway, hold rows, keep trying to open
            unavailable = str(exc)
        except OSError as exc:
            if not is_disk_full(exc):
                raise InputError(f"log dir {log_dir}: cannot create the log ({exc.strerror or exc})") from None
            unavailable = f"disk full: {exc}"
        writer = LogWriter(
            db, settings, tuning, opener=opener, open_error=unavailable, on_commit=on_commit, on_problem=on_problem
        )
        ids = PseudonymousIds.derive(
            ring, session_id=session_id, patient_id=settings.patient_id, device_id=settings.device_id
        )
        return cls(writer, ids)

    def write(self, record: Mapping[str, object], kind: str = "frame", timestamp: float | None = None) -> int | None:
        """Queue one result record; returns its ticket, or None if the queue was full and a frame was dropped.

        ``record`` may also be an object with ``to_record()`` (a pipeline ``FrameResult``). Raises
        :class:`~edge_sdk.errors.InputError` for anything that is not a small result record.
        """
        to_record = getattr(record, "to_record", None)
        if callable(to_record):
            record = to_record()
        ts = self._wall_time(timestamp)
        if not math.isfinite(ts):
            raise InputError(f"log record timestamp {timestamp!r} is not a finite time")
        plaintext = envelope(normalise_record(record), ts, self.ids.patient, self.ids.device)
        return self.writer.submit(PendingRow(check_kind(kind), self.ids.session, int(ts), plaintext))

    def _wall_time(self, timestamp: float | None) -> float:
        """Wall-clock seconds. Monotonic capture times (what the pipeline passes) are mapped onto the wall
        clock with the offset taken when the sink opened, so retention and ``--since`` keep working."""
        if timestamp is None:
            return time.time()
        ts = float(timestamp)
        return ts + self._monotonic_offset if ts < _PLAUSIBLE_WALL_TIME else ts

    def _event(self, event: dict[str, object]) -> None:
        now = time.time()
        self.writer.submit(
            PendingRow("event", self.ids.session, int(now), envelope(event, now, self.ids.patient, self.ids.device))
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Ask for everything written so far to be committed; True once it is.

        Without ``timeout`` (the bedside loop's call) it never stalls the loop: it returns False at once
        while the log is in a storage fault and waits at most ``LogTuning.flush_timeout`` otherwise. With a
        ``timeout`` it waits up to that long, through a storage fault too (tools and tests).
        """
        if timeout is None:
            return self.writer.flush()
        return self.writer.flush(timeout, through_fault=True)

    def close(self, timeout: float | None = None) -> WriterHealth:
        """Write a session-end event, commit everything (retrying a full disk for at most ``timeout``,
        default ``LogTuning.close_timeout``), close the database; the writer's final health."""
        if self._closed:
            return self.writer.health
        self._closed = True
        self._event({"event": "session_end", "dropped": self.writer.health.dropped})
        return self.writer.close(timeout)

    def health(self) -> SinkHealth:
        """What the runner polls (never blocks): ok, the fault in words, rows dropped, rows not yet on disk."""
        from edge_sdk.pipeline.sinks import SinkHealth  # lazily: edge_sdk.pipeline loads OpenCV

        h = self.writer.health
        dropped = h.dropped + h.lost_at_close  # every row that will never be on disk, whenever it was lost
        problem = h.fault or ""
        if h.lost_at_close and f"{h.lost_at_close} rows NOT committed" not in problem:
            problem = f"{problem}; log closed with {h.lost_at_close} rows NOT committed".lstrip("; ")
        return SinkHealth(ok=not problem, problem=problem, dropped=dropped, pending=h.waiting)

    def writer_health(self) -> WriterHealth:
        """The writer in detail: committed/waiting/dropped/purged counts, storage error, fault."""
        return self.writer.health

    def __enter__(self) -> EncryptedLogSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_log_dir_writable(log_dir: Path) -> None:
    """Create ``log_dir`` if needed and a file in it; :class:`InputError` naming it when that is not allowed
    (permissions, a read-only file system, a file in the way). A full disk is not this error: the log then
    waits in memory until there is space."""
    try:
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, probe = tempfile.mkstemp(dir=log_dir, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return
        raise InputError(f"log dir {log_dir} is not writable ({exc.strerror or exc})") from None


def _open_for_writing(log_dir: Path, ring: KeyRing, hard_limit_bytes: int | None) -> LogDatabase:
    """Open (or create) the log and record the active key's check value; :class:`LogDiskFullError` when the
    disk is too full for either."""
    db = LogDatabase.open(log_dir, ring, create=True, hard_limit_bytes=hard_limit_bytes)
    try:
        db.register_active_key()
    except sqlite3.Error as exc:
        db.close()
        error = LogDiskFullError if is_disk_full(exc) else LogDatabaseError
        raise error(f"cannot write the log {db.path} (sqlite: {exc})") from None
    return db
