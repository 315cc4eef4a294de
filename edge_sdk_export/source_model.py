"""What ``edge-sdk export --model`` names: the demo, a torch checkpoint, or any ONNX with a card."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.card_io import load_card
from edge_sdk.errors import ArtifactError

TORCH_SUFFIXES = (".pt", ".pth")


@dataclass
class SourceModel:
    """The FP32 parent ONNX (with card) and, when there is one, the torch module it was exported from."""

    onnx: Path
    card: ModelCard
    torch_model: Any | None  # torch.nn.Module; None for third-party ONNX (no pruning possible)
    description: str


def _torch_checkpoint(path: Path, work: Path) -> SourceModel:
    from edge_sdk.contract.card import Provenance
    from edge_sdk_export.demo import load_checkpoint
    from edge_sdk_export.network import reference_card
    from edge_sdk_export.onnx_io import export_onnx

    model = load_checkpoint(path)
    card = reference_card(Provenance(source=str(path), synthetic_demo=False), name=path.stem)
    onnx_path = work / f"{path.stem}_fp32.onnx"
    export_onnx(model, onnx_path, card)
    return SourceModel(onnx_path, card, model, f"torch checkpoint {path}")


def resolve_source(name: str, work: Path) -> SourceModel:
    """``demo`` -> packaged demo ONNX + its torch checkpoint; ``*.pt`` -> checkpoint (exported to ONNX in
    ``work``); ``*.onnx`` -> that file and its card (no torch model). Raises ArtifactError/ContractError."""
    from edge_sdk.model.face_model import resolve_model

    if name == "demo":
        onnx_path = resolve_model("demo")
        try:
            from edge_sdk_export.demo import load_demo_torch_model

            torch_model = load_demo_torch_model()
        except FileNotFoundError:
            torch_model = None
        return SourceModel(onnx_path, load_card(onnx_path), torch_model, "packaged synthetic demo")
    path = Path(name)
    if not path.is_file():
        raise ArtifactError(f"--model {name}: no such file (expected 'demo', a .onnx with a card, or a .pt checkpoint)")
    if path.suffix.lower() in TORCH_SUFFIXES:
        return _torch_checkpoint(path, work)
    if path.suffix.lower() != ".onnx":
        raise ArtifactError(f"--model {name}: expected an .onnx model (with a card) or a torch checkpoint (.pt)")
    return SourceModel(path, load_card(path), None, f"ONNX {path.name}")
