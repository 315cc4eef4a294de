"""Held-out metrics of a face model on rendered faces (numpy only: works on any backend's outputs)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edge_sdk.contract.card import AU_LABELS
from edge_sdk_export.synthetic import SyntheticDataset

# crops (BGR uint8) -> post-processed heads as FaceModel.predict returns them (incl. "pspi").
Predictor = Callable[[Sequence[np.ndarray]], dict[str, np.ndarray]]


def ccc(pred: np.ndarray, true: np.ndarray) -> float:
    """Lin's concordance correlation coefficient."""
    pm, tm = pred.mean(), true.mean()
    cov = ((pred - pm) * (true - tm)).mean()
    return float(2 * cov / (pred.var() + true.var() + (pm - tm) ** 2 + 1e-12))


def f1(pred: np.ndarray, true: np.ndarray) -> float:
    tp = float(np.sum(pred & true))
    denom = float(np.sum(pred) + np.sum(true))
    return 2 * tp / denom if denom else 1.0


def predict_all(predict: Predictor, images: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
    parts: list[dict[str, np.ndarray]] = [predict(list(images[i : i + batch])) for i in range(0, len(images), batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def metrics_from_outputs(out: dict[str, np.ndarray], data: SyntheticDataset) -> dict[str, object]:
    """AU intensity MAE, AU occurrence F1, expression accuracy, VA CCC and PSPI MAE vs ground truth."""
    mae = np.abs(out["au_intensity"] - data.au_intensity).mean(0)
    occ_pred = out["au_occurrence"] >= 0.5
    occ_true = data.au_occurrence >= 0.5
    f1s = [f1(occ_pred[:, i], occ_true[:, i]) for i in range(len(AU_LABELS))]
    va = out["valence_arousal"]
    return {
        "n_faces": len(data),
        "au_intensity_mae": {au: round(float(v), 4) for au, v in zip(AU_LABELS, mae, strict=True)},
        "au_intensity_mae_mean": round(float(mae.mean()), 4),
        "au_occurrence_f1": {au: round(v, 4) for au, v in zip(AU_LABELS, f1s, strict=True)},
        "au_occurrence_f1_mean": round(float(np.mean(f1s)), 4),
        "expression_accuracy": round(float((out["expression"].argmax(1) == data.expression).mean()), 4),
        "expression_chance": round(1.0 / out["expression"].shape[1], 4),
        "valence_ccc": round(ccc(va[:, 0], data.valence_arousal[:, 0]), 4),
        "arousal_ccc": round(ccc(va[:, 1], data.valence_arousal[:, 1]), 4),
        "pspi_mae": round(float(np.abs(out["pspi"] - data.pspi).mean()), 4),
        "pspi_range_true": [round(float(data.pspi.min()), 3), round(float(data.pspi.max()), 3)],
    }


def evaluate(predict: Predictor, data: SyntheticDataset) -> dict[str, object]:
    """Run ``predict`` over ``data.images`` and score it."""
    return metrics_from_outputs(predict_all(predict, data.images), data)
