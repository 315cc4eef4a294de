"""Face detection (YuNet on real images), selection policy and alignment."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_sdk.errors import InputError
from edge_sdk.face import (
    ARCFACE_TEMPLATE_112,
    Face,
    IntervalDetector,
    WholeImageDetector,
    YuNetDetector,
    box_crop,
    create_detector,
    crop_face,
    select_faces,
    template_for,
)
from edge_sdk.face.align import similarity_transform
from edge_sdk.face.detect import haar_cascade_path
from tests.runtime_fixtures import face_file, yunet_path


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    return YuNetDetector(yunet_path(), scale=1.0)


def test_yunet_finds_the_five_faces_of_multi_face(yunet: YuNetDetector) -> None:
    image = cv2.imread(str(face_file("multi_face.jpg")))
    faces = yunet.detect(image)
    assert len(faces) == 5
    assert all(f.landmarks is not None and f.landmarks.shape == (5, 2) for f in faces)
    assert len(select_faces(faces, "all")) == 5
    largest = select_faces(faces, "largest")
    assert len(largest) == 1 and largest[0].area == max(f.area for f in faces)


def test_detecting_at_half_scale_maps_boxes_back_to_the_frame(yunet: YuNetDetector) -> None:
    image = cv2.imread(str(face_file("single_face.jpg")))
    full = yunet.detect(image)
    half = YuNetDetector(yunet_path(), scale=0.5).detect(image)
    assert len(full) == len(half) == 1
    tolerance = 0.06 * full[0].box[2]  # a few % of the face width: half-resolution detection is coarser
    assert np.allclose(full[0].box, half[0].box, atol=tolerance)
    assert np.allclose(full[0].landmarks, half[0].landmarks, atol=tolerance)


def test_alignment_puts_the_landmarks_on_the_template(yunet: YuNetDetector) -> None:
    image = cv2.imread(str(face_file("single_face.jpg")))
    face = yunet.detect(image)[0]
    crop, how = crop_face(image, face, 112, 112)
    assert how == "aligned" and crop.shape == (112, 112, 3)
    # the warp that aligned the crop maps the detected landmarks onto the template (similarity fit)
    matrix = similarity_transform(face.landmarks, template_for(112, 112))
    mapped = cv2.transform(face.landmarks[None].astype(np.float64), matrix)[0]
    assert np.abs(mapped - template_for(112, 112)).max() < 6
    # and agrees with OpenCV's robust estimator
    reference, _ = cv2.estimateAffinePartial2D(face.landmarks, template_for(112, 112), method=cv2.LMEDS)
    assert np.allclose(matrix, reference, atol=0.05 * np.abs(reference).max())
    # the subject's right eye (template point 0) is the left one in the image
    assert face.landmarks[0, 0] < face.landmarks[1, 0]


def test_similarity_transform_recovers_a_known_rotation_scale_and_shift() -> None:
    angle, scale, shift = np.deg2rad(20), 1.7, np.array([5.0, -3.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = ARCFACE_TEMPLATE_112.astype(np.float64)
    dst = src @ (scale * rotation).T + shift
    matrix = similarity_transform(src, dst)
    assert np.allclose(matrix[:, :2], scale * rotation) and np.allclose(matrix[:, 2], shift)
    assert similarity_transform(np.ones((5, 2)), dst) is None


def test_template_scales_with_the_model_input() -> None:
    assert np.allclose(template_for(224, 224), template_for(112, 112) * 2)


def test_box_crop_without_landmarks_is_square_and_padded_at_borders() -> None:
    image = np.full((100, 200, 3), 50, np.uint8)
    image[:, :20] = 200
    crop = box_crop(image, (-10.0, 10.0, 40.0, 60.0), 64, 64)
    assert crop.shape == (64, 64, 3)
    face = Face((10.0, 10.0, 40.0, 40.0), 1.0)
    assert crop_face(image, face, 32, 48)[1] == "box"
    assert crop_face(image, face, 32, 48)[0].shape == (48, 32, 3)


def test_degenerate_landmarks_fall_back_to_a_box_crop() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    face = Face((10.0, 10.0, 50.0, 50.0), 1.0, np.zeros((5, 2), np.float32))
    assert crop_face(image, face, 64, 64)[1] == "box"


def test_interval_detector_reuses_faces_between_detections(yunet: YuNetDetector) -> None:
    image = cv2.imread(str(face_file("single_face.jpg")))
    tracker = IntervalDetector(yunet, interval=3)
    ran = [tracker.detect(image)[1] for _ in range(6)]
    assert ran == [True, False, False, True, False, False]
    blank = np.zeros_like(image)
    tracker.reset()
    assert [tracker.detect(blank)[1] for _ in range(3)] == [True, True, True]  # nothing found: detect every frame


def test_detector_choice_and_messages() -> None:
    assert create_detector("auto", yunet_path()).name == "yunet"
    assert isinstance(create_detector("none"), WholeImageDetector)
    with pytest.raises(InputError, match="no such file"):
        create_detector("yunet", "/nonexistent/yunet.onnx")
    with pytest.raises(InputError, match="expected one of"):
        create_detector("mtcnn")
    with pytest.raises(InputError, match="expected one of"):
        select_faces([], "biggest")


def test_haar_fallback_is_used_or_its_absence_explained() -> None:
    if haar_cascade_path() is not None:  # OpenCV 4.x wheels ship the cascades
        assert create_detector("haar").name == "haar"
    else:  # OpenCV 5 dropped CascadeClassifier: the error must say what to do instead
        with pytest.raises(InputError, match="detector-model"):
            create_detector("haar")


def test_not_a_yunet_model_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a usable YuNet model"):
        YuNetDetector(bad)
