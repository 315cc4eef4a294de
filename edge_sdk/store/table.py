"""The per-frame, per-face table: one typed column schema for ``edge-sdk analyze`` and ``log export --table faces``.

One row per face per frame, shaped like OpenFace's CSV and py-feat's DataFrame, numbers only (no JSON text):

==================  ======  ==========================================================================
column              type    meaning
==================  ======  ==========================================================================
file                string  the video or image analysed (``log export``: the session pseudonym)
frame               int     frame index in the file, from 0 (an image: 0)
timestamp           float   media seconds into the file (an image: empty; a camera session: seconds
                            since the session's first frame)
face_id             int     the face, tracked across frames by box overlap (empty when ``success`` 0)
success             int     1: a face was analysed; 0: no face in this frame (the row's face columns
                            are empty, as OpenFace's ``success`` 0)
det_score           float   the face detector's confidence (OpenFace's ``confidence``)
x, y, w, h          float   the face box in frame pixels
AU01_r ...          float   AU intensities (0-5), AUs in numeric order with two digits (AU01, AU04, AU12)
AU01_c ...          int     AU occurrence, 0/1 (probability >= 0.5), as OpenFace's ``_c``
AU01_p ...          float   AU occurrence probability (0-1), what py-feat calls ``AU01``
expr_neutral ...    float   expression probabilities by name (neutral, happy, sad, surprise, fear, disgust,
                            anger, contempt; then any others by name)
valence, arousal    float   -1..1
pspi                float   Prkachin-Solomon pain intensity of this face (empty: not scored)
fault               string  why this face was not scored (bad model output), else empty
==================  ======  ==========================================================================

With pain (``analyze --pain``, and always in ``log export --table faces``) three frame-level columns follow:
``pspi_smoothed``, ``pain_score`` and ``pain_state`` (of the frame's largest face). ``log export`` adds
``time`` (the wall-clock capture time, ISO 8601 UTC) first.

Which AU, expression and valence/arousal columns appear depends on the model's heads; a model without a
head simply has none of its columns. CSV is written with the standard library, Parquet with pyarrow (typed
columns: int64, float64, string).

This module imports only the standard library (pyarrow lazily): the log reader uses it without OpenCV.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from edge_sdk.contract.card import EXPRESSION_LABELS
from edge_sdk.errors import EdgeSdkError, InputError

#: Head kinds of a model card (``edge_sdk.contract``) that have columns here.
AU_INTENSITY, AU_OCCURRENCE, EXPRESSION, VALENCE_AROUSAL = (
    "au_intensity",
    "au_occurrence",
    "expression",
    "valence_arousal",
)
TABLE_FORMATS = ("csv", "parquet")
OCCURRENCE_THRESHOLD = 0.5  # AUxx_c = 1 when the occurrence probability is at least this
FRAME_MATCH_IOU = 0.3  # a face is the same as one in an earlier frame when their boxes overlap this much
MAX_ID_GAP_FRAMES = 30  # a face unseen for more analysed frames than this gets a new id when it returns

_AU = re.compile(r"^AU0*(\d+)(.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # "string" | "int" | "float"


BASE_COLUMNS = (
    Column("file", "string"),
    Column("frame", "int"),
    Column("timestamp", "float"),
    Column("face_id", "int"),
    Column("success", "int"),
    Column("det_score", "float"),
    Column("x", "float"),
    Column("y", "float"),
    Column("w", "float"),
    Column("h", "float"),
)
PAIN_COLUMNS = (Column("pspi_smoothed", "float"), Column("pain_score", "float"), Column("pain_state", "string"))


def au_name(label: str) -> str:
    """``AU1`` -> ``AU01``, ``au12`` -> ``AU12``; a label that is not ``AU<number>`` is kept as it is."""
    match = _AU.match(label)
    return f"AU{int(match.group(1)):02d}{match.group(2)}" if match else label


def _au_order(label: str) -> tuple[int, str]:
    match = _AU.match(label)
    return (int(match.group(1)), match.group(2)) if match else (10**6, label)


def _expression_order(label: str) -> tuple[int, str]:
    """The card's standard expressions in their standard order, then any others by name (the log stores a
    head's labels sorted by name, so the model's own order cannot be recovered from it)."""
    known = label.lower()
    return (EXPRESSION_LABELS.index(known), "") if known in EXPRESSION_LABELS else (len(EXPRESSION_LABELS), known)


def expression_column(label: str) -> str:
    return "expr_" + re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_")


@dataclass(frozen=True)
class FaceTableSchema:
    """The columns for a model's heads: which AUs (intensity, occurrence), expressions and valence/arousal."""

    intensity_aus: tuple[str, ...] = ()
    occurrence_aus: tuple[str, ...] = ()
    expressions: tuple[str, ...] = ()
    valence_arousal: tuple[str, ...] = ()
    pain: bool = False
    wall_time: bool = False  # log export: a leading ``time`` column (wall clock, ISO 8601 UTC)

    @classmethod
    def from_heads(
        cls, heads: Mapping[str, Sequence[str]], kinds: Mapping[str, str], *, pain: bool = False, wall_time=False
    ) -> FaceTableSchema:
        """From ``{head name: labels}`` and ``{head name: kind}`` (a model card's heads)."""
        by_kind: dict[str, list[str]] = {}
        for name, labels in heads.items():
            kind = kinds.get(name)
            if kind is not None and kind not in by_kind:  # the first head of a kind, as FaceResult.head_of_kind
                by_kind[kind] = list(labels)
        return cls(
            tuple(sorted(by_kind.get(AU_INTENSITY, ()), key=_au_order)),
            tuple(sorted(by_kind.get(AU_OCCURRENCE, ()), key=_au_order)),
            tuple(sorted(by_kind.get(EXPRESSION, ()), key=_expression_order)),
            tuple(label for label in ("valence", "arousal") if label in by_kind.get(VALENCE_AROUSAL, ())),
            pain,
            wall_time,
        )

    def merged(self, other: FaceTableSchema) -> FaceTableSchema:
        """The union of two schemas' columns (log sessions recorded with different models)."""

        def union(a: tuple[str, ...], b: tuple[str, ...], au: bool) -> tuple[str, ...]:
            out = list(dict.fromkeys([*a, *b]))
            return tuple(sorted(out, key=_au_order)) if au else tuple(out)

        return FaceTableSchema(
            union(self.intensity_aus, other.intensity_aus, True),
            union(self.occurrence_aus, other.occurrence_aus, True),
            tuple(sorted(dict.fromkeys([*self.expressions, *other.expressions]), key=_expression_order)),
            tuple(v for v in ("valence", "arousal") if v in {*self.valence_arousal, *other.valence_arousal}),
            self.pain or other.pain,
            self.wall_time or other.wall_time,
        )

    @property
    def columns(self) -> list[Column]:
        cols = [Column("time", "string")] if self.wall_time else []
        cols += BASE_COLUMNS
        cols += [Column(f"{au_name(a)}_r", "float") for a in self.intensity_aus]
        cols += [Column(f"{au_name(a)}_c", "int") for a in self.occurrence_aus]
        cols += [Column(f"{au_name(a)}_p", "float") for a in self.occurrence_aus]
        cols += [Column(expression_column(e), "float") for e in self.expressions]
        cols += [Column(v, "float") for v in self.valence_arousal]
        cols += [Column("pspi", "float"), Column("fault", "string")]
        if self.pain:
            cols += PAIN_COLUMNS
        return cols

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _num(value: object, digits: int = 4) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return round(float(value), digits)


