"""Typed per-frame results and their JSON-able records (numbers and labels only, never pixels)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from edge_sdk.face.detect import Face
from edge_sdk.pipeline.alerts import PainStatus

STAGES = ("decode", "detect", "align", "infer", "post", "sink")


@dataclass(frozen=True)
class FaceResult:
    """One analysed face: where it is, how it was cropped, and every head as {label: value}.

    ``heads`` maps head name -> {label: value}; ``kinds`` maps head name -> head kind from the card
    (au_occurrence, au_intensity, expression, valence_arousal).
    """

    face: Face
    crop: str  # "aligned" | "box"
    heads: dict[str, dict[str, float]]
    kinds: dict[str, str]
    pspi: float | None = None  # None: no pain head, or outputs that cannot be scored (``problem``)
    problem: str | None = None  # non-finite or out-of-range outputs: this face is not scored

    def head_of_kind(self, kind: str) -> dict[str, float] | None:
        """The first head of ``kind`` (e.g. ``"expression"``), or None if the model has none."""
        return next((self.heads[name] for name, k in self.kinds.items() if k == kind), None)

    @property
    def au_probabilities(self) -> dict[str, float] | None:
        return self.head_of_kind("au_occurrence")

    @property
    def au_intensities(self) -> dict[str, float] | None:
        return self.head_of_kind("au_intensity")

    @property
    def expression(self) -> dict[str, float] | None:
        return self.head_of_kind("expression")

    @property
    def valence_arousal(self) -> dict[str, float] | None:
        return self.head_of_kind("valence_arousal")

    def to_record(self) -> dict[str, Any]:
        """Numbers and labels only; a non-finite value is recorded as null (JSON has no NaN)."""
        record = {**self.face.to_record(), "crop": self.crop}
        record.update({name: {k: _finite(v) for k, v in values.items()} for name, values in self.heads.items()})
        record["pspi"] = None if self.pspi is None else round(self.pspi, 4)
        if self.problem is not None:
            record["fault"] = self.problem
        return record


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class FrameResult:
    """Everything the pipeline knows after one frame. ``faces`` is largest first (``faces[0]`` drives pain)."""

    index: int
    timestamp: float  # monotonic capture time
    media_time: float | None
    faces: tuple[FaceResult, ...]
    pain: PainStatus
    latency_ms: dict[str, float] = field(default_factory=dict)
    detector_ran: bool = True

    @property
    def face_found(self) -> bool:
        return bool(self.faces)

    def to_record(self) -> dict[str, Any]:
        return {
            "frame": self.index,
            "timestamp": round(self.timestamp, 6),
            "media_time": None if self.media_time is None else round(self.media_time, 4),
            "faces": [f.to_record() for f in self.faces],
            "detector_ran": self.detector_ran,
            **self.pain.to_record(),
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
        }
