"""``edge-sdk card``: validate and print a model card, or draft one from a model file.

* ``edge-sdk card PATH``: the card of an artifact (embedded or sidecar), checked against the model file
  (input name, shape in the card's layout and channels, dtype, output names and widths), then one forward
  pass on a rendered face: a model whose heads come out non-finite or outside the card's ranges (damaged
  weights, a card for another model) is an error (exit 2). Where the artifact's runtime is not installed
  the checks against the file are skipped, and the output says so. A ``.card.json`` PATH is only validated.
* ``edge-sdk card MODEL --card CARD.json``: the same for a card kept apart from the model file (the card
  you are writing for a third-party model).
* ``edge-sdk card init MODEL``: print a draft contract-1.1 card made from the file's own input and
  outputs, for you to complete (every placeholder is marked TODO in its description).

Output: stdout holds the card as JSON only (``edge-sdk card demo > demo.card.json`` is a card file); the
verdict (``valid: ...``, the checks) goes to stderr. With ``--json`` stdout is one object: the card and the
checks (``{"card": {...}, "valid": {...}}``).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from edge_sdk.backend.model_io import check_card_fits, draft_card, input_spec_summary, read_model_io
from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.card_io import load_card, read_card_file
from edge_sdk.errors import ArtifactError, BackendUnavailableError, InputError
from edge_sdk.model.face_model import FaceModel, SyntheticWeightsWarning, resolve_model
from edge_sdk.model.self_test import forward_check

INIT = "init"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        help="a model artifact (.onnx/.tflite/.xml), 'demo', a pulled model name, or a .card.json file; "
        f"or '{INIT}' followed by a model file to print a draft card for it",
    )
    parser.add_argument("model", nargs="?", help=f"with '{INIT}': the model file to draft a card from")
    parser.add_argument("--card", help="check this card file against the model file (instead of its own card)")
    parser.add_argument("--json", action="store_true", help='one JSON object on stdout: {"card": ..., "valid": ...}')


def forward_pass(artifact: Path, card: ModelCard | None = None) -> str:
    """One forward pass of ``artifact`` on a rendered face, in words; ArtifactError when its outputs are bad."""
    try:
        with warnings.catch_warnings():  # the verdict itself says "SYNTHETIC DEMO weights"
            warnings.simplefilter("ignore", SyntheticWeightsWarning)
            model = FaceModel(artifact, card=card)
    except BackendUnavailableError as exc:
        return f"not run here ({exc})"
    problem = forward_check(model)
    if problem is not None:
        raise ArtifactError(f"{artifact}: {problem}")
    return f"ok on {model.info.backend} (every head finite and in range on a rendered face)"


def check_against_file(artifact: Path, card: ModelCard, source: str) -> str:
    """The card checked against the model file's own input and outputs, in words (ContractError naming
    the field that disagrees)."""
    try:
        io = read_model_io(artifact)
    except BackendUnavailableError as exc:
        return f"not checked here ({exc})"
    check_card_fits(card, io, source)
    return f"ok ({input_spec_summary(card.input)}; {len(io.outputs)} output(s))"


def init(model: str | None) -> int:
    """Print a draft card for ``model``."""
    if model is None:
        raise InputError(f"'edge-sdk card {INIT}' needs a model file: edge-sdk card {INIT} MODEL")
    print(draft_card(read_model_io(resolve_model(model))).to_json())
    return 0


def run(args: argparse.Namespace) -> int:
    if args.path == INIT and args.model is not None:
        return init(args.model)
    if args.model is not None:
        raise InputError(f"unexpected argument {args.model!r} (did you mean 'edge-sdk card {INIT} MODEL'?)")
    path = Path(args.path)
    if args.card is None and path.name.endswith(".card.json") and path.is_file():
        card = read_card_file(path)
        fits = checked = "not run (a card file alone)"
    else:
        artifact = resolve_model(args.path)
        card = load_card(artifact) if args.card is None else read_card_file(args.card)
        fits = check_against_file(artifact, card, args.card or str(artifact))
        checked = forward_pass(artifact, None if args.card is None else card)
    verdict = checks(card, fits, checked)
    if args.json:
        print(json.dumps({"card": card.to_dict(), "valid": verdict}, indent=2))
        return 0
    print(card.to_json())
    print(
        f"valid: contract {card.contract_version}, {len(card.heads)} heads, "
        f"pain (PSPI) {'available' if card.has_pain else 'not available (no AU-intensity head)'}"
        f"{', SYNTHETIC DEMO weights' if card.provenance.synthetic_demo else ''}"
        f"\nmodel file: {fits}"
        f"\nforward pass: {checked}",
        file=sys.stderr,
    )
    return 0


def checks(card: ModelCard, fits: str, checked: str) -> dict[str, Any]:
    """The verdict of ``--json``: what was checked and how it went, in words where words are all there is."""
    return {
        "contract_version": card.contract_version,
        "heads": len(card.heads),
        "pain": card.has_pain,
        "synthetic_demo": card.provenance.synthetic_demo,
        "model_file": fits,
        "forward_pass": checked,
    }
