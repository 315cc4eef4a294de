"""The export functions the target table names (``Target.exporter``): each writes one target's INT8 artifact.

Adding a target = one row in :data:`edge_sdk.targets.TARGETS` naming a function like these. Each
gets an :class:`ExportJob` and returns an :class:`Exported` with the artifact files (main file
first) and an FP32 artifact for the same backend, so the report can give an INT8/FP32 latency ratio
on the runtime that will actually run it.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.processing import HeadOutputs
from edge_sdk.errors import InputError
from edge_sdk.targets import get_target, resolve
from edge_sdk_export.artifacts import write_sidecar
from edge_sdk_export.recovery import Recovery, RecoverySettings

logger = logging.getLogger(__name__)
# edge_sdk.cpu's class of x86 int8 kernels that sum u8s8 pairs in int16 (AVX2 without VNNI): they can saturate
SATURATING_KERNELS = "x86-no-vnni"


@dataclass(frozen=True)
class ExportJob:
    """Everything an export function needs."""

    parent: Path  # FP32 ONNX (pruned or original) with its card embedded
    card: ModelCard  # the artifact's card (target, precision, parent, pruning, calibration already filled)
    calib: np.ndarray  # preprocessed NCHW float32 calibration batch
    out_dir: Path  # where the artifact goes (a staging folder, renamed at the end)
    work: Path  # scratch folder for FP32 references (not shipped)
    stem: str  # file stem of the artifact, e.g. "edge-sdk-demo-synthetic_jetson_int8"
    heldout: np.ndarray  # preprocessed held-out batch (only for accuracy-aware quantization)
    heldout_ref: HeadOutputs  # FP32 parent raw head outputs on ``heldout``
    max_drop: float | None = None
    # QDQ/TFLite targets: keep the fewest layers in float that pass the gates (None: recovery off); its gates
    # also judge the openvino IR on other int8 kernel classes (None: the default gates)
    recovery: RecoverySettings | None = None
    # rescale channels between conv pairs before quantizing (False: quantize the parent as is)
    equalize: bool = True
    # the pruned FP32 parent already misses the gates: no INT8 scheme can pass, so none is tried in vain
    parent_misses: bool = False


@dataclass
class Exported:
    """What an export function wrote."""

    files: list[Path]
    fp32_reference: Path
    checks: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    reason: str | None = None  # why the artifact fails its gates beyond the gates' own messages (recovery's budget)
    # gates on other int8 kernel classes (edge_sdk_export.capped_isa.CappedJudgement): all must pass too
    other_kernels: list[Any] = field(default_factory=list)


def _equalized(job: ExportJob, fold_batchnorm: bool) -> tuple[Path, dict[str, Any]]:
    """An FP32 copy of ``job.parent`` with activation ranges equalized on the calibration batch
    (:func:`edge_sdk_export.equalize.equalize_for_int8`: the same function, better suited to per-tensor INT8)
    and its check entry; the parent itself when equalization is off or cannot run (logged, in the check)."""
    from edge_sdk_export.equalize import equalize_for_int8

    if not job.equalize:
        return job.parent, {"pairs": 0, "off": True}
    path = job.work / f"{job.stem}.fp32_equalized.onnx"
    try:
        result = equalize_for_int8(job.parent, path, job.card, job.calib, fold_batchnorm)
    except Exception as exc:  # onnx/onnxruntime raise several types; quantizing the parent as is still works
        logger.warning("activation equalization skipped for %s: %s", job.parent.name, str(exc)[:300])
        return job.parent, {"pairs": 0, "skipped": str(exc)[:300]}
    return path, result.to_check()


def _qdq_export(job: ExportJob, scheme: Any) -> Exported:
    """Quantize ``job.parent`` (activation-equalized) to a QDQ file with ``scheme``, recover accuracy when a gate
    fails (layers kept in float, see :mod:`edge_sdk_export.recovery`), and prove the file's QDQ structure."""
    from edge_sdk_export.quant_onnx import check_qdq, quantize_qdq
    from edge_sdk_export.recovery import recover_qdq

    equalized, equalization = _equalized(job, fold_batchnorm=True)
    path = quantize_qdq(equalized, job.out_dir / f"{job.stem}.onnx", job.card, job.calib, scheme)
    recovery = None
    if job.recovery is not None and len(job.heldout):
        # Float layers take their weights from the graph that was quantized: the equalized one.
        recovery = recover_qdq(path, equalized, job.card, job.heldout, job.heldout_ref, job.recovery, job.work)
    float_nodes = () if recovery is None else recovery.float_nodes
    # Layers kept in float read no DequantizeLinear by design; check_qdq holds every other node to the scheme.
    kwargs = {"float_nodes": float_nodes} if float_nodes else {}
    exported = Exported([path], job.parent, {"qdq": check_qdq(path, scheme, **kwargs)})
    exported.checks["equalization"] = equalization
    if recovery is not None:
        exported.checks["recovery"] = recovery.to_check()
        exported.notes += [note] if (note := recovery.note()) else []
        exported.reason = recovery.reason
    return exported


