"""The outbox of store-and-forward: event rows of the encrypted log, and per-forwarder delivery marks.

Every event the device forwards is first an ``event`` row of the log (sealed, chained, committed with
``synchronous=FULL``); its id on the wire is ``<log_id hex>:<seq>``, unique and stable across restarts.
What each forwarder has delivered is kept in its own table, ``forward_marks`` (forwarder name -> the row
``through_seq`` through which every event row was delivered or was not for it), beside the sealed rows and
never inside them: a delivery mark never modifies a sealed row, so ``edge-sdk log verify`` is unaffected.
A forwarder delivers in row order and moves its mark only after the broker or server acknowledged the
event, so a crash (SIGKILL included) between the two sends that event again with the same id: at least once,
duplicates only with the same id.

The outbox is bounded by the log's own retention and quota: rows the log purges before they were delivered
are gone (``pending`` reports how many rows a purge took past a mark, ``backlog`` what is waiting and since
when), which ``edge-sdk doctor`` shows.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge_sdk.store.db import LogDatabase
from edge_sdk.store.keys import KeyRing

_MARKS = """
CREATE TABLE IF NOT EXISTS forward_marks (
    forwarder TEXT PRIMARY KEY,
    through_seq INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    lost INTEGER NOT NULL DEFAULT 0,
    started INTEGER NOT NULL,
    updated INTEGER NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class OutboxRow:
    """One event row of the log: its seq, wall-clock time and decrypted event record."""

    seq: int
    time: float
    record: dict[str, object]


@dataclass(frozen=True)
class Backlog:
    """What waits for one forwarder: event rows after its mark, the oldest one's time, its totals."""

    forwarder: str
    through_seq: int
    waiting: int
    oldest: float | None
    delivered: int
    lost: int


class OutboxError(Exception):
    """The log cannot be read as an outbox (a row fails authentication, the file is gone)."""


class Outbox:
    """One connection to the log for one or more forwarders (use it from one thread)."""

    def __init__(self, db: LogDatabase) -> None:
        self.db = db
        self.db.conn.executescript(_MARKS)

    @classmethod
    def open(cls, log_dir: Path | str, ring: KeyRing) -> Outbox:
        """Open the existing log in ``log_dir`` (never creates one: the log sink does)."""
        return cls(LogDatabase.open(log_dir, ring))

    @property
    def log_id(self) -> str:
        return self.db.sealer.log_id.hex()

    def event_id(self, seq: int) -> str:
        return f"{self.log_id}:{seq}"

    def close(self) -> None:
        self.db.close()

    def _newest_seq(self) -> int:
        row = self.db.conn.execute("SELECT MAX(seq) FROM records").fetchone()
        return int(row[0] or 0)

    def _purged_through(self) -> int:
        row = self.db.conn.execute("SELECT MAX(through_seq) FROM checkpoints").fetchone()
        return int(row[0] or 0)

    def start(self, forwarder: str, *, from_seq: int | None = None) -> int:
        """The mark of ``forwarder``; a new forwarder starts after the newest row (``from_seq`` to choose):
        history written before forwarding was configured is not sent."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT through_seq FROM forward_marks WHERE forwarder = ?", (forwarder,)).fetchone()
            if row is not None:
                return int(row[0])
            seq = self._newest_seq() if from_seq is None else from_seq
            now = int(time.time())
            conn.execute(
                "INSERT INTO forward_marks (forwarder, through_seq, started, updated) VALUES (?, ?, ?, ?)",
                (forwarder, seq, now, now),
            )
            return seq

    def mark(self, forwarder: str, through_seq: int, delivered: int = 0, lost: int = 0) -> None:
        """Every event row through ``through_seq`` is done for ``forwarder`` (``delivered`` of them were sent
        and acknowledged now); the mark never moves back."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE forward_marks SET through_seq = MAX(through_seq, ?), delivered = delivered + ?, "
                "lost = lost + ?, updated = ? WHERE forwarder = ?",
                (through_seq, delivered, lost, int(time.time()), forwarder),
            )

    def through(self, forwarder: str) -> int | None:
        row = self.db.conn.execute("SELECT through_seq FROM forward_marks WHERE forwarder = ?", (forwarder,)).fetchone()
        return None if row is None else int(row[0])

    def pending(self, forwarder: str, limit: int = 64) -> tuple[list[OutboxRow], int]:
        """Up to ``limit`` event rows after ``forwarder``'s mark, oldest first, and how many rows a purge
        removed past the mark since the last call (the mark is moved over them and they are counted lost)."""
        through = self.through(forwarder)
        if through is None:
            through = self.start(forwarder)
        purged = self._purged_through()
        lost = 0
        if purged > through:
            lost = purged - through
            self.mark(forwarder, purged, lost=lost)
            through = purged
        return list(self._rows(through, limit)), lost

    def _rows(self, after: int, limit: int) -> Iterator[OutboxRow]:
        for row in self.db.rows("WHERE kind = 'event' AND seq > ?", (after,)):
            if limit <= 0:
                return
            limit -= 1
            plaintext = self.db.sealer.open(row.meta, row.nonce, row.payload)
            if plaintext is None:
                raise OutboxError(
                    f"row {row.meta.seq} of {self.db.path} fails authentication; run `edge-sdk log verify`"
                )
            env = json.loads(plaintext)
            record = env.get("r") if isinstance(env.get("r"), dict) else {}
            yield OutboxRow(row.meta.seq, float(env.get("t", row.meta.ts)), record)

    def backlog(self, forwarder: str, wanted: set[str] | frozenset[str] | None = None) -> Backlog:
        """Event rows waiting for ``forwarder`` (only the event names in ``wanted`` when given)."""
        row = self.db.conn.execute(
            "SELECT through_seq, delivered, lost FROM forward_marks WHERE forwarder = ?", (forwarder,)
        ).fetchone()
        if row is None:
            return Backlog(forwarder, 0, 0, None, 0, 0)
        through, delivered, lost = (int(v) for v in row)
        waiting, oldest = 0, None
        for item in self._rows(max(through, self._purged_through()), 10**9):
            if wanted is None or item.record.get("event") in wanted:
                waiting += 1
                oldest = item.time if oldest is None else oldest
        return Backlog(forwarder, through, waiting, oldest, delivered, lost)

    def forwarders(self) -> list[str]:
        return [r[0] for r in self.db.conn.execute("SELECT forwarder FROM forward_marks ORDER BY forwarder")]


def read_backlogs(log_dir: Path | str, ring: KeyRing, wanted: frozenset[str] | None = None) -> list[Backlog]:
    """Every forwarder's backlog in the log at ``log_dir`` (for ``doctor``); [] when nothing was forwarded."""
    try:
        db = LogDatabase.open(log_dir, ring, read_only=True)
    except sqlite3.Error as exc:  # pragma: no cover - reported by the caller
        raise OutboxError(str(exc)) from None
    try:
        has = db.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'forward_marks'").fetchone()
        if not has:
            return []
        outbox = Outbox.__new__(Outbox)
        outbox.db = db
        return [outbox.backlog(name, wanted) for name in outbox.forwarders()]
    finally:
        db.close()
