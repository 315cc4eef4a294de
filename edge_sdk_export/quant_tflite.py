"""TFLite full-integer INT8 for Raspberry Pi (LiteRT + XNNPACK).

Path: onnx2tf turns the ONNX model into an NHWC TensorFlow saved_model (offline, see
:func:`edge_sdk_export.convert.run_onnx2tf`), then TensorFlow's ``TFLiteConverter`` quantizes it with our
calibration crops as the representative dataset. Why not onnx2tf's own ``-oiqt``: its calibration takes
NHWC data plus a mean/std it applies itself, and it still calls its sample-data download for image
models; feeding the converter the exact preprocessed tensors the runtime produces is simpler to get
right and to prove offline. Result: int8 weights and activations, **int8 input** (scale/zero point in the
card) and **int8 outputs** (the LiteRT backend dequantizes them with each tensor's own scale/zero point).

Accuracy recovery (:func:`recover_tflite`, the rpi analogue of :mod:`edge_sdk_export.recovery`): when the
all-INT8 file misses a fidelity gate on the held-out faces, TensorFlow's ``QuantizationDebugger`` re-quantizes
the same calibration with some ops *denylisted* (kept in float), searched as for the QDQ targets
(:func:`edge_sdk_export.recovery.find_float_layers`: every weighted op's damage alone in INT8 first) until every gate
passes or ``--max-float-layers`` is spent. The debugger writes float32 input and outputs; the input is turned
back to int8 with the all-INT8 file's scale/zero point (the card's), the outputs stay **float32** (a float head
has no int8 output to hand over; the LiteRT backend reads a float output as is).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.backend.base import QuantParams, output_to_float, prepare_input, to_layout
from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.processing import HeadOutputs
from edge_sdk.errors import ArtifactError
from edge_sdk_export.recovery import Recovery, RecoverySettings, Trial

logger = logging.getLogger(__name__)

# Ops with weights: the "layers" recovery can keep in float (the ops in between follow their inputs' type).
WEIGHTED_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "BATCH_MATMUL")


def _saved_model(fp32_onnx: Path, work: Path, log_path: Path, layout: str = "NCHW") -> Path:
    """onnx2tf -> NHWC saved_model in ``work`` (batch 1, offline); ``layout`` is the ONNX input's (card) layout."""
    from edge_sdk_export.convert import _log_tail, run_onnx2tf

    run_onnx2tf(fp32_onnx, work, log_path, layout)
    if not (work / "saved_model.pb").is_file():
        raise ArtifactError(f"{fp32_onnx}: onnx2tf wrote no saved_model; log tail:\n{_log_tail(log_path)}")
    return work


def _representative(calib_nhwc: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    def representative() -> Iterator[list[np.ndarray]]:
        for i in range(len(calib_nhwc)):
            yield [calib_nhwc[i : i + 1]]

    return representative


def _converter(saved_model: Path, calib_nhwc: np.ndarray) -> Any:
    """The full-integer converter (int8 input and outputs) with ``calib_nhwc`` as its representative dataset."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(calib_nhwc)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter


def _convert_int8(saved_model: Path, calib_nhwc: np.ndarray) -> bytes:
    return _converter(saved_model, calib_nhwc).convert()


def _convert_mixed(saved_model: Path, calib_nhwc: np.ndarray, float_nodes: list[str]) -> bytes:
    """Full-integer conversion with the ops producing ``float_nodes`` (tensor names) kept in float: int8 input
    (same calibration, so the all-INT8 file's scale/zero point), float32 outputs."""
    import tensorflow as tf
    from tensorflow.lite.python.util import modify_model_io_type

    converter = _converter(saved_model, calib_nhwc)
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(float_nodes))
    with warnings.catch_warnings():  # the debugger runs tf.lite.Interpreter, which warns it is deprecated
        warnings.simplefilter("ignore", UserWarning)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=_representative(calib_nhwc[:1]), debug_options=options
        )
        flat = debugger.get_nondebug_quantized_model()  # float32 input and outputs
    return bytes(modify_model_io_type(flat, tf.int8, tf.float32))


