"""``edge-sdk run``: the bedside/kiosk loop (capture, detect, infer, score pain, log) until stopped.

Output: without ``--json``, stdout has the frame lines (``--print-frames``) and the final summary; stderr the
events (``[event] ...``, not with ``-q``), notices, status lines and warnings. With ``--json``, stdout is
JSON lines only: one object per event (``"kind": "event"``) and per frame with ``--print-frames``
(``"kind": "frame"``), the same records the result log keeps, and last the summary (``"kind": "summary"``).

Exit codes: 0 the run ended normally; 1 the monitor faulted (a model/detector fault or a log fault at any
time during the run) or it ended without a signal (``no_signal``: no camera, or the source gone or frozen at
the end), with one line on stderr saying why; 2 bad input (config, flags, model, source), ``error: ...``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from functools import partial
from typing import Any

from edge_sdk.assembly import build_pipeline
from edge_sdk.cli.flags import add_setting, flags_given
from edge_sdk.face.detect import DETECTOR_KINDS
from edge_sdk.face.select import FACE_POLICIES
from edge_sdk.pipeline.config import LOG_FORMATS, OPTIONS, RunConfig, load_config
from edge_sdk.pipeline.runner import RunSummary
from edge_sdk.pipeline.sinks import StdoutSink

EXIT_OK = 0
EXIT_FAULT = 1  # the monitor faulted or ended without a signal (exit 2, bad input, comes from edge_sdk.cli.main)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run flags; each settings flag's dest is its config key, so flags override the ``--config`` file."""
    setting = partial(add_setting, parser)
    setting(
        "--model",
        "model",
        help="'demo', a model artifact, an export folder (loads what `edge-sdk pick` chose, from its pick.json), "
        "or a pulled model name (default: demo)",
    )
    setting("--source", "source", help="0 | /dev/video0 | picamera2 | rtsp://... | file.mp4 | images/")
    parser.add_argument("--config", help="edge-sdk.toml with defaults (flags override it)")
    setting("--max-fps", "max_fps", type=float, help="cap processed frames/s to save power")
    setting("--max-frames", "max_frames", type=int, help="stop after N frames")
    setting("--faces", "faces", choices=FACE_POLICIES, help="largest face (default: the patient) or all")
    setting("--log-dir", "log_dir", help="keep the private result log here (encrypted; see `edge-sdk log`)")
    setting("--log-format", "log.format", choices=LOG_FORMATS, help="encrypted (default) or jsonl (bench tests only)")
    setting("--key-file", "log.key_file", help="log key ring (created 0600 on first use; default ~/.config/edge-sdk)")
    setting("--key-command", "log.key_command", help="command that prints the log key ring")
    setting("--patient-id", "log.patient_id", help="patient id, stored only as a keyed pseudonym")
    setting("--device-id", "log.device_id", help="device id, stored only as a keyed pseudonym")
    setting(
        "--detector", "detector.kind", choices=DETECTOR_KINDS, help="face detector (default auto: YuNet, else Haar)"
    )
    setting("--detector-model", "detector.model", help="path to a YuNet .onnx (e.g. yunet_s_640_640.onnx)")
    setting(
        "--detect-scale", "detector.scale", type=float, help="detect on the frame resized by this factor (default 0.5)"
    )
    setting(
        "--detect-every", "detector.interval", type=int, help="run the detector every N frames, reuse faces between"
    )
    setting("--backend", "backend", help="force an inference backend (onnxruntime, litert, openvino)")
    setting("--threads", "threads", type=int, help="inference threads")
    setting("--status-every", "status_every_s", type=float, help="seconds between status lines (0 = off; default 5)")
    setting("--print-frames", "print_frames", action="store_true", help="one stdout line (--json: object) per frame")
    display = parser.add_mutually_exclusive_group()
    add_setting(display, "--preview", "preview", action="store_true", help="overlay window for bench tests")
    add_setting(display, "--display-none", "preview", action="store_false", help="no window (the default)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="stdout as JSON lines: every event (and frame, with --print-frames), then the summary",
    )


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Defaults < the ``--config`` file < the flags given."""
    return load_config(args.config, flags_given(args, OPTIONS))


def output_sinks(config: RunConfig, as_json: bool, quiet: bool = False) -> list[StdoutSink]:
    """Where ``run`` shows records: JSON lines on stdout (``--json``), else readable event lines on stderr
    (none with ``-q``) and frame lines on stdout (``--print-frames``)."""
    if as_json:
        return [StdoutSink(sys.stdout, frames=config.print_frames, json_lines=True)]
    sinks = [] if quiet else [StdoutSink(sys.stderr)]
    if config.print_frames:
        sinks.append(StdoutSink(sys.stdout, frames=True, events=False))
    return sinks


def print_summary(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"kind": "summary", **summary.to_record()}, separators=(",", ":")))
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


def fault_line(summary: RunSummary) -> str | None:
    """Why this run must not pass as a normal one (exit 1), in one line; None when it may."""
    if summary.faults:
        kinds = "; ".join(f"{kind} fault: {problem}" for kind, problem in summary.faults.items())
        dropped = f"; {summary.log_rows_dropped} result row(s) not logged" if summary.log_rows_dropped else ""
        return f"the monitor faulted during this run (final state {summary.final_state}): {kinds}{dropped}"
    if summary.final_state == "no_signal":
        seen = "no frame from the source at all" if not summary.frames else "the source was lost or frozen at the end"
        return f"the run ended without a signal (no_signal): {seen}"
    return None


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    quiet = bool(getattr(args, "log_quiet", False))
    shown = output_sinks(config, args.json, quiet)
    pipeline, capture = build_pipeline(config, sinks=shown)
    for sink in shown:  # stdout's reader went away (`run --json | head -1`): stop, like a tool on SIGPIPE
        sink.on_reader_gone = partial(pipeline.stop, "stdout closed")

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
    reason = fault_line(summary)
    if reason is None:
        return EXIT_OK
    print(f"edge-sdk run: exit {EXIT_FAULT}: {reason}", file=sys.stderr, flush=True)
    return EXIT_FAULT
