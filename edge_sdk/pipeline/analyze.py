"""One image -> analysed faces: detect, select, align, infer, post-process (timed per stage)."""

from __future__ import annotations

import time

import numpy as np

from edge_sdk.contract.processing import describe_face, postprocess
from edge_sdk.face.align import crop_face
from edge_sdk.face.detect import FaceDetector
from edge_sdk.face.select import IntervalDetector, select_faces
from edge_sdk.model.face_model import FaceModel
from edge_sdk.pipeline.result import FaceResult

PAIN_UNAVAILABLE = "pain not available: model has no AU-intensity head"


class FaceAnalyzer:
    """Runs a :class:`FaceModel` on the faces a detector finds. Activations and PSPI come from the contract."""

    def __init__(
        self, model: FaceModel, detector: FaceDetector, faces: str = "largest", detect_interval: int = 1
    ) -> None:
        select_faces([], faces)  # validates the policy name
        self.model = model
        self.detector = detector
        self.policy = faces
        self.tracker = IntervalDetector(detector, detect_interval)
        self._kinds = {head.name: head.kind for head in model.card.heads}

    @property
    def has_pain(self) -> bool:
        return self.model.card.has_pain

    def analyze(self, image: np.ndarray, timings: dict[str, float]) -> tuple[list[FaceResult], bool]:
        """Faces (largest first) and whether the detector ran; adds detect/align/infer/post ms to ``timings``."""
        card = self.model.card
        t0 = time.perf_counter()
        found, ran = self.tracker.detect(image)
        faces = select_faces(found, self.policy)
        t1 = time.perf_counter()
        crops = [crop_face(image, face, card.input.width, card.input.height) for face in faces]
        t2 = time.perf_counter()
        results: list[FaceResult] = []
        if faces:
            raw = self.model.backend.run(self.model.preprocess([crop for crop, _ in crops]))
            t3 = time.perf_counter()
            outputs = postprocess(card, raw)
            for row, (face, (_, how)) in enumerate(zip(faces, crops, strict=True)):
                described = describe_face(card, outputs, row)
                pspi = described.pop("pspi", None)
                results.append(FaceResult(face, how, described, self._kinds, None if pspi is None else float(pspi)))  # type: ignore[arg-type]
        else:
            t3 = t2
        t4 = time.perf_counter()
        for stage, ms in (("detect", t1 - t0), ("align", t2 - t1), ("infer", t3 - t2), ("post", t4 - t3)):
            timings[stage] = ms * 1000.0
        return results, ran
