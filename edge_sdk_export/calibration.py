"""Calibration and held-out face crops for INT8 export: the user's own footage, split by file.

Crops come from the runtime's own detector and cropper (:func:`edge_sdk.face.crop_face` with the model
card's ``input.crop``) run over a folder of images and/or videos, or a single file, or from rendered
synthetic faces (``synthetic``). Each file's crops are cached on disk (keyed by the file's path, size and
mtime and every setting, the crop spec included), so a second export with the same data does not detect again.

The held-out fidelity set never shares a file with calibration (a video is never on both sides): it is
``--heldout PATH``, or whole files split off ``--calib`` (about ``heldout_fraction`` of the faces found,
files chosen by seed). Rendered faces join it only when asked (the pipeline asks for the synthetic demo).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_sdk.capture.folder_source import IMAGE_SUFFIXES  # one list: what a folder source reads
from edge_sdk.contract.card import CropSpec
from edge_sdk.errors import InputError

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
SYNTHETIC_SOURCE = "synthetic"
# A video contributes at most this many frames (evenly spaced), so one long clip cannot dominate.
DEFAULT_FRAMES_PER_VIDEO = 240
DEFAULT_CALIB_SIZE = 300
# Seeds of the rendered sets: calibration and held-out never share one, so held-out faces are unseen.
SYNTHETIC_CALIB_SEED = 7001
SYNTHETIC_HELDOUT_SEED = 9001
logger = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: one cache entry per file, keyed by the crop spec too


@dataclass(frozen=True)
class CropSet:
    """Face crops (N x H x W x 3, BGR uint8, at the model's input size) and where they came from."""

    crops: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.crops)


@dataclass(frozen=True)
class FileFaces:
    """Every face crop found in one image or video, and how each was cut (``aligned``/``box`` counts)."""

    path: Path
    crops: np.ndarray
    kinds: dict[str, int]

    def __len__(self) -> int:
        return len(self.crops)


@dataclass(frozen=True)
class MediaPlan:
    """Which files calibrate and which are held out, decided before any detection (cheap checks first).

    ``heldout_files`` None: split whole files off ``calib_files`` once their faces are counted.
    ``calib_files`` empty: calibration is rendered (``--calib synthetic``).
    """

    calib_source: str
    calib_files: tuple[Path, ...]
    heldout_source: str | None
    heldout_files: tuple[Path, ...] | None
    rendered_heldout: int

    @property
    def synthetic_calib(self) -> bool:
        return not self.calib_files


@dataclass(frozen=True)
class FaceSets:
    """The faces of one export: calibration (seeded subset), every calibration-side crop (distillation
    data), the held-out set, and the rendered range cover (or None)."""

    calib: CropSet
    pool: np.ndarray
    heldout: CropSet
    range_cover: CropSet | None

    def calibration_summary(self) -> dict[str, Any]:
        summary = dict(self.calib.summary)
        if self.range_cover is not None:
            summary["range_cover"] = self.range_cover.summary
        return summary


def default_cache_dir() -> Path:
    """``$EDGE_SDK_CACHE/calibration`` or ``~/.cache/edge_sdk/calibration``."""
    root = os.environ.get("EDGE_SDK_CACHE") or Path.home() / ".cache" / "edge_sdk"
    return Path(root) / "calibration"


def _progress(total: int, desc: str, enabled: bool):  # -> tqdm
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="item", disable=not enabled, leave=False, dynamic_ncols=True)


def list_media(source: Path, flag: str = "--calib") -> tuple[list[Path], list[Path]]:
    """(images, videos) of a folder (sorted) or of a single file; raises InputError if there are none."""
    if not source.exists():
        raise InputError(f"{flag} {source}: no such file or folder")
    files = sorted(p for p in source.iterdir() if p.is_file()) if source.is_dir() else [source]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    if not images and not videos:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))
        raise InputError(f"{flag} {source}: no images or videos ({kinds}) to take faces from")
    return images, videos


def media_files(source: Path, flag: str = "--calib") -> list[Path]:
    """Every image and video of a folder (sorted) or the single file ``source``."""
    images, videos = list_media(source, flag)
    return sorted(images + videos)


