"""The SQLite file of the private log: schema, connection settings, appends, head and purge checkpoints.

One database per log directory (``results.db``), WAL mode with ``synchronous=FULL`` so a committed
transaction survives a crash, ``auto_vacuum=INCREMENTAL`` so purges give space back. Every append runs
in one ``BEGIN IMMEDIATE`` transaction that reads the head, inserts the sealed rows and moves the head,
so several processes (the bedside writer, an ``edge-sdk log`` command appending an audit row) can share
a log without forking its chain.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_sdk.errors import EdgeSdkError
from edge_sdk.store.keys import KeyRing, LogKeyError
from edge_sdk.store.records import envelope
from edge_sdk.store.sealing import RowMeta, Sealer

DB_NAME = "results.db"
SCHEMA_VERSION = "1"
AUDIT_SESSION = "-"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    session TEXT NOT NULL,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    payload BLOB NOT NULL,
    link BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_ts ON records(ts);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY,
    through_seq INTEGER NOT NULL,
    head BLOB NOT NULL,
    purged INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL,
    link BLOB NOT NULL
);
"""


class LogDatabaseError(EdgeSdkError):
    """The log database is missing, damaged, or not an edge-sdk log."""


@dataclass(frozen=True)
class PendingRow:
    """A row waiting to be sealed: clear metadata (minus seq) and its plaintext envelope."""

    kind: str
    session: str
    ts: int
    plaintext: bytes


@dataclass(frozen=True)
class StoredRow:
    meta: RowMeta
    nonce: bytes
    payload: bytes
    link: bytes


@dataclass(frozen=True)
class Checkpoint:
    id: int
    through_seq: int
    head: bytes
    purged: int
    reason: str
    at: int
    link: bytes


def is_disk_full(exc: BaseException) -> bool:
    """True for the storage-exhausted family: SQLITE_FULL, ENOSPC/EDQUOT, and I/O errors they cause."""
    if isinstance(exc, OSError):
        return exc.errno in (28, 122)  # ENOSPC, EDQUOT
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "disk is full" in text or "disk i/o error" in text or getattr(exc, "sqlite_errorcode", 0) == 13
    return False


def log_path(log_dir: Path | str) -> Path:
    return Path(log_dir) / DB_NAME


