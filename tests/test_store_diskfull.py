"""A full disk: the loop keeps running, the condition is reported, nothing committed is lost."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from edge_sdk.pipeline.config import LogSettings
from edge_sdk.store import EncryptedLogSink, LogTuning
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
    committed_before = sink.health.committed_ticket
    failing["on"] = True
    slowest = 0.0
    for i in range(100, 400):  # the bedside loop keeps going while the disk is full
        t0 = time.perf_counter()
        assert sink.write({"i": i}) is not None
        slowest = max(slowest, time.perf_counter() - t0)
    assert not sink.flush(0.3)
    health = sink.health
    assert health.storage_error and health.storage_error.startswith("disk full")
    assert health.committed_ticket == committed_before and health.waiting >= 300
    assert any("disk full" in p for p in problems)
    assert slowest < 0.05
    failing["on"] = False  # space comes back
    assert sink.flush(5)
    assert sink.health.storage_error is None
    assert any("recovered" in p for p in problems)
    sink.close()
    frames, events, verify_problems = _frames(log_dir, key_file)
    assert verify_problems == []
    assert frames == list(range(400))
    assert any(e.get("event") == "storage_recovered" for e in events)


def test_queue_full_drops_frames_counts_them_and_keeps_alerts(tmp_path):
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    sink = EncryptedLogSink.open(log_dir, _settings(key_file), replace(FAST, batch_size=8, queue_limit=50))
    real_append = sink.writer.db.append
    sink.writer.db.append = lambda rows: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device"))
    tickets = [sink.write({"i": i}) for i in range(200)]
    assert tickets.count(None) >= 140  # frames beyond the bound are dropped, not queued
    assert sink.write({"alert": "pain"}, kind="alert") is not None  # alerts are never dropped
    sink.writer.db.append = real_append
    assert sink.flush(5)
    dropped = sink.health.dropped
    sink.close()
    frames, events, problems = _frames(log_dir, key_file)
    assert problems == []
    assert len(frames) == 200 - dropped
    assert sum(e["count"] for e in events if e.get("event") == "frames_dropped") == dropped


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
    while sink.health.storage_error is None and time.monotonic() < deadline:
        sink.write({"i": i, "pspi": 1.0, "state": "clear"})
        i += 1
        if i % 64 == 0:
            time.sleep(0.005)
    assert sink.health.storage_error is not None and "full" in sink.health.storage_error
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


def _mount_tmpfs(where: Path, size: str) -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a size-limited tmpfs (the injected and SQLITE_FULL variants cover non-root)"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True, check=False
    )
    return None if done.returncode == 0 else f"mount -t tmpfs failed here: {done.stderr.strip()}"


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
        while sink.health.storage_error is None and time.monotonic() < deadline:
            sink.write({"i": i, "state": "clear", "pad": "y" * 100})
            i += 1
            if i % 64 == 0:
                time.sleep(0.005)
        assert sink.health.storage_error is not None, "the 512k tmpfs never filled"
        sink.close(timeout=0.3)
        frames, _, problems = _frames(log_dir, key_file)
        assert problems == []
        reported = committed[0] - 1
        assert reported > 0 and frames[:reported] == list(range(reported))
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