def tflite_ops(flat: bytes) -> list[dict[str, Any]]:
    """The ops of a ``.tflite`` (name, input/output tensor names and dtypes), in execution order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flat)
    ops = []
    for op in interpreter._get_ops_details():  # noqa: SLF001 (LiteRT has no public op listing)
        tensors = {
            key: [interpreter._get_tensor_details(i, 0) for i in op[key] if i >= 0]  # noqa: SLF001
            for key in ("inputs", "outputs")
        }
        ops.append(
            {
                "op": op["op_name"],
                "inputs": [t["name"] for t in tensors["inputs"]],
                "input_dtypes": [np.dtype(t["dtype"]).name for t in tensors["inputs"]],
                "outputs": [t["name"] for t in tensors["outputs"]],
            }
        )
    return ops


def float_ops(flat: bytes) -> list[str]:
    """Output tensor names of the weighted ops that run in float (a float32 activation input)."""
    return [
        op["outputs"][0]
        for op in tflite_ops(flat)
        if op["op"] in WEIGHTED_OPS and op["outputs"] and op["input_dtypes"][:1] == ["float32"]
    ]


def layer_members(flat: bytes) -> dict[str, list[str]]:
    """Each weighted op's *layer*: its output tensor name -> that name and the outputs of the ops that follow it
    (activations, element-wise ops, pads, pooling), each op belonging to the layer of its first input that has
    one. Recovery keeps whole layers in float: a weighted op alone in float still hands its output to an INT8
    activation (MobileNetV3's HardSwish is five such ops), so the tensor is quantized anyway. Measured on the
    pruned MobileNetV3-small rpi file (AVX2 EPYC): weighted ops alone in float reached VA CCC 0.947 with 16."""
    owner: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for op in tflite_ops(flat):
        if op["op"] in ("DELEGATE", "QUANTIZE", "DEQUANTIZE") or not op["outputs"]:
            continue
        if op["op"] in WEIGHTED_OPS:
            layer = op["outputs"][0]
            members[layer] = []
        else:
            layer = next((owner[name] for name in op["inputs"] if name in owner), None)
            if layer is None:
                continue
        members[layer] += op["outputs"]
        owner.update(dict.fromkeys(op["outputs"], layer))
    return members


def layers_back_from(flat: bytes, outputs: list[str]) -> list[str]:
    """Weighted ops (their output tensor names) that feed ``outputs``, nearest first (breadth-first backwards)."""
    ops = [op for op in tflite_ops(flat) if op["op"] != "DELEGATE"]
    producer = {name: op for op in ops for name in op["outputs"]}
    order: list[str] = []
    seen: set[str] = set()
    frontier = list(outputs)
    while frontier:
        nxt: list[str] = []
        for tensor in frontier:
            op = producer.get(tensor)
            if op is None or tensor in seen:
                continue
            seen.add(tensor)
            if op["op"] in WEIGHTED_OPS and op["outputs"][0] not in order:
                order.append(op["outputs"][0])
            nxt += op["inputs"]
        frontier = nxt
    return order


def _run_int8(tflite_path: Path, x_nchw: np.ndarray) -> tuple[dict[str, np.ndarray], QuantParams]:
    """Dequantized outputs of the int8 model on preprocessed NCHW rows (one invoke per row), and its input
    quantization; the input is prepared and the outputs dequantized exactly as the LiteRT backend does."""
    from ai_edge_litert.interpreter import Interpreter

    from edge_sdk.backend.litert_backend import tensor_quant

    interpreter = Interpreter(model_path=str(tflite_path), num_threads=1)
    interpreter.allocate_tensors()
    (detail,) = interpreter.get_input_details()
    quant = tensor_quant(detail)
    if quant is None:
        raise ArtifactError(f"{tflite_path}: the TFLite converter left the int8 input without scale/zero point")
    x = prepare_input(x_nchw, "NHWC", detail["dtype"], quant)
    outputs: dict[str, list[np.ndarray]] = {}
    for row in x:
        interpreter.set_tensor(detail["index"], row[None])
        interpreter.invoke()
        for out in interpreter.get_output_details():
            value = output_to_float(interpreter.get_tensor(out["index"]), tensor_quant(out))
            outputs.setdefault(out["name"], []).append(value.reshape(1, -1))
    return {k: np.concatenate(v) for k, v in outputs.items()}, quant


def _match_outputs(produced: dict[str, np.ndarray], expected: dict[str, np.ndarray], where: Path) -> dict[str, str]:
    """ONNX output -> TFLite output: each ONNX output takes the same-size TFLite output it correlates with best.

    Quantized outputs differ from FP32 by design, so names are paired by correlation (unique assignment)
    instead of a tolerance.
    """
    mapping: dict[str, str] = {}
    for onnx_name, ref in sorted(expected.items(), key=lambda kv: -kv[1].size):
        ref = ref.reshape(len(ref), -1)
        scores = {}
        for name, value in produced.items():
            if name in mapping.values() or value.shape != ref.shape:
                continue
            a, b = value.ravel() - value.mean(), ref.ravel() - ref.mean()
            scores[name] = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
        if not scores:
            raise ArtifactError(f"{where}: no TFLite output has the shape of ONNX output {onnx_name!r}")
        mapping[onnx_name] = max(scores, key=scores.get)  # type: ignore[arg-type]
    return mapping


def quantize_tflite(fp32_onnx: Path, out_path: Path, card: ModelCard, calib: np.ndarray) -> tuple[Path, ModelCard]:
    """Write a full-integer INT8 ``.tflite`` and return it with its card (NHWC int8 input, TFLite output names).

    ``calib`` is the preprocessed NCHW float32 calibration batch. The caller writes the sidecar.
    """
    path, new_card, _ = quantize_tflite_recovering(fp32_onnx, out_path, card, calib)
    return path, new_card


class TfliteRecoveryInputs:
    """What :func:`recover_tflite` judges on: the held-out batch, the FP32 parent's raw outputs on it, the
    settings (budget, gates), a scratch folder and the FP32 ``.tflite`` (latency reference; optional)."""

    def __init__(
        self,
        heldout: np.ndarray,
        heldout_ref: HeadOutputs,
        settings: RecoverySettings,
        work: Path,
        fp32_tflite: Path | None = None,
    ) -> None:
        self.heldout = heldout
        self.heldout_ref = heldout_ref
        self.settings = settings
        self.work = work
        self.fp32_tflite = fp32_tflite


def quantize_tflite_recovering(
    fp32_onnx: Path,
    out_path: Path,
    card: ModelCard,
    calib: np.ndarray,
    recovery: TfliteRecoveryInputs | None = None,
) -> tuple[Path, ModelCard, Recovery | None]:
    """:func:`quantize_tflite`, then (with ``recovery``) :func:`recover_tflite` on the result: the file written,
    its card (float32 outputs when layers were kept in float) and what recovery did (None: not run)."""
    from edge_sdk.backend.onnxruntime_backend import open_session

    calib_nhwc = np.ascontiguousarray(to_layout(calib, "NHWC"))
    with tempfile.TemporaryDirectory(prefix="edge-sdk-tflite-") as tmp:
        work = Path(tmp)
        saved = _saved_model(fp32_onnx, work / "model", work / "onnx2tf.log", card.input.layout)
        from edge_sdk_export.convert import _log_tail, _quiet, check_litert_loads

        log_path = work / "tflite_converter.log"
        try:
            with _quiet(log_path):
                flat = _convert_int8(saved, calib_nhwc)
        except Exception as exc:
            raise ArtifactError(
                f"{fp32_onnx}: TFLite int8 conversion failed: {str(exc).strip()[:400]}; "
                f"log tail:\n{_log_tail(log_path)}"
            ) from None
        out_path.write_bytes(flat)
        check_litert_loads(out_path)  # in a child: a LiteRT abort must not reach this process

        probe = calib[: min(16, len(calib))]
        session = open_session(fp32_onnx, threads=1)
        names = list(card.output_tensors)
        feed = np.ascontiguousarray(to_layout(probe, card.input.layout))
        expected = dict(zip(names, session.run(names, {card.input.name: feed}), strict=True))
        produced, (scale, zero_point) = _run_int8(out_path, probe)
        mapping = _match_outputs(produced, expected, out_path)
        new_card = card.with_changes(
            input=replace(card.input, layout="NHWC", dtype="int8", scale=scale, zero_point=zero_point),
            heads=tuple(replace(h, output=mapping[h.tensor]) for h in card.heads),
        )
        result = None
        if recovery is not None and len(recovery.heldout):
            result, new_card = recover_tflite(out_path, new_card, saved, calib_nhwc, recovery, log_path)
    return out_path, new_card, result


def _renamed_outputs(int8_flat: bytes, mixed_flat: bytes, card: ModelCard) -> ModelCard:
    """``card`` for the mixed file: its heads' outputs renamed to the mixed file's (same output order as the
    all-INT8 file) and its input's scale/zero point (the same calibration gives the same ones)."""
    from ai_edge_litert.interpreter import Interpreter

    from edge_sdk.backend.litert_backend import tensor_quant

    def names(flat: bytes) -> list[str]:
        return [d["name"] for d in Interpreter(model_content=flat).get_output_details()]

    (detail,) = Interpreter(model_content=mixed_flat).get_input_details()
    quant = tensor_quant(detail)
    if np.dtype(detail["dtype"]) != np.int8 or quant is None:
        raise ArtifactError("mixed .tflite lost the int8 input")
    card = card.with_changes(input=replace(card.input, scale=quant[0], zero_point=quant[1]))
    before, after = names(int8_flat), names(mixed_flat)
    if before == after:
        return card
    if len(before) != len(after):
        raise ArtifactError(f"mixed .tflite has {len(after)} outputs, the all-INT8 file {len(before)}")
    rename = dict(zip(before, after, strict=True))
    return card.with_changes(heads=tuple(replace(h, output=rename[h.output]) for h in card.heads))


class _TfliteJudge:
    """Judges ``.tflite`` candidates on the held-out batch through the LiteRT backend (recovery's gates)."""

    def __init__(self, card: ModelCard, inputs: TfliteRecoveryInputs) -> None:
        from edge_sdk_export.recovery import _Judge

        self.candidate_card = card
        self.inner = _Judge(card, inputs.heldout, inputs.heldout_ref, inputs.settings, inputs.work, self._outputs)

    def _outputs(self, model: Any) -> HeadOutputs:
        from edge_sdk.backend import load_backend
        from edge_sdk_export.fidelity import head_outputs
        from edge_sdk_export.recovery import EVAL_BATCH

        backend = load_backend(Path(model), card=self.candidate_card, threads=self.inner.threads)
        return head_outputs(backend, self.inner.heldout, EVAL_BATCH)

    def judge(self, path: Path, card: ModelCard, layers: tuple[str, ...]) -> Trial:
        self.candidate_card = card
        return self.inner.judge(path, layers)

    @property
    def count(self) -> int:
        return int(self.inner.count)


def recover_tflite(
    path: Path,
    card: ModelCard,
    saved_model: Path,
    calib_nhwc: np.ndarray,
    inputs: TfliteRecoveryInputs,
    log_path: Path,
) -> tuple[Recovery, ModelCard]:
    """Judge the all-INT8 ``.tflite`` at ``path``; when a gate fails, keep weighted ops in float (denylisted in
    the quantizer) until every gate passes or the budget is spent, and rewrite ``path`` with the mixed file.

    The search is the QDQ one (:func:`edge_sdk_export.recovery.find_float_layers`) over every weighted op feeding a
    head, each variant one conversion (about 2-4 s here): ranked by the damage of the op alone in INT8 (every
    other weighted op denylisted), then added one per step judged beside those kept; once the gates pass, every
    kept op they do not need is dropped again; the leave-one-op-in-float order when that found nothing. Returns
    what was done and the card of the file written (float32 outputs when mixed); over budget the all-INT8 file
    stays and :attr:`Recovery.reason` says so.
    """
    from edge_sdk_export.convert import check_litert_loads
    from edge_sdk_export.recovery import find_float_layers

    start = time.perf_counter()
    inputs.work.mkdir(parents=True, exist_ok=True)
    judge = _TfliteJudge(card, inputs)
    baseline = judge.judge(path, card, ())
    budget = max(0, int(inputs.settings.max_float_layers))
    if baseline.passed or budget == 0:
        return Recovery(budget, baseline, baseline, evaluations=judge.count, seconds=time.perf_counter() - start), card
    logger.info("rpi recovery: all-INT8 misses %s; ranking ops left in float", "; ".join(baseline.failing))
    judge.inner.focus_on(baseline)
    baseline = judge.judge(path, card, ())
    int8_flat = path.read_bytes()
    mixed = _MixedVariants(
        saved_model, calib_nhwc, int8_flat, card, judge, inputs.work / f"{path.stem}.candidate.tflite", log_path
    )
    ops = layers_back_from(int8_flat, [h.output for h in card.heads])
    best, tried, ranking = find_float_layers(ops, mixed.trial, baseline, budget)
    if not best.passed:
        logger.warning("rpi recovery: budget of %d float layers hit without passing every gate", budget)
        seconds = time.perf_counter() - start
        return Recovery(budget, baseline, baseline, tried, ranking, {}, judge.count, seconds, best=best), card
    best_flat, best_card = mixed.build(list(best.float_layers))
    int8_copy = inputs.work / f"{path.stem}.all_int8.tflite"
    int8_copy.write_bytes(int8_flat)
    path.write_bytes(best_flat)
    check_litert_loads(path)
    cost = _cost(int8_copy, card, path, best_card, inputs)
    logger.info("rpi recovery: kept in float %s (%s)", ", ".join(best.float_layers), cost)
    seconds = time.perf_counter() - start
    nodes = tuple(float_ops(best_flat))
    return Recovery(budget, baseline, best, tried, ranking, cost, judge.count, seconds, float_nodes=nodes), best_card


class _MixedVariants:
    """Builds and judges mixed-precision variants of one all-INT8 file (the search judges each op set once)."""

    def __init__(
        self,
        saved_model: Path,
        calib_nhwc: np.ndarray,
        int8_flat: bytes,
        card: ModelCard,
        judge: _TfliteJudge,
        candidate: Path,
        log_path: Path,
    ) -> None:
        self.saved_model, self.calib_nhwc, self.int8_flat, self.card = saved_model, calib_nhwc, int8_flat, card
        self.judge, self.candidate, self.log_path = judge, candidate, log_path
        self.members = layer_members(int8_flat)

    def build(self, layers: list[str]) -> tuple[bytes, ModelCard]:
        """The mixed file with ``layers`` (:func:`layer_members`) in float and its card (raises when the converter
        refuses)."""
        from edge_sdk_export.convert import _quiet

        float_nodes = [name for layer in layers for name in self.members.get(layer, [layer])]
        with _quiet(self.log_path):
            flat = _convert_mixed(self.saved_model, self.calib_nhwc, float_nodes)
        return flat, _renamed_outputs(self.int8_flat, flat, self.card)

    def trial(self, layers: list[str]) -> Trial:
        """The judged variant; one that cannot be built is a failing trial with infinite error (logged)."""
        from edge_sdk_export.convert import _log_tail

        key = tuple(layers)
        try:
            flat, card = self.build(layers)
        except Exception as exc:  # noqa: BLE001 (the converter raises many types; the variant is skipped)
            logger.warning("rpi recovery: %s in float refused: %s; %s", key, exc, _log_tail(self.log_path))
            refused = ("the TFLite converter could not keep these ops in float",)
            return Trial(key, {}, False, math.inf, math.inf, refused)
        self.candidate.write_bytes(flat)
        return self.judge.judge(self.candidate, card, key)


def _cost(
    int8: Path, int8_card: ModelCard, mixed: Path, mixed_card: ModelCard, inputs: TfliteRecoveryInputs
) -> dict[str, Any]:
    """Size and batch-1 LiteRT latency (p50, runs interleaved) of the mixed file vs the all-INT8 one and the FP32
    ``.tflite`` (when given)."""
    from edge_sdk.backend import load_backend

    threads = inputs.settings.threads
    backends = {
        "all_int8": load_backend(int8, card=int8_card, threads=threads),
        "mixed": load_backend(mixed, card=mixed_card, threads=threads),
    }
    if inputs.fp32_tflite is not None:
        try:  # its sidecar card (onnx_to_tflite_fp32 writes one)
            backends["fp32"] = load_backend(inputs.fp32_tflite, threads=threads)
        except Exception as exc:  # noqa: BLE001 (the reference is optional for the cost)
            logger.info("rpi recovery: FP32 .tflite not timed (%s)", exc)
    from edge_sdk_export.recovery import mixed_cost

    return mixed_cost(backends, int8, mixed, inputs.heldout, inputs.settings.latency_runs)
