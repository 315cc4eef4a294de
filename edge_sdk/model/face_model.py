"""FaceModel: an artifact, its card and its backend behind one call: crops in, heads out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.backend import Backend, BackendInfo, load_backend
from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.processing import HeadOutputs, describe_face, postprocess, preprocess
from edge_sdk.errors import ArtifactError
from edge_sdk.models_registry import find_pulled_model

DEMO_DIR = Path(__file__).with_name("demo")
DEMO_MODEL = DEMO_DIR / "edge_sdk_demo_synthetic.onnx"
SYNTHETIC_NOTICE = (
    "NOTE: this model's weights are a SYNTHETIC DEMO trained on rendered cartoon faces. Its action "
    "units, expressions and pain scores mean nothing on real people; do not use it for care decisions."
)


def resolve_model(name_or_path: str | Path) -> Path:
    """``"demo"`` -> the packaged synthetic demo ONNX; otherwise a path that must exist.

    Names of pulled models are resolved through :mod:`edge_sdk.models_registry`.
    """
    if str(name_or_path) == "demo":
        if not DEMO_MODEL.is_file():
            raise ArtifactError(f"{DEMO_MODEL}: the packaged demo model is missing from this install")
        return DEMO_MODEL
    path = Path(name_or_path)
    if path.is_file():
        return path
    pulled = find_pulled_model(str(name_or_path))  # a name from `edge-sdk models pull NAME`
    if pulled is not None:
        return pulled
    raise ArtifactError(f"{name_or_path}: no such model file (and not 'demo' or a pulled model name)")


class FaceModel:
    """A multitask face model ready to run: ``predict(crops)`` -> post-processed heads."""

    def __init__(
        self, model: str | Path = "demo", backend: str | None = None, card: ModelCard | None = None, **options: Any
    ) -> None:
        """``card`` replaces the artifact's own card (checked against the model file all the same)."""
        self.path = resolve_model(model)
        self.backend: Backend = load_backend(self.path, backend, card, **options)

    @property
    def card(self) -> ModelCard:
        return self.backend.card

    @property
    def info(self) -> BackendInfo:
        return self.backend.info

    @property
    def is_synthetic_demo(self) -> bool:
        return self.card.provenance.synthetic_demo

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        return preprocess(crops, self.card.input)

    def predict(self, crops: Sequence[np.ndarray]) -> HeadOutputs:
        """Post-processed outputs (probabilities, 0-5 intensities, PSPI...) for BGR uint8 face crops."""
        return postprocess(self.card, self.backend.run(self.preprocess(crops)))

    def describe(self, crop: np.ndarray) -> dict[str, object]:
        """One crop's outputs as {head: {label: value}} for display."""
        return describe_face(self.card, self.predict([crop]))
