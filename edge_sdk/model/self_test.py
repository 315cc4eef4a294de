"""One forward pass on a rendered face: does this model give finite outputs inside its card's ranges?

``edge-sdk doctor`` and ``edge-sdk card MODEL`` run it, so damaged weights (bit rot, a bad export) or a card
that does not fit the model fail before a monitor is deployed, not as NaN at the bedside. The face is drawn
here with OpenCV (no data files): a frontal cartoon face with brows, eyes, nose and mouth.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_sdk.contract.output_check import output_problems
from edge_sdk.model.face_model import FaceModel

SKIN_BGR = (150, 180, 215)
FEATURE_BGR = (60, 50, 45)


def render_test_face(size: int = 160) -> np.ndarray:
    """A synthetic frontal face, ``size`` x ``size`` BGR uint8, filling the crop like an aligned face."""
    image = np.full((size, size, 3), 200, np.uint8)
    c, s = size // 2, size / 160.0

    def p(x: float, y: float) -> tuple[int, int]:
        return int(c + x * s), int(c + y * s)

    def r(a: float, b: float) -> tuple[int, int]:
        return max(1, int(a * s)), max(1, int(b * s))

    cv2.ellipse(image, p(0, 5), r(58, 74), 0, 0, 360, SKIN_BGR, -1)
    for side in (-1, 1):
        cv2.line(image, p(side * 38, -30), p(side * 12, -33), FEATURE_BGR, max(1, int(4 * s)))  # brow
        cv2.ellipse(image, p(side * 24, -14), r(11, 6), 0, 0, 360, (255, 255, 255), -1)  # eye
        cv2.circle(image, p(side * 24, -14), max(1, int(4 * s)), FEATURE_BGR, -1)  # iris
    cv2.line(image, p(0, -8), p(-5, 18), FEATURE_BGR, max(1, int(2 * s)))  # nose
    cv2.ellipse(image, p(0, 40), r(20, 7), 0, 0, 180, (80, 80, 170), max(1, int(3 * s)))  # mouth
    return image


def forward_check(model: FaceModel) -> str | None:
    """The problem with ``model``'s outputs on :func:`render_test_face` (a failure, a non-finite or
    out-of-range head), or None when every head is believable."""
    try:
        outputs = model.predict([render_test_face()])
    except Exception as exc:  # a runtime error on a valid-looking card is exactly what this check is for
        return f"the forward pass failed: {type(exc).__name__}: {str(exc)[:300]}"
    problem = output_problems(model.card, outputs)[0]
    return None if problem is None else f"bad output on a rendered face: {problem}"
