"""The table of source kinds (edge_sdk_export.sources): every row on small real inputs, every error path.

Torch models are written by the tests (``file.py:build`` in a tmp folder); the Keras rows convert the two
real third-party models in ../shared/models/face_classification with tf2onnx (a few seconds each) and
check them against Keras on rendered faces and real crops of ../shared/data/faces/single_face.mp4.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge_sdk.contract.card import ModelCard, sidecar_path
from edge_sdk.contract.card_io import load_card, sha256_file
from edge_sdk.contract.processing import preprocess
from edge_sdk.errors import ArtifactError, ContractError, InputError
from edge_sdk_export.onnx_io import MATCH_TOLERANCE
from edge_sdk_export.sources import SOURCES, real_face_crops, resolve_source, source_kind, to_layout
from tests.conftest import REPO, shared_file

FACE_MODELS = "models/face_classification"
KERAS_MODELS = {
    "tiny_XCEPTION_KDEF": (
        "tiny_XCEPTION_KDEF.hdf5",
        ("angry", "disgust", "afraid", "happy", "sad", "surprised", "neutral"),
        "KDEF",
    ),
    "fer2013_big_XCEPTION": (
        "fer2013_big_XCEPTION.54-0.66.hdf5",
        ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
        "FER2013",
    ),
}
KERAS_NAMES = {"fer2013_big_XCEPTION": "fer2013_big_XCEPTION.54-0.66"}


def keras_card(stem: str) -> dict[str, Any]:
    """The card of one of the shared face_classification models (what README's table run uses)."""
    _, labels, data = KERAS_MODELS[stem]
    name = KERAS_NAMES.get(stem, stem)
    return {
        "contract_version": "1.1",
        "name": name,
        "description": f"Third-party {data} expression classifier (Keras 2 HDF5, 64x64 grayscale, softmax in graph).",
        "input": {
            "name": "input_1",
            "size": [64, 64],
            "layout": "NHWC",
            "channels": 1,
            "color_order": "GRAY",
            "mean": [0.5],
            "std": [0.5],
            "dtype": "float32",
            "crop": {"method": "box", "margin": 0.2, "square": True},
        },
        "heads": [
            {
                "name": "expression",
                "kind": "expression",
                "labels": list(labels),
                "activation": "none",
                "output": "predictions",
            }
        ],
        "provenance": {
            "source": f"oarriaga/face_classification: trained_models/emotion_models/{name}.hdf5",
            "synthetic_demo": False,
            "training_data": data,
            "license": "MIT",
        },
    }


TORCH_FILE = """
import json
from pathlib import Path

import torch
from torch import nn

from edge_sdk.contract.card import ModelCard

RGB_CARD = {
    "contract_version": "1.1",
    "name": "tiny-rgb",
    "input": {"name": "pixels", "size": [32, 32], "layout": "NCHW", "color_order": "RGB",
              "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    "heads": [
        {"name": "expression", "kind": "expression", "labels": ["neutral", "happy", "sad"],
         "activation": "softmax", "output": "logits"},
        {"name": "valence_arousal", "kind": "valence_arousal", "labels": ["valence", "arousal"],
         "activation": "tanh", "output": "va"},
    ],
    "provenance": {"source": "test", "synthetic_demo": False},
}
GRAY_CARD = {
    **RGB_CARD,
    "name": "tiny-gray",
    "input": {"name": "gray", "size": [32, 32], "layout": "NHWC", "channels": 1, "color_order": "GRAY",
              "mean": [0.5], "std": [0.5], "crop": {"method": "box", "margin": 0.2, "square": True}},
}


class Net(nn.Module):
    def __init__(self, channels=3, nhwc=False, as_dict=False, extra=False):
        super().__init__()
        torch.manual_seed(0)
        self.nhwc, self.as_dict, self.extra = nhwc, as_dict, extra
        self.body = nn.Sequential(
            nn.Conv2d(channels, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.expression = nn.Linear(16, 3)
        self.va = nn.Linear(16, 2)

    def forward(self, x):
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        z = self.body(x)
        if self.as_dict:
            return {"va": self.va(z), "logits": self.expression(z)}  # keyed, any order
        out = (self.expression(z), self.va(z))
        return out + (z,) if self.extra else out


def build():
    return Net(), RGB_CARD


def build_dict():
    return Net(channels=1, nhwc=True, as_dict=True), ModelCard.from_dict(GRAY_CARD)


def build_path():
    path = Path(__file__).with_name("tiny.card.json")
    path.write_text(json.dumps(RGB_CARD))
    return Net(), str(path)


def build_three():
    return Net(extra=True), RGB_CARD


def build_wrong():
    return "not a model"


def build_missing_key():
    class Partial(Net):
        def forward(self, x):
            return {"logits": self.expression(self.body(x))}

    return Partial(), RGB_CARD


def build_no_card():
    return Net(), None


def build_raises():
    raise ValueError("weights not found")


not_a_function = 3
"""


@pytest.fixture(scope="module")
def torch_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user") / "tiny_models.py"
    path.write_text(textwrap.dedent(TORCH_FILE))
    return path


@pytest.fixture(scope="module")
def single_face() -> Path:
    return shared_file("data/faces/single_face.mp4")


@pytest.fixture(scope="module")
def yunet() -> Any:
    from edge_sdk.face import create_detector

    return create_detector("yunet", shared_file("models/yunet/yunet_s_640_640.onnx"))


@pytest.fixture(scope="module")
def tuple_source(torch_file: Path, tmp_path_factory: pytest.TempPathFactory):
    return resolve_source(f"{torch_file}:build", tmp_path_factory.mktemp("work"))


def _onnx_outputs(path: Path, card: ModelCard, batch: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [card.input.name]
    assert [o.name for o in session.get_outputs()] == list(card.output_tensors)
    return session.run(None, {card.input.name: batch})


def _real_batch(card: ModelCard, video: Path, detector: Any) -> np.ndarray:
    crops = real_face_crops(video, card, count=4, detector=detector)
    return to_layout(preprocess(list(crops), card.input), card)


# ---- the table ------------------------------------------------------------------------------------


def test_table_recognises_each_kind(torch_file: Path, tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    names = {
        "demo": "demo",
        f"{torch_file}:build": "pytorch",
        "my_package.models:build": "pytorch",
        str(torch_file): "pytorch",
        "m.onnx": "onnx",
        "m.h5": "keras",
        "m.HDF5": "keras",
        "m.keras": "keras",
        str(saved): "keras",
        "m.tflite": "tflite",
        "net.pt": "checkpoint",
    }
    assert {name: source_kind(name).name for name in names} == names
    assert list(SOURCES) == ["demo", "pytorch", "onnx", "keras", "tflite", "checkpoint"]
    assert [k.name for k in SOURCES.values() if k.prunable] == ["demo", "pytorch", "checkpoint"]


def test_unknown_model_names_every_kind(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"no such file or folder .*demo: demo; pytorch: path/to/file.py:build"):
        resolve_source(str(tmp_path / "model.bin"), tmp_path)
    existing = tmp_path / "model.bin"
    existing.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="not a model edge-sdk can import"):
        resolve_source(str(existing), tmp_path)


def test_demo_row_has_card_and_normalised_torch_model(tmp_path: Path) -> None:
    import torch

    source = resolve_source("demo", tmp_path)
    assert source.kind == "demo" and source.card.provenance.synthetic_demo
    assert source.torch_model is not None and max(source.checks.values()) <= MATCH_TOLERANCE
    with torch.no_grad():
        out = source.torch_model(torch.zeros(1, 3, 112, 112))
    assert isinstance(out, tuple) and len(out) == len(source.card.output_tensors)
    with pytest.raises(InputError, match="demo carries its own card"):
        resolve_source("demo", tmp_path, tmp_path / "card.json")


# ---- pytorch ----------------------------------------------------------------------------------------


def test_pytorch_tuple_module_exports_with_card_names(tuple_source, single_face: Path, yunet: Any) -> None:
    source = tuple_source
    card = source.card
    assert source.kind == "pytorch" and card.name == "tiny-rgb"
    assert source.torch_model is not None and max(source.checks.values()) <= MATCH_TOLERANCE
    assert load_card(source.onnx) == card  # embedded
    batch = _real_batch(card, single_face, yunet)
    got = _onnx_outputs(source.onnx, card, batch)
    import torch

    with torch.no_grad():
        expected = source.torch_model(torch.from_numpy(batch))
    for e, g in zip(expected, got, strict=True):
        assert np.abs(e.numpy() - g).max() <= MATCH_TOLERANCE


def test_pytorch_dict_module_gray_nhwc(torch_file: Path, tmp_path: Path, single_face: Path, yunet: Any) -> None:
    source = resolve_source(f"{torch_file}:build_dict", tmp_path, check_media=single_face, detector=yunet)
    card = source.card
    assert card.input.layout == "NHWC" and card.input.channels == 1
    import torch

    batch = _real_batch(card, single_face, yunet)
    assert batch.shape == (4, 32, 32, 1)
    with torch.no_grad():
        expected = source.torch_model(torch.from_numpy(batch))
    assert isinstance(expected, tuple) and [t.shape[1] for t in expected] == [3, 2]  # logits, va: card order
    got = _onnx_outputs(source.onnx, card, batch)
    assert max(float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got, strict=True)) <= MATCH_TOLERANCE


def test_pytorch_module_spec_and_card_path(torch_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(torch_file.parent))
    source = resolve_source("tiny_models:build_path", tmp_path)
    assert source.kind == "pytorch" and source.card.name == "tiny-rgb"


def test_card_option_replaces_the_built_card(torch_file: Path, tmp_path: Path) -> None:
    card = json.loads(json.dumps(_rgb_card(torch_file)))
    card["name"] = "from-card-option"
    card_path = tmp_path / "override.card.json"
    card_path.write_text(json.dumps(card))
    source = resolve_source(f"{torch_file}:build_no_card", tmp_path, card_path)
    assert source.card.name == "from-card-option" and load_card(source.onnx).name == "from-card-option"


def _rgb_card(torch_file: Path) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__file__": str(torch_file)}
    exec(compile(torch_file.read_text(), str(torch_file), "exec"), namespace)  # noqa: S102 - the test's own file
    return namespace["RGB_CARD"]


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("{missing}:build", ArtifactError, r"file .*missing_models.py not found"),
        ("{file}", ArtifactError, r"name the function that builds the model, e.g. '.*tiny_models.py:build'"),
        ("{file}:", ArtifactError, r"name the function that builds the model"),
        ("{file}:nope", ArtifactError, r"tiny_models.py has no function 'nope'"),
        ("{file}:not_a_function", ArtifactError, r"'not_a_function' is not callable"),
        ("{file}:build_wrong", ArtifactError, r"build_wrong\(\) must return \(torch.nn.Module, card\), got str"),
        ("{file}:build_raises", ArtifactError, r"build_raises\(\) raised ValueError: weights not found"),
        ("{file}:build_no_card", ArtifactError, r"returned no card and no --card was given; .*edge-sdk card init"),
        (
            "{file}:build_three",
            ArtifactError,
            r"forward\(\) returned 3 output\(s\) but the card's heads read 2 \(logits, va\)",
        ),
        ("{file}:build_missing_key", ArtifactError, r"returned a dict with keys \['logits'\].*missing 'va'"),
        ("no_such_package_xyz.models:build", ArtifactError, r"cannot import module 'no_such_package_xyz.models'"),
    ],
)
def test_pytorch_errors_name_the_problem(
    torch_file: Path, tmp_path: Path, spec: str, error: type[Exception], message: str
) -> None:
    name = spec.format(file=torch_file, missing=tmp_path / "missing_models.py")
    with pytest.raises(error, match=message):
        resolve_source(name, tmp_path)


