"""Keras (``.h5``/``.hdf5``/``.keras``, SavedModel folder) and FP32 ``.tflite`` models -> ONNX with a card.

Conversion is ``tf2onnx`` (a workstation dependency, ``pip install 'edge-sdk[export]'``), opset 17.
The converted graph then gets the card's names: its one input becomes ``card.input.name`` and its outputs,
in the model's own output order, become the card heads' distinct ``output`` names
(``card.output_tensors``); the batch axis is made dynamic and the card is embedded. The ONNX keeps the
model's own layout (NHWC for Keras/TFLite image models: the card must say ``"layout": "NHWC"``).

Output order: a Keras model's ``model.outputs``; a SavedModel's ``serving_default`` signature outputs
in name order; a TFLite model's subgraph outputs.

Before the file is used, the converted model is run next to its source (Keras/TensorFlow or the
TFLite interpreter) on rendered faces, noise images and any real face crops given; every head must agree
within :data:`~edge_sdk_export.onnx_io.MATCH_TOLERANCE` (max abs), or ArtifactError names the head.

Keras 3 (TensorFlow 2.19) reads Keras 2 HDF5 files with ``keras.models.load_model(path, compile=False)``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.contract.card import ModelCard
from edge_sdk.errors import ArtifactError

logger = logging.getLogger(__name__)

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
TFLITE_SUFFIX = ".tflite"
SAVED_MODEL_FILE = "saved_model.pb"
INSTALL_HINT = "pip install 'edge-sdk[export]' (tensorflow and tf2onnx)"


def is_saved_model(path: Path) -> bool:
    """True for a TensorFlow SavedModel folder."""
    return path.is_dir() and (path / SAVED_MODEL_FILE).is_file()


@dataclass
class _Loaded:
    """A loaded source model: its input shape, how to run it, how to convert it to an ONNX ModelProto."""

    kind: str  # "Keras model", "SavedModel", "TFLite model": what messages call it
    input_shape: tuple[int | None, ...]
    input_dtype: str
    output_count: int
    run: Callable[[np.ndarray], list[np.ndarray]]  # batch in the model's layout -> outputs in model order
    convert: Callable[[str, int], Any]  # (input name, opset) -> onnx.ModelProto


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _tensorflow() -> tuple[Any, Any]:
    """(tensorflow, tf2onnx), quiet; ArtifactError with the install command when either is missing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError as exc:
        raise ArtifactError(f"Keras/TFLite models need TensorFlow and tf2onnx ({exc}); {INSTALL_HINT}") from None
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    return tf, tf2onnx


def _dims(shape: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None or int(d) < 0 else int(d) for d in shape)


def _as_list(outputs: Any, order: list[str] | None = None) -> list[np.ndarray]:
    if isinstance(outputs, dict):
        keys = order or sorted(outputs)
        return [np.asarray(outputs[k]) for k in keys]
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(o) for o in outputs]
    return [np.asarray(outputs)]


def _load_keras(path: Path) -> _Loaded:
    tf, tf2onnx = _tensorflow()
    import keras

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, TypeError... for files it cannot read
        raise ArtifactError(f"{path}: Keras cannot load this model ({_first_line(exc)})") from None
    if len(model.inputs) != 1:
        raise ArtifactError(f"{path}: expected a model with one image input, it has {len(model.inputs)}")
    shape = _dims(model.inputs[0].shape)
    dtype = np.dtype(getattr(model.inputs[0], "dtype", "float32")).name

    def run(batch: np.ndarray) -> list[np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "structure of inputs doesn't match" for Keras-2 functional models
            return _as_list(model(batch, training=False))

    def convert(input_name: str, opset: int) -> Any:
        spec = [tf.TensorSpec((None, *shape[1:]), dtype, name=input_name)]
        onnx_model, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
        return onnx_model

    return _Loaded("Keras model", shape, dtype, len(model.outputs), run, convert)


def _load_saved_model(path: Path) -> _Loaded:
    tf, tf2onnx = _tensorflow()
    try:
        loaded = tf.saved_model.load(str(path))
        signature = loaded.signatures["serving_default"]
    except Exception as exc:  # noqa: BLE001 - TensorFlow's loader errors have no common base
        raise ArtifactError(
            f"{path}: TensorFlow cannot load this SavedModel's 'serving_default' signature ({_first_line(exc)})"
        ) from None
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
        raise ArtifactError(f"{path}: expected a signature with one image input, it has {len(inputs)}")
    ((input_key, input_spec),) = inputs.items()
    keys = sorted(signature.structured_outputs)
    shape = _dims(input_spec.shape)
    dtype = input_spec.dtype.name

    def call(x: Any) -> list[Any]:
        out = signature(**{input_key: x})
        return [out[k] for k in keys]

    def run(batch: np.ndarray) -> list[np.ndarray]:
        return [t.numpy() for t in call(tf.constant(batch))]

    def convert(input_name: str, opset: int) -> Any:
        del input_name  # the graph keeps the signature's names; rename_io applies the card's
        from tf2onnx import tf_loader

        graph_def, inputs, outputs, renames = tf_loader.from_saved_model(
            str(path), None, None, signatures=["serving_default"], return_tensors_to_rename=True
        )
        by_key = {renames.get(name, name): name for name in outputs}
        ordered = [by_key[key] for key in keys]  # signature outputs in name order, as run() returns them
        onnx_model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=ordered, opset=opset)
        return onnx_model

    return _Loaded("SavedModel", shape, dtype, len(keys), run, convert)


