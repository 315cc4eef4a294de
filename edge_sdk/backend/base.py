"""The backend interface every inference runtime implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.processing import HeadOutputs, check_batch, split_heads


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


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """Affine-quantize float ``x`` to an integer dtype with saturation."""
    info = np.iinfo(dtype)
    q = np.round(x / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Inverse of :func:`quantize`, to float32."""
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)
