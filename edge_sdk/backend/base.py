"""The backend interface every inference runtime implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from edge_sdk.contract.card import CHANNELS, InputSpec, ModelCard
from edge_sdk.contract.processing import HeadOutputs, check_batch, split_heads
from edge_sdk.errors import ContractError
from edge_sdk.targets import Target

QuantParams = tuple[float, int]
"""Per-tensor affine quantization ``(scale, zero_point)``: ``x = (q - zero_point) * scale``."""


@dataclass(frozen=True)
class BackendInfo:
    """What actually runs an artifact: shown by the CLI and recorded by benchmarks."""

    backend: str  # "onnxruntime" | "litert" | "openvino"
    runtime_version: str
    device: str  # e.g. "CPUExecutionProvider", "XNNPACK", "CPU"
    artifact: str
    precision: str  # from the card: fp32 | fp16 | int8
    input_dtype: str  # what the artifact's input tensor takes
    layout: str  # NCHW | NHWC, the artifact's input layout
    threads: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Backend(ABC):
    """Runs one artifact. ``run`` takes the NCHW float32 batch from
    :func:`edge_sdk.contract.processing.preprocess` and returns raw (pre-activation) head arrays,
    mapped by the card's output names. Layout and int8 (de)quantization are the backend's job;
    activations and PSPI are not (see :func:`edge_sdk.contract.processing.postprocess`).
    """

    name: str = ""

    def __init__(self, path: Path, card: ModelCard) -> None:
        self.path = path
        self.card = card

    @property
    @abstractmethod
    def info(self) -> BackendInfo:
        """What is running this artifact."""

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run a validated NCHW float32 batch; return float32 output tensors by name."""

    def run(self, batch: np.ndarray) -> HeadOutputs:
        """Raw head outputs for a preprocessed batch, one row per face."""
        batch = check_batch(batch, self.card.input)
        return split_heads(self.card, self._infer(batch))

    @classmethod
    def options_for(cls, target: Target, threads: int | None, device: str | None) -> dict[str, Any]:
        """Constructor options that run ``target``'s artifact here (how ``benchmark`` loads it)."""
        return {"threads": threads}

    @classmethod
    def runtime_details(cls) -> str:
        """What the installed runtime offers on this machine (providers, devices), for ``doctor``; '' if nothing."""
        return ""

    def _prepare_input(self, batch: np.ndarray, dtype: DTypeLike, quant: QuantParams | None = None) -> np.ndarray:
        """``batch`` as this artifact's input tensor: the card's layout, and for an integer ``dtype``
        quantized with ``quant`` (the artifact's own parameters, where it records them) or else the card's.
        """
        spec = self.card.input
        return prepare_input(batch, spec.layout, dtype, card_quant(spec) if quant is None else quant, str(self.path))


def check_input(
    spec: InputSpec, shape: Sequence[int | None], dtype: DTypeLike, source: str, model_kind: str = "model"
) -> None:
    """The model's real input must be what the card says, checked at load rather than at the first frame.

    ``shape`` is the model's input shape, None for a dynamic axis (not checked; the batch axis never is);
    ``dtype`` its element type. A 4-D input of the card's size in the other layout is an ``input.layout``
    error, one of the card's size and layout but another channel count an ``input.channels`` error, any
    other shape an ``input.size`` error; ``model_kind`` is what the message calls the model (".tflite").
    """
    dims = tuple(shape)
    expected = spec.shape[1:]

    def fits(wanted: tuple[int, ...]) -> bool:
        return len(dims) == 4 and all(d is None or d == w for d, w in zip(dims[1:], wanted, strict=True))

    if not fits(expected):
        field = _input_field(spec, fits)
        shown = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
        card = f"{spec.layout} {list(expected)} (size {spec.height}x{spec.width})"
        raise ContractError(field, f"card says {card}, the {model_kind} input is {shown}", source)
    if np.dtype(dtype).name != spec.dtype:
        raise ContractError(
            "input.dtype", f"card says {spec.dtype}, the {model_kind} input is {np.dtype(dtype).name}", source
        )


def _input_field(spec: InputSpec, fits: Callable[[tuple[int, ...]], bool]) -> str:
    """The card field a model input shape that does not ``fit`` ``spec`` contradicts."""
    other_layout = replace(spec, layout="NHWC" if spec.layout == "NCHW" else "NCHW")
    if fits(other_layout.shape[1:]):
        return "input.layout"
    for layout in (spec.layout, other_layout.layout):
        if any(fits(replace(spec, layout=layout, channels=c).shape[1:]) for c in CHANNELS if c != spec.channels):
            return "input.channels"
    return "input.size"


def to_layout(batch: np.ndarray, layout: str) -> np.ndarray:
    """An NCHW batch in ``layout`` (NCHW or NHWC), as a view."""
    return batch if layout == "NCHW" else batch.transpose(0, 2, 3, 1)


def card_quant(spec: InputSpec) -> QuantParams | None:
    """The card's input quantization, or None when the card gives none (float inputs)."""
    if spec.scale is None or spec.zero_point is None:
        return None
    return spec.scale, spec.zero_point


def prepare_input(
    batch: np.ndarray,
    layout: str,
    dtype: DTypeLike,
    quant: QuantParams | None = None,
    source: str | None = None,
) -> np.ndarray:
    """What a model file takes, from the NCHW float32 batch of :func:`edge_sdk.contract.processing.preprocess`.

    The batch is put in ``layout``; an integer ``dtype`` (int8/uint8) is quantized with ``quant`` and
    saturated to the dtype's range, a float one is cast. The result is C-contiguous. ``source`` names the
    artifact in the error raised when an integer input has no quantization parameters.
    """
    x = to_layout(batch, layout)
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        if quant is None:
            problem = f"the model takes {dtype.name} input but no scale/zero_point is given"
            raise ContractError("input.scale", problem, source)
        x = quantize(x, *quant, dtype)
    return np.ascontiguousarray(x, dtype=dtype)


def output_to_float(value: np.ndarray, quant: QuantParams | None = None) -> np.ndarray:
    """A model output as float32: dequantized with ``quant`` when the tensor is quantized, else cast."""
    if quant is not None:
        return dequantize(value, *quant)
    return value.astype(np.float32, copy=False)


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """Affine-quantize float ``x`` to an integer dtype with saturation."""
    info = np.iinfo(dtype)
    q = np.round(x / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Inverse of :func:`quantize`, to float32."""
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)
