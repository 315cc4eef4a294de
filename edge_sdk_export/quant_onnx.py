"""QDQ INT8 ONNX for TensorRT (jetson) and for ONNX Runtime CPU (cpu), plus a structural check of the QDQ scheme.

Both use ``onnxruntime.quantization.quantize_static`` in QDQ format with per-channel int8 weights. They differ
in activations: TensorRT's explicit quantization wants symmetric int8 (zero point 0) everywhere, while ONNX
Runtime's CPU int8 kernels are fast with uint8 activations and slow with symmetric int8 ones (0.5-0.8x FP32
measured), so the two files are never interchangeable.

The cpu file stores 7-bit weights (``reduce_range``, see :class:`QdqScheme`): with 8-bit weights onnxruntime's
u8s8 kernels on x86 without VNNI saturate in int16, and the same file that agrees 0.997 with FP32 on a VNNI CPU
agreed 0.907 on an AVX2 one; with 7 bits it computes the same integers on AVX2, VNNI and ARM. The TensorRT file
keeps 8 bits (TensorRT accumulates in int32); only its ORT CPU proxy saturates on such hosts.
benchmarks/int8_isa.py measures the schemes per kernel class (benchmarks/results/int8_isa.md).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.contract.card import ModelCard
from edge_sdk.errors import ArtifactError
from edge_sdk_export.onnx_card import set_card

MIN_TENSORRT_OPSET = 13
CALIB_BATCH = 16
# Ops whose weight input must be per-channel for TensorRT's explicit quantization to pick int8 kernels.
PER_CHANNEL_OPS = ("Conv", "ConvTranspose")
# Ops whose input 1 is a weight, held to the scheme's weight rules (int8, zero point 0).
WEIGHT_OPS = (*PER_CHANNEL_OPS, "Gemm", "MatMul")


@dataclass(frozen=True)
class QdqScheme:
    """How a QDQ file is quantized: activation type and symmetry, weight type and range, calibration.

    ``reduce_range`` stores weights in 7 bits (int8 in [-64, 64], still int8 QDQ with zero point 0): x86 CPUs
    without VNNI multiply uint8 activations by int8 weights with ``vpmaddubsw``, which adds each pair of
    products in int16 and saturates once ``255 * |w1| + 255 * |w2|`` passes 32,767; with |w| <= 64 no pair can,
    so the file computes the same integers on AVX2, VNNI and ARM (onnxruntime documents this for non-VNNI x86).
    ``weights`` other than int8 (uint8: onnxruntime's U8U8) exist for benchmarks/int8_isa.py's comparison.
    """

    activation: str  # "int8" | "uint8"
    symmetric_activations: bool
    calibration: str = "minmax"  # "minmax" | "percentile"
    percentile: float = 99.999
    reduce_range: bool = False
    weights: str = "int8"  # "int8" | "uint8"


# Activation ranges from the 99.999th percentile instead of min/max: a few outlier activations otherwise
# stretch the range and cost resolution everywhere (worst for symmetric int8 after ReLU, which has 7 bits
# left). Measured on the demo, expression agreement vs FP32: jetson 0.973 -> 0.983, cpu 0.970 -> 0.980.
TENSORRT_SCHEME = QdqScheme(activation="int8", symmetric_activations=True, calibration="percentile")
# 7-bit weights (reduce_range) for the cpu file: measured (benchmarks/results/int8_isa.md) on the demo, expression
# agreement vs FP32 0.981 on VNNI *and* under an emulated AVX2 CPU, at the same speed on VNNI (0.37x FP32);
# with 8-bit weights 0.995 on VNNI but 0.841 on AVX2. U8U8 held 0.997 on both but ran 0.85x FP32 on VNNI.
# TensorRT never saturates, so the jetson file keeps 8-bit weights (7-bit cost it 0.979 -> 0.974).
ORT_CPU_SCHEME = QdqScheme(activation="uint8", symmetric_activations=False, calibration="percentile", reduce_range=True)
# Largest |weight| a reduce_range file may hold: 255 * 64 * 2 = 32,640 fits the int16 pair sums of x86 without VNNI.
REDUCED_WEIGHT_MAX = 64


class _BatchReader:
    """onnxruntime CalibrationDataReader over a preprocessed NCHW float32 batch."""

    def __init__(self, input_name: str, batch: np.ndarray) -> None:
        self._input_name = input_name
        self._batch = batch
        # Histogram calibrators stack per-batch outputs, so every batch must have the same size.
        self._size = max(d for d in range(1, CALIB_BATCH + 1) if len(batch) % d == 0)
        self._it: Iterator[dict[str, np.ndarray]] | None = None
        self.rewind()

    def rewind(self) -> None:
        size = self._size
        self._it = ({self._input_name: self._batch[i : i + size]} for i in range(0, len(self._batch), size))

    def get_next(self) -> dict[str, np.ndarray] | None:
        assert self._it is not None
        return next(self._it, None)


def name_unnamed_nodes(model: Any) -> int:
    """Give every node without a name ``<op_type>:<first output>`` (in place); returns how many were named.

    onnxruntime's ``quant_pre_process`` inlines ONNX functions into nodes without names (torch.onnx writes
    HardSwish as a function: it becomes an unnamed HardSigmoid and Mul). Accuracy recovery can only keep a
    named node in float and name it in the report, so unnamed nodes would stay INT8 whatever it tried. The
    names come from tensor names, so the same parent gets the same names in every prepared copy.
    """
    taken = {node.name for node in model.graph.node if node.name}
    named = 0
    for node in model.graph.node:
        if node.name:
            continue
        base = f"{node.op_type}:{node.output[0] if node.output else ''}"
        name, suffix = base, 1
        while name in taken:
            name, suffix = f"{base}#{suffix}", suffix + 1
        node.name = name
        taken.add(name)
        named += 1
    return named


def prepare_for_quantization(src: Path, dst: Path) -> Any:
    """onnxruntime's ``quant_pre_process`` of ``src`` into ``dst`` (BatchNorm folded into Conv, shapes inferred:
    the graph ONNX Runtime and TensorRT will run), every node named (:func:`name_unnamed_nodes`); returns the
    prepared ``onnx.ModelProto`` as written."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    model = onnx.load(str(dst))
    if name_unnamed_nodes(model):
        onnx.save(model, str(dst))
    return model


