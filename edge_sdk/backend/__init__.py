"""Inference backends and how an artifact picks one.

``load_backend(path)`` chooses the backend from the artifact's suffix; both come from the format
table :data:`edge_sdk.targets.FORMATS` (one row per format names its backend class). ``backend=``
overrides the choice (OpenVINO also reads ``.onnx``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_sdk.backend.base import Backend, BackendInfo
from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.card_io import load_card
from edge_sdk.errors import ArtifactError, BackendUnavailableError, InputError
from edge_sdk.targets import FORMATS, ArtifactFormat, format_for_suffix, resolve

# Backend name -> the format row that names it (module, class, requirement, install hint).
BACKENDS: dict[str, ArtifactFormat] = {f.backend: f for f in FORMATS.values()}


def backend_for(path: str | Path, backend: str | None = None) -> str:
    """Name of the backend that will run ``path``."""
    if backend is not None:
        if backend not in BACKENDS:
            raise InputError(f"unknown backend '{backend}'; expected one of: {', '.join(BACKENDS)}")
        return backend
    suffix = Path(path).suffix.lower()
    found = format_for_suffix(suffix)
    if found is None:
        known = ", ".join(f.suffix for f in FORMATS.values())
        raise ArtifactError(f"{path}: not a model artifact (suffix '{suffix}'); expected one of {known}")
    return found.backend


def load_backend(
    path: str | Path, backend: str | None = None, card: ModelCard | None = None, **options: Any
) -> Backend:
    """Load ``path`` (card validated against the model) on its backend.

    ``card`` replaces the artifact's own (embedded or sidecar) card, e.g. a card being written for a
    third-party file (``edge-sdk card MODEL --card CARD.json``). ``options`` go to the backend (e.g.
    ``threads=2``; ``providers=[...]`` for onnxruntime; ``device="GPU"`` for OpenVINO).
    """
    path = Path(path)
    name = backend_for(path, backend)
    if card is None:
        card = load_card(path)
    elif not path.is_file():
        raise ArtifactError(f"{path}: model file not found")
    return backend_class(name)(path, card, **options)


def backend_class(name: str) -> type[Backend]:
    """The Backend subclass called ``name`` (BackendUnavailableError naming what to install)."""
    entry = BACKENDS[name]
    try:
        return resolve(entry.backend_class)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend '{name}' needs the '{entry.requires}' package ({exc}); install it with: {entry.install_hint}"
        ) from None


__all__ = ["BACKENDS", "Backend", "BackendInfo", "backend_class", "backend_for", "load_backend"]