def test_pytorch_output_width_must_fit_the_labels(torch_file: Path, tmp_path: Path) -> None:
    card = _rgb_card(torch_file)
    card["heads"][0]["labels"] = ["a", "b", "c", "d"]
    card_path = tmp_path / "wide.card.json"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ContractError, match=r"heads\[0\] \(expression\).labels.*4 labels but output 'logits'"):
        resolve_source(f"{torch_file}:build", tmp_path, card_path)


# ---- onnx ----------------------------------------------------------------------------------------


def _bare_copy(source_onnx: Path, dest: Path) -> Path:
    """The ONNX without its embedded card."""
    model = onnx.load(str(source_onnx))
    del model.metadata_props[:]
    onnx.save(model, str(dest))
    return dest


def test_onnx_with_sidecar_card(tuple_source, tmp_path: Path) -> None:
    bare = _bare_copy(tuple_source.onnx, tmp_path / "user.onnx")
    card = tuple_source.card.with_changes(name="sidecar-card", files={"user.onnx": sha256_file(bare)})
    sidecar_path(bare).write_text(card.to_json())
    source = resolve_source(str(bare), tmp_path / "work")
    assert source.kind == "onnx" and source.card.name == "sidecar-card" and source.torch_model is None


def test_onnx_card_option_wins_and_user_file_is_untouched(tuple_source, tmp_path: Path) -> None:
    user = tmp_path / "embedded.onnx"
    user.write_bytes(tuple_source.onnx.read_bytes())  # has its own embedded card
    before = hashlib.sha256(user.read_bytes()).hexdigest()
    override = tuple_source.card.with_changes(name="card-option")
    card_path = tmp_path / "option.json"
    card_path.write_text(override.to_json())
    work = tmp_path / "work"
    source = resolve_source(str(user), work, card_path)
    assert source.card.name == "card-option" and source.onnx.parent == work
    assert load_card(source.onnx).name == "card-option"
    assert hashlib.sha256(user.read_bytes()).hexdigest() == before
    assert resolve_source(str(user), work).card.name == "tiny-rgb"  # without --card: its embedded card


