"""``verify``: walk the purge checkpoints and every row, and say exactly where the log was altered.

Detected, each with a precise message naming the row: a changed payload, nonce or clear metadata
(AES-GCM authentication fails), a broken link (the chain value itself edited), a deleted row (gap in
``seq``), reordered rows (a row's payload authenticates only at another position), rows deleted at the
start without a purge checkpoint, a truncated tail (rows missing after the last one, against the
HMAC-protected head), a missing, malformed or altered head (a log id without a head is a wiped log), a
writer's sealed ``tamper_detected`` note, and a damaged or truncated database file.

Everything is read in one snapshot (:meth:`LogDatabase.snapshot <edge_sdk.store.db.LogDatabase.snapshot>`),
so a log that a writer is appending to verifies like a closed one.

What ``verify`` cannot see from inside the file: the newest rows deleted together with an older head
written back (from the ``-wal`` file or an older copy) leave a log that is consistent in itself. A writer
that is running catches it at its next commit (see :mod:`edge_sdk.store.db`); otherwise compare the head
that ``verify`` prints with one recorded earlier (``--expect-head``). A head that a sealed purge removed
since is accepted: its checkpoint proves the rows were purged, not deleted.

:func:`scan_gaps` is the same walk without decrypting (seq continuity, checkpoints, head): ``export`` and
``summary`` use it to warn that what they read is incomplete.
"""

from __future__ import annotations

import hmac
import json
import re
import sqlite3
from dataclasses import dataclass, field

from edge_sdk.errors import InputError
from edge_sdk.store.db import TAMPER_NOTE, LogDatabase, LogHeadError, StoredRow
from edge_sdk.store.sealing import RowMeta

REORDER_WINDOW = 64
MAX_PROBLEMS = 50
_HEAD_FORM = re.compile(r"^(\d{1,19}):([0-9a-f]{64})$")


@dataclass
class VerifyReport:
    rows: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0
    purged_rows: int = 0
    head_seq: int | None = None
    head_link: str | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def head(self) -> str:
        """``SEQ:HEX`` - record it somewhere else and pass it to ``--expect-head`` later."""
        return f"{self.head_seq}:{self.head_link}" if self.head_seq is not None else "none"

    def add(self, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)

    def saw(self, seq: int) -> None:
        self.rows += 1
        self.first_seq = seq if self.first_seq is None else self.first_seq
        self.last_seq = seq


def parse_head(text: str) -> tuple[int, str]:
    """``SEQ:HEX`` as ``verify`` prints it; :class:`InputError` for anything else."""
    match = _HEAD_FORM.match(text.strip().lower())
    if match is None:
        raise InputError(f"--expect-head {text!r}: expected SEQ:HEX (64 hex digits) as `edge-sdk log verify` prints it")
    return int(match.group(1)), match.group(2)


def verify_log(db: LogDatabase, expect_head: str | None = None) -> VerifyReport:
    """Check the whole log; never raises for tampering (it is reported), only for a missing/wrong key."""
    expected = None if expect_head is None else parse_head(expect_head)
    return _checked(db, seals=True, expected=expected)


def scan_gaps(db: LogDatabase) -> VerifyReport:
    """The chain's structure without decrypting: gaps in ``seq``, purge checkpoints, head. Cheap enough to
    run before every export or summary; altered rows show up there when they are decrypted."""
    return _checked(db, seals=False, expected=None)


def _checked(db: LogDatabase, *, seals: bool, expected: tuple[int, str] | None) -> VerifyReport:
    report = VerifyReport()
    try:
        with db.snapshot():
            _walk(db, report, seals)
            if expected is not None and report.ok:
                _check_expected(db, report, *expected)
    except sqlite3.DatabaseError as exc:
        report.add(f"database file {db.path} is damaged or truncated (sqlite: {exc})")
    return report


def _walk(db: LogDatabase, report: VerifyReport, seals: bool) -> None:
    if seals:
        integrity = db.conn.execute("PRAGMA quick_check").fetchall()
        if integrity != [("ok",)]:
            report.add(f"database file {db.path} is damaged: " + "; ".join(str(r[0]) for r in integrity[:3]))
    expected_seq, previous = _walk_checkpoints(db, report)
    for row in db.rows():
        seq = row.meta.seq
        report.saw(seq)
        if seq < expected_seq:
            report.add(
                f"row {seq} lies inside a purged range (the last purge checkpoint covers rows up to {expected_seq - 1})"
            )
            continue
        if seq > expected_seq:
            where = "at the start of the log" if report.rows == 1 else f"after row {expected_seq - 1}"
            span = f"row {expected_seq}" if seq == expected_seq + 1 else f"rows {expected_seq}-{seq - 1}"
            report.add(f"{span} deleted ({where}; no purge checkpoint covers them); the chain resumes at row {seq}")
            previous = None  # this link cannot be checked without the deleted row: resynchronise on it
        previous = _check_row(db, report, row, previous) if seals else row.link
        expected_seq = seq + 1
    _check_head(db, report, expected_seq - 1, previous)


