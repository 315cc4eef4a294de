"""``edge-sdk log export`` of a real log written by ``edge-sdk run`` on a video with an alert-prone pain config:
``--kind alert`` finds the alert (stored as an ``event``), parquet of the whole log has typed columns, alerts
and frames share the wall clock (media time in its own column), ``--table faces`` is analyze's table."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.runtime_fixtures import face_file, yunet_path

# PSPI of the demo model on single_face.mp4 is ~1-3: an alert is raised half a second into the file.
ALERT_PRONE = (
    'model = "demo"\n[pain]\nthreshold = 1.0\nclear_threshold = 0.5\nraise_after_s = 0.5\nsmoothing = "none"\n'
)


def edge_sdk(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edge_sdk", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.fixture(scope="module")
def alert_log(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A log of one `edge-sdk run` over single_face.mp4 that raised an alert; the log flags to read it."""
    root = tmp_path_factory.mktemp("alert-log")
    config = root / "edge-sdk.toml"
    config.write_text(ALERT_PRONE)
    log = ["--log-dir", str(root / "log"), "--key-file", str(root / "key.json")]
    video = str(face_file("single_face.mp4"))
    run = edge_sdk("run", "--config", str(config), "--source", video, "--detector-model", str(yunet_path()), *log)
    assert run.returncode == 0, run.stderr
    return log


def export_csv(log: list[str], *args: str) -> list[dict[str, str]]:
    result = edge_sdk("log", "export", *log, "--format", "csv", *args)
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


def wall(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_kind_alert_returns_the_alert_on_the_frames_clock(alert_log: list[str]) -> None:
    alerts = export_csv(alert_log, "--kind", "alert")
    frames = export_csv(alert_log, "--kind", "frame")
    assert [a["event"] for a in alerts][:1] == ["alert_raised"] and all(a["event"].startswith("alert_") for a in alerts)
    assert len(frames) == 72 and {f["kind"] for f in frames} == {"frame"}
    raised = alerts[0]
    first, last = wall(frames[0]["time"]), wall(frames[-1]["time"])
    assert first <= wall(raised["time"]) <= last  # on the frames' wall clock, not ~22 minutes before them
    media = {round(float(f["media_time"]), 4): wall(f["time"]) for f in frames}
    assert float(raised["media_time"]) == pytest.approx(0.5, abs=0.05)
    assert abs(media[round(float(raised["media_time"]), 4)] - wall(raised["time"])) < 0.05  # its frame's time
    everything = export_csv(alert_log)
    assert {r["kind"] for r in everything} == {"frame", "event"} and len(everything) > len(frames) + len(alerts)


def test_parquet_of_the_whole_log_has_typed_columns(alert_log: list[str], tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (extra data) is not installed")
    out = tmp_path / "log.parquet"
    result = edge_sdk("log", "export", *alert_log, "--format", "parquet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    table = pq.read_table(out)
    types = {f.name: str(f.type) for f in table.schema}
    assert types["time"] == "timestamp[ms, tz=UTC]" and types["seq"] == types["frame"] == "int64"
    assert types["media_time"] == types["pspi"] == "double" and types["event"] == types["kind"] == "string"
    rows = table.to_pylist()
    assert any(r["event"] == "alert_raised" and r["media_time"] is not None for r in rows)
    assert sum(r["kind"] == "frame" for r in rows) == 72


def test_table_faces_is_the_analyze_table(alert_log: list[str], tmp_path: Path) -> None:
    faces = export_csv(alert_log, "--table", "faces")
    analyzed = tmp_path / "a.csv"
    video = str(face_file("single_face.mp4"))
    result = edge_sdk("analyze", video, "--out", str(analyzed), "--detector-model", str(yunet_path()), "--pain")
    assert result.returncode == 0, result.stderr
    with analyzed.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(faces[0]) == ["time", *rows[0]]  # the same columns, the wall-clock time first
    assert len(faces) == 72 and {f["face_id"] for f in faces} == {"0"} and {f["success"] for f in faces} == {"1"}
    assert faces[0]["file"].startswith("s_")
    assert [f["timestamp"] for f in faces] == [r["timestamp"] for r in rows]  # media seconds, as analyze's
    assert "alert" in {f["pain_state"] for f in faces} and all(f["AU04_r"] and f["pspi"] for f in faces)
    if importlib_has("pyarrow"):
        out = tmp_path / "faces.parquet"
        parquet = edge_sdk("log", "export", *alert_log, "--table", "faces", "--format", "parquet", "--out", str(out))
        assert parquet.returncode == 0, parquet.stderr
        import pyarrow.parquet as pq

        assert pq.read_table(out).num_rows == 72
    bad = edge_sdk("log", "export", *alert_log, "--table", "faces", "--format", "jsonl")
    assert bad.returncode == 2 and "use --format csv or parquet" in bad.stderr


def importlib_has(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
