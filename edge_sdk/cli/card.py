"""``edge-sdk card PATH``: validate and print a model card (artifact or ``.card.json``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.card_io import load_card
from edge_sdk.model.face_model import resolve_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", help="a model artifact (.onnx/.tflite/.xml), 'demo', a pulled model name, or a .card.json file"
    )


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.name.endswith(".card.json") and path.is_file():
        card = ModelCard.from_json(path.read_text(encoding="utf-8"), str(path))
    else:
        card = load_card(resolve_model(args.path))
    print(card.to_json())
    print(
        f"\nvalid: contract {card.contract_version}, {len(card.heads)} heads, "
        f"pain (PSPI) {'available' if card.has_pain else 'not available (no AU-intensity head)'}"
        f"{', SYNTHETIC DEMO weights' if card.provenance.synthetic_demo else ''}"
    )
    return 0
