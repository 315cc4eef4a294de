"""check_qdq on graphs with constants that are not Conv/Gemm weights (issue #14, item 6).

A third-party model that normalises its input inside the graph (``input * scale + bias``) gets its Mul/Add
constants quantized by ONNX Runtime with the *activation* type (uint8 on the cpu target). Those constants
are not weights: the check must accept them, while Conv/Gemm/MatMul weights stay held to the scheme.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_sdk.contract.card import ExportInfo, ModelCard
from edge_sdk.errors import ArtifactError
from edge_sdk_export.quant_onnx import ORT_CPU_SCHEME, TENSORRT_SCHEME, QdqScheme, check_qdq, quantize_qdq
from tests.model_factory import IMAGENET_MEAN, IMAGENET_STD, _backbone, _linear, _save, multitask_card

SIZE = 32
HEAD_WIDTHS = {"au_occurrence": 13, "au_intensity": 13, "expression": 8, "valence_arousal": 2}


def build_normalising_onnx(path: Path) -> Path:
    """The multitask net with ``(input - mean) / std`` done in the graph as Mul and Add by constants."""
    rng = np.random.default_rng(3)
    nodes, weights, width = _backbone(rng, SIZE)
    nodes[0].input[0] = "normed"  # the first Conv reads the normalised input
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    weights += [
        numpy_helper.from_array((1 / std).reshape(1, 3, 1, 1).astype(np.float32), "norm_scale"),
        numpy_helper.from_array((-mean / std).reshape(1, 3, 1, 1).astype(np.float32), "norm_bias"),
    ]
    prefix = [
        helper.make_node("Mul", ["input", "norm_scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "norm_bias"], ["normed"]),
    ]
    heads = []
    for name, out in HEAD_WIDTHS.items():
        node, w = _linear(name, width, out, rng, gain=2.0)
        heads.append(node)
        weights.extend(w)
    graph = helper.make_graph(
        [*prefix, *nodes, *heads],
        "normalising",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", out]) for name, out in HEAD_WIDTHS.items()],
        initializer=weights,
    )
    card = multitask_card(SIZE)
    card["input"].update(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])  # the graph normalises itself
    return _save(graph, path, card)


@pytest.fixture(scope="module")
def qdq_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("qdq")
    fp32 = build_normalising_onnx(out / "norm_fp32.onnx")
    card = ModelCard.from_dict(multitask_card(SIZE))
    calib = np.random.default_rng(0).uniform(0, 1, (8, 3, SIZE, SIZE)).astype(np.float32)
    files = {}
    for target, scheme in (("cpu", ORT_CPU_SCHEME), ("jetson", TENSORRT_SCHEME)):
        target_card = card.with_changes(export=ExportInfo(target=target, precision="int8", tool="tests"))
        files[target] = quantize_qdq(fp32, out / f"norm_{target}_int8.onnx", target_card, calib, scheme)
    return files


def _constant_dequantizers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """DequantizeLinear nodes fed by an initializer, grouped by the op type that reads their output."""
    inits = {i.name for i in model.graph.initializer}
    by_consumer: dict[str, list[onnx.NodeProto]] = {}
    for dq in model.graph.node:
        if dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        for node in model.graph.node:
            if dq.output[0] in node.input:
                by_consumer.setdefault(node.op_type, []).append(dq)
    return by_consumer


@pytest.mark.parametrize(("target", "scheme"), [("cpu", ORT_CPU_SCHEME), ("jetson", TENSORRT_SCHEME)])
def test_check_accepts_quantized_normalisation_constants(qdq_files, target: str, scheme: QdqScheme) -> None:
    model = onnx.load(str(qdq_files[target]))
    consumers = _constant_dequantizers(model)
    assert consumers.get("Mul") and consumers.get("Add"), "the normalisation constants were not quantized"
    counts = check_qdq(qdq_files[target], scheme)
    assert counts["conv"] == 2
    assert counts["per_channel_weights"] >= 2  # the two Conv weights (Gemm weights may be per-tensor)
    assert counts["other_constants"] >= 2  # Mul scale and Add bias


def _corrupt_conv_weight_zero_point(src: Path, dst: Path, value: np.ndarray) -> str:
    """Replace the first Conv's weight zero point by ``value`` (broadcast to its shape); returns the DQ name."""
    model = onnx.load(str(src))
    producers = {out: node for node in model.graph.node for out in node.output}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    dq = producers[conv.input[1]]
    init = next(i for i in model.graph.initializer if i.name == dq.input[2])
    old = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array(np.broadcast_to(value, old.shape).copy(), init.name))
    onnx.save(model, str(dst))
    return dq.name


def test_check_rejects_uint8_conv_weight_zero_point(qdq_files, tmp_path) -> None:
    bad = tmp_path / "bad_cpu.onnx"
    name = _corrupt_conv_weight_zero_point(qdq_files["cpu"], bad, np.array(128, dtype=np.uint8))
    with pytest.raises(ArtifactError, match=f"'{name}' zero point is uint8, expected int8"):
        check_qdq(bad, ORT_CPU_SCHEME)


def test_check_rejects_nonzero_conv_weight_zero_point(qdq_files, tmp_path) -> None:
    bad = tmp_path / "bad_jetson.onnx"
    name = _corrupt_conv_weight_zero_point(qdq_files["jetson"], bad, np.array(3, dtype=np.int8))
    with pytest.raises(ArtifactError, match=f"'{name}' has a non-zero zero point"):
        check_qdq(bad, TENSORRT_SCHEME)


def test_check_rejects_nonpositive_constant_scale(qdq_files, tmp_path) -> None:
    model = onnx.load(str(qdq_files["cpu"]))
    dq = _constant_dequantizers(model)["Mul"][0]
    init = next(i for i in model.graph.initializer if i.name == dq.input[1])
    init.CopyFrom(numpy_helper.from_array(-np.abs(numpy_helper.to_array(init)), init.name))
    bad = tmp_path / "bad_scale.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ArtifactError, match=f"'{dq.name}' scale is not positive"):
        check_qdq(bad, ORT_CPU_SCHEME)
