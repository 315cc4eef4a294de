"""The model contract: validation errors name their field; sidecars are hash-checked; third-party cards work."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_sdk.backend import load_backend
from edge_sdk.contract.card import InputSpec
from edge_sdk.errors import ContractError
from edge_sdk.model import ModelCard, load_card, sha256_file, sidecar_path
from edge_sdk.model.face_model import FaceModel
from edge_sdk_export.artifacts import write_sidecar
from tests.model_factory import HSEMOTION_LABELS, build_multitask_onnx, build_packed_onnx, multitask_card
from tests.test_backends import int8_tflite  # noqa: F401 - a fixture (a tiny int8 .tflite with its card)

REPO = Path(__file__).resolve().parents[1]
HSEMOTION_CARD = REPO / "docs" / "cards" / "hsemotion_enet_b0_8_va_mtl.card.json"


def test_valid_card_round_trips() -> None:
    card = ModelCard.from_dict(multitask_card())
    again = ModelCard.from_json(card.to_json())
    assert again.to_dict() == card.to_dict()
    assert ModelCard.from_dict(again.to_dict()) == again  # serialised form is a fixed point
    assert again.has_pain
    assert [h.name for h in again.heads] == ["au_occurrence", "au_intensity", "expression", "valence_arousal"]


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(card: dict[str, Any]) -> None:
        node = card
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _drop(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def edit(card: dict[str, Any]) -> None:
        node = card
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return edit


def _pain_without_intensity(card: dict[str, Any]) -> None:
    card["heads"] = [h for h in card["heads"] if h["kind"] != "au_intensity"]
    card["heads"].append({"name": "pain", "kind": "pain", "labels": ["pspi"]})


def _int8_input(scale: Any, zero_point: Any) -> Callable[[dict[str, Any]], None]:
    def edit(card: dict[str, Any]) -> None:
        card["input"].update(dtype="int8", scale=scale, zero_point=zero_point)

    return edit


BAD_CARDS = {
    "unknown contract_version": (_set(("contract_version",), "9.9"), "contract_version"),
    "head missing labels": (_drop(("heads", 2, "labels")), "heads[2] (expression).labels"),
    "head with bad kind": (_set(("heads", 0, "kind"), "emotion"), "heads[0] (au_occurrence).kind"),
    "head with bad activation": (_set(("heads", 3, "activation"), "relu"), "heads[3] (valence_arousal).activation"),
    "clamp without range": (_drop(("heads", 1, "clamp")), "heads[1] (au_intensity).clamp"),
    "pain head without AU intensities": (_pain_without_intensity, "'heads'"),
    "input size not a pair": (_set(("input", "size"), [64]), "input.size"),
    "zero std": (_set(("input", "std"), [0.2, 0.0, 0.2]), "input.std"),
    "int8 input without quantization": (_set(("input", "dtype"), "int8"), "input.scale"),
    "columns not matching labels": (_set(("heads", 3, "columns"), [0, 3]), "heads[3] (valence_arousal).columns"),
    "synthetic_demo not a bool": (_set(("provenance", "synthetic_demo"), "yes"), "provenance.synthetic_demo"),
    # Values that parse but would silently zero or distort the scores (issue #15 item 3).
    "clamp reversed [5, 0]": (_set(("heads", 1, "clamp"), [5, 0]), "heads[1] (au_intensity).clamp"),
    "clamp empty [2, 2]": (_set(("heads", 1, "clamp"), [2, 2]), "heads[1] (au_intensity).clamp"),
    "clamp NaN": (_set(("heads", 1, "clamp"), [0.0, float("nan")]), "heads[1] (au_intensity).clamp"),
    "clamp infinite": (_set(("heads", 1, "clamp"), [0.0, float("inf")]), "heads[1] (au_intensity).clamp"),
    "clamp as strings": (_set(("heads", 1, "clamp"), ["0", "inf"]), "heads[1] (au_intensity).clamp"),
    # An intensity head squeezed below the 0-5 scale pins PSPI near zero: never an alert.
    "intensity clamp [0, 0.5]": (_set(("heads", 1, "clamp"), [0, 0.5]), "heads[1] (au_intensity).clamp"),
    "intensity clamp [-1, 0]": (_set(("heads", 1, "clamp"), [-1, 0]), "heads[1] (au_intensity).clamp"),
    "intensity sigmoid": (_set(("heads", 1, "activation"), "sigmoid"), "heads[1] (au_intensity).activation"),
    "intensity softmax": (_set(("heads", 1, "activation"), "softmax"), "heads[1] (au_intensity).activation"),
    "negative std": (_set(("input", "std"), [0.2, -0.2, 0.2]), "input.std"),
    "infinite std": (_set(("input", "std"), [0.2, float("inf"), 0.2]), "input.std"),
    "mean outside [0, 1]": (_set(("input", "mean"), [0.5, 128.0, 0.5]), "input.mean"),
    "mean NaN": (_set(("input", "mean"), [0.5, float("nan"), 0.5]), "input.mean"),
    "input size zero": (_set(("input", "size"), [0, 64]), "input.size"),
    "input size huge": (_set(("input", "size"), [64, 100000]), "input.size"),
    "input size booleans": (_set(("input", "size"), [True, True]), "input.size"),
    "int8 scale zero": (_int8_input(0.0, 0), "input.scale"),
    "int8 scale NaN": (_int8_input(float("nan"), 0), "input.scale"),
    "int8 scale a string": (_int8_input("0.1", 0), "input.scale"),
    "int8 zero_point out of range": (_int8_input(0.02, 300), "input.zero_point"),
    "columns starting below 0": (_set(("heads", 3, "columns"), [-2, 0]), "heads[3] (valence_arousal).columns"),
    "provenance not an object": (_set(("provenance",), ["demo"]), "'provenance'"),
    "export not an object": (_set(("export",), "fp32"), "'export'"),
}


@pytest.mark.parametrize("case", list(BAD_CARDS))
def test_bad_card_names_the_field(case: str) -> None:
    edit, field = BAD_CARDS[case]
    data = copy.deepcopy(multitask_card())
    edit(data)
    with pytest.raises(ContractError) as err:
        ModelCard.from_dict(data, "card.json")
    assert field in str(err.value), str(err.value)
    assert str(err.value).startswith("card.json: "), "the message names the file"


def test_label_count_mismatching_the_output_shape(tmp_path: Path) -> None:
    card = multitask_card()
    card["heads"][0]["labels"] = card["heads"][0]["labels"][:-1]  # 12 labels, the tensor has 13 columns
    model = build_multitask_onnx(tmp_path / "m.onnx", card=card)
    with pytest.raises(ContractError) as err:
        load_backend(model)
    message = str(err.value)
    assert "heads[0] (au_occurrence).labels" in message and "12 labels" in message and str(model) in message


def test_head_reading_a_missing_tensor(tmp_path: Path) -> None:
    card = multitask_card()
    card["heads"][2]["output"] = "emotion_logits"
    model = build_multitask_onnx(tmp_path / "m.onnx", card=card)
    with pytest.raises(ContractError, match=r"heads\[2\] \(expression\)\.output.*'emotion_logits'"):
        load_backend(model)


@pytest.fixture()
def ir_artifact(tmp_path: Path) -> Path:
    """A real OpenVINO IR with its sidecar (conversion takes well under a second)."""
    from edge_sdk_export.convert import onnx_to_openvino_fp32

    return onnx_to_openvino_fp32(build_multitask_onnx(tmp_path / "m.onnx"), tmp_path / "ir")


def test_sidecar_round_trip(ir_artifact: Path) -> None:
    card = load_card(ir_artifact)
    assert set(card.files) == {"m.xml", "m.bin"}
    assert card.files["m.bin"] == sha256_file(ir_artifact.with_suffix(".bin"))


def test_sidecar_sha256_mismatch_after_editing_one_byte(ir_artifact: Path) -> None:
    weights = ir_artifact.with_suffix(".bin")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ContractError) as err:
        load_card(ir_artifact)
    assert "files.m.bin" in str(err.value) and "sha256 mismatch" in str(err.value)
    assert str(sidecar_path(ir_artifact)) in str(err.value)


def test_sidecar_without_files(ir_artifact: Path) -> None:
    card_path = sidecar_path(ir_artifact)
    data = json.loads(card_path.read_text())
    del data["files"]
    card_path.write_text(json.dumps(data))
    with pytest.raises(ContractError, match=r"model card field 'files': does not list 'm.xml'"):
        load_card(ir_artifact)


def _copy_with_input(artifact: Path, folder: Path, **changes: Any) -> Path:
    """A copy of ``artifact`` (with its .bin for an IR) whose sidecar card's ``input`` says ``changes``."""
    folder.mkdir()
    files = [artifact, *([artifact.with_suffix(".bin")] if artifact.suffix == ".xml" else [])]
    copies = [Path(shutil.copy(f, folder / f.name)) for f in files]
    data = load_card(artifact).to_dict()
    data["input"].update(changes)
    write_sidecar(ModelCard.from_dict(data), copies)
    return copies[0]


