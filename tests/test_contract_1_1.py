"""Contract 1.1 on the runtime: 1-channel GRAY input on every backend (NCHW/NHWC, float and int8/uint8),
the card's face crop (aligned with a scale, or a detector box), ``edge-sdk card`` checking a card against
the model file, ``edge-sdk card init`` drafting one, and ``edge-sdk predict`` on a GRAY NHWC box-crop model
(the issue's done-when card). 1.0 cards (the shipped demo) load and run unchanged.

LiteRT coverage: a tiny 1-channel NHWC ``.tflite`` made with the TFLite converter (float and full-integer
int8), a few seconds in all.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_sdk.backend import load_backend
from edge_sdk.backend.model_io import check_card_fits, draft_card, read_model_io
from edge_sdk.cli import main
from edge_sdk.contract import CropSpec
from edge_sdk.contract.processing import check_batch, preprocess
from edge_sdk.errors import ContractError, InputError
from edge_sdk.face.align import ARCFACE_TEMPLATE_112, BOX_MARGIN, box_crop, crop_face, template_for
from edge_sdk.face.detect import Face
from edge_sdk.model import ModelCard, load_card
from edge_sdk.model.face_model import DEMO_MODEL, FaceModel
from tests.gray_models import (
    FER_LABELS,
    INPUT_NAME,
    QUANT,
    build_gray_onnx,
    build_gray_tflite,
    gray_card,
    with_input,
)
from tests.model_factory import build_packed_onnx, multitask_card
from tests.runtime_fixtures import face_file, yunet_path


def _crops(n: int = 3) -> list[np.ndarray]:
    return [np.random.default_rng(i).integers(0, 256, (70, 60, 3), dtype=np.uint8) for i in range(n)]


def _gray_reference(crops: list[np.ndarray], size: int = 64) -> np.ndarray:
    """What a GRAY mean/std 0.5 card feeds a model: OpenCV luma, (p/255 - 0.5)/0.5, as N x 1 x H x W."""
    rows = []
    for crop in crops:
        small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        rows.append(((cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) / 255.0 - 0.5) / 0.5)[None])
    return np.stack(rows).astype(np.float32)


# ---- preprocessing --------------------------------------------------------------------------------


def test_preprocess_gray_is_opencv_luma_normalised_nchw() -> None:
    spec = ModelCard.from_dict(gray_card()).input
    crops = _crops()
    batch = preprocess(crops, spec)
    assert batch.shape == (3, 1, 64, 64) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, _gray_reference(crops), atol=1e-6)
    assert check_batch(batch, spec) is not None


def test_check_batch_names_the_channels() -> None:
    spec = ModelCard.from_dict(gray_card()).input
    with pytest.raises(InputError, match=r"\(N, 1, 64, 64\) \(1-channel GRAY\)"):
        check_batch(np.zeros((1, 3, 64, 64), np.float32), spec)
    rgb = ModelCard.from_dict(multitask_card()).input
    with pytest.raises(InputError, match=r"\(N, 3, 64, 64\) \(3-channel RGB\)"):
        check_batch(np.zeros((1, 1, 64, 64), np.float32), rgb)


# ---- backends ---------------------------------------------------------------------------------------

GRAY_ONNX = [(layout, dtype) for layout in ("NHWC", "NCHW") for dtype in ("float32", "int8", "uint8")]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize(("layout", "dtype"), GRAY_ONNX)
def test_gray_onnx_runs_on_every_backend(layout: str, dtype: str, backend: str, tmp_path: Path) -> None:
    """1-channel input in either layout, float or quantized: the same outputs as the float model fed by hand."""
    model = FaceModel(build_gray_onnx(tmp_path / "m.onnx", layout, dtype), backend=backend, threads=1)
    assert (model.info.layout, model.info.input_dtype) == (layout, dtype)
    crops = _crops()
    out = model.predict(crops)["expression"]

    import onnxruntime as ort

    reference_model = build_gray_onnx(tmp_path / "ref.onnx", "NCHW", "float32", card={})
    expected = ort.InferenceSession(str(reference_model)).run(None, {INPUT_NAME: _gray_reference(crops)})[0]
    step = QUANT[dtype][0] if dtype in QUANT else 0.0
    np.testing.assert_allclose(out, expected, atol=1e-4 + 2 * step)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module", params=[False, True], ids=["float", "int8"])
def gray_tflite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    return build_gray_tflite(tmp_path_factory.mktemp("tflite") / "gray.tflite", int8=request.param)


def test_gray_tflite_runs_on_litert(gray_tflite: tuple[Path, Any, dict[str, Any]]) -> None:
    path, reference, card = gray_tflite
    backend = load_backend(path, threads=1)
    assert (backend.info.layout, backend.card.input.channels) == ("NHWC", 1)
    batch = np.random.default_rng(1).uniform(-1, 1, (3, 1, 16, 16)).astype(np.float32)  # N > 1: resized
    raw = backend.run(batch)["expression"]
    expected = reference(batch.transpose(0, 2, 3, 1))
    tolerance = 1e-5 if card["input"]["dtype"] == "float32" else 0.05
    np.testing.assert_allclose(raw, expected, atol=tolerance)


def test_card_channels_disagreeing_with_the_model_fails_at_load(tmp_path: Path) -> None:
    rgb_card = with_input(gray_card(), channels=3, color_order="RGB", mean=[0.5] * 3, std=[0.5] * 3)
    path = build_gray_onnx(tmp_path / "m.onnx", card=rgb_card)
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(ContractError, match=r"model card field 'input.channels': card says NHWC \[64, 64, 3\]"):
            load_backend(path, backend=backend)


# ---- face crops ---------------------------------------------------------------------------------------


def _face_image() -> tuple[np.ndarray, Face]:
    """A 200x200 smoothly textured image with a face box at (60, 40, 80, 100) and ArcFace-like landmarks."""
    coarse = np.random.default_rng(0).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (200, 200), interpolation=cv2.INTER_CUBIC)  # smooth: resampling barely changes it
    landmarks = template_for(80, 100) + np.array([60, 40], np.float32)
    return image, Face((60.0, 40.0, 80.0, 100.0), 0.9, landmarks)


def test_box_crop_spec_grows_the_box_without_warping() -> None:
    image, face = _face_image()
    crop, how = crop_face(image, face, 64, 64, CropSpec(method="box", margin=0.5, square=True))
    assert how == "box" and crop.shape == (64, 64, 3)
    side = 100 * 1.5  # the longer side grown by the margin
    x0, y0 = round(100 - side / 2), round(90 - side / 2)
    expected = cv2.resize(image[y0 : y0 + 150, x0 : x0 + 150], (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crop, expected)
    loose, _ = crop_face(image, face, 64, 64, CropSpec(method="box", margin=0.0, square=False))
    expected = cv2.resize(image[40:140, 60:140], (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(loose, expected)


def test_aligned_crop_scale_zooms_out_about_the_centre() -> None:
    points = template_for(112, 112, "arcface", 2.0)
    np.testing.assert_allclose(points, 56 + (ARCFACE_TEMPLATE_112 - 56) / 2, atol=1e-5)
    image, face = _face_image()
    default, how = crop_face(image, face, 112, 112)
    assert how == "aligned"
    assert np.array_equal(default, crop_face(image, face, 112, 112, CropSpec(scale=1.0))[0])
    zoomed, how = crop_face(image, face, 112, 112, CropSpec(scale=2.0))
    assert how == "aligned" and not np.array_equal(zoomed, default)
    # Zoomed out by 2, the face (half the crop) is the default crop shrunk by 2 around the centre.
    shrunk = cv2.resize(default, (56, 56), interpolation=cv2.INTER_AREA)
    assert np.abs(zoomed[28:84, 28:84].astype(int) - shrunk.astype(int)).mean() < 4


def test_aligned_crop_without_landmarks_keeps_the_box_fallback() -> None:
    image, face = _face_image()
    bare = Face(face.box, face.score, None)
    crop, how = crop_face(image, bare, 64, 64, CropSpec(scale=1.5))
    assert how == "box"
    np.testing.assert_array_equal(crop, box_crop(image, face.box, 64, 64, BOX_MARGIN, True))


# ---- bad cards --------------------------------------------------------------------------------------

BAD_CARDS = {
    "crop.method unknown": ({"crop": {"method": "fancy"}}, "input.crop.method"),
    "crop.template unknown": ({"crop": {"method": "aligned", "template": "dlib68"}}, "input.crop.template"),
    "channels 2": ({"channels": 2}, "input.channels"),
    "GRAY with 3 channels": ({"channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3}, "input.color_order"),
    "mean length wrong": ({"mean": [0.5, 0.5, 0.5]}, "input.mean"),
    "std length wrong": ({"std": []}, "input.std"),
}


def _bad_card(case: str) -> dict[str, Any]:
    changes, _ = BAD_CARDS[case]
    return with_input(gray_card(), **changes)


@pytest.mark.parametrize("case", list(BAD_CARDS))
def test_bad_1_1_card_names_the_field(case: str) -> None:
    with pytest.raises(ContractError, match=f"'{BAD_CARDS[case][1]}'"):
        ModelCard.from_dict(_bad_card(case), "card.json")


def test_1_0_card_may_not_use_the_crop() -> None:
    data = multitask_card()
    data["input"]["crop"] = {"method": "box"}
    with pytest.raises(ContractError, match=r"'input.crop': needs contract_version '1.1'"):
        ModelCard.from_dict(data)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", ["crop.method unknown", "channels 2", "mean length wrong"])
def test_card_command_refuses_a_bad_card_file_naming_the_field(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = build_gray_onnx(tmp_path / "m.onnx", card={})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_bad_card(case)))
    code, out, err = _cli(capsys, "card", str(model), "--card", str(bad))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {bad}: model card field '{BAD_CARDS[case][1]}'"), err


# ---- edge-sdk card MODEL [--card] ------------------------------------------------------------------------


def test_card_command_validates_the_done_when_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = build_gray_onnx(tmp_path / "fer.onnx")
    code, out, err = _cli(capsys, "card", str(model))
    assert code == 0, err
    assert "model file: ok (input 'input_1' NHWC 1x64x64 GRAY float32, crop box" in err  # the verdict: stderr
    assert "forward pass: ok on onnxruntime" in err
    card = json.loads(out)  # stdout: the card, nothing else
    assert card["input"]["crop"] == {"method": "box", "margin": 0.2, "square": True}
    code, out, err = _cli(capsys, "card", str(model), "--json")
    verdict = json.loads(out)  # --json: the card and the verdict in one object
    assert code == 0 and verdict["card"] == card and verdict["valid"]["forward_pass"].startswith("ok on onnxruntime")


def test_card_command_checks_a_separate_card_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = build_gray_onnx(tmp_path / "fer.onnx", card={})  # no embedded card: a third-party file
    card = tmp_path / "fer.json"
    card.write_text(json.dumps(gray_card()))
    code, out, err = _cli(capsys, "card", str(model), "--card", str(card))
    assert code == 0 and "forward pass: ok" in err, err


WRONG_FOR_THE_MODEL = {
    "input.name": lambda c: with_input(c, name="image"),
    "input.channels": lambda c: with_input(c, channels=3, color_order="BGR", mean=[0.5] * 3, std=[0.5] * 3),
    "input.layout": lambda c: with_input(c, layout="NCHW"),
    "input.size": lambda c: with_input(c, size=[48, 48]),
    "input.dtype": lambda c: with_input(c, dtype="uint8", scale=0.01, zero_point=128),
    "heads[0] (expression).output": lambda c: {**c, "heads": [{**c["heads"][0], "output": "logits"}]},
    "heads[0] (expression).labels": lambda c: {**c, "heads": [{**c["heads"][0], "labels": list(FER_LABELS[:6])}]},
}


@pytest.mark.parametrize("field", list(WRONG_FOR_THE_MODEL))
def test_card_command_names_the_field_that_does_not_fit_the_model(
    field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = build_gray_onnx(tmp_path / "fer.onnx", card={})
    card = tmp_path / "fer.json"
    card.write_text(json.dumps(WRONG_FOR_THE_MODEL[field](copy.deepcopy(gray_card()))))
    code, out, err = _cli(capsys, "card", str(model), "--card", str(card))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"model card field '{field}'" in err, err


def test_card_fits_the_tflite_and_openvino_files(gray_tflite: tuple[Path, Any, dict[str, Any]], tmp_path: Path) -> None:
    path, _, card = gray_tflite
    check_card_fits(ModelCard.from_dict(card), read_model_io(path))
    with pytest.raises(ContractError, match="'input.name'"):
        check_card_fits(ModelCard.from_dict(with_input(card, name="image")), read_model_io(path))

    import openvino as ov

    xml = tmp_path / "fer.xml"
    ov.save_model(ov.convert_model(str(build_gray_onnx(tmp_path / "fer.onnx", card={}))), str(xml))
    check_card_fits(ModelCard.from_dict(gray_card()), read_model_io(xml))
    with pytest.raises(ContractError, match="'input.layout'"):
        check_card_fits(ModelCard.from_dict(with_input(gray_card(), layout="NCHW")), read_model_io(xml))


# ---- edge-sdk card init ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gray NHWC", "gray NCHW uint8", "packed RGB", "demo"])
def test_card_init_drafts_a_card_that_fits_its_model(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind == "demo":
        model, expected = DEMO_MODEL, ("NCHW", 3, "RGB", 112)
    elif kind == "packed RGB":
        model, expected = build_packed_onnx(tmp_path / "packed.onnx"), ("NCHW", 3, "RGB", 64)
    else:
        layout = kind.split()[1]
        dtype = "uint8" if "uint8" in kind else "float32"
        model, expected = build_gray_onnx(tmp_path / "m.onnx", layout, dtype, card={}), (layout, 1, "GRAY", 64)
    code, out, err = _cli(capsys, "card", "init", str(model))
    assert code == 0, err
    card = ModelCard.from_json(out)
    assert card.contract_version == "1.1" and "TODO" in card.description
    spec = card.input
    assert (spec.layout, spec.channels, spec.color_order, spec.height) == expected
    assert (card.provenance.source, card.provenance.synthetic_demo) == (model.name, False)
    assert all(h.kind == "expression" and h.labels[0] == "class0" for h in card.heads)
    draft = tmp_path / "draft.json"
    draft.write_text(out)
    code, _, err = _cli(capsys, "card", str(model), "--card", str(draft))
    assert code == 0, err


def test_card_init_on_a_tflite(gray_tflite: tuple[Path, Any, dict[str, Any]]) -> None:
    path, _, card = gray_tflite
    draft = draft_card(read_model_io(path))
    assert (draft.input.name, draft.input.layout, draft.input.channels, draft.input.dtype) == (
        "x",
        "NHWC",
        1,
        card["input"]["dtype"],
    )
    assert (draft.input.scale, draft.input.zero_point) == (card["input"].get("scale"), card["input"].get("zero_point"))
    assert [len(h.labels) for h in draft.heads] == [len(FER_LABELS)]


def test_card_init_needs_a_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _cli(capsys, "card", "init", str(tmp_path / "missing.onnx"))
    assert code == 2 and "missing.onnx" in err and err.count("\n") == 1


# ---- edge-sdk predict on the done-when model; 1.0 demo unchanged -------------------------------------------


def test_predict_runs_a_gray_nhwc_box_crop_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = build_gray_onnx(tmp_path / "fer.onnx")
    image = str(face_file("single_face.jpg"))
    code, out, err = _cli(
        capsys, "predict", "--model", str(model), "--detector-model", str(yunet_path()), image, "--json"
    )
    assert code == 0, err
    (report,) = json.loads(out)
    (face,) = report["faces"]
    assert face["crop"] == "box"
    assert list(face["expression"]) == list(FER_LABELS)
    assert sum(face["expression"].values()) == pytest.approx(1.0, abs=1e-3)


def test_shipped_1_0_demo_card_loads_and_runs_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    card = load_card(DEMO_MODEL)
    assert card.contract_version == "1.0" and card.input.channels == 3
    assert card.input.crop == CropSpec() and "crop" not in card.to_dict()["input"]
    code, out, err = _cli(capsys, "card", "demo")
    assert code == 0 and "forward pass: ok" in err and json.loads(out)["name"], err
    image = str(face_file("single_face.jpg"))
    code, out, err = _cli(capsys, "predict", "--detector-model", str(yunet_path()), image, "--json")
    assert code == 0, err
    assert json.loads(out)[0]["faces"][0]["crop"] == "aligned"


def test_benchmark_baseline_feeds_an_nhwc_parent_in_its_layout(tmp_path: Path) -> None:
    from edge_sdk.bench.measure import load_baseline, sample_batch

    path = build_gray_onnx(tmp_path / "fer.onnx")
    card = load_card(path)
    session = load_baseline(path, card, sample_batch(card))
    (probabilities,) = session.call()
    assert probabilities.shape == (1, len(FER_LABELS))
