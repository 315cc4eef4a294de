"""Writing exported artifacts' sidecar cards (shared by the FP32 converters and the INT8 exporters)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from edge_sdk.contract.card import ModelCard, sidecar_path
from edge_sdk.contract.card_io import sha256_file
from edge_sdk.errors import ArtifactError


def _refuse_foreign_sidecar(target: Path, names: set[str]) -> None:
    """``m.tflite`` and ``m.xml`` would share ``m.card.json``: never overwrite another artifact's card."""
    if not target.is_file():
        return
    try:
        listed = set(json.loads(target.read_text(encoding="utf-8")).get("files", {}))
    except (OSError, ValueError, AttributeError):
        listed = set()
    if listed and not listed <= names:
        raise ArtifactError(
            f"{target}: already holds the card of {', '.join(sorted(listed))}; "
            "write each artifact format to its own folder"
        )


def write_sidecar(card: ModelCard, artifact_paths: Sequence[str | Path]) -> Path:
    """Write ``<stem>.card.json`` beside the first artifact, listing the sha256 of every artifact file.

    ``artifact_paths`` are the files the card describes, main file first (``model.tflite``, or
    ``model.xml`` then ``model.bin``); they must share one folder because a sidecar names them
    by file name. Any ``files`` already in ``card`` are replaced. The written card is re-read
    and validated before returning its path.
    """
    paths = [Path(p) for p in artifact_paths]
    if not paths:
        raise ArtifactError("write_sidecar: no artifact files given")
    folder = paths[0].parent
    for path in paths:
        if not path.is_file():
            raise ArtifactError(f"{path}: artifact file to describe in the sidecar card does not exist")
        if path.parent != folder:
            raise ArtifactError(f"{path}: every file of one artifact must be in {folder} (the sidecar lists names)")
    files = {path.name: sha256_file(path) for path in paths}
    target = sidecar_path(paths[0])
    _refuse_foreign_sidecar(target, set(files))
    text = card.with_changes(files=files).to_json()
    ModelCard.from_json(text, str(target))  # never write a card the runtime would reject
    target.write_text(text + "\n", encoding="utf-8")
    return target