def _other_input(spec: InputSpec) -> dict[str, dict[str, Any]]:
    """Card edits that disagree with a model whose real input is ``spec``: size, layout, dtype."""
    dtype = {"dtype": "float32"} if spec.dtype != "float32" else {"dtype": "uint8", "scale": 0.02, "zero_point": 128}
    return {
        "input.size": {"size": [spec.height * 2, spec.width * 2]},
        "input.layout": {"layout": "NHWC" if spec.layout == "NCHW" else "NCHW"},
        "input.dtype": dtype,
    }


@pytest.mark.parametrize("field", ["input.size", "input.layout", "input.dtype"])
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino (onnx)", "openvino (IR)", "litert"])
def test_card_input_disagreeing_with_the_model_fails_at_load(
    runtime: str,
    field: str,
    tmp_path: Path,
    ir_artifact: Path,
    int8_tflite: tuple[Path, Any, Any],  # noqa: F811 - the fixture imported above
) -> None:
    """Every backend checks the card against the model's real input when it loads it, not at the first frame."""
    prebuilt = {"openvino (IR)": ir_artifact, "litert": int8_tflite[0]}
    artifact = prebuilt.get(runtime) or build_multitask_onnx(tmp_path / "m.onnx")
    copy = _copy_with_input(artifact, tmp_path / "edited", **_other_input(load_card(artifact).input)[field])
    with pytest.raises(ContractError) as err:
        load_backend(copy, backend=runtime.split(" ")[0])
    message = str(err.value)
    assert message.startswith(f"{copy}: model card field '{field}': card says"), message


