"""Annotated pictures (edge_sdk.pipeline.draw.annotate and ``edge-sdk predict --save``) on real photos with the
real YuNet detector and the packaged demo model: boxes where the faces are, one legible label per face that
overlaps no other label, "no face" when there is none, and --save the only (explicit) way pixels are written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_sdk.errors import InputError
from edge_sdk.face.detect import YuNetDetector
from edge_sdk.model.face_model import SyntheticWeightsWarning
from edge_sdk.pipeline.alerts import PainState, PainStatus
from edge_sdk.pipeline.analyze import FaceAnalyzer
from edge_sdk.pipeline.draw import BOX_COLOR, LABEL_BACKGROUND, LABEL_COLOR, STATE_COLORS, annotate, face_label
from edge_sdk.pipeline.result import FrameResult
from tests.conftest import REPO
from tests.runtime_fixtures import face_file, yunet_path

SIZES = [(1000, 667), (640, 360)]  # the photo as it is, and a small video frame


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    with pytest.warns(SyntheticWeightsWarning):  # the packaged demo: its numbers mean nothing on real faces
        return FaceAnalyzer("demo", YuNetDetector(yunet_path()), faces="all")


def label_boxes(image: np.ndarray, color: tuple[int, int, int]) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x, y, w, h) of the solid areas of exactly ``color`` (the label backgrounds)."""
    mask = np.all(image == np.array(color, np.uint8), axis=2).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    return [tuple(int(v) for v in stats[i, :4]) for i in range(1, count) if stats[i, 4] > 60]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_face_gets_a_box_and_one_legible_label(analyzer: FaceAnalyzer, size: tuple[int, int]) -> None:
    image = cv2.resize(cv2.imread(str(face_file("multi_face.jpg"))), size, interpolation=cv2.INTER_AREA)
    original = image.copy()
    faces = analyzer.analyze(image)
    assert len(faces) == 5, len(faces)  # the five people in the photo
    out = annotate(image, faces)
    assert out.shape == image.shape and not np.array_equal(out, image) and np.array_equal(image, original)
    for face in faces:  # the box's edge is drawn on the face's left side
        x, y, w, h = (round(v) for v in face.face.box)
        edge = out[y + h // 4 : y + 3 * h // 4, max(0, x - 1) : x + 2]
        assert np.all(edge == np.array(BOX_COLOR, np.uint8), axis=2).mean() > 0.5, face.face.box
        assert "PSPI" in face_label(face) and face_label(face).split()[0] in face.expression
    labels = label_boxes(out, LABEL_COLOR)
    assert len(labels) == len(faces), labels  # overlapping labels would merge into fewer areas
    assert all(h >= 16 and w >= 100 for _, _, w, h in labels), labels  # legible: ~12 px text and more
    assert all(x >= 0 and y >= 0 and x + w <= size[0] and y + h <= size[1] for x, y, w, h in labels)


def test_no_face_says_so(analyzer: FaceAnalyzer) -> None:
    image = np.full((360, 640, 3), 180, np.uint8)
    assert analyzer.analyze(image) == []
    out = annotate(image, [])
    (box,) = label_boxes(out, LABEL_BACKGROUND)
    assert box[0] < 20 and box[1] < 20, box  # top-left corner
    assert box[3] >= 16, box


def test_a_frame_result_also_shows_the_pain_state(analyzer: FaceAnalyzer) -> None:
    image = cv2.imread(str(face_file("single_face.jpg")))
    faces = tuple(analyzer.analyze(image))
    frame = FrameResult(7, 1.0, 0.3, faces, PainStatus(PainState.ALERT, 5.2, 5.0, 5.0, 0.0))
    out = annotate(image, frame)
    (state,) = label_boxes(out, STATE_COLORS["alert"])
    assert state[0] < 20 and state[1] < 20 and state[3] >= 16, state  # "alert  score 5.0", top-left
    assert len(label_boxes(out, LABEL_COLOR)) == len(faces) == 1


def test_bad_image_is_one_clear_error() -> None:
    with pytest.raises(InputError, match=r"annotate: expected a BGR uint8 image of shape \(H, W, 3\)"):
        annotate(np.zeros((10, 10), np.uint8), [])


def _predict(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "edge_sdk", "predict", "--model", "demo", "--detector-model", str(yunet_path())]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_predict_save_writes_the_annotated_image_only_when_asked(tmp_path: Path) -> None:
    photo = face_file("multi_face.jpg")
    plain = _predict("--faces", "all", str(photo), cwd=tmp_path)
    assert plain.returncode == 0 and list(tmp_path.iterdir()) == [], (plain.stderr[-2000:], list(tmp_path.iterdir()))

    out = tmp_path / "annotated.jpg"
    done = _predict("--faces", "all", str(photo), "--save", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"annotated {photo} -> {out}" in done.stderr
    written = cv2.imread(str(out))
    assert written is not None and written.shape == cv2.imread(str(photo)).shape

    folder = tmp_path / "many"
    folder.mkdir()
    done = _predict(str(photo), str(face_file("single_face.jpg")), "--save", str(folder), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in folder.iterdir()) == ["multi_face.annotated.jpg", "single_face.annotated.jpg"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("out.gif", "expected a .jpg/.jpeg/.png file name"),
        ("missing/out.jpg", "does not exist"),
        ("INPUT", "that is an input image"),
    ],
)
def test_predict_save_refuses_bad_targets_before_any_work(tmp_path: Path, target: str, message: str) -> None:
    photo = tmp_path / "face.jpg"
    photo.write_bytes(face_file("single_face.jpg").read_bytes())
    before = photo.read_bytes()
    done = _predict(str(photo), "--save", str(photo) if target == "INPUT" else str(tmp_path / target), cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert photo.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["face.jpg"]


def test_predict_help_says_save_is_the_only_way_pixels_are_written() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edge_sdk", "predict", "--help"], capture_output=True, text=True, cwd=REPO
    )
    text = " ".join(done.stdout.split())
    assert "--save OUT" in text and "never writes pixels" in text, text
