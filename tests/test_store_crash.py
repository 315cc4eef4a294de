"""Crash safety with real processes: SIGKILL a writer at random moments; nothing it reported committed is lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_sdk.store.reader import read_records
from edge_sdk.store.verify import verify_log
from tests.store_helpers import open_db

WRITER = Path(__file__).with_name("store_crash_writer.py")
REPO = Path(__file__).resolve().parents[1]


def _one_trial(log_dir: Path, key_file: Path, trial: int, rng: random.Random) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(log_dir), str(key_file), str(trial)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    committed = [-1]
    ready = threading.Event()

    def read_stdout() -> None:
        for line in proc.stdout:
            if line.startswith("READY"):
                ready.set()
            elif line.startswith("C "):
                committed[0] = max(committed[0], int(line[2:]))

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    assert ready.wait(30), f"writer did not start: {proc.stderr.read() if proc.poll() is not None else ''}"
    time.sleep(rng.uniform(0.0, 0.4))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    reader.join(10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    return committed[0]


def _check(log_dir: Path, key_file: Path, reported: dict[int, int]) -> None:
    db = open_db(log_dir, key_file)  # opens after every kill
    try:
        report = verify_log(db)
        assert report.ok, report.problems
        present: dict[int, set[int]] = {}
        for r in read_records(db, kinds=["frame"]):
            present.setdefault(int(r.record["trial"]), set()).add(int(r.record["i"]))
    finally:
        db.close()
    for trial, last in reported.items():
        missing = set(range(last + 1)) - present.get(trial, set())
        assert not missing, f"trial {trial}: {len(missing)} reported-committed records lost, e.g. {sorted(missing)[:5]}"


def _run_trials(tmp_path: Path, trials: int, seed: int, check_every: int = 1) -> dict[str, object]:
    """``trials`` kills on one growing log; the whole log is verified after every ``check_every``-th kill
    and after the last one (verification reads every row, so checking after each kill is quadratic)."""
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    rng = random.Random(seed)
    reported: dict[int, int] = {}
    for trial in range(trials):
        reported[trial] = _one_trial(log_dir, key_file, trial, rng)
        if (trial + 1) % check_every == 0:
            _check(log_dir, key_file, reported)
    _check(log_dir, key_file, reported)
    summary = {
        "trials": trials,
        "seed": seed,
        "reported_committed": sum(v + 1 for v in reported.values()),
        "trials_with_commits": sum(v >= 0 for v in reported.values()),
    }
    print(json.dumps(summary))
    return summary


def test_sigkill_writer_20_trials(tmp_path):
    summary = _run_trials(tmp_path, trials=20, seed=20240501)
    assert summary["trials_with_commits"] >= 10  # the kills really land while commits are happening


@pytest.mark.soak
def test_sigkill_writer_100_trials(tmp_path):
    # every committed row of every earlier trial is re-checked at each verification, so a later
    # recovery that dropped them would still be caught
    _run_trials(tmp_path, trials=100, seed=int(time.time()), check_every=10)
