"""`edge-sdk run` and `edge-sdk predict` as real subprocesses on real files (incl. SIGTERM mid-run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from edge_sdk.face.detect import haar_cascade_path
from edge_sdk.model.face_model import SYNTHETIC_NOTICE
from edge_sdk.pipeline import PAIN_UNAVAILABLE
from tests.runtime_fixtures import face_file, pain_model, tiny_model, yunet_path

REPO = Path(__file__).resolve().parents[1]


def edge_sdk(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_sdk", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=None if env is None else {**os.environ, **env},
    )


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_sdk", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def sigterm_when(proc: subprocess.Popen[str], ready: Callable[[], bool], then_s: float) -> tuple[str, str]:
    """Wait (up to 60 s) until ``ready()``, ``then_s`` more seconds, then SIGTERM; stdout and stderr."""
    try:
        deadline = time.monotonic() + 60
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(then_s)
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def run_args(source: Path, *extra: str) -> list[str]:
    return ["run", "--model", pain_model(), "--source", str(source), "--detector-model", str(yunet_path()), *extra]


def read_private_log(log_dir: Path, key_file: Path) -> list[dict]:
    """Every record of the encrypted log, decrypted with the key ring (kind and record fields merged)."""
    from edge_sdk.store.db import LogDatabase
    from edge_sdk.store.keys import read_key_file
    from edge_sdk.store.reader import read_records

    db = LogDatabase.open(log_dir, read_key_file(key_file))
    try:
        return [{"kind": r.kind, **r.record} for r in read_records(db)]
    finally:
        db.close()


def test_run_on_a_video_reports_every_frame_and_stage_timings(tmp_path: Path) -> None:
    log_args = ("--log-dir", str(tmp_path / "log"), "--log-format", "jsonl")
    result = edge_sdk(*run_args(face_file("single_face.mp4"), "--json", *log_args))
    assert result.returncode == 0, result.stderr
    *events, summary = [json.loads(line) for line in result.stdout.splitlines()]  # --json: JSON lines only
    assert summary["kind"] == "summary" and {e["kind"] for e in events} == {"event"}
    assert summary["frames"] == 72 and summary["stopped_by"] == "end of source"
    assert summary["detection_rate"] >= 0.95
    assert set(summary["stage_ms"]) == {"decode", "detect", "align", "infer", "post", "sink"}
    assert result.stderr.count(SYNTHETIC_NOTICE) == 1


def test_sigterm_mid_run_exits_0_with_every_result_flushed_to_the_private_log(tmp_path: Path) -> None:
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    proc = start(
        *run_args(face_file("single_face.mp4"), "--max-fps", "10", "--log-dir", str(log_dir)),
        "--key-file",
        str(key_file),
        "--patient-id",
        "MRN-0042",
    )
    # once the log is open, ~15 frames at 10 frames/s (the clip has 72)
    stdout, stderr = sigterm_when(proc, (log_dir / "results.db").exists, 1.5)
    assert proc.returncode == 0, stderr
    assert "encrypted" in stderr
    records = read_private_log(log_dir, key_file)
    frames = [r for r in records if r["kind"] == "frame"]
    stopped = next(r for r in reversed(records) if r.get("event") == "run_stopped")
    assert stopped["event"] == "run_stopped" and stopped["stopped_by"] == "SIGTERM"
    assert 5 <= len(frames) < 72
    assert stopped["frames"] == len(frames)  # every processed frame reached the log
    assert [r["frame"] for r in frames] == list(range(len(frames)))
    assert "SIGTERM" in stdout
    raw = (log_dir / "results.db").read_bytes()
    assert b"MRN-0042" not in raw and b"pspi" not in raw  # ids pseudonymous, payloads sealed
    verify = edge_sdk("log", "verify", "--log-dir", str(log_dir), "--key-file", str(key_file))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_run_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "edge-sdk.toml"
    bad.write_text("[pain]\nthreshhold = 4\n")
    result = edge_sdk("run", "--config", str(bad), "--source", str(face_file("single_face.mp4")))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and "pain.threshhold" in result.stderr
    result = edge_sdk("run", "--model", pain_model())
    assert result.returncode == 2 and "no source" in result.stderr


def test_predict_prints_every_head_for_the_largest_face() -> None:
    result = edge_sdk(
        "predict", "--model", pain_model(), "--detector-model", str(yunet_path()), str(face_file("single_face.jpg"))
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "1 face(s)" in out
    for head in ("au_occurrence", "au_intensity", "expression", "valence_arousal", "PSPI"):
        assert head in out
    assert result.stderr.count(SYNTHETIC_NOTICE) == 1


def test_predict_all_faces_as_json() -> None:
    images = [str(face_file("multi_face.jpg")), str(face_file("single_face.jpg"))]
    result = edge_sdk(
        "predict", "--model", pain_model(), "--detector-model", str(yunet_path()), "--faces", "all", "--json", *images
    )
    assert result.returncode == 0, result.stderr
    reports = json.loads(result.stdout)
    assert [len(r["faces"]) for r in reports] == [5, 1]
    face = reports[0]["faces"][0]
    assert {"box", "score", "crop", "expression", "valence_arousal", "pspi"} <= set(face)
    assert 0.0 <= face["pspi"] <= 16.0


def test_predict_without_au_heads_says_pain_is_not_available() -> None:
    result = edge_sdk(
        "predict",
        "--model",
        str(tiny_model(False)),
        "--detector-model",
        str(yunet_path()),
        "--json",
        str(face_file("single_face.jpg")),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(PAIN_UNAVAILABLE) == 1
    assert json.loads(result.stdout)[0]["faces"][0]["pspi"] is None


def test_predict_bad_image_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"nope")
    result = edge_sdk("predict", "--model", pain_model(), str(bad))
    assert result.returncode == 2 and "not an image" in result.stderr


def test_without_any_face_detector_predict_falls_back_loudly_and_run_refuses(tmp_path: Path) -> None:
    empty_cache = {"EDGE_SDK_HOME": str(tmp_path / "cache")}  # no pulled YuNet; OpenCV 5 has no Haar cascades
    image = str(face_file("single_face.jpg"))
    result = edge_sdk("predict", "--model", pain_model(), "--json", image, env=empty_cache)
    assert result.returncode == 0, result.stderr
    if haar_cascade_path() is not None:  # OpenCV 4.x: the Haar cascade is the fallback
        assert json.loads(result.stdout)[0]["detector"] == "haar"
        return
    assert "no face detector available" in result.stderr and "whole image" in result.stderr
    assert json.loads(result.stdout)[0]["faces"][0]["crop"] == "box"
    result = edge_sdk("run", "--model", pain_model(), "--source", str(face_file("single_face.mp4")), env=empty_cache)
    assert result.returncode == 2 and "models pull yunet" in result.stderr


def test_a_damaged_model_makes_run_report_fault_never_clear_and_exit_1(tmp_path: Path) -> None:
    from tests.test_model_faults import flipped_demo

    damaged = flipped_demo(tmp_path)
    args = run_args(face_file("WolfgangLanger_Pexels.mp4"), "--max-frames", "120", "--print-frames")
    args[args.index("--model") + 1] = str(damaged)
    log_dir, key_file = tmp_path / "log", tmp_path / "key.json"
    result = edge_sdk(*args, "--log-dir", str(log_dir), "--key-file", str(key_file), timeout=180)
    assert result.returncode == 1, result.stderr
    records = read_private_log(log_dir, key_file)  # the private log holds no score, never a 0.0
    frames_logged = [r for r in records if r["kind"] == "frame"]
    assert len(frames_logged) == 120 and all(r["pain_score"] is None and r["pspi"] is None for r in frames_logged)
    assert [r["event"] for r in records if r.get("event") in ("model_fault", "log_fault")] == ["model_fault"]
    frames = [line for line in result.stdout.splitlines() if line.startswith("frame ")]
    assert len(frames) == 120 and not any("state=clear" in line for line in frames)
    assert "state=fault" in frames[-1] and "pspi=" not in frames[-1]
    assert "final state fault" in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edge-sdk run: exit 1: the monitor faulted") and "model fault: bad model output" in last
    assert "Traceback" not in result.stderr


def test_run_without_a_camera_ends_in_no_signal_exits_1_and_never_shows_the_password(tmp_path: Path) -> None:
    url = "rtsp://nurse:s3cret@127.0.0.1:9/bed12"  # nothing listens on port 9: the stream never opens
    log_dir = tmp_path / "log"
    args = run_args(Path("placeholder"), "--log-dir", str(log_dir), "--log-format", "jsonl", "--status-every", "1")
    args[args.index("--source") + 1] = url
    proc = start(*args)

    def logged() -> str:
        return "".join(p.read_text() for p in log_dir.glob("*.jsonl"))

    stdout, stderr = sigterm_when(proc, lambda: "source_lost" in logged(), 1.5)  # and a status line meanwhile
    assert proc.returncode == 1, stderr
    assert "final state no_signal" in stdout
    assert stderr.strip().splitlines()[-1] == (
        "edge-sdk run: exit 1: the run ended without a signal (no_signal): no frame from the source at all"
    )
    assert "s3cret" not in stdout + stderr + logged()
    assert "rtsp://***@127.0.0.1:9/bed12" in logged() and "rtsp://***@127.0.0.1:9/bed12" in stderr
