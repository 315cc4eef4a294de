"""Frame capture behind one interface: cameras, streams, files, image folders, the Pi camera.

``open_source("0" | "/dev/video0" | "picamera2" | "rtsp://..." | "clip.mp4" | "images/")`` picks the
source; :class:`Capture` iterates it as :class:`Frame` objects (image, monotonic timestamp, index).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_sdk.capture.base import EndOfStream, Frame, FrameSource, RawRead, SourceLost, is_valid_image
from edge_sdk.capture.folder_source import ImageFolderSource
from edge_sdk.capture.opencv_source import OpenCVSource
from edge_sdk.capture.stream import Capture, CaptureEvent, CaptureStats
from edge_sdk.errors import InputError

PICAMERA2_PREFIX = "picamera2"


def open_source(
    spec: str,
    width: int | None = None,
    height: int | None = None,
    main_size: tuple[int, int] | None = None,
    **options: Any,
) -> FrameSource:
    """Build the source named by ``spec`` (not opened yet; :class:`Capture` opens it).

    ``picamera2`` or ``picamera2:N`` -> the Pi camera N (lores stream ``width`` x ``height`` for inference,
    ``main_size`` for a preview); a folder -> its images; anything else -> OpenCV VideoCapture.
    """
    if spec == PICAMERA2_PREFIX or spec.startswith(PICAMERA2_PREFIX + ":"):
        from edge_sdk.capture.picamera2_source import Picamera2Source

        number = spec.partition(":")[2] if ":" in spec else "0"
        if not (number.isascii() and number.isdigit()):
            raise InputError(f"--source {spec}: expected picamera2 or picamera2:N with N a camera number (0, 1, ...)")
        camera_num = int(number)
        return Picamera2Source(
            lores_size=(width or 640, height or 480), main_size=main_size, camera_num=camera_num, **options
        )
    if Path(spec).is_dir():
        return ImageFolderSource(spec)
    return OpenCVSource(spec, width=width, height=height, **options)


__all__ = [
    "Capture",
    "CaptureEvent",
    "CaptureStats",
    "EndOfStream",
    "Frame",
    "FrameSource",
    "ImageFolderSource",
    "OpenCVSource",
    "RawRead",
    "SourceLost",
    "is_valid_image",
    "open_source",
]