def _hand_written_card(model: Path) -> dict[str, Any]:
    """What a user writes for a third-party ONNX: one 10-value output split into two heads."""
    card = json.loads(HSEMOTION_CARD.read_text())
    card["name"] = "packed-test"
    card["input"]["size"] = [64, 64]
    for head in card["heads"]:
        head["output"] = "logits"
    card["files"] = {model.name: sha256_file(model)}
    return card


def test_third_party_onnx_with_a_hand_written_card(tmp_path: Path) -> None:
    model = build_packed_onnx(tmp_path / "packed.onnx")
    sidecar_path(model).write_text(json.dumps(_hand_written_card(model)))
    face_model = FaceModel(model)
    assert face_model.card.head("expression").labels == HSEMOTION_LABELS
    crops = [np.random.default_rng(i).integers(0, 256, (90, 80, 3), dtype=np.uint8) for i in range(4)]
    out = face_model.predict(crops)
    assert set(out) == {"expression", "valence_arousal"}, "no AU heads -> no pspi"
    assert out["expression"].shape == (4, 8) and out["valence_arousal"].shape == (4, 2)
    np.testing.assert_allclose(out["expression"].sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.abs(out["valence_arousal"]) <= 1.0)
    # The heads are columns of the one raw output: expression = softmax(logits[:, :8]), VA = logits[:, 8:10].
    import onnxruntime as ort

    logits = ort.InferenceSession(str(model)).run(None, {"input": face_model.preprocess(crops)})[0]
    np.testing.assert_allclose(out["valence_arousal"], np.clip(logits[:, 8:10], -1, 1), atol=1e-6)
    assert np.array_equal(out["expression"].argmax(1), logits[:, :8].argmax(1))


def test_third_party_onnx_without_any_card_says_how_to_fix(tmp_path: Path) -> None:
    from edge_sdk.errors import ArtifactError

    model = build_packed_onnx(tmp_path / "packed.onnx")
    with pytest.raises(ArtifactError, match="no model card.*write a card"):
        FaceModel(model)


def test_documented_hsemotion_card_is_valid() -> None:
    data = json.loads(HSEMOTION_CARD.read_text())
    # The placeholder is deliberately not a hash: the user pastes the sha256 of their download.
    with pytest.raises(ContractError, match="'files'"):
        ModelCard.from_dict(data, str(HSEMOTION_CARD))
    del data["files"]
    card = ModelCard.from_dict(data, str(HSEMOTION_CARD))
    assert (card.input.name, card.input.height, card.input.width, card.input.color_order) == ("input", 224, 224, "RGB")
    assert card.input.mean == (0.485, 0.456, 0.406) and card.input.std == (0.229, 0.224, 0.225)
    assert card.output_tensors == ("output",)
    assert [h.columns for h in card.heads] == [(0, 8), (8, 10)]
    assert card.head("expression").labels == HSEMOTION_LABELS
    assert not card.has_pain and not card.provenance.synthetic_demo
