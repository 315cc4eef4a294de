"""Tamper evidence and log faults on real SQLite files and real processes (issue #15, items 5 and 6).

Live verify while a writer process commits; empty, 0-byte and wiped logs; a head restored from the
``-wal`` file; legitimate purges under ``--expect-head``; gaps in export and summary; key files that are
symlinks, FIFOs or someone else's; and every log-related fault that used to end in a traceback, run
through the real ``edge-sdk`` command line: one ``error:`` line naming the file/flag/key and exit 2 (or
``verify: FAILED`` and exit 1 where the log itself is at fault).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_sdk.cli import main
from edge_sdk.pipeline.config import LogSettings
from edge_sdk.store import EncryptedLogSink, LogKeyError, LogTuning
from edge_sdk.store.db import LogDatabase, PendingRow, log_path
from edge_sdk.store.keys import KEY_ENV, KeyRing, KeySource, read_key_file, write_key_file
from edge_sdk.store.records import envelope
from edge_sdk.store.verify import VerifyReport, verify_log
from tests.store_helpers import open_db, write_log

REPO = Path(__file__).resolve().parents[1]
LIVE_WRITER = Path(__file__).with_name("store_live_writer.py")
HEAD_JSON = re.compile(rb'\{"seq": (\d+), "link": "[0-9a-f]{64}", "mac": "[0-9a-f]{64}"\}')
DAY = 86400.0


# -- helpers ----------------------------------------------------------------------------------------------
def _raw(log_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(log_path(log_dir), isolation_level=None)


def _verify(log_dir: Path, key_file: Path, expect_head: str | None = None) -> VerifyReport:
    db = LogDatabase.open(log_dir, read_key_file(key_file), read_only=True)
    try:
        return verify_log(db, expect_head)
    finally:
        db.close()


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line in a fresh interpreter: what a user sees, tracebacks included."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "edge_sdk", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )


def _base(log_dir: Path, key_file: Path) -> list[str]:
    return ["--log-dir", str(log_dir), "--key-file", str(key_file)]


def _one_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, no traceback, exactly one ``error:`` line on stderr, containing every needle."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 1, (result.returncode, result.stderr)
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _failed(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """``log verify`` exit 1 with ``verify: FAILED``, no traceback, every needle in the report."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "verify: FAILED" in result.stdout, result.stdout
    for needle in needles:
        assert needle in result.stdout, result.stdout


def _frames(n: int, start: int = 0) -> list[PendingRow]:
    now = time.time()
    return [PendingRow("frame", "s_test", int(now), envelope({"i": start + i}, now, None, None)) for i in range(n)]


def _files(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in directory.iterdir()}


class _LiveWriter:
    """A real writer process (tests/store_live_writer.py) and the newest seq it reported committed."""

    def __init__(self, log_dir: Path, key_file: Path, rate: float) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, str(LIVE_WRITER), str(log_dir), str(key_file), str(rate)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.committed = 0
        self._ready = threading.Event()
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(60):
            self.stop()
            pytest.fail(f"live writer did not start: {self.proc.stderr.read()}")

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("READY"):
                self._ready.set()
            elif line.startswith("C "):
                with self._cond:
                    self.committed = max(self.committed, int(line[2:]))
                    self._cond.notify_all()

    def wait_for(self, seq: int, timeout: float = 30.0) -> int:
        """Block until a commit through row ``seq`` or later is reported; that row."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.committed >= seq, timeout), (self.committed, seq)
            return self.committed

    def stop(self) -> str:
        """Kill the writer (its commits are durable); what it wrote on stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        return self.proc.stderr.read()


@contextlib.contextmanager
def _live_writer(log_dir: Path, key_file: Path, rate: float = 400.0) -> Iterator[_LiveWriter]:
    writer = _LiveWriter(log_dir, key_file, rate)
    try:
        yield writer
    finally:
        writer.stop()


