"""One image -> analysed faces: detect, select, align, infer, post-process (timed per stage).

A detector or model that raises becomes an :class:`AnalysisFault`; a face whose outputs are non-finite or
outside the card's ranges (:func:`~edge_sdk.contract.output_check.output_problems`) keeps its values for
the record but carries the ``problem`` and no PSPI: it is never scored.

Example (the packaged synthetic demo model, so its numbers mean nothing on real faces)::

    from edge_sdk import FaceAnalyzer
    faces = FaceAnalyzer("demo").analyze("single_face.jpg")
    print(faces[0].expression, faces[0].pspi)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

import cv2
import numpy as np

from edge_sdk.contract.output_check import output_problems
from edge_sdk.contract.processing import describe_face, postprocess
from edge_sdk.errors import EdgeSdkError, InputError
from edge_sdk.face.align import crop_face
from edge_sdk.face.detect import FaceDetector, create_detector
from edge_sdk.face.select import IntervalDetector, select_faces
from edge_sdk.face.track import TrackSettings, tracking_detector
from edge_sdk.model.face_model import FaceModel
from edge_sdk.pipeline.result import FaceResult

PAIN_UNAVAILABLE = "pain not available: model has no AU-intensity head"
MAX_PROBLEM_CHARS = 200  # a problem goes into records and events: keep it one short line

T = TypeVar("T")


class AnalysisFault(EdgeSdkError):
    """The detector or the model failed on a frame (``stage``: detect, align or infer)."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        self.stage = stage
        self.problem = f"{stage} failed: {type(exc).__name__}: {exc}"[:MAX_PROBLEM_CHARS]
        super().__init__(self.problem)


class FrameAnalysis(NamedTuple):
    """What :meth:`FaceAnalyzer.analyze_frame` found in one image."""

    faces: list[FaceResult]  # largest first
    detector_ran: bool  # False: the faces were carried over from an earlier frame (``detect_interval`` > 1)
    timings: dict[str, float]  # milliseconds per stage: detect, align, infer, post


def read_image(path: str | Path) -> np.ndarray:
    """An image file as a BGR uint8 array; :class:`InputError` naming the file when it is missing or unreadable."""
    if not Path(path).is_file():
        raise InputError(f"{path}: no such image file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: not an image OpenCV can read (expected a JPEG, PNG, BMP, ... file)")
    return image


def _stage(stage: str, call: Callable[[], T]) -> T:
    """``call()``, its failure as an :class:`AnalysisFault` naming ``stage``."""
    try:
        return call()
    except Exception as exc:  # any failure of a detector or runtime is a fault of this frame, never a crash
        raise AnalysisFault(stage, exc) from exc


class FaceAnalyzer:
    """Runs a :class:`FaceModel` on the faces a detector finds. Activations and PSPI come from the contract.

    >>> from edge_sdk.face.detect import WholeImageDetector
    >>> analyzer = FaceAnalyzer("demo", WholeImageDetector())  # doctest: +SKIP (warns: synthetic demo weights)
    >>> faces = analyzer.analyze(np.full((112, 112, 3), 128, np.uint8))  # doctest: +SKIP
    >>> sorted(faces[0].heads)  # doctest: +SKIP
    ['au_intensity', 'au_occurrence', 'expression', 'valence_arousal']
    """

    def __init__(
        self,
        model: FaceModel | str | Path = "demo",
        detector: FaceDetector | str | None = None,
        faces: str = "largest",
        detect_interval: int = 1,
        track: TrackSettings | None = None,
    ) -> None:
        """``model``: a :class:`FaceModel`, or what :class:`FaceModel` loads (``"demo"``, a file, a pulled
        model's name, an export folder). ``detector``: a :class:`FaceDetector`, or a kind for
        :func:`~edge_sdk.face.detect.create_detector` (None: ``"auto"``, YuNet else Haar). ``faces``:
        ``"largest"`` (one face per image) or ``"all"``. ``track``: follow faces in small crops between
        full-frame detections (:class:`RoiTracker`, YuNet only); None (the default, right for unrelated still
        images) detects on the whole image every time. ``detect_interval`` > 1 reuses the last faces between
        detector runs (tracked or not)."""
        select_faces([], faces)  # validates the policy name
        if not isinstance(model, FaceModel):
            model = FaceModel(model)
        if detector is None or isinstance(detector, str):
            detector = create_detector(detector or "auto")
        self.model = model
        self.detector = tracking_detector(detector, faces, track)
        self.policy = faces
        self.tracker = IntervalDetector(self.detector, detect_interval)
        self._kinds = {head.name: head.kind for head in model.card.heads}

    @property
    def has_pain(self) -> bool:
        return self.model.card.has_pain

    def analyze(self, image: np.ndarray | str | Path) -> list[FaceResult]:
        """The faces in ``image`` (a BGR uint8 array or an image file), largest first, every head of the model
        on each (and its PSPI when the model has an AU-intensity head).

        Raises :class:`AnalysisFault` when the detector or the model fails, :class:`InputError` for a file
        that is not an image."""
        return self.analyze_frame(image).faces

    def analyze_frame(self, image: np.ndarray | str | Path) -> FrameAnalysis:
        """:meth:`analyze` with whether the detector ran on this image and the milliseconds of each stage
        (what the runtime loop records per frame)."""
        if not isinstance(image, np.ndarray):
            image = read_image(image)
        card = self.model.card
        t0 = time.perf_counter()
        found, ran = _stage("detect", lambda: self.tracker.detect(image))
        faces = select_faces(found, self.policy)
        t1 = time.perf_counter()
        spec = card.input
        crops = _stage("align", lambda: [crop_face(image, f, spec.width, spec.height, spec.crop) for f in faces])
        t2 = time.perf_counter()
        results: list[FaceResult] = []
        if faces:
            batch = [crop for crop, _ in crops]
            raw = _stage("infer", lambda: self.model.backend.run(self.model.preprocess(batch)))
            t3 = time.perf_counter()
            outputs = _stage("infer", lambda: postprocess(card, raw))
            problems = output_problems(card, outputs)
            for row, (face, (_, how)) in enumerate(zip(faces, crops, strict=True)):
                described = describe_face(card, outputs, row)
                pspi = described.pop("pspi", None)
                problem = None if problems[row] is None else f"bad model output: {problems[row]}"[:MAX_PROBLEM_CHARS]
                score = None if pspi is None or problem else float(pspi)  # type: ignore[arg-type]
                results.append(FaceResult(face, how, described, self._kinds, score, problem))  # type: ignore[arg-type]
        else:
            t3 = t2
        t4 = time.perf_counter()
        stages = (("detect", t1 - t0), ("align", t2 - t1), ("infer", t3 - t2), ("post", t4 - t3))
        return FrameAnalysis(results, ran, {stage: seconds * 1000.0 for stage, seconds in stages})
