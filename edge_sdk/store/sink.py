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

:class:`~edge_sdk.pipeline.config.LogSettings` is the ``[log]`` section of ``edge-sdk run``'s config (key,
ids, retention, quota in bytes); :class:`~edge_sdk.store.writer.LogTuning` the writer's engineering knobs.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_sdk.store.db import LogDatabase, PendingRow
from edge_sdk.store.keys import KeyRing, KeySource
from edge_sdk.store.records import check_kind, envelope, normalise_record
from edge_sdk.store.writer import DEFAULT_TUNING, CommitReport, LogTuning, LogWriter, WriterHealth
from edge_sdk.version import __version__

if TYPE_CHECKING:  # importing edge_sdk.pipeline loads OpenCV; log readers import this module without it
    from edge_sdk.pipeline.config import LogSettings

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
        db = LogDatabase.open(log_dir, ring, create=True, hard_limit_bytes=tuning.hard_limit_bytes)
        db.register_active_key()
        writer = LogWriter(db, settings, tuning, on_commit=on_commit, on_problem=on_problem)
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

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Block until everything written so far is committed (False on timeout, e.g. while the disk is full)."""
        return self.writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> WriterHealth:
        """Write a session-end event, commit everything, close the database."""
        if self._closed:
            return self.writer.health
        self._closed = True
        health = self.writer.health
        self._event({"event": "session_end", "dropped": health.dropped})
        return self.writer.close(timeout)

    @property
    def health(self) -> WriterHealth:
        """Committed/waiting/dropped counts and the current storage error, if any."""
        return self.writer.health

    def __enter__(self) -> EncryptedLogSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
