"""The front door: ``import edge_sdk`` gives the public names (lazily), typed and documented with examples
that run; the library warns about synthetic weights and logs instead of printing."""

from __future__ import annotations

import doctest
import inspect
import io
import logging
import subprocess
import sys
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import edge_sdk
from tests.conftest import REPO
from tests.runtime_fixtures import face_file, pain_model, yunet_path

PUBLIC = (
    "FaceModel",
    "FaceDetector",
    "create_detector",
    "FaceAnalyzer",
    "FaceResult",
    "analyze_video",
    "build_pipeline",
    "RunConfig",
    "ModelCard",
    "FrameResult",
    "SyntheticWeightsWarning",
)


def test_import_edge_sdk_loads_no_runtime_until_a_name_is_used() -> None:
    """A fresh interpreter: ``import edge_sdk`` is light (no OpenCV, no ONNX Runtime); the names are there."""
    code = (
        "import sys, edge_sdk; heavy = [m for m in ('cv2', 'onnxruntime', 'numpy') if m in sys.modules]; "
        "print(heavy, sorted(edge_sdk.__all__) == sorted(dir(edge_sdk)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[] True", done.stdout + done.stderr


def test_every_public_name_is_exported_typed_and_documented() -> None:
    assert set(PUBLIC) <= set(edge_sdk.__all__)
    for name in PUBLIC:
        value = getattr(edge_sdk, name)
        assert value.__module__.startswith("edge_sdk."), name
        assert len(inspect.getdoc(value) or "") > 30, f"{name} has no real docstring"
        target = value if inspect.isfunction(value) else getattr(value, "__init__", None)
        if target is None or not getattr(target, "__module__", "").startswith("edge_sdk"):
            continue  # (a class without its own __init__)
        parameters = inspect.signature(target).parameters.values()
        untyped = [p.name for p in parameters if p.name != "self" and p.annotation is inspect.Parameter.empty]
        assert not untyped, f"{name}: untyped parameters {untyped}"
        assert "return" in target.__annotations__, f"{name}: no return type"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        edge_sdk.nope  # noqa: B018


def test_the_docstring_examples_run() -> None:
    import edge_sdk.model.face_model
    import edge_sdk.pipeline.alerts

    for module in (edge_sdk, edge_sdk.model.face_model, edge_sdk.pipeline.alerts):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted >= 2 and result.failed == 0, module.__name__


def test_analyze_one_image_in_four_lines_like_the_readme() -> None:
    """The README example, with the detector named (YuNet from the shared test data)."""
    image = face_file("single_face.jpg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        analyzer = edge_sdk.FaceAnalyzer("demo", edge_sdk.create_detector("yunet", yunet_path()))
    assert [w.category for w in caught] == [edge_sdk.SyntheticWeightsWarning]
    assert "SYNTHETIC DEMO" in str(caught[0].message)
    faces = analyzer.analyze(image)  # a path; no timings argument
    assert len(faces) == 1 and isinstance(faces[0], edge_sdk.FaceResult)
    face = faces[0]
    assert face.pspi is not None and 0.0 <= face.pspi <= 16.0
    assert face.expression is not None and abs(sum(face.expression.values()) - 1.0) < 1e-2
    assert face.au_intensities is not None and set(face.valence_arousal or {}) == {"valence", "arousal"}
    import cv2

    same = analyzer.analyze(cv2.imread(str(image)))  # an array gives the same
    assert same[0].pspi == pytest.approx(face.pspi)
    frame = analyzer.analyze_frame(image)  # what the runtime loop uses
    assert frame.detector_ran and set(frame.timings) == {"detect", "align", "infer", "post"}
    assert frame.faces[0].pspi == pytest.approx(face.pspi)


def test_the_warning_comes_once_per_load_and_bad_images_name_the_file(tmp_path: Path) -> None:
    with pytest.warns(edge_sdk.SyntheticWeightsWarning):
        model = edge_sdk.FaceModel(pain_model())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a loaded model is not loaded (or warned about) again
        analyzer = edge_sdk.FaceAnalyzer(model, edge_sdk.create_detector("yunet", yunet_path()))
        assert analyzer.analyze(np.zeros((240, 320, 3), np.uint8)) == []  # no face: an empty list
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not an image")
    from edge_sdk.errors import InputError

    with pytest.raises(InputError, match=f"{bad}: not an image"):
        analyzer.analyze(bad)
    with pytest.raises(InputError, match="no such image file"):
        analyzer.analyze(tmp_path / "missing.jpg")


def test_analyze_video_is_exported() -> None:
    analyze_video = edge_sdk.analyze_video
    assert analyze_video.__module__ == "edge_sdk.analysis.video"
    params = inspect.signature(analyze_video).parameters
    assert list(params)[:3] == ["path", "model", "every"] and params["model"].default == "demo"


def test_the_library_logs_and_never_prints(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A whole pipeline run on a real clip: nothing on stdout; the notices are log records of edge_sdk."""
    from edge_sdk.pipeline.config import build_config

    values = {"source": str(face_file("single_face.mp4")), "model": pain_model(), "detector.model": str(yunet_path())}
    config = build_config({}, {**values, "max_frames": 8, "status_every_s": 0, "log_dir": str(tmp_path)})
    out = io.StringIO()
    caplog.set_level(logging.INFO, logger="edge_sdk")
    with redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore", edge_sdk.SyntheticWeightsWarning)
        pipeline, capture = edge_sdk.build_pipeline(config)
        summary = pipeline.run(capture)
    assert summary.frames == 8 and out.getvalue() == ""
    names = {record.name for record in caplog.records}
    assert {"edge_sdk.assembly"} <= names and all(name.startswith("edge_sdk.") for name in names)
    assert any("face detector: yunet" in record.getMessage() for record in caplog.records)
