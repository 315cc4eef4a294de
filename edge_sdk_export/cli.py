"""``edge-sdk export``: prune and quantize a multitask model to INT8 for each target, with per-head fidelity gates.

Each target is exported and validated in its own child process (:mod:`edge_sdk_export.isolation`): a native crash,
a hang or an exception fails that target only, and the report is always written.

Exit codes: 0 every artifact passed its gates; 1 an artifact failed a gate or a target failed (the report says
which head and by how much, or why); 2 bad input (printed as ``error: ...`` by the dispatcher).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_sdk.cli.flags import settings_from_args
from edge_sdk.targets import TARGETS
from edge_sdk_export.fidelity import DEFAULT_GATES, parse_gates
from edge_sdk_export.pipeline import DISTILL_SYNTHETIC_COUNT, ExportOptions, run_export
from edge_sdk_export.pruning import DEFAULT_ROUND_TO, DEFAULT_STEPS
from edge_sdk_export.report import markdown_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The export flags; a flag's dest is the ``ExportOptions`` field it sets, and a flag left off keeps the
    field's default (flags that need parsing first are converted in :func:`options_from_args`)."""
    parser.add_argument("--model", required=True, help="'demo', a .onnx with a model card, or a .pt checkpoint")
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help=f"comma-separated targets (default: {','.join(TARGETS)})"
    )
    parser.add_argument(
        "--calib",
        required=True,
        help="calibration faces: a folder of images/videos, one video, or 'synthetic' (rendered faces)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (must not exist unless --force)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("--prune", type=float, help="fraction of channels to remove (torch models only)")
    parser.add_argument(
        "--global-pruning", action="store_true", help="rank channels across layers instead of per layer"
    )
    parser.add_argument(
        "--round-to",
        type=int,
        default=DEFAULT_ROUND_TO or 0,
        help="round kept channel counts down to a multiple of N: faster int8 kernels, more channels removed (0: off)",
    )
    parser.add_argument(
        "--distill-steps",
        type=int,
        help=f"knowledge-distillation steps after pruning (default {DEFAULT_STEPS})",
    )
    parser.add_argument(
        "--no-distill-synthetic",
        action="store_true",
        help=f"distil on the calibration crops only (default adds {DISTILL_SYNTHETIC_COUNT:,} rendered faces)",
    )
    parser.add_argument(
        "--max-drop",
        type=float,
        help="OpenVINO: use NNCF accuracy control, allowing this drop of the fidelity score (e.g. 0.01)",
    )
    parser.add_argument(
        "--gate",
        action="append",
        metavar="METRIC=VALUE",
        help="override a gate; defaults: "
        + ", ".join(
            f"{g.metric} {'>=' if g.higher_is_better else '<='} {g.threshold:g}" for g in DEFAULT_GATES.values()
        ),
    )
    parser.add_argument("--calib-size", type=int, help="calibration crops (seeded subset)")
    parser.add_argument("--heldout-size", type=int, help="rendered held-out faces for fidelity")
    parser.add_argument(
        "--heldout-video",
        type=Path,
        help="a video whose faces join the held-out set; a file of that name is left out of --calib",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int, help="inference threads for fidelity and latency")
    parser.add_argument("--latency-runs", type=int)
    parser.add_argument(
        "--target-timeout",
        dest="target_timeout_s",
        type=float,
        help="seconds one target's export may take in its child process before it is marked failed (default 1800)",
    )
    parser.add_argument("--detector", default="auto", help="face detector for calibration: auto, yunet, haar, none")
    parser.add_argument("--detector-model", help="path to a YuNet .onnx (e.g. ../shared/models/yunet/...)")
    parser.add_argument("--cache-dir", type=Path, help="calibration crop cache (default ~/.cache/edge_sdk)")
    parser.add_argument("--machine", help="how to name this machine in the report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def options_from_args(args: argparse.Namespace) -> ExportOptions:
    """The flags given, onto ExportOptions; targets, gates and the detector are parsed/built here."""
    from edge_sdk.face import create_detector
    from edge_sdk_export.pipeline import parse_targets

    targets = parse_targets(args.targets)
    needs_detector = args.calib != "synthetic" or args.heldout_video is not None
    return settings_from_args(
        ExportOptions,
        args,
        targets=targets,
        round_to=args.round_to or None,
        distill_synthetic=not args.no_distill_synthetic,
        gates=parse_gates(args.gate),
        detector=create_detector(args.detector, args.detector_model) if needs_detector else None,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    report = run_export(options_from_args(args))
    print()
    print(markdown_table(report["rows"]))
    print(f"\nwrote {args.out}/ (report.md, report.json, report.png)")
    for row in report["rows"]:
        for gate in row.get("gates", []):
            if gate["status"] == "fail":
                print(f"FAILED {row['target']}: {gate['message']}")
    return 1 if report["failed"] else 0
