"""The rpi (TFLite full-integer) path on the graphs Keras models become: NHWC input, symbolic batch, 1 channel.

``tf2onnx`` turns a Keras expression CNN (64x64x1 grayscale, NHWC) into an ONNX graph whose input is NHWC with a
symbolic batch (``unk__113``) followed by a ``Reshape`` to NCHW. onnx2tf assumes NCHW inputs and, without static
shapes, mis-lays that Reshape; before ``convert.onnx2tf_input`` the rpi target could not produce an artifact from
such a graph. The graph here is a small copy of that pattern (depthwise-separable convs, a strided residual add,
max-pooling, global average pool, softmax in the graph), built with ``onnx.helper`` so the test stays fast.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx2tf")
pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edge_sdk.contract.card import ModelCard  # noqa: E402
from edge_sdk.errors import ArtifactError  # noqa: E402

SIZE = 32
CLASSES = 7


def keras_like_onnx(path: Path) -> Path:
    """A tf2onnx-style expression CNN: input (unk, SIZE, SIZE, 1) NHWC, softmax output 'predictions'."""
    rng = np.random.default_rng(0)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def conv(x: str, out: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1, pad: int = 0) -> str:
        w = rng.normal(0.0, (2.0 / (k * k * cin // group)) ** 0.5, (cout, cin // group, k, k)).astype(np.float32)
        b = rng.normal(0.0, 0.05, cout).astype(np.float32)
        nodes.append(
            helper.make_node(
                "Conv",
                [x, const(f"{out}_w", w), const(f"{out}_b", b)],
                [out],
                strides=[stride, stride],
                group=group,
                pads=[pad] * 4,
                kernel_shape=[k, k],
            )
        )
        return out

    def relu(x: str) -> str:
        nodes.append(helper.make_node("Relu", [x], [f"{x}_relu"]))
        return f"{x}_relu"

    nodes.append(helper.make_node("Reshape", ["input_1", const("new_shape", np.array([-1, 1, SIZE, SIZE]))], ["x"]))
    x = relu(conv("x", "stem1", 1, 8, 3, stride=2))
    x = relu(conv(x, "stem2", 8, 16, 3))
    # separable block: depthwise 3x3 + pointwise, twice, max-pool; residual 1x1 stride 2
    y = conv(x, "dw1", 16, 16, 3, group=16, pad=1)
    y = relu(conv(y, "pw1", 16, 32, 1))
    y = conv(y, "dw2", 32, 32, 3, group=32, pad=1)
    y = conv(y, "pw2", 32, 32, 1)
    nodes.append(helper.make_node("MaxPool", [y], ["pool"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    residual = conv(x, "res", 16, 32, 1, stride=2)
    nodes.append(helper.make_node("Add", ["pool", residual], ["sum"]))
    logits = conv("sum", "head", 32, CLASSES, 3, pad=1)
    nodes.append(helper.make_node("GlobalAveragePool", [logits], ["gap"]))
    nodes.append(helper.make_node("Squeeze", ["gap", const("axes", np.array([2, 3]))], ["flat"]))
    nodes.append(helper.make_node("Softmax", ["flat"], ["predictions"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "keras_like",
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["unk__1", SIZE, SIZE, 1])],
        [helper.make_tensor_value_info("predictions", TensorProto.FLOAT, ["unk__2", CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def gray_card() -> ModelCard:
    return ModelCard.from_dict(
        {
            "contract_version": "1.1",
            "name": "keras-like",
            "input": {
                "name": "input_1",
                "size": [SIZE, SIZE],
                "layout": "NHWC",
                "channels": 1,
                "color_order": "GRAY",
                "mean": [0.5],
                "std": [0.5],
                "dtype": "float32",
            },
            "heads": [
                {
                    "name": "expression",
                    "kind": "expression",
                    "labels": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
                    "activation": "none",
                    "output": "predictions",
                }
            ],
            "provenance": {"source": "tests", "synthetic_demo": False},
        }
    )


def smooth_batch(n: int, seed: int) -> np.ndarray:
    """Preprocessed NCHW (n, 1, SIZE, SIZE) float32 in [-1, 1]: blurry random images, face-crop-like statistics."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, 1, SIZE // 8, SIZE // 8), dtype=np.float32)
    return (np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3) - 0.5) / 0.5


def test_keras_like_graph_gives_a_loadable_full_integer_tflite(tmp_path: Path) -> None:
    from edge_sdk.backend.onnxruntime_backend import open_session
    from edge_sdk_export.quant_tflite import _run_int8, quantize_tflite

    onnx_path = keras_like_onnx(tmp_path / "keras_like.onnx")
    card = gray_card()
    out, new_card = quantize_tflite(onnx_path, tmp_path / "keras_like.tflite", card, smooth_batch(48, 1))

    # loads in a separate interpreter (a LiteRT abort there must not end this test run)
    probe = (
        "import sys; from ai_edge_litert.interpreter import Interpreter as I; "
        "i = I(model_path=sys.argv[1]); i.allocate_tensors(); d = i.get_input_details()[0]; "
        "print(*d['shape'].tolist(), d['dtype'].__name__)"
    )
    child = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["1", str(SIZE), str(SIZE), "1", "int8"]
    assert new_card.input.layout == "NHWC" and new_card.input.dtype == "int8" and new_card.input.channels == 1

    x = smooth_batch(32, 2)
    expected = open_session(onnx_path, threads=1).run(["predictions"], {"input_1": x.transpose(0, 2, 3, 1)})[0]
    produced, _ = _run_int8(out, x)
    got = produced[new_card.heads[0].output]
    assert np.abs(got - expected).max() < 0.1
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9


def test_onnx2tf_input_makes_batch_static_and_the_input_nchw(tmp_path: Path) -> None:
    from edge_sdk_export.convert import onnx2tf_input

    onnx_path = keras_like_onnx(tmp_path / "keras_like.onnx")
    prepared = onnx.load(str(onnx2tf_input(onnx_path, tmp_path / "prepared.onnx", "NHWC")))
    (value,) = prepared.graph.input
    assert value.name == "input_1"
    assert [d.dim_value for d in value.type.tensor_type.shape.dim] == [1, 1, SIZE, SIZE]
    assert prepared.graph.node[0].op_type == "Transpose"
    (out,) = prepared.graph.output
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, CLASSES]
    assert onnx.load(str(onnx_path)).graph.input[0].type.tensor_type.shape.dim[0].dim_param == "unk__1"  # untouched


def test_a_litert_abort_becomes_an_artifact_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_sdk_export import convert

    monkeypatch.setattr(
        convert, "_LITERT_PROBE", "import sys, os; print('tflite/kernels: check failed', file=sys.stderr); os.abort()"
    )
    with pytest.raises(ArtifactError, match=r"SIGABRT.*\n.*check failed"):
        convert.check_litert_loads(tmp_path / "any.tflite")
    monkeypatch.undo()

    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ArtifactError, match="refused it"):
        convert.check_litert_loads(tmp_path / "junk.tflite")
