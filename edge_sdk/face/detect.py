"""Face detectors: YuNet (cv2.FaceDetectorYN) when its model is available, else OpenCV's Haar cascade.

Every detector returns :class:`Face` objects in the coordinates of the image it was given.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_sdk.errors import ArtifactError, InputError
from edge_sdk.models_registry import REGISTRY, digest_file, find_pulled_model

YUNET_REGISTRY_NAME = "yunet"
#: Models shipped inside the package (release wheels; gitignored in the repository): see scripts/vendor-models.py.
PACKAGED_MODELS_DIR = Path(__file__).resolve().parent / "models"
HAAR_CASCADE_FILE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class Face:
    """A detected face: ``box`` = (x, y, w, h) in frame pixels; ``landmarks`` = 5x2 (eyes, nose, mouth corners)
    in ArcFace order (subject's right eye first, i.e. the left one in the image), or None."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    def scaled(self, factor: float) -> Face:
        """The same face in an image ``factor`` times larger."""
        landmarks = None if self.landmarks is None else self.landmarks * factor
        return Face(tuple(v * factor for v in self.box), self.score, landmarks)  # type: ignore[arg-type]

    def scaled_xy(self, fx: float, fy: float) -> Face:
        """The same face in an image ``fx`` times wider and ``fy`` times taller (rounded resize sizes)."""
        x, y, w, h = self.box
        landmarks = None if self.landmarks is None else self.landmarks * np.array([fx, fy], np.float32)
        return Face((x * fx, y * fy, w * fx, h * fy), self.score, landmarks)

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"box": [round(float(v), 1) for v in self.box], "score": round(self.score, 4)}
        if self.landmarks is not None:
            record["landmarks"] = [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks]
        return record


