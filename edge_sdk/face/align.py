"""Face crops for the model, made the way the card's ``input.crop`` says (:class:`CropSpec`).

``aligned``: a five-point similarity warp onto a landmark template (ArcFace's, optionally zoomed out by
``scale``), falling back to a square box crop when a face has no usable landmarks. ``box``: the detector box
grown by ``margin`` (square or not), resized without any warp.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_sdk.contract.card import CropSpec
from edge_sdk.face.detect import Face

# ArcFace reference points for a 112x112 crop: right eye, left eye (subject's), nose tip, mouth corners.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)
# Five-point templates by the name a card's input.crop.template uses, each for a 112x112 crop.
TEMPLATES_112 = {"arcface": ARCFACE_TEMPLATE_112}
BOX_MARGIN = 0.2  # grow a box crop by this fraction so it covers brows and chin like an aligned crop
DEFAULT_CROP = CropSpec()  # what a card without input.crop (every 1.0 card) gets: ArcFace-aligned, scale 1


def template_for(width: int, height: int, template: str = "arcface", scale: float = 1.0) -> np.ndarray:
    """The five-point ``template`` scaled to a ``width`` x ``height`` model input.

    ``scale`` > 1 zooms out: the points shrink towards the crop centre by 1/scale, so the face fills
    1/scale of the crop and more of its surroundings show; < 1 zooms in.
    """
    points = TEMPLATES_112[template] * np.array([width / 112.0, height / 112.0], np.float32)
    if scale == 1.0:
        return points
    centre = np.array([width / 2.0, height / 2.0], np.float32)
    return (centre + (points - centre) / np.float32(scale)).astype(np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst`` (Umeyama).

    Closed form and deterministic; None when the source points are degenerate (all in one place).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var < 1e-6:
        return None
    u, singular, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0  # a reflection is not a similarity: flip the weakest axis
    rotation = u @ sign @ vt
    scale = float((singular * np.diag(sign)).sum() / src_var)
    matrix = np.empty((2, 3), np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align_landmarks(
    image: np.ndarray,
    landmarks: np.ndarray,
    width: int,
    height: int,
    template: str = "arcface",
    scale: float = 1.0,
) -> np.ndarray | None:
    """Warp ``image`` so the five landmarks land on the template; None if the points are degenerate."""
    matrix = similarity_transform(landmarks, template_for(width, height, template, scale))
    if matrix is None or not np.all(np.isfinite(matrix)):
        return None
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def box_crop(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    width: int,
    height: int,
    margin: float = BOX_MARGIN,
    square: bool = True,
) -> np.ndarray:
    """The box grown by ``margin`` (0.2 = 20 % larger on each axis), made ``square`` around its centre when
    asked, padded at image borders and resized to the input size (no warp)."""
    x, y, w, h = box
    grow = 1.0 + margin
    side_w, side_h = (max(w, h) * grow,) * 2 if square else (w * grow, h * grow)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = round(cx - side_w / 2.0), round(cy - side_h / 2.0)
    x1, y1 = x0 + max(1, round(side_w)), y0 + max(1, round(side_h))
    ih, iw = image.shape[:2]
    pad = max(0, -x0, -y0, x1 - iw, y1 - ih)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    crop = image[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if crop.shape[0] > height else cv2.INTER_LINEAR
    return cv2.resize(crop, (width, height), interpolation=interp)


def crop_face(
    image: np.ndarray, face: Face, width: int, height: int, crop: CropSpec = DEFAULT_CROP
) -> tuple[np.ndarray, str]:
    """The model-input crop of ``face`` (BGR uint8, ``height`` x ``width`` x 3) made as ``crop`` says, and how
    it was made: ``aligned``, or ``box`` (a box card, or an aligned card's face without usable landmarks)."""
    if crop.method == "box":
        return box_crop(image, face.box, width, height, crop.margin, crop.square), "box"
    if face.landmarks is not None:
        aligned = align_landmarks(image, face.landmarks, width, height, crop.template, crop.scale)
        if aligned is not None:
            return aligned, "aligned"
    return box_crop(image, face.box, width, height), "box"