def _restore_older_head(log_dir: Path, keep_below: int) -> int:
    """The attack: take an older head out of the ``-wal`` file, delete every row after it, write it back.

    Returns the seq of the restored head (the newest one in the WAL below ``keep_below``).
    """
    wal = log_path(log_dir).with_name("results.db-wal").read_bytes()
    heads = {int(m.group(1)): m.group(0).decode() for m in HEAD_JSON.finditer(wal)}
    conn = _raw(log_dir)
    try:
        conn.execute("BEGIN IMMEDIATE")
        newest = conn.execute("SELECT MAX(seq) FROM records").fetchone()[0]
        old = max(seq for seq in heads if 0 < seq < min(keep_below, newest))
        conn.execute("DELETE FROM records WHERE seq > ?", (old,))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('head', ?)", (heads[old],))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return old


@pytest.fixture
def log(tmp_path: Path) -> tuple[Path, Path]:
    return write_log(tmp_path, n=20)  # rows: 1 session_start, 2-21 frames, 22 session_end


# -- verify on a live log -----------------------------------------------------------------------------
def test_verify_passes_every_time_while_a_writer_process_commits(tmp_path: Path, capsys) -> None:
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    heads: list[int] = []
    with _live_writer(log_dir, key_file) as writer:
        writer.wait_for(16)
        for i in range(50):
            report = _verify(log_dir, key_file)
            assert report.ok, (i, report.problems)
            heads.append(report.head_seq)
            if i % 10 == 0:  # the CLI too: read-only verify plus an audit row appended beside the writer
                assert main(["log", "verify", *_base(log_dir, key_file)]) == 0, capsys.readouterr().out
            writer.wait_for(report.head_seq + 1)  # every verify reads a newer log than the one before
        final = writer.wait_for(heads[-1] + 1)
    assert len(set(heads)) == 50, heads
    report = _verify(log_dir, key_file)
    assert report.ok and report.head_seq >= final, report.problems


def test_verify_reads_head_and_rows_in_one_snapshot(log, monkeypatch) -> None:
    """A commit that lands between reading the rows and reading the head: the false 'truncated tail'
    of the issue without the snapshot, none with it."""
    log_dir, key_file = log
    other = open_db(log_dir, key_file)

    def rows_then_commit(db: LogDatabase, original):
        def rows(*args, **kwargs):
            yield from original(*args, **kwargs)
            if not args:  # the full walk is done; a writer commits before the head is read
                other.append(_frames(3))

        return rows

    def run(snapshot: bool) -> list[str]:
        db = open_db(log_dir, key_file)
        monkeypatch.setattr(db, "rows", rows_then_commit(db, db.rows))
        if not snapshot:
            monkeypatch.setattr(db, "snapshot", contextlib.nullcontext)
        try:
            return verify_log(db).problems
        finally:
            db.close()

    assert run(snapshot=True) == []
    problems = run(snapshot=False)
    assert problems and problems[0].startswith("truncated tail"), problems
    other.close()


# -- empty, 0-byte and wiped logs ---------------------------------------------------------------------
def test_zero_byte_results_db_fails_and_nothing_is_created(log, tmp_path: Path) -> None:
    _, key_file = log
    log_dir = tmp_path / "empty"
    log_dir.mkdir()
    log_path(log_dir).touch()
    before = _files(log_dir)
    _failed(_cli("log", "verify", *_base(log_dir, key_file)), "results.db is empty (0 bytes)")
    assert _files(log_dir) == before  # still one 0-byte file: no schema, no log id, no -wal
    _one_error(_cli("log", "export", *_base(log_dir, key_file)), "results.db is empty (0 bytes)")
    _one_error(_cli("log", "summary", *_base(log_dir, key_file)), "results.db is empty (0 bytes)")
    assert _files(log_dir) == before


def test_missing_log_is_an_error_and_verify_creates_no_directory(log, tmp_path: Path) -> None:
    _, key_file = log
    missing = tmp_path / "nowhere" / "log"
    _one_error(_cli("log", "verify", *_base(missing, key_file)), "no log at", "results.db")
    assert not missing.parent.exists()


def test_wiped_log_rows_and_head_deleted_fails_and_is_left_untouched(log) -> None:
    log_dir, key_file = log
    with _raw(log_dir) as conn:
        conn.execute("DELETE FROM records")
        conn.execute("DELETE FROM meta WHERE name = 'head'")
    size = log_path(log_dir).stat().st_size
    _failed(_cli("log", "verify", *_base(log_dir, key_file)), "the log head record is missing")
    assert log_path(log_dir).stat().st_size == size
    with _raw(log_dir) as conn:  # no audit row: a failed log is left as it was found
        assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0


