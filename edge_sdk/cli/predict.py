"""``edge-sdk predict``: run a model on face images and print every head per face (table or --json).

``--save OUT`` also writes an annotated copy of each image (boxes, landmarks, top expression, PSPI). It is
an explicit opt-in and, with ``analyze --save-frames``, the only way edge-sdk ever writes pixels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2

from edge_sdk.assembly import load_model
from edge_sdk.errors import InputError
from edge_sdk.face.detect import DETECTOR_KINDS, FaceDetector, WholeImageDetector, create_detector
from edge_sdk.face.select import FACE_POLICIES
from edge_sdk.pipeline.analyze import PAIN_UNAVAILABLE, FaceAnalyzer
from edge_sdk.pipeline.draw import annotate
from edge_sdk.pipeline.result import FaceResult

LABELS_PER_LINE = 6
SAVE_SUFFIXES = (".jpg", ".jpeg", ".png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files (jpg, png, ...)")
    parser.add_argument(
        "--model",
        default="demo",
        help="'demo' (default), a model artifact, an export folder (uses its pick.json), or a pulled model name",
    )
    parser.add_argument("--faces", choices=FACE_POLICIES, default="largest", help="largest face (default) or all")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--detector", choices=DETECTOR_KINDS, default="auto", help="face detector (default auto)")
    parser.add_argument("--detector-model", help="path to a YuNet .onnx")
    parser.add_argument("--backend", help="force an inference backend (onnxruntime, litert, openvino)")
    parser.add_argument("--threads", type=int, help="inference threads")
    parser.add_argument(
        "--save",
        type=Path,
        metavar="OUT",
        help="also write an annotated copy (boxes, landmarks, top expression, PSPI): OUT.jpg/.png for one image, "
        "a folder for several (IMAGE_STEM.annotated.jpg each). Opt-in: without --save (or `analyze --save-frames`) "
        "edge-sdk never writes pixels",
    )


def read_image(path: str) -> Any:
    if not Path(path).is_file():
        raise InputError(f"{path}: no such image file")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: not an image OpenCV can read")
    return image


def choose_detector(kind: str, model_path: str | None) -> FaceDetector:
    """Like ``run``, except that ``auto`` with no detector at all falls back to whole-image crops, loudly."""
    try:
        return create_detector(kind, model_path)
    except InputError as exc:
        if kind != "auto":
            raise
        print(f"warning: {exc}.\nwarning: treating each whole image as one face crop.", file=sys.stderr)
        return WholeImageDetector()


def format_face(number: int, face: FaceResult) -> str:
    """A readable block: the box, then each head as label/value columns."""
    x, y, w, h = face.face.box
    lines = [
        f"  face {number}: box x={x:.0f} y={y:.0f} w={w:.0f} h={h:.0f}  score {face.face.score:.2f}  ({face.crop})"
    ]
    width = max(len(name) for name in face.heads)
    for name, values in face.heads.items():
        label_width = max(len(label) for label in values)
        items = [f"{label:<{label_width}} {value:7.3f}" for label, value in values.items()]
        for start in range(0, len(items), LABELS_PER_LINE):
            head = name if start == 0 else ""
            lines.append(f"    {head:<{width}}  " + "   ".join(items[start : start + LABELS_PER_LINE]))
    if face.pspi is not None:
        lines.append(f"    {'PSPI':<{width}}  {face.pspi:.2f} (0-16)")
    return "\n".join(lines)


def save_targets(images: list[str], out: Path) -> list[Path]:
    """Where ``--save OUT`` writes each image's annotated copy; :class:`InputError` before any work when OUT
    cannot be used (unknown image type, missing folder, or an input image it would overwrite)."""
    if len(images) == 1 and out.suffix:
        if out.suffix.lower() not in SAVE_SUFFIXES:
            raise InputError(f"--save {out}: expected a {'/'.join(SAVE_SUFFIXES)} file name")
        if not out.parent.is_dir():
            raise InputError(f"--save {out}: the folder {out.parent} does not exist")
        targets = [out]
    else:
        if not out.is_dir():
            raise InputError(f"--save {out}: with {len(images)} images, --save needs an existing folder")
        targets = [out / f"{Path(image).stem}.annotated.jpg" for image in images]
        if len(set(targets)) < len(targets):
            raise InputError(f"--save {out}: two input images have the same name; save them one at a time")
    inputs = {Path(image).resolve() for image in images}
    for target in targets:
        if target.resolve() in inputs:
            raise InputError(f"--save {target}: that is an input image; choose another name")
    return targets


def save_annotated(image: Any, faces: list[FaceResult], target: Path) -> None:
    if not cv2.imwrite(str(target), annotate(image, faces)):
        raise InputError(f"--save {target}: OpenCV could not write the image there")


def run(args: argparse.Namespace) -> int:
    targets = save_targets(args.images, args.save) if args.save is not None else []
    images = [(path, read_image(path)) for path in args.images]
    model = load_model(args.model, args.backend, args.threads)
    detector = choose_detector(args.detector, args.detector_model)
    analyzer = FaceAnalyzer(model, detector, faces=args.faces)
    if not analyzer.has_pain:
        print(PAIN_UNAVAILABLE, file=sys.stderr)
    reports = []
    for path, image in images:
        faces = analyzer.analyze(image)
        reports.append((path, faces))
    for (path, image), (_, faces), target in zip(images, reports, targets, strict=False):
        save_annotated(image, faces, target)
        print(f"annotated {path} -> {target}", file=sys.stderr)
    if args.json:
        payload = [
            {
                "image": path,
                "model": model.card.name,
                "detector": detector.name,
                "faces": [f.to_record() for f in faces],
            }
            for path, faces in reports
        ]
        print(json.dumps(payload, indent=2))
        return 0
    print(f"model {model.card.name} on {model.info.backend} ({model.info.device}); detector {detector.description}")
    for path, faces in reports:
        print(f"\n{path}: {len(faces)} face(s)" + ("" if faces else " - no face found"))
        for number, face in enumerate(faces, 1):
            print(format_face(number, face))
    return 0
