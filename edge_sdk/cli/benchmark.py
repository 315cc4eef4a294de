"""``benchmark`` / ``edge-sdk benchmark``: time a target's artifacts here, print a table, write JSON/PNG."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edge_sdk.bench.artifacts import VARIANT_ORDER
from edge_sdk.bench.measure import DEFAULT_BLOCK
from edge_sdk.cli.flags import add_setting, settings_from_args
from edge_sdk.errors import InputError
from edge_sdk.targets import TARGETS


def _csv(kind: type, flag: str):  # -> argparse type function
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{flag}: expected a comma-separated list")
        try:
            return tuple(kind(t) for t in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: expected a comma-separated list of {kind.__name__}") from None

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark flags; a flag's dest is the ``BenchConfig`` field it sets (``--model`` -> ``models``)."""
    parser.add_argument("--target", required=True, choices=list(TARGETS), help="which target's artifacts to run")
    add_setting(
        parser,
        "--model",
        "models",
        action="append",
        help="an artifact file or an `edge-sdk export` output folder; repeat to compare exports (e.g. unpruned "
        "and --prune 0.3) side by side (default: the packaged FP32 demo model)",
    )
    add_setting(
        parser,
        "--precision",
        "precisions",
        type=_csv(str, "--precision"),
        help=f"variants to run, comma-separated from {','.join(VARIANT_ORDER)} (default: all found)",
    )
    parser.add_argument("--threads", type=_csv(int, "--threads"), help="thread counts, e.g. 1,2,4 (default: 1,cores)")
    add_setting(
        parser,
        "--device",
        "devices",
        type=_csv(str, "--device"),
        help="OpenVINO devices, e.g. CPU,GPU (default: all available)",
    )
    parser.add_argument("--runs", type=int, default=500, help="timed runs per row (default 500)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed warm-up runs per row (default 50)")
    parser.add_argument("--block", type=int, default=DEFAULT_BLOCK, help=argparse.SUPPRESS)
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also time the FP32 ONNX on plain ONNX Runtime (default SessionOptions), interleaved",
    )
    parser.add_argument("--baseline-model", help="the FP32 .onnx for --baseline (default: the FP32 ONNX found)")
    parser.add_argument("--pipeline", metavar="VIDEO", help="also time the full pipeline on this video")
    parser.add_argument("--pipeline-frames", type=int, default=300, help="frames of VIDEO to run (default 300)")
    parser.add_argument("--detector-model", help="YuNet .onnx for --pipeline (default: `edge-sdk models pull yunet`)")
    parser.add_argument(
        "--detect-interval", type=int, default=1, help="--pipeline: run the detector every N frames (default 1)"
    )
    parser.add_argument("--json", metavar="OUT.json", help="write every figure and the machine info here")
    parser.add_argument("--plot", metavar="OUT.png", help="write a latency bar chart here (needs matplotlib)")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress or notice lines on stderr (warnings and errors only)"
    )


def run(args: argparse.Namespace) -> int:
    from edge_sdk.bench.report import format_result
    from edge_sdk.bench.run import BenchConfig, run_benchmark

    if args.json and not args.json.endswith(".json"):
        raise InputError(f"--json {args.json}: expected a .json file name")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise InputError(f"--plot {args.plot}: expected a .png file name")
    if args.plot:
        from edge_sdk.bench.plot import _pyplot

        _pyplot()  # fail before minutes of timing if matplotlib is missing
    if args.pipeline:
        from edge_sdk.bench.pipeline import check_video

        check_video(Path(args.pipeline))
    config = settings_from_args(BenchConfig, args, models=tuple(args.models) if args.models else None)
    if args.quiet:  # the pipeline's own notices too (the CLI puts the level back after the command)
        logging.getLogger("edge_sdk").setLevel(logging.WARNING)
    progress = None if args.quiet else (lambda message: print(f"[benchmark] {message}", file=sys.stderr, flush=True))
    result = run_benchmark(config, progress)
    if args.pipeline:
        from edge_sdk.bench.pipeline import run_pipeline_benchmark

        result["pipeline"] = run_pipeline_benchmark(
            result, Path(args.pipeline), args.pipeline_frames, progress, args.detector_model, args.detect_interval
        )
    print(format_result(result))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
        if not args.quiet:
            print(f"wrote {path}", file=sys.stderr)
    if args.plot:
        from edge_sdk.bench.plot import plot_latency

        written = plot_latency([result], args.plot)
        if not args.quiet:
            print(f"wrote {written}", file=sys.stderr)
    return 0
