"""Calibration and held-out face crops for INT8 export.

Calibration crops come from the runtime's own detector and aligner (:mod:`edge_sdk.face`) run over a
folder of images and/or videos, or a single video, or from rendered synthetic faces (``synthetic``).
A fixed-size, seeded, shuffled subset is kept and cached on disk (keyed by the source files' names,
sizes and mtimes and every setting), so a second export with the same data does not detect again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_sdk.capture.folder_source import IMAGE_SUFFIXES  # one list: what a folder source reads
from edge_sdk.errors import InputError

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
SYNTHETIC_SOURCE = "synthetic"
# A video contributes at most this many frames (evenly spaced), so one long clip cannot dominate.
DEFAULT_FRAMES_PER_VIDEO = 240
DEFAULT_CALIB_SIZE = 300
# Seeds of the rendered sets: calibration and held-out never share one, so held-out faces are unseen.
SYNTHETIC_CALIB_SEED = 7001
SYNTHETIC_HELDOUT_SEED = 9001
CACHE_VERSION = 1


@dataclass(frozen=True)
class CropSet:
    """Face crops (N x H x W x 3, BGR uint8, at the model's input size) and where they came from."""

    crops: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.crops)


def default_cache_dir() -> Path:
    """``$EDGE_SDK_CACHE/calibration`` or ``~/.cache/edge_sdk/calibration``."""
    root = os.environ.get("EDGE_SDK_CACHE") or Path.home() / ".cache" / "edge_sdk"
    return Path(root) / "calibration"


def _progress(total: int, desc: str, enabled: bool):  # -> tqdm
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="item", disable=not enabled, leave=False, dynamic_ncols=True)


def list_media(source: Path) -> tuple[list[Path], list[Path]]:
    """(images, videos) of a folder (sorted) or of a single file; raises InputError if there are none."""
    if not source.exists():
        raise InputError(f"--calib {source}: no such file or folder")
    files = sorted(p for p in source.iterdir() if p.is_file()) if source.is_dir() else [source]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    if not images and not videos:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))
        raise InputError(f"--calib {source}: no images or videos ({kinds}) to take calibration faces from")
    return images, videos


