"""A model file's own inputs and outputs, read with its runtime: what ``edge-sdk card`` checks a card
against and what ``edge-sdk card init`` drafts a card from.

:func:`read_model_io` reads ``.onnx`` (ONNX Runtime, in the base install), ``.tflite`` (LiteRT) and
OpenVINO ``.xml`` files without a card. :func:`check_card_fits` names the card field that disagrees with
the file (input name, shape in the card's layout and channels, dtype, output names and widths);
:func:`draft_card` writes a contract-1.1 card for the user to complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.backend.base import QuantParams, check_input
from edge_sdk.contract.card import CHANNELS, CONTRACT_VERSION, CropSpec, InputSpec, ModelCard
from edge_sdk.errors import ArtifactError, ContractError

log = logging.getLogger(__name__)

DRAFT_SIZE = 112  # input side a draft card gets when the model leaves it dynamic
DRAFT_TODO = (
    "DRAFT written by 'edge-sdk card init' from {file}: TODO check everything. Each head's kind "
    "('expression') and labels ('class0'...) are placeholders; set kind, labels and activation per head, "
    "and input mean/std/color_order/crop to what the model was trained with."
)


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output: its name(s), shape (None for a dynamic axis), dtype and int quantization."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str  # numpy dtype name: float32, float16, int8, uint8...
    quant: QuantParams | None = None  # (scale, zero_point) of a quantized tensor (LiteRT records it)
    aliases: tuple[str, ...] = ()  # other names of the same tensor (OpenVINO ports carry several)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class ModelIO:
    """What a model file takes and returns, in its own order."""

    path: Path
    kind: str  # ".onnx", ".tflite" or "OpenVINO model": how error messages call the file
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


def read_model_io(path: str | Path) -> ModelIO:
    """The inputs and outputs of the model file at ``path`` (ArtifactError for other files,
    BackendUnavailableError when the format's runtime is not installed)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: model file not found")
    readers = {".onnx": _onnx_io, ".tflite": _tflite_io, ".xml": _openvino_io}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise ArtifactError(f"{path}: not a model file (expected {', '.join(readers)})")
    return reader(path)


def _onnx_io(path: Path) -> ModelIO:
    from edge_sdk.backend.onnxruntime_backend import _ORT_TYPES, _dims, open_session

    session = open_session(path, threads=1, providers=["CPUExecutionProvider"], optimize=False)
    try:

        def info(arg: Any) -> TensorInfo:  # arg: onnxruntime.NodeArg
            dtype = _ORT_TYPES.get(arg.type)
            return TensorInfo(arg.name, _dims(arg.shape), np.dtype(dtype).name if dtype else str(arg.type))

        inputs = tuple(info(a) for a in session.get_inputs())
        outputs = tuple(info(a) for a in session.get_outputs())
    except UnicodeDecodeError as exc:
        raise ArtifactError(
            f"{path}: not a readable ONNX model (a name in its graph is not UTF-8, {exc.reason})"
        ) from None
    return ModelIO(path, ".onnx", inputs, outputs)


def _tflite_io(path: Path) -> ModelIO:
    from edge_sdk.backend.litert_backend import _interpreter_module, tensor_quant

    module, _, _ = _interpreter_module()
    try:
        interpreter = module.Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{path}: not a readable TFLite model: {str(exc).strip()[:300]}") from None

    def info(detail: dict[str, Any]) -> TensorInfo:
        shape = tuple(int(s) for s in detail.get("shape_signature", detail["shape"]))
        dims = tuple(None if s < 0 else s for s in shape)
        return TensorInfo(detail["name"], dims, np.dtype(detail["dtype"]).name, tensor_quant(detail))

    inputs = tuple(info(d) for d in interpreter.get_input_details())
    outputs = tuple(info(d) for d in interpreter.get_output_details())
    return ModelIO(path, ".tflite", inputs, outputs)


def _openvino_io(path: Path) -> ModelIO:
    from edge_sdk.backend.openvino_backend import _OV_TYPES, _first_line, _openvino

    try:
        model = _openvino().Core().read_model(str(path))
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses without a common base
        raise ArtifactError(f"{path}: not a readable OpenVINO model: {_first_line(exc)}") from None

    def info(port: Any) -> TensorInfo:  # port: openvino.Output
        shape = port.get_partial_shape()
        dims = () if shape.rank.is_dynamic else tuple(d.get_length() if d.is_static else None for d in shape)
        dtype = _OV_TYPES.get(port.get_element_type().get_type_name(), np.float32)
        names = sorted(port.get_names())
        first = port.get_any_name() if names else ""
        return TensorInfo(first, dims, np.dtype(dtype).name, aliases=tuple(n for n in names if n != first))

    return ModelIO(path, "OpenVINO model", tuple(info(p) for p in model.inputs), tuple(info(p) for p in model.outputs))


def _tf_name(name: str) -> str:
    """A TFLite tensor name without what TensorFlow's converter adds: ``serving_default_x:0`` -> ``x``."""
    return name.removeprefix("serving_default_").split(":")[0]


def check_card_fits(card: ModelCard, io: ModelIO, source: str | None = None) -> None:
    """ContractError naming the card field that disagrees with the model file: ``input.name`` (the file
    has no such input), ``input.layout``/``input.size`` (shape in the card's layout and ``input.channels``),
    ``input.dtype``, a head's ``output`` or ``labels``."""
    source = source or str(io.path)
    if len(io.inputs) != 1:
        raise ArtifactError(f"{io.path}: expected one image input, the model has {len(io.inputs)}")
    model_input = io.inputs[0]
    names = model_input.names
    if io.kind == ".tflite":  # TensorFlow's converter prefixes/suffixes the names it was given
        names = (*names, *(_tf_name(n) for n in names))
    if card.input.name not in names:
        problem = f"the {io.kind} has no input {card.input.name!r}; its input is {model_input.name!r}"
        raise ContractError("input.name", problem, source)
    shape = model_input.shape or (None,) * 4
    check_input(card.input, shape, np.dtype(model_input.dtype), source, io.kind)
    outputs = {name: o.shape for o in io.outputs for name in o.names}
    card.check_outputs(outputs, source)


def _input_geometry(info: TensorInfo, source: str) -> tuple[str, int, int, int]:
    """(layout, channels, height, width) guessed from a 4-D input shape: channels-last when the last axis
    is 1 or 3 and axis 1 is not."""
    if len(info.shape) != 4:
        raise ContractError("input", f"expected a 4-D image input, {info.name!r} has shape {list(info.shape)}", source)
    _, a, b, c = info.shape
    if c in CHANNELS and a not in CHANNELS:
        layout, channels, height, width = "NHWC", c, a, b
    else:
        layout, channels, height, width = "NCHW", a, b, c
    if channels not in CHANNELS:
        shown = "dynamic" if channels is None else channels
        raise ContractError(
            "input.channels", f"the model input {info.name!r} has {shown} channels; expected 1 or 3", source
        )
    return layout, int(channels), int(height or DRAFT_SIZE), int(width or DRAFT_SIZE)


def _draft_input(info: TensorInfo, source: str) -> dict[str, Any]:
    layout, channels, height, width = _input_geometry(info, source)
    data: dict[str, Any] = {
        "name": info.name,
        "size": [height, width],
        "layout": layout,
        "channels": channels,
        "color_order": "GRAY" if channels == 1 else "RGB",
        "mean": [0.0] * channels,
        "std": [1.0] * channels,
        "dtype": info.dtype if info.dtype in ("float32", "float16", "int8", "uint8") else "float32",
        "crop": CropSpec().to_dict(),
    }
    if data["dtype"] in ("int8", "uint8"):
        scale, zero_point = info.quant or (1.0 / 255.0, 0 if data["dtype"] == "uint8" else -128)
        data.update(scale=float(scale), zero_point=int(zero_point))
    return data


def _draft_head(info: TensorInfo) -> dict[str, Any]:
    width = info.shape[-1] if info.shape else None
    count = width if isinstance(width, int) and width > 0 else 1
    return {
        "name": info.name,
        "kind": "expression",
        "labels": [f"class{i}" for i in range(count)],
        "activation": "none",
        "output": info.name,
    }


def draft_card(io: ModelIO) -> ModelCard:
    """A contract-1.1 card drafted from the file's own input and outputs, for the user to complete: input
    name, size, layout and channels from the input shape, GRAY for 1 channel and RGB for 3, neutral mean/std,
    the default crop, and one head per output with placeholder labels of the output's width."""
    source = str(io.path)
    if len(io.inputs) != 1:
        raise ArtifactError(f"{io.path}: expected one image input, the model has {len(io.inputs)}")
    if not io.outputs:
        raise ArtifactError(f"{io.path}: the model has no outputs")
    data = {
        "contract_version": CONTRACT_VERSION,
        "name": io.path.stem,
        "description": DRAFT_TODO.format(file=io.path.name),
        "input": _draft_input(io.inputs[0], source),
        "heads": [_draft_head(o) for o in io.outputs],
        "provenance": {"source": io.path.name, "synthetic_demo": False},
        "export": {"precision": "int8" if io.inputs[0].dtype in ("int8", "uint8") else "fp32"},
    }
    card = ModelCard.from_dict(data, f"{source} (draft card)")
    unknown = [o.name for o in io.outputs if not (o.shape and isinstance(o.shape[-1], int))]
    if unknown:
        log.warning("outputs %s have a dynamic last axis: their label counts are placeholders", unknown)
    return card


def input_spec_summary(spec: InputSpec) -> str:
    """One line describing a card's input, for the CLI."""
    return (
        f"input {spec.name!r} {spec.layout} {spec.channels}x{spec.height}x{spec.width} {spec.color_order} "
        f"{spec.dtype}, crop {spec.crop.method}"
    )


__all__ = ["ModelIO", "TensorInfo", "check_card_fits", "draft_card", "input_spec_summary", "read_model_io"]