def test_onnx_without_card_says_how_to_write_one(tuple_source, tmp_path: Path) -> None:
    bare = _bare_copy(tuple_source.onnx, tmp_path / "nocard.onnx")
    with pytest.raises(
        ArtifactError, match=r"nocard.onnx: no model card.*edge-sdk card init MODEL > card.json.*--card"
    ):
        resolve_source(str(bare), tmp_path / "work")


def test_onnx_card_that_does_not_fit_is_refused(tuple_source, tmp_path: Path) -> None:
    data = tuple_source.card.to_dict()
    data["input"]["name"] = "other"
    card_path = tmp_path / "bad.json"
    card_path.write_text(json.dumps(data))
    with pytest.raises(ContractError, match="input.name"):
        resolve_source(str(tuple_source.onnx), tmp_path / "work", card_path)


# ---- keras and tflite -------------------------------------------------------------------------------


def _write_card(stem: str, folder: Path, **changes: Any) -> Path:
    data = keras_card(stem)
    data["input"].update(changes)
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("stem", list(KERAS_MODELS))
def test_shared_keras_models_convert_and_match(stem: str, tmp_path: Path, single_face: Path, yunet: Any) -> None:
    pytest.importorskip("tf2onnx")
    model = shared_file(f"{FACE_MODELS}/{KERAS_MODELS[stem][0]}")
    source = resolve_source(str(model), tmp_path, _write_card(stem, tmp_path), check_media=single_face, detector=yunet)
    assert source.kind == "keras" and source.torch_model is None
    assert max(source.checks.values()) <= MATCH_TOLERANCE
    card = load_card(source.onnx)
    assert card.input.channels == 1 and card.input.layout == "NHWC"
    batch = np.concatenate([_real_batch(card, single_face, yunet)] * 2)  # batch 8: the batch axis is dynamic
    (probs,) = _onnx_outputs(source.onnx, card, batch)
    assert probs.shape == (8, 7) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)  # softmax in graph


