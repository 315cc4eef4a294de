"""OpenVINO IR INT8 through NNCF post-training quantization (optionally with accuracy control)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.contract.card import ONNX_METADATA_KEY, ModelCard
from edge_sdk.errors import ArtifactError

CALIB_BATCH = 1  # NNCF collects statistics per item; batch 1 keeps the IR's dynamic batch untouched
# nncf.OverflowFix values: half-range (7-bit) weights in the first layer only (NNCF's default), or in every layer
# (NNCF's fix for int8 kernels without VNNI, whose u8 x s8 pair sums saturate in int16).
FIRST_LAYER_OVERFLOW_FIX = "first_layer_only"
ALL_LAYERS_OVERFLOW_FIX = "enable"


def _items(batch: np.ndarray) -> list[np.ndarray]:
    return [batch[i : i + CALIB_BATCH] for i in range(0, len(batch), CALIB_BATCH)]


def quantize_openvino(
    fp32_onnx: Path,
    xml_path: Path,
    card: ModelCard,
    calib: np.ndarray,
    validation: tuple[np.ndarray, Callable[[dict[str, np.ndarray], np.ndarray], float]] | None = None,
    max_drop: float | None = None,
    overflow_fix: str = FIRST_LAYER_OVERFLOW_FIX,
    max_iterations: int | None = None,
    float_layers: Sequence[str] = (),
) -> Path:
    """Write ``xml_path`` (+ ``.bin``): the ONNX model converted to OpenVINO and quantized to INT8 by NNCF.

    With ``max_drop`` and ``validation = (held_out_batch, score_fn)``, uses
    ``nncf.quantize_with_accuracy_control``: ``score_fn(outputs, rows)`` maps the model's raw outputs (tensor
    name -> array) on the held-out rows ``rows`` (NNCF also scores subsets) to a fidelity score in [0, 1]
    (1 = identical to FP32) and NNCF reverts the most harmful layers to FP32 until the score drops by at most
    ``max_drop``, reverting at most ``max_iterations`` groups of layers (None: no limit). ``float_layers``
    (op names) are left out of quantization (NNCF's ignored scope): their neighbours' bias correction is then
    computed around them, unlike layers accuracy control reverts after the fact.
    """
    import nncf
    import openvino as ov

    try:
        model = ov.convert_model(str(fp32_onnx))
    except Exception as exc:
        raise ArtifactError(f"{fp32_onnx}: OpenVINO could not convert it: {str(exc).strip()[:300]}") from None
    from nncf.quantization.advanced_parameters import (
        AdvancedAccuracyRestorerParameters,
        AdvancedQuantizationParameters,
        OverflowFix,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    from edge_sdk_export.onnx_io import to_layout

    calibration = nncf.Dataset(_items(to_layout(calib, card)))
    subset = len(calib)
    # Absolute min/max activation ranges instead of NNCF's default averaged per-sample ranges: users calibrate
    # on their own footage, which need not cover every face the model will see, and averaged ranges clip the
    # rest (measured on the demo: PSPI MAE vs FP32 0.37 -> 0.15, VA CCC 0.974 -> 0.997).
    # ``overflow_fix``: the exporter starts with NNCF's default (first layer) and falls back to every layer only
    # when the IR fails its gates on x86 kernels without VNNI (edge_sdk_export.capped_isa judges that natively).
    # Not every layer by default: measured 2026-12-03 (Xeon, x86-vnni) it cost the pruned demo's IR its gate on
    # VNNI (0.981 -> 0.9735 expression agreement), while the default leaves the FER2013 Xception's IR at 1.000 on
    # VNNI and 0.962 on AVX2 kernels.
    advanced = AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
        overflow_fix=OverflowFix(overflow_fix),
    )
    preset = nncf.QuantizationPreset.MIXED
    # Full bias correction instead of NNCF's fast one: it re-estimates each layer's bias shift on the quantized
    # model's own inputs, so errors do not accumulate through the residual stages (measured on the demo,
    # 2-core x86 dev box: expression agreement vs FP32 0.960 -> 0.987, PSPI MAE 0.146 -> 0.052; ~2 s extra).
    options: dict[str, Any] = {"fast_bias_correction": False}
    if float_layers:
        options["ignored_scope"] = nncf.IgnoredScope(names=list(float_layers))
    if max_drop is None or validation is None:
        quantized = nncf.quantize(
            model, calibration, subset_size=subset, preset=preset, advanced_parameters=advanced, **options
        )
    else:
        held_out, score_fn = validation
        names = list(card.output_tensors)

        # NNCF calls this on the whole held-out set, on subsets and on single items (to find its mode), with the
        # raw dataset items: each carries its row of the held-out batch, so ``score_fn`` compares the right
        # FP32 rows. The per-item outputs it also returns make NNCF rank layers by output error, not by a
        # per-item score (a one-face CCC means nothing).
        def validate(compiled: ov.CompiledModel, items) -> tuple[float, list[list[np.ndarray]]]:  # noqa: ANN001
            rows, per_item = [], []
            for row, item in items:
                result = compiled(item)
                per_item.append([np.asarray(result[compiled.output(name)]) for name in names])
                rows.append(row)
            outputs = {name: np.concatenate([item[i] for item in per_item]) for i, name in enumerate(names)}
            return float(score_fn(outputs, np.asarray(rows))), per_item

        quantized = nncf.quantize_with_accuracy_control(
            model,
            calibration,
            nncf.Dataset(list(enumerate(_items(to_layout(held_out, card)))), lambda pair: pair[1]),
            validate,
            max_drop=max_drop,
            subset_size=subset,
            preset=preset,
            advanced_quantization_parameters=advanced,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                **({} if max_iterations is None else {"max_num_iterations": max_iterations})
            ),
            **options,
        )
    # The converter copied the parent ONNX's card (FP32, no target) into rt_info: replace it with this artifact's.
    quantized.set_rt_info(card.to_json(indent=None), ["framework", ONNX_METADATA_KEY])
    ov.save_model(quantized, str(xml_path), compress_to_fp16=False)
    compact_ir_xml(xml_path)
    return xml_path


def compact_ir_xml(xml_path: Path) -> None:
    """Drop the indentation between XML tags of an IR, in place (``save_model`` pretty-prints it).

    The IR's graph text is a fixed cost per layer, independent of weight precision, so for a small INT8 model
    it is a large share of the artifact (the pruned demo: ~98 KB of XML against ~270 KB of weights). Only
    whitespace between tags goes; OpenVINO reads the result to the same graph (tested: identical outputs).
    """
    text = xml_path.read_text(encoding="utf-8")
    xml_path.write_text(re.sub(r">\s+<", "><", text), encoding="utf-8")


# Ops whose weights NNCF quantizes: one of them with float weights in an INT8 IR was kept in float.
WEIGHTED_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")
_WEIGHT_PATH_OPS = ("Multiply", "Subtract", "Convert", "Reshape", "Transpose", "Unsqueeze")


def int8_weight_ops(xml_path: Path) -> dict[str, bool]:
    """Each weighted op of the IR (friendly name) -> whether its weights are stored as integers (quantized).

    NNCF's saved INT8 IR stores a quantized layer's weights as an int8 constant dequantized by
    Convert/Subtract/Multiply; a layer its accuracy control reverted keeps a float32 constant.
    """
    import openvino as ov

    result = {}
    for op in ov.Core().read_model(str(xml_path)).get_ordered_ops():
        if op.get_type_name() not in WEIGHTED_OPS or op.get_input_size() < 2:
            continue
        result[op.get_friendly_name()] = _has_integer_constant(op.input_value(1).get_node())
    return result


def _has_integer_constant(node) -> bool:  # noqa: ANN001 (an openvino Node)
    """Whether the weight path above ``node`` (dequantization ops only) starts at an integer constant."""
    if node.get_type_name() == "Constant":
        return node.get_output_element_type(0).is_integral()
    if node.get_type_name() not in _WEIGHT_PATH_OPS:
        return False
    return any(_has_integer_constant(node.input_value(i).get_node()) for i in range(node.get_input_size()))
