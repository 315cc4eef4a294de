"""Region-of-interest face tracking: detect in a small crop around each tracked face, full frame only when needed.

After a full-frame detection, the next frames are searched only in a crop around each tracked face (its box
grown by ``margin`` of its size on every side), resized so that the face is about ``face_px`` pixels: YuNet
then runs on a tiny image, and every frame still gets fresh boxes and landmarks (no stale crops when the head
moves). A face the crop no longer holds triggers a full-frame detection on that same frame; a full-frame
detection also runs every ``full_every`` detector runs, so new faces, and a larger face entering for the
``largest`` policy, are found within that many frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_sdk.errors import InputError
from edge_sdk.face.detect import Face, FaceDetector, YuNetDetector

MIN_IOU = 0.3  # a crop's detection is the tracked face when its box overlaps the previous one at least this much
MIN_CROP_PX = 8  # a tracked box (nearly) outside the frame: detect on the full frame instead
SAME_FACE_IOU = 0.5  # two tracked faces whose boxes overlap this much have merged into one


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def shifted(face: Face, dx: float, dy: float) -> Face:
    """``face`` moved by (dx, dy) pixels: a crop's coordinates -> the frame's."""
    x, y, w, h = face.box
    landmarks = None if face.landmarks is None else face.landmarks + np.array([dx, dy], np.float32)
    return Face((x + dx, y + dy, w, h), face.score, landmarks)


@dataclass(frozen=True)
class TrackSettings:
    """How :class:`RoiTracker` searches: the face's size in the detector input (pixels), the crop margin (a
    fraction of the face's larger side, on every side) and the detector runs between full-frame detections."""

    face_px: int = 64
    margin: float = 0.5
    full_every: int = 30

    def __post_init__(self) -> None:
        if not (isinstance(self.face_px, int) and 16 <= self.face_px <= 640):
            raise InputError(f"track face_px {self.face_px!r}: expected an integer in [16, 640] (pixels)")
        if not 0.1 <= self.margin <= 4.0:
            raise InputError(f"track margin {self.margin!r}: expected a number in [0.1, 4] (fraction of the face)")
        if not (isinstance(self.full_every, int) and self.full_every >= 1):
            raise InputError(f"track full_every {self.full_every!r}: expected an integer >= 1 (detector runs)")


class RoiTracker(FaceDetector):
    """Wraps a :class:`YuNetDetector`; ``detect(image)`` gives fresh faces of every frame (frame coordinates).

    ``policy`` ``largest`` tracks only the largest face of each full-frame detection (the one that is
    analysed); ``all`` tracks every face. A full-frame detection is also made when the crops together would
    cost as much as the full frame (many or very large faces). ``full_runs``/``roi_runs`` count both kinds.
    """

    name = "yunet-tracked"

    def __init__(self, detector: YuNetDetector, policy: str = "largest", settings: TrackSettings | None = None) -> None:
        settings = settings or TrackSettings()
        self.detector = detector
        self.policy = policy
        self.settings = settings
        self.face_px = settings.face_px
        self.margin = settings.margin
        self.full_every = settings.full_every
        self._tracked: list[Face] = []
        self._since_full = 0
        self.full_runs = 0
        self.roi_runs = 0

    @property
    def description(self) -> str:
        return (
            f"{self.detector.description}; tracked in crops (face ~{self.face_px} px, margin {self.margin:g}), "
            f"full frame every {self.full_every} runs"
        )

    def reset(self) -> None:
        self._tracked, self._since_full = [], 0

    def detect(self, image: np.ndarray) -> list[Face]:
        if not self._tracked or self._since_full >= self.full_every - 1:
            return self._full(image)
        plans = [self._plan(face, image.shape[1], image.shape[0]) for face in self._tracked]
        full_cost = (image.shape[1] * self.detector.scale) * (image.shape[0] * self.detector.scale)
        degenerate = any(x1 - x0 < MIN_CROP_PX or y1 - y0 < MIN_CROP_PX for x0, y0, x1, y1, *_ in plans)
        if degenerate or sum(cost for *_, cost in plans) >= full_cost:
            return self._full(image)
        found: list[Face] = []
        for previous, (x0, y0, x1, y1, scale, _) in zip(self._tracked, plans, strict=True):
            faces = self.detector.detect_scaled(image[y0:y1, x0:x1], scale)
            self.roi_runs += 1
            best = max(faces, key=lambda f: box_iou(shifted(f, x0, y0).box, previous.box), default=None)
            if best is None or box_iou(shifted(best, x0, y0).box, previous.box) < MIN_IOU:
                return self._full(image)  # lost (or jumped): look everywhere, on this same frame
            face = shifted(best, x0, y0)
            if all(box_iou(face.box, other.box) < SAME_FACE_IOU for other in found):
                found.append(face)
        self._tracked = found
        self._since_full += 1
        return list(found)

    def _full(self, image: np.ndarray) -> list[Face]:
        faces = self.detector.detect(image)
        self.full_runs += 1
        self._since_full = 0
        ordered = sorted(faces, key=lambda f: f.area, reverse=True)
        self._tracked = ordered[:1] if self.policy == "largest" else ordered
        return faces

    def _plan(self, face: Face, width: int, height: int) -> tuple[int, int, int, int, float, float]:
        """Crop (x0, y0, x1, y1), the scale that brings the face to ~face_px, and the detector input pixels."""
        x, y, w, h = face.box
        grow = self.margin * max(w, h)
        x0, y0 = max(0, math.floor(x - grow)), max(0, math.floor(y - grow))
        x1, y1 = min(width, math.ceil(x + w + grow)), min(height, math.ceil(y + h + grow))
        scale = min(1.0, self.face_px / max(1.0, max(w, h)))
        return x0, y0, x1, y1, scale, (x1 - x0) * scale * (y1 - y0) * scale


def tracking_detector(detector: FaceDetector, policy: str, settings: TrackSettings | None) -> FaceDetector:
    """``detector`` wrapped in a :class:`RoiTracker` when ``settings`` is given and it is YuNet (Haar and
    ``none`` have nothing to gain: they are returned as they are)."""
    if settings is None or not isinstance(detector, YuNetDetector):
        return detector
    return RoiTracker(detector, policy, settings)
