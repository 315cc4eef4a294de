"""edge-sdk: on-device facial behaviour analysis (AUs, expression, valence/arousal, PSPI).

Data path: ``capture`` -> ``face`` -> ``model`` -> ``backend`` -> ``pipeline`` -> ``store``.
This package is the device runtime: it needs numpy, opencv-python-headless and one inference
runtime, and never imports torch, NNCF, TensorFlow or the workstation ``export`` package.

The public names below are loaded on first use, so that ``import edge_sdk.store`` (a log writer
process) does not pay for OpenCV and the inference runtimes.

One image (the packaged ``"demo"`` model has synthetic weights: it warns, and its numbers mean nothing
on real people)::

    import edge_sdk
    faces = edge_sdk.FaceAnalyzer("demo").analyze("single_face.jpg")
    print(faces[0].expression, faces[0].au_intensities, faces[0].pspi)

A recording, frame by frame (``.to_dataframe()``: one row per frame per face, with the ``data`` extra)::

    video = edge_sdk.analyze_video("clip.mp4", model="demo", every=2)
    table = video.to_dataframe()

The bedside monitor (capture, pain state, encrypted log) as a kiosk app::

    pipeline, capture = edge_sdk.build_pipeline(edge_sdk.RunConfig(source="0", log_dir="log"))
    pipeline.run(capture)

Library code never prints: it logs through :mod:`logging` (loggers named ``edge_sdk.*``; add a handler to
see them, as the ``edge-sdk`` command does) and warns through :mod:`warnings`
(:class:`SyntheticWeightsWarning`).

>>> import edge_sdk
>>> sorted(set(edge_sdk.__all__) - {"__version__"}) == sorted(edge_sdk._PUBLIC)
True
>>> edge_sdk.RunConfig(source="clip.mp4").faces
'largest'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edge_sdk.version import __version__

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name is imported on first use
    from edge_sdk.analysis.video import AnalyzedFrame, VideoAnalysis, analyze_video
    from edge_sdk.assembly import build_pipeline
    from edge_sdk.contract.card import ModelCard
    from edge_sdk.face.detect import FaceDetector, create_detector
    from edge_sdk.model.face_model import FaceModel, SyntheticWeightsWarning
    from edge_sdk.pipeline.analyze import FaceAnalyzer
    from edge_sdk.pipeline.config import RunConfig
    from edge_sdk.pipeline.result import FaceResult, FrameResult

# public name -> module that defines it
_PUBLIC = {
    "FaceModel": "edge_sdk.model.face_model",
    "SyntheticWeightsWarning": "edge_sdk.model.face_model",
    "ModelCard": "edge_sdk.contract.card",
    "FaceDetector": "edge_sdk.face.detect",
    "create_detector": "edge_sdk.face.detect",
    "FaceAnalyzer": "edge_sdk.pipeline.analyze",
    "FaceResult": "edge_sdk.pipeline.result",
    "FrameResult": "edge_sdk.pipeline.result",
    "analyze_video": "edge_sdk.analysis.video",
    "VideoAnalysis": "edge_sdk.analysis.video",
    "AnalyzedFrame": "edge_sdk.analysis.video",
    "build_pipeline": "edge_sdk.assembly",
    "RunConfig": "edge_sdk.pipeline.config",
}

__all__ = [
    "AnalyzedFrame",
    "FaceAnalyzer",
    "FaceDetector",
    "FaceModel",
    "FaceResult",
    "FrameResult",
    "ModelCard",
    "RunConfig",
    "SyntheticWeightsWarning",
    "VideoAnalysis",
    "__version__",
    "analyze_video",
    "build_pipeline",
    "create_detector",
]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'edge_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
