"""Face detection, selection and alignment: frame in, model-ready face crops out."""

from edge_sdk.face.align import ARCFACE_TEMPLATE_112, box_crop, crop_face, template_for
from edge_sdk.face.detect import (
    DETECTOR_KINDS,
    Face,
    FaceDetector,
    HaarDetector,
    WholeImageDetector,
    YuNetDetector,
    create_detector,
    find_yunet_model,
)
from edge_sdk.face.select import FACE_POLICIES, IntervalDetector, select_faces
from edge_sdk.face.track import RoiTracker, TrackSettings, tracking_detector

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "DETECTOR_KINDS",
    "FACE_POLICIES",
    "Face",
    "FaceDetector",
    "HaarDetector",
    "IntervalDetector",
    "RoiTracker",
    "TrackSettings",
    "WholeImageDetector",
    "YuNetDetector",
    "box_crop",
    "create_detector",
    "crop_face",
    "find_yunet_model",
    "select_faces",
    "template_for",
    "tracking_detector",
]
