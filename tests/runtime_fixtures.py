"""Helpers for the runtime tests (capture/face/pipeline/run): data paths and tiny ONNX models with cards."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from edge_sdk.contract.card import EXPRESSION_LABELS, HeadSpec, InputSpec, ModelCard, Provenance
from edge_sdk.model.face_model import DEMO_MODEL
from tests.conftest import SHARED, shared_file

FACES_DIR = "data/faces"
YUNET_PATH = "models/yunet/yunet_s_640_640.onnx"
AU_LABELS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU9", "AU10", "AU12", "AU15", "AU25", "AU43")


def face_file(name: str) -> Path:
    """A file from ../shared/data/faces (fails, never skips, when missing)."""
    return shared_file(f"{FACES_DIR}/{name}")


def yunet_path() -> Path:
    return shared_file(YUNET_PATH)


def make_card(name: str, with_aus: bool, size: int = 64) -> ModelCard:
    heads = [
        HeadSpec("expression", "expression", EXPRESSION_LABELS, "softmax"),
        HeadSpec("valence_arousal", "valence_arousal", ("valence", "arousal"), "tanh"),
    ]
    if with_aus:
        heads = [
            HeadSpec("au_occurrence", "au_occurrence", AU_LABELS, "sigmoid"),
            HeadSpec("au_intensity", "au_intensity", AU_LABELS, "clamp", clamp=(0.0, 5.0)),
            *heads,
        ]
    return ModelCard(
        name=name,
        input=InputSpec("image", size, size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        heads=tuple(heads),
        provenance=Provenance("tests/runtime_fixtures.py random weights", synthetic_demo=True),
    )


def export_tiny_model(path: Path, card: ModelCard) -> Path:
    """A small conv net with one output per head, exported with torch, card embedded in metadata_props."""
    import onnx
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = torch.nn.Sequential(
                torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
                torch.nn.ReLU(),
                torch.nn.AdaptiveAvgPool2d(1),
                torch.nn.Flatten(),
            )
            self.heads = torch.nn.ModuleList(torch.nn.Linear(8, len(h.labels)) for h in card.heads)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            f = self.features(x)
            return tuple(head(f) * 3.0 for head in self.heads)

    torch.manual_seed(0)
    dummy = torch.zeros(1, 3, card.input.height, card.input.width)
    torch.onnx.export(
        Tiny().eval(),
        (dummy,),
        str(path),
        input_names=[card.input.name],
        output_names=[h.name for h in card.heads],
        dynamic_axes={card.input.name: {0: "n"}, **{h.name: {0: "n"} for h in card.heads}},
        dynamo=False,
    )
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "edge_sdk.card", card.to_json()
    onnx.save(proto, str(path))
    return path


@functools.cache
def _model_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="edge-sdk-runtime-tests-"))


@functools.cache
def tiny_model(with_aus: bool = True) -> Path:
    """A tiny model with (pain) or without (no PSPI) AU-intensity heads, built once per session."""
    name = "tiny_pain" if with_aus else "tiny_noau"
    return export_tiny_model(_model_dir() / f"{name}.onnx", make_card(name, with_aus))


def pain_model() -> str:
    """The packaged demo model once it is installed, else the tiny AU model (same heads)."""
    return "demo" if DEMO_MODEL.is_file() else str(tiny_model(True))


__all__ = ["SHARED", "face_file", "pain_model", "tiny_model", "yunet_path"]