def face_values(
    heads: Mapping[str, Mapping[str, object]], kinds: Mapping[str, str], pspi: object, fault: str | None = None
) -> dict[str, object]:
    """The AU, expression, valence/arousal, ``pspi`` and ``fault`` columns of one face (4 decimals)."""
    row: dict[str, object] = {}
    seen: set[str] = set()
    for name, values in heads.items():
        kind = kinds.get(name)
        if kind is None or kind in seen:
            continue
        seen.add(kind)
        for label, value in values.items():
            if kind == AU_INTENSITY:
                row[f"{au_name(label)}_r"] = _num(value)
            elif kind == AU_OCCURRENCE:
                p = _num(value)
                row[f"{au_name(label)}_p"] = p
                row[f"{au_name(label)}_c"] = None if p is None else int(p >= OCCURRENCE_THRESHOLD)
            elif kind == EXPRESSION:
                row[expression_column(label)] = _num(value)
            elif kind == VALENCE_AROUSAL and label in ("valence", "arousal"):
                row[label] = _num(value)
    row["pspi"] = _num(pspi)
    row["fault"] = fault
    return row


def face_row(
    file: str,
    frame: int,
    timestamp: float | None,
    face_id: int | None,
    box: Sequence[float] | None,
    score: float | None,
    values: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """One row: a face (``box``/``score``/``values`` from :func:`face_values`), or, with ``box`` None, the
    ``success`` 0 row of a frame without a face."""
    row: dict[str, object] = {
        "file": file,
        "frame": int(frame),
        "timestamp": _num(timestamp, 4),  # 0.1 ms, as the log keeps media_time
        "face_id": face_id,
        "success": 0 if box is None else 1,
        "det_score": _num(score),
    }
    if box is not None:
        row.update(zip(("x", "y", "w", "h"), (_num(v, 1) for v in box), strict=True))
        row.update(values or {})
    return row


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


class FaceIds:
    """Face ids that follow faces across frames: each face takes the id of the face it overlaps most
    (IoU >= :data:`FRAME_MATCH_IOU`, greedy, best pairs first) among those seen within
    :data:`MAX_ID_GAP_FRAMES` analysed frames; any other face gets the next new id (0, 1, 2 ...).

    >>> ids = FaceIds()
    >>> ids.assign([(0, 0, 10, 10), (50, 0, 10, 10)]), ids.assign([(51, 0, 10, 10)]), ids.assign([(200, 0, 9, 9)])
    ([0, 1], [1], [2])
    """

    def __init__(self, min_iou: float = FRAME_MATCH_IOU, max_gap: int = MAX_ID_GAP_FRAMES) -> None:
        self.min_iou = min_iou
        self.max_gap = max_gap
        self._tracks: dict[int, tuple[tuple[float, ...], int]] = {}  # id -> (last box, frames since seen)
        self._next = 0

    def assign(self, boxes: Sequence[Sequence[float]]) -> list[int]:
        """The ids of this frame's faces (same order as ``boxes``)."""
        pairs = sorted(
            ((box_iou(box, last), i, fid) for i, box in enumerate(boxes) for fid, (last, _) in self._tracks.items()),
            key=lambda p: (-p[0], p[1], p[2]),
        )
        ids: list[int | None] = [None] * len(boxes)
        taken: set[int] = set()
        for iou, i, fid in pairs:
            if iou < self.min_iou:
                break
            if ids[i] is None and fid not in taken:
                ids[i], _ = fid, taken.add(fid)
        for i in range(len(boxes)):
            if ids[i] is None:
                ids[i], self._next = self._next, self._next + 1
        aged = {fid: (last, age + 1) for fid, (last, age) in self._tracks.items() if age + 1 <= self.max_gap}
        aged.update({fid: (tuple(map(float, box)), 0) for fid, box in zip(ids, boxes, strict=True)})  # type: ignore[misc]
        self._tracks = aged  # type: ignore[assignment]
        return ids  # type: ignore[return-value]


def _cell(value: object) -> object:
    return "" if value is None else value


def write_csv(rows: Iterable[Mapping[str, object]], schema: FaceTableSchema, fh: IO[str]) -> int:
    """The rows as CSV (header first; an empty cell for a missing value); the row count."""
    names = schema.names
    writer = csv.writer(fh)
    writer.writerow(names)
    n = 0
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in names])
        n += 1
    return n


