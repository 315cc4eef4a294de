"""Which faces to analyse when several are visible, and reuse of detections between frames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_sdk.errors import InputError
from edge_sdk.face.detect import Face, FaceDetector

FACE_POLICIES = ("largest", "all")


def select_faces(faces: Sequence[Face], policy: str = "largest") -> list[Face]:
    """``largest``: the biggest face only (at a bedside, the patient); ``all``: every face, largest first."""
    if policy not in FACE_POLICIES:
        raise InputError(f"faces policy {policy!r}: expected one of {', '.join(FACE_POLICIES)}")
    ordered = sorted(faces, key=lambda f: f.area, reverse=True)
    return ordered[:1] if policy == "largest" else ordered


class IntervalDetector:
    """Runs the detector every ``interval`` frames while faces are found and reuses the last faces in between.

    When the last detection found nothing it detects on every frame, so a returning face is picked up at once.
    A patient in bed moves little between frames; at 15-30 FPS an interval of 2-3 costs little accuracy.
    """

    def __init__(self, detector: FaceDetector, interval: int = 1) -> None:
        if interval < 1:
            raise InputError(f"detect interval {interval}: expected an integer >= 1")
        self.detector = detector
        self.interval = interval
        self._last: list[Face] = []
        self._age = 0

    def detect(self, image: np.ndarray) -> tuple[list[Face], bool]:
        """(faces, whether the detector actually ran on this frame)."""
        if self._last and self._age < self.interval - 1:
            self._age += 1
            return list(self._last), False
        self._last = self.detector.detect(image)
        self._age = 0
        return list(self._last), True

    def reset(self) -> None:
        """Forget the last faces (and what a tracking detector tracks): the next frame runs the detector."""
        self._last, self._age = [], 0
        reset = getattr(self.detector, "reset", None)
        if callable(reset):
            reset()