def export_jetson(job: ExportJob) -> Exported:
    """QDQ INT8 ONNX for TensorRT: symmetric int8 activations + per-channel int8 weights, proven by check_qdq."""
    from edge_sdk_export.quant_onnx import TENSORRT_SCHEME, trtexec_command

    if job.recovery is not None:  # judged like the export judges it: QDQ simulated (TRT proxy)
        job = replace(job, recovery=replace(job.recovery, simulated=True))
    exported = _qdq_export(job, TENSORRT_SCHEME)
    exported.checks["trtexec"] = trtexec_command(exported.files[0].name, job.card)
    exported.notes.insert(0, "TensorRT is not run here; build the engine on the Jetson with the trtexec command.")
    return exported


def export_cpu(job: ExportJob) -> Exported:
    """QDQ INT8 ONNX for ONNX Runtime CPU: uint8 activations + per-channel int8 weights."""
    from edge_sdk_export.quant_onnx import ORT_CPU_SCHEME

    return _qdq_export(job, ORT_CPU_SCHEME)


def export_openvino(job: ExportJob) -> Exported:
    """OpenVINO IR INT8 via NNCF from the activation-equalized FP32 model; accuracy-controlled when ``max_drop``
    is set, else with the fewest activation tensors (else NNCF-ranked layers) left in float when the all-INT8 IR
    misses a gate (:mod:`edge_sdk_export.recovery_openvino`).

    The IR is also judged on the int8 kernels of smaller x86 CPUs this one reaches by capping oneDNN's ISA
    (:mod:`edge_sdk_export.capped_isa`: x86 without VNNI on a VNNI host). When it passes here but fails there, it
    is quantized again with NNCF's overflow fix in every layer, kept if that passes on both.
    """
    from edge_sdk_export.convert import onnx_to_openvino_fp32
    from edge_sdk_export.quant_openvino import FIRST_LAYER_OVERFLOW_FIX

    reference = onnx_to_openvino_fp32(job.parent, job.work / "openvino_fp32")
    # NNCF quantizes the activation-equalized copy (it equalizes nothing itself); the FP32 reference stays the parent
    equalized, equalization = _equalized(job, fold_batchnorm=True)
    job = replace(job, parent=equalized)
    xml = job.out_dir / f"{job.stem}.xml"
    recovery = _openvino_int8(job, xml, FIRST_LAYER_OVERFLOW_FIX, reference)
    other, overflow_fix, recovery = _portable_openvino(job, xml, reference, recovery)
    write_sidecar(job.card, [xml, xml.with_suffix(".bin")])
    checks: dict[str, Any] = {"accuracy_control": job.max_drop is not None, "max_drop": job.max_drop}
    checks["overflow_fix"] = overflow_fix
    checks["equalization"] = equalization
    files = [xml, xml.with_suffix(".bin"), xml.with_name(xml.stem + ".card.json")]
    exported = Exported(files, reference, checks, other_kernels=other)
    if recovery is not None:
        checks["recovery"] = recovery.to_check()
        exported.notes += [note] if (note := recovery.note()) else []
        exported.reason = recovery.reason
    if other:
        checks["kernel_classes"] = {j.kernels: j.to_check() for j in other}
    for j in other:
        if j.error:
            exported.notes.append(
                f"not judged on {j.kernels}: the IR did not run with {j.isa_cap} capping ({j.error}); capping is not "
                "a perfect stand-in for that CPU, so no verdict either way (the card does not claim that class)"
            )
    if overflow_fix != FIRST_LAYER_OVERFLOW_FIX:
        exported.notes.append(
            "NNCF's overflow fix in every layer (7-bit weights): with the first layer only, the IR failed its gates "
            "on x86 int8 kernels without VNNI"
        )
    return exported


