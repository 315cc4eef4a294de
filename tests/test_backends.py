"""Acceptance: the demo model converted to FP32 TFLite and OpenVINO IR gives the ONNX results on every backend.

One session-scoped fixture converts the packaged demo ONNX (onnx2tf + OpenVINO convert_model);
50 rendered faces then go through ONNX Runtime, LiteRT and OpenVINO and every head must agree
with the FP32 ONNX within 1e-3, raw and post-processed (incl. PSPI).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.backend import backend_for, load_backend
from edge_sdk.backend.base import prepare_input
from edge_sdk.errors import ContractError
from edge_sdk.model import ModelCard, load_card, postprocess, sha256_file, sidecar_path
from edge_sdk.model.face_model import DEMO_MODEL, FaceModel
from edge_sdk.targets import format_for_suffix
from tests.model_factory import HSEMOTION_LABELS

TOLERANCE = 1e-3
N_FACES = 50


@dataclass(frozen=True)
class Converted:
    onnx: Path
    tflite: Path
    xml: Path
    seconds: dict[str, float]


@pytest.fixture(scope="session")
def demo_onnx() -> Path:
    if not DEMO_MODEL.is_file():
        pytest.fail(f"{DEMO_MODEL} is missing: the packaged demo model must be in the checkout")
    return DEMO_MODEL


@pytest.fixture(scope="session")
def converted(demo_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Converted:
    from edge_sdk_export.convert import onnx_to_openvino_fp32, onnx_to_tflite_fp32

    out = tmp_path_factory.mktemp("converted")
    before = sha256_file(demo_onnx)
    start = time.perf_counter()
    tflite = onnx_to_tflite_fp32(demo_onnx, out / "tflite")
    middle = time.perf_counter()
    xml = onnx_to_openvino_fp32(demo_onnx, out / "openvino")
    end = time.perf_counter()
    # onnx2tf rewrites its input in place; the converter must only hand it a copy.
    assert sha256_file(demo_onnx) == before, "converting changed the source ONNX file"
    return Converted(demo_onnx, tflite, xml, {"tflite": middle - start, "openvino": end - middle})


@pytest.fixture(scope="session")
def faces(demo_onnx: Path) -> list[np.ndarray]:
    from edge_sdk_export.synthetic import render_dataset

    size = load_card(demo_onnx).input.height
    return list(render_dataset(N_FACES, seed=2024, size=size).images)


@pytest.fixture(scope="session")
def reference(demo_onnx: Path, faces: list[np.ndarray]) -> tuple[np.ndarray, dict, dict]:
    """(preprocessed batch, raw heads, post-processed heads) from ONNX Runtime on the FP32 ONNX."""
    model = FaceModel(demo_onnx, threads=1)
    batch = model.preprocess(faces)
    raw = model.backend.run(batch)
    return batch, raw, postprocess(model.card, raw)


# (artifact attribute of Converted, backend override, expected backend)
RUNS = {
    "onnxruntime": ("onnx", None, "onnxruntime"),
    "litert": ("tflite", None, "litert"),
    "openvino-ir": ("xml", None, "openvino"),
    "openvino-onnx": ("onnx", "openvino", "openvino"),
}


@pytest.mark.parametrize("run", list(RUNS))
def test_backends_agree_with_fp32_onnx(run: str, converted: Converted, reference: tuple) -> None:
    attribute, override, expected_backend = RUNS[run]
    batch, raw_ref, post_ref = reference
    backend = load_backend(getattr(converted, attribute), override, threads=1)
    assert backend.info.backend == expected_backend
    raw = backend.run(batch)
    post = postprocess(backend.card, raw)
    assert set(raw) == set(raw_ref) and set(post) == set(post_ref)
    assert "pspi" in post
    for head, expected in raw_ref.items():
        assert raw[head].shape == expected.shape == (N_FACES, expected.shape[1])
        diff = float(np.max(np.abs(raw[head] - expected)))
        assert diff <= TOLERANCE, f"{run}: raw head {head} differs by {diff:.2e}"
    for head, expected in post_ref.items():
        diff = float(np.max(np.abs(post[head] - expected)))
        assert diff <= TOLERANCE, f"{run}: post-processed {head} differs by {diff:.2e}"


@pytest.mark.parametrize("n", [1, 3])
def test_litert_runs_any_batch_size(n: int, converted: Converted, reference: tuple) -> None:
    batch, raw_ref, _ = reference
    backend = load_backend(converted.tflite, threads=1)
    raw = backend.run(batch[:n])
    for head, expected in raw_ref.items():
        np.testing.assert_allclose(raw[head], expected[:n], atol=TOLERANCE)


def test_backend_is_chosen_from_the_suffix(converted: Converted) -> None:
    for path, expected in ((converted.onnx, "onnxruntime"), (converted.tflite, "litert"), (converted.xml, "openvino")):
        assert backend_for(path) == expected == format_for_suffix(path.suffix).backend
        assert FaceModel(path).info.backend == expected
    assert backend_for(converted.onnx, "openvino") == "openvino"


def test_info_fields(converted: Converted) -> None:
    import ai_edge_litert
    import onnxruntime
    import openvino

    ort = FaceModel(converted.onnx, threads=1).info
    assert (ort.backend, ort.device, ort.layout, ort.input_dtype) == (
        "onnxruntime",
        "CPUExecutionProvider",
        "NCHW",
        "float32",
    )
    assert ort.runtime_version == onnxruntime.__version__ and ort.precision == "fp32" and ort.threads == 1

    lite = FaceModel(converted.tflite, threads=2).info
    assert (lite.backend, lite.device, lite.layout, lite.input_dtype, lite.precision, lite.threads) == (
        "litert",
        "XNNPACK (CPU)",
        "NHWC",
        "float32",
        "fp32",
        2,
    )
    assert lite.runtime_version == f"ai_edge_litert {ai_edge_litert.__version__}"
    assert lite.artifact == str(converted.tflite)

    for path in (converted.xml, converted.onnx):
        ov = FaceModel(path, backend="openvino", threads=1).info
        assert (ov.backend, ov.device, ov.layout, ov.input_dtype) == ("openvino", "CPU", "NCHW", "float32")
        assert ov.threads == 1
        assert openvino.get_version().startswith(ov.runtime_version)
        assert ov.extra["inference_precision"] == "f32", "an FP32 card must not run in bf16/f16 on CPU"
        assert ov.artifact == str(path)


def test_sidecar_cards_describe_the_converted_files(converted: Converted) -> None:
    onnx_card = load_card(converted.onnx)
    lite = load_card(converted.tflite)
    assert lite.input.layout == "NHWC" and onnx_card.input.layout == "NCHW"
    assert lite.files == {converted.tflite.name: sha256_file(converted.tflite)}
    assert [h.labels for h in lite.heads] == [h.labels for h in onnx_card.heads]
    assert lite.provenance.parent_sha256 == sha256_file(converted.onnx)
    assert lite.export.precision == "fp32" and "onnx2tf" in (lite.export.tool or "")
    # heads read the real .tflite tensor names, never the ONNX ones by position
    interpreter_names = {d["name"] for d in load_backend(converted.tflite).interpreter.get_output_details()}
    assert set(lite.output_tensors) == interpreter_names

    ir = load_card(converted.xml)
    assert set(ir.files) == {converted.xml.name, converted.xml.with_suffix(".bin").name}
    assert ir.output_tensors == onnx_card.output_tensors
    assert sidecar_path(converted.xml).parent != sidecar_path(converted.tflite).parent


@pytest.fixture(scope="module")
def int8_tflite(tmp_path_factory: pytest.TempPathFactory):  # -> (artifact, float reference fn, card dict)
    """A tiny full-integer (int8 in/out) .tflite built with the TFLite converter, with a sidecar card."""
    import tensorflow as tf

    from edge_sdk_export.artifacts import write_sidecar

    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 4)).astype(np.float32))
    dense = tf.constant(rng.normal(0, 1, (4, 10)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
    def net(x):  # noqa: ANN001, ANN202
        return tf.matmul(tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME")), [1, 2]), dense)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()], net)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.random((1, 16, 16, 3), np.float32)] for _ in range(32))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path = tmp_path_factory.mktemp("int8") / "packed_int8.tflite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Statistics for quantized inputs were expected"
        path.write_bytes(converter.convert())

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    scale, zero_point = interpreter.get_input_details()[0]["quantization"]
    output = interpreter.get_output_details()[0]["name"]
    card = {
        "contract_version": "1.0",
        "name": "packed-int8",
        "input": {"name": "x", "size": [16, 16], "layout": "NHWC", "dtype": "int8"},
        "heads": [
            {"name": "expression", "kind": "expression", "labels": list(HSEMOTION_LABELS), "activation": "softmax"},
            {"name": "valence_arousal", "kind": "valence_arousal", "labels": ["valence", "arousal"]},
        ],
        "provenance": {"source": "tests", "synthetic_demo": True},
        "export": {"precision": "int8", "target": "rpi"},
    }
    card["input"].update(scale=float(scale), zero_point=int(zero_point))
    card["heads"][0].update(output=output, columns=[0, 8])
    card["heads"][1].update(output=output, columns=[8, 10])
    write_sidecar(ModelCard.from_dict(card), [path])
    return path, lambda nchw: np.concatenate([net(x[None].transpose(0, 2, 3, 1)).numpy() for x in nchw]), card


def test_litert_int8_quantizes_input_and_dequantizes_output(int8_tflite) -> None:
    path, reference, _ = int8_tflite
    backend = load_backend(path, threads=1)
    assert (backend.info.input_dtype, backend.info.precision, backend.info.layout) == ("int8", "int8", "NHWC")
    batch = np.random.default_rng(1).random((3, 3, 16, 16), np.float32)  # N > 1: the int8 graph is resized
    raw = backend.run(batch)
    expected = reference(batch)
    output_step = backend._output_quant[backend.card.heads[0].tensor][0]
    np.testing.assert_allclose(raw["expression"], expected[:, :8], atol=4 * output_step + 0.02)
    np.testing.assert_allclose(raw["valence_arousal"], expected[:, 8:], atol=4 * output_step + 0.02)


def test_litert_int8_card_scale_must_match_the_interpreter(int8_tflite, tmp_path: Path) -> None:
    from edge_sdk_export.artifacts import write_sidecar

    path, _, card = int8_tflite
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    wrong = {**card, "input": {**card["input"], "scale": card["input"]["scale"] * 1.1}}
    write_sidecar(ModelCard.from_dict(wrong), [copy])
    with pytest.raises(ContractError, match=r"model card field 'input.scale': card says scale"):
        load_backend(copy)


def test_prepare_input_puts_the_batch_in_the_card_layout() -> None:
    batch = np.random.default_rng(2).random((2, 3, 4, 5), np.float32)
    nhwc = prepare_input(batch, "NHWC", np.float32)
    assert nhwc.flags.c_contiguous
    np.testing.assert_array_equal(nhwc, batch.transpose(0, 2, 3, 1))
    assert prepare_input(batch, "NCHW", np.float32) is batch


# x / scale for each element: ties round half to even, then zero point, then saturation to the dtype's range.
STEPS = [-300, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 126, 300]
QUANTIZED = {
    (np.int8, -3): [-128, -5, -5, -3, -3, -1, -1, 123, 127],
    (np.uint8, 128): [0, 126, 126, 128, 128, 130, 130, 254, 255],
}


@pytest.mark.parametrize(("dtype", "zero_point"), list(QUANTIZED))
def test_prepare_input_quantizes_against_the_card(dtype: type, zero_point: int) -> None:
    scale = 0.5
    batch = (np.array(STEPS, np.float32) * scale).reshape(1, 3, 1, 3)
    q = prepare_input(batch, "NCHW", dtype, (scale, zero_point))
    assert q.dtype == dtype and q.flags.c_contiguous
    assert q.ravel().tolist() == QUANTIZED[(dtype, zero_point)]
    np.testing.assert_array_equal(prepare_input(batch, "NHWC", dtype, (scale, zero_point)), q.transpose(0, 2, 3, 1))
    with pytest.raises(ContractError, match=r"'input.scale': the model takes"):
        prepare_input(batch, "NCHW", dtype)


def test_export_checks_int8_tflite_through_the_backend_path(int8_tflite) -> None:
    """export.quant_tflite validates its int8 file with the LiteRT backend's input and output handling."""
    from edge_sdk_export.quant_tflite import _run_int8

    path, _, card = int8_tflite
    batch = np.random.default_rng(3).random((3, 3, 16, 16), np.float32)
    produced, quant = _run_int8(path, batch)
    assert quant == (card["input"]["scale"], card["input"]["zero_point"])
    backend = load_backend(path, threads=1)
    tensor = backend.card.heads[0].tensor
    rows = np.concatenate([backend._infer(batch[i : i + 1])[tensor] for i in range(len(batch))])
    np.testing.assert_array_equal(produced[tensor], rows)
