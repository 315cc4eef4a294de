"""The background writer: a bounded queue between the bedside loop and batched, durable SQLite commits.

* ``submit`` never blocks and never touches the disk. It returns a *ticket* (1, 2, 3, ... per writer) or
  None when the record was dropped.
* Queue policy when full (``queue_limit`` rows waiting, including rows held back by a storage failure):
  new ``frame`` rows are dropped and counted; ``alert``/``event``/``audit`` rows are always accepted
  (they are rare and clinically relevant). Drops are written to the log as an ``event`` row later.
* The writer thread commits a batch when ``batch_size`` rows wait, ``flush_interval`` seconds after the
  oldest waiting row, on ``flush()`` and on ``close()``. One transaction per batch, ``synchronous=FULL``.
* "Committed" is reported after COMMIT returns: ``on_commit(CommitReport)`` says every ticket up to
  ``through_ticket`` is durable (tickets commit in order), and :attr:`LogWriter.health` shows the same.
* A failing commit (disk full, I/O error, a lock held too long) keeps the batch in memory, reports the
  condition once through ``on_problem``, runs the quota purge to make room and retries every
  ``retry_interval`` seconds. Rows already committed are never touched by a failure.
* Retention (rows older than ``retention_days``) and quota (``quota_bytes`` of database pages) purges
  run every ``maintenance_interval`` seconds on the writer thread.

What to keep (retention, quota) is the user's :class:`~edge_sdk.pipeline.config.LogSettings`; how to batch,
bound and pace the work is :class:`LogTuning`, whose defaults suit a device.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_sdk.store.db import AUDIT_SESSION, LogDatabase, PendingRow, is_disk_full
from edge_sdk.store.records import envelope

if TYPE_CHECKING:  # importing edge_sdk.pipeline loads OpenCV; log readers import this module without it
    from edge_sdk.pipeline.config import LogSettings

_log = logging.getLogger("edge_sdk.store")


@dataclass(frozen=True)
class LogTuning:
    """How the private log batches, bounds and paces its work (engineering knobs, not user configuration).

    ``batch_size`` rows or ``flush_interval`` seconds make a commit; ``queue_limit`` rows may wait before
    frames are dropped; purges run every ``maintenance_interval`` seconds; a failed commit is retried every
    ``retry_interval`` seconds. ``hard_limit_bytes`` caps the database file itself (SQLite
    ``max_page_count``, set by :meth:`EncryptedLogSink.open <edge_sdk.store.sink.EncryptedLogSink.open>`):
    writes beyond it fail like a full disk and are retried after the quota purge.
    """

    batch_size: int = 64
    flush_interval: float = 1.0
    queue_limit: int = 2048
    maintenance_interval: float = 60.0
    retry_interval: float = 1.0
    hard_limit_bytes: int | None = None


DEFAULT_TUNING = LogTuning()


@dataclass(frozen=True)
class CommitReport:
    """Every ticket up to ``through_ticket`` is on disk; the batch ended at row ``last_seq``."""

    through_ticket: int
    last_seq: int
    rows: int


@dataclass(frozen=True)
class WriterHealth:
    committed_ticket: int
    committed_rows: int
    waiting: int
    dropped: int
    purged: int
    storage_error: str | None
    alive: bool


@dataclass(frozen=True)
class _Item:
    ticket: int
    queued_at: float
    row: PendingRow


class LogWriter:
    """Owns the log database on one thread; see the module docstring for the policies."""

    def __init__(
        self,
        db: LogDatabase,
        settings: LogSettings,
        tuning: LogTuning = DEFAULT_TUNING,
        *,
        on_commit: Callable[[CommitReport], None] | None = None,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        """Start the writer thread on ``db``: ``settings`` says what to keep (retention, quota in bytes)."""
        self.db = db
        self.batch_size = max(1, tuning.batch_size)
        self.flush_interval = tuning.flush_interval
        self.queue_limit = max(1, tuning.queue_limit)
        self.retention_days = settings.retention_days
        self.quota_bytes = settings.quota_bytes
        self.maintenance_interval = tuning.maintenance_interval
        self.retry_interval = tuning.retry_interval
        self.on_commit = on_commit
        self.on_problem = on_problem
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._held: list[_Item] = []  # a batch whose commit failed, retried first
        self._next_ticket = 1
        self._committed_ticket = 0
        self._committed_rows = 0
        self._dropped = 0
        self._dropped_unreported = 0
        self._notes: list[dict[str, object]] = []
        self._purged = 0
        self._storage_error: str | None = None
        self._storage_failed_at = 0.0
        self._flush_wanted = False
        self._closing = False
        self._close_deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="edge-sdk-log-writer", daemon=True)
        self._thread.start()

    # -- caller side ---------------------------------------------------------------------------------
    def submit(self, row: PendingRow) -> int | None:
        """Queue one sealed-to-be row; the ticket, or None when a frame was dropped (queue full)."""
        with self._cond:
            if self._closing:
                raise RuntimeError("the log writer is closed")
            if row.kind == "frame" and len(self._queue) + len(self._held) >= self.queue_limit:
                self._dropped += 1
                self._dropped_unreported += 1
                return None
            ticket = self._next_ticket
            self._next_ticket += 1
            self._queue.append(_Item(ticket, time.monotonic(), row))
            if len(self._queue) >= self.batch_size:
                self._cond.notify()
            return ticket

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every row submitted so far is committed; False on timeout (e.g. disk full)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._next_ticket - 1
            self._flush_wanted = True
            self._cond.notify_all()
            while self._committed_ticket < target and self._thread.is_alive():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return self._committed_ticket >= target

    def close(self, timeout: float = 10.0) -> WriterHealth:
        """Commit what is waiting (retrying storage errors until ``timeout``), stop the thread, close the file."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._close_deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._thread.join(timeout + 5.0)
        health = self.health
        if not self._thread.is_alive():
            self.db.close()
        return health

    @property
    def health(self) -> WriterHealth:
        with self._cond:
            return WriterHealth(
                committed_ticket=self._committed_ticket,
                committed_rows=self._committed_rows,
                waiting=len(self._queue) + len(self._held),
                dropped=self._dropped,
                purged=self._purged,
                storage_error=self._storage_error,
                alive=self._thread.is_alive(),
            )

    # -- writer thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        next_maintenance = time.monotonic()
        while True:
            batch, closing = self._next_batch(next_maintenance)
            if batch and not self._commit(batch):
                with self._cond:
                    self._held = batch + self._held
                    if closing and time.monotonic() >= self._close_deadline:
                        self._report(f"log writer closed with {len(self._held) + len(self._queue)} rows NOT committed")
                        return
                    self._cond.wait(self.retry_interval)
                next_maintenance = min(next_maintenance, time.monotonic())  # try to make room
            if time.monotonic() >= next_maintenance:
                self._maintain()
                next_maintenance = time.monotonic() + self.maintenance_interval
            if closing:
                with self._cond:
                    done = not self._queue and not self._held
                if done:
                    self._maintain()  # leave the log within its retention and quota
                    return

    def _next_batch(self, next_maintenance: float) -> tuple[list[_Item], bool]:
        with self._cond:
            while not (self._queue or self._held or self._closing or time.monotonic() >= next_maintenance):
                self._cond.wait(max(0.0, next_maintenance - time.monotonic()))
            if self._queue and not self._held:
                deadline = self._queue[0].queued_at + self.flush_interval
                while not (len(self._queue) >= self.batch_size or self._flush_wanted or self._closing):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            batch, self._held = self._held, []
            while self._queue and len(batch) < 4 * self.batch_size:
                batch.append(self._queue.popleft())
            if not self._queue:
                self._flush_wanted = False
            return batch, self._closing

    def _commit(self, batch: list[_Item]) -> bool:
        notes = self._take_notes()
        now = time.time()
        rows = [item.row for item in batch]
        rows += [PendingRow("event", AUDIT_SESSION, int(now), envelope(note, now, None, None)) for note in notes]
        try:
            last_seq = self.db.append(rows)
        except (sqlite3.Error, OSError) as exc:
            with self._cond:
                self._notes = notes + self._notes
            self._storage_failed(exc)
            return False
        report = CommitReport(batch[-1].ticket, last_seq, len(rows))
        recovered = None
        with self._cond:
            self._committed_ticket = report.through_ticket
            self._committed_rows += report.rows
            if self._storage_error is not None:
                recovered = (self._storage_error, time.monotonic() - self._storage_failed_at)
                self._storage_error = None
                self._notes.append({"event": "storage_recovered", "error": recovered[0][:200], "seconds": recovered[1]})
            self._cond.notify_all()
        if recovered is not None:
            self._report(
                f"log storage recovered after {recovered[1]:.1f} s ({recovered[0]}); nothing committed was lost"
            )
        if self.on_commit is not None:
            try:
                self.on_commit(report)
            except Exception:  # a reporting callback must never stop the writer
                _log.exception("on_commit callback failed")
        return True

    def _take_notes(self) -> list[dict[str, object]]:
        """Writer events to append with the next batch: frames dropped since the last commit, recoveries."""
        with self._cond:
            notes, self._notes = self._notes, []
            if self._dropped_unreported:
                notes.append({"event": "frames_dropped", "count": self._dropped_unreported, "reason": "queue full"})
                self._dropped_unreported = 0
        return notes

    def _storage_failed(self, exc: BaseException) -> None:
        kind = "disk full" if is_disk_full(exc) else "storage error"
        message = f"{kind}: {exc}"
        with self._cond:
            first = self._storage_error is None
            self._storage_error = message
            if first:
                self._storage_failed_at = time.monotonic()
        if first:
            self._report(
                f"log commits failing ({message}); rows are held in memory and retried, frames beyond "
                f"{self.queue_limit} waiting are dropped and counted"
            )

    def _maintain(self) -> None:
        purged = 0
        try:
            if self.retention_days is not None:
                purged += self.db.purge_older_than(time.time() - self.retention_days * 86400.0, "retention")
            if self.quota_bytes is not None:
                n = self.db.purge_to_quota(self.quota_bytes, "quota")
                if n:
                    self._report(f"log over its {self.quota_bytes} byte quota: purged the {n} oldest rows")
                purged += n
        except (sqlite3.Error, OSError) as exc:
            self._report(f"log purge failed ({exc}); will retry")
        if purged:
            with self._cond:
                self._purged += purged

    def _report(self, message: str) -> None:
        _log.warning(message)
        if self.on_problem is not None:
            try:
                self.on_problem(message)
            except Exception:  # a reporting callback must never stop the writer
                _log.exception("on_problem callback failed")
