"""Inference backends and how an artifact picks one.

``load_backend(path)`` chooses the backend from the artifact's suffix (the FORMATS table);
``backend=`` overrides it (OpenVINO also reads ``.onnx``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sdk.backend.base import Backend, BackendInfo
from edge_sdk.contract.card_io import load_card
from edge_sdk.errors import ArtifactError, BackendUnavailableError, InputError


@dataclass(frozen=True)
class BackendEntry:
    """Where a backend lives and what to install for it."""

    module: str
    cls: str
    requires: str  # the import that must work
    install_hint: str


BACKENDS: dict[str, BackendEntry] = {
    "onnxruntime": BackendEntry(
        "edge_sdk.backend.onnxruntime_backend", "OnnxRuntimeBackend", "onnxruntime", "pip install edge-sdk"
    ),
    "litert": BackendEntry(
        "edge_sdk.backend.litert_backend", "LiteRTBackend", "ai_edge_litert", "pip install 'edge-sdk[litert]'"
    ),
    "openvino": BackendEntry(
        "edge_sdk.backend.openvino_backend", "OpenVINOBackend", "openvino", "pip install 'edge-sdk[openvino]'"
    ),
}

# Artifact file suffix -> default backend.
FORMATS: dict[str, str] = {".onnx": "onnxruntime", ".tflite": "litert", ".xml": "openvino"}


def backend_for(path: str | Path, backend: str | None = None) -> str:
    """Name of the backend that will run ``path``."""
    if backend is not None:
        if backend not in BACKENDS:
            raise InputError(f"unknown backend '{backend}'; expected one of: {', '.join(BACKENDS)}")
        return backend
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ArtifactError(f"{path}: not a model artifact (suffix '{suffix}'); expected one of {', '.join(FORMATS)}")
    return FORMATS[suffix]


def load_backend(path: str | Path, backend: str | None = None, **options: Any) -> Backend:
    """Load ``path`` (card validated against the model) on its backend.

    ``options`` go to the backend (e.g. ``threads=2``; ``providers=[...]`` for onnxruntime;
    ``device="GPU"`` for OpenVINO).
    """
    path = Path(path)
    name = backend_for(path, backend)
    card = load_card(path)
    entry = BACKENDS[name]
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend '{name}' needs the '{entry.requires}' package ({exc}); install it with: {entry.install_hint}"
        ) from None
    return getattr(module, entry.cls)(path, card, **options)


__all__ = ["BACKENDS", "FORMATS", "Backend", "BackendInfo", "backend_for", "load_backend"]
