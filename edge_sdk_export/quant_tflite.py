"""TFLite full-integer INT8 for Raspberry Pi (LiteRT + XNNPACK).

Path: onnx2tf turns the ONNX model into an NHWC TensorFlow saved_model (offline, see
:func:`edge_sdk_export.convert.run_onnx2tf`), then TensorFlow's ``TFLiteConverter`` quantizes it with our
calibration crops as the representative dataset. Why not onnx2tf's own ``-oiqt``: its calibration takes
NHWC data plus a mean/std it applies itself, and it still calls its sample-data download for image
models; feeding the converter the exact preprocessed tensors the runtime produces is simpler to get
right and to prove offline. Result: int8 weights and activations, **int8 input** (scale/zero point in the
card) and **int8 outputs** (the LiteRT backend dequantizes them with each tensor's own scale/zero point).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_sdk.backend.base import QuantParams, output_to_float, prepare_input, to_layout
from edge_sdk.contract.card import ModelCard
from edge_sdk.errors import ArtifactError


def _saved_model(fp32_onnx: Path, work: Path, log_path: Path, layout: str = "NCHW") -> Path:
    """onnx2tf -> NHWC saved_model in ``work`` (batch 1, offline); ``layout`` is the ONNX input's (card) layout."""
    from edge_sdk_export.convert import _log_tail, run_onnx2tf

    run_onnx2tf(fp32_onnx, work, log_path, layout)
    if not (work / "saved_model.pb").is_file():
        raise ArtifactError(f"{fp32_onnx}: onnx2tf wrote no saved_model; log tail:\n{_log_tail(log_path)}")
    return work


def _convert_int8(saved_model: Path, calib_nhwc: np.ndarray) -> bytes:
    import tensorflow as tf

    def representative():
        for i in range(len(calib_nhwc)):
            yield [calib_nhwc[i : i + 1]]

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


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
    return out_path, new_card
