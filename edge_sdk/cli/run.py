"""``edge-sdk run``: the bedside/kiosk loop (capture, detect, infer, score pain, log) until stopped."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from edge_sdk.assembly import build_pipeline
from edge_sdk.face.detect import DETECTOR_KINDS
from edge_sdk.face.select import FACE_POLICIES
from edge_sdk.pipeline.config import LOG_FORMATS, build_config, load_toml
from edge_sdk.pipeline.runner import RunSummary

# argparse dest -> config key (flags override the --config file).
FLAG_KEYS = {
    "model": "model",
    "backend": "backend",
    "threads": "threads",
    "source": "source",
    "max_fps": "max_fps",
    "max_frames": "max_frames",
    "faces": "faces",
    "log_dir": "log_dir",
    "status_every": "status_every_s",
    "preview": "preview",
    "print_frames": "print_frames",
    "detector": "detector.kind",
    "detector_model": "detector.model",
    "detect_scale": "detector.scale",
    "detect_every": "detector.interval",
    "log_format": "log.format",
    "key_file": "log.key_file",
    "key_command": "log.key_command",
    "patient_id": "log.patient_id",
    "device_id": "log.device_id",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="'demo', a model artifact, or a pulled model name (default: demo)")
    parser.add_argument("--source", help="0 | /dev/video0 | picamera2 | rtsp://... | file.mp4 | images/")
    parser.add_argument("--config", help="edge-sdk.toml with defaults (flags override it)")
    parser.add_argument("--max-fps", type=float, help="cap processed frames/s to save power")
    parser.add_argument("--max-frames", type=int, help="stop after N frames")
    parser.add_argument("--faces", choices=FACE_POLICIES, help="largest face (default: the patient) or all")
    parser.add_argument("--log-dir", help="keep the private result log here (encrypted; see `edge-sdk log`)")
    parser.add_argument("--log-format", choices=LOG_FORMATS, help="encrypted (default) or jsonl (bench tests only)")
    parser.add_argument("--key-file", help="log key ring (created 0600 on first use; default ~/.config/edge-sdk)")
    parser.add_argument("--key-command", help="command that prints the log key ring")
    parser.add_argument("--patient-id", help="patient id, stored only as a keyed pseudonym")
    parser.add_argument("--device-id", help="device id, stored only as a keyed pseudonym")
    parser.add_argument("--detector", choices=DETECTOR_KINDS, help="face detector (default auto: YuNet, else Haar)")
    parser.add_argument("--detector-model", help="path to a YuNet .onnx (e.g. yunet_s_640_640.onnx)")
    parser.add_argument("--detect-scale", type=float, help="detect on the frame resized by this factor (default 0.5)")
    parser.add_argument("--detect-every", type=int, help="run the detector every N frames, reuse faces between")
    parser.add_argument("--backend", help="force an inference backend (onnxruntime, litert, openvino)")
    parser.add_argument("--threads", type=int, help="inference threads")
    parser.add_argument("--status-every", type=float, help="seconds between status lines (0 = off; default 5)")
    parser.add_argument("--print-frames", action="store_true", default=None, help="one stdout line per frame")
    display = parser.add_mutually_exclusive_group()
    display.add_argument("--preview", action="store_true", default=None, help="overlay window for bench tests")
    display.add_argument("--display-none", action="store_true", help="no window (the default)")
    parser.add_argument("--json", action="store_true", help="print the final summary as JSON")


def config_from_args(args: argparse.Namespace) -> Any:
    file_values = load_toml(args.config) if args.config else {}
    overrides = {key: getattr(args, dest, None) for dest, key in FLAG_KEYS.items()}
    if args.display_none:
        overrides["preview"] = False
    return build_config(file_values, overrides)


def print_summary(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.to_record(), indent=2))
        return
    stages = "  ".join(f"{k} {v:.2f}" for k, v in summary.stage_ms.items())
    cap = summary.capture
    print(
        f"processed {summary.frames} frames in {summary.wall_s:.2f} s = {summary.fps:.1f} frames/s "
        f"({summary.stopped_by})\n"
        f"faces found in {summary.frames_with_face}/{summary.frames} frames ({summary.detection_rate:.1%}), "
        f"{summary.faces} faces in all\n"
        f"per-stage ms (mean per frame): {stages}\n"
        f"capture: dropped {cap.get('dropped', 0)}, bad {cap.get('bad_frames', 0)}, "
        f"reconnects {cap.get('reconnects', 0)}, gaps {cap.get('gap_s', 0)} s\n"
        f"pain: final state {summary.final_state}, alerts raised {summary.alerts_raised}"
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    pipeline, capture = build_pipeline(config)

    def on_signal(signum: int, _frame: Any) -> None:
        pipeline.stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = pipeline.run(capture)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print_summary(summary, args.json)
    sys.stdout.flush()
    return 0
