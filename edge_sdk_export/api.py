"""``edge-sdk export`` from Python: :func:`export_model` takes a torch module (or anything ``--model`` takes)
and its card, and runs the same export as the CLI.

Example (runs as is from a checkout with ../shared beside it; about a minute and a half on two cores).
Targets run in spawned child processes, so a script must keep its work under ``if __name__ == "__main__":``::

    import torch
    from edge_sdk.face import create_detector
    from edge_sdk_export.api import export_model

    class Net(torch.nn.Module):  # takes (N, 3, 64, 64) RGB, returns one tensor per head output
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(
                torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
            )
            self.expression = torch.nn.Linear(32, 3)
            self.va = torch.nn.Linear(32, 2)

        def forward(self, x):
            z = self.features(x)
            return {"expression": self.expression(z), "valence_arousal": self.va(z)}

    CARD = {
        "contract_version": "1.1",
        "name": "tiny-net",
        "input": {"name": "image", "size": [64, 64], "layout": "NCHW", "color_order": "RGB",
                  "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        "heads": [
            {"name": "expression", "kind": "expression", "labels": ["neutral", "happy", "sad"],
             "activation": "softmax", "output": "expression"},
            {"name": "valence_arousal", "kind": "valence_arousal", "labels": ["valence", "arousal"],
             "activation": "tanh", "output": "valence_arousal"},
        ],
        "provenance": {"source": "my training run", "synthetic_demo": False},
    }

    if __name__ == "__main__":
        # the face detector for the footage; after `edge-sdk models pull yunet` leave `detector` out
        yunet = create_detector("yunet", "../shared/models/yunet/yunet_s_640_640.onnx")
        report = export_model(Net(), CARD, "../shared/data/faces", ["cpu"], "out/tiny-net",
                              prune=0.3, calib_size=64, latency_runs=5, detector=yunet, force=True)
        print(report["failed"], [row["target"] for row in report["rows"]])
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_sdk.contract.card import ModelCard
from edge_sdk.errors import InputError

logger = logging.getLogger(__name__)

SYNTHETIC = "synthetic"


def _card_file(card: ModelCard | dict[str, Any] | str | Path, work: Path) -> Path:
    """``card`` as a JSON file path (ModelCard/dict written to ``work``, validated first)."""
    from edge_sdk_export.sources import coerce_card

    if isinstance(card, (str, Path)):
        coerce_card(card, "card")  # validate now: a bad card fails before any conversion
        return Path(card)
    path = work / "card.json"
    path.write_text(json.dumps(coerce_card(card, "card").to_dict(), indent=2), encoding="utf-8")
    return path


def export_model(
    model: Any,
    card: ModelCard | dict[str, Any] | str | Path | None,
    calib: str | Path,
    targets: str | Sequence[str],
    out: str | Path,
    **overrides: Any,
) -> dict[str, Any]:
    """Export ``model`` for ``targets`` into ``out``, like ``edge-sdk export``; returns the report dict
    (also written as ``out/report.json`` and ``out/report.md``).

    ``model``: a ``torch.nn.Module`` whose ``forward`` takes the preprocessed batch in the card's layout and
    returns one tensor per distinct head ``output`` (card order) or a dict keyed by those names; or any
    ``--model`` text: ``"demo"``, ``"file.py:build"``, ``"package.module:build"``, an ``.onnx``, Keras
    (``.h5``/``.hdf5``/``.keras``, SavedModel folder) or FP32 ``.tflite`` path.
    ``card``: a ModelCard, a card dict or a card JSON path; None for sources that carry one (the demo, an
    ONNX with its card, a ``build()`` returning one). ``calib``: a folder/file of real face images or
    videos, or ``"synthetic"``. ``targets``: names of :data:`edge_sdk.targets.TARGETS` (list or ``"a,b"``).
    ``overrides``: any other :class:`~edge_sdk_export.pipeline.ExportOptions` field (``prune=0.3``,
    ``calib_size=64``, ``heldout=Path(...)``, ``force=True``...).

    The model is imported and checked against its source first (each head within 1e-4 on rendered faces
    and a few real crops from ``calib``). Raises :class:`~edge_sdk.errors.EdgeSdkError` subclasses with one
    line saying what is wrong; a target that fails is a ``failed`` row in the report, not an exception.
    """
    import torch

    from edge_sdk_export.pipeline import ExportOptions, parse_targets, run_export
    from edge_sdk_export.sources import coerce_card, resolve_source, source_from_module

    fields = {f.name for f in dataclasses.fields(ExportOptions)}
    reserved = {"model", "targets", "calib", "out", "card"}
    unknown = sorted(set(overrides) - fields) + sorted(set(overrides) & reserved)
    if unknown:
        options = ", ".join(sorted(fields - reserved))
        raise InputError(f"export_model: unknown option {unknown[0]!r}; expected one of: {options}")
    target_names = parse_targets(list(targets) if not isinstance(targets, str) else targets)
    calib_text = str(calib)
    media = None if calib_text == SYNTHETIC else Path(calib_text)
    detector = overrides.get("detector")
    with tempfile.TemporaryDirectory(prefix="edge-sdk-api-") as scratch:
        work = Path(scratch)
        if isinstance(model, torch.nn.Module):
            if card is None:
                raise InputError("export_model: a torch module needs its card (a ModelCard, a dict or a JSON path)")
            parsed = coerce_card(card, "card")
            real = None
            if media is not None:
                from edge_sdk_export.sources import REAL_CHECK_CROPS, real_face_crops

                real = real_face_crops(media, parsed, REAL_CHECK_CROPS, detector)
            source = source_from_module(model, parsed, work, f"torch module {type(model).__name__}", real=real)
        elif isinstance(model, (str, Path)):
            card_path = None if card is None else _card_file(card, work)
            source = resolve_source(str(model), work, card_path, check_media=media, detector=detector)
        else:
            raise InputError(
                f"export_model: model must be a torch.nn.Module or a --model string, got {type(model).__name__}"
            )
        options = ExportOptions(model=source, targets=target_names, calib=calib_text, out=Path(out), **overrides)
        logger.info("export_model: %s -> %s (%s)", source.description, out, ", ".join(target_names))
        return run_export(options)
