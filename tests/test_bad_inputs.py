"""Bad files, cards and images fail with the right EdgeSdkError naming the file/field; the CLI exits 2 cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.errors import ArtifactError, ContractError, EdgeSdkError, InputError
from edge_sdk.model import load_card, sidecar_path
from edge_sdk.model.face_model import DEMO_MODEL, FaceModel
from edge_sdk_export.artifacts import write_sidecar

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_onnx() -> Path:
    if not DEMO_MODEL.is_file():
        pytest.fail(f"{DEMO_MODEL} is missing: the packaged demo model must be in the checkout")
    return DEMO_MODEL


def _text_as_onnx(folder: Path, demo: Path) -> Path:
    path = folder / "notes.onnx"
    path.write_text("this is a shopping list, not a model\n")
    return path


def _jpg(folder: Path, demo: Path) -> Path:
    import cv2

    path = folder / "face.jpg"
    cv2.imwrite(str(path), np.full((64, 64, 3), 128, np.uint8))
    return path


def _truncated_onnx(folder: Path, demo: Path) -> Path:
    path = folder / "truncated.onnx"
    data = demo.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _copy_with_sidecar(folder: Path, demo: Path, name: str = "copy.onnx") -> Path:
    path = folder / name
    path.write_bytes(demo.read_bytes())
    write_sidecar(load_card(demo), [path])
    return path


def _missing_head_label(folder: Path, demo: Path) -> Path:
    path = _copy_with_sidecar(folder, demo)
    card_path = sidecar_path(path)
    card = json.loads(card_path.read_text())
    card["heads"][0]["labels"] = card["heads"][0]["labels"][:-1]
    card_path.write_text(json.dumps(card))
    return path


def _sha_mismatch(folder: Path, demo: Path) -> Path:
    path = _copy_with_sidecar(folder, demo)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _garbage_with_valid_sidecar(suffix: str) -> Callable[[Path, Path], Path]:
    """A hash-correct sidecar over a file the runtime cannot read: the runtime's error must be clean too."""

    def make(folder: Path, demo: Path) -> Path:
        path = folder / f"garbage{suffix}"
        path.write_bytes(b"\x00not a model\x01" * 64)
        write_sidecar(load_card(demo), [path])
        return path

    return make


# name -> (make bad file, expected error, text the message must contain besides the file name)
BAD_MODELS: dict[str, tuple[Callable[[Path, Path], Path], type[EdgeSdkError], str]] = {
    "text file named .onnx": (_text_as_onnx, ArtifactError, "not a readable ONNX model"),
    "jpg": (_jpg, ArtifactError, "not a model artifact (suffix '.jpg')"),
    "truncated onnx": (_truncated_onnx, ArtifactError, "not a readable ONNX model"),
    "card with a missing head label": (_missing_head_label, ContractError, ".labels"),
    "sha256-mismatched sidecar": (_sha_mismatch, ContractError, "sha256 mismatch"),
    "garbage .tflite": (_garbage_with_valid_sidecar(".tflite"), ArtifactError, "not a readable TFLite model"),
    "garbage .xml": (_garbage_with_valid_sidecar(".xml"), ArtifactError, "not a readable OpenVINO"),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_model_file(case: str, tmp_path: Path, demo_onnx: Path) -> None:
    make, error, text = BAD_MODELS[case]
    path = make(tmp_path, demo_onnx)
    with pytest.raises(error) as err:
        FaceModel(path)
    message = str(err.value)
    assert path.name in message and text in message, message
    assert "\n" not in message.strip(), "one line"


BAD_IMAGES = {
    "grey HxW": (np.zeros((64, 64), np.uint8), "shape (H, W, 3)"),
    "BGRA HxWx4": (np.zeros((64, 64, 4), np.uint8), "shape (H, W, 3)"),
    "float32": (np.zeros((64, 64, 3), np.float32), "dtype uint8"),
    "not an array": ([[0, 0, 0]], "numpy array"),
}


@pytest.fixture(scope="module")
def demo_model(demo_onnx: Path) -> FaceModel:
    return FaceModel(demo_onnx)


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_into_predict(case: str, demo_model: FaceModel) -> None:
    image, text = BAD_IMAGES[case]
    good = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(InputError) as err:
        demo_model.predict([good, image])
    assert "face crop 1" in str(err.value) and text in str(err.value), str(err.value)


def test_empty_batch_into_predict(demo_model: FaceModel) -> None:
    with pytest.raises(InputError, match="no face crops"):
        demo_model.predict([])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_sdk", *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )


# `card` reads only the card, so the expected text can differ from FaceModel's (a .jpg has no sidecar card).
CLI_CASES = {
    "text file named .onnx": "not a readable ONNX model",
    "truncated onnx": "not a readable ONNX model",
    "jpg": "no model card",
    "card with a missing head label": "heads[0] (au_occurrence).labels",  # `card MODEL` loads the model too
    "sha256-mismatched sidecar": "sha256 mismatch",
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_card_on_a_bad_file_exits_2_with_one_error_line(case: str, tmp_path: Path, demo_onnx: Path) -> None:
    path = BAD_MODELS[case][0](tmp_path, demo_onnx)
    result = _cli("card", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert path.name in lines[0] and CLI_CASES[case] in lines[0], lines[0]


def test_cli_card_on_a_bad_card_json(tmp_path: Path, demo_onnx: Path) -> None:
    card = json.loads(load_card(demo_onnx).to_json())
    card["heads"][1]["activation"] = "relu"
    path = tmp_path / "bad.card.json"
    path.write_text(json.dumps(card))
    result = _cli("card", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: model card field 'heads[1] (au_intensity).activation': "
        "got 'relu', expected one of none, sigmoid, softmax, tanh, clamp"
    ]


def test_cli_card_on_the_demo_succeeds(demo_onnx: Path) -> None:
    result = _cli("card", str(demo_onnx))
    assert result.returncode == 0, result.stderr
    assert "valid: contract 1.0" in result.stderr  # the verdict is for the person; stdout is the card only
    assert json.loads(result.stdout) == load_card(demo_onnx).to_dict()
