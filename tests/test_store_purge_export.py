"""Retention, quota, purge checkpoints, export formats, summaries and the audit trail, through the CLI."""

from __future__ import annotations

import csv
import importlib.util
import json
import sqlite3
import time

import pytest

from edge_sdk.cli import main
from edge_sdk.pipeline.config import LogSettings
from edge_sdk.store import EncryptedLogSink, LogTuning
from edge_sdk.store.db import log_path
from edge_sdk.store.reader import read_records
from edge_sdk.store.verify import verify_log
from tests.store_helpers import open_db, write_log

DAY = 86400.0


def _cli(*args: str) -> int:
    return main(["log", *args])


def _audit_actions(log_dir, key_file) -> list[str]:
    db = open_db(log_dir, key_file)
    try:
        return [r.record["action"] for r in read_records(db, kinds=["audit"])]
    finally:
        db.close()


def test_retention_purges_old_rows_and_chain_still_verifies(tmp_path):
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    sink = EncryptedLogSink.open(
        log_dir,
        LogSettings(key_file=str(key_file), retention_days=30),
        LogTuning(maintenance_interval=0.2, flush_interval=0.01),
    )
    now = time.time()
    for i in range(50):
        sink.write({"i": i, "age": "old"}, timestamp=now - 40 * DAY + i)
    for i in range(50, 80):
        sink.write({"i": i, "age": "new"}, timestamp=now - 1 * DAY + i)
    assert sink.flush(5)
    deadline = time.monotonic() + 5
    while sink.writer_health().purged == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    sink.close()
    db = open_db(log_dir, key_file)
    report = verify_log(db)
    assert report.ok, report.problems
    assert report.checkpoints == 1 and report.purged_rows >= 50
    assert [r.record["i"] for r in read_records(db, kinds=["frame"])] == list(range(50, 80))
    db.close()
    assert "purge" in _audit_actions(log_dir, key_file)


def test_quota_purges_oldest_first_and_reports_it(tmp_path):
    problems: list[str] = []
    log_dir, key_file = write_log(
        tmp_path,
        n=3000,
        tuning=LogTuning(maintenance_interval=0.05, queue_limit=10_000, flush_interval=0.01),
        on_problem=problems.append,
        quota_bytes=256 * 1024,
    )
    db = open_db(log_dir, key_file)
    try:
        assert verify_log(db).ok
        frames = [r.record["i"] for r in read_records(db, kinds=["frame"])]
        assert db.used_bytes() <= 300 * 1024
    finally:
        db.close()
    assert any("quota" in p and "purged" in p for p in problems)
    assert frames == list(range(frames[0], 3000)) and frames[0] > 0


def test_cli_purge_then_verify_and_tampered_checkpoint(tmp_path, capsys):
    log_dir, key_file = write_log(tmp_path, n=40)
    assert _cli("purge", "--log-dir", str(log_dir), "--key-file", str(key_file), "--older-than", "2999-01-01") == 0
    assert _cli("verify", "--log-dir", str(log_dir), "--key-file", str(key_file)) == 0
    assert "verify: OK" in capsys.readouterr().out
    with sqlite3.connect(log_path(log_dir)) as conn:
        conn.execute("UPDATE checkpoints SET purged = purged - 1")
    assert _cli("verify", "--log-dir", str(log_dir), "--key-file", str(key_file)) == 1
    assert "purge checkpoint 1 (through row 42) was altered" in capsys.readouterr().out


def test_export_csv_jsonl_since_and_audit(tmp_path, capsys):
    log_dir, key_file = write_log(tmp_path, n=30)
    base = ["--log-dir", str(log_dir), "--key-file", str(key_file)]
    out_csv, out_jsonl = tmp_path / "x.csv", tmp_path / "x.jsonl"
    assert _cli("export", *base, "--format", "csv", "--kind", "frame", "--since", "1h", "--out", str(out_csv)) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert [int(r["i"]) for r in rows] == list(range(30)) and rows[0]["patient"].startswith("p_")
    assert out_csv.stat().st_mode & 0o777 == 0o600
    assert _cli("export", *base, "--format", "jsonl", "--out", str(out_jsonl)) == 0
    lines = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert {line["kind"] for line in lines} == {"frame", "event"}
    assert _cli("export", *base, "--format", "csv", "--since", "2999-01-01", "--out", str(out_csv)) == 0
    assert _cli("verify", *base) == 0
    capsys.readouterr()
    assert _audit_actions(log_dir, key_file) == ["export", "export", "export", "verify"]


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is not None, reason="pyarrow installed: parquet works")
def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, capsys):
    log_dir, key_file = write_log(tmp_path, n=3)
    out = tmp_path / "x.parquet"
    code = _cli(
        "export", "--log-dir", str(log_dir), "--key-file", str(key_file), "--format", "parquet", "--out", str(out)
    )
    assert code == 2 and "needs pyarrow" in capsys.readouterr().err and not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow is not installed (optional)")
def test_parquet_export(tmp_path):
    import pyarrow.parquet as pq

    log_dir, key_file = write_log(tmp_path, n=3)
    out = tmp_path / "x.parquet"
    assert (
        _cli(
            "export",
            "--log-dir",
            str(log_dir),
            "--key-file",
            str(key_file),
            "--format",
            "parquet",
            "--kind",
            "frame",
            "--out",
            str(out),
        )
        == 0
    )
    assert pq.read_table(out).column("i").to_pylist() == [0, 1, 2]


def test_summary_and_png_timeline(tmp_path, capsys):
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    sink = EncryptedLogSink.open(log_dir, LogSettings(key_file=str(key_file), retention_days=None))
    t0 = 3600 * (int(time.time()) // 3600) - 2 * 3600  # two whole hours ago
    for i in range(120):
        face = i % 4 != 0
        sink.write(
            {"frame": i, "faces": [{"box": [1, 2, 3, 4]}] if face else [], "pspi": (i % 8) if face else None},
            timestamp=t0 + i * 60,
        )
    sink.write({"event": "alert_raised", "score": 5.0}, kind="event", timestamp=t0 + 10)
    sink.write({"alert": "pain"}, kind="alert", timestamp=t0 + 3700)
    sink.close()
    png = tmp_path / "timeline.png"
    assert _cli("summary", "--log-dir", str(log_dir), "--key-file", str(key_file), "--plot", str(png)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["hour", "frames", "with_face", "pspi_mean", "pspi_max", "alerts"]
    first = out[1].split()
    assert first[2:] == ["60", "45", "3.87", "7.0", "1"]  # mean of i % 8 over the 45 face frames
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