def _walk_checkpoints(db: LogDatabase, report: VerifyReport) -> tuple[int, bytes]:
    """Check the purge checkpoint chain; the first seq after the purged prefix and the link it continues."""
    sealer = db.sealer
    expected_seq, previous = 1, sealer.genesis()
    cp_link = sealer.genesis()
    for cp in db.checkpoints():
        report.checkpoints += 1
        report.purged_rows += cp.purged
        if not hmac.compare_digest(
            cp.link, sealer.checkpoint_link(cp_link, cp.through_seq, cp.head, cp.purged, cp.reason, cp.at)
        ):
            report.add(f"purge checkpoint {cp.id} (through row {cp.through_seq}) was altered or is out of order")
        if cp.through_seq < expected_seq - 1:
            report.add(f"purge checkpoint {cp.id} goes back to row {cp.through_seq} after an earlier checkpoint")
        cp_link, expected_seq, previous = cp.link, cp.through_seq + 1, cp.head
    return expected_seq, previous


def _check_row(db: LogDatabase, report: VerifyReport, row: StoredRow, previous: bytes | None) -> bytes:
    """Authenticate one row and its link from ``previous`` (None: the row after a gap, link unchecked);
    the link the next row must continue."""
    seq = row.meta.seq
    plaintext = db.sealer.open(row.meta, row.nonce, row.payload)
    computed = row.link if previous is None else db.sealer.link(previous, row.meta, row.nonce, row.payload)
    if plaintext is None:
        origin = _origin_seq(db, row)
        if origin is not None:
            report.add(f"row {seq} holds the record written as row {origin}: rows were reordered or swapped")
        else:
            report.add(f"row {seq} was altered: its payload or clear metadata fail AES-GCM authentication")
        return row.link
    if not hmac.compare_digest(row.link, computed):
        report.add(f"row {seq}: its chain link value was altered (the row's sealed content is intact)")
        return computed  # the true link, so the next row is judged on its own
    if row.meta.kind == "audit":
        _check_note(report, seq, plaintext)
    return row.link


def _check_note(report: VerifyReport, seq: int, plaintext: bytes) -> None:
    """Report a writer's sealed ``tamper_detected`` note (it found the head moved back, missing or altered)."""
    record = json.loads(plaintext).get("r") or {}
    if record.get("action") == TAMPER_NOTE:
        report.add(f"row {seq}: a writer sealed this note: {record.get('problem')}")


def _origin_seq(db: LogDatabase, row: StoredRow) -> int | None:
    """The position where this row's payload authenticates, if it is not its own (reordering)."""
    m = row.meta
    for offset in range(1, REORDER_WINDOW + 1):
        for candidate in (m.seq - offset, m.seq + offset):
            if candidate < 1:
                continue
            moved = RowMeta(candidate, m.ts, m.kind, m.session, m.key_id)
            if db.sealer.open(moved, row.nonce, row.payload) is not None:
                return candidate
    return None


def _check_head(db: LogDatabase, report: VerifyReport, last_seq: int, last_link: bytes) -> None:
    try:
        seq, link = db.checked_head()
    except LogHeadError as exc:
        report.add(str(exc))
        return
    report.head_seq, report.head_link = seq, link.hex()
    if seq > last_seq:
        span = f"row {seq}" if seq == last_seq + 1 else f"rows {last_seq + 1}-{seq}"
        report.add(f"truncated tail: {span} missing after row {last_seq} (the log head says row {seq} was written)")
    elif seq < last_seq:
        report.add(f"rows {seq + 1}-{last_seq} were added after the log head (row {seq}) without the writer")
    elif not hmac.compare_digest(link, last_link):
        report.add(f"the last row {seq} does not match the log head's link")
    elif seq == 0:
        report.notes.append("the log is empty: it was created but no row was ever written")


def _check_expected(db: LogDatabase, report: VerifyReport, exp_seq: int, exp_link: str) -> None:
    """Compare with a head recorded earlier: still in the chain, or removed by a sealed purge."""
    expected = f"{exp_seq}:{exp_link}"
    if report.head_seq is None or exp_seq > report.head_seq:
        report.add(f"log head is {report.head}, behind the expected {expected}: the log was rolled back or truncated")
        return
    found = next(db.rows("WHERE seq = ?", (exp_seq,)), None)
    if found is not None or exp_seq == 0:
        link = found.link if found is not None else db.sealer.genesis()
        if link.hex() != exp_link:
            report.add(f"the expected head {expected} is not in this log's chain: the log was replaced or rewritten")
        return
    purge = next((cp for cp in db.checkpoints() if cp.through_seq >= exp_seq), None)
    if purge is None:
        report.add(f"the expected head {expected} is not in this log's chain: the log was replaced or rewritten")
    elif purge.through_seq == exp_seq and purge.head.hex() != exp_link:
        report.add(f"the expected head {expected} does not match purge checkpoint {purge.id}: the log was rewritten")
    else:
        report.notes.append(
            f"the expected head {expected} was purged by sealed checkpoint {purge.id} ({purge.reason}, through row "
            f"{purge.through_seq}); the chain continues from there"
        )
