"""The background writer: a bounded queue between the bedside loop and batched, durable SQLite commits.

* ``submit`` never blocks and never touches the disk. It returns a *ticket* (1, 2, 3, ... per writer) or
  None when the record itself was dropped.
* Memory bound: at most ``queue_limit`` rows wait in memory (rows waiting for their batch, rows held
  back by a storage fault and the batch a write is trying now). Beyond it the **oldest** waiting ``frame``
  rows are dropped and counted (a batch already being written is not: if that write succeeds, e.g. the
  disk had space again, it lands on disk beside the newest rows, and the gap is a ``rows_dropped`` event);
  ``alert``/``event``/``audit`` rows are never dropped (they are rare and clinically relevant). Every drop
  is written to the log as a ``rows_dropped`` event (count, first/last time, reason) with the next commit.
* The writer thread commits a batch when ``batch_size`` rows wait, ``flush_interval`` seconds after the
  oldest waiting row, on ``flush()`` and on ``close()``. One transaction per batch, ``synchronous=FULL``.
* "Committed" is reported after COMMIT returns: ``on_commit(CommitReport)`` says every ticket up to
  ``through_ticket`` is durable or was dropped and counted (tickets commit in order), and
  :meth:`LogWriter.health` shows the same.
* A failing commit (disk full, I/O error, a lock held too long) keeps its rows in memory, reports the
  condition once through ``on_problem`` and in :attr:`WriterHealth.fault`, runs the quota purge to make room
  and retries every ``retry_interval`` seconds; what is held is written once space returns. Rows already
  committed are never touched by a failure. A log that could not even be opened (a full disk at start) is
  the same fault: the writer retries opening it.
* ``flush()`` from the loop never waits long: at once in a storage fault, else at most ``flush_timeout``.
  ``close()`` retries a failing disk for at most ``close_timeout`` seconds; rows still not on disk then are
  counted in :attr:`WriterHealth.lost_at_close` and the fault.
* Retention (rows older than ``retention_days``) and quota (``quota_bytes`` of database pages) purges
  run every ``maintenance_interval`` seconds on the writer thread; a purge that cannot run is a fault, and
  any unexpected exception that stops the thread is one too (never a silent death).

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

from edge_sdk.errors import EdgeSdkError
from edge_sdk.store.db import AUDIT_SESSION, LogDatabase, PendingRow, is_disk_full
from edge_sdk.store.records import envelope

if TYPE_CHECKING:  # importing edge_sdk.pipeline loads OpenCV; log readers import this module without it
    from edge_sdk.pipeline.config import LogSettings

_log = logging.getLogger("edge_sdk.store")


@dataclass(frozen=True)
class LogTuning:
    """How the private log batches, bounds and paces its work (engineering knobs, not user configuration).

    ``batch_size`` rows or ``flush_interval`` seconds make a commit; ``queue_limit`` rows may be held in
    memory (waiting, or held back while the disk is full) before the oldest frames are dropped; purges run
    every ``maintenance_interval`` seconds; a failed commit (or open) is retried every ``retry_interval``
    seconds. A plain ``flush()`` waits at most ``flush_timeout`` seconds (and not at all during a storage
    fault); ``close()`` retries a failing disk for at most ``close_timeout`` seconds.
    ``hard_limit_bytes`` caps the database file itself (SQLite ``max_page_count``, set by
    :meth:`EncryptedLogSink.open <edge_sdk.store.sink.EncryptedLogSink.open>`): writes beyond it fail like a
    full disk and are retried after the quota purge.
    """

    batch_size: int = 64
    flush_interval: float = 1.0
    queue_limit: int = 2048
    maintenance_interval: float = 60.0
    retry_interval: float = 1.0
    flush_timeout: float = 1.0
    close_timeout: float = 10.0
    hard_limit_bytes: int | None = None


DEFAULT_TUNING = LogTuning()


@dataclass(frozen=True)
class CommitReport:
    """Every ticket up to ``through_ticket`` is on disk (or was dropped and counted); the batch ended at row
    ``last_seq``."""

    through_ticket: int
    last_seq: int
    rows: int


@dataclass(frozen=True)
class WriterHealth:
    """The writer in detail. ``fault`` is what is wrong now in words (None: healthy); ``waiting`` counts
    rows in memory (queued, held back or being committed); ``lost_at_close`` rows were never written."""

    committed_ticket: int
    committed_rows: int
    waiting: int
    dropped: int
    purged: int
    storage_error: str | None
    alive: bool
    fault: str | None = None
    lost_at_close: int = 0


@dataclass(frozen=True)
class _Item:
    ticket: int
    queued_at: float
    row: PendingRow


@dataclass
class _DropTally:
    """Frames dropped since the last ``rows_dropped`` event was written."""

    count: int = 0
    first_ts: int = 0
    last_ts: int = 0
    reasons: tuple[str, ...] = ()

    def add(self, row: PendingRow, reason: str) -> None:
        self.first_ts = row.ts if self.count == 0 else min(self.first_ts, row.ts)
        self.last_ts = max(self.last_ts, row.ts)
        self.count += 1
        if reason not in self.reasons:
            self.reasons += (reason,)

    def event(self) -> dict[str, object]:
        return {
            "event": "rows_dropped",
            "kind": "frame",
            "count": self.count,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "reason": "; ".join(self.reasons),
        }


def _describe(exc: BaseException) -> str:
    """``disk full: ...`` / ``storage error: ...`` for storage failures, an SDK error's own message, else the
    exception's type and text."""
    if isinstance(exc, (sqlite3.Error, OSError)):
        return f"{'disk full' if is_disk_full(exc) else 'storage error'}: {exc}"
    if isinstance(exc, EdgeSdkError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class LogWriter:
    """Owns the log database on one thread; see the module docstring for the policies.

    ``db`` is the open log, or None when it could not be opened yet (a full disk at start): ``opener`` is
    then called on the writer thread every ``retry_interval`` until it returns the database.
    """

    def __init__(
        self,
        db: LogDatabase | None,
        settings: LogSettings,
        tuning: LogTuning = DEFAULT_TUNING,
        *,
        opener: Callable[[], LogDatabase] | None = None,
        open_error: str | None = None,
        on_commit: Callable[[CommitReport], None] | None = None,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        """Start the writer thread on ``db``: ``settings`` says what to keep (retention, quota in bytes)."""
        if db is None and opener is None:
            raise ValueError("a LogWriter needs an open database or an opener")
        self.db = db
        self.opener = opener
        self.tuning = tuning
        self.batch_size = max(1, tuning.batch_size)
        self.queue_limit = max(1, tuning.queue_limit)
        self.retention_days = settings.retention_days
        self.quota_bytes = settings.quota_bytes
        self.on_commit = on_commit
        self.on_problem = on_problem
        self._cond = threading.Condition()
        self._frames: deque[_Item] = deque()
        self._others: deque[_Item] = deque()  # alerts, events, audit rows: never dropped
        self._in_flight: list[_Item] = []
        self._next_ticket = 1
        self._committed_ticket = 0
        self._committed_rows = 0
        self._dropped = 0
        self._drops = _DropTally()
        self._notes: list[dict[str, object]] = []
        self._purged = 0
        self._storage_error: str | None = None
        self._storage_failed_at = 0.0
        self._retry_at = 0.0
        self._maintenance_error: str | None = None
        self._stopped: str | None = None  # why the thread died, if it did
        self._lost_at_close = 0
        self._flush_wanted = False
        self._closing = False
        self._close_deadline = float("inf")
        if db is None:
            self._storage_failed(f"log unavailable: {open_error or 'not opened yet'}")
        self._thread = threading.Thread(target=self._run, name="edge-sdk-log-writer", daemon=True)
        self._thread.start()

    # -- caller side ---------------------------------------------------------------------------------
    def submit(self, row: PendingRow) -> int | None:
        """Queue one sealed-to-be row; its ticket, or None when it was a frame dropped at once (memory full
        of rows that are never dropped)."""
        with self._cond:
            if self._closing:
                raise RuntimeError("the log writer is closed")
            if self._held() >= self.queue_limit:
                if row.kind == "frame" and not self._frames:
                    self._count_drop(row)
                    return None
                self._drop_oldest_frames(self.queue_limit - 1)
            ticket = self._next_ticket
            self._next_ticket += 1
            (self._frames if row.kind == "frame" else self._others).append(_Item(ticket, time.monotonic(), row))
            if len(self._frames) + len(self._others) >= self.batch_size and self._storage_error is None:
                self._cond.notify()
            return ticket

    def flush(self, timeout: float | None = None, *, through_fault: bool = False) -> bool:
        """Wait until every row submitted so far is committed (or dropped and counted); False when not.

        ``timeout`` None waits at most ``tuning.flush_timeout``. Unless ``through_fault``, a storage fault
        (or a stopped writer) ends the wait at once: the bedside loop must not stall on a full disk.
        """
        limit = self.tuning.flush_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._cond:
            target = self._next_ticket - 1
            self._flush_wanted = True
            self._cond.notify_all()
            while not self._done_through(target) and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._storage_error is not None and not through_fault):
                    return False
                self._cond.wait(remaining)
            return self._done_through(target)

    def close(self, timeout: float | None = None) -> WriterHealth:
        """Commit what is waiting (retrying storage errors for at most ``timeout``, default
        ``tuning.close_timeout``), stop the thread, close the file."""
        limit = self.tuning.close_timeout if timeout is None else timeout
        with self._cond:
            if not self._closing:
                self._closing = True
                self._close_deadline = time.monotonic() + limit
            self._cond.notify_all()
        self._thread.join(limit + 5.0)
        if self._thread.is_alive():  # stuck inside the disk (e.g. a hung mount): say so, never hang the caller
            with self._cond:
                self._stopped = self._stopped or f"still busy {limit + 5.0:g} s after close (a hung disk?)"
        elif self.db is not None:
            self.db.close()
        return self.health

    @property
    def health(self) -> WriterHealth:
        """A snapshot; takes the queue lock only briefly (never waits on the disk)."""
        with self._cond:
            return WriterHealth(
                committed_ticket=self._committed_ticket,
                committed_rows=self._committed_rows,
                waiting=self._held(),
                dropped=self._dropped,
                purged=self._purged,
                storage_error=self._storage_error,
                alive=self._thread.is_alive(),
                fault=self._fault(),
                lost_at_close=self._lost_at_close,
            )

    def _fault(self) -> str | None:
        """What is wrong now, in words (caller holds the lock)."""
        held = self._held()
        if self._stopped is not None:
            return f"log writer stopped ({self._stopped}); {held} rows not written"
        if self._lost_at_close:
            return f"log closed with {self._lost_at_close} rows NOT committed ({self._storage_error})"
        if self._storage_error is not None:
            return f"{self._storage_error}; {held} rows held in memory, {self._dropped} dropped"
        return self._maintenance_error

    def _done_through(self, target: int) -> bool:
        """No row with a ticket <= ``target`` is still in memory (caller holds the lock)."""
        oldest = [q[0].ticket for q in (self._frames, self._others) if q]
        if self._in_flight:
            oldest.append(self._in_flight[0].ticket)
        return not oldest or min(oldest) > target

    def _held(self) -> int:
        """Rows in memory: waiting, held back, or in the write now under way (caller holds the lock)."""
        return len(self._frames) + len(self._others) + len(self._in_flight)

    def _drop_oldest_frames(self, keep: int) -> None:
        """Drop the oldest waiting frames until at most ``keep`` rows are held (caller holds the lock)."""
        while self._frames and self._held() > keep:
            self._count_drop(self._frames.popleft().row)

    def _count_drop(self, row: PendingRow) -> None:
        if self._stopped is not None:
            reason = "log writer stopped"
        elif self._storage_error is not None:
            reason = "log storage fault"
        else:
            reason = "queue full (disk slower than the loop)"
        self._dropped += 1
        self._drops.add(row, reason)

    # -- writer thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - a dying writer must be reported, never silent
            with self._cond:
                self._stopped = _describe(exc)
                self._cond.notify_all()
            _log.error("log writer thread stopped", exc_info=exc)
            self._report(f"log writer stopped ({_describe(exc)}): results are no longer written to the log")

    def _loop(self) -> None:
        next_maintenance = time.monotonic()
        while True:
            batch, closing = self._next_batch(next_maintenance)
            if (batch or self._has_notes()) and not self._commit(batch):
                next_maintenance = min(next_maintenance, time.monotonic())  # a quota purge may make room
            if time.monotonic() >= next_maintenance:
                if self.db is not None:
                    self._maintain()
                next_maintenance = time.monotonic() + self.tuning.maintenance_interval
            if closing and self._drained():
                if self.db is not None and self._storage_error is None:
                    self._maintain()  # leave the log within its retention and quota
                return
            if closing and self._storage_error is not None and time.monotonic() >= self._close_deadline:
                self._give_up_at_close()
                return

    def _next_batch(self, next_maintenance: float) -> tuple[list[_Item], bool]:
        """Wait until there is work, then take up to four batches of rows in ticket order."""
        with self._cond:
            while (wait := self._idle_for(next_maintenance)) > 0:
                self._cond.wait(wait)
            batch: list[_Item] = []
            if time.monotonic() >= self._retry_at:
                most = min(4 * self.batch_size, max(1, self.queue_limit // 2))  # room is left for new rows
                while len(batch) < most and (self._frames or self._others):
                    batch.append(self._pop_oldest())
            if not (self._frames or self._others):
                self._flush_wanted = False
            self._in_flight = batch
            return batch, self._closing

    def _idle_for(self, next_maintenance: float) -> float:
        """Seconds to wait before there is something to do; 0 when there is (caller holds the lock)."""
        now = time.monotonic()
        if self._closing and now >= self._close_deadline:
            return 0.0
        if now < self._retry_at:  # a storage fault: next try at _retry_at (or when closing ends)
            return min(self._retry_at, self._close_deadline) - now
        rows = len(self._frames) + len(self._others)
        if self._closing or now >= next_maintenance or (self._storage_error is not None and rows):
            return 0.0
        if not rows:
            return next_maintenance - now
        if rows >= self.batch_size or self._flush_wanted:
            return 0.0
        oldest = min(q[0].queued_at for q in (self._frames, self._others) if q)
        return max(0.0, min(oldest + self.tuning.flush_interval, next_maintenance) - now)

    def _pop_oldest(self) -> _Item:
        if not self._others or (self._frames and self._frames[0].ticket < self._others[0].ticket):
            return self._frames.popleft()
        return self._others.popleft()

    def _has_notes(self) -> bool:
        with self._cond:
            return bool(self._notes or self._drops.count) and time.monotonic() >= self._retry_at

    def _drained(self) -> bool:
        with self._cond:
            return not (self._frames or self._others or self._notes or self._drops.count)

    def _commit(self, batch: list[_Item]) -> bool:
        """One durable transaction of ``batch`` plus the writer's pending notes; False on a storage failure
        (the rows go back to the front of the queue, within the memory bound)."""
        notes = self._take_notes()
        now = time.time()
        rows = [item.row for item in batch]
        rows += [PendingRow("event", AUDIT_SESSION, int(now), envelope(note, now, None, None)) for note in notes]
        if self.db is None and not self._open():
            self._hold_back(batch, notes)
            return False
        try:
            last_seq = self.db.append(rows)
        except (sqlite3.Error, OSError) as exc:
            self._hold_back(batch, notes)
            self._storage_failed(_describe(exc))
            return False
        self._committed(CommitReport(batch[-1].ticket if batch else self._committed_ticket, last_seq, len(rows)))
        return True

    def _open(self) -> bool:
        """Try to open a log that was unavailable (e.g. a full disk at start); False (reported) on failure."""
        assert self.opener is not None
        try:
            self.db = self.opener()
        except Exception as exc:  # whatever stops the open (full disk, a damaged file) is this fault, retried
            self._storage_failed(f"log unavailable: {_describe(exc)}")
            return False
        _log.info("log %s opened after a storage fault", self.db.path)
        return True

    def _hold_back(self, batch: list[_Item], notes: list[dict[str, object]]) -> None:
        """Put a failed batch back in front of the queue (oldest frames beyond the bound are dropped)."""
        with self._cond:
            for item in reversed(batch):
                (self._frames if item.row.kind == "frame" else self._others).appendleft(item)
            self._in_flight = []
            self._notes = notes + self._notes
            self._retry_at = time.monotonic() + self.tuning.retry_interval
            self._drop_oldest_frames(self.queue_limit)
            self._cond.notify_all()

    def _committed(self, report: CommitReport) -> None:
        recovered = None
        with self._cond:
            self._committed_ticket = report.through_ticket
            self._committed_rows += report.rows
            self._in_flight = []
            self._retry_at = 0.0
            if self._storage_error is not None:
                recovered = (self._storage_error, time.monotonic() - self._storage_failed_at)
                self._storage_error = None
                self._notes.append(
                    {"event": "storage_recovered", "error": recovered[0][:200], "seconds": round(recovered[1], 3)}
                )
            self._cond.notify_all()
        if recovered is not None:
            self._report(f"log storage recovered after {recovered[1]:.1f} s ({recovered[0]}); held rows written")
        if self.on_commit is not None:
            try:
                self.on_commit(report)
            except Exception:  # a reporting callback must never stop the writer
                _log.exception("on_commit callback failed")

    def _take_notes(self) -> list[dict[str, object]]:
        """Writer events to append with the next batch: rows dropped since the last commit, recoveries."""
        with self._cond:
            notes, self._notes = self._notes, []
            if self._drops.count:
                notes.append(self._drops.event())
                self._drops = _DropTally()
        return notes

    def _give_up_at_close(self) -> None:
        with self._cond:
            self._lost_at_close = len(self._frames) + len(self._others)
            lost = self._lost_at_close
            self._cond.notify_all()
        self._report(f"log writer closed with {lost} rows NOT committed ({self._storage_error})")

    def _storage_failed(self, message: str) -> None:
        with self._cond:
            first = self._storage_error is None
            self._storage_error = message
            self._retry_at = time.monotonic() + self.tuning.retry_interval
            if first:
                self._storage_failed_at = time.monotonic()
        if first:
            self._report(
                f"log storage fault ({message}); rows are held in memory and retried every "
                f"{self.tuning.retry_interval:g} s, the oldest frames beyond {self.queue_limit} held are dropped "
                "and counted"
            )

    def _maintain(self) -> None:
        """Retention and quota purges. A purge that cannot run is a fault in ``health``, never a dead thread."""
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
            _log.debug("log purge failed (%s); will retry", exc)  # the commit path reports storage faults
        except Exception as exc:  # a purge that cannot be computed (e.g. retention_days = inf)
            self._maintenance_failed(f"log purge cannot run ({_describe(exc)}): old rows are not removed")
        else:
            with self._cond:
                self._maintenance_error = None
        if purged:
            with self._cond:
                self._purged += purged

    def _maintenance_failed(self, message: str) -> None:
        with self._cond:
            first, self._maintenance_error = self._maintenance_error != message, message
        if first:
            self._report(message)

    def _report(self, message: str) -> None:
        _log.warning(message)
        if self.on_problem is not None:
            try:
                self.on_problem(message)
            except Exception:  # a reporting callback must never stop the writer
                _log.exception("on_problem callback failed")
