"""Annotated pictures of results: face boxes, the 5 landmarks, the top expression and PSPI per face.

Nothing here writes a file. The CLI writes an annotated image only when asked to (``edge-sdk predict IMAGE
--save OUT.jpg``, ``edge-sdk analyze --save-frames``): pixels never leave the device otherwise.

Example (the packaged synthetic demo model, so its numbers mean nothing on real faces)::

    import cv2
    from edge_sdk import FaceAnalyzer
    from edge_sdk.pipeline.draw import annotate

    image = cv2.imread("single_face.jpg")
    cv2.imwrite("annotated.jpg", annotate(image, FaceAnalyzer("demo").analyze(image)))
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edge_sdk.errors import InputError
from edge_sdk.pipeline.result import FaceResult, FrameResult

BOX_COLOR = (60, 200, 60)  # BGR
FAULT_COLOR = (0, 140, 255)
# Landmarks in ArcFace order: the subject's right eye, left eye, nose tip, right and left mouth corners.
LANDMARK_COLORS = ((255, 128, 0), (255, 128, 0), (0, 220, 255), (200, 60, 255), (200, 60, 255))
STATE_COLORS = {"alert": (0, 0, 200), "clear": (30, 100, 30), "calibrating": (0, 110, 190)}
TEXT_COLOR = (255, 255, 255)
LABEL_COLOR = (30, 100, 30)  # dark green: white text stays readable on it
FAULT_LABEL = (0, 90, 170)
LABEL_BACKGROUND = (40, 40, 40)
FONT = cv2.FONT_HERSHEY_SIMPLEX
REFERENCE_SIDE = 640.0  # the font scale is 0.5 for an image whose shorter side is this long (scaled with it)


def annotate(image: np.ndarray, results: Sequence[FaceResult] | FrameResult) -> np.ndarray:
    """A copy of ``image`` (BGR uint8, H x W x 3) with every face drawn on it.

    ``results``: the faces of :meth:`~edge_sdk.pipeline.analyze.FaceAnalyzer.analyze`, or a whole
    :class:`~edge_sdk.pipeline.result.FrameResult` (then the pain state and score are written in the top-left
    corner too). Each face gets its box, its landmarks (when the detector gave them), a number (largest face
    is 1) and a label: the top expression with its probability and the PSPI when the model scores pain; a face
    whose outputs were out of range says ``not scored``. No face at all: ``no face`` in the top-left corner.
    Text and lines scale with the image, so labels stay legible from 320 to 4000 pixels.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = getattr(image, "shape", type(image).__name__)
        raise InputError(f"annotate: expected a BGR uint8 image of shape (H, W, 3), got {got}")
    frame = results if isinstance(results, FrameResult) else None
    faces = list(frame.faces if frame is not None else results)
    out = image.copy()
    style = _Style.for_image(out)
    for face in faces:
        _draw_face(out, face, style)
    taken: list[Rect] = []
    lines = []
    if frame is not None:
        score = frame.pain.score
        lines.append(f"{frame.pain.state.value}" + (f"  score {score:.1f}" if score is not None else ""))
    if not faces:
        lines.append("no face")
    y = style.margin
    for line in lines:
        color = STATE_COLORS.get(frame.pain.state.value, LABEL_BACKGROUND) if frame else LABEL_BACKGROUND
        taken.append(_draw_label(out, line, (style.margin, y), style, color))
        y = taken[-1][3] + style.margin
    boxes = [_rect(face) for face in faces]
    placed = []
    for number, face in enumerate(faces, 1):
        text = f"{number}  {face_label(face)}".rstrip()
        box_w, box_h, _ = _label_size(text, style)
        x, y = _place_label(out.shape, face, (box_w, box_h), style, taken, boxes)
        taken.append((x, y, x + box_w, y + box_h))
        placed.append((text, (x, y), FAULT_LABEL if face.problem is not None else LABEL_COLOR, taken[-1]))
    for (x0, y0, _, y1), (_, _, color, (_, top, _, bottom)) in zip(boxes, placed, strict=True):
        if bottom < y0 - style.line or top > y1 + style.line:  # stepped away from its face: a leader line
            ends = (bottom, y0) if bottom < y0 else (top, y1)
            line_color = BOX_COLOR if color == LABEL_COLOR else FAULT_COLOR  # the colour of its box
            cv2.line(out, (x0 + style.line, ends[0]), (x0 + style.line, ends[1]), line_color, style.line)
    for text, top_left, color, _ in placed:  # labels last: nothing is drawn over their text
        _draw_label(out, text, top_left, style, color)
    return out