def test_missing_head_with_intact_rows_is_tamper(log) -> None:
    log_dir, key_file = log
    with _raw(log_dir) as conn:
        conn.execute("DELETE FROM meta WHERE name = 'head'")
    assert _verify(log_dir, key_file).problems == [
        "the log head record is missing (deleted from the meta table): the log was wiped or rows removed"
    ]


def test_new_log_with_no_rows_verifies_with_a_note(tmp_path: Path) -> None:
    key_file = tmp_path / "key.json"
    write_key_file(key_file, KeyRing.generate())
    LogDatabase.open(tmp_path / "log", read_key_file(key_file), create=True).close()
    report = _verify(tmp_path / "log", key_file)
    assert (
        report.ok
        and report.head_seq == 0
        and report.notes == ["the log is empty: it was created but no row was ever written"]
    )
    with _raw(tmp_path / "log") as conn:  # the genesis head is what makes a wipe of such a log visible
        conn.execute("DELETE FROM meta WHERE name = 'head'")
    assert not _verify(tmp_path / "log", key_file).ok


def test_writer_on_a_wiped_head_continues_with_a_sealed_note(log) -> None:
    log_dir, key_file = log
    with _raw(log_dir) as conn:
        conn.execute("DELETE FROM records WHERE seq > 18")  # hide a truncation by deleting the head too
        conn.execute("DELETE FROM meta WHERE name = 'head'")
    result = _cli("log", "purge", *_base(log_dir, key_file), "--older-than", "2999-01-01")  # commands never repair
    _one_error(result, "results.db: the log head record is missing", "nothing was appended")
    with _raw(log_dir) as conn:
        assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 18  # and nothing was purged
    sink = EncryptedLogSink.open(log_dir, LogSettings(key_file=str(key_file), retention_days=None))
    sink.write({"i": 99})
    sink.close()
    problems = _verify(log_dir, key_file).problems
    assert problems == [
        "row 19: a writer sealed this note: the log head record is missing (deleted from the meta table): the log "
        "was wiped or rows removed; a writer continued after row 18, the newest it found"
    ]


# -- an older head restored from the WAL --------------------------------------------------------------
def test_head_restored_from_the_wal_under_a_running_writer_is_caught(tmp_path: Path) -> None:
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    writer = _LiveWriter(log_dir, key_file, rate=400.0)
    try:
        newest = writer.wait_for(120)
        old = _restore_older_head(log_dir, keep_below=newest)
        after = writer.wait_for(newest + 40)  # the writer commits on, from its own head
    finally:
        stderr = writer.stop()
    result = _cli("log", "verify", *_base(log_dir, key_file))
    assert result.returncode == 1, (old, newest, after, stderr, result.stdout)
    _failed(result, f"deleted (after row {old}; no purge checkpoint covers them)", f"moved back to row {old}")


def test_head_restored_from_the_wal_offline_is_caught_by_expect_head(log) -> None:
    log_dir, key_file = log
    writer = LogDatabase.open(log_dir, read_key_file(key_file), create=True)  # keeps the -wal file
    for batch in range(3):
        writer.append(_frames(4, start=100 + 4 * batch))
    recorded = _verify(log_dir, key_file).head  # the head an operator wrote down
    old = _restore_older_head(log_dir, keep_below=10**9)
    assert old < int(recorded.split(":")[0])
    # The limit, stated: without an anchor the shorter log is consistent in itself.
    assert _verify(log_dir, key_file).ok
    result = _cli("log", "verify", *_base(log_dir, key_file), "--expect-head", recorded)
    _failed(result, f"behind the expected {recorded}: the log was rolled back or truncated")
    # The same attack under a writer that committed the newer head: its next commit leaves the gap.
    writer.append(_frames(2, start=200))
    writer.close()
    newest = int(recorded.split(":")[0])
    assert _verify(log_dir, key_file).problems == [
        f"rows {old + 1}-{newest} deleted (after row {old}; no purge checkpoint covers them); the chain resumes at "
        f"row {newest + 1}",
        f"row {newest + 1}: a writer sealed this note: the log head was moved back to row {old} after this writer "
        f"had committed row {newest}; continuing after it",
    ]


