"""Reading a model card from an artifact: embedded ONNX metadata or a sidecar JSON."""

from __future__ import annotations

import hashlib
from pathlib import Path

from edge_sdk.contract.card import ONNX_METADATA_KEY, ModelCard, sidecar_path
from edge_sdk.contract.onnx_metadata import read_onnx_metadata, weights_sha256
from edge_sdk.errors import ArtifactError, ContractError


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_card_file(card_path: str | Path) -> ModelCard:
    """The card in a ``.card.json`` file; ContractError naming the file when it is unreadable or not UTF-8."""
    source = str(card_path)
    try:
        text = Path(card_path).read_text(encoding="utf-8")
    except OSError as exc:  # a directory, no read permission, an I/O error
        raise ContractError("<root>", f"cannot read the card file ({exc.strerror or exc})", source) from None
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 JSON text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        raise ContractError("<root>", problem, source) from None
    return ModelCard.from_json(text, source)


def read_sidecar(artifact: Path) -> ModelCard:
    """Read ``<stem>.card.json`` beside ``artifact`` and verify the sha256 of every file it lists."""
    card_path = sidecar_path(artifact)
    source = str(card_path)
    card = read_card_file(card_path)
    if artifact.name not in card.files:
        raise ContractError(
            "files",
            f'does not list {artifact.name!r}; add "files": {{"{artifact.name}": "{sha256_file(artifact)}"}} '
            "after checking this is the file the card describes",
            source,
        )
    for name, expected in card.files.items():
        path = artifact.with_name(name)
        if not path.is_file():
            raise ContractError(f"files.{name}", f"file {path} is missing", source)
        actual = sha256_file(path)
        if actual != expected.lower():
            raise ContractError(
                f"files.{name}",
                f"sha256 mismatch: card says {expected}, file {path} has {actual} "
                "(the file changed or the card belongs to another file)",
                source,
            )
    return card


def read_onnx_metadata_card(artifact: Path) -> ModelCard:
    """Read the card embedded in an ONNX file's metadata_props (no onnx package, no runtime)."""
    meta = read_onnx_metadata(artifact)
    if ONNX_METADATA_KEY not in meta:
        raise ArtifactError(
            f"{artifact}: this ONNX file has no model card (metadata key '{ONNX_METADATA_KEY}') and no sidecar "
            f"{sidecar_path(artifact).name}; write a card for it (see README, 'Cards for third-party models')"
        )
    card = ModelCard.from_json(meta[ONNX_METADATA_KEY], f"{artifact} (embedded card)")
    check_weights(artifact, card)
    return card


def check_weights(artifact: Path, card: ModelCard) -> None:
    """ArtifactError when ``card`` records ``export.weights_sha256`` and the ONNX file's graph and weights
    no longer hash to it (a card without the field is not checked)."""
    expected = card.export.weights_sha256
    if expected is None:
        return
    actual = weights_sha256(artifact)
    if actual != expected:
        raise ArtifactError(
            f"{artifact}: weights changed since export (bit rot or tampering): its card records weights sha256 "
            f"{expected}, the file now has {actual}; restore the file or export it again"
        )


def load_card(artifact: str | Path) -> ModelCard:
    """The card of ``artifact``: its sidecar if present (hash-verified), else the embedded ONNX card."""
    artifact = Path(artifact)
    if not artifact.is_file():
        raise ArtifactError(f"{artifact}: model file not found")
    if sidecar_path(artifact).is_file():
        return read_sidecar(artifact)
    if artifact.suffix.lower() == ".onnx":
        return read_onnx_metadata_card(artifact)
    raise ArtifactError(f"{artifact}: no model card; expected a sidecar {sidecar_path(artifact).name} next to it")
