"""Tamper evidence on real SQLite files: each alteration is found, with a message naming the row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_sdk.cli import main
from edge_sdk.store.db import LogDatabaseError, log_path
from edge_sdk.store.keys import KeyRing, LogKeyError, write_key_file
from edge_sdk.store.reader import LogIntegrityError, read_records
from edge_sdk.store.verify import verify_log
from tests.store_helpers import open_db, write_log


def _raw(log_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(log_path(log_dir), isolation_level=None)


def _problems(log_dir: Path, key_file: Path) -> list[str]:
    db = open_db(log_dir, key_file)
    try:
        return verify_log(db).problems
    finally:
        db.close()


@pytest.fixture
def log(tmp_path: Path) -> tuple[Path, Path]:
    return write_log(tmp_path, n=20)  # rows: 1 session_start, 2-21 frames, 22 session_end


def test_intact_log_verifies_and_cli_exits_zero(log, capsys):
    log_dir, key_file = log
    assert _problems(log_dir, key_file) == []
    assert main(["log", "verify", "--log-dir", str(log_dir), "--key-file", str(key_file)]) == 0
    assert "verify: OK" in capsys.readouterr().out


def test_flipped_payload_byte_is_found(log, capsys):
    log_dir, key_file = log
    with _raw(log_dir) as conn:
        payload = bytearray(conn.execute("SELECT payload FROM records WHERE seq = 7").fetchone()[0])
        payload[5] ^= 0x01
        conn.execute("UPDATE records SET payload = ? WHERE seq = 7", (bytes(payload),))
    problems = _problems(log_dir, key_file)
    assert problems[0] == "row 7 was altered: its payload or clear metadata fail AES-GCM authentication"
    assert main(["log", "verify", "--log-dir", str(log_dir), "--key-file", str(key_file)]) == 1
    assert "TAMPERED: row 7 was altered" in capsys.readouterr().out
    with pytest.raises(LogIntegrityError, match="row 7"):
        list(read_records(open_db(log_dir, key_file)))


def test_edited_clear_metadata_is_found(log):
    log_dir, key_file = log
    with _raw(log_dir) as conn:
        conn.execute("UPDATE records SET ts = ts - 86400 WHERE seq = 4")
    assert _problems(log_dir, key_file)[0].startswith("row 4 was altered")


def test_deleted_row_is_found(log):
    log_dir, key_file = log
    with _raw(log_dir) as conn:
        conn.execute("DELETE FROM records WHERE seq = 10")
    problems = _problems(log_dir, key_file)
    assert problems == ["row 10 deleted (after row 9; no purge checkpoint covers them); the chain resumes at row 11"]


def test_deleted_first_rows_are_found(log):
    log_dir, key_file = log
    with _raw(log_dir) as conn:
        conn.execute("DELETE FROM records WHERE seq <= 3")
    assert _problems(log_dir, key_file)[0].startswith("rows 1-3 deleted (at the start of the log")


def test_swapped_rows_are_found(log):
    log_dir, key_file = log
    cols = "ts, kind, session, key_id, nonce, payload, link"
    with _raw(log_dir) as conn:
        a = conn.execute(f"SELECT {cols} FROM records WHERE seq = 5").fetchone()
        b = conn.execute(f"SELECT {cols} FROM records WHERE seq = 6").fetchone()
        sets = ", ".join(f"{c.strip()} = ?" for c in cols.split(","))
        conn.execute(f"UPDATE records SET {sets} WHERE seq = 5", b)
        conn.execute(f"UPDATE records SET {sets} WHERE seq = 6", a)
    problems = _problems(log_dir, key_file)
    assert problems[:2] == [
        "row 5 holds the record written as row 6: rows were reordered or swapped",
        "row 6 holds the record written as row 5: rows were reordered or swapped",
    ]


def test_edited_link_is_found(log):
    log_dir, key_file = log
    with _raw(log_dir) as conn:
        conn.execute("UPDATE records SET link = zeroblob(32) WHERE seq = 12")
    assert _problems(log_dir, key_file) == [
        "row 12: its chain link value was altered (the row's sealed content is intact)",
        "the last row 22 does not match the log head's link",
    ] or _problems(log_dir, key_file) == [
        "row 12: its chain link value was altered (the row's sealed content is intact)"
    ]


def test_truncated_tail_is_found(log):
    log_dir, key_file = log
    with _raw(log_dir) as conn:
        conn.execute("DELETE FROM records WHERE seq > 18")
    assert _problems(log_dir, key_file) == [
        "truncated tail: rows 19-22 missing after row 18 (the log head says row 22 was written)"
    ]


def test_truncated_database_file_is_found(log, capsys):
    log_dir, key_file = log
    path = log_path(log_dir)
    size = path.stat().st_size
    assert size > 8192
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    try:
        problems = _problems(log_dir, key_file)
    except LogDatabaseError as exc:  # damage reached the schema/meta pages: refused at open
        problems = [str(exc)]
    assert problems and ("damaged" in problems[0] or "truncated" in problems[0]), problems
    code = main(["log", "verify", "--log-dir", str(log_dir), "--key-file", str(key_file)])
    captured = capsys.readouterr()
    assert code in (1, 2)
    assert "damaged" in captured.out + captured.err


def test_wrong_key_is_refused_and_writes_no_plaintext(log, tmp_path, capsys):
    log_dir, _ = log
    other = tmp_path / "other.json"
    write_key_file(other, KeyRing.generate())
    out = tmp_path / "export.csv"
    code = main(["log", "export", "--log-dir", str(log_dir), "--key-file", str(other), "--out", str(out)])
    assert code == 2
    assert "is not the key of the log" in capsys.readouterr().err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if "export" in p.name] == []
    with pytest.raises(LogKeyError, match="is not the key of the log"):
        open_db(log_dir, other)


def test_altered_row_aborts_export_without_partial_file(log, tmp_path):
    log_dir, key_file = log
    with _raw(log_dir) as conn:
        conn.execute("UPDATE records SET payload = substr(payload, 2) || x'00' WHERE seq = 15")
    out = tmp_path / "export.jsonl"
    code = main(
        [
            "log",
            "export",
            "--log-dir",
            str(log_dir),
            "--key-file",
            str(key_file),
            "--format",
            "jsonl",
            "--out",
            str(out),
        ]
    )
    assert code == 2
    assert not out.exists() and not list(tmp_path.glob(".export*"))
