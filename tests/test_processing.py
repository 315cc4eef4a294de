"""Post-processing lives once in edge_sdk.contract.processing: activations, PSPI, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.processing import check_batch, describe_face, postprocess, preprocess, pspi
from edge_sdk.errors import InputError

PSPI_LABELS = ["AU4", "AU6", "AU7", "AU9", "AU10", "AU43"]


def make_card(**input_overrides: object) -> ModelCard:
    inp = {
        "name": "image",
        "size": [8, 12],
        "layout": "NCHW",
        "color_order": "RGB",
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
    }
    inp.update(input_overrides)
    return ModelCard.from_dict(
        {
            "contract_version": "1.0",
            "name": "t",
            "input": inp,
            "heads": [
                {
                    "name": "au_intensity",
                    "kind": "au_intensity",
                    "labels": PSPI_LABELS,
                    "activation": "clamp",
                    "clamp": [0, 5],
                },
                {"name": "expression", "kind": "expression", "labels": ["a", "b", "c"], "activation": "softmax"},
                {"name": "au_occurrence", "kind": "au_occurrence", "labels": ["AU4"], "activation": "sigmoid"},
                {
                    "name": "valence_arousal",
                    "kind": "valence_arousal",
                    "labels": ["valence", "arousal"],
                    "activation": "tanh",
                },
            ],
            "provenance": {"source": "test", "synthetic_demo": True},
        }
    )


def test_pspi_formula_exact() -> None:
    #                AU4  AU6  AU7  AU9  AU10 AU43
    rows = np.array(
        [
            [2.0, 1.0, 3.0, 4.0, 0.5, 1.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [5.0, 5.0, 5.0, 5.0, 5.0, 5.0],  # AU43 counts at most 1 -> 16
            [-1.0, 6.0, 0.0, 0.0, 7.0, 0.3],
        ],
        np.float32,
    )  # inputs clipped to [0, 5]
    np.testing.assert_allclose(pspi(rows, PSPI_LABELS), [2 + 3 + 4 + 1, 0, 16, 0 + 5 + 5 + 0.3], rtol=1e-6)


def test_pspi_uses_labels_not_positions() -> None:
    shuffled = ["AU43", "AU10", "AU9", "AU7", "AU6", "AU4"]
    row = np.array([[1.0, 0.5, 4.0, 3.0, 1.0, 2.0]], np.float32)
    assert pspi(row, shuffled)[0] == pytest.approx(2 + 3 + 4 + 1)


def test_pspi_missing_au_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="AU43"):
        pspi(np.zeros((1, 5), np.float32), PSPI_LABELS[:5])


def test_postprocess_activations_and_pspi() -> None:
    card = make_card()
    raw = {
        "au_intensity": np.array([[6.0, -1.0, 2.0, 1.0, 0.0, 0.5]], np.float32),
        "expression": np.array([[1.0, 2.0, 3.0]], np.float32),
        "au_occurrence": np.array([[0.0]], np.float32),
        "valence_arousal": np.array([[10.0, -0.5]], np.float32),
    }
    out = postprocess(card, raw)
    np.testing.assert_allclose(out["au_intensity"][0], [5.0, 0.0, 2.0, 1.0, 0.0, 0.5])
    assert out["expression"].sum() == pytest.approx(1.0, abs=1e-6)
    assert np.argmax(out["expression"]) == 2
    assert out["au_occurrence"][0, 0] == pytest.approx(0.5)
    np.testing.assert_allclose(out["valence_arousal"][0], np.tanh([10.0, -0.5]), rtol=1e-6)
    assert out["pspi"][0] == pytest.approx(5 + 2 + 1 + 0.5)
    described = describe_face(card, out)
    assert described["pspi"] == pytest.approx(8.5)
    assert set(described["expression"]) == {"a", "b", "c"}


def test_preprocess_colour_order_normalisation_and_layout() -> None:
    crop = np.zeros((8, 12, 3), np.uint8)
    crop[..., 0] = 255  # blue channel in BGR
    rgb = preprocess([crop], make_card().input)
    assert rgb.shape == (1, 3, 8, 12) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb[0, 2], 1.0)  # blue is the last channel in RGB, (1 - 0.5) / 0.5
    np.testing.assert_allclose(rgb[0, 0], -1.0)
    bgr = preprocess([crop], make_card(color_order="BGR").input)
    np.testing.assert_allclose(bgr[0, 0], 1.0)


def test_preprocess_resizes_any_crop() -> None:
    crops = [np.full((50, 40, 3), 128, np.uint8), np.full((3 * 8, 8, 3), 10, np.uint8)]
    assert preprocess(crops, make_card().input).shape == (2, 3, 8, 12)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((10, 10), np.uint8), "shape"),
        (np.zeros((10, 10, 4), np.uint8), "shape"),
        (np.zeros((10, 10, 3), np.float32), "dtype"),
        ([[1, 2, 3]], "numpy array"),
    ],
)
def test_preprocess_rejects_bad_images(image: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        preprocess([image], make_card().input)  # type: ignore[list-item]


def test_check_batch_rejects_wrong_shape_and_dtype() -> None:
    spec = make_card().input
    with pytest.raises(InputError, match="shape"):
        check_batch(np.zeros((1, 3, 5, 12), np.float32), spec)
    with pytest.raises(InputError, match="float32"):
        check_batch(np.zeros((1, 3, 8, 12), np.float64), spec)
