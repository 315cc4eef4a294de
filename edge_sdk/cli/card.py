"""``edge-sdk card PATH``: validate and print a model card (artifact or ``.card.json``).

For a model artifact it also runs one forward pass on a rendered face: a model whose heads come out
non-finite or outside the card's ranges (damaged weights, a card for another model) is an error (exit 2).
Where the artifact's runtime is not installed the pass is skipped, and the output says so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_sdk.contract.card_io import load_card, read_card_file
from edge_sdk.errors import ArtifactError, BackendUnavailableError
from edge_sdk.model.face_model import FaceModel, resolve_model
from edge_sdk.model.self_test import forward_check


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", help="a model artifact (.onnx/.tflite/.xml), 'demo', a pulled model name, or a .card.json file"
    )


def forward_pass(artifact: Path) -> str:
    """One forward pass of ``artifact`` on a rendered face, in words; ArtifactError when its outputs are bad."""
    try:
        model = FaceModel(artifact)
    except BackendUnavailableError as exc:
        return f"not run here ({exc})"
    problem = forward_check(model)
    if problem is not None:
        raise ArtifactError(f"{artifact}: {problem}")
    return f"ok on {model.info.backend} (every head finite and in range on a rendered face)"


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.name.endswith(".card.json") and path.is_file():
        card = read_card_file(path)
        checked = "not run (a card file alone)"
    else:
        artifact = resolve_model(args.path)
        card = load_card(artifact)
        checked = forward_pass(artifact)
    print(card.to_json())
    print(
        f"\nvalid: contract {card.contract_version}, {len(card.heads)} heads, "
        f"pain (PSPI) {'available' if card.has_pain else 'not available (no AU-intensity head)'}"
        f"{', SYNTHETIC DEMO weights' if card.provenance.synthetic_demo else ''}"
        f"\nforward pass: {checked}"
    )
    return 0
