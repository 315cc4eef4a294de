"""What ``edge-sdk export --model`` names: the table of source kinds and one loader per kind.

:data:`SOURCES` has one row per kind of model a user can bring, in the order they are recognised:

========== ====================================================== =========================================
kind       ``--model``                                            card
========== ====================================================== =========================================
demo       ``demo``                                               packaged (``--card`` is refused)
pytorch    ``path/to/file.py:build`` or ``package.module:build``  returned by ``build()``; ``--card`` wins
onnx       ``model.onnx``                                         ``--card``, else sidecar, else embedded
keras      ``.h5``/``.hdf5``/``.keras`` file or SavedModel folder ``--card``, else sidecar ``<stem>.card.json``
tflite     an FP32 ``.tflite`` file                               ``--card``, else sidecar ``<stem>.card.json``
checkpoint ``.pt``/``.pth`` of the reference network              ``--card``, else the reference card
========== ====================================================== =========================================

Each loader returns a :class:`SourceModel`: the FP32 parent ONNX (the card embedded, the card's input and
output names) and, for torch sources, the *normalised* torch module (``forward(x)`` takes the preprocessed
float32 batch in the card's layout and returns a tuple in ``card.output_tensors`` order). Every import is
checked against its source before anything else runs (:mod:`edge_sdk_export.onnx_io`): each head within
1e-4 on rendered faces, noise images and, when ``check_media`` is given, real face crops cut from it with
the card's crop; a mismatch is an ArtifactError naming the head.

Adding a kind = one :class:`SourceKind` row + one loader function ``(LoadRequest) -> SourceModel``.

Example::

    >>> source_kind("demo").name, source_kind("net.py:build").name, source_kind("m.hdf5").name
    ('demo', 'pytorch', 'keras')
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.contract.card import ModelCard, sidecar_path
from edge_sdk.contract.card_io import read_card_file
from edge_sdk.errors import ArtifactError, InputError

logger = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pt", ".pth")
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
REAL_CHECK_CROPS = 6  # real face crops every import is also checked on, when footage is given
_SPEC = re.compile(r"^(?P<target>.+\.py|[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*):(?P<function>[^:/\\]*)$")
CARD_HINT = (
    "write its card: `edge-sdk card init MODEL > card.json` drafts one from an ONNX/TFLite file "
    "(examples/cards/ has complete ones), then pass `--card card.json`"
)


@dataclass
class SourceModel:
    """The FP32 parent ONNX (card embedded, card names) and, for torch sources, the normalised module."""

    onnx: Path
    card: ModelCard
    torch_model: Any | None  # torch.nn.Module (normalised); None when there is no torch model (no pruning)
    description: str
    kind: str  # the SOURCES row it came from
    checks: dict[str, float] = field(default_factory=dict)  # max |source - ONNX| per head of the import check


@dataclass
class LoadRequest:
    """Everything a loader gets: the ``--model`` text, a scratch folder, ``--card`` and where real faces are."""

    name: str
    work: Path
    card: Path | None = None
    check_media: Path | None = None  # images/videos a few real face crops are cut from for the import check
    detector: Any = None  # edge_sdk.face.FaceDetector for those crops (None: create_detector("auto"))

    def real_crops(self, card: ModelCard) -> np.ndarray | None:
        """A few real face crops for ``card`` (BGR uint8), or None without ``check_media``."""
        if self.check_media is None:
            return None
        return real_face_crops(self.check_media, card, REAL_CHECK_CROPS, self.detector)


@dataclass(frozen=True)
class SourceKind:
    """One kind of model ``--model`` can name: how it is recognised and the function that loads it."""

    name: str
    what: str  # how a user names it (help and error text)
    matches: Callable[[str], bool]
    load: Callable[[LoadRequest], SourceModel]
    prunable: bool  # gives a torch module (--prune can run)


# ---- helpers shared by the loaders ------------------------------------------------------------------


def to_layout(batch_nchw: np.ndarray, card: ModelCard) -> np.ndarray:
    """A preprocessed NCHW batch in the card's layout (NHWC transposed, C-contiguous); lazy, so importing
    this module does not load torch (:func:`edge_sdk_export.onnx_io.to_layout` does the work)."""
    from edge_sdk_export.onnx_io import to_layout as _to_layout

    return _to_layout(batch_nchw, card)


def coerce_card(card: Any, where: str) -> ModelCard:
    """A ModelCard from a ModelCard, a dict or a JSON file path; ContractError/ArtifactError name ``where``."""
    if isinstance(card, ModelCard):
        return card
    if isinstance(card, dict):
        return ModelCard.from_dict(card, where)
    if isinstance(card, (str, Path)):
        if not Path(card).is_file():
            raise ArtifactError(f"{where}: card file {card} not found")
        return read_card_file(card)
    raise ArtifactError(f"{where}: expected a ModelCard, a dict or a card JSON path, got {type(card).__name__}")


def _stem(card: ModelCard) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in card.name) or "model"


def real_face_crops(
    media: str | Path, card: ModelCard, count: int = REAL_CHECK_CROPS, detector: Any = None
) -> np.ndarray:
    """Up to ``count`` real face crops (BGR uint8 at the card's input size) from evenly spaced frames of the
    images/videos in ``media``, cut with the card's crop around the largest detected face; a frame where no
    face is found (or no detector is available) gives its whole frame, resized."""
    import cv2

    from edge_sdk.face import create_detector, crop_face, select_faces
    from edge_sdk_export.calibration import _video_frames, list_media

    images, videos = list_media(Path(media))
    frames: list[np.ndarray] = [
        f for f in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in images[:count]) if f is not None
    ]
    per_video = -(-max(count - len(frames), 0) // max(len(videos), 1))
    for video in videos:
        frames.extend(_video_frames(video, per_video))
    frames = frames[:count]
    if detector is None:
        try:
            detector = create_detector("auto")
        except InputError as exc:
            logger.warning("import check: no face detector (%s); using whole frames", exc)
    spec = card.input
    crops = []
    for frame in frames:
        faces = select_faces(detector.detect(frame), "largest") if detector is not None else []
        if faces:
            crops.append(crop_face(frame, faces[0], spec.width, spec.height, spec.crop)[0])
        else:
            crops.append(cv2.resize(frame, (spec.width, spec.height), interpolation=cv2.INTER_AREA))
    if not crops:
        raise InputError(f"{media}: no frame could be read for the import check")
    return np.stack(crops)


# ---- torch modules --------------------------------------------------------------------------------


def normalise_module(module: Any, card: ModelCard, what: str = "the model") -> Any:
    """``module`` as a normalised module for ``card``: run once on a zero batch in the card's layout, its
    output (a tuple/list of tensors in ``card.output_tensors`` order, a dict keyed by those names, or one
    tensor for a one-output card) is checked and, unless already a tuple, wrapped into one.

    Raises ArtifactError naming what is wrong (forward failing, wrong count, missing dict keys) and
    ContractError when an output's width does not fit its head's labels."""
    import torch

    from edge_sdk_export.onnx_io import input_shape

    if not isinstance(module, torch.nn.Module):
        raise ArtifactError(f"{what}: expected a torch.nn.Module, got {type(module).__name__}")
    names = card.output_tensors
    module = module.eval()
    probe = torch.zeros(input_shape(card, batch=2))
    try:
        with torch.no_grad():
            out = module(probe)
    except Exception as exc:  # noqa: BLE001 - any error of the user's forward is reported in one line
        raise ArtifactError(
            f"{what}: forward() failed on a batch of shape {list(probe.shape)} ({card.input.layout}, the card's "
            f"input): {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        ) from None
    wrap = True
    if isinstance(out, dict):
        missing = [n for n in names if n not in out]
        if missing:
            raise ArtifactError(
                f"{what}: forward() returned a dict with keys {sorted(out)}; the card's heads read outputs "
                f"{list(names)} (missing {', '.join(repr(m) for m in missing)})"
            )
        tensors = [out[n] for n in names]
    elif isinstance(out, torch.Tensor):
        tensors = [out]
    elif isinstance(out, (tuple, list)):
        tensors = list(out)
        wrap = isinstance(out, list)
    else:
        raise ArtifactError(f"{what}: forward() returned {type(out).__name__}; expected tensors (a tuple or a dict)")
    if len(tensors) != len(names):
        raise ArtifactError(
            f"{what}: forward() returned {len(tensors)} output(s) but the card's heads read {len(names)} "
            f"({', '.join(names)}); return one tensor per distinct head output, in that order, or a dict"
        )
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        raise ArtifactError(f"{what}: forward() must return tensors, got {[type(t).__name__ for t in tensors]}")
    card.check_outputs({n: tuple(t.shape) for n, t in zip(names, tensors, strict=True)}, what)
    from edge_sdk_export.pruning import tuple_outputs

    return tuple_outputs(module, names).eval() if wrap else module


def torch_to_onnx(module: Any, card: ModelCard, path: str | Path, real: np.ndarray | None = None) -> dict[str, float]:
    """Export a normalised module to ``path`` with the card's input/output names, check ONNX Runtime against
    torch (<= 1e-4 per head on rendered, noise and ``real`` crops; ArtifactError names the head) and embed
    the card. Returns the max abs difference per head."""
    from edge_sdk_export.onnx_io import export_onnx

    return export_onnx(module, path, card, real=real)


def source_from_module(
    module: Any, card: ModelCard, work: Path, description: str, kind: str = "pytorch", real: np.ndarray | None = None
) -> SourceModel:
    """A SourceModel from a torch module and its card: normalised, exported to ``work`` and checked."""
    normalised = normalise_module(module, card, description)
    onnx_path = Path(work) / f"{_stem(card)}_fp32.onnx"
    diffs = torch_to_onnx(normalised, card, onnx_path, real)
    return SourceModel(onnx_path, card, normalised, description, kind, diffs)


# ---- loaders (one per row) ------------------------------------------------------------------------


def _load_demo(request: LoadRequest) -> SourceModel:
    from edge_sdk.contract.card_io import load_card
    from edge_sdk.model.face_model import resolve_model
    from edge_sdk_export.onnx_io import check_match, compare_with_onnxruntime, verification_batch

    if request.card is not None:
        raise InputError("--card: the demo carries its own card; --card is for your own models")
    onnx_path = resolve_model("demo")
    card = load_card(onnx_path)
    from edge_sdk_export.network import HEAD_NAMES

    if tuple(HEAD_NAMES) != card.output_tensors:  # FaceNet.forward returns its heads in HEAD_NAMES order
        raise ArtifactError(
            f"demo: the packaged card reads outputs {list(card.output_tensors)}, the demo network returns "
            f"{list(HEAD_NAMES)}; this install is inconsistent, reinstall edge-sdk"
        )
    try:
        from edge_sdk_export.demo import load_demo_torch_model

        torch_model = normalise_module(load_demo_torch_model(), card, "demo torch model")
    except FileNotFoundError as exc:
        logger.warning("demo: no torch weights in this install (%s); pruning is not possible", exc)
        return SourceModel(onnx_path, card, None, "packaged synthetic demo", "demo")
    diffs = compare_with_onnxruntime(
        torch_model, onnx_path, verification_batch(card, real=request.real_crops(card)), card
    )
    check_match(diffs, "demo (torch weights vs packaged ONNX)", card)
    return SourceModel(onnx_path, card, torch_model, "packaged synthetic demo", "demo", diffs)


def _missing_card(path: Path) -> ArtifactError:
    return ArtifactError(f"{path}: no model card (none embedded, no sidecar {sidecar_path(path).name}); {CARD_HINT}")


def _load_onnx(request: LoadRequest) -> SourceModel:
    import onnx

    from edge_sdk.backend.model_io import check_card_fits, read_model_io
    from edge_sdk.contract.card_io import load_card
    from edge_sdk_export.onnx_card import set_card

    path = _existing(request.name, "an .onnx model")
    if request.card is not None:
        card = coerce_card(request.card, "--card")
        check_card_fits(card, read_model_io(path), str(request.card))
        copy = request.work / f"{path.stem}_fp32.onnx"
        model = onnx.load(str(path))  # the user's file is never modified: the card goes into a copy
        set_card(model, card.with_changes(files={}))
        onnx.save(model, str(copy))
        return SourceModel(copy, card, None, f"ONNX {path.name} with card {request.card}", "onnx")
    try:
        card = load_card(path)
    except ArtifactError as exc:
        if "no model card" in str(exc):
            raise _missing_card(path) from None
        raise
    check_card_fits(card, read_model_io(path))
    return SourceModel(path, card, None, f"ONNX {path.name}", "onnx")


def _import_target(spec: str) -> tuple[Any, str]:
    """The module a ``file.py:build``/``package.module:build`` spec names, and the function name."""
    match = _SPEC.match(spec)
    if match is None or not match["function"]:
        raise ArtifactError(
            f"--model {spec}: name the function that builds the model, e.g. '{spec.split(':')[0]}:build' "
            "(it returns (torch.nn.Module, card))"
        )
    target, function = match["target"], match["function"]
    if not function.isidentifier():
        raise ArtifactError(f"--model {spec}: {function!r} is not a Python function name")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ArtifactError(f"--model {spec}: file {path} not found")
        name = f"edge_sdk_user_model_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ArtifactError(f"--model {spec}: Python cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        sys.path.insert(0, str(path.resolve().parent))  # the file may import its neighbours
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's file: report in one line
            del sys.modules[name]
            raise ArtifactError(f"--model {spec}: importing {path} failed: {type(exc).__name__}: {exc}") from None
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module, function
    try:
        return importlib.import_module(target), function
    except ImportError as exc:
        raise ArtifactError(f"--model {spec}: cannot import module {target!r} ({exc})") from None


def _load_pytorch(request: LoadRequest) -> SourceModel:
    import torch

    spec = request.name
    module, function = _import_target(spec)
    build = getattr(module, function, None)
    if build is None:
        where = spec.rpartition(":")[0]
        raise ArtifactError(f"--model {spec}: {where} has no function {function!r}")
    if not callable(build):
        raise ArtifactError(f"--model {spec}: {function!r} is not callable")
    try:
        built = build()
    except Exception as exc:  # noqa: BLE001 - the user's build(): report in one line
        raise ArtifactError(f"--model {spec}: {function}() raised {type(exc).__name__}: {exc}") from None
    if not (isinstance(built, (tuple, list)) and len(built) == 2 and isinstance(built[0], torch.nn.Module)):
        got = (
            f"({', '.join(type(item).__name__ for item in built)})"
            if isinstance(built, (tuple, list))
            else type(built).__name__
        )
        raise ArtifactError(f"--model {spec}: {function}() must return (torch.nn.Module, card), got {got}")
    net, card_value = built
    if request.card is not None:
        if card_value is not None:
            logger.info("--card %s replaces the card %s() returned", request.card, function)
        card = coerce_card(request.card, "--card")
    elif card_value is None:
        raise ArtifactError(f"--model {spec}: {function}() returned no card and no --card was given; {CARD_HINT}")
    else:
        card = coerce_card(card_value, f"--model {spec}: the card {function}() returned")
    return source_from_module(net, card, request.work, f"torch model {spec}", "pytorch", request.real_crops(card))


def _sidecar_card(path: Path, request: LoadRequest) -> ModelCard:
    """``--card`` when given, else ``<stem>.card.json`` beside ``path``, else an error saying what to do."""
    if request.card is not None:
        return coerce_card(request.card, "--card")
    sidecar = sidecar_path(path) if path.is_file() else path.with_name(path.name + ".card.json")
    if sidecar.is_file():
        return read_card_file(sidecar)
    raise ArtifactError(f"{path}: no model card (no --card, no sidecar {sidecar.name}); {CARD_HINT}")


def _load_tf(request: LoadRequest, kind: str) -> SourceModel:
    from edge_sdk_export.keras_import import tf_to_onnx

    path = Path(request.name)
    if not path.exists():
        raise ArtifactError(f"--model {request.name}: no such file or folder")
    card = _sidecar_card(path, request)
    onnx_path = request.work / f"{path.stem}_fp32.onnx"
    diffs = tf_to_onnx(path, card, onnx_path, real=request.real_crops(card))
    label = "Keras" if kind == "keras" else "TFLite"
    return SourceModel(onnx_path, card, None, f"{label} model {path.name} (tf2onnx)", kind, diffs)


def _load_keras(request: LoadRequest) -> SourceModel:
    return _load_tf(request, "keras")


def _load_tflite(request: LoadRequest) -> SourceModel:
    return _load_tf(request, "tflite")


def _load_checkpoint(request: LoadRequest) -> SourceModel:
    from edge_sdk.contract.card import Provenance
    from edge_sdk_export.demo import load_checkpoint
    from edge_sdk_export.network import reference_card

    path = _existing(request.name, "a .pt checkpoint")
    if request.card is not None:
        card = coerce_card(request.card, "--card")
    else:
        card = reference_card(Provenance(source=str(path), synthetic_demo=False), name=path.stem)
    model = load_checkpoint(path)
    return source_from_module(
        model, card, request.work, f"torch checkpoint {path}", "checkpoint", request.real_crops(card)
    )


def _existing(name: str, what: str) -> Path:
    path = Path(name)
    if not path.is_file():
        raise ArtifactError(f"--model {name}: no such file (expected {what})")
    return path


def _is_pytorch(name: str) -> bool:
    return name.endswith(".py") or (_SPEC.match(name) is not None and not Path(name).exists())


def _suffix(name: str) -> str:
    return Path(name).suffix.lower()


SOURCES: dict[str, SourceKind] = {
    k.name: k
    for k in (
        SourceKind("demo", "demo", lambda n: n == "demo", _load_demo, prunable=True),
        SourceKind("pytorch", "path/to/file.py:build or package.module:build", _is_pytorch, _load_pytorch, True),
        SourceKind("onnx", "an .onnx file", lambda n: _suffix(n) == ".onnx", _load_onnx, prunable=False),
        SourceKind(
            "keras",
            "a Keras .h5/.hdf5/.keras file or a SavedModel folder",
            lambda n: _suffix(n) in KERAS_SUFFIXES or (Path(n) / "saved_model.pb").is_file(),
            _load_keras,
            prunable=False,
        ),
        SourceKind("tflite", "an FP32 .tflite file", lambda n: _suffix(n) == ".tflite", _load_tflite, prunable=False),
        SourceKind(
            "checkpoint",
            "a .pt/.pth checkpoint of the reference network",
            lambda n: _suffix(n) in TORCH_SUFFIXES,
            _load_checkpoint,
            prunable=True,
        ),
    )
}


def source_kind(name: str) -> SourceKind:
    """The first row of :data:`SOURCES` that recognises ``name``; ArtifactError listing the kinds otherwise."""
    for kind in SOURCES.values():
        if kind.matches(name):
            return kind
    kinds = "; ".join(f"{k.name}: {k.what}" for k in SOURCES.values())
    if not Path(name).exists():
        raise ArtifactError(f"--model {name}: no such file or folder (expected one of: {kinds})")
    raise ArtifactError(f"--model {name}: not a model edge-sdk can import (expected one of: {kinds})")


def resolve_source(
    name: str,
    work: Path,
    card: Path | None = None,
    *,
    check_media: str | Path | None = None,
    detector: Any = None,
) -> SourceModel:
    """Load ``--model name`` (with ``--card card`` when given) into a checked :class:`SourceModel`.

    Files made on the way (converted/exported ONNX, a carded copy) go into ``work``; the user's files are
    never modified. ``check_media`` (images/videos of real faces, e.g. the ``--calib`` folder) adds a few
    real face crops, cut with the card's crop, to the import check. Raises ArtifactError, ContractError or
    InputError with one line naming what is wrong.
    """
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    kind = source_kind(str(name))
    request = LoadRequest(
        str(name),
        work,
        None if card is None else Path(card),
        None if check_media is None else Path(check_media),
        detector,
    )
    logger.info("--model %s: %s source", name, kind.name)
    source = kind.load(request)
    if source.card.files:  # a sidecar's file hashes describe the user's file, not the parent ONNX
        source.card = source.card.with_changes(files={})
    if source.checks:
        logger.info("%s: import check passed, max |source - ONNX| per head %s", source.description, source.checks)
    return source


__all__ = [
    "SOURCES",
    "LoadRequest",
    "SourceKind",
    "SourceModel",
    "coerce_card",
    "normalise_module",
    "real_face_crops",
    "resolve_source",
    "source_from_module",
    "source_kind",
    "to_layout",
    "torch_to_onnx",
]
