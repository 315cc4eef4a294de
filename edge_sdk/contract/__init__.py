"""The model contract: the card (what a model takes and returns), reading it from an artifact, and
the pre/post-processing it defines. The lowest layer with ``errors``: it imports no backend, no
model loader and no registry, so every layer above can read a card."""

from edge_sdk.contract.card import (
    AU_LABELS,
    CONTRACT_VERSION,
    EXPRESSION_LABELS,
    ONNX_METADATA_KEY,
    PSPI_AUS,
    CropSpec,
    ExportInfo,
    HeadSpec,
    InputSpec,
    ModelCard,
    Provenance,
    sidecar_path,
)
from edge_sdk.contract.card_io import load_card, sha256_file
from edge_sdk.contract.processing import HeadOutputs, postprocess, preprocess, pspi

__all__ = [
    "AU_LABELS",
    "CONTRACT_VERSION",
    "EXPRESSION_LABELS",
    "ONNX_METADATA_KEY",
    "PSPI_AUS",
    "CropSpec",
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