def _openvino_int8(job: ExportJob, xml: Path, overflow_fix: str, reference: Path) -> Recovery | None:
    """Write the INT8 IR ``xml`` with ``overflow_fix``: accuracy-controlled on the fidelity score when the user set
    ``--max-drop``; otherwise all-INT8, with layers left in float when a gate fails (returns that
    :class:`~edge_sdk_export.recovery.Recovery`; None when recovery is off or has no held-out faces)."""
    from edge_sdk_export.fidelity import score_on_rows, worst_fidelity
    from edge_sdk_export.quant_openvino import quantize_openvino
    from edge_sdk_export.recovery_openvino import recover_openvino

    card = job.card
    if job.max_drop is not None:
        validation = (job.heldout, score_on_rows(card, job.heldout_ref, worst_fidelity))
        quantize_openvino(job.parent, xml, card, job.calib, validation, job.max_drop, overflow_fix)
        return None
    quantize_openvino(job.parent, xml, card, job.calib, overflow_fix=overflow_fix)
    if job.recovery is None or not len(job.heldout):
        return None

    def again(out: Path, validation: Any = None, max_iterations: int | None = None, float_layers: Any = ()) -> Path:
        drop = None if validation is None else 0.0
        return quantize_openvino(
            job.parent, out, card, job.calib, validation, drop, overflow_fix, max_iterations, float_layers
        )

    work = job.work / f"recovery-{overflow_fix}"
    return recover_openvino(xml, card, job.heldout, job.heldout_ref, job.recovery, work, again, reference)


def _gates(job: ExportJob) -> dict[str, Any]:
    """The run's gates (carried by the recovery settings), else the default ones."""
    from edge_sdk_export.fidelity import DEFAULT_GATES

    return dict(job.recovery.gates) if job.recovery is not None and job.recovery.gates else dict(DEFAULT_GATES)


def _passes_here(job: ExportJob, artifact: Path, recovery: Recovery | None) -> bool:
    """Every gate passes on this CPU's own kernels (the judgement the export records comes later); a recovery
    that ran has judged the IR it kept already."""
    from edge_sdk.backend import load_backend
    from edge_sdk_export.fidelity import apply_gates, compare, head_outputs

    if recovery is not None:
        return recovery.final.passed
    outputs = head_outputs(load_backend(artifact, card=job.card, threads=1), job.heldout)
    return apply_gates(compare(job.card, job.heldout_ref, outputs), _gates(job))[0]


