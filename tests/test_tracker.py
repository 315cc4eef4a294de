"""The ROI face tracker (edge_sdk.face.track) on real video and on faces that enter and leave, and its settings."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_sdk.errors import InputError
from edge_sdk.face.detect import Face, YuNetDetector
from edge_sdk.face.select import select_faces
from edge_sdk.face.track import RoiTracker, TrackSettings, box_iou, tracking_detector
from edge_sdk.pipeline.config import DetectorSettings, build_config
from tests.runtime_fixtures import face_file, yunet_path

REFERENCE_EVERY = 6  # full-resolution reference detections on every 6th frame (each costs ~25 ms)


def video_frames(name: str) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(face_file(name)))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def landmark_error(face: Face, reference: Face) -> float:
    """Mean landmark distance as a fraction of the reference's inter-ocular distance."""
    assert face.landmarks is not None and reference.landmarks is not None
    iod = float(np.linalg.norm(reference.landmarks[0] - reference.landmarks[1]))
    return float(np.linalg.norm(face.landmarks - reference.landmarks, axis=1).mean()) / iod


def largest(faces: list[Face]) -> Face:
    return max(faces, key=lambda f: f.area)


def test_tracker_keeps_the_face_on_every_frame_with_fresh_landmarks_close_to_full_frame() -> None:
    """WolfgangLanger_Pexels.mp4 (472 frames, one moving face): the tracker finds the face on every frame, mostly
    in crops, and its landmarks are as close to full-resolution YuNet as whole-frame detection at 0.5 is."""
    frames = video_frames("WolfgangLanger_Pexels.mp4")
    assert len(frames) == 472
    tracker = RoiTracker(YuNetDetector(yunet_path(), scale=0.5), "largest", TrackSettings())
    tracked = [tracker.detect(frame) for frame in frames]
    assert all(len(faces) == 1 for faces in tracked), [i for i, f in enumerate(tracked) if len(f) != 1]
    assert tracker.full_runs <= len(frames) // 30 + 2 and tracker.roi_runs >= len(frames) - tracker.full_runs
    full_res, half = YuNetDetector(yunet_path(), scale=1.0), YuNetDetector(yunet_path(), scale=0.5)
    track_err, half_err, ious = [], [], []
    for index in range(0, len(frames), REFERENCE_EVERY):
        reference = largest(full_res.detect(frames[index]))
        track_err.append(landmark_error(tracked[index][0], reference))
        half_err.append(landmark_error(largest(half.detect(frames[index])), reference))
        ious.append(box_iou(tracked[index][0].box, reference.box))
    assert np.mean(track_err) <= 1.15 * np.mean(half_err), (np.mean(track_err), np.mean(half_err))
    assert np.mean(track_err) < 0.13 and max(track_err) < 0.4  # of the inter-ocular distance
    assert np.mean(ious) > 0.85 and min(ious) > 0.7


def paste(canvas: np.ndarray, image: np.ndarray, box: tuple[int, int, int, int], at: tuple[int, int], zoom: float):
    """Cut ``box`` (x, y, w, h) out of ``image``, zoom it and paste it at ``at``; the pasted (x, y, w, h)."""
    x, y, w, h = box
    patch = cv2.resize(image[y : y + h, x : x + w], (round(w * zoom), round(h * zoom)))
    canvas[at[1] : at[1] + patch.shape[0], at[0] : at[0] + patch.shape[1]] = patch
    return (at[0], at[1], patch.shape[1], patch.shape[0])


def scene(background: np.ndarray, with_a: bool, with_b: bool, shift: int) -> tuple[np.ndarray, dict[str, tuple]]:
    """A 960x540 room: face A (single_face.jpg, small, drifting right by ``shift``) and/or the larger face B."""
    frame = background.copy()
    where = {}
    if with_a:
        where["a"] = paste(
            frame, cv2.imread(str(face_file("single_face.jpg"))), (141, 97, 282, 352), (60 + shift, 150), 0.6
        )
    if with_b:
        where["b"] = paste(frame, cv2.imread(str(face_file("multi_face.jpg"))), (636, 226, 201, 264), (600, 120), 1.3)
    return frame, where


def inside(face: Face, region: tuple) -> bool:
    cx, cy = face.box[0] + face.box[2] / 2, face.box[1] + face.box[3] / 2
    return region[0] <= cx <= region[0] + region[2] and region[1] <= cy <= region[1] + region[3]


# frame range -> (face A shown, face B shown)
TIMELINE = [(range(0, 12), True, False), (range(12, 27), True, True), (range(27, 37), False, True)]
TIMELINE += [(range(37, 42), False, False), (range(42, 47), True, False)]


@pytest.mark.parametrize("policy", ["all", "largest"])
def test_faces_entering_and_leaving_are_found_and_never_kept_stale(policy: str) -> None:
    """A second, larger face entering is found at the next full-frame detection (``full_every``); a face that
    leaves is gone on that same frame; with no face nothing is reported; a returning face is found at once."""
    background = video_frames("no_face.mp4")[0]
    assert background.shape[:2] == (540, 960)
    tracker = RoiTracker(YuNetDetector(yunet_path(), scale=0.5), policy, TrackSettings(full_every=5))
    found_b_at = None
    for frames, with_a, with_b in TIMELINE:
        for index in frames:
            frame, where = scene(background, with_a, with_b, shift=index)
            faces = select_faces(tracker.detect(frame), policy)
            for face in faces:  # never a face where there is none (no stale box of a face that left)
                assert any(inside(face, region) for region in where.values()), (index, face.box, where)
            if found_b_at is None and "b" in where and any(inside(f, where["b"]) for f in faces):
                found_b_at = index
            if "b" in where and found_b_at is not None:  # B tracked from then on (A too for policy all)
                expected = ["b"] if policy == "largest" else sorted(where)
            else:  # A alone, or B not found yet (at most full_every - 1 frames)
                expected = ["a"] if "a" in where else []
            names = sorted(name for name, region in where.items() for f in faces if inside(f, region))
            assert names == expected, (index, names, expected)
    assert found_b_at == 15  # B entered at frame 12 and was found by the next full-frame detection (every 5)
    assert tracker.roi_runs > tracker.full_runs  # it did track in crops, not only full frames


def test_analyzer_wraps_only_yunet_and_settings_turn_tracking_off() -> None:
    yunet = YuNetDetector(yunet_path(), scale=0.5)
    assert isinstance(tracking_detector(yunet, "largest", TrackSettings()), RoiTracker)
    assert tracking_detector(yunet, "largest", None) is yunet
    assert DetectorSettings(track=False).tracking is None
    assert DetectorSettings(track_face_px=80, full_every=10).tracking == TrackSettings(80, 0.5, 10)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("detector.track_face_px", 8, "key 'detector.track_face_px' = 8"),
        ("detector.track_margin", 10.0, "key 'detector.track_margin' = 10.0"),
        ("detector.full_every", 0, "key 'detector.full_every' = 0"),
        ("detector.track", "yes", "key 'detector.track' = 'yes': expected bool"),
    ],
)
def test_bad_tracker_settings_name_the_key(key: str, value: object, expected: str) -> None:
    with pytest.raises(InputError) as err:
        build_config({}, {key: value})
    assert expected in str(err.value)


def test_tracker_settings_built_in_code_name_the_field() -> None:
    with pytest.raises(InputError, match="DetectorSettings: key 'detector.track_margin'"):
        DetectorSettings(track_margin=float("inf"))
    with pytest.raises(InputError, match="track face_px 8"):
        TrackSettings(face_px=8)
