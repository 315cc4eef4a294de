"""Bench-test overlay window (``--preview``). Frames are shown, never written to disk."""

from __future__ import annotations

import cv2
import numpy as np

from edge_sdk.capture.base import Frame
from edge_sdk.errors import InputError
from edge_sdk.pipeline.result import FrameResult

STATE_COLORS = {"alert": (0, 0, 255), "clear": (0, 200, 0), "calibrating": (0, 200, 255)}
WINDOW = "edge-sdk preview (q to quit)"


class PreviewWindow:
    """An OpenCV window with face boxes, landmarks, PSPI and the alert state."""

    def __init__(self) -> None:
        try:
            cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise InputError(
                "--preview needs an OpenCV build with GUI support; this one has none (opencv-python-headless). "
                "For bench testing install opencv-python instead of opencv-python-headless, or run without --preview"
            ) from None

    def show(self, frame: Frame, result: FrameResult) -> bool:
        """Draw and display; False when the user pressed q or closed the window."""
        image = draw_overlay(frame.image, result)
        cv2.imshow(WINDOW, image)
        key = cv2.waitKey(1) & 0xFF
        return key != ord("q") and cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        cv2.destroyWindow(WINDOW)


def draw_overlay(image: np.ndarray, result: FrameResult) -> np.ndarray:
    """A copy of ``image`` with the result drawn on it."""
    out = image.copy()
    color = STATE_COLORS.get(result.pain.state.value, (200, 200, 200))
    for face in result.faces:
        x, y, w, h = (round(v) for v in face.face.box)
        cv2.rectangle(out, (x, y), (x + w, y + h), color, 2)
        if face.face.landmarks is not None:
            for px, py in face.face.landmarks:
                cv2.circle(out, (round(px), round(py)), 2, (255, 255, 0), -1)
        expression = face.expression
        label = max(expression, key=expression.get) if expression else ""
        text = f"{label} pspi {face.pspi:.1f}" if face.pspi is not None else label
        cv2.putText(out, text, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    score = result.pain.score
    status = f"{result.pain.state.value}" + (f"  score {score:.1f}" if score is not None else "")
    cv2.putText(out, status, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 2, cv2.LINE_AA)
    return out
