"""Frames/s of ``edge-sdk analyze`` on WolfgangLanger_Pexels.mp4 (472 frames, 640x360) with 1 and 2 workers:
local processes (``--workers N``) and Ray Data actors on a local Ray instance (``--ray local --workers N``).

Each figure is the wall time of one whole run (worker/actor start and model loading included, Ray's own
start excluded: ``ray.init`` once before), demo model, YuNet with region tracking, ``--chunk 120``, 1
inference thread per worker. ``--copies 3`` analyses the video as 3 files (symlinks in a temporary folder,
1416 frames) so that start-up costs weigh less. Every run must produce the same table as the first
(checked). The 1-minute load average before each run is recorded (other work on the machine shows there).
Run under the heavy-job lock::

    python benchmarks/analyze_scaling.py [--repeats 2] [--copies 3]

Writes benchmarks/results/analyze_scaling.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_sdk.analysis.local import labelled_rows, unit_rows  # noqa: E402
from edge_sdk.analysis.work import AnalyzeSettings, plan, schema_for  # noqa: E402
from edge_sdk.bench.machine import collect_machine_info  # noqa: E402

VIDEO = REPO.parent / "shared" / "data" / "faces" / "WolfgangLanger_Pexels.mp4"
YUNET = REPO.parent / "shared" / "models" / "yunet" / "yunet_s_640_640.onnx"
RESULTS = REPO / "benchmarks" / "results"
CHUNK = 120
LOADS: list[float] = []


def timed(units, settings: AnalyzeSettings) -> tuple[float, list[dict[str, object]]]:
    LOADS.append(round(os.getloadavg()[0], 2))
    start = time.perf_counter()
    rows = list(labelled_rows(units, settings.pain))
    return time.perf_counter() - start, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration (the best is reported)")
    parser.add_argument("--no-ray", action="store_true", help="local processes only")
    parser.add_argument("--copies", type=int, default=1, help="analyse the video as this many files")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    base = AnalyzeSettings(detector_model=str(YUNET), chunk_frames=CHUNK)
    folder = Path(tempfile.mkdtemp(prefix="analyze-scaling-"))
    inputs = []
    for i in range(args.copies):
        (folder / f"copy{i}.mp4").symlink_to(VIDEO)
        inputs.append(folder / f"copy{i}.mp4")
    items = plan(inputs, CHUNK)
    schema = schema_for(base.load_model())
    frames = 0
    results: list[dict[str, object]] = []
    reference: list[dict[str, object]] | None = None

    def record(mode: str, workers: int, seconds: list[float], rows: list[dict[str, object]]) -> None:
        nonlocal reference, frames
        frames = len({(r["file"], r["frame"]) for r in rows})
        if reference is None:
            reference = rows
        assert rows == reference, f"{mode} with {workers} worker(s) gave other rows"
        best = min(seconds)
        loads, LOADS[:] = list(LOADS), []
        results.append(
            {
                "mode": mode,
                "workers": workers,
                "threads_per_worker": 1,
                "frames": frames,
                "seconds": [round(s, 2) for s in seconds],
                "frames_per_s": round(frames / best, 1),
                "load_average_1min_before": loads,
            }
        )
        print(f"{mode:6s} workers={workers}: {frames / best:6.1f} frames/s (best of {seconds})", file=sys.stderr)

    for workers in (1, 2):
        settings = replace(base, threads=1)
        runs = [timed(unit_rows(items, settings, workers), settings) for _ in range(args.repeats)]
        record("local", workers, [s for s, _ in runs], runs[-1][1])
    if not args.no_ray:
        import ray

        from edge_sdk.analysis.ray_data import ray_unit_rows

        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        for workers in (1, 2):
            settings = replace(base, threads=1)
            runs = [
                timed(ray_unit_rows(items, settings, schema, workers=workers, progress=False), settings)
                for _ in range(args.repeats)
            ]
            record("ray", workers, [s for s, _ in runs], runs[-1][1])
        ray.shutdown()
    machine = collect_machine_info()
    report = {
        "benchmark": "analyze_scaling",
        "video": VIDEO.name,
        "copies": args.copies,
        "chunk_frames": CHUNK,
        "model": "demo",
        "detector": "yunet_s_640_640 (region tracking)",
        "machine": machine.to_dict(),
        "machine_summary": machine.summary,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "analyze_scaling.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# edge-sdk analyze: 1 vs 2 workers",
        "",
        f"Machine: {machine.summary}.",
        "",
        f"`{VIDEO.name}` x{args.copies} ({frames} frames, 640x360), demo model, YuNet with region tracking, "
        f"`--chunk {CHUNK}` ({len(items)} work units), 1 inference thread per worker. Wall time of a whole run, "
        "worker/actor start and model loading included (Ray's own start excluded); best of "
        f"{args.repeats}. Every run gave the same table. Measured by `benchmarks/analyze_scaling.py`.",
        "",
        "| mode | workers | frames/s | runs (s) | load avg before |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        runs = ", ".join(f"{s:.2f}" for s in r["seconds"])  # type: ignore[union-attr]
        loads = ", ".join(str(v) for v in r["load_average_1min_before"])  # type: ignore[union-attr]
        lines.append(f"| {r['mode']} | {r['workers']} | {r['frames_per_s']} | {runs} | {loads} |")
    (RESULTS / "analyze_scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
