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
from edge_sdk.cli.log_lines import log_lines
from edge_sdk.targets import TARGETS
from edge_sdk_export.fidelity import DEFAULT_GATES, parse_gates
from edge_sdk_export.pipeline import (
    DEFAULT_HELDOUT_SIZE,
    DISTILL_SYNTHETIC_COUNT,
    RANGE_COVER_SIZE,
    ExportOptions,
    run_export,
)
from edge_sdk_export.pruning import DEFAULT_LR, DEFAULT_ROUND_TO, DEFAULT_STEPS
from edge_sdk_export.recovery import DEFAULT_MAX_FLOAT_LAYERS
from edge_sdk_export.report import markdown_table, typed_rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The export flags; a flag's dest is the ``ExportOptions`` field it sets, and a flag left off keeps the
    field's default (flags that need parsing first are converted in :func:`options_from_args`)."""
    parser.add_argument(
        "--model",
        required=True,
        help="'demo', a .onnx (card embedded, beside it as STEM.card.json, or --card), a Keras .h5/.keras/SavedModel "
        "or FP32 .tflite (with --card), or a PyTorch file.py:build / package.module:build",
    )
    parser.add_argument("--card", type=Path, help="the model card (JSON) for a model file that carries none")
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help=f"comma-separated targets (default: {','.join(TARGETS)})"
    )
    parser.add_argument(
        "--calib",
        required=True,
        help="your footage: a folder of images/videos (whole files are split off it as the held-out fidelity set), "
        "one file (then give --heldout or --synthetic-heldout), or 'synthetic' (rendered faces: the demo tutorial)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (must not exist unless --force)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument(
        "--prune", type=float, help="fraction of channels to remove (PyTorch sources and the demo; else exit 2)"
    )
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
        "--distill-lr",
        type=float,
        help=f"peak learning rate of the distillation (default {DEFAULT_LR:g}; the best checkpoint is kept)",
    )
    parser.add_argument(
        "--distill-synthetic",
        type=int,
        metavar="N",
        help="rendered faces added to the distillation data (default: the calibration footage only; "
        f"{DISTILL_SYNTHETIC_COUNT:,} for the synthetic demo)",
    )
    parser.add_argument("--no-distill-synthetic", action="store_true", help="same as --distill-synthetic 0")
    parser.add_argument(
        "--max-drop",
        type=float,
        help="OpenVINO: use NNCF accuracy control, allowing this drop of the fidelity score (e.g. 0.01)",
    )
    parser.add_argument(
        "--max-float-layers",
        type=int,
        metavar="N",
        help="every target: when an INT8 file misses a gate, keep up to N of its most sensitive layers in float "
        f"(fewest that pass every gate; listed in the report with their size/latency cost). 0: off "
        f"(default {DEFAULT_MAX_FLOAT_LAYERS})",
    )
    parser.add_argument(
        "--no-equalize",
        action="store_true",
        help="quantize the FP32 model as it is, without first equalizing the channel ranges "
        "between convolution pairs (see the report's checks.equalization)",
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
    parser.add_argument(
        "--heldout",
        "--heldout-video",
        dest="heldout",
        type=Path,
        help="held-out footage (file or folder) for the fidelity gates; its files are left out of calibration "
        "(default: whole files split off --calib)",
    )
    parser.add_argument(
        "--heldout-fraction",
        type=float,
        help="without --heldout: the share of --calib's faces held out, whole files chosen by --seed (default 0.2)",
    )
    parser.add_argument(
        "--heldout-size",
        type=int,
        help=f"at most this many real held-out crops (seeded subset); also the number of rendered held-out faces "
        f"where those are the default (default {DEFAULT_HELDOUT_SIZE})",
    )
    parser.add_argument(
        "--synthetic-heldout",
        type=int,
        metavar="N",
        help="add N rendered faces to the held-out set (default: only for the synthetic demo)",
    )
    parser.add_argument(
        "--range-cover",
        type=int,
        metavar="N",
        help="add N rendered faces to every target's calibration to widen int8 ranges "
        f"(default: {RANGE_COVER_SIZE} for the synthetic demo, none for a real model)",
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
    needs_detector = args.calib != "synthetic" or args.heldout is not None
    return settings_from_args(
        ExportOptions,
        args,
        targets=targets,
        round_to=args.round_to or None,
        distill_synthetic=0 if args.no_distill_synthetic else args.distill_synthetic,
        gates=parse_gates(args.gate),
        detector=create_detector(args.detector, args.detector_model) if needs_detector else None,
        progress=not args.no_progress,
        equalize=not args.no_equalize,
    )


def run(args: argparse.Namespace) -> int:
    with log_lines("edge_sdk_export"):  # the export's progress lines
        report = run_export(options_from_args(args))
    rows = typed_rows(report["rows"])
    print()
    print(markdown_table(rows))
    print(f"\nfidelity measured on: {report['heldout']['description']}")
    print(f"wrote {args.out}/ (report.md, report.json, report.png)")
    for row in rows:
        if row.status == "failed" and row.reason:
            print(f"FAILED {row.target}: {row.reason}")
        for gate in row.gates:
            if gate.status == "fail":
                print(f"FAILED {row.target}: {gate.message}")
    return 1 if report["failed"] else 0