class LogDatabase:
    """An open log: the connection plus the sealer of its key ring."""

    def __init__(self, conn: sqlite3.Connection, path: Path, sealer: Sealer) -> None:
        self.conn = conn
        self.path = path
        self.sealer = sealer

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, log_dir: Path | str, ring: KeyRing, *, create: bool = False, hard_limit_bytes: int | None = None
    ) -> LogDatabase:
        """Open (``create``: or make) the log in ``log_dir``; checks that ``ring`` is this log's key."""
        path = log_path(log_dir)
        if not path.exists():
            if not create:
                raise LogDatabaseError(f"no log at {path} (is --log-dir right?)")
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # sqlite gives -wal/-shm the same mode
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
            conn.text_factory = _lenient_text  # altered text must fail authentication, not crash the reader
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA journal_size_limit=1048576")
            if hard_limit_bytes:
                page = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count={max(16, int(hard_limit_bytes) // page)}")
            conn.executescript(_SCHEMA)
            db = cls(conn, path, Sealer(ring, b""))
            db._init_meta(ring)
        except sqlite3.DatabaseError as exc:
            raise LogDatabaseError(f"log database {path} is damaged, truncated or not a log (sqlite: {exc})") from None
        return db

    def _init_meta(self, ring: KeyRing) -> None:
        with self.transaction():
            meta = dict(self.conn.execute("SELECT name, value FROM meta"))
            if "log_id" not in meta:
                meta = {
                    "schema": SCHEMA_VERSION,
                    "log_id": os.urandom(16),
                    "secret_check": ring.secret_check(),
                    "created": str(int(time.time())),
                }
                self.conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        if meta.get("schema") != SCHEMA_VERSION:
            raise LogDatabaseError(
                f"{self.path}: log schema {meta.get('schema')!r}, this edge-sdk reads {SCHEMA_VERSION}"
            )
        if bytes(meta["secret_check"]) != ring.secret_check():
            raise LogKeyError(
                f"{ring.source} is not the key of the log {self.path} (its secret does not match); "
                "nothing was decrypted"
            )
        self.sealer = Sealer(ring, bytes(meta["log_id"]))
        for kid in ring.keys:
            stored = meta.get(f"keycheck:{kid}")
            if stored is not None and bytes(stored) != ring.key_check(kid):
                raise LogKeyError(f"{ring.source}: key id '{kid}' holds a different key than the one this log used")

    def register_active_key(self) -> None:
        """Record the active key's check value (first use of a key id by a writer)."""
        ring = self.sealer.ring
        with self.transaction():
            self.conn.execute(
                "INSERT OR IGNORE INTO meta VALUES (?, ?)", (f"keycheck:{ring.active}", ring.key_check(ring.active))
            )

    def close(self) -> None:
        self.conn.close()

    def transaction(self):  # -> context manager
        return _Transaction(self.conn)

    # -- head and checkpoints ----------------------------------------------------------------------
    def checkpoints(self) -> list[Checkpoint]:
        rows = self.conn.execute("SELECT id, through_seq, head, purged, reason, at, link FROM checkpoints ORDER BY id")
        return [Checkpoint(r[0], r[1], bytes(r[2]), r[3], r[4], r[5], bytes(r[6])) for r in rows]

    def stored_head(self) -> tuple[int, bytes, bytes] | None:
        """(seq, link, mac) as the last append left it, or None for an empty log."""
        row = self.conn.execute("SELECT value FROM meta WHERE name = 'head'").fetchone()
        if row is None:
            return None
        doc = json.loads(row[0])
        return int(doc["seq"]), bytes.fromhex(doc["link"]), bytes.fromhex(doc["mac"])

    def _head(self) -> tuple[int, bytes]:
        head = self.stored_head()
        if head is not None:
            return head[0], head[1]
        return 0, self.sealer.genesis()

    def _set_head(self, seq: int, link: bytes) -> None:
        doc = {"seq": seq, "link": link.hex(), "mac": self.sealer.head_mac(seq, link).hex()}
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('head', ?)", (json.dumps(doc),))

    # -- appending -----------------------------------------------------------------------------------
    def append(self, rows: Sequence[PendingRow]) -> int:
        """Seal and insert ``rows`` in one durable transaction; returns the last seq."""
        with self.transaction():
            return self._append_in_transaction(rows)

    def _append_in_transaction(self, rows: Sequence[PendingRow]) -> int:
        seq, link = self._head()
        key_id = self.sealer.ring.active
        sealed = []
        for row in rows:
            seq += 1
            s = self.sealer.seal(link, RowMeta(seq, row.ts, row.kind, row.session, key_id), row.plaintext)
            link = s.link
            sealed.append(s.as_params())
        self.conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)", sealed)
        self._set_head(seq, link)
        return seq

    def append_audit(self, action: str, details: dict[str, object]) -> int:
        """Append an audit row (who did what to the log) to the chain; returns its seq."""
        now = time.time()
        plaintext = envelope({"action": action, **details}, now, None, None)
        return self.append([PendingRow("audit", AUDIT_SESSION, int(now), plaintext)])

    # -- reading -------------------------------------------------------------------------------------
    def rows(self, where: str = "", params: Sequence[object] = ()) -> Iterator[StoredRow]:
        sql = (
            "SELECT seq, CAST(ts AS INTEGER), kind, session, key_id, CAST(nonce AS BLOB), CAST(payload AS BLOB), "
            f"CAST(link AS BLOB) FROM records {where} ORDER BY seq"
        )
        for r in self.conn.execute(sql, params):
            yield StoredRow(RowMeta(r[0], r[1], r[2], r[3], r[4]), bytes(r[5]), bytes(r[6]), bytes(r[7]))

    def used_bytes(self) -> int:
        """Bytes of database pages in use (free pages excluded)."""
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * size

    # -- purging -------------------------------------------------------------------------------------
    def purge_through(self, through_seq: int, reason: str) -> int:
        """Delete rows ``seq <= through_seq`` (a prefix), keeping the chain verifiable.

        Stores a checkpoint (the purged prefix's head link, itself chained by HMAC) and appends an audit
        row, all in one transaction; returns the number of rows deleted.
        """
        with self.transaction():
            last = self.conn.execute(
                "SELECT seq, link FROM records WHERE seq <= ? ORDER BY seq DESC LIMIT 1", (through_seq,)
            ).fetchone()
            if last is None:
                return 0
            through_seq, head = last[0], bytes(last[1])
            count = self.conn.execute("SELECT COUNT(*) FROM records WHERE seq <= ?", (through_seq,)).fetchone()[0]
            previous = self.checkpoints()
            prev_link = previous[-1].link if previous else self.sealer.genesis()
            at = int(time.time())
            cp_link = self.sealer.checkpoint_link(prev_link, through_seq, head, count, reason, at)
            self.conn.execute(
                "INSERT INTO checkpoints (through_seq, head, purged, reason, at, link) VALUES (?, ?, ?, ?, ?, ?)",
                (through_seq, head, count, reason, at, cp_link),
            )
            self.conn.execute("DELETE FROM records WHERE seq <= ?", (through_seq,))
            plaintext = envelope(
                {"action": "purge", "reason": reason, "through_seq": through_seq, "rows": count},
                time.time(),
                None,
                None,
            )
            self._append_in_transaction([PendingRow("audit", AUDIT_SESSION, at, plaintext)])
        self.reclaim_space()
        return count

    def reclaim_space(self) -> None:
        try:
            self.conn.execute("PRAGMA incremental_vacuum")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError:
            pass  # busy or full: space comes back at the next checkpoint

    def purge_older_than(self, cutoff_ts: float, reason: str = "retention") -> int:
        """Purge the prefix up to the last row stamped before ``cutoff_ts``.

        Rows are in write order, so a prefix is normally exactly the old rows; after a clock jump it also
        takes the rows written before that old one (storage limitation wins over keeping a few rows).
        """
        through = self.conn.execute("SELECT MAX(seq) FROM records WHERE ts < ?", (int(cutoff_ts),)).fetchone()[0]
        return self.purge_through(through, reason) if through else 0

    def purge_to_quota(self, quota_bytes: int, reason: str = "quota") -> int:
        """When more than ``quota_bytes`` are in use, purge oldest rows down to 80 % of it."""
        used = self.used_bytes()
        if used <= quota_bytes:
            return 0
        count = self.conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        if count == 0:
            return 0
        per_row = max(1.0, used / count)
        excess_rows = min(count, math.ceil((used - 0.8 * quota_bytes) / per_row))
        row = self.conn.execute("SELECT seq FROM records ORDER BY seq LIMIT 1 OFFSET ?", (excess_rows - 1,)).fetchone()
        return self.purge_through(row[0], reason) if row else 0


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error (nested use joins the outer one)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        self.outer = not self.conn.in_transaction
        if self.outer:
            self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.outer:
            return
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
