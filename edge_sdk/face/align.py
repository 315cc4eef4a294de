"""Face crops for the model: five-point similarity alignment, or a square box crop without landmarks."""

from __future__ import annotations

import cv2
import numpy as np

from edge_sdk.face.detect import Face

# ArcFace reference points for a 112x112 crop: right eye, left eye (subject's), nose tip, mouth corners.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)
BOX_MARGIN = 0.2  # grow a box crop by this fraction so it covers brows and chin like an aligned crop


def template_for(width: int, height: int) -> np.ndarray:
    """The ArcFace template scaled to a ``width`` x ``height`` model input."""
    return ARCFACE_TEMPLATE_112 * np.array([width / 112.0, height / 112.0], np.float32)


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


def align_landmarks(image: np.ndarray, landmarks: np.ndarray, width: int, height: int) -> np.ndarray | None:
    """Warp ``image`` so the five landmarks land on the template; None if the points are degenerate."""
    matrix = similarity_transform(landmarks, template_for(width, height))
    if matrix is None or not np.all(np.isfinite(matrix)):
        return None
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def box_crop(image: np.ndarray, box: tuple[float, float, float, float], width: int, height: int) -> np.ndarray:
    """A square crop around the box (grown by BOX_MARGIN, padded at image borders) resized to the input size."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + BOX_MARGIN)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = round(cx - side / 2.0), round(cy - side / 2.0)
    x1, y1 = x0 + max(1, round(side)), y0 + max(1, round(side))
    ih, iw = image.shape[:2]
    pad = max(0, -x0, -y0, x1 - iw, y1 - ih)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    crop = image[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if crop.shape[0] > height else cv2.INTER_LINEAR
    return cv2.resize(crop, (width, height), interpolation=interp)


def crop_face(image: np.ndarray, face: Face, width: int, height: int) -> tuple[np.ndarray, str]:
    """The model-input crop of ``face`` and how it was made (``aligned`` or ``box``)."""
    if face.landmarks is not None:
        aligned = align_landmarks(image, face.landmarks, width, height)
        if aligned is not None:
            return aligned, "aligned"
    return box_crop(image, face.box, width, height), "box"
