"""Shared helpers of the store tests (not collected: no test_ prefix)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_sdk.pipeline.config import LogSettings
from edge_sdk.store import EncryptedLogSink, LogTuning
from edge_sdk.store.db import LogDatabase
from edge_sdk.store.keys import read_key_file
from edge_sdk.store.writer import DEFAULT_TUNING


def write_log(
    tmp_path: Path,
    n: int = 20,
    tuning: LogTuning = DEFAULT_TUNING,
    on_problem: Callable[[str], None] | None = None,
    **settings: Any,
) -> tuple[Path, Path]:
    """A closed log with ``n`` frame records ``{"i": i, "pspi": ...}``; returns (log_dir, key_file).

    ``settings`` are LogSettings fields (no retention purge unless given).
    """
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    settings.setdefault("retention_days", None)
    log = LogSettings(key_file=str(key_file), patient_id="MRN-0042", **settings)
    sink = EncryptedLogSink.open(log_dir, log, tuning, on_problem=on_problem)
    for i in range(n):
        sink.write({"i": i, "pspi": float(i % 16), "faces": [{"box": [1.0, 2.0, 3.0, 4.0]}]})
    sink.close()
    return log_dir, key_file


def open_db(log_dir: Path, key_file: Path) -> LogDatabase:
    return LogDatabase.open(log_dir, read_key_file(key_file))