def _video_frames(path: Path, max_frames: int) -> Iterator[np.ndarray]:
    """Up to ``max_frames`` evenly spaced frames of a video."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"{path}: OpenCV cannot open this video")
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


def _file_settings(height: int, width: int, detector: Any, frames_per_video: int, crop: CropSpec) -> dict[str, Any]:
    return {
        "v": CACHE_VERSION,
        "hw": [height, width],
        "detector": detector.description,
        "frames_per_video": frames_per_video,
        "crop": crop.to_dict(),
    }


def faces_in_files(
    files: list[Path],
    height: int,
    width: int,
    detector: Any = None,
    crop: CropSpec | None = None,
    frames_per_video: int = DEFAULT_FRAMES_PER_VIDEO,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> list[FileFaces]:
    """Every face in each file, cut by :func:`edge_sdk.face.crop_face` with ``crop`` (the card's
    ``input.crop``); each file's crops are cached under a key of the file and every setting."""
    from edge_sdk.face import create_detector, crop_face, select_faces

    if not files:
        return []
    crop = crop or CropSpec()
    detector = detector or create_detector("auto")
    settings = _file_settings(height, width, detector, frames_per_video, crop)
    cache_dir = cache_dir or default_cache_dir()
    found: dict[Path, FileFaces] = {}
    todo: list[Path] = []
    for path in files:
        cached = cache_dir / f"{_fingerprint([path], settings)}.npz"
        if cached.is_file():
            with np.load(cached, allow_pickle=False) as data:
                found[path] = FileFaces(path, data["crops"], json.loads(str(data["kinds"])))
        else:
            todo.append(path)
    total = sum(1 if p.suffix.lower() in IMAGE_SUFFIXES else _frame_count(p, frames_per_video) for p in todo)
    with _progress(total, "detecting faces", progress) as bar:
        for path in todo:
            crops: list[np.ndarray] = []
            kinds = {"aligned": 0, "box": 0}
            if path.suffix.lower() in IMAGE_SUFFIXES:
                frames: Iterator[np.ndarray | None] = iter([cv2.imread(str(path), cv2.IMREAD_COLOR)])
            else:
                frames = _video_frames(path, frames_per_video)
            for frame in frames:
                bar.update(1)
                if frame is None or frame.ndim != 3:
                    continue
                for face in select_faces(detector.detect(frame), "all"):
                    cut, kind = crop_face(frame, face, width, height, crop)
                    crops.append(cut)
                    kinds[kind] = kinds.get(kind, 0) + 1
            stacked = np.stack(crops) if crops else np.zeros((0, height, width, 3), np.uint8)
            found[path] = FileFaces(path, stacked, kinds)
            cache_dir.mkdir(parents=True, exist_ok=True)
            cached = cache_dir / f"{_fingerprint([path], settings)}.npz"
            tmp = cached.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, crops=stacked, kinds=json.dumps(kinds))
            tmp.replace(cached)
    return [found[p] for p in files]


def _no_face_error(flag: str, source: str | Path, files: list[Path], detector: Any) -> InputError:
    names = ", ".join(p.name for p in files)
    return InputError(
        f"{flag} {source}: the face detector ({detector.description}) found no face in {names}; "
        "calibration and the held-out fidelity set need face crops (use other footage, or --calib synthetic)"
    )


def _faces_summary(
    source: str | Path, faces: list[FileFaces], chosen: int, size: int, seed: int, detector: Any, crop: CropSpec
) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for f in faces:
        for kind, n in f.kinds.items():
            kinds[kind] = kinds.get(kind, 0) + n
    return {
        "source": str(source),
        "kind": "faces",
        "detector": detector.description,
        "crop": crop.to_dict(),
        "files": [f.path.name for f in faces],
        "files_without_faces": [f.path.name for f in faces if not len(f)],
        "faces_found": sum(len(f) for f in faces),
        "faces_per_file": {f.path.name: len(f) for f in faces},
        "crop_kinds": kinds,
        "count": chosen,
        "requested": size,
        "seed": seed,
    }


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
    crop: CropSpec | None = None,
) -> CropSet:
    """Detect and crop faces (``crop``: the card's ``input.crop``) in every image/video of ``source``; keep a
    seeded shuffled subset of ``size``. ``exclude`` names files to leave out. InputError when no face is found."""
    from edge_sdk.face import create_detector

    crop = crop or CropSpec()
    detector = detector or create_detector("auto")
    files = [p for p in media_files(Path(source)) if p.name not in exclude]
    faces = faces_in_files(files, height, width, detector, crop, frames_per_video, cache_dir, progress)
    if not any(len(f) for f in faces):
        raise _no_face_error("--calib", source, files, detector)
    chosen = _seeded_subset(np.concatenate([f.crops for f in faces]), size, seed)
    return CropSet(chosen, _faces_summary(source, faces, len(chosen), size, seed, detector, crop))


