"""Activation equalization: rescale channels between two convolutions so per-tensor INT8 ranges fit every channel.

INT8 files quantize each activation tensor with *one* scale (ONNX Runtime QDQ, TensorRT, TFLite). When a few
channels of a tensor span a wide range and most span a narrow one, the narrow ones keep only a handful of the 256
levels. Networks trained with a group-sparsity penalty (the structured-pruning recipe) are like that by design:
measured on the pruned MobileFaceNet of the architecture zoo, the expansion layers' widest channel is 10-34x the
median one and up to 89 % of the channels stay below a tenth of the widest, and INT8 lost AU F1 0.921 / VA CCC
0.938 (cpu) against FP32 while weights-only INT8 kept 0.991 / 0.998 (benchmarks/results/arch_zoo.md).

For a pair ``Conv A -> [act] -> Conv B`` where the tensor between them is read by B alone and ``act`` is
positive-homogeneous per channel (Relu, LeakyRelu, PRelu: ``act(x / s) = act(x) / s`` for ``s > 0``), dividing
A's output channel ``i`` (weights and bias) by ``s_i`` and multiplying B's input channel ``i`` by ``s_i`` leaves
the model's function unchanged and shrinks the spread of that tensor's channel ranges:

* B depthwise (one input channel per output channel): ``s_i = sqrt(r_i / max r)``, ``r_i`` the channel's largest
  absolute value on the calibration crops. B's weights are quantized per output channel, so the scaling costs its
  weights nothing; the square root (not full equalization) keeps B's output noise from the amplified weak
  channels in check.
* B a plain convolution: ``s_i = sqrt(r_i / w_i)`` with ``w_i`` the largest absolute weight B applies to channel
  ``i`` (the balance of Nagel et al. 2019 "Data-Free Quantization" and SmoothQuant's alpha = 0.5), scaled so
  ``max s = 1``.

A ``Clip`` between them with lower bound 0 (ReLU6) or none and a constant upper bound ``M`` is not homogeneous:
``clip(x / s, 0, M) = clip(x, 0, M) / s`` only while ``x / s <= M``. So for such a pair each ``s_i`` (at most 1)
is raised, if needed, until channel ``i``'s calibration range ``r_i`` scaled by ``1 / s_i`` stays within
``M / 2`` (a channel that came near ``M`` keeps ``s_i = 1``, exactly as it was): the Clip cuts a rescaled channel
differently only where it passes twice its largest value on the calibration crops, beyond the range of the INT8
tensor after it (calibrated on the same crops) anyway. MobileNet/EfficientNet-lite style nets
use ReLU6 everywhere; on the pruned EfficientNet-lite of the architecture zoo the tensors between convolutions
had a widest channel up to 547x the median one (benchmarks/results/arch_zoo.md).

HardSwish, ``x * hardsigmoid(x)``, is not homogeneous either, and MobileNetV3 puts it between a convolution and
the depthwise one after it. In the graph the quantizers read (onnxruntime's pre-processing writes it as
``HardSigmoid`` and ``Mul``) such a pair is rescaled *exactly* by giving the gate its unscaled input back:
``Conv A -> y' = y / s -> Mul(y', s) -> HardSigmoid -> g``, ``z' = y' * g = z / s``. Only the narrow gate input
(``Mul(y', s)``, named ``EQUALIZE_UNSCALE_PREFIX...``) keeps the old spread; the QDQ quantizer leaves that
``Mul`` in float (a per-channel constant quantized per tensor would lose the small ``s_i``). A HardSwish op
(the graph onnx2tf converts for TFLite) is written out the same way: ``Mul(y', HardSigmoid(Mul(y', s)))``,
which TFLite then quantizes whole. On the pruned MobileNetV3-small of the zoo (AVX2 EPYC; nine pairs, channel
spread of ``y`` up to 343x the median -> 18x) the all-INT8 cpu file went from AU F1 0.877 to 0.968, mean |dp|
0.0219 -> 0.0127, PSPI MAE 0.250 -> 0.123; the rpi file from AU F1 0.830 to 0.968, expression agreement 0.705
-> 0.987.

Other pairs (grouped convolutions, tensors read twice such as residual adds or squeeze-excitation inputs) are
left alone. The pass is the same for every model; it runs on the FP32 graph the quantizers read, and float
layers of a mixed-precision file take their weights from that same equalized graph.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

HOMOGENEOUS = ("Relu", "LeakyRelu", "PRelu")
CHUNK = 32  # calibration rows per inference pass (intermediate tensors of a whole batch can be large)
# A rescaled channel behind a Clip keeps its calibration range within bound / CLIP_HEADROOM: the Clip then cuts it
# differently only where it passes twice the largest value the calibration crops showed.
CLIP_HEADROOM = 2.0
# Name prefix of the Mul nodes that give a rescaled HardSwish gate its unscaled input (kept out of INT8)
EQUALIZE_UNSCALE_PREFIX = "EqualizeUnscale:"
HARD_SIGMOID_OF_HARDSWISH = (1.0 / 6.0, 0.5)  # alpha, beta
MIN_RELATIVE = 1e-6  # channel ranges floored at this share of the widest (dead channels: no division by zero)


@dataclass(frozen=True)
class Pair:
    """Two convolutions with a rescalable tensor between them."""

    first: Any  # Conv node A
    activation: Any | None  # the positive-homogeneous node between them, if any
    second: Any  # Conv node B
    tensor: str  # the tensor B reads (A's output, or the activation's)
    depthwise: bool
    bound: float | None = None  # the activation is a Clip with this upper bound (scales capped, see above)
    gate: Any | None = None  # the HardSwish op, or the HardSigmoid of one written out: it reads unscaled input

    @property
    def ranged(self) -> str:
        """The tensor whose channel ranges choose the scales: A's output for a HardSwish pair (what the gate
        reads), else the tensor B reads."""
        return self.first.output[0] if self.gate is not None else self.tensor


@dataclass(frozen=True)
class Equalization:
    """What :func:`equalize_activations` did (``to_check`` goes into the report row's checks)."""

    pairs: int
    spread_before: float  # median over pairs of (widest channel / median channel) of the tensor between
    spread_after: float

    def to_check(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "channel_spread_before": round(self.spread_before, 2),
            "channel_spread_after": round(self.spread_after, 2),
        }


def _attribute(node: Any, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def _per_channel_slope(node: Any, inits: dict[str, np.ndarray], channels: int) -> bool:
    """A PRelu whose slope is a constant scalar or one value per channel ([C], [C,1,1] or [1,C,1,1]) stays
    positive-homogeneous per channel; other activations in HOMOGENEOUS have no tensor inputs."""
    if node.op_type != "PRelu":
        return True
    slope = inits.get(node.input[1])
    return slope is not None and (slope.size == 1 or (slope.size == channels and max(slope.shape) == channels))


def _constant(name: str, constants: dict[str, np.ndarray]) -> float | None:
    value = constants.get(name)
    return float(value) if value is not None and value.size == 1 else None


def clip_bound(node: Any, constants: dict[str, np.ndarray]) -> float | None:
    """The upper bound ``M`` of a ``Clip`` that rescaling can cross (lower bound 0, as in ReLU6, or none; constant
    ``M > 0``), else None. Opset 11+ passes the bounds as inputs, older opsets as attributes."""
    if node.op_type != "Clip":
        return None
    if len(node.input) > 1:
        low = _constant(node.input[1], constants) if node.input[1] else None
        high = _constant(node.input[2], constants) if len(node.input) > 2 and node.input[2] else None
        low_ok = not node.input[1] or low == 0.0
    else:
        attributes = {a.name: float(a.f) for a in node.attribute}
        high, low_ok = attributes.get("max"), attributes.get("min", 0.0) in (0.0, -np.finfo(np.float32).max)
    return high if low_ok and high is not None and high > 0 else None


def find_pairs(model: Any) -> list[Pair]:
    """Every ``Conv -> [homogeneous activation] -> Conv`` pair of ``model`` that can be rescaled."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    # Clip bounds may be Constant nodes (torch.onnx exports ReLU6 so) rather than initializers
    constants = dict(inits)
    for node in model.graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None:
            constants[node.output[0]] = numpy_helper.to_array(value)

    def own_float_constant(name: str) -> bool:  # rescaled in place: it must belong to this node alone
        return name in inits and inits[name].dtype == np.float32 and len(readers.get(name, [])) == 1

    pairs = []
    for first in model.graph.node:
        # any group: A's weights are indexed by output channel
        if first.op_type != "Conv" or not all(own_float_constant(n) for n in first.input[1:] if n):
            continue
        channels = inits[first.input[1]].shape[0]
        tensor, activation, bound, gate = first.output[0], None, None, None
        after = readers.get(tensor, [])
        hardswish = _hardswish(tensor, after)
        if hardswish is not None and tensor not in outputs:
            gate, activation = hardswish
            tensor = activation.output[0]
            after = readers.get(tensor, [])
        elif len(after) == 1 and tensor not in outputs:
            bound = clip_bound(after[0], constants)
            if after[0].op_type in HOMOGENEOUS or bound is not None:
                activation = after[0]
                if not _per_channel_slope(activation, inits, channels):
                    continue
                tensor = activation.output[0]
                after = readers.get(tensor, [])
        if len(after) != 1 or after[0].op_type != "Conv" or tensor in outputs:
            continue
        second = after[0]
        if second.input[0] != tensor or not own_float_constant(second.input[1]):
            continue
        weights = inits[second.input[1]]
        group = _attribute(second, "group", 1)
        depthwise = group == channels and weights.shape[:2] == (channels, 1)
        if depthwise or (group == 1 and weights.shape[1] == channels):
            pairs.append(Pair(first, activation, second, tensor, depthwise, bound, gate))
    return pairs


def _hardswish(tensor: str, readers: list[Any]) -> tuple[Any, Any] | None:
    """(gate, last node) when ``tensor``'s readers are exactly one HardSwish: ``(HardSwish, HardSwish)`` for the
    op itself, ``(HardSigmoid, Mul)`` when written out, ``Mul(tensor, HardSigmoid(tensor))`` with the HardSwish
    slope and offset; else None."""
    if len(readers) == 1 and readers[0].op_type == "HardSwish":
        return readers[0], readers[0]
    if len(readers) != 2:
        return None
    gate = next((n for n in readers if n.op_type == "HardSigmoid"), None)
    product = next((n for n in readers if n.op_type == "Mul"), None)
    if gate is None or product is None or sorted(product.input) != sorted([tensor, gate.output[0]]):
        return None
    attributes = {a.name: float(a.f) for a in gate.attribute}
    alpha, beta = attributes.get("alpha", 0.2), attributes.get("beta", 0.5)
    if not np.allclose((alpha, beta), HARD_SIGMOID_OF_HARDSWISH, rtol=1e-5):
        return None
    return gate, product


def _chunks(batch: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(batch), CHUNK):
        yield batch[start : start + CHUNK]


def channel_ranges(model: Any, tensors: list[str], input_name: str, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Largest absolute value per channel (axis 1) of each of ``tensors`` over ``batch`` (FP32, onnxruntime)."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in known:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the tensors as named
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ranges: dict[str, np.ndarray] = {}
    for chunk in _chunks(batch):
        values = session.run(tensors, {input_name: chunk})
        for name, value in zip(tensors, values, strict=True):
            axes = (0, *range(2, value.ndim))
            peak = np.abs(value).max(axis=axes).astype(np.float64)
            ranges[name] = peak if name not in ranges else np.maximum(ranges[name], peak)
    return ranges


def _floored(values: np.ndarray) -> np.ndarray:
    return np.maximum(values, MIN_RELATIVE * max(float(values.max()), 1e-30))


def pair_scales(pair: Pair, ranges: np.ndarray, second_weights: np.ndarray) -> np.ndarray:
    """``s`` of the module docstring for one pair (A's channel i is divided by s_i, 0 < s_i <= 1)."""
    ranges = _floored(ranges)
    if pair.depthwise:
        scales = np.sqrt(ranges / ranges.max())
    else:
        axes = (0, *range(2, second_weights.ndim))
        weights = _floored(np.abs(second_weights).max(axis=axes).astype(np.float64))
        scales = np.sqrt(ranges / weights)
        scales = scales / scales.max()
    if pair.bound is not None:  # no channel's calibration range may grow past bound / headroom, nor any shrink
        scales = np.clip(scales, np.minimum(ranges * CLIP_HEADROOM / pair.bound, 1.0), 1.0)
    return scales


def _spread(ranges: np.ndarray) -> float:
    ranges = _floored(ranges)
    return float(ranges.max() / np.median(ranges))


def equalize_activations(model: Any, input_name: str, batch: np.ndarray) -> Equalization:
    """Rescale every pair of :func:`find_pairs` in ``model`` (an ``onnx.ModelProto``, changed in place) from the
    channel ranges its FP32 graph shows on ``batch`` (calibration rows in the model's input layout).

    Each pair changes only the tensor between its two convolutions, so one pass over the batch serves them all.
    """
    from onnx import numpy_helper

    pairs = find_pairs(model)
    if not pairs:
        return Equalization(0, 1.0, 1.0)
    ranges = channel_ranges(model, list(dict.fromkeys(p.ranged for p in pairs)), input_name, batch)
    inits = {i.name: i for i in model.graph.initializer}

    def array(name: str) -> np.ndarray:
        return numpy_helper.to_array(inits[name]).astype(np.float64)

    def store(name: str, value: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))

    before, after = [], []
    replaced: dict[str, list[Any]] = {}  # gate's output tensor -> the nodes that take the gate's place
    for pair in pairs:
        first_w, second_w = array(pair.first.input[1]), array(pair.second.input[1])
        channel_range = ranges[pair.ranged]
        scales = pair_scales(pair, channel_range, second_w)
        shape = (-1,) + (1,) * (first_w.ndim - 1)
        store(pair.first.input[1], first_w / scales.reshape(shape))
        if len(pair.first.input) > 2 and pair.first.input[2]:
            store(pair.first.input[2], array(pair.first.input[2]) / scales)
        if pair.depthwise:
            store(pair.second.input[1], second_w * scales.reshape(shape))
        else:
            store(pair.second.input[1], second_w * scales.reshape((1, -1) + (1,) * (second_w.ndim - 2)))
        if pair.gate is not None:
            replaced[pair.gate.output[0]] = _unscale_gate(model, pair.gate, scales, first_w.ndim)
        before.append(_spread(channel_range))
        after.append(_spread(channel_range / scales))
    if replaced:
        nodes = [
            new for node in model.graph.node for new in replaced.get(node.output[0] if node.output else "", [node])
        ]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    result = Equalization(len(pairs), float(np.median(before)), float(np.median(after)))
    logger.info(
        "activation equalization: %d conv pairs, channel spread (widest / median) %.1f -> %.1f",
        result.pairs,
        result.spread_before,
        result.spread_after,
    )
    return result


def _unscale_gate(model: Any, gate: Any, scales: np.ndarray, rank: int) -> list[Any]:
    """The nodes that replace ``gate`` (a HardSigmoid, or a whole HardSwish, reading a rank-``rank`` tensor now
    divided by ``scales`` along axis 1) so that the gate reads that tensor times ``scales``: a Mul, then the
    gate (a HardSwish becomes ``Mul(x, HardSigmoid(Mul(x, scales)))``). The Mul's constant is added to the
    initializers."""
    from onnx import helper, numpy_helper

    source = gate.input[0]
    constant, unscaled = f"{source}_equalize_scale", f"{source}_unscaled"
    shape = (1, -1) + (1,) * (rank - 2)
    model.graph.initializer.append(numpy_helper.from_array(scales.astype(np.float32).reshape(shape), constant))
    unscale = helper.make_node("Mul", [source, constant], [unscaled], name=f"{EQUALIZE_UNSCALE_PREFIX}{source}")
    if gate.op_type != "HardSwish":
        gate.input[0] = unscaled
        return [unscale, gate]
    alpha, beta = HARD_SIGMOID_OF_HARDSWISH
    sigmoid, name = f"{source}_hardsigmoid", gate.name or gate.output[0]
    return [
        unscale,
        helper.make_node("HardSigmoid", [unscaled], [sigmoid], name=f"{name}/HardSigmoid", alpha=alpha, beta=beta),
        helper.make_node("Mul", [source, sigmoid], [gate.output[0]], name=f"{name}/Mul"),
    ]


SAME_FUNCTION_RTOL = 1e-3  # of an output's largest magnitude: float32 reassociation stays far below it


def equalize_file(src: Path, dst: Path, input_name: str, batch: np.ndarray) -> Equalization:
    """:func:`equalize_activations` on the ONNX file ``src``, written to ``dst`` (metadata kept)."""
    import onnx

    from edge_sdk.contract.card import ONNX_METADATA_KEY, ModelCard
    from edge_sdk_export.onnx_card import set_card

    model = onnx.load(str(src))
    result = equalize_activations(model, input_name, batch)
    embedded = next((p.value for p in model.metadata_props if p.key == ONNX_METADATA_KEY), None)
    if embedded is not None and result.pairs:  # new weights: the card's weights hash must follow them
        set_card(model, ModelCard.from_json(embedded, source=str(src)), indent=None)
    onnx.save(model, str(dst))
    return result


def equalize_for_int8(parent: Path, dst: Path, card: Any, calib_nchw: np.ndarray, fold_batchnorm: bool) -> Equalization:
    """The export's step: an equalized copy of the FP32 ONNX ``parent`` at ``dst``, from the preprocessed NCHW
    calibration batch (fed in ``card``'s input layout).

    ``fold_batchnorm``: first run onnxruntime's ``quant_pre_process`` (BatchNorm folded into Conv: the graph
    ``quantize_qdq`` quantizes), so Conv pairs separated by a BatchNorm are found too; without it the graph keeps
    its nodes (what onnx2tf converts for TFLite) and only weights change."""
    from edge_sdk_export.onnx_io import check_match, head_diffs, run_onnx, to_layout

    dst.parent.mkdir(parents=True, exist_ok=True)
    source = parent
    if fold_batchnorm:
        from edge_sdk_export.quant_onnx import prepare_for_quantization

        prepare_for_quantization(parent, dst)
        source = dst
    batch = np.ascontiguousarray(to_layout(calib_nchw, card), dtype=np.float32)
    result = equalize_file(source, dst, card.input.name, batch)
    if result.pairs:
        # The export's faithfulness check (onnx_io), parent against the equalized copy: a pair this module should
        # not have touched raises ArtifactError, and the exporter then quantizes the parent as it is.
        probe = batch[:CHUNK]
        before, after = run_onnx(parent, card, probe), run_onnx(dst, card, probe)
        tolerance = SAME_FUNCTION_RTOL * max(min(float(np.abs(o).max()) for o in before), 1e-12)
        diffs = head_diffs(card, before, after)
        on = f"{len(probe)} calibration crops"
        check_match(diffs, f"{dst.name} (activation equalization)", card, tolerance, on=on)
    return result
