"""Pre- and post-processing shared by every backend: the one place activations and PSPI live."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edge_sdk.contract.card import PSPI_AUS, HeadSpec, InputSpec, ModelCard
from edge_sdk.errors import InputError

# Result of a model on a batch: head name -> array with one row per face.
HeadOutputs = dict[str, np.ndarray]


def check_face_crop(image: np.ndarray, what: str = "face crop") -> None:
    """Raise InputError unless ``image`` is an HxWx3 uint8 BGR image."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{what}: expected a numpy array (H x W x 3, uint8 BGR), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"{what}: expected dtype uint8 (H x W x 3 BGR), got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 8 or image.shape[1] < 8:
        raise InputError(f"{what}: expected shape (H, W, 3) with H, W >= 8, got {image.shape}")


def preprocess(crops: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Turn BGR uint8 face crops into the model's float32 batch, always NCHW: (N, spec.channels, H, W).

    Crops are resized to the input size, put in ``spec.color_order`` (a 1-channel ``GRAY`` input takes
    OpenCV's BGR->gray luma) and normalised: ``(pixel / 255 - mean) / std`` per channel. Backends whose
    artifact is NHWC or integer transpose/quantize this batch themselves, so every backend takes the same
    input and results can be compared directly.
    """
    if len(crops) == 0:
        raise InputError("preprocess: got no face crops")
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    batch = np.empty((len(crops), spec.channels, spec.height, spec.width), np.float32)
    for i, crop in enumerate(crops):
        check_face_crop(crop, f"face crop {i}")
        pixels = _in_color_order(_resized(crop, spec), spec.color_order)
        x = (pixels.astype(np.float32) * (1.0 / 255.0) - mean) / std
        batch[i] = x.transpose(2, 0, 1)
    return batch


def _resized(crop: np.ndarray, spec: InputSpec) -> np.ndarray:
    """``crop`` at the input size (area interpolation when shrinking)."""
    if crop.shape[:2] == (spec.height, spec.width):
        return crop
    interp = cv2.INTER_AREA if crop.shape[0] > spec.height else cv2.INTER_LINEAR
    return cv2.resize(crop, (spec.width, spec.height), interpolation=interp)


def _in_color_order(crop: np.ndarray, color_order: str) -> np.ndarray:
    """A BGR crop as H x W x C in ``color_order``: RGB reversed, BGR as is, GRAY as one luma channel."""
    if color_order == "GRAY":
        return cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)[:, :, None]
    if color_order == "RGB":
        return crop[:, :, ::-1]
    return crop


def check_batch(batch: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Validate a preprocessed NCHW float32 batch of ``spec.channels`` channels; returns it C-contiguous."""
    expected = (spec.channels, spec.height, spec.width)
    if not isinstance(batch, np.ndarray) or batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
        shape = getattr(batch, "shape", None)
        raise InputError(
            f"model input: expected a float32 batch of shape (N, {spec.channels}, {spec.height}, {spec.width}) "
            f"({spec.channels}-channel {spec.color_order}), got {shape}"
        )
    if batch.dtype != np.float32:
        raise InputError(f"model input: expected dtype float32, got {batch.dtype}")
    return np.ascontiguousarray(batch)


def split_heads(card: ModelCard, tensors: dict[str, np.ndarray]) -> HeadOutputs:
    """Map model output tensors to raw head arrays using the card (never output order)."""
    out: HeadOutputs = {}
    for head in card.heads:
        x = np.asarray(tensors[head.tensor], np.float32)
        x = x.reshape(x.shape[0], -1)
        if head.columns is not None:
            x = x[:, head.columns[0] : head.columns[1]]
        out[head.name] = x
    return out


def _activate(x: np.ndarray, head: HeadSpec) -> np.ndarray:
    if head.activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if head.activation == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if head.activation == "tanh":
        return np.tanh(x)
    if head.activation == "clamp":
        assert head.clamp is not None
        return np.clip(x, head.clamp[0], head.clamp[1])
    return x


def pspi(au_intensity: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """PSPI = AU4 + max(AU6, AU7) + max(AU9, AU10) + AU43, per row, in [0, 16].

    AU4/6/7/9/10 are 0-5 intensities. AU43 (eyes closed) is binary in PSPI; we use the model's
    AU43 intensity clipped to [0, 1] so the score stays continuous for smoothing.
    """
    idx = {label: i for i, label in enumerate(labels)}
    missing = [au for au in PSPI_AUS if au not in idx]
    if missing:
        raise InputError(f"PSPI needs AU intensities for {', '.join(missing)}")
    a = np.clip(np.asarray(au_intensity, np.float32), 0.0, 5.0)

    def col(au: str) -> np.ndarray:
        return a[:, idx[au]]

    score = (
        col("AU4")
        + np.maximum(col("AU6"), col("AU7"))
        + np.maximum(col("AU9"), col("AU10"))
        + np.clip(col("AU43"), 0.0, 1.0)
    )
    return score.astype(np.float32)


def postprocess(card: ModelCard, raw: HeadOutputs) -> HeadOutputs:
    """Apply each head's activation; add ``pspi`` when the card has the PSPI action units."""
    out = {head.name: _activate(raw[head.name], head).astype(np.float32) for head in card.heads}
    if card.has_pain:
        intensity = card.head("au_intensity")
        assert intensity is not None
        out["pspi"] = pspi(out[intensity.name], intensity.labels)
    return out


def describe_face(card: ModelCard, outputs: HeadOutputs, row: int = 0) -> dict[str, object]:
    """One face's post-processed outputs as {head: {label: value}} (plus ``pspi``), for printing/logging."""
    result: dict[str, object] = {}
    for head in card.heads:
        values = outputs[head.name][row]
        result[head.name] = {label: round(float(v), 4) for label, v in zip(head.labels, values, strict=True)}
    if "pspi" in outputs:
        result["pspi"] = round(float(outputs["pspi"][row]), 4)
    return result