def synthetic_crops(height: int, width: int, size: int, seed: int) -> CropSet:
    """Rendered synthetic faces (``edge_sdk_export.synthetic``) at the model input size."""
    from edge_sdk_export.synthetic import render_dataset

    data = render_dataset(size, seed, size=max(height, width))
    crops = data.images
    if crops.shape[1:3] != (height, width):
        crops = np.stack([cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA) for img in crops])
    return CropSet(crops, {"source": SYNTHETIC_SOURCE, "kind": "rendered", "count": size, "seed": seed})


def rendered_heldout(height: int, width: int, size: int, seed: int = 0) -> CropSet:
    """Rendered held-out faces: their seed is used by no calibration, range-cover or distillation set."""
    return synthetic_crops(height, width, size, SYNTHETIC_HELDOUT_SEED + seed)


# ---- the split: which files calibrate, which are held out -------------------------------------
def plan_media(calib: str, heldout: Path | None, rendered_heldout: int) -> MediaPlan:
    """Check the face sources and decide what can be decided before detection (cheap, fails early).

    ``rendered_heldout`` is how many rendered faces join the held-out set (0: real faces only). With
    one ``--calib`` file, no ``--heldout`` and no rendered faces there is nothing to split: InputError.
    """
    if rendered_heldout < 0:
        raise InputError(f"--synthetic-heldout {rendered_heldout}: expected a number of rendered faces >= 0")
    heldout_files = tuple(media_files(Path(heldout), "--heldout")) if heldout is not None else None
    if calib == SYNTHETIC_SOURCE:
        if not heldout_files and rendered_heldout == 0:
            raise InputError(
                "--calib synthetic with --synthetic-heldout 0 and no --heldout: no faces left to measure fidelity on"
            )
        return MediaPlan(calib, (), str(heldout) if heldout else None, heldout_files, rendered_heldout)
    files = media_files(Path(calib))
    if heldout_files is not None:
        held = {p.resolve() for p in heldout_files}
        kept = [p for p in files if p.resolve() not in held]
        if not kept:
            raise InputError(
                f"--calib {calib}: every file is also in --heldout {heldout}; calibration needs footage of its own "
                "(a file is never on both sides)"
            )
        return MediaPlan(calib, tuple(kept), str(heldout), heldout_files, rendered_heldout)
    if len(files) < 2 and rendered_heldout == 0:
        raise InputError(
            f"--calib {calib}: a single file, and the held-out fidelity set is split from --calib by whole files "
            "(a video is never on both sides), so there is nothing to hold out. Give a folder of two or more "
            "images/videos, or --heldout PATH (your own footage kept out of calibration), or --synthetic-heldout N "
            "(N rendered faces: out of distribution for a model trained on real faces)"
        )
    return MediaPlan(calib, tuple(files), None, None, rendered_heldout)


def split_by_file(faces: list[FileFaces], fraction: float, seed: int) -> tuple[list[FileFaces], list[FileFaces]]:
    """(calibration, held-out) whole files: files with faces in a seeded order, each added to the held-out
    side when that brings it closer to ``fraction`` of the faces found (none did: the file with the fewest
    faces; calibration keeps at least one file). Files without faces stay on the calibration side."""
    with_faces = [f for f in faces if len(f)]
    order = [with_faces[i] for i in np.random.default_rng(seed).permutation(len(with_faces))]
    target = fraction * sum(len(f) for f in with_faces)
    held: list[FileFaces] = []
    count = 0
    for item in order:
        if len(held) == len(with_faces) - 1:
            break
        if abs(count + len(item) - target) < abs(count - target):
            held.append(item)
            count += len(item)
    if not held and len(with_faces) > 1:
        held.append(min(order, key=len))
    chosen = {id(f) for f in held}
    return [f for f in faces if id(f) not in chosen], held


def _describe(crops: int, files: list[FileFaces], how: str, rendered: int) -> str:
    parts = []
    if files:
        names = ", ".join(f.path.name for f in files)
        parts.append(f"{crops} real face crops from {len(files)} file{'s' * (len(files) != 1)} ({names}), {how}")
    if rendered:
        parts.append(f"{rendered} rendered faces")
    return " + ".join(parts)