def test_example_cards_are_the_test_cards() -> None:
    for stem in KERAS_MODELS:
        path = REPO / "examples" / "cards" / f"{stem}.card.json"
        assert json.loads(path.read_text()) == keras_card(stem), path
        ModelCard.from_dict(json.loads(path.read_text()), str(path))


def test_keras_card_that_does_not_fit_names_the_field(tmp_path: Path) -> None:
    pytest.importorskip("tf2onnx")
    model = shared_file(f"{FACE_MODELS}/tiny_XCEPTION_KDEF.hdf5")
    card = _write_card("tiny_XCEPTION_KDEF", tmp_path, layout="NCHW")
    with pytest.raises(ContractError, match=r"input.layout"):
        resolve_source(str(model), tmp_path, card)
    with pytest.raises(ArtifactError, match=r"no model card \(no --card, no sidecar tiny_XCEPTION_KDEF.card.json\)"):
        resolve_source(str(model), tmp_path)


def test_fp32_tflite_source(tmp_path: Path, single_face: Path, yunet: Any) -> None:
    pytest.importorskip("tf2onnx")
    import keras
    import tensorflow as tf

    model = keras.models.load_model(str(shared_file(f"{FACE_MODELS}/tiny_XCEPTION_KDEF.hdf5")), compile=False)
    tflite = tmp_path / "tiny.tflite"
    tflite.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    card = keras_card("tiny_XCEPTION_KDEF")
    sidecar_path(tflite).write_text(json.dumps(card))  # a sidecar next to the source is read too
    source = resolve_source(str(tflite), tmp_path / "work", check_media=single_face, detector=yunet)
    assert source.kind == "tflite" and max(source.checks.values()) <= MATCH_TOLERANCE
    loaded = load_card(source.onnx)
    batch = _real_batch(loaded, single_face, yunet)
    (probs,) = _onnx_outputs(source.onnx, loaded, batch)
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        expected = model(batch, training=False).numpy()
    assert np.abs(probs - expected).max() <= MATCH_TOLERANCE


