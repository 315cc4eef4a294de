"""``edge-sdk analyze INPUT... --out results.csv|results.parquet``: recordings and image folders -> one table.

One row per frame per face (columns: :mod:`edge_sdk.store.table`), face ids tracked across frames. Nothing
is logged and no pain is smoothed unless ``--pain``; no pixels are written anywhere unless ``--save-frames DIR``
(annotated JPEGs, explicit opt-in).
``--workers N`` analyses chunks of the videos in N processes on this machine; ``--ray ADDRESS`` runs the same
chunks on a Ray cluster with Ray Data (a pool of model actors). The rows do not depend on
either: only the speed does. A progress bar goes to stderr (tqdm when installed).

Exit codes: 0 the table was written; 2 an error (one ``error: ...`` line naming the input or flag).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from edge_sdk.analysis.local import labelled_rows, unit_rows
from edge_sdk.analysis.work import DEFAULT_CHUNK_FRAMES, AnalyzeSettings, plan, schema_for
from edge_sdk.cpu import usable_cores
from edge_sdk.errors import InputError
from edge_sdk.face.detect import DETECTOR_KINDS
from edge_sdk.face.select import FACE_POLICIES
from edge_sdk.pipeline.alerts import PainSettings
from edge_sdk.store.table import table_format, write_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, image files, or folders of them")
    parser.add_argument("--out", type=Path, required=True, help="the table: a .csv or .parquet file name")
    parser.add_argument(
        "--model", default="demo", help="'demo' (default), a model artifact, an export folder or a pulled model"
    )
    parser.add_argument("--every", type=int, default=1, metavar="N", help="analyse every N-th frame (default 1)")
    parser.add_argument("--faces", choices=FACE_POLICIES, default="all", help="all faces (default) or the largest")
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="processes on this machine (or Ray actors with --ray)"
    )
    parser.add_argument(
        "--chunk",
        type=int,
        default=DEFAULT_CHUNK_FRAMES,
        metavar="FRAMES",
        help=f"frames per work unit (default {DEFAULT_CHUNK_FRAMES}); each starts with a full-frame detection",
    )
    parser.add_argument(
        "--pain", action="store_true", help="add smoothed pain columns (pspi_smoothed, pain_score, pain_state)"
    )
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="analyse on a Ray cluster with Ray Data, --workers model actors (auto, HOST:6379, ray://HOST:10001; "
        "'local': a Ray instance on this machine); needs edge-sdk[ray]",
    )
    parser.add_argument(
        "--save-frames",
        type=Path,
        metavar="DIR",
        help="also write every analysed frame, annotated (boxes, landmarks, top expression, PSPI), as JPEGs in "
        "DIR/<file>/ - the only way analyze writes pixels; off by default",
    )
    parser.add_argument("--detector", choices=DETECTOR_KINDS, default="auto", help="face detector (default auto)")
    parser.add_argument("--detector-model", help="path to a YuNet .onnx")
    parser.add_argument("--no-track", action="store_true", help="detect on the full frame every frame (slower)")
    parser.add_argument("--backend", help="force an inference backend (onnxruntime, litert, openvino)")
    parser.add_argument("--threads", type=int, help="inference threads per worker (default: CPUs / workers)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


class _Bar:
    """A progress bar on stderr: tqdm when installed, else one line rewritten in place."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.start = time.perf_counter()
        self._tqdm: Any = None
        if enabled:
            try:
                from tqdm import tqdm

                self._tqdm = tqdm(total=total, unit="frame", file=sys.stderr, desc="analyze")
            except ImportError:
                pass

    def __call__(self, frames: int) -> None:
        self.done += frames
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.update(frames)
            return
        rate = self.done / max(1e-9, time.perf_counter() - self.start)
        print(f"\ranalyze: {self.done}/{self.total} frames ({rate:.1f}/s)", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.enabled:
            print(file=sys.stderr)


def _settings(args: argparse.Namespace) -> AnalyzeSettings:
    if args.workers < 1:
        raise InputError(f"--workers {args.workers}: expected an integer >= 1")
    threads = args.threads
    if threads is None and (args.workers > 1 or args.ray):
        threads = max(1, usable_cores() // args.workers) if not args.ray else 1
    return AnalyzeSettings(
        model=args.model,
        backend=args.backend,
        threads=threads,
        detector=args.detector,
        detector_model=args.detector_model,
        faces=args.faces,
        every=args.every,
        chunk_frames=args.chunk,
        track=None if args.no_track else AnalyzeSettings().track,
        pain=PainSettings() if args.pain else None,
        save_frames=None if args.save_frames is None else str(args.save_frames),
    )


def run(args: argparse.Namespace) -> int:
    table_format(args.out)  # .csv or .parquet, checked before anything runs
    if not args.out.parent.is_dir():
        raise InputError(f"--out {args.out}: the directory {args.out.parent} does not exist")
    if args.save_frames is not None and args.ray:
        raise InputError("--save-frames writes on this machine: it cannot be combined with --ray")
    if args.save_frames is not None and args.save_frames.exists() and not args.save_frames.is_dir():
        raise InputError(f"--save-frames {args.save_frames}: not a directory")
    settings = _settings(args)
    items = plan(args.inputs, settings.chunk_frames)
    model = settings.load_model()  # the synthetic-demo notice is its warning, shown once by the CLI
    detector = settings.load_detector()  # a missing detector fails here, before any worker starts
    schema = schema_for(model, pain=settings.pain is not None)
    files = len({i.file for i in items})
    total = sum(max(1, -(-i.frames // settings.every)) if i.kind == "video" else 1 for i in items)
    started = time.perf_counter()
    bar = _Bar(total, enabled=not args.no_progress and not args.ray)  # Ray Data shows its own progress
    try:
        if args.ray:
            from edge_sdk.analysis.ray_data import connect, ray_unit_rows

            connect(args.ray, args.workers)
            processes: set[int] = set()
            units = ray_unit_rows(
                items, settings, schema, workers=args.workers, progress=not args.no_progress, processes=processes
            )
            where = f"Ray {args.ray}, {args.workers} actor(s)"
        else:
            one = args.workers == 1
            units = unit_rows(items, settings, args.workers, model if one else None, detector if one else None)
            where = f"{args.workers} process(es)"
        rows = labelled_rows(units, settings.pain, model.card.has_pain, bar)
        count = write_table(rows, schema, args.out)
    finally:
        bar.close()
        if args.ray:
            from edge_sdk.analysis.ray_data import disconnect

            disconnect()
    seconds = time.perf_counter() - started
    if args.ray:
        where += f" in {len(processes)} process(es)"
    print(
        f"analyzed {files} file(s), {bar.done} frames in {seconds:.1f} s ({bar.done / max(seconds, 1e-9):.1f} "
        f"frames/s, {where}): {count} rows to {args.out}",
        file=sys.stderr,
    )
    return 0


__all__ = ["add_arguments", "run"]
