"""Raspberry Pi camera via picamera2 (imported only when this source is chosen).

Two streams: ``main`` (optional, for a preview) and ``lores`` (small, for inference). On a Pi 4
the lores stream must be YUV420. Colour order trap: picamera2's "RGB888" is laid out B,G,R in
memory, which is exactly OpenCV's BGR, while "BGR888" is R,G,B.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from edge_sdk.capture.base import FrameSource, RawRead, SourceLost
from edge_sdk.errors import InputError


def _yuv420_to_bgr(array: np.ndarray, width: int) -> np.ndarray:
    # I420 planes packed as (h * 3/2, stride); rows may be padded beyond the requested width.
    return cv2.cvtColor(array, cv2.COLOR_YUV2BGR_I420)[:, :width]


# picamera2 format -> (BGR converter taking (array, requested width)).
FORMAT_TO_BGR: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "RGB888": lambda a, w: a[:, :w, :3],  # already B,G,R in memory
    "BGR888": lambda a, w: cv2.cvtColor(np.ascontiguousarray(a[:, :w, :3]), cv2.COLOR_RGB2BGR),
    "XRGB8888": lambda a, w: a[:, :w, :3],  # B,G,R,X in memory
    "XBGR8888": lambda a, w: cv2.cvtColor(np.ascontiguousarray(a[:, :w, :3]), cv2.COLOR_RGB2BGR),
    "YUV420": _yuv420_to_bgr,
}


def to_bgr(array: Any, fmt: str, width: int) -> np.ndarray | None:
    """Convert one picamera2 array to contiguous BGR uint8; None for an empty/unusable array."""
    if not isinstance(array, np.ndarray) or array.size == 0 or array.dtype != np.uint8:
        return None
    try:
        return np.ascontiguousarray(FORMAT_TO_BGR[fmt](array, width))
    except cv2.error:
        return None


class Picamera2Source(FrameSource):
    """A Pi camera: ``lores`` feeds inference, ``main`` (if ``main_size``) goes to ``Frame.display``."""

    live = True

    def __init__(
        self,
        lores_size: tuple[int, int] = (640, 480),
        lores_format: str = "YUV420",
        main_size: tuple[int, int] | None = None,
        main_format: str = "RGB888",
        camera_num: int = 0,
        module: Any = None,
    ) -> None:
        super().__init__(f"picamera2:{camera_num}")
        for what, fmt in (("lores", lores_format), ("main", main_format)):
            if fmt not in FORMAT_TO_BGR:
                raise InputError(f"picamera2 {what} format {fmt!r}: expected one of {', '.join(FORMAT_TO_BGR)}")
        self.lores_size, self.lores_format = lores_size, lores_format
        self.main_size, self.main_format = main_size, main_format
        self.camera_num = camera_num
        self._module = module
        self._cam: Any = None
        self._picamera2()  # missing picamera2 is a setup error: say so now, not after the model has loaded

    def _picamera2(self) -> Any:
        if self._module is None:
            try:
                import picamera2
            except ImportError:
                raise InputError(
                    "--source picamera2 needs the picamera2 package: on Raspberry Pi OS run "
                    "`sudo apt install python3-picamera2` and create the venv with --system-site-packages"
                ) from None
            self._module = picamera2
        return self._module

    def open(self) -> None:
        self.close()
        module = self._picamera2()
        # A main stream is mandatory in picamera2; without a preview keep it as small as the lores one.
        main_size = self.main_size or self.lores_size
        try:
            cam = module.Picamera2(self.camera_num)
            config = cam.create_preview_configuration(
                main={"size": main_size, "format": self.main_format},
                lores={"size": self.lores_size, "format": self.lores_format},
                buffer_count=2,
            )
            cam.configure(config)
            cam.start()
        except Exception as exc:  # picamera2 raises IndexError/RuntimeError/OSError for absent cameras
            raise SourceLost(f"cannot start camera {self.camera_num}: {exc}") from None
        self._cam = cam

    def read(self) -> RawRead:
        if self._cam is None:
            raise SourceLost(f"{self.name} is not open")
        try:
            lores = self._cam.capture_array("lores")
            main = self._cam.capture_array("main") if self.main_size else None
        except Exception as exc:
            raise SourceLost(f"{self.name} stopped delivering frames: {exc}") from None
        image = to_bgr(lores, self.lores_format, self.lores_size[0])
        display = None if main is None else to_bgr(main, self.main_format, self.main_size[0])  # type: ignore[index]
        return RawRead(image, display=display)

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        for step in ("stop", "close"):
            with contextlib.suppress(Exception):  # releasing a camera that already vanished
                getattr(cam, step)()
