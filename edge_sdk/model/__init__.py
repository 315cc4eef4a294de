"""The model contract, its processing, and FaceModel."""

from edge_sdk.model.card_io import load_card, sha256_file
from edge_sdk.model.contract import (
    AU_LABELS,
    CONTRACT_VERSION,
    EXPRESSION_LABELS,
    PSPI_AUS,
    ExportInfo,
    HeadSpec,
    InputSpec,
    ModelCard,
    Provenance,
    sidecar_path,
)
from edge_sdk.model.processing import HeadOutputs, postprocess, preprocess, pspi

__all__ = [
    "AU_LABELS",
    "CONTRACT_VERSION",
    "EXPRESSION_LABELS",
    "PSPI_AUS",
    "ExportInfo",
    "HeadOutputs",
    "HeadSpec",
    "InputSpec",
    "ModelCard",
    "Provenance",
    "load_card",
    "postprocess",
    "preprocess",
    "pspi",
    "sha256_file",
    "sidecar_path",
]