def _video_frames(path: Path, max_frames: int) -> Iterator[np.ndarray]:
    """Up to ``max_frames`` evenly spaced frames of a video."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"--calib {path}: OpenCV cannot open this video")
    try:
        stride = _stride(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), max_frames)
        index = 0
        while index < stride * max_frames:
            ok = capture.grab()
            if not ok:
                break
            if index % stride == 0:
                ok, frame = capture.retrieve()
                if ok and frame is not None:
                    yield frame
            index += 1
    finally:
        capture.release()


def _stride(frame_count: int, max_frames: int) -> int:
    return max(1, -(-frame_count // max_frames)) if frame_count > 0 else 1


def _frame_count(path: Path, max_frames: int) -> int:
    """How many frames :func:`_video_frames` will yield (for the progress bar)."""
    capture = cv2.VideoCapture(str(path))
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return min(-(-count // _stride(count, max_frames)), max_frames) if count > 0 else max_frames


def _fingerprint(paths: list[Path], settings: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _seeded_subset(crops: np.ndarray, size: int, seed: int) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(len(crops))
    return crops[order[:size]]


def face_crops_from_media(
    source: str | Path,
    height: int,
    width: int,
    size: int = DEFAULT_CALIB_SIZE,
    seed: int = 0,
    detector: Any = None,
    frames_per_video: int = DEFAULT_FRAMES_PER_VIDEO,
    cache_dir: Path | None = None,
    progress: bool = True,
    exclude: tuple[str, ...] = (),
) -> CropSet:
    """Detect and align faces in every image/video of ``source``; keep a seeded shuffled subset of ``size``.

    ``detector`` is an :class:`edge_sdk.face.FaceDetector` (default: ``create_detector("auto")``).
    ``exclude`` names files (e.g. a held-out video) to leave out. Raises InputError when no face is found.
    """
    from edge_sdk.face import create_detector, crop_face, select_faces

    source = Path(source)
    images, videos = list_media(source)
    images = [p for p in images if p.name not in exclude]
    videos = [p for p in videos if p.name not in exclude]
    detector = detector or create_detector("auto")
    settings = {
        "v": CACHE_VERSION,
        "size": size,
        "seed": seed,
        "hw": [height, width],
        "detector": detector.description,
        "frames_per_video": frames_per_video,
    }
    key = _fingerprint(images + videos, settings)
    cache_dir = cache_dir or default_cache_dir()
    cached = cache_dir / f"{key}.npz"
    if cached.is_file():
        with np.load(cached, allow_pickle=False) as data:
            summary = json.loads(str(data["summary"]))
            return CropSet(data["crops"], {**summary, "cache": "hit"})

    crops: list[np.ndarray] = []
    how = {"aligned": 0, "box": 0}
    per_file: dict[str, int] = {}
    total = len(images) + sum(_frame_count(v, frames_per_video) for v in videos)
    with _progress(total, "calibration faces", progress) as bar:

        def take(frame: np.ndarray | None, name: str) -> None:
            bar.update(1)
            if frame is None or frame.ndim != 3:
                return
            for face in select_faces(detector.detect(frame), "all"):
                crop, kind = crop_face(frame, face, width, height)
                crops.append(crop)
                how[kind] += 1
                per_file[name] = per_file.get(name, 0) + 1

        for path in images:
            take(cv2.imread(str(path), cv2.IMREAD_COLOR), path.name)
        for path in videos:
            for frame in _video_frames(path, frames_per_video):
                take(frame, path.name)
    if not crops:
        names = ", ".join(p.name for p in images + videos)
        raise InputError(
            f"--calib {source}: the face detector ({detector.description}) found no face in {names}; "
            "calibration needs face crops (use another source, or --calib synthetic)"
        )
    chosen = _seeded_subset(np.stack(crops), size, seed)
    summary = {
        "source": str(source),
        "kind": "faces",
        "detector": detector.description,
        "faces_found": len(crops),
        "faces_per_file": per_file,
        "crop_kinds": how,
        "count": len(chosen),
        "requested": size,
        "seed": seed,
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, crops=chosen, summary=json.dumps(summary))
    tmp.replace(cached)
    return CropSet(chosen, {**summary, "cache": "miss"})


def synthetic_crops(height: int, width: int, size: int, seed: int) -> CropSet:
    """Rendered synthetic faces (``edge_sdk_export.synthetic``) at the model input size."""
    from edge_sdk_export.synthetic import render_dataset

    data = render_dataset(size, seed, size=max(height, width))
    crops = data.images
    if crops.shape[1:3] != (height, width):
        crops = np.stack([cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA) for img in crops])
    return CropSet(crops, {"source": SYNTHETIC_SOURCE, "kind": "rendered", "count": size, "seed": seed})


def calibration_crops(
    source: str,
    height: int,
    width: int,
    size: int = DEFAULT_CALIB_SIZE,
    seed: int = 0,
    detector: Any = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    exclude: tuple[str, ...] = (),
) -> CropSet:
    """Calibration crops from ``source``: ``synthetic`` or a folder/video of real faces (minus ``exclude`` names)."""
    if size < 1:
        raise InputError(f"--calib-size {size}: expected a positive number of crops")
    if source == SYNTHETIC_SOURCE:
        return synthetic_crops(height, width, size, SYNTHETIC_CALIB_SEED + seed)
    return face_crops_from_media(
        source, height, width, size, seed, detector, cache_dir=cache_dir, progress=progress, exclude=exclude
    )


def heldout_crops(
    height: int,
    width: int,
    size: int,
    seed: int = 0,
    video: str | Path | None = None,
    detector: Any = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> CropSet:
    """The held-out fidelity set: rendered faces whose seed no calibration or distillation set uses, plus
    (optionally) up to ``size`` real face crops from ``video``, which calibration must then exclude."""
    crops = synthetic_crops(height, width, size, SYNTHETIC_HELDOUT_SEED + seed)
    summary: dict[str, Any] = {**crops.summary, "role": "held-out"}
    if video is None:
        return CropSet(crops.crops, summary)
    real = face_crops_from_media(video, height, width, size, seed, detector, cache_dir=cache_dir, progress=progress)
    summary = {"role": "held-out", "rendered": crops.summary, "real": real.summary, "count": len(crops) + len(real)}
    return CropSet(np.concatenate([crops.crops, real.crops]), summary)
