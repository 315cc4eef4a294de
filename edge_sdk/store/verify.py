"""``verify``: walk the purge checkpoints and every row, and say exactly where the log was altered.

Detected, each with a precise message naming the row: a changed payload or clear metadata (AES-GCM
authentication fails), a broken link (the chain value itself edited), a deleted row (gap in ``seq``),
reordered rows (a row's payload authenticates only at another position), rows deleted at the start
without a purge checkpoint, a truncated tail (rows missing after the last one, against the HMAC-protected
head), and a damaged or truncated database file. Limit: an attacker who kept an older copy of the whole
database can put it back (rollback); compare the head that ``verify`` prints with one you recorded
earlier (``--expect-head``) to catch that.
"""

from __future__ import annotations

import hmac
import sqlite3
from dataclasses import dataclass, field

from edge_sdk.store.db import LogDatabase
from edge_sdk.store.sealing import RowMeta

REORDER_WINDOW = 64
MAX_PROBLEMS = 50


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

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def head(self) -> str:
        """``SEQ:HEX`` - record it somewhere else and pass it to ``--expect-head`` later."""
        return f"{self.head_seq}:{self.head_link}" if self.head_seq is not None else "empty"

    def add(self, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)


def verify_log(db: LogDatabase, expect_head: str | None = None) -> VerifyReport:
    """Check the whole log; never raises for tampering (it is reported), only for a missing/wrong key."""
    report = VerifyReport()
    try:
        _verify(db, report, expect_head)
    except sqlite3.DatabaseError as exc:
        report.add(f"database file {db.path} is damaged or truncated (sqlite: {exc})")
    return report


def _verify(db: LogDatabase, report: VerifyReport, expect_head: str | None) -> None:
    sealer = db.sealer
    integrity = db.conn.execute("PRAGMA quick_check").fetchall()
    if integrity != [("ok",)]:
        report.add(f"database file {db.path} is damaged: " + "; ".join(str(r[0]) for r in integrity[:3]))

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

    for row in db.rows():
        seq = row.meta.seq
        report.rows += 1
        report.first_seq = seq if report.first_seq is None else report.first_seq
        report.last_seq = seq
        if seq < expected_seq:
            report.add(
                f"row {seq} lies inside a purged range (the last purge checkpoint covers rows up to {expected_seq - 1})"
            )
            continue
        if seq > expected_seq:
            where = "at the start of the log" if report.rows == 1 else f"after row {expected_seq - 1}"
            span = f"row {expected_seq}" if seq == expected_seq + 1 else f"rows {expected_seq}-{seq - 1}"
            report.add(f"{span} deleted ({where}; no purge checkpoint covers them); the chain resumes at row {seq}")
            previous = row.link  # cannot check this link without the deleted row; resynchronise
            expected_seq = seq + 1
            continue
        plaintext = sealer.open(row.meta, row.nonce, row.payload)
        computed = sealer.link(previous, row.meta, row.nonce, row.payload)
        if plaintext is None:
            origin = _origin_seq(db, row)
            if origin is not None:
                report.add(f"row {seq} holds the record written as row {origin}: rows were reordered or swapped")
            else:
                report.add(f"row {seq} was altered: its payload or clear metadata fail AES-GCM authentication")
            previous = row.link
        elif not hmac.compare_digest(row.link, computed):
            report.add(f"row {seq}: its chain link value was altered (the row's sealed content is intact)")
            previous = computed  # the true link, so the next row is judged on its own
        else:
            previous = row.link
        expected_seq = seq + 1

    _check_head(db, report, expected_seq - 1, previous)
    if expect_head is not None and report.ok and expect_head != report.head:
        exp_seq = expect_head.split(":", 1)[0]
        if not exp_seq.isdigit() or report.head_seq is None or int(exp_seq) > report.head_seq:
            report.add(
                f"log head is {report.head}, behind the expected {expect_head}: the log was rolled back or truncated"
            )
        else:
            found = next(db.rows("WHERE seq = ?", (int(exp_seq),)), None)
            if found is None or found.link.hex() != expect_head.split(":", 1)[1]:
                report.add(
                    f"the expected head {expect_head} is not in this log's chain: the log was replaced or rewritten"
                )


def _origin_seq(db: LogDatabase, row) -> int | None:
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
    head = db.stored_head()
    if head is None:
        if report.rows:
            report.add("the log head record is missing (deleted from the meta table)")
        return
    seq, link, mac = head
    report.head_seq, report.head_link = seq, link.hex()
    if not hmac.compare_digest(mac, db.sealer.head_mac(seq, link)):
        report.add("the log head record was altered (its HMAC does not match)")
        return
    if seq > last_seq:
        span = f"row {seq}" if seq == last_seq + 1 else f"rows {last_seq + 1}-{seq}"
        report.add(f"truncated tail: {span} missing after row {last_seq} (the log head says row {seq} was written)")
    elif seq < last_seq:
        report.add(f"rows {seq + 1}-{last_seq} were added after the log head (row {seq}) without the writer")
    elif not hmac.compare_digest(link, last_link):
        report.add(f"the last row {seq} does not match the log head's link")
