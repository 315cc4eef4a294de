"""``analyze_video``: a recording (or an image folder) -> analysed frames, face ids tracked across frames.

Example (the packaged synthetic demo model: the numbers show the shape, not a real face's AUs)::

    from edge_sdk import analyze_video
    analysis = analyze_video("WolfgangLanger_Pexels.mp4", every=2)
    for frame in analysis:                      # AnalyzedFrame, in frame order, as they are analysed
        print(frame.index, frame.timestamp, frame.face_ids, [f.pspi for f in frame.faces])
    df = analysis.to_dataframe()                # one row per frame per face (needs edge-sdk[data])

The rows are the table of :mod:`edge_sdk.store.table` (the same as ``edge-sdk analyze --out x.csv``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sdk.analysis.work import AnalyzeSettings, FileLabeler, RawFrame, analyze_item, plan, schema_for
from edge_sdk.errors import EdgeSdkError
from edge_sdk.face.detect import FaceDetector
from edge_sdk.model.face_model import FaceModel
from edge_sdk.pipeline.alerts import PainSettings, PainStatus
from edge_sdk.pipeline.result import FaceResult
from edge_sdk.store.table import FaceTableSchema, arrow_table


@dataclass(frozen=True)
class AnalyzedFrame:
    """One analysed frame of a file: ``faces`` largest first with their ``face_ids`` (same order, stable
    across frames), ``timestamp`` in media seconds (None for an image), and the smoothed ``pain`` of the
    largest face when pain was asked for (else None)."""

    file: str
    index: int
    timestamp: float | None
    faces: tuple[FaceResult, ...]
    face_ids: tuple[int, ...]
    detector_ran: bool = True
    pain: PainStatus | None = None
    table_rows: tuple[dict[str, object], ...] = ()

    @property
    def face_found(self) -> bool:
        return bool(self.faces)

    def rows(self) -> list[dict[str, object]]:
        """This frame's table rows (one per face, or one ``success`` 0 row); copies."""
        return [dict(r) for r in self.table_rows]


class VideoAnalysis:
    """The analysed frames of one or more files, produced lazily (on first iteration) and kept (numbers only,
    never images), so iterating again or calling :meth:`rows`/:meth:`to_dataframe` does not analyse twice."""

    def __init__(self, frames: Iterator[AnalyzedFrame], schema: FaceTableSchema) -> None:
        self._source: Iterator[AnalyzedFrame] | None = frames
        self._done: list[AnalyzedFrame] = []
        self.schema = schema

    def __iter__(self) -> Iterator[AnalyzedFrame]:
        yield from self._done
        while self._source is not None:
            frame = next(self._source, None)
            if frame is None:
                self._source = None
                return
            self._done.append(frame)
            yield frame

    @property
    def columns(self) -> list[str]:
        return self.schema.names

    def rows(self) -> list[dict[str, object]]:
        """One dict per frame per face (every column of :attr:`columns`), frames in order."""
        names = self.schema.names
        return [{name: row.get(name) for name in names} for frame in self for row in frame.table_rows]

    def to_arrow(self) -> Any:
        """The rows as a typed ``pyarrow.Table`` (needs pyarrow: ``pip install 'edge-sdk[data]'``)."""
        return arrow_table(self.rows(), self.schema)

    def to_dataframe(self) -> Any:
        """The rows as a pandas DataFrame with typed columns (nullable ints); needs the ``data`` extra."""
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise EdgeSdkError(
                "to_dataframe() needs pandas, which is not installed: pip install 'edge-sdk[data]' "
                "(or use .rows() for plain dicts)"
            ) from None
        import pandas as pd

        try:
            import pyarrow as pa
        except ImportError:
            return pd.DataFrame(self.rows(), columns=self.schema.names)
        return self.to_arrow().to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def analyze_video(
    path: str | Path,
    model: str | Path | FaceModel = "demo",
    every: int = 1,
    detector: FaceDetector | str | None = None,
    *,
    faces: str = "all",
    pain: PainSettings | bool = False,
    settings: AnalyzeSettings | None = None,
) -> VideoAnalysis:
    """Analyse a video file (or an image, or a folder of images and videos) frame by frame.

    ``model``: a :class:`FaceModel` or what it loads (``"demo"``, a file, an export folder). ``every``:
    analyse every N-th frame. ``detector``: a :class:`FaceDetector` or a kind (``auto``, ``yunet``, ``haar``,
    ``none``); YuNet faces are followed in small crops between full-frame detections. ``faces``: ``all``
    (default) or ``largest``. ``pain``: True or :class:`PainSettings` adds smoothed pain columns.
    ``settings`` gives every knob at once (chunk length, tracking, threads) and wins over the others.

    Returns a lazy :class:`VideoAnalysis` of :class:`AnalyzedFrame`. Results equal ``edge-sdk analyze``'s
    rows for the same settings, whatever the number of workers.
    """
    pain_settings = PainSettings() if pain is True else (pain or None)
    if settings is None:
        settings = AnalyzeSettings(
            model=str(model) if not isinstance(model, FaceModel) else "demo",
            detector=detector if isinstance(detector, str) else "auto",
            faces=faces,
            every=every,
            pain=pain_settings,
        )
    items = plan([path], settings.chunk_frames)  # bad input fails here, before anything is loaded
    loaded = model if isinstance(model, FaceModel) else settings.load_model()
    analyzer = settings.analyzer(loaded, detector if isinstance(detector, FaceDetector) else None)
    schema = schema_for(loaded, pain=settings.pain is not None)

    def frames() -> Iterator[AnalyzedFrame]:
        labelers: dict[str, FileLabeler] = {}
        for item in items:
            labeler = labelers.setdefault(item.file, FileLabeler(settings.pain, analyzer.has_pain))
            for raw in analyze_item(analyzer, item, settings.every, settings.save_frames):
                yield labelled(raw, labeler)

    return VideoAnalysis(frames(), schema)


def labelled(raw: RawFrame, labeler: FileLabeler) -> AnalyzedFrame:
    rows = raw.rows()
    ids, status = labeler.label(rows)
    return AnalyzedFrame(
        raw.file, raw.index, raw.timestamp, raw.faces, tuple(ids), raw.detector_ran, status, tuple(rows)
    )


__all__ = ["AnalyzeSettings", "AnalyzedFrame", "VideoAnalysis", "analyze_video"]
