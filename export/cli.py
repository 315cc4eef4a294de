"""``edge-sdk export``: prune and quantize a multitask model to INT8 for each target, with per-head fidelity gates.

Exit codes: 0 every artifact passed its gates; 1 an artifact failed a gate (the report says which head and
by how much); 2 bad input (printed as ``error: ...`` by the dispatcher).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_sdk.targets import TARGETS
from export.calibration import DEFAULT_CALIB_SIZE
from export.fidelity import DEFAULT_GATES, parse_gates
from export.pipeline import DISTILL_SYNTHETIC_COUNT, ExportOptions, run_export
from export.pruning import DEFAULT_ROUND_TO, DEFAULT_STEPS
from export.report import markdown_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--prune", type=float, default=0.0, help="fraction of channels to remove (torch models only)")
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
        default=DEFAULT_STEPS,
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
        default=None,
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
    parser.add_argument("--calib-size", type=int, default=DEFAULT_CALIB_SIZE, help="calibration crops (seeded subset)")
    parser.add_argument("--heldout-size", type=int, default=300, help="rendered held-out faces for fidelity")
    parser.add_argument(
        "--heldout-video",
        type=Path,
        default=None,
        help="a video whose faces join the held-out set; a file of that name is left out of --calib",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="inference threads for fidelity and latency")
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--detector", default="auto", help="face detector for calibration: auto, yunet, haar, none")
    parser.add_argument(
        "--detector-model", default=None, help="path to a YuNet .onnx (e.g. ../shared/models/yunet/...)"
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="calibration crop cache (default ~/.cache/edge_sdk)"
    )
    parser.add_argument("--machine", default="", help="how to name this machine in the report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def options_from_args(args: argparse.Namespace) -> ExportOptions:
    from edge_sdk.face import create_detector
    from export.pipeline import parse_targets

    targets = parse_targets(args.targets)
    needs_detector = args.calib != "synthetic" or args.heldout_video is not None
    detector = create_detector(args.detector, args.detector_model) if needs_detector else None
    return ExportOptions(
        model=args.model,
        targets=targets,
        calib=args.calib,
        out=args.out,
        calib_size=args.calib_size,
        heldout_size=args.heldout_size,
        heldout_video=args.heldout_video,
        prune=args.prune,
        round_to=args.round_to or None,
        global_pruning=args.global_pruning,
        distill_steps=args.distill_steps,
        distill_synthetic=not args.no_distill_synthetic,
        max_drop=args.max_drop,
        gates=parse_gates(args.gate),
        force=args.force,
        seed=args.seed,
        threads=args.threads,
        latency_runs=args.latency_runs,
        detector=detector,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        machine=args.machine,
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
