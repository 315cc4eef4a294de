"""``edge-sdk pick --model EXPORT_DIR``: time an export's artifacts on this device and record the fastest.

Candidates are the artifacts that passed their gates (``report.json``) and can run here, plus the FP32
file(s) on the same runtimes; the choice is never slower than FP32 (see :mod:`edge_sdk.bench.pick`). It is
printed as a table with the reason and written to ``EXPORT_DIR/pick.json``, which ``edge-sdk run --model
EXPORT_DIR`` and ``predict --model EXPORT_DIR`` load.

Exit codes: 0 a choice was made (FP32 when no artifact passed or INT8 does not pay here); 1 nothing could be
chosen (no artifact passed and no FP32 file), with the reason on stderr; 2 bad input, ``error: ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edge_sdk.bench.measure import DEFAULT_BLOCK
from edge_sdk.bench.pick import (
    DEFAULT_MIN_GAIN,
    DEFAULT_RUNS,
    DEFAULT_WARMUP,
    PickConfig,
    format_pick,
    run_pick,
    write_pick,
)
from edge_sdk.errors import InputError
from edge_sdk.targets import TARGETS

EXIT_OK = 0
EXIT_NO_CHOICE = 1


def _targets(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in TARGETS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"--target {text}: expected one or more of {', '.join(TARGETS)}, comma-separated"
        )
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The pick flags."""
    parser.add_argument("--model", required=True, metavar="EXPORT_DIR", help="an `edge-sdk export` output folder")
    parser.add_argument(
        "--target",
        type=_targets,
        help="only these targets' artifacts, e.g. cpu or cpu,openvino; jetson (the TensorRT file) is timed only "
        "when named here (default: cpu and the folder's other targets whose runtime is installed)",
    )
    parser.add_argument("--threads", type=int, help="inference threads (default: the runtime's, as `run` uses)")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"timed runs each (default {DEFAULT_RUNS})")
    parser.add_argument(
        "--warmup", type=int, default=DEFAULT_WARMUP, help=f"untimed warm-up runs each (default {DEFAULT_WARMUP})"
    )
    parser.add_argument("--block", type=int, default=DEFAULT_BLOCK, help=argparse.SUPPRESS)
    parser.add_argument(
        "--min-gain",
        type=float,
        default=DEFAULT_MIN_GAIN,
        help="a pruned or INT8 file must be at least this fraction faster (p50) than the FP32 file to be chosen "
        f"(default {DEFAULT_MIN_GAIN})",
    )
    parser.add_argument("--json", action="store_true", help="print pick.json's content instead of the table")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    if args.block < 1:
        raise InputError(f"--block: expected at least 1, got {args.block}")
    folder = Path(args.model)
    config = PickConfig(
        folder=folder,
        targets=args.target,
        threads=args.threads,
        runs=args.runs,
        warmup=args.warmup,
        block=args.block,
        min_gain=args.min_gain,
    )
    if args.quiet:  # progress is logged (edge_sdk.bench.pick); the CLI shows INFO and up unless told otherwise
        logging.getLogger("edge_sdk").setLevel(logging.WARNING)
    result = run_pick(config)
    path = write_pick(result, folder)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_pick(result))
        if result["choice"] is not None:
            print(f"wrote {path}; `edge-sdk run --model {folder}` will load {result['choice']['file']}")
        else:
            print(f"wrote {path}")
    if result["choice"] is None:
        print(f"edge-sdk pick: exit {EXIT_NO_CHOICE}: {result['reason']}", file=sys.stderr, flush=True)
        return EXIT_NO_CHOICE
    return EXIT_OK
