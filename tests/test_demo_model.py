"""The shipped synthetic demo model: loads through the runtime, says it is synthetic, and scores sanely."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_sdk.contract.card import AU_LABELS, EXPRESSION_LABELS
from edge_sdk.model.face_model import DEMO_DIR, DEMO_MODEL, FaceModel
from edge_sdk_export.evaluate import evaluate
from edge_sdk_export.synthetic import render_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
METRICS = DEMO_DIR / "metrics.json"


@pytest.fixture(scope="module")
def demo() -> FaceModel:
    return FaceModel("demo", threads=1)


def test_demo_artifact_is_small_and_says_it_is_synthetic(demo: FaceModel) -> None:
    assert DEMO_MODEL.stat().st_size <= 6 * 1024 * 1024
    card = demo.card
    assert demo.is_synthetic_demo and card.provenance.synthetic_demo is True
    assert card.provenance.source == "edge-sdk synthetic demo training (export/train.py)"
    assert card.provenance.license == "Apache-2.0"
    assert card.export.precision == "fp32" and card.export.target is None
    assert [h.name for h in card.heads] == ["au_occurrence", "au_intensity", "expression", "valence_arousal"]
    assert card.head("au_intensity").labels == AU_LABELS
    assert card.head("expression").labels == EXPRESSION_LABELS
    assert card.has_pain


def test_recorded_held_out_metrics_are_sane() -> None:
    metrics = json.loads(METRICS.read_text(encoding="utf-8"))
    assert metrics["n_faces"] >= 1000
    assert metrics["expression_accuracy"] >= 3 * metrics["expression_chance"]
    assert metrics["au_intensity_mae_mean"] < 0.6
    assert metrics["au_occurrence_f1_mean"] > 0.6
    assert metrics["pspi_mae"] < 2.0  # on a 0-16 scale


def test_demo_reproduces_its_metrics_on_fresh_rendered_faces(demo: FaceModel) -> None:
    metrics = json.loads(METRICS.read_text(encoding="utf-8"))
    fresh = render_dataset(200, 424242, 112)  # a seed used neither for training nor for metrics.json
    result = evaluate(demo.predict, fresh)
    assert result["expression_accuracy"] >= metrics["expression_accuracy"] - 0.12
    assert result["expression_accuracy"] >= 3 * result["expression_chance"]
    assert result["au_intensity_mae_mean"] <= metrics["au_intensity_mae_mean"] + 0.15
    assert result["pspi_mae"] <= metrics["pspi_mae"] + 0.6


def test_demo_runs_on_a_real_photo_resized_whole(demo: FaceModel) -> None:
    path = SHARED / "data" / "faces" / "single_face.jpg"
    assert path.is_file(), f"{path} is missing: tests need the shared data folder next to the repo"
    image = cv2.imread(str(path))
    out = demo.predict([image])  # whole image, resized by preprocess; outputs are meaningless but valid
    assert out["expression"].shape == (1, len(EXPRESSION_LABELS))
    np.testing.assert_allclose(out["expression"].sum(1), 1.0, atol=1e-5)
    assert 0.0 <= float(out["pspi"][0]) <= 16.0
    assert all(np.isfinite(v).all() for v in out.values())


def test_torch_weights_match_the_shipped_onnx(demo: FaceModel) -> None:
    torch = pytest.importorskip("torch")
    from edge_sdk_export.demo import load_demo_torch_model

    model = load_demo_torch_model()
    faces = render_dataset(4, 7, 112).images
    batch = demo.preprocess(list(faces))
    with torch.no_grad():
        expected = model.heads(torch.from_numpy(batch))
    raw = demo.backend.run(batch)
    for name, tensor in expected.items():
        np.testing.assert_allclose(raw[name], tensor.numpy(), atol=1e-4)
