"""``edge-sdk analyze --ray``: the same work units on a local Ray cluster (two model actors, Ray Data
``map_batches`` with an ``ActorPoolStrategy``) give exactly the rows of the single-process run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.runtime_fixtures import face_file, yunet_path

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is not installed (extra 'ray': pip install 'edge-sdk[ray]')"
)


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edge_sdk", "analyze", "--detector-model", str(yunet_path()), "--no-progress"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=150, cwd=REPO)


def test_ray_two_actors_give_the_single_process_rows(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (extra data) is not installed")
    video = str(face_file("single_face.mp4"))  # 72 frames -> 3 work units of 24 frames, spread over 2 actors
    local, ray = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    one = analyze(video, "--chunk", "24", "--out", str(local))
    assert one.returncode == 0, one.stderr
    two = analyze(video, "--chunk", "24", "--out", str(ray), "--ray", "local", "--workers", "2")
    assert two.returncode == 0, two.stderr[-3000:]
    assert "Ray local, 2 actor(s) in 2 process(es)" in two.stderr and two.stdout == ""
    expected, got = pq.read_table(local), pq.read_table(ray)
    assert got.num_rows == expected.num_rows == 72
    assert got.equals(expected), "the Ray run's table differs from the single-process run's"