# -- purges and --expect-head -------------------------------------------------------------------------
def test_manual_purge_is_accepted_by_expect_head(log) -> None:
    log_dir, key_file = log
    recorded = _verify(log_dir, key_file).head
    result = _cli("log", "purge", *_base(log_dir, key_file), "--older-than", "2999-01-01")
    assert result.returncode == 0, result.stderr
    result = _cli("log", "verify", *_base(log_dir, key_file), "--expect-head", recorded)
    assert result.returncode == 0 and "verify: OK" in result.stdout, result.stdout
    assert f"note: the expected head {recorded} was purged by sealed checkpoint 1 (manual retention" in result.stdout
    checkpoint_head = f"22:{recorded.split(':')[1]}"
    assert _verify(log_dir, key_file, checkpoint_head).ok  # the checkpoint's own row: its link is compared
    forged = f"22:{'0' * 64}"
    assert "does not match purge checkpoint 1" in _verify(log_dir, key_file, forged).problems[0]


def test_retention_purge_is_accepted_by_expect_head(tmp_path: Path) -> None:
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    write_key_file(key_file, KeyRing.generate())
    old = time.time() - 40 * DAY
    db = LogDatabase.open(log_dir, read_key_file(key_file), create=True)
    db.append([PendingRow("frame", "s_old", int(old) + i, envelope({"i": i}, old + i, None, None)) for i in range(30)])
    db.close()
    recorded = _verify(log_dir, key_file).head  # row 30, 40 days old
    settings = LogSettings(key_file=str(key_file), retention_days=30)
    sink = EncryptedLogSink.open(log_dir, settings, LogTuning(maintenance_interval=0.05, flush_interval=0.01))
    sink.write({"i": 99})
    sink.close()  # the writer's retention purge runs on close at the latest
    report = _verify(log_dir, key_file, recorded)
    assert report.ok and report.checkpoints == 1, report.problems
    assert any("purged by sealed checkpoint 1 (retention" in note for note in report.notes), report.notes


def test_deletion_that_is_not_a_sealed_purge_still_fails_expect_head(log) -> None:
    log_dir, key_file = log
    recorded = _verify(log_dir, key_file).head
    with _raw(log_dir) as conn:
        conn.execute("DELETE FROM records WHERE seq <= 22")
        conn.execute(  # a checkpoint made up without the key
            "INSERT INTO checkpoints (through_seq, head, purged, reason, at, link) VALUES (22, ?, 22, 'x', 0, ?)",
            (bytes(32), bytes(32)),
        )
    _failed(
        _cli("log", "verify", *_base(log_dir, key_file), "--expect-head", recorded),
        "purge checkpoint 1 (through row 22) was altered or is out of order",
    )


