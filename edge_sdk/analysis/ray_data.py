"""The same work units on a Ray cluster with Ray Data (``edge-sdk analyze --ray ADDRESS``, extra ``ray``).

The plan (:func:`~edge_sdk.analysis.work.plan`) becomes a dataset of work units, one block each;
``map_batches`` runs them through :class:`UnitAnalyzer`, a callable class, so Ray Data keeps a pool of
actors (``compute=ActorPoolStrategy(size=workers)``) that each load the model and detector once. The rows
stream back in plan order (``preserve_order``), where the driver adds face ids (and pain smoothing) per
file exactly as the local run does and writes the one table (CSV, or a Parquet file written row group by
row group). A ``groupby("file").map_groups`` on the cluster would do the same, but its hash shuffle alone
took ~12 s for a 72-row table on the 2-core test machine, more than the analysis; ids cost microseconds
a frame on the driver.

``ADDRESS`` is what ``ray.init(address=...)`` takes (``auto``, ``HOST:6379``, ``ray://HOST:10001``), or
``local`` for a Ray instance started here with ``workers`` CPUs (to try it on one machine). Every node
needs this package (and the model and detector files, when given as paths) at the same paths.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

from edge_sdk.analysis.local import FrameRows
from edge_sdk.analysis.work import RANK, AnalyzeSettings, WorkItem, analyze_item
from edge_sdk.errors import EdgeSdkError
from edge_sdk.store.table import FaceTableSchema, arrow_schema

log = logging.getLogger(__name__)


def require_ray():  # -> the ray module
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EdgeSdkError(
            "--ray needs Ray Data, which is not installed: pip install 'edge-sdk[ray]'; "
            "on one machine --workers N needs nothing extra"
        ) from None
    return ray


WORKER = "_worker_pid"  # which actor process analysed a row (counted by the driver, not written)


def _unit_schema(schema: FaceTableSchema) -> Any:
    import pyarrow as pa

    return arrow_schema(schema).append(pa.field(RANK, pa.int64())).append(pa.field(WORKER, pa.int64()))


class UnitAnalyzer:
    """Ray Data callable class: one model and detector per actor; a batch of work units -> their rows
    (``face_id`` empty, ``_rank`` = the face's place in its frame) as a pyarrow Table."""

    def __init__(self, settings: AnalyzeSettings, schema: FaceTableSchema) -> None:
        import cv2

        cv2.setNumThreads(1)
        with warnings.catch_warnings():  # the synthetic-demo notice was shown once, by the driver
            warnings.simplefilter("ignore")
            self.analyzer = settings.analyzer()
        self.settings = settings
        self.schema = _unit_schema(schema)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows: list[dict[str, object]] = []
        for unit in batch.to_pylist():
            item = WorkItem(unit["file"], unit["kind"], unit["start"], unit["stop"], unit["frames"])
            for raw in analyze_item(self.analyzer, item, self.settings.every, self.settings.save_frames):
                for rank, row in enumerate(raw.rows()):
                    rows.append({**row, RANK: rank, WORKER: os.getpid()})
        return pa.Table.from_pylist(rows, schema=self.schema)


def connect(address: str, workers: int) -> None:
    """``ray.init`` for ``address`` (``local``: a Ray instance on this machine with ``workers`` CPUs)."""
    ray = require_ray()
    if ray.is_initialized():
        return
    if address == "local":
        ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=address, logging_level=logging.WARNING)


def disconnect() -> None:
    """``ray.shutdown()`` (stops a ``local`` instance; leaves a cluster running)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def ray_unit_rows(
    items: list[WorkItem],
    settings: AnalyzeSettings,
    schema: FaceTableSchema,
    *,
    workers: int,
    progress: bool = True,
    processes: set[int] | None = None,
) -> Iterator[tuple[str, list[FrameRows]]]:
    """(file, one frame's rows without face ids) for every frame of ``items``, in order, analysed by a pool of
    ``workers`` :class:`UnitAnalyzer` actors on the connected cluster (:func:`connect`), each given one work
    unit at a time. ``processes`` collects the process ids of the actors that analysed something."""
    ray = require_ray()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    context.enable_operator_progress_bars = progress
    context.execution_options.preserve_order = True  # face ids need each file's frames in order
    ds = ray.data.from_items(
        [{"file": i.file, "kind": i.kind, "start": i.start, "stop": i.stop, "frames": i.frames} for i in items],
        override_num_blocks=len(items),
    )
    ds = ds.map_batches(
        UnitAnalyzer,
        fn_constructor_kwargs={"settings": settings, "schema": schema},
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
        num_cpus=settings.threads or 1,
    )
    frame: list[dict[str, object]] = []
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row in batch.to_pylist():
            row.pop(RANK, None)
            pid = row.pop(WORKER, None)
            if processes is not None and isinstance(pid, int):
                processes.add(pid)
            if frame and (row["file"], row["frame"]) != (frame[0]["file"], frame[0]["frame"]):
                yield str(frame[0]["file"]), [frame]
                frame = []
            frame.append(row)
    if frame:
        yield str(frame[0]["file"]), [frame]
