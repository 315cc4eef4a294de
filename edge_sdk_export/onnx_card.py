"""Writing the model card into an ONNX model's ``metadata_props`` (torch-free: only ``onnx``).

Reading it back is the runtime's job (:func:`edge_sdk.contract.card_io.load_card`, which needs
neither onnx nor a runtime). FP32 files carry the card indented (readable in Netron); quantized
files carry it compact. Every embedded card records ``export.weights_sha256``, the hash of the model
without its metadata (:func:`edge_sdk.contract.onnx_metadata.weights_sha256`), so bit rot or tampering
is caught when the file is loaded. Save the model right after :func:`set_card`: any later change to
the graph or weights makes the file fail that check.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnx

from edge_sdk.contract.card import ONNX_METADATA_KEY, ModelCard
from edge_sdk.contract.onnx_metadata import weights_sha256


def set_card(model: onnx.ModelProto, card: ModelCard, indent: int | None = 2) -> None:
    """(Re)write ``card`` into ``model``'s metadata_props, replacing any earlier card, in memory; the card
    written records the hash of ``model``'s graph and weights as they are now."""
    kept = [p for p in model.metadata_props if p.key != ONNX_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    digest = weights_sha256(model.SerializeToString())
    card = card.with_changes(export=replace(card.export, weights_sha256=digest))
    model.metadata_props.add(key=ONNX_METADATA_KEY, value=card.to_json(indent=indent))


def embed_card(onnx_path: str | Path, card: ModelCard, indent: int | None = 2) -> None:
    """Write ``card`` into the ONNX file at ``onnx_path`` (replacing any previous card), in place."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    set_card(model, card, indent)
    onnx.save(model, str(onnx_path))