def require_pyarrow(what: str = "Parquet output"):  # -> the pyarrow module
    try:
        import pyarrow
    except ImportError:
        raise EdgeSdkError(
            f"{what} needs pyarrow, which is not installed: pip install 'edge-sdk[data]' (CSV needs nothing extra)"
        ) from None
    return pyarrow


def arrow_schema(schema: FaceTableSchema):  # -> pyarrow.Schema
    pa = require_pyarrow()
    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64()}
    return pa.schema([pa.field(c.name, types[c.type]) for c in schema.columns])


def arrow_table(rows: Sequence[Mapping[str, object]], schema: FaceTableSchema):  # -> pyarrow.Table
    """The rows as a typed pyarrow Table (every column of ``schema``, nulls where a value is missing)."""
    pa = require_pyarrow()
    target = arrow_schema(schema)
    return pa.table({f.name: pa.array([r.get(f.name) for r in rows], type=f.type) for f in target}, schema=target)


PARQUET_ROW_GROUP = 65536


def write_parquet(rows: Iterable[Mapping[str, object]], schema: FaceTableSchema, path: Path) -> int:
    """The rows as one Parquet file with typed columns, written a row group at a time; the row count."""
    import pyarrow.parquet as pq

    target = arrow_schema(schema)
    count = 0
    with pq.ParquetWriter(path, target) as writer:
        batch: list[Mapping[str, object]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= PARQUET_ROW_GROUP:
                writer.write_table(arrow_table(batch, schema))
                count, batch = count + len(batch), []
        if batch or not count:
            writer.write_table(arrow_table(batch, schema))
            count += len(batch)
    return count


def table_format(out: Path) -> str:
    """``csv`` or ``parquet`` from the output file's suffix; :class:`InputError` for anything else."""
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in TABLE_FORMATS:
        raise InputError(f"--out {out}: expected a .csv or .parquet file name")
    return fmt


def write_table(rows: Iterable[Mapping[str, object]], schema: FaceTableSchema, out: Path) -> int:
    """Write ``rows`` to ``out`` (.csv or .parquet) through a temporary file renamed when complete; the count."""
    fmt = table_format(out)
    if fmt == "parquet":
        require_pyarrow()
    tmp = out.with_name(f".{out.name}.{os.urandom(4).hex()}.partial")
    try:
        if fmt == "parquet":
            count = write_parquet(rows, schema, tmp)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                count = write_csv(rows, schema, fh)
        os.replace(tmp, out)
        return count
    except OSError as exc:
        raise EdgeSdkError(
            f"--out {out}: cannot write the table ({exc.strerror or exc}); nothing was written"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


# ---- face records (FaceResult.to_record, as the log stores them) -> rows -------------------------------
_FACE_FIELDS = frozenset({"box", "score", "landmarks", "crop", "pspi", "fault"})
_KNOWN_KINDS = (AU_INTENSITY, AU_OCCURRENCE, EXPRESSION, VALENCE_AROUSAL)


def record_kinds(face: Mapping[str, object]) -> dict[str, str]:
    """``{head name: kind}`` of a logged face record. The record keeps head names, not kinds: a head named
    after a kind is that kind; otherwise AU labels make an AU head (intensity when its name says
    ``intens``), valence/arousal labels a valence_arousal head, and any other labels an expression head."""
    kinds: dict[str, str] = {}
    for name, values in face.items():
        if name in _FACE_FIELDS or not isinstance(values, Mapping):
            continue
        labels = [str(k) for k in values]
        if name in _KNOWN_KINDS:
            kinds[name] = name
        elif labels and all(_AU.match(label) for label in labels):
            kinds[name] = AU_INTENSITY if "intens" in name.lower() else AU_OCCURRENCE
        elif {"valence", "arousal"} & set(labels):
            kinds[name] = VALENCE_AROUSAL
        else:
            kinds[name] = EXPRESSION
    return kinds


def record_schema(face: Mapping[str, object], *, pain: bool = False, wall_time: bool = False) -> FaceTableSchema:
    kinds = record_kinds(face)
    heads = {name: list(face[name]) for name in kinds}  # type: ignore[call-overload]
    return FaceTableSchema.from_heads(heads, kinds, pain=pain, wall_time=wall_time)


def frame_record_rows(
    file: str, record: Mapping[str, object], timestamp: float | None, ids: FaceIds
) -> Iterator[dict[str, object]]:
    """The rows of one logged frame record (``FrameResult.to_record``): one per face, or one ``success`` 0 row."""
    faces = [f for f in record.get("faces") or () if isinstance(f, Mapping)]  # type: ignore[union-attr]
    frame = record.get("frame")
    frame = int(frame) if isinstance(frame, (int, float)) else -1
    pain = {key: record.get(key) for key in ("pspi_smoothed", "pain_score")}
    pain = {key: _num(v) for key, v in pain.items()}
    pain["pain_state"] = record.get("state")
    boxes = [f.get("box") for f in faces]
    valid = [f for f, b in zip(faces, boxes, strict=True) if isinstance(b, list) and len(b) == 4]
    if not valid:
        ids.assign([])
        yield {**face_row(file, frame, timestamp, None, None, None), **pain}
        return
    for face, fid in zip(valid, ids.assign([f["box"] for f in valid]), strict=True):  # type: ignore[misc]
        kinds = record_kinds(face)
        heads = {name: face[name] for name in kinds}
        fault = face.get("fault")
        values = face_values(heads, kinds, face.get("pspi"), fault if isinstance(fault, str) else None)  # type: ignore[arg-type]
        score = face.get("score")
        yield {**face_row(file, frame, timestamp, fid, face["box"], score, values), **pain}  # type: ignore[arg-type]