def collect_faces(
    plan: MediaPlan,
    height: int,
    width: int,
    *,
    crop: CropSpec | None = None,
    calib_size: int = DEFAULT_CALIB_SIZE,
    heldout_size: int = 300,
    heldout_fraction: float = 0.2,
    range_cover: int = 0,
    range_cover_seed: int = 7501,
    seed: int = 0,
    detector: Any = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> FaceSets:
    """Detect faces in the plan's files, split whole files into calibration and held-out, render what was
    asked for, and describe both sets (files, crops, rendered count) for the report."""
    from edge_sdk.face import create_detector

    if calib_size < 1:
        raise InputError(f"--calib-size {calib_size}: expected a positive number of crops")
    if heldout_size < 1:
        raise InputError(f"--heldout-size {heldout_size}: expected a positive number of crops")
    if not 0.0 < heldout_fraction < 1.0:
        raise InputError(f"--heldout-fraction {heldout_fraction}: expected a fraction of the faces in (0, 1)")
    crop = crop or CropSpec()
    real_files = [*plan.calib_files, *(plan.heldout_files or ())]
    if real_files:
        detector = detector or create_detector("auto")
    faces = faces_in_files(real_files, height, width, detector, crop, cache_dir=cache_dir, progress=progress)
    calib_faces, held_faces = faces[: len(plan.calib_files)], faces[len(plan.calib_files) :]
    how = f"--heldout {plan.heldout_source}"
    if plan.heldout_files is None and not plan.synthetic_calib:  # split whole files off --calib
        if not any(len(f) for f in calib_faces):
            raise _no_face_error("--calib", plan.calib_source, list(plan.calib_files), detector)
        if sum(1 for f in calib_faces if len(f)) >= 2:
            calib_faces, held_faces = split_by_file(calib_faces, heldout_fraction, seed)
            how = f"split from --calib by file (about {heldout_fraction:.0%} of the faces found)"
        elif plan.rendered_heldout == 0:
            empty = ", ".join(f.path.name for f in calib_faces if not len(f))
            raise InputError(
                f"--calib {plan.calib_source}: faces were found in one file only (none in {empty}), and the "
                "held-out fidelity set is split from --calib by whole files; give more footage, or --heldout PATH, "
                "or --synthetic-heldout N"
            )
        else:
            held_faces = []
            logger.warning(
                "held-out: --calib %s has faces in one file only, so no real faces are held out; fidelity is "
                "measured on %d rendered faces only",
                plan.calib_source,
                plan.rendered_heldout,
            )
    elif plan.heldout_files and not any(len(f) for f in held_faces) and plan.rendered_heldout == 0:
        raise _no_face_error("--heldout", plan.heldout_source or "", list(plan.heldout_files), detector)

    # calibration
    if plan.synthetic_calib:
        calib = synthetic_crops(height, width, calib_size, SYNTHETIC_CALIB_SEED + seed)
        pool = calib.crops
    else:
        if not any(len(f) for f in calib_faces):
            raise _no_face_error("--calib", plan.calib_source, list(plan.calib_files), detector)
        pool = np.concatenate([f.crops for f in calib_faces])
        chosen = _seeded_subset(pool, calib_size, seed)
        summary = _faces_summary(plan.calib_source, calib_faces, len(chosen), calib_size, seed, detector, crop)
        calib = CropSet(chosen, summary)

    # held-out: real files (never calibration's), then rendered faces when asked for
    real = [f for f in held_faces if len(f)]
    parts = [_seeded_subset(np.concatenate([f.crops for f in real]), heldout_size, seed)] if real else []
    rendered = rendered_heldout(height, width, plan.rendered_heldout, seed) if plan.rendered_heldout else None
    if rendered is not None:
        parts.append(rendered.crops)
    real_count = len(parts[0]) if real else 0
    heldout_summary: dict[str, Any] = {
        "role": "held-out",
        "description": _describe(real_count, held_faces if real else [], how, plan.rendered_heldout),
        "how": how if held_faces else "rendered faces only",
        "files": [f.path.name for f in held_faces],
        "files_without_faces": [f.path.name for f in held_faces if not len(f)],
        "faces_per_file": {f.path.name: len(f) for f in held_faces},
        "real_crops": real_count,
        "rendered": plan.rendered_heldout,
        "count": real_count + plan.rendered_heldout,
        "seed": seed,
    }
    if rendered is not None:
        heldout_summary["rendered_seed"] = rendered.summary["seed"]
    heldout = CropSet(np.concatenate(parts), heldout_summary)
    cover = synthetic_crops(height, width, range_cover, range_cover_seed + seed) if range_cover > 0 else None
    return FaceSets(calib, pool, heldout, cover)
