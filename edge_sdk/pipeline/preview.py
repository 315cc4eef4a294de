"""Bench-test overlay window (``--preview``). Frames are shown, never written to disk."""

from __future__ import annotations

import cv2
import numpy as np

from edge_sdk.capture.base import Frame
from edge_sdk.errors import InputError
from edge_sdk.pipeline.draw import annotate
from edge_sdk.pipeline.result import FrameResult

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
    """A copy of ``image`` with the result drawn on it (:func:`edge_sdk.pipeline.draw.annotate`)."""
    return annotate(image, result)