class FaceDetector(ABC):
    """``detect(bgr_image) -> [Face]`` plus a human-readable ``description``."""

    name: str = ""

    @property
    def description(self) -> str:
        return self.name

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in a BGR uint8 image."""


class YuNetDetector(FaceDetector):
    """cv2.FaceDetectorYN. ``scale`` < 1 detects on a downscaled copy (much faster; coordinates are mapped back)."""

    name = "yunet"

    def __init__(
        self, model_path: str | Path, score_threshold: float = 0.6, nms_threshold: float = 0.3, scale: float = 1.0
    ) -> None:
        if not 0.05 <= scale <= 1.0:
            raise InputError(f"detector scale {scale}: expected a number in [0.05, 1]")
        self.model_path = Path(model_path)
        self.scale = scale
        self._size = (320, 320)
        logging = cv2.utils.logging
        level = logging.getLogLevel()
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)  # OpenCV 5 warns about DNN targets on every create
        try:
            self._detector = cv2.FaceDetectorYN.create(
                str(self.model_path), "", self._size, score_threshold, nms_threshold
            )
        except cv2.error as exc:
            raise InputError(f"{model_path}: not a usable YuNet model ({str(exc).strip()[:200]})") from None
        finally:
            logging.setLogLevel(level)

    @property
    def description(self) -> str:
        return f"yunet ({self.model_path.name}, detect scale {self.scale:g})"

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detect_scaled(image, self.scale)

    def detect_scaled(self, image: np.ndarray, scale: float, interpolation: int | None = None) -> list[Face]:
        """Faces in ``image`` (coordinates of ``image``), detected on a copy resized by ``scale``.

        ``interpolation`` defaults to area averaging for whole-frame scales and to bilinear for the odd factors
        of tracker crops (OpenCV's area resize is ~5x slower off its integer-factor fast path)."""
        h, w = image.shape[:2]
        small = image
        if scale != 1.0:
            size = (max(16, round(w * scale)), max(16, round(h * scale)))
            if interpolation is None:
                interpolation = cv2.INTER_AREA if scale == self.scale else cv2.INTER_LINEAR
            small = cv2.resize(image, size, interpolation=interpolation)
        size = (small.shape[1], small.shape[0])
        if size != self._size:
            self._detector.setInputSize(size)
            self._size = size
        _, rows = self._detector.detect(small)
        if rows is None:
            return []
        factor_x, factor_y = w / small.shape[1], h / small.shape[0]
        faces = []
        for row in np.asarray(rows, np.float32):
            face = Face(tuple(float(v) for v in row[:4]), float(row[14]), row[4:14].reshape(5, 2).copy())  # type: ignore[arg-type]
            faces.append(face if small is image else face.scaled_xy(factor_x, factor_y))
        return faces


class HaarDetector(FaceDetector):
    """OpenCV's bundled frontal-face Haar cascade: no landmarks, so crops are box crops."""

    name = "haar"

    def __init__(self, min_size: int = 40) -> None:
        path = haar_cascade_path()
        if path is None:
            raise InputError(
                "this OpenCV build has no Haar cascades (OpenCV 5 dropped CascadeClassifier and its data files)"
            )
        self._cascade = cv2.CascadeClassifier(str(path))
        self.min_size = min_size

    def detect(self, image: np.ndarray) -> list[Face]:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        boxes = self._cascade.detectMultiScale(gray, 1.1, 5, minSize=(self.min_size, self.min_size))
        return [Face(tuple(float(v) for v in box), 1.0) for box in boxes]  # type: ignore[arg-type]


class WholeImageDetector(FaceDetector):
    """Treats the whole image as one face: for inputs that are already face crops."""

    name = "none"

    @property
    def description(self) -> str:
        return "none (the whole image is the face)"

    def detect(self, image: np.ndarray) -> list[Face]:
        return [Face((0.0, 0.0, float(image.shape[1]), float(image.shape[0])), 1.0)]


def haar_cascade_path() -> Path | None:
    """The bundled frontal-face cascade, when this OpenCV has CascadeClassifier and the data files."""
    if not hasattr(cv2, "CascadeClassifier"):
        return None
    data = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(data) / HAAR_CASCADE_FILE if data else None
    return path if path is not None and path.is_file() else None


def packaged_yunet_model() -> Path | None:
    """YuNet shipped inside the package (``edge_sdk/face/models/``, placed by ``scripts/vendor-models.py`` before
    a release wheel is built), verified against the registry's sha256; None in a checkout or wheel without it.

    Raises :class:`~edge_sdk.errors.ArtifactError` when the file is there but is not the pinned model."""
    entry = REGISTRY[YUNET_REGISTRY_NAME]
    path = PACKAGED_MODELS_DIR / entry.filename
    if not path.is_file():
        return None
    digest = digest_file(path).sha256
    if digest != entry.sha256:
        raise ArtifactError(
            f"{path}: sha256 {digest} is not the pinned YuNet {entry.sha256}; this installation is damaged or "
            "was altered: reinstall edge-sdk (or pass --detector-model PATH)"
        )
    return path


def find_yunet_model(explicit: str | Path | None = None) -> Path | None:
    """``explicit`` (must exist), else the YuNet packaged with edge-sdk (:func:`packaged_yunet_model`), else the
    one in the model cache (`edge-sdk models pull yunet`), else None."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise InputError(f"--detector-model {explicit}: no such file")
        return path
    return packaged_yunet_model() or find_pulled_model(YUNET_REGISTRY_NAME)


def create_detector(
    kind: str = "auto",
    model_path: str | Path | None = None,
    score_threshold: float = 0.6,
    scale: float = 1.0,
) -> FaceDetector:
    """``auto``: YuNet if its model is found, else Haar if this OpenCV has it.

    ``yunet``/``haar``/``none`` choose exactly that detector (``none``: the image is already a face crop).
    """
    if kind not in DETECTOR_KINDS:
        raise InputError(f"detector {kind!r}: expected one of {', '.join(DETECTOR_KINDS)}")
    if kind in ("auto", "yunet"):
        path = find_yunet_model(model_path)
        if path is not None:
            return YuNetDetector(path, score_threshold=score_threshold, scale=scale)
        if kind == "yunet":
            raise InputError(
                "detector yunet: no model; pass --detector-model PATH or run `edge-sdk models pull yunet` "
                "(offline: `edge-sdk models pull yunet --from FOLDER`)"
            )
    if kind == "none":
        return WholeImageDetector()
    if haar_cascade_path() is None:
        raise InputError(
            "no face detector available: the YuNet model was not found (pass --detector-model PATH to a YuNet "
            ".onnx, or run `edge-sdk models pull yunet`, offline `edge-sdk models pull yunet --from FOLDER`) and "
            "this OpenCV build has no Haar cascade fallback; for images that are already face crops use --detector none"
        )
    return HaarDetector()


DETECTOR_KINDS = ("auto", "yunet", "haar", "none")
