"""Broken models are caught before and at the bedside: a bit-flipped demo, out-of-range heads, weights hashes.

The damaged model is the packaged demo with 50 bytes of one large weight tensor overwritten (the file still
loads and its embedded card still parses); the out-of-range one is a real small ONNX whose AU-intensity head
has no activation. Everything runs on ONNX Runtime.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.cli import main
from edge_sdk.cli.doctor import Setup, check_model
from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.card_io import load_card
from edge_sdk.contract.onnx_metadata import weights_sha256
from edge_sdk.contract.output_check import output_problems
from edge_sdk.contract.processing import postprocess
from edge_sdk.errors import ArtifactError, ContractError
from edge_sdk.model.face_model import DEMO_MODEL, FaceModel
from edge_sdk.model.self_test import forward_check, render_test_face
from tests.model_factory import build_multitask_onnx, multitask_card

FLIPPED_BYTES = 50


def largest_weights(path: Path) -> tuple[int, int]:
    """(file offset, length) of the largest initializer's raw bytes in the ONNX file at ``path``."""
    import onnx

    model = onnx.load(str(path))
    raw = max((t.raw_data for t in model.graph.initializer), key=len)
    offset = path.read_bytes().find(raw)
    assert offset > 0 and len(raw) > 10 * FLIPPED_BYTES
    return offset, len(raw)


