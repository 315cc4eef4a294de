"""Small, real ONNX models built with onnx.helper for tests (no torch, builds in milliseconds).

* :func:`build_multitask_onnx` - a conv net with the four edge-sdk heads and an embedded card,
  shaped like the packaged demo model (used where the demo model is not needed).
* :func:`build_packed_onnx` - a "third-party" net with ONE output of 10 values (8 expression
  logits in HSEmotion order + valence + arousal) and no embedded card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_sdk.contract.card import ONNX_METADATA_KEY, ModelCard

AU_LABELS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU9", "AU10", "AU12", "AU15", "AU17", "AU25", "AU26", "AU43")
HSEMOTION_LABELS = ("anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array.astype(np.float32), name)


def _backbone(
    rng: np.random.Generator,
    size: int,
    channels: tuple[int, int] = (8, 16),
    weight_mean: tuple[float, float] = (0.0, 0.0),
    weight_std: tuple[float, float] = (0.4, 0.25),
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], int]:
    """conv3x3/2 -> relu -> conv3x3/2 -> relu -> global pool -> flatten; returns nodes, weights, feature width.
    Conv weights are drawn from normal(``weight_mean[i]``, ``weight_std[i]``)."""
    c1, c2 = channels
    weights = [
        _init("w1", rng.normal(weight_mean[0], weight_std[0], (c1, 3, 3, 3))),
        _init("b1", rng.normal(0, 0.1, c1)),
        _init("w2", rng.normal(weight_mean[1], weight_std[1], (c2, c1, 3, 3))),
        _init("b2", rng.normal(0, 0.1, c2)),
    ]
    conv = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], **conv),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["features"], axis=1),
    ]
    return nodes, weights, c2


def _linear(name: str, width_in: int, width_out: int, rng: np.random.Generator, gain: float = 1.0):
    w = _init(f"{name}_w", rng.normal(0, gain, (width_in, width_out)))
    b = _init(f"{name}_b", rng.normal(0, 0.2, width_out))
    return helper.make_node("Gemm", ["features", w.name, b.name], [name]), [w, b]


def _save(graph: onnx.GraphProto, path: Path, card: dict[str, Any] | None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if card is not None:
        ModelCard.from_dict(card)  # a fixture with an invalid card would test nothing
        model.metadata_props.append(onnx.StringStringEntryProto(key=ONNX_METADATA_KEY, value=_json(card)))
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _json(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data)


def multitask_card(size: int = 64) -> dict[str, Any]:
    """The card of :func:`build_multitask_onnx`: four heads like the demo model."""
    return {
        "contract_version": "1.0",
        "name": "test-multitask",
        "description": "tiny random-weight multitask net for backend tests",
        "input": {
            "name": "input",
            "size": [size, size],
            "layout": "NCHW",
            "color_order": "RGB",
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
        },
        "heads": [
            {"name": "au_occurrence", "kind": "au_occurrence", "labels": list(AU_LABELS), "activation": "sigmoid"},
            {
                "name": "au_intensity",
                "kind": "au_intensity",
                "labels": list(AU_LABELS),
                "activation": "clamp",
                "clamp": [0.0, 5.0],
            },
            {"name": "expression", "kind": "expression", "labels": list(HSEMOTION_LABELS), "activation": "softmax"},
            {
                "name": "valence_arousal",
                "kind": "valence_arousal",
                "labels": ["valence", "arousal"],
                "activation": "tanh",
            },
        ],
        "provenance": {"source": "tests/model_factory.py", "synthetic_demo": True, "training_data": "none (random)"},
        "export": {"precision": "fp32", "tool": "onnx.helper"},
    }


def build_multitask_onnx(path: Path, size: int = 64, seed: int = 0, card: dict[str, Any] | None = None) -> Path:
    """A 4-head conv net (outputs named after the heads, dynamic batch) with its card embedded."""
    rng = np.random.default_rng(seed)
    nodes, weights, width = _backbone(rng, size)
    n_au = len(AU_LABELS)
    widths = {"au_occurrence": n_au, "au_intensity": n_au, "expression": 8, "valence_arousal": 2}
    for name, out in widths.items():
        node, w = _linear(name, width, out, rng, gain=2.0)
        nodes.append(node)
        weights.extend(w)
    graph = helper.make_graph(
        nodes,
        "multitask",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", width_out])
            for name, width_out in widths.items()
        ],
        initializer=weights,
    )
    return _save(graph, path, multitask_card(size) if card is None else card)


def build_packed_onnx(path: Path, size: int = 64, seed: int = 1) -> Path:
    """A third-party-style net: one output 'logits' of 10 values, no card (write one by hand)."""
    rng = np.random.default_rng(seed)
    nodes, weights, width = _backbone(rng, size)
    node, w = _linear("logits", width, 10, rng, gain=2.0)
    graph = helper.make_graph(
        [*nodes, node],
        "packed",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=[*weights, *w],
    )
    return _save(graph, path, None)
