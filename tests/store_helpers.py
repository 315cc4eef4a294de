"""Shared helpers of the store tests (not collected: no test_ prefix)."""

from __future__ import annotations

from pathlib import Path

from edge_sdk.store import EncryptedLogSink, KeySource
from edge_sdk.store.db import LogDatabase
from edge_sdk.store.keys import read_key_file


def write_log(tmp_path: Path, n: int = 20, **options) -> tuple[Path, Path]:
    """A closed log with ``n`` frame records ``{"i": i, "pspi": ...}``; returns (log_dir, key_file)."""
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    options.setdefault("retention_days", None)
    sink = EncryptedLogSink.open(log_dir, KeySource(key_file=key_file), patient_id="MRN-0042", **options)
    for i in range(n):
        sink.write({"i": i, "pspi": float(i % 16), "faces": [{"box": [1.0, 2.0, 3.0, 4.0]}]})
    sink.close()
    return log_dir, key_file


def open_db(log_dir: Path, key_file: Path) -> LogDatabase:
    return LogDatabase.open(log_dir, read_key_file(key_file))
