"""The SQLite file of the private log: schema, connection settings, appends, head and purge checkpoints.

One database per log directory (``results.db``), WAL mode with ``synchronous=FULL`` so a committed
transaction survives a crash, ``auto_vacuum=INCREMENTAL`` so purges give space back. Every append runs
in one ``BEGIN IMMEDIATE`` transaction that reads the head, inserts the sealed rows and moves the head,
so several processes (the bedside writer, an ``edge-sdk log`` command appending an audit row) can share
a log without forking its chain.

**The head.** ``meta.head`` holds the newest row's seq and chain link with an HMAC of both (chain key).
It is written with the log id when the log is created (seq 0, the genesis link), so a log id without a
head always means tampering, and it moves with every committed batch in the same transaction as the
rows. Readers see head, checkpoints and rows of one committed state: :meth:`LogDatabase.snapshot` is a
read transaction, which WAL keeps fixed while a writer commits. Readers (``log verify``, ``export``,
``summary``) open the file read-only and never create a schema, a log id or a head.

**A head restored from the past.** Deleting the newest rows and writing back an older head (found in the
``-wal`` file, or in any older copy) leaves a shorter log that is consistent in itself: no value inside
the file can tell it from the log as it was at that moment. Two anchors outside the file catch it:

* the writer's memory. A connection remembers the head it committed last and never continues the chain
  from a head behind it: when it finds the head moved back (or missing, or altered) it seals a
  ``tamper_detected`` audit row and continues after its own head, so the removed rows stay a visible gap
  and the note itself fails ``verify``. While ``edge-sdk run`` writes, a rollback is caught at its next
  commit (within ``flush_interval``).
* ``verify --expect-head SEQ:HEX`` with a head printed earlier (catches a rollback made while no writer ran).

A writer that opens a log whose head is missing or altered continues after the newest row it finds and
seals the same ``tamper_detected`` note; ``edge-sdk log`` commands refuse to append to such a log (they
never repair evidence). Purges (manual, retention, quota) delete a prefix and add a checkpoint chained by
HMAC (through which row, that row's link, how many rows, why, when), so ``verify`` accepts the gap and
``--expect-head`` accepts a head that a sealed purge removed.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
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


class LogDamagedError(LogDatabaseError):
    """The file is there but is not a readable edge-sdk log: empty, wiped, truncated or damaged."""


class LogHeadError(LogDatabaseError):
    """The head record of the log is missing, malformed or fails its HMAC."""


class LogDiskFullError(LogDatabaseError):
    """The log could not be created or opened for writing because its disk (or quota) is full."""


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

    def __init__(self, conn: sqlite3.Connection, path: Path, sealer: Sealer, *, repair_head: bool = False) -> None:
        self.conn = conn
        self.path = path
        self.sealer = sealer
        self.repair_head = repair_head  # writers continue past a missing/altered head, with a sealed note
        self._committed: tuple[int, bytes] | None = None  # the head this connection committed last
        self._pending: tuple[int, bytes] | None = None  # the head of the transaction in progress

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        log_dir: Path | str,
        ring: KeyRing,
        *,
        create: bool = False,
        read_only: bool = False,
        hard_limit_bytes: int | None = None,
    ) -> LogDatabase:
        """Open (``create``: or make) the log in ``log_dir``; checks that ``ring`` is this log's key.

        Without ``create`` nothing is created: a file that is not a log (0 bytes, no log id) raises
        :class:`LogDamagedError`. ``read_only`` opens the file read-only (``verify``, ``export``, ``summary``).
        """
        path = log_path(log_dir)
        created = False
        if not path.exists():
            if not create:
                raise LogDatabaseError(f"no log at {path} (is --log-dir right?)")
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # sqlite gives -wal/-shm the same mode
            created = True
        elif not create and path.stat().st_size == 0:
            raise LogDamagedError(f"{path} is empty (0 bytes): not an edge-sdk log, or one that was wiped")
        conn = None
        try:
            conn = _connect(path, read_only and not create)
            if not read_only or create:
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA journal_size_limit=1048576")
            if hard_limit_bytes:
                page = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count={max(16, int(hard_limit_bytes) // page)}")
            if create:
                conn.executescript(_SCHEMA)
            db = cls(conn, path, Sealer(ring, b""), repair_head=create)
            db._init_meta(ring, create)
        except sqlite3.DatabaseError as exc:
            if created:  # never leave a half-made (e.g. 0-byte) file behind to read as a damaged log later
                _remove_new_log(conn, path)
            if is_disk_full(exc):
                raise LogDiskFullError(f"no space to write the log {path} (sqlite: {exc})") from None
            raise LogDamagedError(f"log database {path} is damaged, truncated or not a log (sqlite: {exc})") from None
        return db

    def _init_meta(self, ring: KeyRing, create: bool = True) -> None:
        meta = dict(self.conn.execute("SELECT name, value FROM meta"))
        if "log_id" not in meta:
            if not create:
                raise LogDamagedError(
                    f"{self.path} is not an edge-sdk log: it has no log id (an empty or wiped file, or another "
                    "database)"
                )
            meta = self._create_meta(ring)
        if meta.get("schema") != SCHEMA_VERSION:
            raise LogDatabaseError(
                f"{self.path}: log schema {meta.get('schema')!r}, this edge-sdk reads {SCHEMA_VERSION}"
            )
        if _blob(meta.get("secret_check")) != ring.secret_check():
            raise LogKeyError(
                f"{ring.source} is not the key of the log {self.path} (its secret does not match); "
                "nothing was decrypted"
            )
        self.sealer = Sealer(ring, _blob(meta["log_id"]))
        for kid in ring.keys:
            stored = meta.get(f"keycheck:{kid}")
            if stored is not None and _blob(stored) != ring.key_check(kid):
                raise LogKeyError(f"{ring.source}: key id '{kid}' holds a different key than the one this log used")

    def _create_meta(self, ring: KeyRing) -> dict[str, object]:
        """Give a new log its id, its secret check and its genesis head (one transaction)."""
        with self.transaction():
            meta = dict(self.conn.execute("SELECT name, value FROM meta"))
            if "log_id" in meta:  # another process created it first
                return meta
            if self.conn.execute("SELECT EXISTS (SELECT 1 FROM records)").fetchone()[0]:
                raise LogDamagedError(f"{self.path} has rows but no log id: its meta table was wiped")
            meta = {
                "schema": SCHEMA_VERSION,
                "log_id": os.urandom(16),
                "secret_check": ring.secret_check(),
                "created": str(int(time.time())),
            }
            self.conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            self.sealer = Sealer(ring, meta["log_id"])
            self._set_head(0, self.sealer.genesis())
        return meta

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
        return _Transaction(self.conn, self._head_settled)

    def _head_settled(self, committed: bool) -> None:
        """After the outer transaction: remember the head it committed (the writer's anchor), or forget it."""
        if committed and self._pending is not None:
            self._committed = self._pending
        self._pending = None

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[LogDatabase]:
        """Reads inside see one committed state of the log (head, checkpoints, rows), however a writer
        commits meanwhile: a read transaction, which SQLite's WAL keeps fixed. Nested use joins the outer one."""
        if self.conn.in_transaction:
            yield self
            return
        self.conn.execute("BEGIN")
        try:
            self.conn.execute("SELECT COUNT(*) FROM meta").fetchone()  # the snapshot starts at the first read
            yield self
        finally:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")

    # -- head and checkpoints ----------------------------------------------------------------------
    def checkpoints(self) -> list[Checkpoint]:
        rows = self.conn.execute(
            "SELECT id, CAST(through_seq AS INTEGER), CAST(head AS BLOB), CAST(purged AS INTEGER), "
            "CAST(reason AS TEXT), CAST(at AS INTEGER), CAST(link AS BLOB) FROM checkpoints ORDER BY id"
        )
        return [Checkpoint(r[0], r[1], bytes(r[2]), r[3], r[4], r[5], bytes(r[6])) for r in rows]

    def stored_head(self) -> tuple[int, bytes, bytes] | None:
        """(seq, link, mac) as the last append left it; None when the head record is missing.

        :class:`LogHeadError` when the record is there but is no head (its JSON was altered).
        """
        row = self.conn.execute("SELECT value FROM meta WHERE name = 'head'").fetchone()
        if row is None:
            return None
        try:
            doc = json.loads(row[0])
            return int(doc["seq"]), bytes.fromhex(doc["link"]), bytes.fromhex(doc["mac"])
        except (ValueError, KeyError, TypeError) as exc:
            raise LogHeadError(f"the log head record is malformed ({exc.__class__.__name__}: {exc})") from None

    def checked_head(self) -> tuple[int, bytes]:
        """The stored head (seq, link) once its HMAC is checked; :class:`LogHeadError` saying what is wrong."""
        head = self.stored_head()
        if head is None:
            raise LogHeadError(
                "the log head record is missing (deleted from the meta table): the log was wiped or rows removed"
            )
        seq, link, mac = head
        if not hmac.compare_digest(mac, self.sealer.head_mac(seq, link)):
            raise LogHeadError("the log head record was altered (its HMAC does not match)")
        return seq, link

    def _head(self) -> tuple[int, bytes, PendingRow | None]:
        """Where the next append continues the chain, plus a sealed note to append first when the head was wrong.

        Never behind the head this connection committed itself (see the module docstring).
        """
        try:
            stored, problem = self.checked_head(), ""
        except LogHeadError as exc:
            stored, problem = None, str(exc)
        mine = self._committed
        if mine is not None and _behind(stored, mine):
            found = problem or f"the log head was moved back to row {stored[0]}"
            return (*mine, _tamper_note(f"{found} after this writer had committed row {mine[0]}; continuing after it"))
        if stored is not None:
            return (*stored, None)
        if not self.repair_head:
            raise LogHeadError(f"{self.path}: {problem}; nothing was appended (run `edge-sdk log verify`)")
        seq, link = self._newest_link()
        return seq, link, _tamper_note(f"{problem}; a writer continued after row {seq}, the newest it found")

    def _newest_link(self) -> tuple[int, bytes]:
        """The newest surviving row (or purge checkpoint) and its link; (0, genesis) when there is none."""
        row = self.conn.execute("SELECT seq, CAST(link AS BLOB) FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        if row is not None:
            return row[0], bytes(row[1])
        cps = self.checkpoints()
        return (cps[-1].through_seq, cps[-1].head) if cps else (0, self.sealer.genesis())

    def _set_head(self, seq: int, link: bytes) -> None:
        doc = {"seq": seq, "link": link.hex(), "mac": self.sealer.head_mac(seq, link).hex()}
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('head', ?)", (json.dumps(doc),))
        self._pending = (seq, link)

    # -- appending -----------------------------------------------------------------------------------
    def append(self, rows: Sequence[PendingRow]) -> int:
        """Seal and insert ``rows`` in one durable transaction; returns the last seq."""
        with self.transaction():
            return self._append_in_transaction(rows)

    def _append_in_transaction(self, rows: Sequence[PendingRow]) -> int:
        seq, link, note = self._head()
        if note is not None:
            rows = [note, *rows]
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
            "SELECT seq, CAST(ts AS INTEGER), CAST(kind AS TEXT), CAST(session AS TEXT), CAST(key_id AS TEXT), "
            "CAST(nonce AS BLOB), CAST(payload AS BLOB), "
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
        if not math.isfinite(cutoff_ts):
            raise ValueError(f"the retention cutoff {cutoff_ts} is not a finite time (check retention_days)")
        if cutoff_ts <= 0:
            return 0  # nothing is stamped before 1970 (e.g. an enormous retention_days)
        cutoff = min(int(cutoff_ts), 2**62)
        through = self.conn.execute("SELECT MAX(seq) FROM records WHERE ts < ?", (cutoff,)).fetchone()[0]
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


def _remove_new_log(conn: sqlite3.Connection | None, path: Path) -> None:
    """Close and delete a log file this process just created and could not finish (and its -wal/-shm)."""
    if conn is not None:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    """An autocommit connection; ``read_only`` opens the file with ``mode=ro`` (it can create nothing)."""
    target, uri = (f"{path.resolve().as_uri()}?mode=ro", True) if read_only else (str(path), False)
    conn = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.text_factory = _lenient_text  # altered text must fail authentication, not crash the reader
    return conn


def _behind(stored: tuple[int, bytes] | None, mine: tuple[int, bytes]) -> bool:
    """True when the stored head is missing, behind ``mine``, or at ``mine``'s row with another link."""
    return stored is None or stored[0] < mine[0] or (stored[0] == mine[0] and stored[1] != mine[1])


def _blob(value: object) -> bytes:
    """A meta value as bytes, whatever type an edit of the file gave it."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return str(value).encode()


#: The audit action of a sealed note a writer leaves when it finds the head moved back, missing or altered.
TAMPER_NOTE = "tamper_detected"


def _tamper_note(problem: str) -> PendingRow:
    now = time.time()
    plaintext = envelope({"action": TAMPER_NOTE, "problem": problem[:240]}, now, None, None)
    return PendingRow("audit", AUDIT_SESSION, int(now), plaintext)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error (nested use joins the outer one)."""

    def __init__(self, conn: sqlite3.Connection, settled: Callable[[bool], None] | None = None) -> None:
        self.conn = conn
        self.outer = False
        self.settled = settled  # told whether the outer transaction committed

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
            except sqlite3.Error:
                self._rollback()
                raise
            if self.settled is not None:
                self.settled(True)
            return
        self._rollback()

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
        if self.settled is not None:
            self.settled(False)