def flip_weights(path: Path) -> Path:
    """Overwrite FLIPPED_BYTES bytes in the middle of the largest weight tensor with 0xFF (NaN floats), in place."""
    offset, length = largest_weights(path)
    start = offset + (length // 2) // 4 * 4  # on a float boundary inside the tensor
    data = bytearray(path.read_bytes())
    data[start : start + FLIPPED_BYTES] = b"\xff" * FLIPPED_BYTES
    path.write_bytes(bytes(data))
    return path


def without_weights_hash(source: Path, destination: Path) -> Path:
    """A copy of ``source`` whose embedded card has no ``export.weights_sha256``, as cards written before the
    field existed (and third-party cards) have: only the forward-pass check can catch its damage."""
    import onnx

    from edge_sdk.contract.card import ONNX_METADATA_KEY

    model = onnx.load(str(source))
    data = load_card(source).to_dict()
    data["export"].pop("weights_sha256", None)
    for prop in model.metadata_props:
        if prop.key == ONNX_METADATA_KEY:
            prop.value = ModelCard.from_dict(data).to_json()
    onnx.save(model, str(destination))
    return destination


def flipped_demo(folder: Path, keep_hash: bool = False) -> Path:
    """A copy of the demo model with damaged weights (the original is never touched). Without ``keep_hash``
    its card has no weights hash, so it loads and must be caught by what it computes."""
    copy_path = folder / "demo_flipped.onnx"
    if keep_hash:
        shutil.copyfile(DEMO_MODEL, copy_path)
    else:
        without_weights_hash(DEMO_MODEL, copy_path)
    return flip_weights(copy_path)


def unclamped_intensity_model(folder: Path) -> Path:
    """A real ONNX whose au_intensity head has no activation: its raw values leave the 0-5 scale."""
    card = copy.deepcopy(multitask_card())
    intensity = next(h for h in card["heads"] if h["kind"] == "au_intensity")
    intensity["activation"] = "none"
    del intensity["clamp"]
    return build_multitask_onnx(folder / "unclamped.onnx", card=card)


# ---- the check itself ----------------------------------------------------------------------------------
def test_output_problems_name_the_head_and_the_value(tmp_path: Path) -> None:
    card = ModelCard.from_dict(multitask_card())
    good = FaceModel(build_multitask_onnx(tmp_path / "m.onnx")).predict([render_test_face()])
    assert output_problems(card, good) == [None]
    bad = {k: v.copy() for k, v in good.items()}
    bad["au_intensity"][0, 2] = np.nan
    assert output_problems(card, bad) == ["au_intensity: 1 non-finite value(s) (AU4=nan)"]
    bad = {k: v.copy() for k, v in good.items()}
    bad["expression"][0] = 0.5  # probabilities summing to 4
    assert output_problems(card, bad) == ["expression: probabilities sum to 4, not 1"]
    bad = {k: v.copy() for k, v in good.items()}
    bad["valence_arousal"][0, 1] = -1.2  # tanh cannot give that
    assert output_problems(card, bad) == ["valence_arousal: arousal=-1.2 outside [-1, 1]"]
    bad = {k: v.copy() for k, v in good.items()}
    bad["pspi"][0] = np.inf
    assert output_problems(card, bad) == ["pspi: 1 non-finite value(s) (pspi=inf)"]


def test_a_regression_intensity_head_overshooting_the_scale_is_pain_not_a_fault(tmp_path: Path) -> None:
    """-0.3 on a neutral face or 5.4 at maximum pain is what a real regression head gives: clipped to 0-5 for
    PSPI, not a model fault (maximum pain must alert, not show ``fault``). Far outside or non-finite is."""
    data = copy.deepcopy(multitask_card())
    intensity = next(h for h in data["heads"] if h["kind"] == "au_intensity")
    intensity["activation"] = "none"
    del intensity["clamp"]
    card = ModelCard.from_dict(data)
    good = FaceModel(build_multitask_onnx(tmp_path / "m.onnx")).predict([render_test_face()])
    raw = {k: v.copy() for k, v in good.items() if k != "pspi"}
    raw["au_intensity"][0] = 5.4  # every action unit beyond the top of the scale
    raw["au_intensity"][0, 0] = -0.3
    outputs = postprocess(card, raw)
    assert output_problems(card, outputs) == [None]
    assert outputs["pspi"][0] == pytest.approx(16.0)  # maximum pain, clipped to the PSPI scale
    for value, problem in [(-5.5, "outside [-5, 10]"), (10.5, "outside [-5, 10]"), (np.inf, "non-finite")]:
        bad = {k: v.copy() for k, v in outputs.items()}
        bad["au_intensity"][0, 2] = value
        (found,) = output_problems(card, bad)
        assert found is not None and problem in found and "AU4" in found


def test_the_damaged_demo_still_loads_and_its_card_parses(tmp_path: Path) -> None:
    damaged = flipped_demo(tmp_path)
    assert load_card(damaged) == load_card(DEMO_MODEL)  # the same card, but for the weights hash it lacks
    model = FaceModel(damaged)  # nothing about the file itself is wrong: only its numbers
    outputs = model.predict([render_test_face()])
    assert not np.isfinite(outputs["pspi"]).all()  # the silent-NaN the runtime must catch
    assert "non-finite" in forward_check(model)
    assert forward_check(FaceModel("demo")) is None


# ---- doctor and card ----------------------------------------------------------------------------------
def test_doctor_fails_the_damaged_demo_and_passes_the_real_one(tmp_path: Path) -> None:
    (finding,) = check_model(Setup(model=str(flipped_demo(tmp_path))))
    assert finding.status == "FAIL" and finding.required
    assert "non-finite" in finding.detail and "damaged" in finding.fix
    (finding,) = check_model(Setup(model="demo"))
    assert finding.status == "warn" and "SYNTHETIC" in finding.detail  # runs; warns only that it is synthetic


def test_doctor_fails_a_model_whose_heads_leave_the_card_ranges(tmp_path: Path) -> None:
    (finding,) = check_model(Setup(model=str(unclamped_intensity_model(tmp_path))))
    assert finding.status == "FAIL" and "au_intensity" in finding.detail and "outside [-5, 10]" in finding.detail


def test_card_command_fails_damaged_or_out_of_range_models(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    damaged = flipped_demo(tmp_path)
    assert main(["card", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(damaged) in err and "non-finite" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["card", str(unclamped_intensity_model(tmp_path))]) == 2
    assert "outside [-5, 10]" in capsys.readouterr().err
    assert main(["card", "demo"]) == 0
    shown = capsys.readouterr()
    assert "forward pass: ok on onnxruntime" in shown.err  # the verdict; stdout holds the card JSON alone
    assert json.loads(shown.out)["name"] == "edge-sdk-demo-synthetic"


# ---- weights hash in embedded cards ----------------------------------------------------------------------
def exported(folder: Path) -> Path:
    """A model whose card was embedded by the exporter's one embedder (export.onnx_card)."""
    pytest.importorskip("onnx")
    from edge_sdk_export.onnx_card import embed_card

    path = build_multitask_onnx(folder / "exported.onnx")
    embed_card(path, ModelCard.from_dict(multitask_card()))
    return path


def test_every_embedded_card_records_the_weights_hash_and_a_flip_is_caught_at_load(tmp_path: Path) -> None:
    path = exported(tmp_path)
    card = load_card(path)
    assert card.export.weights_sha256 == weights_sha256(path)
    written = ModelCard.from_json(ModelCard.from_dict(multitask_card()).to_json())
    assert card == written  # the hash describes the file, not the contract: cards compare without it
    assert FaceModel(path).predict([render_test_face()])["pspi"].shape == (1,)
    flip_weights(path)
    with pytest.raises(ArtifactError, match="weights changed since export \\(bit rot or tampering\\)") as err:
        load_card(path)
    assert str(path) in str(err.value)
    with pytest.raises(ArtifactError, match="weights changed since export"):
        FaceModel(path)


def test_rewriting_the_card_keeps_the_hash_right_and_old_cards_still_load(tmp_path: Path) -> None:
    from edge_sdk_export.onnx_card import embed_card

    path = exported(tmp_path)
    before = weights_sha256(path)
    embed_card(path, load_card(path).with_changes(name="renamed"))
    assert weights_sha256(path) == before and load_card(path).name == "renamed"
    assert load_card(DEMO_MODEL).export.weights_sha256 == weights_sha256(DEMO_MODEL)  # the shipped demo has one
    old = without_weights_hash(DEMO_MODEL, tmp_path / "old_card.onnx")  # a card from before the field: loads
    assert load_card(old).export.weights_sha256 is None and "weights_sha256" not in load_card(old).to_dict()["export"]


def test_the_damaged_demo_with_its_own_card_is_refused_at_load(tmp_path: Path) -> None:
    damaged = flipped_demo(tmp_path, keep_hash=True)
    with pytest.raises(ArtifactError, match="weights changed since export"):
        load_card(damaged)
    assert main(["card", str(damaged)]) == 2


def test_a_malformed_weights_hash_in_a_card_names_the_field() -> None:
    data = multitask_card()
    data["export"]["weights_sha256"] = "abc"
    with pytest.raises(ContractError, match="export.weights_sha256"):
        ModelCard.from_dict(data)