# -- export and summary warn about gaps ---------------------------------------------------------------
def test_export_and_summary_warn_and_exit_1_on_gaps(log, tmp_path: Path) -> None:
    log_dir, key_file = log
    out = tmp_path / "x.jsonl"
    clean = _cli("log", "export", *_base(log_dir, key_file), "--format", "jsonl", "--out", str(out))
    assert clean.returncode == 0 and "warning" not in clean.stderr, clean.stderr
    with _raw(log_dir) as conn:
        conn.execute("DELETE FROM records WHERE seq = 10")
    result = _cli("log", "export", *_base(log_dir, key_file), "--format", "jsonl", "--out", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "warning:" in result.stderr and "row 10 deleted" in result.stderr, result.stderr
    assert len(out.read_text().splitlines()) == 21  # what is left was written
    allowed = _cli("log", "export", *_base(log_dir, key_file), "--allow-gaps", "--out", str(out))
    assert allowed.returncode == 0 and "row 10 deleted" in allowed.stderr, allowed.stderr
    summary = _cli("log", "summary", *_base(log_dir, key_file))
    assert summary.returncode == 1 and "row 10 deleted" in summary.stderr, summary.stderr
    assert summary.stdout.split()[:2] == ["hour", "frames"]


def test_export_warns_on_a_truncated_tail(log) -> None:
    log_dir, key_file = log
    with _raw(log_dir) as conn:
        conn.execute("DELETE FROM records WHERE seq > 18")
    result = _cli("log", "export", *_base(log_dir, key_file), "--format", "jsonl")
    assert result.returncode == 1 and "truncated tail: rows 19-22 missing" in result.stderr, result.stderr
    assert len(result.stdout.splitlines()) == 18


# -- key files ----------------------------------------------------------------------------------------
def test_planted_symlink_at_the_key_path_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    key_file = tmp_path / "keys" / "log-key.json"
    key_file.parent.mkdir()
    key_file.symlink_to(victim)
    with pytest.raises(LogKeyError, match="symbolic link"):
        write_key_file(key_file, KeyRing.generate())
    result = _cli("log", "rotate-key", "--key-file", str(key_file))
    _one_error(result, str(key_file))
    dangling = tmp_path / "keys" / "dangling.json"
    dangling.symlink_to(tmp_path / "created-through-the-link.json")
    with pytest.raises(LogKeyError, match="symbolic link"):
        KeySource(key_file=dangling).load(create=True)
    _one_error(_cli("log", "init-key", "--key-file", str(dangling)), "is a symbolic link")
    assert victim.read_text() == "precious\n" and not (tmp_path / "created-through-the-link.json").exists()


def test_key_file_is_created_exclusively_0600_and_never_overwritten(tmp_path: Path) -> None:
    key_file = tmp_path / "ring.json"
    first = KeyRing.generate()
    write_key_file(key_file, first)
    assert key_file.stat().st_mode & 0o777 == 0o600
    with pytest.raises(LogKeyError, match="already exists"):
        write_key_file(key_file, KeyRing.generate())
    assert read_key_file(key_file).secret == first.secret
    assert main(["log", "rotate-key", "--key-file", str(key_file)]) == 0
    assert read_key_file(key_file).secret == first.secret and key_file.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["ring.json"]  # no temporary file left behind


def test_key_file_owned_by_someone_else_is_refused(tmp_path: Path, monkeypatch) -> None:
    key_file = tmp_path / "ring.json"
    write_key_file(key_file, KeyRing.generate())
    if os.geteuid() == 0:
        os.chown(key_file, 65534, 65534)  # nobody
        owner = 65534
    else:  # cannot give a file away without root: be someone else instead
        owner = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    with pytest.raises(LogKeyError, match=f"belongs to uid {owner}, not to this user"):
        read_key_file(key_file)
    if os.geteuid() == 0:
        _one_error(_cli("log", "verify", "--log-dir", str(tmp_path), "--key-file", str(key_file)), "belongs to uid")


def test_key_path_that_is_a_fifo_or_not_text_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(LogKeyError, match="not a regular file"):
        read_key_file(fifo)  # refused without blocking on the FIFO
    binary = tmp_path / "binary.json"
    write_key_file(binary, KeyRing.generate())
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(LogKeyError, match="not text"):
        read_key_file(binary)
    monkeypatch.setenv(KEY_ENV, '{"format": "edge-sdk-keyring/1", "keys": 5}')
    with pytest.raises(LogKeyError, match=f"\\${KEY_ENV}: not a valid key ring"):
        KeySource().load()


# -- every log-related fault: one error line, no traceback --------------------------------------------
def test_key_command_with_unbalanced_quotes(log) -> None:
    log_dir, _ = log
    result = _cli("log", "verify", "--log-dir", str(log_dir), "--key-command", "cat 'unterminated")
    _one_error(result, "key_command", "check its quotes")


@pytest.mark.parametrize("where", ["read-only dir", "missing parent", "a directory"])
def test_export_out_to_an_unwritable_path(log, tmp_path: Path, where: str) -> None:
    log_dir, key_file = log
    if where == "read-only dir":
        if os.geteuid() == 0:  # root writes through mode bits: use a directory no one can create files in
            out = Path("/proc/edge-sdk-export.csv")
        else:
            locked = tmp_path / "locked"
            locked.mkdir(mode=0o500)
            out = locked / "x.csv"
    elif where == "missing parent":
        out = tmp_path / "no" / "such" / "x.csv"
    else:
        out = tmp_path
    result = _cli("log", "export", *_base(log_dir, key_file), "--out", str(out))
    _one_error(result, f"--out {out}")
    with _raw(log_dir) as conn:  # nothing was exported, so no export is audited
        assert conn.execute("SELECT COUNT(*) FROM records WHERE kind = 'audit'").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["export", "--since", "99999999999d"], "time '99999999999d': too far back"),
        (["summary", "--until", "99999999999d"], "time '99999999999d': too far back"),
        (["purge", "--older-than", "99999999999999d"], "time '99999999999999d': too far back"),
        (["purge", "--max-bytes", "-1"], "--max-bytes -1"),
        (["verify", "--expect-head", "12:zz"], "--expect-head '12:zz'"),
        (["summary", "--plot", "/no/such/dir/t.png"], "--plot /no/such/dir/t.png"),
    ],
)
def test_out_of_range_values_are_one_error_line(log, args: list[str], needle: str) -> None:
    log_dir, key_file = log
    _one_error(_cli("log", args[0], *_base(log_dir, key_file), *args[1:]), needle)