def _portable_openvino(
    job: ExportJob, xml: Path, reference: Path, recovery: Recovery | None
) -> tuple[list[Any], str, Recovery | None]:
    """Judge ``xml`` on the kernel classes a capped oneDNN reaches; when it fails there but passes here, or fails
    here on x86 int8 kernels without VNNI (this CPU is the saturating class), quantize again with NNCF's
    all-layer overflow fix (recovered the same way) and keep that (over ``xml``) if it passes both. Returns the
    judgements, the fix used and the recovery of the IR kept.

    Why the second case: on a real AVX2-only AMD EPYC (2026-12-04) the FER2013 Xception's IR with the fix in the
    first layer only agreed 0.9615 natively and 8 float layers did not help (saturation is in every layer); on
    a VNNI host the capped judge had found the same 0.962 and the all-layer fix had passed (1.000)."""
    from edge_sdk.cpu import describe_cpu
    from edge_sdk_export.capped_isa import judge_capped
    from edge_sdk_export.quant_openvino import ALL_LAYERS_OVERFLOW_FIX, FIRST_LAYER_OVERFLOW_FIX

    here, gates = describe_cpu(), _gates(job)
    if not len(job.heldout):
        return [], FIRST_LAYER_OVERFLOW_FIX, recovery
    judged = judge_capped(xml, job.card, job.heldout, job.heldout_ref, gates, here, job.work / "capped")
    fails_capped, saturating_here = any(j.failed for j in judged), here.int8_kernels == SATURATING_KERNELS
    if not fails_capped and not saturating_here:
        return judged, FIRST_LAYER_OVERFLOW_FIX, recovery
    passes_here = _passes_here(job, xml, recovery)
    if fails_capped and passes_here:
        logger.info("OpenVINO IR fails on other int8 kernels; trying NNCF's overflow fix in every layer")
    elif saturating_here and not passes_here and not job.parent_misses:
        logger.info("OpenVINO IR fails on this CPU's int8 kernels (x86 without VNNI); trying NNCF's overflow fix in "
                    "every layer")  # fmt: skip
    else:
        return judged, FIRST_LAYER_OVERFLOW_FIX, recovery
    folder = job.work / "overflow_fix_all"
    folder.mkdir(parents=True, exist_ok=True)
    candidate = folder / xml.name
    retried_recovery = _openvino_int8(job, candidate, ALL_LAYERS_OVERFLOW_FIX, reference)
    retried = judge_capped(candidate, job.card, job.heldout, job.heldout_ref, gates, here, job.work / "capped")
    if not any(j.failed for j in retried) and _passes_here(job, candidate, retried_recovery):
        for suffix in (".xml", ".bin"):
            shutil.move(candidate.with_suffix(suffix), xml.with_suffix(suffix))
        return retried, ALL_LAYERS_OVERFLOW_FIX, retried_recovery
    logger.warning("NNCF's all-layer overflow fix did not pass on every kernel class either: kept the first IR")
    return judged, FIRST_LAYER_OVERFLOW_FIX, recovery


def export_rpi(job: ExportJob) -> Exported:
    """TFLite full-integer INT8 (int8 input and outputs) for LiteRT + XNNPACK; when a gate fails on the held-out
    faces and ``job.recovery`` allows, the ops feeding the failing heads stay float (float32 outputs, see
    :func:`edge_sdk_export.quant_tflite.recover_tflite`)."""
    from edge_sdk_export.convert import onnx_to_tflite_fp32
    from edge_sdk_export.quant_tflite import TfliteRecoveryInputs, quantize_tflite_recovering

    reference = onnx_to_tflite_fp32(job.parent, job.work / "tflite_fp32")
    inputs = None
    if job.recovery is not None and len(job.heldout):
        inputs = TfliteRecoveryInputs(job.heldout, job.heldout_ref, job.recovery, job.work / "recovery", reference)
    # BatchNorm left as it is: the graph onnx2tf converts stays the parent's, only its weights rescaled.
    equalized, equalization = _equalized(job, fold_batchnorm=False)
    path, card, recovery = quantize_tflite_recovering(
        equalized, job.out_dir / f"{job.stem}.tflite", job.card, job.calib, inputs
    )
    sidecar = write_sidecar(card, [path])
    mixed = recovery is not None and bool(recovery.float_layers)
    checks = {
        "input": {"dtype": card.input.dtype, "scale": card.input.scale, "zero_point": card.input.zero_point},
        "outputs": "float32 (head layers kept in float)"
        if mixed
        else "int8 (dequantized by the LiteRT backend with each tensor's scale/zero point)",
        "representative_rows": len(job.calib),
        "tensor_names": {h.name: h.output for h in card.heads},
        "equalization": equalization,
    }
    exported = Exported([path, sidecar], reference, checks)
    if recovery is not None:
        exported.checks["recovery"] = recovery.to_check()
        exported.notes += [note] if (note := recovery.note()) else []
        exported.reason = recovery.reason
    return exported


def exporter_for(target: str) -> Callable[[ExportJob], Exported]:
    """The export function ``TARGETS[target].exporter`` names (InputError when it cannot be imported)."""
    reference = get_target(target).exporter
    try:
        return resolve(reference)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InputError(f"target '{target}': its export function {reference!r} cannot be loaded ({exc})") from None