# ---- api --------------------------------------------------------------------------------------------


def test_export_model_refuses_bad_arguments_before_work(tmp_path: Path) -> None:
    import torch

    from edge_sdk_export.api import export_model

    with pytest.raises(InputError, match="unknown option 'prunes'"):
        export_model("demo", None, "synthetic", ["cpu"], tmp_path / "out", prunes=0.3)
    with pytest.raises(InputError, match="unknown target 'nope'"):
        export_model("demo", None, "synthetic", ["nope"], tmp_path / "out")
    with pytest.raises(InputError, match="needs its card"):
        export_model(torch.nn.Linear(2, 2), None, "synthetic", ["cpu"], tmp_path / "out")


def test_saved_model_folder_source_with_sidecar(tmp_path: Path) -> None:
    pytest.importorskip("tf2onnx")
    import keras

    model = keras.models.load_model(str(shared_file(f"{FACE_MODELS}/tiny_XCEPTION_KDEF.hdf5")), compile=False)
    folder = tmp_path / "saved"
    model.export(str(folder), format="tf_saved_model", verbose=False)
    (tmp_path / "saved.card.json").write_text(json.dumps(keras_card("tiny_XCEPTION_KDEF")))  # beside the folder
    source = resolve_source(str(folder), tmp_path / "work")
    assert source.kind == "keras" and max(source.checks.values()) <= MATCH_TOLERANCE
    assert load_card(source.onnx).input.name == "input_1"


def test_real_face_crops_cut_with_the_cards_crop(single_face: Path, yunet: Any) -> None:
    card = ModelCard.from_dict(keras_card("tiny_XCEPTION_KDEF"))
    crops = real_face_crops(single_face, card, count=3, detector=yunet)
    assert crops.shape == (3, 64, 64, 3) and crops.dtype == np.uint8
    frame_sized = real_face_crops(single_face, card, count=3, detector=_NoFaces())
    assert np.abs(crops.astype(int) - frame_sized.astype(int)).mean() > 5  # a face box, not the whole frame


class _NoFaces:
    description = "no faces"

    def detect(self, frame: np.ndarray) -> list[Any]:
        return []


def test_export_model_runs_a_torch_module(torch_file: Path, tmp_path: Path, yunet: Any) -> None:
    from edge_sdk_export.api import export_model

    namespace: dict[str, Any] = {"__file__": str(torch_file)}
    exec(compile(torch_file.read_text(), str(torch_file), "exec"), namespace)  # noqa: S102 - the test's own file
    module, card = namespace["build_dict"]()
    report = export_model(
        module,
        card,
        "synthetic",
        "cpu",
        tmp_path / "out",
        calib_size=16,
        heldout_size=8,
        latency_runs=2,
        progress=False,
        detector=yunet,
    )
    assert [row["target"] for row in report["rows"]] == ["cpu"]
    assert (tmp_path / "out" / "report.json").is_file()
