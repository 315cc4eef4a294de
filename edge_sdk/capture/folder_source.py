"""A folder of images as a finite source (sorted by name)."""

from __future__ import annotations

from pathlib import Path

import cv2

from edge_sdk.capture.base import EndOfStream, FrameSource, RawRead
from edge_sdk.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class ImageFolderSource(FrameSource):
    """Every image in a folder, in name order; an unreadable file yields an empty frame (counted, skipped)."""

    live = False

    def __init__(self, folder: str | Path) -> None:
        super().__init__(str(folder))
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"--source {folder}: not a folder")
        self.paths = list_images(self.folder)
        if not self.paths:
            raise InputError(f"--source {folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        self._next = 0

    def open(self) -> None:
        self._next = 0

    def read(self) -> RawRead:
        if self._next >= len(self.paths):
            raise EndOfStream(self.name)
        path = self.paths[self._next]
        self._next += 1
        return RawRead(cv2.imread(str(path), cv2.IMREAD_COLOR))

    def close(self) -> None:
        self._next = len(self.paths)
