"""Small, real 1-channel (grayscale) face models for the contract-1.1 tests, built in milliseconds.

* :func:`build_gray_onnx` - a FER2013-style net: 64x64 GRAY input in NHWC (Keras-style, a Transpose first)
  or NCHW, float or int8/uint8 (a DequantizeLinear first), 7-class softmax inside the graph, with its card
  (contract 1.1, box crop) embedded.
* :func:`build_gray_tflite` - the same kind of net as a ``.tflite`` (float or full-integer int8 input)
  made with the TFLite converter, with a sidecar card.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_sdk.contract.card import ONNX_METADATA_KEY, ModelCard

FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_NAME = "input_1"
OUTPUT_NAME = "predictions"
SIZE = 64
_ONNX_TYPES = {"float32": TensorProto.FLOAT, "int8": TensorProto.INT8, "uint8": TensorProto.UINT8}
# Input quantization of the integer variants: the normalised [-1, 1] range over the dtype's range.
QUANT = {"int8": (1.0 / 127.0, 0), "uint8": (2.0 / 255.0, 128)}


def gray_card(layout: str = "NHWC", dtype: str = "float32", size: int = SIZE) -> dict[str, Any]:
    """The issue's done-when card: 1 channel GRAY, mean/std 0.5, a square box crop grown by 20 %."""
    card: dict[str, Any] = {
        "contract_version": "1.1",
        "name": f"gray-fer-{layout.lower()}-{dtype}",
        "description": "tiny random-weight 1-channel expression net (tests/gray_models.py)",
        "input": {
            "name": INPUT_NAME,
            "size": [size, size],
            "layout": layout,
            "channels": 1,
            "color_order": "GRAY",
            "mean": [0.5],
            "std": [0.5],
            "dtype": dtype,
            "crop": {"method": "box", "margin": 0.2, "square": True},
        },
        "heads": [
            {"name": "expression", "kind": "expression", "labels": list(FER_LABELS), "activation": "none"},
        ],
        "provenance": {"source": "tests/gray_models.py", "synthetic_demo": False, "training_data": "none (random)"},
        "export": {"precision": "fp32" if dtype == "float32" else "int8"},
    }
    card["heads"][0]["output"] = OUTPUT_NAME
    if dtype in QUANT:
        card["input"]["scale"], card["input"]["zero_point"] = QUANT[dtype]
    return card


def _input_nodes(layout: str, dtype: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes turning the model input into the float NCHW tensor ``x``: dequantize, then transpose."""
    nodes, inits, current = [], [], INPUT_NAME
    if dtype in QUANT:
        scale, zero_point = QUANT[dtype]
        inits += [
            numpy_helper.from_array(np.array(scale, np.float32), "in_scale"),
            numpy_helper.from_array(np.array(zero_point, np.dtype(dtype)), "in_zero_point"),
        ]
        nodes.append(helper.make_node("DequantizeLinear", [current, "in_scale", "in_zero_point"], ["dq"]))
        current = "dq"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [current], ["nchw"], perm=[0, 3, 1, 2]))
        current = "nchw"
    nodes.append(helper.make_node("Identity", [current], ["x"]))
    return nodes, inits


def build_gray_onnx(
    path: Path, layout: str = "NHWC", dtype: str = "float32", card: dict[str, Any] | None = None, seed: int = 0
) -> Path:
    """A 1-channel conv net (conv3x3/2, relu, global pool, dense, softmax) with ``card`` embedded
    (default :func:`gray_card`; ``card={}`` embeds none)."""
    rng = np.random.default_rng(seed)
    nodes, inits = _input_nodes(layout, dtype)
    inits += [
        numpy_helper.from_array(rng.normal(0, 0.5, (8, 1, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.normal(0, 2.0, (8, len(FER_LABELS))).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.normal(0, 0.2, len(FER_LABELS)).astype(np.float32), "b2"),
    ]
    nodes += [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("GlobalAveragePool", ["r1"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=-1),
    ]
    shape = ["N", SIZE, SIZE, 1] if layout == "NHWC" else ["N", 1, SIZE, SIZE]
    graph = helper.make_graph(
        nodes,
        "gray_fer",
        [helper.make_tensor_value_info(INPUT_NAME, _ONNX_TYPES[dtype], shape)],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", len(FER_LABELS)])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    card = gray_card(layout, dtype) if card is None else card
    if card:
        ModelCard.from_dict(card)  # a fixture with an invalid card would test nothing
        model.metadata_props.append(onnx.StringStringEntryProto(key=ONNX_METADATA_KEY, value=json.dumps(card)))
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def with_input(card: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``card`` whose ``input`` has ``changes`` (a value of None removes the key)."""
    edited = copy.deepcopy(card)
    for key, value in changes.items():
        if value is None:
            edited["input"].pop(key, None)
        else:
            edited["input"][key] = value
    return edited


def build_gray_tflite(path: Path, int8: bool = False, size: int = 16):  # -> (path, reference fn, card dict)
    """A tiny 1-channel NHWC ``.tflite`` (float, or full-integer int8 in/out) with a sidecar card, and the
    float function it was converted from (takes an NHWC float batch)."""
    import warnings

    import tensorflow as tf

    from edge_sdk_export.artifacts import write_sidecar

    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(0, 0.5, (3, 3, 1, 4)).astype(np.float32))
    dense = tf.constant(rng.normal(0, 1, (4, len(FER_LABELS))).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 1], tf.float32)])
    def net(x):  # noqa: ANN001, ANN202
        return tf.matmul(tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME")), [1, 2]), dense)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()], net)
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.uniform(-1, 1, (1, size, size, 1)).astype(np.float32)] for _ in range(32)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        path.write_bytes(converter.convert())

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    detail = interpreter.get_input_details()[0]
    card = gray_card("NHWC", "int8" if int8 else "float32", size)
    card["input"]["name"] = "x"
    if int8:
        scale, zero_point = detail["quantization"]
        card["input"].update(scale=float(scale), zero_point=int(zero_point))
    card["heads"][0]["output"] = interpreter.get_output_details()[0]["name"]
    write_sidecar(ModelCard.from_dict(card), [path])
    return path, lambda nhwc: np.concatenate([net(x[None]).numpy() for x in nhwc]), card
