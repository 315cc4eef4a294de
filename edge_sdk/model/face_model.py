"""FaceModel: an artifact, its card and its backend behind one call: crops in, heads out.

A model name resolves (:func:`resolve_artifact`) to one artifact file: ``"demo"``, a file, a pulled model's
name, or an ``edge-sdk export`` folder, which means the artifact ``edge-sdk pick`` chose for this device and
recorded in the folder's ``pick.json`` (written by :mod:`edge_sdk.bench.pick`, read here as plain JSON).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.backend import BACKENDS, Backend, BackendInfo, load_backend
from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.card_io import sha256_file
from edge_sdk.contract.processing import HeadOutputs, describe_face, postprocess, preprocess
from edge_sdk.cpu import describe_cpu
from edge_sdk.errors import ArtifactError
from edge_sdk.models_registry import find_pulled_model

DEMO_DIR = Path(__file__).with_name("demo")
DEMO_MODEL = DEMO_DIR / "edge_sdk_demo_synthetic.onnx"
SYNTHETIC_NOTICE = (
    "NOTE: this model's weights are a SYNTHETIC DEMO trained on rendered cartoon faces. Its action "
    "units, expressions and pain scores mean nothing on real people; do not use it for care decisions."
)


class SyntheticWeightsWarning(UserWarning):
    """A model whose card says its weights are a synthetic demo (``provenance.synthetic_demo``) was loaded:
    its outputs mean nothing on real people. Silence it, once you know, with
    ``warnings.simplefilter("ignore", SyntheticWeightsWarning)``."""


PICK_FILE = "pick.json"  # beside an export folder's artifacts: the one `edge-sdk pick` chose for this device
PICK_SCHEMA = "edge-sdk-pick/1"


@dataclass(frozen=True)
class ResolvedModel:
    """What a model name means: the file to load, the backend to run it on (None: the file's own), and
    lines worth showing the user (which artifact an export folder's ``pick.json`` chose, and any doubt)."""

    path: Path
    backend: str | None = None
    notes: tuple[str, ...] = ()


def resolve_model(name_or_path: str | Path) -> Path:
    """The artifact file ``name_or_path`` names (see :func:`resolve_artifact`)."""
    return resolve_artifact(name_or_path).path


def resolve_artifact(name_or_path: str | Path) -> ResolvedModel:
    """``"demo"`` -> the packaged synthetic demo ONNX; an export folder -> the artifact its ``pick.json``
    chose (:func:`read_pick`); otherwise a path that must exist, or a pulled model's name
    (:mod:`edge_sdk.models_registry`)."""
    if str(name_or_path) == "demo":
        if not DEMO_MODEL.is_file():
            raise ArtifactError(f"{DEMO_MODEL}: the packaged demo model is missing from this install")
        return ResolvedModel(DEMO_MODEL)
    path = Path(name_or_path)
    if path.is_file():
        return ResolvedModel(path)
    if path.is_dir():
        return read_pick(path)
    pulled = find_pulled_model(str(name_or_path))  # a name from `edge-sdk models pull NAME`
    if pulled is not None:
        return ResolvedModel(pulled)
    raise ArtifactError(f"{name_or_path}: no such model file or export folder (and not 'demo' or a pulled model name)")


def _pick_error(pick: Path, problem: str) -> ArtifactError:
    return ArtifactError(f"{pick}: {problem}; run `edge-sdk pick --model {pick.parent}` again on this device")


def read_pick(folder: Path) -> ResolvedModel:
    """The artifact ``edge-sdk pick`` chose for an export folder, from ``folder/pick.json``.

    Missing, unreadable, or stale (the chosen file changed since: its sha256 differs) is an
    :class:`ArtifactError` saying to run ``edge-sdk pick``: a monitor never times artifacts at start-up, so it
    starts the same way every boot. A pick made on another CPU (model or int8 kernel class) is loaded with a
    note saying so.
    """
    pick = folder / PICK_FILE
    if not pick.is_file():
        hint = "" if (folder / "report.json").is_file() else " (and no report.json: is it an `edge-sdk export` folder?)"
        raise ArtifactError(
            f"{folder}: an export folder without {PICK_FILE}{hint}; run `edge-sdk pick --model {folder}` once on "
            "this device (it times the folder's artifacts that passed their gates and records the fastest), "
            "or pass one artifact file as --model"
        )
    try:
        data = json.loads(pick.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _pick_error(pick, f"unreadable ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != PICK_SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise _pick_error(pick, f"not a {PICK_SCHEMA} file (schema {found!r})")
    choice = data.get("choice")
    if choice is None:
        raise _pick_error(pick, f"records no choice ({data.get('reason') or 'no artifact to run'})")
    if not isinstance(choice, dict) or not isinstance(choice.get("file"), str):
        raise _pick_error(pick, "field 'choice.file': expected the chosen artifact's file name")
    path = Path(choice["file"])
    path = path if path.is_absolute() else folder / path
    if not path.is_file():
        raise _pick_error(pick, f"its choice {path} is not there")
    backend = choice.get("backend")
    if backend is not None and backend not in BACKENDS:
        raise _pick_error(pick, f"field 'choice.backend': unknown backend {backend!r}")
    if choice.get("sha256") != sha256_file(path):
        raise _pick_error(pick, f"its choice {path.name} changed since it was picked (sha256 differs)")
    label = choice.get("label") or path.name
    notes = [f"model: {path.name} on {backend or 'its own backend'} ({label}), chosen by {pick}"]
    machine = data.get("machine") if isinstance(data.get("machine"), dict) else {}
    here = describe_cpu()
    if (machine.get("cpu"), machine.get("int8_kernels")) != (here.model, here.int8_kernels):
        notes.append(
            f"NOTICE: {pick} was made on '{machine.get('cpu')}' (int8 kernels {machine.get('int8_kernels')}); "
            f"this is '{here.model}' (int8 kernels {here.int8_kernels}): its timings may not hold here; "
            f"run `edge-sdk pick --model {folder}` on this device"
        )
    return ResolvedModel(path, backend, tuple(notes))


class FaceModel:
    """A multitask face model ready to run: ``predict(crops)`` -> post-processed heads.

    Loading a model whose weights are a synthetic demo (the packaged ``"demo"``) warns with
    :class:`SyntheticWeightsWarning`.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     model = FaceModel("demo")
    >>> [w.category.__name__ for w in caught]
    ['SyntheticWeightsWarning']
    >>> [head.kind for head in model.card.heads]
    ['au_occurrence', 'au_intensity', 'expression', 'valence_arousal']
    >>> sorted(model.describe(np.full((112, 112, 3), 128, np.uint8))["valence_arousal"])
    ['arousal', 'valence']
    """

    def __init__(
        self, model: str | Path = "demo", backend: str | None = None, card: ModelCard | None = None, **options: Any
    ) -> None:
        """``model``: ``"demo"``, a model file (.onnx, .tflite, OpenVINO .xml), a pulled model's name or an
        ``edge-sdk export`` folder. ``card`` replaces the artifact's own card (checked against the model file
        all the same). An export folder loads the artifact its ``pick.json`` chose, on the backend it was timed
        on unless ``backend``. ``options`` go to the backend (e.g. ``threads=2``)."""
        self.resolved = resolve_artifact(model)
        self.path = self.resolved.path
        self.backend: Backend = load_backend(self.path, backend or self.resolved.backend, card, **options)
        if self.is_synthetic_demo:
            warnings.warn(SYNTHETIC_NOTICE, SyntheticWeightsWarning, stacklevel=2)

    @property
    def card(self) -> ModelCard:
        return self.backend.card

    @property
    def info(self) -> BackendInfo:
        return self.backend.info

    @property
    def is_synthetic_demo(self) -> bool:
        return self.card.provenance.synthetic_demo

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        return preprocess(crops, self.card.input)

    def predict(self, crops: Sequence[np.ndarray]) -> HeadOutputs:
        """Post-processed outputs (probabilities, 0-5 intensities, PSPI...) for BGR uint8 face crops."""
        return postprocess(self.card, self.backend.run(self.preprocess(crops)))

    def describe(self, crop: np.ndarray) -> dict[str, object]:
        """One crop's outputs as {head: {label: value}} for display."""
        return describe_face(self.card, self.predict([crop]))
