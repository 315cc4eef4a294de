"""A full disk: the loop keeps running at full speed, rows are held in memory and then the oldest frames are
dropped and counted (events never), ``health()`` reports the fault, what is held is written once space returns,
and nothing committed is lost. On a real 2 MiB tmpfs where mounting is permitted (root), and everywhere with
SQLite's ``database or disk is full`` injected into the db layer."""

from __future__ import annotations

import errno
import itertools
import json
import math
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from unittest import mock

import pytest

from edge_sdk.assembly import open_log_sink
from edge_sdk.errors import InputError
from edge_sdk.pipeline.config import LogSettings, RunConfig
from edge_sdk.store import EncryptedLogSink, LogTuning
from edge_sdk.store.db import LogDatabase
from edge_sdk.store.reader import read_records
from edge_sdk.store.verify import verify_log
from tests.store_helpers import open_db

FAST = LogTuning(batch_size=16, flush_interval=0.01, retry_interval=0.05)  # commit and retry at test speed


def _settings(key_file: Path, **fields: int | None) -> LogSettings:
    return LogSettings(key_file=str(key_file), retention_days=None, **fields)


def _frames(log_dir: Path, key_file: Path) -> tuple[list[int], list[dict], list[str]]:
    db = open_db(log_dir, key_file)
    try:
        problems = verify_log(db).problems
        records = list(read_records(db))
    finally:
        db.close()
    frames = [int(r.record["i"]) for r in records if r.kind == "frame"]
    events = [r.record for r in records if r.kind == "event"]
    return frames, events, problems


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_injected_enospc_is_reported_and_recovered(tmp_path):
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    problems: list[str] = []
    sink = EncryptedLogSink.open(log_dir, _settings(key_file), replace(FAST, batch_size=8), on_problem=problems.append)
    real_append = sink.writer.db.append
    failing = {"on": False}

    def append(rows):
        if failing["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(rows)

    sink.writer.db.append = append
    for i in range(100):
        sink.write({"i": i})
    assert sink.flush(5)
    committed_before = sink.writer_health().committed_ticket
    failing["on"] = True
    slowest = 0.0
    for i in range(100, 400):  # the bedside loop keeps going while the disk is full
        t0 = time.perf_counter()
        assert sink.write({"i": i}) is not None
        slowest = max(slowest, time.perf_counter() - t0)
    assert not sink.flush(0.3)
    health = sink.writer_health()
    assert health.storage_error and health.storage_error.startswith("disk full")
    assert health.committed_ticket == committed_before and health.waiting >= 300
    assert any("disk full" in p for p in problems)
    assert slowest < 0.05
    failing["on"] = False  # space comes back
    assert sink.flush(5)
    assert sink.writer_health().storage_error is None
    assert any("recovered" in p for p in problems)
    sink.close()
    frames, events, verify_problems = _frames(log_dir, key_file)
    assert verify_problems == []
    assert frames == list(range(400))
    assert any(e.get("event") == "storage_recovered" for e in events)


def test_memory_bound_drops_the_oldest_frames_counts_them_and_keeps_alerts(tmp_path):
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    sink = EncryptedLogSink.open(log_dir, _settings(key_file), replace(FAST, batch_size=8, queue_limit=50))
    real_append = sink.writer.db.append
    sink.writer.db.append = lambda rows: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device"))
    tickets = [sink.write({"i": i}) for i in range(200)]
    assert None not in tickets  # the newest frames are kept: the oldest ones make room
    alert = sink.write({"alert": "pain"}, kind="alert")
    events = [sink.write({"event": "e", "n": n}, kind="event") for n in range(20)]
    assert alert is not None and None not in events
    _wait_for(lambda: not sink.health().ok)
    health = sink.writer_health()
    assert health.dropped >= 150 and health.waiting <= 50 + 4 * 8
    assert sink.health().problem.startswith("disk full") and sink.health().dropped == health.dropped
    sink.writer.db.append = real_append
    assert sink.flush(5)
    dropped = sink.writer_health().dropped
    sink.close()
    frames, events_read, problems = _frames(log_dir, key_file)
    assert problems == []
    assert len(frames) == 200 - dropped and frames == list(range(200 - len(frames), 200))  # the newest survive
    assert sum(e["count"] for e in events_read if e.get("event") == "rows_dropped") == dropped
    assert sum(e.get("alert") == "pain" for e in events_read) == 0  # alerts are their own kind, read below
    db = open_db(log_dir, key_file)
    try:
        kinds = [r.kind for r in read_records(db)]
    finally:
        db.close()
    assert kinds.count("alert") == 1 and sum(e.get("event") == "e" for e in events_read) == 20


def test_sqlite_full_at_hard_limit_loses_nothing_committed(tmp_path):
    """A real SQLITE_FULL: the database may not grow past ``hard_limit_bytes`` (max_page_count)."""
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    committed = [0]
    problems: list[str] = []
    sink = EncryptedLogSink.open(
        log_dir,
        _settings(key_file, quota_bytes=None),
        replace(FAST, hard_limit_bytes=96 * 1024),
        on_problem=problems.append,
        on_commit=lambda r: committed.__setitem__(0, r.through_ticket),
    )
    deadline = time.monotonic() + 20
    i = 0
    while sink.writer_health().storage_error is None and time.monotonic() < deadline:
        sink.write({"i": i, "pspi": 1.0, "state": "clear"})
        i += 1
        if i % 64 == 0:
            time.sleep(0.005)
    assert sink.writer_health().storage_error is not None and "full" in sink.writer_health().storage_error
    assert any("disk full" in p for p in problems)
    for j in range(i, i + 50):  # still accepted while full
        sink.write({"i": j})
    health = sink.close(timeout=0.3)
    assert health.committed_ticket == committed[0] > 0
    frames, _, verify_problems = _frames(log_dir, key_file)
    assert verify_problems == []
    reported_frames = committed[0] - 1  # ticket 1 is session_start; frame i has ticket i + 2
    assert frames[:reported_frames] == list(range(reported_frames))


def test_sqlite_full_recovers_through_quota_purge(tmp_path):
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    problems: list[str] = []
    sink = EncryptedLogSink.open(
        log_dir,
        _settings(key_file, quota_bytes=100 * 1024),
        replace(FAST, hard_limit_bytes=128 * 1024, maintenance_interval=3600),
        on_problem=problems.append,
    )
    for i in range(2000):
        sink.write({"i": i, "pspi": 2.0, "state": "clear", "note": "x" * 40})
        if i % 64 == 0:
            time.sleep(0.002)
    assert sink.flush(10)
    sink.close()
    assert any("disk full" in p for p in problems) and any("quota" in p for p in problems)
    frames, _, verify_problems = _frames(log_dir, key_file)
    assert verify_problems == []
    assert frames == list(range(frames[0], 2000))  # oldest purged, the rest contiguous to the last one


def _mount_tmpfs(where: Path, size: str, *options: str) -> str | None:
    """Mount a size-limited tmpfs at ``where``; None, or why that is not permitted here."""
    if os.geteuid() != 0:
        return "needs root to mount a size-limited tmpfs (the injected and SQLITE_FULL variants cover non-root)"
    where.mkdir(exist_ok=True)
    opts = ",".join((f"size={size}", *options))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
    return None if done.returncode == 0 else f"mount -t tmpfs not permitted here: {done.stderr.strip()}"


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], check=False)


