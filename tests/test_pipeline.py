"""The pipeline on real video and images: results, sinks, no-face, no-AU models, config, watchdog."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest

from edge_sdk import build_pipeline
from edge_sdk.capture import OpenCVSource
from edge_sdk.errors import InputError
from edge_sdk.model.face_model import FaceModel
from edge_sdk.pipeline import (
    PAIN_UNAVAILABLE,
    STAGES,
    FrameResult,
    JsonLinesSink,
    PainState,
    build_config,
    load_toml,
)
from tests.runtime_fixtures import face_file, pain_model, tiny_model, yunet_path
from tests.test_capture import FakeCamera, two_colour_bgr


def config(source: Path | str, **overrides: object):
    values = {"source": str(source), "detector.model": str(yunet_path()), "status_every_s": 0, "log.format": "jsonl"}
    values.update(overrides)
    return build_config({}, values)


def run(cfg, sinks=(), model=None, source=None):
    results: list[FrameResult] = []
    log = io.StringIO()
    pipeline, capture = build_pipeline(cfg, sinks=sinks, on_result=results.append, log=log, model=model, source=source)
    summary = pipeline.run(capture)
    return summary, results, log.getvalue()


def read_jsonl(folder: Path) -> list[dict]:
    (path,) = folder.glob("*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_video_run_processes_every_frame_and_logs_json_records(tmp_path: Path) -> None:
    cfg = config(face_file("single_face.mp4"), model=pain_model(), log_dir=str(tmp_path))
    summary, results, log = run(cfg)
    assert summary.frames == len(results) == 72
    assert summary.detection_rate >= 0.95
    assert set(summary.stage_ms) == set(STAGES) and summary.stage_ms["detect"] > 0
    assert "face detector: yunet" in log
    first = next(r for r in results if r.faces)
    face = first.faces[0]
    assert face.crop == "aligned" and face.pspi is not None and 0 <= face.pspi <= 16
    assert set(face.expression) >= {"neutral", "happy"} and set(face.valence_arousal) == {"valence", "arousal"}
    assert face.au_intensities is not None and face.au_probabilities is not None
    assert abs(sum(face.expression.values()) - 1.0) < 1e-2
    records = read_jsonl(tmp_path)
    frames = [r for r in records if r["kind"] == "frame"]
    events = [r["event"] for r in records if r["kind"] == "event"]
    assert len(frames) == 72 and events[0] == "run_started" and events[-1] == "run_stopped"
    assert set(frames[10]["latency_ms"]) == set(STAGES) - {"sink"}  # a record cannot hold its own write time
    assert set(results[10].latency_ms) == set(STAGES)
    assert frames[10]["faces"][0]["box"] and frames[10]["pspi"] is not None
    # records are numbers and labels only: nothing array-like (no pixels) anywhere
    assert "[[" not in json.dumps(frames[10]["faces"][0].get("expression"))


def test_no_face_video_gives_the_no_face_state_and_no_pain_values(tmp_path: Path) -> None:
    cfg = config(face_file("no_face.mp4"), model=pain_model(), log_dir=str(tmp_path), max_frames=60)
    summary, results, _ = run(cfg)
    assert summary.frames == 60 and summary.frames_with_face == 0
    assert all(r.pain.pspi is None and r.pain.score is None for r in results)
    assert results[-1].pain.state is PainState.NO_FACE
    events = [r for r in read_jsonl(tmp_path) if r["kind"] == "event"]
    assert [e["event"] for e in events if e["event"] == "face_lost"] == ["face_lost"]


def test_model_without_au_heads_has_no_pspi_and_says_so_once(tmp_path: Path) -> None:
    cfg = config(face_file("single_face.mp4"), model=str(tiny_model(False)), max_frames=10)
    summary, results, log = run(cfg)
    assert log.count(PAIN_UNAVAILABLE) == 1
    assert all(r.pain.state is PainState.UNAVAILABLE and r.pain.pspi is None for r in results)
    assert all(f.pspi is None and f.au_intensities is None for r in results for f in r.faces)
    assert results[0].faces[0].expression is not None


def test_all_faces_policy_on_multi_face_image_folder(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "multi_face.jpg").symlink_to(face_file("multi_face.jpg"))
    (folder / "single_face.jpg").symlink_to(face_file("single_face.jpg"))
    _, results, _ = run(config(folder, model=pain_model(), faces="all", **{"detector.scale": 1.0}))
    assert [len(r.faces) for r in results] == [5, 1]
    areas = [f.face.area for f in results[0].faces]
    assert areas == sorted(areas, reverse=True)  # largest first: faces[0] drives pain
    _, results, _ = run(config(folder, model=pain_model(), **{"detector.scale": 1.0}))
    assert [len(r.faces) for r in results] == [1, 1]


def test_camera_gap_is_an_event_and_the_run_continues(tmp_path: Path) -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    camera = FakeCamera([image] * 3 + ["unplug"] + [image] * 3 + ["empty"] + [image] * 2, fail_opens=1)
    cfg = config("0", model=pain_model(), log_dir=str(tmp_path), **{"capture.reconnect_initial_s": 0.01})
    log = io.StringIO()
    pipeline, capture = build_pipeline(cfg, log=log, source=OpenCVSource("0", opener=camera.opener))
    camera.on_exhausted = pipeline.stop
    summary = pipeline.run(capture)
    log = log.getvalue()
    assert summary.capture["reconnects"] == 1 and summary.capture["bad_frames"] == 1
    assert summary.capture["frames_read"] == 8 and 1 <= summary.frames <= 8  # live: older frames may be dropped
    assert "source lost" in log and "source restored" in log
    events = [r["event"] for r in read_jsonl(tmp_path) if r["kind"] == "event"]
    assert events.index("source_lost") < events.index("source_restored")


def test_watchdog_reports_a_stuck_backend(tmp_path: Path) -> None:
    model = FaceModel(pain_model())
    real_run = model.backend.run
    calls = {"n": 0}

    def sometimes_stuck(batch: np.ndarray):
        calls["n"] += 1
        if calls["n"] == 2:
            time.sleep(0.6)  # the hardware/runtime hangs once
        return real_run(batch)

    model.backend.run = sometimes_stuck  # type: ignore[method-assign]
    cfg = config(face_file("single_face.mp4"), log_dir=str(tmp_path), max_frames=4, watchdog_s=0.2)
    _, _, log = run(cfg, model=model)
    assert "watchdog" in log
    events = [r for r in read_jsonl(tmp_path) if r["kind"] == "event"]
    kinds = [e["event"] for e in events]
    assert kinds.index("pipeline_stalled") < kinds.index("pipeline_recovered")


def test_json_lines_sink_matches_the_store_interface(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path / "log.jsonl")
    sink.write({"event": "x", "value": 1}, kind="event", timestamp=1.5)
    sink.write({"frame": 0, "timestamp": 2.0})
    sink.flush()
    sink.close()
    sink.close()
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines == [
        {"kind": "event", "timestamp": 1.5, "event": "x", "value": 1},
        {"kind": "frame", "timestamp": 2.0, "frame": 0},
    ]


# ---- configuration -----------------------------------------------------------------------------------
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge-sdk.toml"
    path.write_text(text)
    return path


def test_config_file_values_and_flag_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'model = "demo"\nmax_fps = 10\n[pain]\nthreshold = 5\nwindow_s = 3.0\n[detector]\ninterval = 2\n'
    )
    cfg = build_config(load_toml(path), {"max_fps": 15.0, "faces": None})
    assert cfg.max_fps == 15.0 and cfg.faces == "largest"
    assert cfg.pain.threshold == 5 and cfg.pain.window_s == 3.0 and cfg.detector.interval == 2


def test_run_flags_override_only_the_keys_they_name(tmp_path: Path) -> None:
    import argparse

    from edge_sdk.cli.run import add_arguments, config_from_args

    path = write(tmp_path, "preview = true\nmax_fps = 3\n[detector]\nscale = 0.7\ninterval = 2\n[log]\nquota_mb = 1.5")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--config", str(path), "--display-none", "--detect-scale", "0.2"]))
    assert (cfg.preview, cfg.max_fps, cfg.detector.scale, cfg.detector.interval) == (False, 3, 0.2, 2)
    assert cfg.log.quota_bytes == 1_572_864  # the file's quota_mb is MiB; LogSettings holds bytes
    assert build_config().log.quota_bytes == 512 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_fsp = 10\n", "unknown key 'max_fsp'"),
        ("[pain]\ntreshold = 4\n", "unknown key 'pain.treshold'"),
        ("[alerts]\nx = 1\n", "unknown section [alerts]"),
        ("max_fps = -3\n", "key 'max_fps' = -3: must be > 0"),
        ('faces = "everyone"\n', "key 'faces'"),
        ('[pain]\nthreshold = "high"\n', "key 'pain.threshold'"),
        ("[detector]\nscale = 2.0\n", "key 'detector.scale'"),
        ("preview = 1\n", "key 'preview'"),
        ("max_fps = \n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_toml(write(tmp_path, text))


def test_inconsistent_thresholds_are_rejected() -> None:
    with pytest.raises(InputError, match="clear_threshold"):
        build_config({"pain.threshold": 2.0, "pain.clear_threshold": 3.0})


def test_picture_is_never_in_a_record() -> None:
    cfg = config(face_file("single_face.mp4"), model=pain_model(), max_frames=1)
    _, results, _ = run(cfg)
    record = results[0].to_record()
    assert json.loads(json.dumps(record)) == record  # plain JSON types only
    assert two_colour_bgr().size > 0  # (the fake camera helper stays importable)


def test_preview_without_gui_support_says_so_clearly() -> None:
    import cv2

    from edge_sdk.pipeline.preview import PreviewWindow, draw_overlay

    cfg = config(face_file("single_face.mp4"), model=pain_model(), max_frames=1)
    _, results, _ = run(cfg)
    image = np.zeros((360, 640, 3), np.uint8)
    drawn = draw_overlay(image, results[0])
    assert drawn.shape == image.shape and drawn.any() and not image.any()  # drawn on a copy, never saved
    try:
        window = PreviewWindow()
    except InputError as exc:
        assert "opencv-python-headless" in str(exc)
    else:  # an OpenCV with a GUI backend (bench machine)
        window.close()
        assert cv2.getBuildInformation()
