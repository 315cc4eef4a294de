"""The unit of offline analysis: a chunk of a video (or one image) -> per-frame faces and table rows.

A video is cut into chunks of :attr:`AnalyzeSettings.chunk_frames` frames. Each chunk starts with a
full-frame face detection (the region tracker forgets what it followed), so a chunk's results do not
depend on which process analysed the chunk before it: one process, ``--workers N`` and a Ray cluster give
the same rows. Face ids and pain smoothing need the frames in order; they are added afterwards, per file
(:class:`FileLabeler`), from the rows themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_sdk.errors import InputError
from edge_sdk.face.detect import FaceDetector, create_detector
from edge_sdk.face.select import FACE_POLICIES
from edge_sdk.face.track import TrackSettings
from edge_sdk.model.face_model import FaceModel
from edge_sdk.pipeline.alerts import PainMonitor, PainSettings, PainStatus
from edge_sdk.pipeline.analyze import AnalysisFault, FaceAnalyzer, read_image
from edge_sdk.pipeline.result import FaceResult
from edge_sdk.store.table import FaceIds, FaceTableSchema, face_row, face_values

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
DEFAULT_CHUNK_FRAMES = 240
RANK = "_rank"  # a row's place among its frame's faces (largest first); only while rows travel between processes


@dataclass(frozen=True)
class AnalyzeSettings:
    """What ``edge-sdk analyze`` runs: the model and detector (loaded by name in every worker), which faces,
    every how many frames, the chunk length, region tracking, and optional pain smoothing (``pain``)."""

    model: str = "demo"
    backend: str | None = None
    threads: int | None = None
    detector: str = "auto"
    detector_model: str | None = None
    score_threshold: float = 0.6
    faces: str = "all"
    every: int = 1
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    track: TrackSettings | None = field(default_factory=TrackSettings)
    pain: PainSettings | None = None
    save_frames: str | None = None  # a folder: write every analysed frame, annotated, as a JPEG (opt-in pixels)

    def __post_init__(self) -> None:
        if self.faces not in FACE_POLICIES:
            raise InputError(f"faces {self.faces!r}: expected one of {', '.join(FACE_POLICIES)}")
        if not (isinstance(self.every, int) and self.every >= 1):
            raise InputError(f"--every {self.every!r}: expected an integer >= 1 (analyse every N-th frame)")
        if not (isinstance(self.chunk_frames, int) and self.chunk_frames >= 1):
            raise InputError(f"--chunk {self.chunk_frames!r}: expected an integer >= 1 (frames)")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads {self.threads!r}: expected an integer >= 1")

    def load_model(self) -> FaceModel:
        options = {"threads": self.threads} if self.threads else {}
        return FaceModel(self.model, backend=self.backend, **options)

    def load_detector(self) -> FaceDetector:
        return create_detector(self.detector, self.detector_model, score_threshold=self.score_threshold)

    def analyzer(self, model: FaceModel | None = None, detector: FaceDetector | None = None) -> FaceAnalyzer:
        return FaceAnalyzer(
            model or self.load_model(), detector or self.load_detector(), faces=self.faces, track=self.track
        )


@dataclass(frozen=True)
class WorkItem:
    """One unit of work: frames ``[start, stop)`` of a video (``stop`` None: to its end), or one image."""

    file: str
    kind: str  # "video" | "image"
    start: int = 0
    stop: int | None = None
    frames: int = 1  # how many frames the unit holds, as far as the container says (progress only)


def input_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Videos and images named or inside the named folders (a folder's images and videos, sorted by name).
    :class:`InputError` for a missing path, a file of another kind, or a folder with nothing to analyse."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
            )
            if not found:
                raise InputError(f"{path}: no images or videos in this folder (expected {_kinds_text()})")
            files += found
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                raise InputError(f"{path}: not a video or image file (expected {_kinds_text()})")
            files.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    return files


def _kinds_text() -> str:
    return ", ".join(sorted(VIDEO_SUFFIXES | IMAGE_SUFFIXES))


def video_frame_count(path: Path) -> int:
    """The container's frame count (may be approximate; 0 when unknown); :class:`InputError` when unreadable."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise InputError(f"{path}: OpenCV cannot decode this video")
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    finally:
        cap.release()


