"""OpenCV VideoCapture sources: camera index, device path, RTSP/HTTP stream, or video file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2

from edge_sdk.capture.base import EndOfStream, FrameSource, RawRead, SourceLost
from edge_sdk.errors import InputError

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://")

# Anything with VideoCapture's isOpened/read/release/set/get (tests pass a fake camera).
CaptureOpener = Callable[[Any], Any]


def classify_opencv_target(spec: str) -> tuple[int | str, bool]:
    """``"0"`` -> (0, live); ``/dev/video0`` or a stream URL -> (spec, live); a file -> (spec, not live)."""
    if spec.isdigit():
        return int(spec), True
    if spec.startswith("/dev/") or spec.lower().startswith(STREAM_SCHEMES):
        return spec, True
    return spec, False


class OpenCVSource(FrameSource):
    """A cv2.VideoCapture. Live targets report loss with SourceLost; files end with EndOfStream."""

    def __init__(
        self,
        spec: str,
        width: int | None = None,
        height: int | None = None,
        opener: CaptureOpener | None = None,
    ) -> None:
        super().__init__(spec)
        self.target, self.live = classify_opencv_target(spec)
        if not self.live and not Path(spec).is_file():
            problem = "no such video file (and not a camera index, /dev path or stream URL)"
            raise InputError(f"--source {self.name}: {problem}")
        self._size = (width, height)
        self._opener = opener or cv2.VideoCapture
        self._cap: Any = None

    def open(self) -> None:
        self.close()
        cap = self._opener(self.target)
        if not cap.isOpened():
            cap.release()
            if self.live:
                raise SourceLost(f"cannot open camera/stream {self.name}")
            raise InputError(f"--source {self.name}: OpenCV cannot decode this file")
        if self.live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver from queueing stale frames
            if self._size[0] and self._size[1]:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._size[1])
        self._cap = cap

    def read(self) -> RawRead:
        if self._cap is None:
            raise SourceLost(f"{self.name} is not open")
        ok, image = self._cap.read()
        if not ok:
            if self.live:
                raise SourceLost(f"camera/stream {self.name} stopped delivering frames")
            raise EndOfStream(self.name)
        media_time = None if self.live else float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
        return RawRead(image, media_time=media_time)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