def face_label(face: FaceResult) -> str:
    """``happy 0.81  PSPI 2.4``: the top expression and the PSPI, what :func:`annotate` writes by a face."""
    parts = []
    expression = face.expression
    if expression:
        finite = {k: v for k, v in expression.items() if np.isfinite(v)}
        if finite:
            top = max(finite, key=finite.__getitem__)
            parts.append(f"{top} {finite[top]:.2f}")
    if face.problem is not None:
        parts.append("not scored")
    elif face.pspi is not None:
        parts.append(f"PSPI {face.pspi:.1f}")
    return "  ".join(parts)


class _Style:
    """Font scale, line widths and margins for one image size."""

    def __init__(self, scale: float) -> None:
        self.font_scale = scale
        self.text_thickness = max(1, round(scale * 2))
        self.line = max(2, round(scale * 4))
        self.dot = max(2, round(scale * 5))
        self.margin = max(4, round(scale * 10))

    @classmethod
    def for_image(cls, image: np.ndarray) -> _Style:
        side = min(image.shape[:2])
        return cls(float(np.clip(0.5 * side / REFERENCE_SIDE * 1.6, 0.45, 2.5)))


def _draw_face(out: np.ndarray, face: FaceResult, style: _Style) -> None:
    x, y, w, h = (round(v) for v in face.face.box)
    color = FAULT_COLOR if face.problem is not None else BOX_COLOR
    cv2.rectangle(out, (x, y), (x + w, y + h), color, style.line, cv2.LINE_AA)
    if face.face.landmarks is not None:
        for (px, py), dot_color in zip(face.face.landmarks, LANDMARK_COLORS, strict=False):
            cv2.circle(out, (round(float(px)), round(float(py))), style.dot, dot_color, -1, cv2.LINE_AA)


Rect = tuple[int, int, int, int]  # x0, y0, x1, y1


def _label_size(text: str, style: _Style) -> tuple[int, int, int]:
    """(box width, box height, text height) of a label."""
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, style.font_scale, style.text_thickness)
    pad = max(2, style.margin // 2)
    return text_w + 2 * pad, text_h + baseline + 2 * pad, text_h


def _place_label(
    shape: tuple[int, ...], face: FaceResult, size: tuple[int, int], style: _Style, taken: list[Rect], faces: list[Rect]
) -> tuple[int, int]:
    """Top-left corner for a face's label: just above its box, else just below, else stepped further up or
    down, else inside its top: the first spot inside the image that covers no label placed before and no
    other face, else the first that covers no label, else just above the box."""
    x, y, w, h = (round(v) for v in face.face.box)
    box_w, box_h = size
    height, width = shape[:2]
    gap = style.line
    left = int(np.clip(x - gap // 2, 0, max(0, width - box_w)))
    candidates = [y - gap // 2 - box_h, y + h + gap // 2]
    candidates += [y - gap // 2 - box_h * k for k in range(2, 5)] + [y + h + gap // 2 + box_h * k for k in range(1, 4)]
    candidates.append(y + gap)  # inside the box's top: covers the forehead, so last
    fitting = [top for top in candidates if 0 <= top <= height - box_h] or [int(np.clip(candidates[0], 0, height))]
    own = _rect(face)
    others = [r for r in faces if r != own]
    for obstacles in (taken + others, taken):
        for top in fitting:
            rect = (left, top, left + box_w, top + box_h)
            if not any(_overlap(rect, other) for other in obstacles):
                return left, top
    return left, fitting[0]


def _rect(face: FaceResult) -> Rect:
    x, y, w, h = (round(v) for v in face.face.box)
    return x, y, x + w, y + h


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _draw_label(
    out: np.ndarray, text: str, top_left: tuple[int, int], style: _Style, color: tuple[int, int, int]
) -> Rect:
    """White text on a filled box of ``color`` with its top-left corner at ``top_left``; the box drawn."""
    box_w, box_h, text_h = _label_size(text, style)
    pad = max(2, style.margin // 2)
    x, top = top_left
    cv2.rectangle(out, (x, top), (x + box_w, top + box_h), color, -1)
    cv2.putText(
        out, text, (x + pad, top + pad + text_h), FONT, style.font_scale, TEXT_COLOR, style.text_thickness, cv2.LINE_AA
    )
    return x, top, x + box_w, top + box_h
