"""Pipeline benchmark: end-to-end FPS and per-stage milliseconds of ``edge-sdk run`` on a real video.

Runs the real runtime loop (:func:`edge_sdk.build_pipeline`: capture, detect, align, infer,
post, sink/log) with the fastest artifact of the model benchmark, every frame of the file processed
(file sources are never dropped). The first :data:`WARMUP_FRAMES` frames (detector and model warm-up)
are left out of the steady-state figures; the whole-run FPS is recorded too.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.backend import backend_class
from edge_sdk.bench.measure import BASELINE_VARIANT
from edge_sdk.errors import InputError
from edge_sdk.targets import get_target

WARMUP_FRAMES = 10
# Pipeline stage name -> how the benchmark labels it (the sink stage writes the result log).
STAGE_LABELS = {
    "decode": "decode",
    "detect": "detect",
    "align": "align",
    "infer": "infer",
    "post": "post",
    "sink": "log",
}


def check_video(video: Path) -> None:
    """Fail fast (before minutes of model timing) unless OpenCV decodes at least one frame of ``video``."""
    import cv2

    if not video.is_file():
        raise InputError(f"--pipeline {video}: no such video file")
    capture = cv2.VideoCapture(str(video))
    try:
        ok, frame = capture.read() if capture.isOpened() else (False, None)
    finally:
        capture.release()
    if not ok or frame is None:
        raise InputError(f"--pipeline {video}: the video has no frames that OpenCV can decode (empty or corrupt)")


def pick_row(result: dict[str, Any]) -> dict[str, Any]:
    """The artifact the pipeline runs: the fastest p50 among the target's artifacts at the most threads."""
    rows = [r for r in result["results"] if r["variant"] != BASELINE_VARIANT]
    if not rows:
        raise InputError("--pipeline: the model benchmark produced no artifact to run the pipeline with")
    most = max((r["threads"] or 0) for r in rows)
    candidates = [r for r in rows if (r["threads"] or 0) == most]
    return min(candidates, key=lambda r: r["latency_ms"]["p50"])


def _stage_stats(per_frame: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    stats: dict[str, dict[str, float]] = {}
    for stage, label in STAGE_LABELS.items():
        values = np.asarray([f.get(stage, 0.0) for f in per_frame], np.float64)
        if values.size:
            stats[label] = {
                "mean": float(values.mean()),
                "p50": float(np.percentile(values, 50)),
                "p90": float(np.percentile(values, 90)),
                "max": float(values.max()),
            }
    return stats


def run_pipeline_benchmark(
    result: dict[str, Any],
    video: Path,
    max_frames: int = 300,
    progress: Callable[[str], None] | None = None,
    detector_model: str | None = None,
    detect_interval: int = 1,
) -> dict[str, Any]:
    """Run the pipeline on ``video`` with the benchmark's fastest artifact; FPS and per-stage ms."""
    from edge_sdk.assembly import build_pipeline
    from edge_sdk.model.face_model import FaceModel, SyntheticWeightsWarning
    from edge_sdk.pipeline import RunConfig
    from edge_sdk.pipeline.config import DetectorSettings

    check_video(video)
    if max_frames <= WARMUP_FRAMES:
        raise InputError(f"--pipeline-frames: expected more than {WARMUP_FRAMES} frames, got {max_frames}")
    row = pick_row(result)
    target = get_target(result["target"]["name"])
    options = backend_class(row["backend"]).options_for(target, row["threads"], row["device"])
    say = progress or (lambda message: None)
    say(f"pipeline: {video.name}, up to {max_frames} frames, model {row['variant']} ({row['threads']} threads)")
    with warnings.catch_warnings():  # timing only: what a synthetic demo's numbers mean does not matter here
        warnings.simplefilter("ignore", SyntheticWeightsWarning)
        model = FaceModel(row["artifact"], backend=row["backend"], **options)
    frame_done: list[float] = []
    per_frame: list[dict[str, float]] = []
    faces: list[int] = []

    def collect(frame_result: Any) -> None:
        frame_done.append(time.perf_counter())
        # Keep the dict itself, not a copy: the pipeline adds the sink (log) time after this callback.
        per_frame.append(frame_result.latency_ms)
        faces.append(len(frame_result.faces))

    with tempfile.TemporaryDirectory(prefix="edge-sdk-bench-log-") as log_dir:
        config = RunConfig(
            model=row["artifact"],
            source=str(video),
            max_frames=max_frames,
            status_every_s=0,
            print_frames=False,
            log_dir=log_dir,
            detector=DetectorSettings(model=detector_model, interval=detect_interval),
        )
        pipeline, capture = build_pipeline(config, on_result=collect, model=model)
        summary = pipeline.run(capture)
    if summary.frames == 0:
        raise InputError(f"--pipeline {video}: the video has no frames that OpenCV can decode")
    steady = frame_done[WARMUP_FRAMES:]
    steady_fps = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 and steady[-1] > steady[0] else None
    return {
        "video": str(video),
        "frames": summary.frames,
        "warmup_frames": min(WARMUP_FRAMES, summary.frames),
        "faces": int(sum(faces)),
        "detection_rate": summary.detection_rate,
        "fps": steady_fps if steady_fps is not None else summary.fps,
        "fps_whole_run": summary.fps,
        "wall_s": summary.wall_s,
        "threads": row["threads"],
        "variant": row["variant"],
        "artifact": row["artifact"],
        "ran_on": row["ran_on"],
        "detector": pipeline.analyzer.detector.description,
        "detect_interval": detect_interval,
        "stages_ms": _stage_stats(per_frame[WARMUP_FRAMES:] or per_frame),
        "capture": summary.capture,
        "log_sink": "JSON-lines result log in a temporary folder (the pipeline's sink stage)",
    }