class Disk:
    """Where a log lives and how to fill and free its disk: a real 2 MiB tmpfs (``tmpfs``), or SQLite's
    ``database or disk is full`` injected into the db layer (``injected``: where mounting is not allowed)."""

    def __init__(self, kind: str, root: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
        self.kind, self.root, self.full = kind, root, False
        self.log_dir = root / "log"
        self.filler = root / "filler"
        if kind == "injected":
            assert monkeypatch is not None
            self._inject(monkeypatch)

    def _inject(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_append, real_init = LogDatabase.append, LogDatabase._init_meta

        def refuse_when_full(real):
            def call(db, *args):
                if self.full:
                    raise sqlite3.OperationalError("database or disk is full")
                return real(db, *args)

            return call

        monkeypatch.setattr(LogDatabase, "append", refuse_when_full(real_append))
        monkeypatch.setattr(LogDatabase, "_init_meta", refuse_when_full(real_init))

    def fill(self) -> None:
        self.full = True
        if self.kind == "tmpfs":
            # Unbuffered: a buffered file keeps the tail of the last partial write and raises ENOSPC again
            # from close(), at a point that depends on how the free space lines up with the chunk size.
            with open(self.filler, "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC

    def free(self) -> None:
        self.full = False
        if self.kind == "tmpfs":
            self.filler.unlink()


@pytest.fixture(params=["tmpfs", "injected"])
def disk(request, tmp_path, monkeypatch):
    root = tmp_path / "disk"
    if request.param == "tmpfs":
        why = _mount_tmpfs(root, "2m")
        if why:
            pytest.skip(why)
    else:
        root.mkdir()
    yield Disk(request.param, root, monkeypatch)
    if request.param == "tmpfs":
        _umount(root)


def _kinds(log_dir: Path, key_file: Path) -> list[str]:
    db = open_db(log_dir, key_file)
    try:
        return [r.kind for r in read_records(db)]
    finally:
        db.close()


@dataclass
class LoopTimes:
    """Per-call seconds of the simulated bedside loop's ``write`` and periodic ``flush``."""

    writes: list[float] = field(default_factory=list)
    flushes: list[float] = field(default_factory=list)

    def p(self, q: float) -> float:
        ordered = sorted(self.writes)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _bedside_loop(sink: EncryptedLogSink, frames: range, times: LoopTimes) -> int:
    """What the runner does, as fast as it can: a frame per iteration, an alert and an event every 50 frames,
    ``flush()`` every 100 (the status period). Returns the number of alerts written."""
    alerts = 0
    for i in frames:
        t0 = time.perf_counter()
        sink.write({"i": i, "state": "clear", "pspi": 1.5, "pad": "y" * 200}, timestamp=time.monotonic())
        times.writes.append(time.perf_counter() - t0)
        if i % 50 == 0:
            sink.write({"alert": "pain", "i": i}, kind="alert")
            sink.write({"event": "status", "i": i}, kind="event")
            alerts += 1
        if i % 100 == 0:
            t0 = time.perf_counter()
            sink.flush()
            times.flushes.append(time.perf_counter() - t0)
        if i % 20 == 0:
            time.sleep(0.001)  # camera-like: the writer thread gets the GIL now and then
    return alerts


def test_full_disk_mid_run_keeps_the_loop_fast_drops_oldest_frames_and_writes_back(disk, tmp_path):
    key_file = tmp_path / "key.json"
    tuning = LogTuning(batch_size=16, flush_interval=0.02, retry_interval=0.1, queue_limit=400, flush_timeout=2.0)
    sink = EncryptedLogSink.open(disk.log_dir, _settings(key_file, quota_bytes=None), tuning)
    normal, full = LoopTimes(), LoopTimes()
    alerts = _bedside_loop(sink, range(300), normal)
    assert sink.flush(10) and sink.health().ok
    disk.fill()
    alerts += _bedside_loop(sink, range(300, 1800), full)
    health = sink.health()
    assert not health.ok and "disk full" in health.problem
    assert health.dropped > 0 and health.pending <= 400  # the bound counts the batch being written too
    # (bounds loose enough for a loaded 2-core box; before, one flush() waited 10 s and the loop fell to 0.1 FPS)
    assert max(full.flushes) < 0.25, "the loop's flush() must not wait on a full disk"
    assert full.p(0.5) < 0.002 and max(full.writes) < 0.5, (full.p(0.5), max(full.writes))
    print(
        f"\n[{disk.kind}] write() median/p99/max us: normal {normal.p(0.5) * 1e6:.0f}/{normal.p(0.99) * 1e6:.0f}/"
        f"{max(normal.writes) * 1e6:.0f}, disk full {full.p(0.5) * 1e6:.0f}/{full.p(0.99) * 1e6:.0f}/"
        f"{max(full.writes) * 1e6:.0f}; flush() max ms: normal {max(normal.flushes) * 1e3:.1f}, "
        f"full {max(full.flushes) * 1e3:.2f}; dropped {health.dropped}"
    )
    disk.free()
    _wait_for(lambda: sink.health().ok)
    assert sink.flush(10)
    dropped = sink.writer_health().dropped
    assert sink.close().lost_at_close == 0 and sink.health().ok
    frames, events, problems = _frames(disk.log_dir, key_file)
    assert problems == []
    assert set(range(300)) <= set(frames)  # committed before the disk filled: untouched
    assert len(frames) == 1800 - dropped and frames == sorted(frames)
    assert frames[-300:] == list(range(1500, 1800))  # what was held last (the newest) was written back
    drops = [e for e in events if e.get("event") == "rows_dropped"]
    assert sum(e["count"] for e in drops) == dropped and all(e["first_ts"] <= e["last_ts"] for e in drops)
    assert any(e.get("event") == "storage_recovered" for e in events)
    assert _kinds(disk.log_dir, key_file).count("alert") == alerts  # alerts are never dropped
    assert sum(e.get("event") == "status" for e in events) == alerts  # nor events


def test_full_disk_at_start_still_monitors_and_opens_the_log_when_space_returns(disk, tmp_path, caplog):
    key_file = tmp_path / "key.json"
    disk.fill()
    config = RunConfig(log_dir=str(disk.log_dir), log=_settings(key_file, quota_bytes=None))
    tuning = replace(FAST, queue_limit=300, retry_interval=0.1)
    with mock.patch("edge_sdk.assembly.EncryptedLogSink.open", partial(EncryptedLogSink.open, tuning=tuning)):
        sink = open_log_sink(config)
    said = [r.getMessage() for r in caplog.records if r.name == "edge_sdk.assembly" and r.levelname == "WARNING"]
    assert len(said) == 1 and "UNAVAILABLE" in said[0] and "monitoring continues" in said[0]
    health = sink.health()
    assert not health.ok and health.problem.startswith("log unavailable") and "full" in health.problem
    db_file = disk.log_dir / "results.db"
    assert not db_file.exists(), "a full disk must not leave a half-made (0-byte) results.db"
    times = LoopTimes()
    alerts = _bedside_loop(sink, range(1000), times)
    assert max(times.flushes) < 0.25 and times.p(0.5) < 0.002
    health = sink.health()
    assert not health.ok and health.dropped > 0 and health.pending <= 300
    disk.free()
    _wait_for(lambda: sink.health().ok)
    assert sink.flush(10)
    dropped = sink.writer_health().dropped
    sink.close()
    frames, events, problems = _frames(disk.log_dir, key_file)
    assert problems == []
    # The newest are kept; the batch whose write was under way when space returned may land before them.
    assert len(frames) == 1000 - dropped and frames == sorted(set(frames))
    gaps = [(a, b) for a, b in itertools.pairwise(frames) if b != a + 1]
    never_dropped = 2 * 20 + 1  # an alert and an event every 50 frames, and session_start, share the bound
    newest = 300 - 4 * tuning.batch_size - never_dropped
    assert len(gaps) <= 1 and frames[-newest:] == list(range(1000 - newest, 1000)), gaps
    assert sum(e["count"] for e in events if e.get("event") == "rows_dropped") == dropped
    assert _kinds(disk.log_dir, key_file).count("alert") == alerts
    assert [e["event"] for e in events if e.get("event") in ("session_start", "session_end")] == [
        "session_start",
        "session_end",
    ]


def test_close_on_a_full_disk_is_bounded_and_reports_what_was_not_committed(disk, tmp_path):
    key_file = tmp_path / "key.json"
    tuning = replace(FAST, queue_limit=500, close_timeout=0.5)
    sink = EncryptedLogSink.open(disk.log_dir, _settings(key_file, quota_bytes=None), tuning)
    for i in range(50):
        sink.write({"i": i})
    assert sink.flush(10)
    disk.fill()
    i = 50
    while sink.health().ok:  # a tmpfs may still take a few commits into the -wal space it has
        sink.write({"i": i})
        i += 1
        time.sleep(0.001)
    t0 = time.monotonic()
    assert not sink.flush()  # the runner's last flush: at once
    assert time.monotonic() - t0 < 0.25
    health = sink.close()
    assert time.monotonic() - t0 < 0.5 + 1.0
    after = sink.health()
    assert health.lost_at_close > 0 and after.pending == health.lost_at_close
    assert not after.ok and f"{health.lost_at_close} rows NOT committed" in after.problem
    assert after.dropped == health.dropped + health.lost_at_close  # rows lost at close are dropped rows too
    disk.free()
    frames, _, problems = _frames(disk.log_dir, key_file)
    assert problems == [] and frames == list(range(len(frames)))
    assert len(frames) + health.lost_at_close == i + 1  # every frame and session_end: on disk or counted


def test_a_slow_disk_never_stalls_write_health_or_the_loops_flush(tmp_path):
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    sink = EncryptedLogSink.open(log_dir, _settings(key_file), replace(FAST, flush_timeout=0.2))
    assert sink.flush(5)
    real_append = sink.writer.db.append
    sink.writer.db.append = lambda rows: (time.sleep(2.0), real_append(rows))[1]  # a hung SD card
    sink.write({"i": 0})
    time.sleep(0.1)  # the writer is now inside the slow commit
    t0 = time.monotonic()
    for i in range(1, 200):
        sink.write({"i": i})
    health = sink.health()
    assert time.monotonic() - t0 < 1.0 and health.ok and health.pending == 200  # the commit hangs for 2 s
    t0 = time.monotonic()
    assert not sink.flush()  # waits flush_timeout (0.2 s), not for the hung commit
    assert time.monotonic() - t0 < 1.0
    sink.writer.db.append = real_append
    sink.close()
    assert _frames(log_dir, key_file)[0] == list(range(200))


def test_a_dying_writer_thread_is_reported_by_health_never_silent(tmp_path):
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    problems: list[str] = []
    sink = EncryptedLogSink.open(log_dir, _settings(key_file), FAST, on_problem=problems.append)
    assert sink.flush(5)

    def append(rows):
        raise RuntimeError("boom: a bug in the writer")

    sink.writer.db.append = append
    for i in range(100):
        sink.write({"i": i})
    _wait_for(lambda: not sink.writer_health().alive)
    health = sink.health()
    assert not health.ok and "log writer stopped" in health.problem and "RuntimeError: boom" in health.problem
    assert health.pending == 100
    assert any("RuntimeError: boom" in p for p in problems)
    t0 = time.monotonic()
    assert sink.write({"i": 100}) is not None and not sink.flush()
    assert time.monotonic() - t0 < 0.25
    final = sink.close(timeout=0.2)
    assert not final.alive and final.fault and "RuntimeError" in final.fault


def test_an_unpurgeable_retention_is_a_reported_fault_not_a_dead_writer(tmp_path):
    """``retention_days = inf`` killed the writer thread (OverflowError): now the writer keeps committing and
    says that the purge cannot run. (The config refuses inf; the writer must not depend on that.)"""
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    settings = _settings(key_file)
    object.__setattr__(settings, "retention_days", math.inf)  # past the config's range check on purpose
    problems: list[str] = []
    sink = EncryptedLogSink.open(log_dir, settings, FAST, on_problem=problems.append)
    for i in range(20):
        sink.write({"i": i})
    assert sink.flush(5)
    health = sink.health()
    assert sink.writer_health().alive and not health.ok and "purge cannot run" in health.problem
    assert "retention" in health.problem and any("purge cannot run" in p for p in problems)
    sink.close()
    assert _frames(log_dir, key_file)[0] == list(range(20))
    huge = _settings(key_file)
    object.__setattr__(huge, "retention_days", 1e300)  # a cut-off before 1970: nothing to purge
    sink = EncryptedLogSink.open(log_dir, huge, FAST)
    sink.write({"i": 20})
    assert sink.flush(5) and sink.health().ok
    sink.close()
    assert _frames(log_dir, key_file)[0] == list(range(21))


def test_an_unwritable_log_dir_is_one_input_error_naming_it(tmp_path):
    key_file = tmp_path / "key.json"
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    places = [blocked / "log"]  # ENOTDIR: works without root
    read_only = tmp_path / "ro"
    if _mount_tmpfs(read_only, "1m", "ro") is None:
        places.append(read_only / "log")
    try:
        for log_dir in places:
            with pytest.raises(InputError, match=f"log dir {log_dir} is not writable"):
                EncryptedLogSink.open(log_dir, _settings(key_file))
            for fmt in ("encrypted", "jsonl"):
                config = RunConfig(log_dir=str(log_dir), log=replace(_settings(key_file), format=fmt))
                with pytest.raises(InputError, match=str(log_dir)):
                    open_log_sink(config)
        if len(places) == 1:
            pytest.skip("a read-only tmpfs could not be mounted here (ENOTDIR was covered)")
    finally:
        if len(places) > 1:
            _umount(read_only)


def test_doctor_fails_when_the_log_dir_is_full_or_read_only(tmp_path):
    from edge_sdk.cli import doctor

    def finding(log_dir: Path):
        return {f.check: f for f in doctor.check_storage(doctor.Setup(log_dir=str(log_dir)))}["log dir"]

    assert finding(tmp_path / "ok").status == "ok"
    with mock.patch.object(doctor, "_free", return_value=1 << 20):  # 1 MiB left
        low = finding(tmp_path / "ok")
    assert low.status == "FAIL" and low.required and "MiB free" in low.detail
    full = tmp_path / "full"
    why = _mount_tmpfs(full, "256k")
    if why:
        pytest.skip(why)
    try:
        Disk("tmpfs", full).fill()
        found = finding(full / "log")
        assert found.status == "FAIL" and found.required and "free space" in found.fix, found
    finally:
        _umount(full)
    read_only = tmp_path / "ro"
    assert _mount_tmpfs(read_only, "1m", "ro") is None
    try:
        found = finding(read_only / "log")
        assert found.status == "FAIL" and "not writable" in found.detail and "ReadWritePaths" in found.fix
    finally:
        _umount(read_only)


def test_real_full_tmpfs(tmp_path):
    mount = tmp_path / "small"
    why = _mount_tmpfs(mount, "512k")
    if why:
        pytest.skip(why)
    try:
        log_dir, key_file = mount / "log", tmp_path / "key.json"
        committed = [0]
        sink = EncryptedLogSink.open(
            log_dir,
            _settings(key_file, quota_bytes=None),
            FAST,
            on_commit=lambda r: committed.__setitem__(0, r.through_ticket),
        )
        deadline = time.monotonic() + 20
        i = 0
        while sink.writer_health().storage_error is None and time.monotonic() < deadline:
            sink.write({"i": i, "state": "clear", "pad": "y" * 100})
            i += 1
            if i % 64 == 0:
                time.sleep(0.005)
        assert sink.writer_health().storage_error is not None, "the 512k tmpfs never filled"
        sink.close(timeout=0.3)
        frames, _, problems = _frames(log_dir, key_file)
        assert problems == []
        reported = committed[0] - 1
        assert reported > 0 and frames[:reported] == list(range(reported))
    finally:
        _umount(mount)


def test_edge_sdk_run_on_a_full_or_read_only_log_disk(tmp_path):
    """Real processes: a full disk at start still monitors every frame and says the log is unavailable (exit
    non-zero, no traceback); a read-only log dir is one ``error:`` line naming it, exit 2."""
    from tests.runtime_fixtures import face_file
    from tests.test_run_cli import edge_sdk, run_args

    root = tmp_path / "disk"
    why = _mount_tmpfs(root, "2m")
    if why:
        pytest.skip(why)  # the in-process variants above cover both paths with injected errors
    read_only = tmp_path / "ro"
    try:
        Disk("tmpfs", root).fill()
        key = ("--key-file", str(tmp_path / "key.json"))
        result = edge_sdk(*run_args(face_file("single_face.mp4"), "--json", "--log-dir", str(root / "log"), *key))
        assert "Traceback" not in result.stderr and result.returncode not in (0, 2), result.stderr
        summary = json.loads(result.stdout.splitlines()[-1])  # run --json: JSON lines, the summary last
        assert "UNAVAILABLE" in result.stderr and summary["kind"] == "summary" and summary["frames"] == 72
        assert not (root / "log" / "results.db").exists()
        assert _mount_tmpfs(read_only, "1m", "ro") is None
        for fmt in ("encrypted", "jsonl"):
            log_args = ("--log-dir", str(read_only / "log"), "--log-format", fmt)
            result = edge_sdk(*run_args(face_file("single_face.mp4"), *log_args, *key))
            errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
            assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
            assert len(errors) == 1 and str(read_only / "log") in errors[0], result.stderr
    finally:
        _umount(root)
        _umount(read_only)