def quantize_qdq(fp32_onnx: Path, out_path: Path, card: ModelCard, calib: np.ndarray, scheme: QdqScheme) -> Path:
    """Write a QDQ INT8 copy of ``fp32_onnx`` calibrated on the NCHW float32 ``calib`` batch (fed to the model in
    its card's layout), card embedded."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edge_sdk_export.equalize import EQUALIZE_UNSCALE_PREFIX
    from edge_sdk_export.onnx_io import to_layout

    activation_type = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[scheme.activation]
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[scheme.calibration]
    prepared = out_path.with_name(out_path.stem + ".prep.onnx")
    try:
        nodes = prepare_for_quantization(fp32_onnx, prepared).graph.node
        unscaling = [n.name for n in nodes if n.name.startswith(EQUALIZE_UNSCALE_PREFIX)]
        quantize_static(
            str(prepared),
            str(out_path),
            _BatchReader(card.input.name, to_layout(calib, card)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=activation_type,
            weight_type={"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[scheme.weights],
            reduce_range=scheme.reduce_range,
            calibrate_method=method,
            nodes_to_exclude=unscaling,  # per-channel constants of activation equalization (edge_sdk_export.equalize)
            extra_options={
                "ActivationSymmetric": scheme.symmetric_activations,
                "WeightSymmetric": scheme.weights == "int8",
                "CalibPercentile": scheme.percentile,
            },
        )
    except Exception as exc:
        raise ArtifactError(f"{fp32_onnx}: ONNX Runtime static quantization failed: {str(exc)[:300]}") from None
    finally:
        prepared.unlink(missing_ok=True)
    model = onnx.load(str(out_path))
    drop_output_qdq(model)
    shorten_tensor_names(model)
    set_card(model, card, indent=None)  # quantize_static drops metadata
    onnx.save(model, str(out_path))
    return out_path


def drop_output_qdq(model: Any) -> int:
    """Remove Quantize/Dequantize pairs that only re-quantize graph outputs (in place); returns how many.

    ``quantize_static`` also quantizes the last Gemm's output, which rounds the head logits/intensities to
    256 levels (enough to flip near-tied expression logits) and buys nothing: nothing runs after it. Without
    the pair the head layers still take int8 inputs and weights; only their result stays in float.
    """
    graph = model.graph
    outputs = {o.name for o in graph.output}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    removed = []
    for dq in graph.node:
        if dq.op_type != "DequantizeLinear" or dq.output[0] not in outputs:
            continue
        q = producers.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or consumers.get(q.output[0], 0) != 1:
            continue
        source = producers.get(q.input[0])
        if source is None or consumers.get(q.input[0], 0) != 1:
            continue
        source.output[list(source.output).index(q.input[0])] = dq.output[0]
        removed += [q, dq]
    for node in removed:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    return len(removed) // 2


def shorten_tensor_names(model: Any) -> None:
    """Rename internal tensors to ``t0, t1, ...`` (in place).

    ``quantize_static`` names every tensor after its source plus suffixes (``..._DequantizeLinear_Output``,
    ``..._quantized_zero_point``); in the pruned demo's TensorRT file those names were 25 KB of 318 KB, and
    each appears once per use. Graph inputs and outputs keep their names (the card refers to them) and node
    names keep the module path, which is what TensorRT and Netron show as layer names.
    """
    graph = model.graph
    keep = {t.name for t in graph.input} | {t.name for t in graph.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for init in graph.initializer:
        init.name = short(init.name)
    for node in graph.node:
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for info in graph.value_info:
        info.name = short(info.name)


def _initializers(model: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def check_qdq(onnx_path: Path, scheme: QdqScheme, float_nodes: Collection[str] = ()) -> dict[str, Any]:
    """Prove the QDQ properties of a quantized file; raise ArtifactError naming the first violation.

    Checks: opset >= 13; every Q/DQ has a constant, positive scale and a constant zero point; activations
    have the scheme's dtype, with zero points all 0 when activations are symmetric; weights (the constant
    read as input 1 of Conv/ConvTranspose/Gemm/MatMul) have the scheme's dtype (int8: zero point 0, and
    with ``reduce_range`` every value within +-64, what keeps non-VNNI x86 from saturating); every Conv weight is
    dequantized per-channel (1-D scale, one per output channel); every Conv reads quantized activations.
    Other constants (biases, Mul/Add/Sub/Div operands such as in-graph normalisation) may have any integer
    type but must match their zero point's type. ``float_nodes``: layers accuracy recovery kept in float on
    purpose (:mod:`edge_sdk_export.recovery`); the convolution checks skip them and they are listed in the
    result; a name that is not a node of the graph is an error. Returns counts for the report.
    """
    import onnx

    model = onnx.load(str(onnx_path))
    where = f"{onnx_path}"
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_TENSORRT_OPSET:
        raise ArtifactError(f"{where}: opset {opset} < {MIN_TENSORRT_OPSET} (QDQ per-channel needs opset 13)")
    missing = sorted(set(float_nodes) - {n.name for n in model.graph.node})
    if missing:
        raise ArtifactError(f"{where}: float layer(s) not in the graph: {', '.join(missing)}")
    inits = _initializers(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    weights = _weight_tensors(model)
    act_dtype = np.dtype(scheme.activation)
    weight_dtype = np.dtype(scheme.weights)
    counts = {"quantize": 0, "dequantize": 0, "per_channel_weights": 0, "per_tensor_weights": 0, "conv": 0}
    counts["float_conv"] = 0
    counts["other_constants"] = 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        counts["quantize" if node.op_type == "QuantizeLinear" else "dequantize"] += 1
        zero_point = _checked_zero_point(node, inits, where)
        constant = node.op_type == "DequantizeLinear" and node.input[0] in inits
        if constant and node.output[0] not in weights:
            data = inits[node.input[0]]
            if data.dtype != zero_point.dtype:
                raise ArtifactError(f"{where}: {node.name!r} data is {data.dtype} but zero point is {zero_point.dtype}")
            counts["other_constants"] += 1
            continue
        expected = weight_dtype if constant else act_dtype
        if zero_point.dtype != expected:
            raise ArtifactError(f"{where}: {node.name!r} zero point is {zero_point.dtype}, expected {expected}")
        symmetric = weight_dtype == np.int8 if constant else scheme.symmetric_activations
        if symmetric and np.any(zero_point != 0):
            raise ArtifactError(f"{where}: {node.name!r} has a non-zero zero point (not symmetric)")
        if constant and scheme.reduce_range and weight_dtype == np.int8:
            largest = int(np.abs(inits[node.input[0]].astype(np.int32)).max(initial=0))
            if largest > REDUCED_WEIGHT_MAX:
                raise ArtifactError(
                    f"{where}: {node.name!r} holds weight {largest} > {REDUCED_WEIGHT_MAX}: not reduce_range "
                    "(7-bit) weights, so x86 without VNNI can saturate"
                )
        if constant:
            per_channel = inits[node.input[1]].size > 1
            counts["per_channel_weights" if per_channel else "per_tensor_weights"] += 1
    for node in model.graph.node:
        if node.op_type not in PER_CHANNEL_OPS:
            continue
        counts["conv"] += 1
        if node.name in float_nodes:
            counts["float_conv"] += 1
            continue
        x_src, w_src = producers.get(node.input[0]), producers.get(node.input[1])
        if x_src is None or x_src.op_type != "DequantizeLinear":
            raise ArtifactError(f"{where}: {node.op_type} {node.name!r} input is not quantized (no DequantizeLinear)")
        if w_src is None or w_src.op_type != "DequantizeLinear" or w_src.input[0] not in inits:
            raise ArtifactError(f"{where}: {node.op_type} {node.name!r} weight is not a quantized constant")
        weight, scale = inits[w_src.input[0]], inits[w_src.input[1]]
        if weight.dtype != weight_dtype:
            raise ArtifactError(f"{where}: {node.name!r} weight is {weight.dtype}, expected {weight_dtype}")
        if scale.ndim != 1 or scale.size != weight.shape[0]:
            raise ArtifactError(
                f"{where}: {node.name!r} weight scale has shape {list(scale.shape)}, expected per-channel "
                f"[{weight.shape[0]}]"
            )
    if counts["conv"] - counts["float_conv"] == 0 or counts["quantize"] == 0:
        raise ArtifactError(f"{where}: no quantized convolutions found; this is not a QDQ INT8 model")
    scheme_fields = {"activations": scheme.activation, "symmetric": scheme.symmetric_activations}
    scheme_fields |= {"weights": scheme.weights, "reduce_range": scheme.reduce_range}
    return {"opset": opset, **scheme_fields, **counts, "float_nodes": sorted(float_nodes)}


def _weight_tensors(model: Any) -> set[str]:
    """Tensors read as the weight (input 1) of a Conv/ConvTranspose/Gemm/MatMul: the ones the scheme's
    weight rules apply to. Biases and the operands of other ops (Mul/Add scalars, shapes) are not weights."""
    return {node.input[1] for node in model.graph.node if node.op_type in WEIGHT_OPS and len(node.input) > 1}


def _checked_zero_point(node: Any, inits: dict[str, np.ndarray], where: str) -> np.ndarray:
    """The constant zero point of a Q/DQ node, after checking its scale is constant, finite and positive."""
    if len(node.input) < 3 or node.input[2] not in inits:
        raise ArtifactError(f"{where}: {node.op_type} {node.name!r} has no constant zero point")
    scale = inits.get(node.input[1])
    if scale is None:
        raise ArtifactError(f"{where}: {node.op_type} {node.name!r} has no constant scale")
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise ArtifactError(f"{where}: {node.name!r} scale is not positive and finite")
    zero_point = inits[node.input[2]]
    if zero_point.dtype.kind not in "iu":
        raise ArtifactError(f"{where}: {node.name!r} zero point is {zero_point.dtype}, not an integer type")
    return zero_point


def trtexec_command(onnx_name: str, card: ModelCard, batch: int = 1) -> str:
    """The command that builds the TensorRT engine from the QDQ file on the Jetson itself."""
    shape = f"{card.input.name}:{batch}x3x{card.input.height}x{card.input.width}"
    engine = Path(onnx_name).with_suffix(".engine").name
    return f"trtexec --onnx={onnx_name} --int8 --fp16 --shapes={shape} --saveEngine={engine}"