def test_tampered_nonce(log) -> None:
    log_dir, key_file = log
    with _raw(log_dir) as conn:
        conn.execute("UPDATE records SET nonce = x'00' WHERE seq = 7")  # a nonce of the wrong length
    _failed(_cli("log", "verify", *_base(log_dir, key_file)), "row 7 was altered")
    _one_error(_cli("log", "export", *_base(log_dir, key_file)), "row 7 of", "results.db", "fails authentication")
    _one_error(_cli("log", "summary", *_base(log_dir, key_file)), "row 7 of", "fails authentication")


@pytest.mark.parametrize("value", ["{", "[]", '{"seq": "x", "link": "", "mac": ""}', "null"])
def test_tampered_head_json(log, value: str) -> None:
    log_dir, key_file = log
    with _raw(log_dir) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'head'", (value,))
    _failed(_cli("log", "verify", *_base(log_dir, key_file)), "the log head record is malformed")
    for command in ("export", "summary"):
        result = _cli("log", command, *_base(log_dir, key_file))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert "warning:" in result.stderr and "the log head record is malformed" in result.stderr


def test_tampered_checkpoint_and_meta_types(log) -> None:
    log_dir, key_file = log
    assert main(["log", "purge", *_base(log_dir, key_file), "--older-than", "2999-01-01"]) == 0
    with _raw(log_dir) as conn:
        conn.execute("UPDATE checkpoints SET head = 'text', through_seq = 'x', reason = x'ff00'")
        conn.execute("UPDATE records SET kind = x'ff', session = 42 WHERE seq = 23")
    _failed(_cli("log", "verify", *_base(log_dir, key_file)), "purge checkpoint 1", "row 23 was altered")


def test_malformed_database_page(tmp_path: Path) -> None:
    log_dir, key_file = write_log(tmp_path, n=400)
    db = open_db(log_dir, key_file)
    nonce = next(db.rows("WHERE seq = 200")).nonce
    page_size = db.conn.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    path = log_path(log_dir)
    data = bytearray(path.read_bytes())
    page = data.index(nonce) // page_size  # the b-tree page that holds row 200
    data[page * page_size : page * page_size + 8] = b"\x0b" * 8  # not a b-tree page type any more
    path.write_bytes(bytes(data))
    _failed(_cli("log", "verify", *_base(log_dir, key_file)), "is damaged")
    for command in ("export", "summary"):
        _one_error(_cli("log", command, *_base(log_dir, key_file)), "results.db", "damaged")
    _one_error(_cli("log", "purge", *_base(log_dir, key_file), "--max-bytes", "0"), "results.db")


def test_export_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    log_dir, key_file = write_log(tmp_path, n=3000)
    script = Path(sys.executable).with_name("edge-sdk")
    command = f"'{script}'" if script.exists() else f"'{sys.executable}' -m edge_sdk"
    result = subprocess.run(
        [
            "bash",
            "-c",
            f"set -o pipefail; {command} log export --format jsonl {' '.join(_base(log_dir, key_file))} | head -1",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert result.stdout.count("\n") == 1 and '"seq":1' in result.stdout, result.stdout[:200]
    assert result.stderr == "", result.stderr  # no traceback, no "Exception ignored"
    assert result.returncode == 141  # 128 + SIGPIPE, as a shell reports a tool whose reader went away
