"""``edge-sdk export`` end to end: model + calibration -> one INT8 artifact per target + a fidelity report.

The run is a chain of small steps, each a function with typed inputs and outputs:

1. :func:`resolve_step` -- the source model (:class:`~edge_sdk_export.sources.SourceModel`: FP32 ONNX with
   its card, and the normalised torch module when there is one); an impossible ``--prune`` fails here;
2. :func:`plan_step` / :func:`faces_step` -- calibration and held-out faces: the user's footage split by
   file (:mod:`edge_sdk_export.calibration`), rendered faces only for the synthetic demo or when asked;
3. :func:`reference_step` -- the FP32 parent's outputs on the held-out set (what every artifact is judged against);
4. :func:`prune_step` -- optional structured pruning + distillation into a new FP32 parent;
5. :func:`export_step` -- each target quantized and validated in its own child process;
6. :func:`parent_copy_step` -- the unpruned FP32 parent copied beside the artifacts, byte for byte, so a
   device can time INT8 against it (``edge-sdk pick``, ``benchmark``);
7. :func:`report_step` -- ``report.json``/``report.md``/``report.png``, rows typed as
   :class:`~edge_sdk.bench.export_row.ExportRow`.

All files are written to a staging folder beside ``--out`` and renamed into place at the end, so an error
never leaves a half-written output folder. Progress goes to the ``edge_sdk_export`` logger (the CLI shows it).
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_sdk.backend import load_backend
from edge_sdk.bench.export_row import REPORT_SCHEMA, ExportRow
from edge_sdk.bench.timing import latency_stats, time_call
from edge_sdk.contract.card import CropSpec, ExportInfo, ModelCard
from edge_sdk.contract.card_io import sha256_file
from edge_sdk.contract.processing import HeadOutputs, preprocess
from edge_sdk.errors import InputError
from edge_sdk.targets import TARGETS, Target
from edge_sdk_export.calibration import (
    DEFAULT_CALIB_SIZE,
    SYNTHETIC_SOURCE,
    FaceSets,
    MediaPlan,
    collect_faces,
    plan_media,
    synthetic_crops,
)
from edge_sdk_export.exporters import Exported, ExportJob, exporter_for
from edge_sdk_export.fidelity import DEFAULT_GATES, Gate, apply_gates, compare, gate_margin, head_outputs
from edge_sdk_export.isolation import MAX_TIMEOUT_S, MIN_TIMEOUT_S, EvalSettings, TargetTask, run_isolated
from edge_sdk_export.pruning import DEFAULT_LR, DEFAULT_ROUND_TO, DEFAULT_STEPS
from edge_sdk_export.recovery import DEFAULT_MAX_FLOAT_LAYERS, RecoverySettings

if TYPE_CHECKING:
    from edge_sdk_export.sources import SourceModel

logger = logging.getLogger(__name__)

DISTILL_SYNTHETIC_SEED = 8001  # unlabelled rendered faces added to distillation; disjoint from held-out
DISTILL_VALIDATION_SEED = 8501  # rendered faces that choose the distillation checkpoint (never trained on)
DISTILL_VALIDATION_RENDERED = 500  # at most; never more than the rendered faces distilled on
# Calibration-side crops kept out of distillation to choose its checkpoint: blocks of this many consecutive
# crops (neighbouring video frames are near copies), every VALIDATION_EVERY-th block, at most VALIDATION_REAL.
VALIDATION_BLOCK = 10
VALIDATION_EVERY = 5
VALIDATION_REAL = 250
RANGE_COVER_SEED = 7501  # rendered faces that widen int8 calibration ranges; disjoint from held-out
RANGE_COVER_SIZE = 300  # the synthetic demo's default range cover
DEFAULT_HELDOUT_SIZE = 300
# Unlabelled rendered faces added to the synthetic demo's distillation set by default (rendered once, ~40 s;
# stored as float16, 1.5 GB). A real model distils on its calibration footage unless --distill-synthetic N.
DISTILL_SYNTHETIC_COUNT = 20_000


@dataclass
class ExportOptions:
    """Every knob of one export run (the CLI fills it from its arguments; ``export_model`` from its keywords).

    Rendered faces (``synthetic_heldout``, ``range_cover``, ``distill_synthetic``): None is the default, which
    uses them only for the synthetic demo (``card.provenance.synthetic_demo``); a number asks for that many
    (0: none) whatever the model.
    """

    model: str | SourceModel  # 'demo', a path/reference resolve_source takes, or a resolved SourceModel
    targets: list[str]
    calib: str  # a folder of images/videos, one file, or 'synthetic'
    out: Path
    card: Path | None = None  # --card: the model card, for sources that do not carry one
    calib_size: int = DEFAULT_CALIB_SIZE
    heldout: Path | None = None  # held-out footage (file or folder), kept out of calibration
    heldout_fraction: float = 0.2  # without --heldout: about this share of the faces, whole files, held out
    heldout_size: int = DEFAULT_HELDOUT_SIZE  # at most this many real held-out crops (and the default rendered)
    synthetic_heldout: int | None = None  # rendered faces in the held-out set (None: demo only)
    range_cover: int | None = None  # rendered faces added to every target's calibration (None: demo only)
    prune: float = 0.0
    global_pruning: bool = False
    round_to: int | None = DEFAULT_ROUND_TO  # kept channels: multiples of this (None: exact ratio)
    distill_steps: int = DEFAULT_STEPS
    distill_lr: float = DEFAULT_LR
    distill_synthetic: int | None = None  # rendered faces added to distillation (None: demo only)
    max_drop: float | None = None
    # every target: when a gate fails, keep at most this many layers in float to pass it (0: recovery off)
    max_float_layers: int = DEFAULT_MAX_FLOAT_LAYERS
    equalize: bool = True  # activation equalization before INT8 (edge_sdk_export.equalize)
    gates: dict[str, Gate] = field(default_factory=lambda: dict(DEFAULT_GATES))
    force: bool = False
    seed: int = 0
    threads: int = 2
    latency_runs: int = 30
    detector: Any = None  # edge_sdk.face.FaceDetector; None = create_detector("auto")
    cache_dir: Path | None = None
    progress: bool = True
    machine: str = ""
    target_timeout_s: float = 1800.0  # per target, in a child process; past it the target is marked hung


@dataclass(frozen=True)
class RunContext:
    """What every step of one run shares: the options, the validated targets and the two folders."""

    options: ExportOptions
    targets: list[str]
    staging: Path  # becomes --out at the end
    work: Path  # scratch, deleted at the end


@dataclass(frozen=True)
class RenderedCounts:
    """How many rendered faces go where (the demo-only defaults resolved against the model's card)."""

    heldout: int
    range_cover: int
    distill: int


@dataclass(frozen=True)
class Reference:
    """The FP32 source on the held-out set: preprocessed batches, its raw outputs and its figures."""

    calib_batch: np.ndarray  # preprocessed calibration (+ range cover) for the quantizers
    heldout: np.ndarray  # preprocessed held-out batch
    outputs: HeadOutputs  # FP32 raw outputs on ``heldout``
    size: int  # bytes
    sha256: str
    params: int
    heldout_description: str


@dataclass(frozen=True)
class Parent:
    """The FP32 model the targets are quantized from: the source, or its pruned copy."""

    onnx: Path
    card: ModelCard
    params: int
    pruning: dict[str, Any]
    info_row: ExportRow | None = None  # the pruned FP32 model's own row
    # The gates the pruned FP32 model itself misses against the unpruned parent (their messages): INT8 cannot do
    # better than the file it quantizes, so float layers cannot pass them and the recovery search is skipped.
    misses: tuple[str, ...] = ()

    def miss_reason(self) -> str:
        """One plain sentence for a failed target's reason when the pruned parent already misses its gates."""
        return (
            f"the pruned FP32 model (--prune {self.pruning.get('ratio', 0):g}) already misses the gates against "
            f"the unpruned model: {'; '.join(self.misses)}. This is pruning loss, not quantization loss: keeping "
            "layers in float cannot recover it (accuracy recovery skipped). Prune less, distil longer "
            "(--distill-steps), or train the model with group sparsity (see the README's demo model)"
        )


def parse_targets(text: str | list[str]) -> list[str]:
    """``jetson,rpi`` -> validated, de-duplicated target names (InputError lists the known ones)."""
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not names:
        raise InputError(f"--targets: no target given; expected some of {', '.join(TARGETS)}")
    for name in names:
        exporter_for(name)  # unknown target or unloadable export function: InputError now, not mid-run
    return list(dict.fromkeys(names))


def check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise InputError(f"--out {out}: already exists; choose a new folder or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")


def latency_ms(path: Path, threads: int, runs: int, x: np.ndarray) -> float:
    """Median batch-1 latency of an artifact on its backend, after warm-up."""
    backend = load_backend(path, threads=threads)
    one = x[:1]
    latencies = time_call(lambda: backend.run(one), runs, warmup=3)
    return round(latency_stats(latencies)["p50"], 3)


def onnx_param_count(path: Path) -> int:
    """Number of weight values stored in an ONNX file's initializers."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT))


def _artifact_size(files: list[Path]) -> int:
    return sum(f.stat().st_size for f in files if not f.name.endswith(".card.json"))


def _preprocess_float16(crops: np.ndarray, card: ModelCard, chunk: int = 1000) -> np.ndarray:
    """:func:`preprocess` as float16 (exact for 8-bit pixels), a chunk at a time so the full float32 copy of a
    large set (3 GB for 20k crops) never exists."""
    return np.concatenate(
        [preprocess(list(crops[i : i + chunk]), card.input).astype(np.float16) for i in range(0, len(crops), chunk)]
    )


def _stem(card: ModelCard) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in card.name)


def _artifact_card(
    parent_card: ModelCard, target: str, source_sha: str, prune: float, calib: dict[str, Any]
) -> ModelCard:
    from edge_sdk_export.convert import _versions

    tool = _versions(*TARGETS[target].format.export_tools)
    return parent_card.with_changes(
        export=ExportInfo(target=target, precision="int8", pruning_ratio=prune, calibration=calib, tool=tool),
        provenance=replace(parent_card.provenance, parent_sha256=source_sha),
    )


# ---- 1. source -------------------------------------------------------------------------------
def resolve_step(options: ExportOptions, work: Path) -> SourceModel:
    """The source model; ``--prune`` without a torch module is an InputError here, before any heavy work."""
    from edge_sdk_export.sources import SourceModel, resolve_source

    if isinstance(options.model, SourceModel):
        source = options.model
    else:
        media = None if options.calib == SYNTHETIC_SOURCE else options.calib  # real crops for the import check
        source = resolve_source(options.model, work, options.card, check_media=media, detector=options.detector)
    if options.prune > 0 and source.torch_model is None:
        raise InputError(
            f"--prune {options.prune}: {source.description} has no torch model, and structured pruning needs one "
            f"({source.kind} sources are quantized only); drop --prune, or export from the PyTorch model "
            "(--model file.py:build)"
        )
    logger.info("model: %s (%s)", source.description, source.onnx.name)
    return source


# ---- 2. faces --------------------------------------------------------------------------------
def rendered_counts(options: ExportOptions, card: ModelCard) -> RenderedCounts:
    """Rendered faces per use: what the options ask, else the synthetic demo's defaults (none for a real model).

    With ``--calib synthetic`` and no ``--heldout`` the held-out set is rendered too (the only faces there are).
    """
    demo = card.provenance.synthetic_demo
    synthetic_calib = options.calib == SYNTHETIC_SOURCE
    heldout = options.synthetic_heldout
    if heldout is None:
        heldout = options.heldout_size if demo or (synthetic_calib and options.heldout is None) else 0
    cover = options.range_cover
    if cover is None:
        cover = RANGE_COVER_SIZE if demo and not synthetic_calib else 0
    distill = options.distill_synthetic
    if distill is None:
        distill = DISTILL_SYNTHETIC_COUNT if demo else 0
    for flag, value in (("--synthetic-heldout", heldout), ("--range-cover", cover), ("--distill-synthetic", distill)):
        if value < 0:
            raise InputError(f"{flag} {value}: expected a number of rendered faces >= 0")
    return RenderedCounts(heldout, cover, distill)


def plan_step(options: ExportOptions, card: ModelCard) -> MediaPlan:
    """Which files calibrate and which are held out (cheap checks: a single --calib file fails here)."""
    counts = rendered_counts(options, card)
    if options.calib == SYNTHETIC_SOURCE and not card.provenance.synthetic_demo:
        logger.warning(
            "--calib synthetic: rendered faces calibrate a model that is not the synthetic demo; for a model "
            "trained on real faces, calibrate on your own footage"
        )
    return plan_media(options.calib, options.heldout, counts.heldout)


def faces_step(options: ExportOptions, card: ModelCard, plan: MediaPlan) -> FaceSets:
    """Detect, crop (the card's ``input.crop``), split and render: the calibration and held-out faces."""
    counts = rendered_counts(options, card)
    spec = card.input
    faces = collect_faces(
        plan,
        spec.height,
        spec.width,
        crop=getattr(spec, "crop", None) or CropSpec(),
        calib_size=options.calib_size,
        heldout_size=options.heldout_size,
        heldout_fraction=options.heldout_fraction,
        range_cover=counts.range_cover,
        range_cover_seed=RANGE_COVER_SEED,
        seed=options.seed,
        detector=options.detector,
        cache_dir=options.cache_dir,
        progress=options.progress,
    )
    cover = f" + {len(faces.range_cover)} rendered range-cover faces" if faces.range_cover is not None else ""
    logger.info("calibration: %d crops from %s%s", len(faces.calib), faces.calib.summary.get("source"), cover)
    logger.info("held-out (every gate is measured on these): %s", faces.heldout.summary["description"])
    return faces


# ---- 3. FP32 reference -----------------------------------------------------------------------
def reference_step(source: SourceModel, faces: FaceSets, options: ExportOptions) -> Reference:
    """Preprocess both sets and run the FP32 source on the held-out faces."""
    spec = source.card.input
    cover = [] if faces.range_cover is None else list(faces.range_cover.crops)
    calib_batch = preprocess(list(faces.calib.crops) + cover, spec)
    heldout = preprocess(list(faces.heldout.crops), spec)
    outputs = head_outputs(load_backend(source.onnx, threads=options.threads), heldout)
    return Reference(
        calib_batch=calib_batch,
        heldout=heldout,
        outputs=outputs,
        size=source.onnx.stat().st_size,
        sha256=sha256_file(source.onnx),
        params=onnx_param_count(source.onnx),
        heldout_description=faces.heldout.summary["description"],
    )


# ---- 4. pruning ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistillData:
    """Crops to distil on, and crops kept out of it that choose the checkpoint (both preprocessed, float16)."""

    train: np.ndarray
    validation: dict[str, np.ndarray]  # {"calibration": real crops, "rendered": rendered faces}; empty ones left out
    summary: dict[str, Any]


def _validation_mask(count: int) -> np.ndarray:
    """Which of ``count`` calibration-side crops validate: every VALIDATION_EVERY-th block of VALIDATION_BLOCK."""
    mask = (np.arange(count) // VALIDATION_BLOCK) % VALIDATION_EVERY == VALIDATION_EVERY - 1
    mask[np.flatnonzero(mask)[VALIDATION_REAL:]] = False
    return mask


def _distill_data(faces: FaceSets, card: ModelCard, count: int, seed: int) -> DistillData:
    """Every calibration-side crop (never a held-out file's) plus ``count`` rendered faces, preprocessed, as
    float16 (half the memory); a share of the real crops (and, with rendered faces, 500 more rendered ones)
    is kept out to choose the checkpoint.

    The synthetic demo adds 20k rendered faces by default: 300 crops are far too few to distil on. With
    ``--calib synthetic`` alone, 2000 steps made the pruned demo *worse* than no distillation at all (PSPI MAE
    0.068 -> 0.158 against FP32: it overfits the 300 crops).
    """
    real = _preprocess_float16(faces.pool, card)
    train, validation = [real], {}
    if len(real) >= 2 * VALIDATION_BLOCK * VALIDATION_EVERY:
        mask = _validation_mask(len(real))
        train, validation = [real[~mask]], {"calibration": real[mask]}
    summary: dict[str, Any] = {
        "calibration_crops": len(train[0]),
        "validation_calibration_crops": len(validation.get("calibration", ())),
    }
    if count > 0:
        logger.info("rendering %d unlabelled synthetic faces for distillation", count)
        extra = synthetic_crops(card.input.height, card.input.width, count, DISTILL_SYNTHETIC_SEED + seed)
        train.append(_preprocess_float16(extra.crops, card))
        summary["synthetic_crops"] = len(extra)
        checks = min(count, DISTILL_VALIDATION_RENDERED)
        check = synthetic_crops(card.input.height, card.input.width, checks, DISTILL_VALIDATION_SEED + seed)
        validation["rendered"] = _preprocess_float16(check.crops, card)
        summary["validation_synthetic_crops"] = len(check)
    return DistillData(np.concatenate(train), validation, summary)


def _validator(source: SourceModel, card: ModelCard, groups: dict[str, np.ndarray], options: ExportOptions) -> Any:
    """Scores a pruned student by :func:`gate_margin` of its outputs against the FP32 source on crops it is not
    trained on, per group (real calibration crops, rendered faces), and keeps the worst group's: a few real
    crops must not be outvoted by many rendered ones. None when there are no such crops."""
    if not groups:
        logger.warning("no crops to spare for choosing the distillation checkpoint: the last step is kept")
        return None
    from edge_sdk_export.onnx_io import torch_outputs
    from edge_sdk_export.pruning import to_layout

    backend = load_backend(source.onnx, threads=options.threads)
    checks = []
    for crops in groups.values():
        batch = crops.astype(np.float32)
        checks.append((to_layout(batch, card), head_outputs(backend, batch)))

    def outputs(student: Any, x: np.ndarray, size: int = 256) -> HeadOutputs:
        chunks = [torch_outputs(student, x[i : i + size]) for i in range(0, len(x), size)]
        return {name: np.concatenate([chunk[k] for chunk in chunks]) for k, name in enumerate(card.output_tensors)}

    def score(student: Any) -> float:
        return min(gate_margin(compare(card, reference, outputs(student, x)), options.gates) for x, reference in checks)

    return score


def prune_step(ctx: RunContext, source: SourceModel, faces: FaceSets, ref: Reference) -> Parent:
    """Without ``--prune``: the source itself. With it: prune + distil the torch module, export it to FP32 ONNX
    in the staging folder and measure it (the ``pruned-fp32`` info row)."""
    options = ctx.options
    card = source.card
    if options.prune <= 0:
        return Parent(source.onnx, card, ref.params, {"applied": False, "ratio": 0.0})
    from edge_sdk_export.pruning import prune_and_recover
    from edge_sdk_export.sources import torch_to_onnx

    count = rendered_counts(options, card).distill
    data = _distill_data(faces, card, count, options.seed)
    logger.info(
        "pruning %.0f%% of channels, then %d distillation steps on %d crops (%d kept out to choose the checkpoint)",
        options.prune * 100,
        options.distill_steps,
        len(data.train),
        sum(len(crops) for crops in data.validation.values()),
    )
    result = prune_and_recover(
        source.torch_model,
        options.prune,
        data.train,
        card,
        steps=options.distill_steps,
        lr=options.distill_lr,
        seed=options.seed,
        global_pruning=options.global_pruning,
        progress=options.progress,
        round_to=options.round_to,
        validator=_validator(source, card, data.validation, options),
    )
    pruned_card = card.with_changes(
        export=ExportInfo(
            target=None, precision="fp32", pruning_ratio=options.prune, tool="torch-pruning + distillation"
        ),
        provenance=replace(card.provenance, parent_sha256=ref.sha256),
    )
    path = ctx.staging / f"{_stem(card)}_pruned{round(options.prune * 100)}_fp32.onnx"
    torch_to_onnx(result.model, pruned_card, path)
    pruning = {"applied": True, "ratio": options.prune, **result.summary(), "distill_data": data.summary}
    backend = load_backend(path, threads=options.threads)
    metrics = compare(card, ref.outputs, head_outputs(backend, ref.heldout))
    size = path.stat().st_size
    ms = latency_ms(path, options.threads, options.latency_runs, ref.heldout)
    fp32_ms = latency_ms(source.onnx, options.threads, options.latency_runs, ref.heldout)
    params = onnx_param_count(path)
    parent_passed, parent_gates = apply_gates(metrics, options.gates)
    misses = tuple(g.message for g in parent_gates if g.status == "fail")
    pruning["parent_gates"] = {"passed": parent_passed, "failing": list(misses)}
    if misses:
        logger.warning("the pruned FP32 model already misses the gates: %s", "; ".join(misses))
    info = backend.info
    row = ExportRow(
        target="pruned-fp32",
        format="onnx",
        status="info",
        files=(path.name,),
        backend=f"{info.backend} {info.runtime_version} ({info.device})",
        size_bytes=size,
        size_kb=round(size / 1024, 1),
        size_ratio=round(size / ref.size, 4),
        params=params,
        latency_ms=ms,
        fp32_latency_ms=fp32_ms,
        latency_ratio=round(ms / fp32_ms, 3) if fp32_ms else None,
        metrics=metrics,
        notes=(f"misses the gates itself: {'; '.join(misses)}",) if misses else (),
        heldout=ref.heldout_description,
    )
    parent_card = card.with_changes(export=replace(card.export, pruning_ratio=options.prune))
    return Parent(path, parent_card, params, pruning, row, misses)


# ---- 5. per-target export --------------------------------------------------------------------
def _evaluate(
    target: Target,
    exported: Exported,
    card: ModelCard,
    heldout: np.ndarray,
    ref: HeadOutputs,
    fp32_size: int,
    params: int,
    settings: EvalSettings,
) -> ExportRow:
    """Judge one exported artifact against the FP32 parent on the held-out batch (runs in the target's child)."""
    main = exported.files[0]
    proxy = {"optimize": False} if target.simulated_proxy else {}  # a TensorRT file: QDQ simulated, any CPU
    backend = load_backend(main, threads=settings.threads, **proxy)
    metrics = compare(card, ref, head_outputs(backend, heldout))
    passed, gates = apply_gates(metrics, settings.gates)
    reason = exported.reason
    elsewhere = [j for j in exported.other_kernels if j.failed]  # judged with this CPU's ISA capped
    if passed and elsewhere:
        passed = False
        reason = "passes on this CPU's int8 kernels but not on " + "; ".join(j.summary() for j in elsewhere)
    size = _artifact_size(exported.files)
    int8_ms = latency_ms(main, settings.threads, settings.latency_runs, heldout)
    fp32_ms = latency_ms(exported.fp32_reference, settings.threads, settings.latency_runs, heldout)
    info = backend.info
    return ExportRow(
        target=target.name,
        format=target.artifact_format,
        status="passed" if passed else "failed",
        files=tuple(f.name for f in exported.files),
        backend=f"{info.backend} {info.runtime_version} ({info.device}"
        + (", QDQ simulated unfused: a TensorRT proxy)" if proxy else ")"),
        size_bytes=size,
        size_kb=round(size / 1024, 1),
        size_ratio=round(size / fp32_size, 4),
        params=params,
        latency_ms=int8_ms,
        fp32_latency_ms=fp32_ms,
        latency_ratio=round(int8_ms / fp32_ms, 3) if fp32_ms else None,
        metrics=metrics,
        gates=gates,
        checks=exported.checks,
        notes=tuple(exported.notes),
        reason=None if passed else reason,
        heldout=settings.heldout,
    )


def export_step(ctx: RunContext, parent: Parent, faces: FaceSets, ref: Reference) -> list[ExportRow]:
    """Quantize and validate each target in its own child process (a crash, hang or exception -> failed row)."""
    options = ctx.options
    calib_summary = faces.calibration_summary()
    settings = EvalSettings(options.threads, options.latency_runs, dict(options.gates), ref.heldout_description)
    # A pruned parent that misses the gates itself: no float-layer search (it cannot pass), one plain reason.
    max_float_layers = 0 if parent.misses else options.max_float_layers
    if parent.misses and options.max_float_layers > 0:
        logger.warning("accuracy recovery skipped: the pruned FP32 model already misses the gates")
    rows: list[ExportRow] = []
    for target in ctx.targets:
        logger.info("[%s] quantizing to INT8 (%s)", target, TARGETS[target].quantization)
        t0 = time.perf_counter()
        job = ExportJob(
            parent=parent.onnx,
            card=_artifact_card(parent.card, target, ref.sha256, parent.card.export.pruning_ratio, calib_summary),
            calib=ref.calib_batch,
            out_dir=ctx.staging,
            work=ctx.work / target,
            stem=f"{_stem(parent.card)}_{target}_int8",
            heldout=ref.heldout,
            heldout_ref=ref.outputs,
            max_drop=options.max_drop,
            recovery=RecoverySettings(max_float_layers, dict(options.gates), options.threads, options.latency_runs),
            equalize=options.equalize,
            parent_misses=bool(parent.misses),
        )
        job.work.mkdir(parents=True, exist_ok=True)
        task = TargetTask(TARGETS[target], job, ref.outputs, ref.size, parent.params, settings)
        row = run_isolated(task, options.target_timeout_s)
        row = replace(row, export_s=round(time.perf_counter() - t0, 1))
        if parent.misses and any(g.status == "fail" for g in row.gates):  # a crashed target keeps its reason
            notes = tuple(n for n in row.notes if not n.startswith("accuracy recovery is off"))
            row = replace(row, reason=parent.miss_reason(), notes=notes)
        rows.append(row)
        logger.info("[%s] %s: %s", target, row.status, row.reason or "; ".join(g.message for g in row.gates))
    return rows


# ---- 6. report -------------------------------------------------------------------------------
def parent_copy_step(ctx: RunContext, source: SourceModel) -> Path:
    """Copy the unpruned FP32 parent into the output folder byte for byte: its sha256 stays the report's
    ``model.sha256`` and the artifacts' ``provenance.parent_sha256``. An embedded card: written as
    ``{stem}_fp32.onnx``; a sidecar card (it names its model file): both keep their names."""
    from edge_sdk.contract.card import sidecar_path

    sidecar = sidecar_path(source.onnx)
    if sidecar.is_file():
        shutil.copyfile(sidecar, ctx.staging / sidecar.name)
        dest = ctx.staging / source.onnx.name
    else:
        dest = ctx.staging / f"{_stem(source.card)}_fp32.onnx"
    shutil.copyfile(source.onnx, dest)
    logger.info("FP32 parent: %s (edge-sdk pick times INT8 against it on the device)", dest.name)
    return dest


def report_step(
    ctx: RunContext, source: SourceModel, faces: FaceSets, ref: Reference, parent: Parent, rows: list[ExportRow]
) -> dict[str, Any]:
    """The report (returned, and written to the staging folder as report.json/.md/.png).

    Every figure was measured on this machine (the targets' children run here), so each measured row and
    gate records this CPU's int8 kernel class (``measured_on``), the report names the CPU, its ISA flags and
    the runtimes (``machine_info``), and each gated artifact's card gets ``export.validated_on``.
    """
    from edge_sdk.bench.machine import collect_machine_info
    from edge_sdk.cpu import INT8_KERNEL_CLASSES
    from edge_sdk_export.report import record_validation, write_report

    options = ctx.options
    card = source.card
    machine = collect_machine_info()
    kernels = machine.int8_kernels
    rows = record_validation(ctx.staging, [r.with_measured_on(kernels) for r in rows], machine, ref.size)
    info_row = None if parent.info_row is None else parent.info_row.with_measured_on(kernels)
    all_rows = ([info_row] if info_row is not None else []) + rows
    report = {
        "schema": REPORT_SCHEMA,
        "model": {
            "name": card.name,
            "source": source.description,
            "kind": source.kind,
            "file": str(source.onnx),
            "sha256": ref.sha256,
            "size_kb": round(ref.size / 1024, 1),
            "params": ref.params,
            "synthetic_demo": card.provenance.synthetic_demo,
        },
        "calibration": faces.calibration_summary(),
        "heldout": faces.heldout.summary,
        "pruning": parent.pruning,
        "gates": {
            g.metric: {
                "threshold": g.threshold,
                "higher_is_better": g.higher_is_better,
                "heldout": ref.heldout_description,
                "measured_on": kernels,
            }
            for g in options.gates.values()
        },
        "machine": options.machine or f"{platform.machine()} {os.cpu_count()} cores, threads={options.threads}",
        "machine_info": {**machine.to_dict(), "int8_kernels_meaning": INT8_KERNEL_CLASSES.get(kernels, "")},
        "rows": [r.to_dict() for r in all_rows],
        "failed": [r.target for r in all_rows if r.status == "failed"],
    }
    write_report(report, ctx.staging)
    return report


# ---- the run ---------------------------------------------------------------------------------
def _check_options(options: ExportOptions) -> list[str]:
    """Every check that needs no file read: bad values fail before any work. Returns the targets."""
    targets = parse_targets(options.targets)
    check_out_dir(Path(options.out), options.force)
    if not 0.0 <= options.prune < 1.0:
        raise InputError(f"--prune {options.prune}: expected a fraction of channels in [0, 1)")
    if options.round_to is not None and options.round_to < 1:
        raise InputError(f"--round-to {options.round_to}: expected a channel multiple >= 1 (0 turns rounding off)")
    if not MIN_TIMEOUT_S <= options.target_timeout_s <= MAX_TIMEOUT_S:
        raise InputError(
            f"--target-timeout {options.target_timeout_s}: expected seconds in [{MIN_TIMEOUT_S:g}, {MAX_TIMEOUT_S:g}]"
        )
    if not options.distill_lr > 0:
        raise InputError(f"--distill-lr {options.distill_lr}: expected a learning rate > 0 (e.g. 1e-4)")
    if options.max_float_layers < 0:
        raise InputError(f"--max-float-layers {options.max_float_layers}: expected a number of layers >= 0 (0: off)")
    if not 0.0 < options.heldout_fraction < 1.0:
        raise InputError(f"--heldout-fraction {options.heldout_fraction}: expected a fraction of the faces in (0, 1)")
    return targets


def run_export(options: ExportOptions) -> dict[str, Any]:
    """Run the whole export; returns the report (also written to ``options.out``). Raises EdgeSdkError."""
    targets = _check_options(options)
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    work = Path(tempfile.mkdtemp(prefix="edge-sdk-export-"))
    try:
        report = _run(RunContext(options, targets, staging, work))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _run(ctx: RunContext) -> dict[str, Any]:
    """resolve source -> faces (calibration / held-out) -> FP32 reference -> (prune) -> targets -> report."""
    source = resolve_step(ctx.options, ctx.work)
    logger.info("targets: %s", ", ".join(ctx.targets))
    plan = plan_step(ctx.options, source.card)
    faces = faces_step(ctx.options, source.card, plan)
    ref = reference_step(source, faces, ctx.options)
    parent = prune_step(ctx, source, faces, ref)
    rows = export_step(ctx, parent, faces, ref)
    parent_copy_step(ctx, source)
    return report_step(ctx, source, faces, ref, parent, rows)