def plan(inputs: Sequence[str | Path], chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> list[WorkItem]:
    """The work units of ``inputs``, in output order. The last chunk of a video reads to its end, so an
    approximate frame count loses nothing."""
    items: list[WorkItem] = []
    for path in input_files(inputs):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            items.append(WorkItem(str(path), "image"))
            continue
        total = video_frame_count(path)
        starts = list(range(0, max(total, 1), chunk_frames))
        for i, start in enumerate(starts):
            last = i == len(starts) - 1
            stop = None if last else start + chunk_frames
            items.append(WorkItem(str(path), "video", start, stop, (total - start) if last else chunk_frames))
    return items


@dataclass(frozen=True)
class RawFrame:
    """One analysed frame before face ids: the faces largest first, media seconds (None for an image)."""

    file: str
    index: int
    timestamp: float | None
    faces: tuple[FaceResult, ...]
    detector_ran: bool = True
    fault: str | None = None  # the detector or the model failed on this frame (its row says so)

    def rows(self) -> list[dict[str, object]]:
        """Table rows without face ids (``face_id`` None): one per face, or one ``success`` 0 row."""
        if not self.faces:
            return [{**face_row(self.file, self.index, self.timestamp, None, None, None), "fault": self.fault}]
        return [
            face_row(
                self.file,
                self.index,
                self.timestamp,
                None,
                f.face.box,
                f.face.score,
                face_values(f.heads, f.kinds, f.pspi, f.problem),
            )
            for f in self.faces
        ]


def video_frames(path: str, start: int, stop: int | None, every: int) -> Iterator[tuple[int, float, np.ndarray]]:
    """(index, media seconds, BGR image) of every ``every``-th frame (by index from 0) in ``[start, stop)``.
    Frames before ``start`` and between are grabbed, not decoded into images."""
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise InputError(f"{path}: OpenCV cannot decode this video")
    try:
        index = 0
        while index < start:
            if not cap.grab():
                return
            index += 1
        while stop is None or index < stop:
            if index % every:
                if not cap.grab():
                    return
            else:
                ok, image = cap.read()
                if not ok:
                    return
                yield index, float(cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0, image
            index += 1
    finally:
        cap.release()


def analyze_item(
    analyzer: FaceAnalyzer, item: WorkItem, every: int = 1, save_frames: str | Path | None = None
) -> Iterator[RawFrame]:
    """The frames of one work unit, analysed. The detector's tracking starts afresh at the unit's start.
    ``save_frames``: also write each analysed frame, annotated (boxes, landmarks, top expression, PSPI), to
    ``save_frames/<file name>/<frame>.jpg`` (an image: ``save_frames/<name>.annotated.jpg``, never its own name)."""
    analyzer.tracker.reset()
    if item.kind == "image":
        frames: Iterator[tuple[int, float | None, np.ndarray]] = iter([(0, None, read_image(item.file))])
    else:
        frames = video_frames(item.file, item.start, item.stop, every)
    for index, timestamp, image in frames:
        try:
            result = analyzer.analyze_frame(image)
        except AnalysisFault as exc:  # one frame the detector or model failed on: a row that says so, go on
            log.warning("%s frame %d: %s", item.file, index, exc.problem)
            analyzer.tracker.reset()
            yield RawFrame(item.file, index, timestamp, (), False, exc.problem)
            continue
        if save_frames is not None:
            name = f"{Path(item.file).stem}.annotated.jpg" if item.kind == "image" else None
            where = Path(save_frames) / name if name else Path(save_frames) / Path(item.file).name / f"{index:06d}.jpg"
            _save(where, image, result.faces)
        yield RawFrame(item.file, index, timestamp, tuple(result.faces), result.detector_ran)


def _save(path: Path, image: np.ndarray, faces: Sequence[FaceResult]) -> None:
    """The annotated frame as a JPEG; :class:`InputError` naming the file when it cannot be written."""
    from edge_sdk.pipeline.draw import annotate

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), annotate(image, faces)):
        raise InputError(f"--save-frames: cannot write {path}")


def schema_for(model: FaceModel, pain: bool = False) -> FaceTableSchema:
    """The table columns for ``model``'s heads."""
    heads = {h.name: h.labels for h in model.card.heads}
    kinds = {h.name: h.kind for h in model.card.heads}
    return FaceTableSchema.from_heads(heads, kinds, pain=pain)


class FileLabeler:
    """Adds, frame by frame in order, what needs the frames before: face ids (:class:`FaceIds` over the rows'
    boxes) and, with ``pain`` settings, the smoothed pain of the frame's largest face (``pspi_smoothed``,
    ``pain_score``, ``pain_state``) from :class:`PainMonitor` on the media clock."""

    def __init__(self, pain: PainSettings | None = None, has_pain: bool = True) -> None:
        self.ids = FaceIds()
        self.monitor = None if pain is None else PainMonitor(pain, available=has_pain)

    def label(self, rows: list[dict[str, object]]) -> tuple[list[int], PainStatus | None]:
        """Sets ``face_id`` (and the pain columns) on one frame's rows, in place; the ids and the pain status."""
        faces = [r for r in rows if r.get("success")]
        ids = self.ids.assign([(r["x"], r["y"], r["w"], r["h"]) for r in faces])  # type: ignore[misc]
        for row, fid in zip(faces, ids, strict=True):
            row["face_id"] = fid
        status = None
        if self.monitor is not None:
            first = faces[0] if faces else None
            t = rows[0].get("timestamp")
            t = float(t) if isinstance(t, (int, float)) else float(rows[0].get("frame") or 0)  # type: ignore[arg-type]
            fault = None if first is None else first.get("fault")
            pspi = None if first is None else first.get("pspi")
            status = self.monitor.update(t, pspi, fault, face=first is not None and not fault)  # type: ignore[arg-type]
            for row in rows:
                row["pspi_smoothed"] = None if status.smoothed is None else round(status.smoothed, 4)
                row["pain_score"] = None if status.score is None else round(status.score, 4)
                row["pain_state"] = status.state.value
        return ids, status