def _tflite_interpreter(path: Path) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        tf, _ = _tensorflow()
        Interpreter = tf.lite.Interpreter  # noqa: N806
    try:
        return Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{path}: not a readable TFLite model ({_first_line(exc)})") from None


def _load_tflite(path: Path) -> _Loaded:
    _, tf2onnx = _tensorflow()
    interpreter = _tflite_interpreter(path)
    inputs = interpreter.get_input_details()
    if len(inputs) != 1:
        raise ArtifactError(f"{path}: expected a model with one image input, it has {len(inputs)}")
    detail = inputs[0]
    dtype = np.dtype(detail["dtype"]).name
    if dtype != "float32":
        raise ArtifactError(
            f"{path}: only FP32 .tflite models can be imported (this one takes {dtype}: it is already quantized); "
            "give the float model, edge-sdk quantizes it for each target"
        )
    signature = tuple(int(s) for s in detail.get("shape_signature", detail["shape"]))
    shape = (None, *_dims(signature[1:]))
    outputs = [d["index"] for d in interpreter.get_output_details()]

    def run(batch: np.ndarray) -> list[np.ndarray]:
        interpreter.resize_tensor_input(detail["index"], [1, *batch.shape[1:]])
        interpreter.allocate_tensors()
        rows: list[list[np.ndarray]] = [[] for _ in outputs]
        for image in batch:  # one at a time: a TFLite graph may fix its batch to 1
            interpreter.set_tensor(detail["index"], image[None].astype(np.float32))
            interpreter.invoke()
            for i, index in enumerate(outputs):
                rows[i].append(interpreter.get_tensor(index).copy())
        return [np.concatenate(r) for r in rows]

    def convert(input_name: str, opset: int) -> Any:
        del input_name  # from_tflite keeps the TFLite names; rename_io applies the card's
        onnx_model, _ = tf2onnx.convert.from_tflite(str(path), opset=opset)
        return onnx_model

    return _Loaded("TFLite model", shape, dtype, len(outputs), run, convert)


def load_tf_source(path: Path) -> _Loaded:
    """Load a Keras file, SavedModel folder or .tflite file (ArtifactError for anything else)."""
    if is_saved_model(path):
        return _load_saved_model(path)
    suffix = path.suffix.lower()
    if suffix in KERAS_SUFFIXES:
        return _load_keras(path)
    if suffix == TFLITE_SUFFIX:
        return _load_tflite(path)
    raise ArtifactError(
        f"{path}: not a Keras ({', '.join(KERAS_SUFFIXES)}), SavedModel folder or {TFLITE_SUFFIX} model"
    )


def tf_to_onnx(
    path: str | Path,
    card: ModelCard,
    out: str | Path,
    *,
    real: np.ndarray | None = None,
    opset: int = 17,
    tolerance: float | None = None,
) -> dict[str, float]:
    """Convert the Keras/SavedModel/TFLite model at ``path`` to the ONNX file ``out`` named and carded by
    ``card``; check it against the source on rendered, noise and ``real`` crops (BGR uint8).

    Returns the max abs difference per head. Raises ContractError when the card's input does not fit the
    model (size, channels, layout), ArtifactError when loading, conversion or the check fails.
    """
    import onnx

    from edge_sdk.backend.base import check_input
    from edge_sdk_export.onnx_card import set_card
    from edge_sdk_export.onnx_io import (
        MATCH_TOLERANCE,
        check_match,
        head_diffs,
        make_batch_dynamic,
        rename_io,
        run_onnx,
        verification_batch,
    )

    path, out = Path(path), Path(out)
    source = load_tf_source(path)
    check_input(card.input, source.input_shape, source.input_dtype, str(path), source.kind)
    names = list(card.output_tensors)
    if source.output_count != len(names):
        raise ArtifactError(
            f"{path}: the {source.kind} has {source.output_count} output(s) but the card's heads read "
            f"{len(names)} ({', '.join(names)}); give one head 'output' per model output, in model order"
        )
    logger.info("converting %s (%s) to ONNX with tf2onnx, opset %d", path.name, source.kind, opset)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = source.convert(card.input.name, opset)
    except ArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises anything from its op handlers
        raise ArtifactError(f"{path}: tf2onnx could not convert this {source.kind} ({_first_line(exc)})") from None
    rename_io(model, card.input.name, names)
    make_batch_dynamic(model)
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    set_card(model, card.with_changes(files={}))
    onnx.save(model, str(out))

    batch = verification_batch(card, real=real)
    diffs = head_diffs(card, source.run(batch), run_onnx(out, card, batch))
    on = "rendered, noise and real face crops" if real is not None and len(real) else "rendered and noise crops"
    check_match(
        diffs, f"{path.name} ({source.kind} -> ONNX)", card, MATCH_TOLERANCE if tolerance is None else tolerance, on
    )
    logger.info("%s -> %s; max |source - onnxruntime| per head: %s", path.name, out.name, diffs)
    return diffs
