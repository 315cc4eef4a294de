"""Work units on this machine: in this process, or in a pool of ``workers`` processes (one model each).

Rows come back in work-unit order whatever the pool size, and face ids and pain smoothing are added here,
per file in frame order (:class:`~edge_sdk.analysis.work.FileLabeler`), so ``--workers N`` changes the speed,
never the table.
"""

from __future__ import annotations

import logging
import multiprocessing
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence

from edge_sdk.analysis.work import AnalyzeSettings, FileLabeler, WorkItem, analyze_item
from edge_sdk.face.detect import FaceDetector
from edge_sdk.model.face_model import FaceModel
from edge_sdk.pipeline.alerts import PainSettings
from edge_sdk.pipeline.analyze import FaceAnalyzer

log = logging.getLogger(__name__)

FrameRows = list[dict[str, object]]
Progress = Callable[[int], None]  # called with the number of frames just finished

_worker: tuple[FaceAnalyzer, AnalyzeSettings] | None = None


def _start_worker(settings: AnalyzeSettings) -> None:
    """Pool initializer: load the model and detector once per worker process."""
    global _worker
    import cv2

    cv2.setNumThreads(1)  # the pool is the parallelism; OpenCV threads would only compete with it
    with warnings.catch_warnings():  # the synthetic-demo notice was shown once, by the parent
        warnings.simplefilter("ignore")
        _worker = (settings.analyzer(), settings)


def _run_unit(item: WorkItem) -> list[FrameRows]:
    assert _worker is not None, "worker not started"
    analyzer, settings = _worker
    return [raw.rows() for raw in analyze_item(analyzer, item, settings.every, settings.save_frames)]


def unit_rows(
    items: Sequence[WorkItem],
    settings: AnalyzeSettings,
    workers: int = 1,
    model: FaceModel | None = None,
    detector: FaceDetector | None = None,
) -> Iterator[tuple[str, list[FrameRows]]]:
    """(file, frames as rows without face ids), in ``items`` order. ``workers`` 1 runs here (with
    ``model``/``detector`` when given) and yields one frame at a time; more start a process pool and yield
    one work unit at a time."""
    if workers <= 1:
        analyzer = settings.analyzer(model, detector)
        for item in items:
            for raw in analyze_item(analyzer, item, settings.every, settings.save_frames):
                yield item.file, [raw.rows()]
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding inference-runtime threads
    with context.Pool(workers, initializer=_start_worker, initargs=(settings,)) as pool:
        for item, frames in zip(items, pool.imap(_run_unit, items, chunksize=1), strict=True):
            yield item.file, frames


def labelled_rows(
    units: Iterable[tuple[str, list[FrameRows]]],
    pain: PainSettings | None,
    has_pain: bool = True,
    progress: Progress | None = None,
) -> Iterator[dict[str, object]]:
    """Every row of ``units`` (in file and frame order) with face ids, and pain columns with ``pain``."""
    labelers: dict[str, FileLabeler] = {}
    for file, frames in units:
        labeler = labelers.setdefault(file, FileLabeler(pain, has_pain))
        for rows in frames:
            labeler.label(rows)
            yield from rows
        if progress is not None:
            progress(len(frames))


def analyze_rows(
    items: Sequence[WorkItem],
    settings: AnalyzeSettings,
    workers: int = 1,
    progress: Progress | None = None,
    *,
    has_pain: bool = True,
    model: FaceModel | None = None,
    detector: FaceDetector | None = None,
) -> Iterator[dict[str, object]]:
    """Every table row of ``items`` with face ids (and pain columns with ``settings.pain``), in order."""
    units = unit_rows(items, settings, workers, model, detector)
    return labelled_rows(units, settings.pain, has_pain, progress)
