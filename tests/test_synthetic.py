"""The synthetic face renderer: deterministic, well-typed, and every AU visibly changes the face."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edge_sdk.contract.card import AU_LABELS, EXPRESSION_LABELS
from edge_sdk.contract.processing import pspi
from edge_sdk_export.synthetic import AU_INDEX, neutral_params, render, render_dataset


def test_same_seed_same_faces_other_seed_other_faces() -> None:
    a, b, c = render_dataset(12, 3, 112), render_dataset(12, 3, 112), render_dataset(12, 4, 112)
    assert np.array_equal(a.images, b.images)
    assert np.array_equal(a.au_intensity, b.au_intensity)
    assert not np.array_equal(a.images, c.images)


def test_shapes_dtypes_and_label_ranges() -> None:
    data = render_dataset(64, 0, 128)
    n = len(data)
    assert data.images.shape == (n, 128, 128, 3) and data.images.dtype == np.uint8
    assert data.au_intensity.shape == (n, len(AU_LABELS)) and data.au_intensity.dtype == np.float32
    assert data.au_occurrence.shape == (n, len(AU_LABELS))
    assert np.array_equal(data.au_occurrence, (data.au_intensity >= 1.0).astype(np.float32))
    assert data.expression.dtype == np.int64 and set(data.expression) <= set(range(len(EXPRESSION_LABELS)))
    assert data.valence_arousal.shape == (n, 2) and np.abs(data.valence_arousal).max() <= 1.0
    assert data.au_intensity.min() >= 0.0 and data.au_intensity.max() <= 5.0


def test_pspi_matches_runtime_formula_and_spans_the_scale() -> None:
    data = render_dataset(600, 1, 64)
    np.testing.assert_allclose(data.pspi, pspi(data.au_intensity, AU_LABELS), atol=1e-5)
    assert data.pspi.min() == 0.0
    assert data.pspi.max() >= 10.0  # pain mode reaches the upper part of 0..16
    assert data.pspi.max() <= 16.0


@pytest.mark.parametrize("au", AU_LABELS)
def test_each_action_unit_visibly_changes_pixels(au: str) -> None:
    base, _ = render(neutral_params(), 128)
    intensity = np.zeros(len(AU_LABELS), np.float32)
    intensity[AU_INDEX[au]] = 4.0
    changed, labels = render(neutral_params(au=intensity), 128)
    assert labels.au_intensity[AU_INDEX[au]] == 4.0
    moved = np.abs(base.astype(int) - changed.astype(int)).max(axis=2) > 12
    assert moved.sum() >= 15, f"{au} at intensity 4 changed only {moved.sum()} pixels"


def test_eyes_closed_hides_the_eye_whites() -> None:
    def white_pixels(au43: float) -> int:
        intensity = np.zeros(len(AU_LABELS), np.float32)
        intensity[AU_INDEX["AU43"]] = au43
        img, _ = render(neutral_params(au=intensity), 128)
        return int((img.min(axis=2) > 220).sum())

    assert white_pixels(5.0) < 0.2 * white_pixels(0.0)


def test_renderer_does_not_import_torch() -> None:
    code = "import sys, edge_sdk_export.synthetic; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
