"""Reproduce the README performance table on this machine: run it on a QUIET machine, then commit the results.

    python benchmarks/run_all.py --machine "2-core x86 dev box (AMD EPYC), no GPU"

Steps (each skipped when its output exists, unless --fresh):
1. `edge-sdk export` of the packaged demo model for all targets, unpruned and with --prune 0.3
   (into artifacts/bench/, git-ignored).
2. FP32 references the export folder lacks: the FP32 .tflite (rpi) and FP32 IR (openvino) of the demo model.
3. `benchmark --target T --baseline` for every target over FP32, INT8 and pruned INT8, interleaved in one
   run with the baseline (the FP32 ONNX on plain ONNX Runtime, default SessionOptions), at 1 and all cores.
4. The pipeline benchmark on ../shared/data/faces/WolfgangLanger_Pexels.mp4 (2 inference threads).
5. The log writer throughput (benchmarks/log_writer.py, when present).
6. benchmarks/results/performance.{md,json,png}, with the README targets checked (met / MISSED, never faked).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WORK = REPO / "artifacts" / "bench"
RESULTS = Path(__file__).with_name("results")
VIDEO = SHARED / "data" / "faces" / "WolfgangLanger_Pexels.mp4"
YUNET = SHARED / "models" / "yunet" / "yunet_s_640_640.onnx"
PRUNE = 0.3

# The README's performance targets (batch 1, this machine). Checked, never adjusted to fit.
TARGET_BEST_CPU = 3.0  # best CPU artifact (pruned 30% + INT8, ORT or OpenVINO) vs FP32 on plain ORT
TARGET_INT8_ORT = 1.8  # INT8 alone on ONNX Runtime vs FP32 on plain ORT
TARGET_PIPELINE_FPS = 120.0  # end-to-end on 2 cores


def sh(*argv: str, ok: tuple[int, ...] = (0,)) -> int:
    print("+", " ".join(argv), flush=True)
    code = subprocess.run(argv, cwd=REPO).returncode
    if code not in ok:
        raise SystemExit(f"command failed with exit code {code}: {' '.join(argv)}")
    return code


def export_folders(fresh: bool) -> dict[str, Path]:
    from edge_sdk.targets import TARGETS

    folders = {"int8": WORK / "export_int8", "pruned": WORK / f"export_pruned{round(PRUNE * 100)}"}
    for name, folder in folders.items():
        if folder.is_dir() and not fresh:
            continue
        prune = ["--prune", str(PRUNE)] if name == "pruned" else []
        targets = ",".join(TARGETS)
        # Exit 1 = artifacts written but a fidelity gate failed: benchmark them anyway; the report shows the status.
        code = sh(sys.executable, "-m", "edge_sdk", "export", "--model", "demo", "--targets", targets,
                  "--out", str(folder), "--force", "--calib", "synthetic", *prune, ok=(0, 1))  # fmt: skip
        if code == 1:
            print(f"note: {folder.name}: some artifacts failed their fidelity gates (see its report.md)", flush=True)
    return folders


def fp32_references(fresh: bool) -> list[Path]:
    """FP32 .tflite and IR of the demo model (the export folder keeps only INT8 and the pruned FP32 ONNX)."""
    from edge_sdk.model.face_model import DEMO_MODEL
    from edge_sdk_export.convert import onnx_to_openvino_fp32, onnx_to_tflite_fp32

    # One folder per format: model.tflite and model.xml would share one sidecar card name.
    tflite, openvino = WORK / "fp32_tflite", WORK / "fp32_openvino"
    if fresh or not any(tflite.glob("*.tflite")):
        onnx_to_tflite_fp32(DEMO_MODEL, tflite)
    if fresh or not any(openvino.glob("*.xml")):
        onnx_to_openvino_fp32(DEMO_MODEL, openvino)
    return [tflite, openvino]


def model_benchmarks(models: list[Path], runs: int, warmup: int, threads: tuple[int, ...]) -> list[dict[str, Any]]:
    from edge_sdk.bench import BenchConfig, run_benchmark
    from edge_sdk.bench.report import format_result
    from edge_sdk.targets import TARGETS

    results = []
    for target, row in TARGETS.items():
        holding = [m for m in models if any(m.glob(f"*{row.artifact_suffix}"))]  # folders with this format
        config = BenchConfig(
            target=target,
            models=tuple(str(m) for m in holding),
            threads=threads,
            runs=runs,
            warmup=warmup,
            baseline=True,
        )
        result = run_benchmark(config, lambda m, t=target: print(f"[{t}] {m}", file=sys.stderr, flush=True))
        print(format_result(result), flush=True)
        results.append(result)
    return results


def pipeline_benchmark(models: list[Path], frames: int) -> dict[str, Any]:
    from edge_sdk.bench import BenchConfig, run_benchmark
    from edge_sdk.bench.pipeline import run_pipeline_benchmark

    if not VIDEO.is_file():
        raise SystemExit(f"{VIDEO} is missing: the pipeline benchmark reads ../shared beside the checkout")
    config = BenchConfig(target="cpu", models=tuple(str(m) for m in models), threads=(2,), runs=100, warmup=20)
    result = run_benchmark(config)
    return run_pipeline_benchmark(result, VIDEO, frames, detector_model=str(YUNET) if YUNET.is_file() else None)


def log_writer_benchmark(machine: str) -> dict[str, Any] | None:
    """benchmarks/log_writer.py (the private log's own benchmark; writes results/log_writer.json), or None."""
    script = Path(__file__).with_name("log_writer.py")
    if not script.is_file():
        return None
    sh(sys.executable, str(script), "--machine", machine)
    return json.loads((RESULTS / "log_writer.json").read_text(encoding="utf-8"))


# ---- targets -----------------------------------------------------------------------------------------
def _best_rows(results: list[dict[str, Any]], target: str) -> list[dict[str, Any]]:
    """Each variant at its fastest thread count, with ``speedup_vs_baseline`` recomputed against the plain-ORT
    baseline at *its* fastest p50.

    On 2 cores, sessions with 2 spinning threads disturb each other when interleaved (p90 near 9 ms), which can
    make a baseline look slower than it is; best-vs-best keeps a ratio from flattering us.
    """
    result = next(r for r in results if r["target"]["name"] == target)
    best: dict[str, dict[str, Any]] = {}
    for row in result["results"]:
        if row["variant"] not in best or row["latency_ms"]["p50"] < best[row["variant"]]["latency_ms"]["p50"]:
            best[row["variant"]] = row
    baseline = best.get("fp32-plain-ort")
    rows = []
    for row in best.values():
        row = dict(row)
        if baseline is not None:
            row["speedup_vs_baseline"] = baseline["latency_ms"]["p50"] / row["latency_ms"]["p50"]
        rows.append(row)
    return rows


def _gate_passed(row: dict[str, Any]) -> bool | None:
    fidelity = row.get("fidelity") or {}
    return fidelity.get("passed")


def check_targets(results: list[dict[str, Any]], pipeline: dict[str, Any] | None) -> list[dict[str, Any]]:
    checks = []
    best = [
        r
        for t in ("cpu", "openvino")
        for r in _best_rows(results, t)
        if r["variant"] == "pruned-int8" and r["speedup_vs_baseline"]
    ]
    top = max(best, key=lambda r: r["speedup_vs_baseline"], default=None)
    checks.append(
        {
            "target": f"best CPU artifact (pruned {PRUNE:.0%} + INT8) >= {TARGET_BEST_CPU}x vs FP32 on plain ORT, "
            "fidelity gates met",
            "measured": None
            if top is None
            else f"{top['speedup_vs_baseline']:.2f}x ({top['runtime']}, "
            f"{top['ran_on']}; gates {'met' if _gate_passed(top) else 'NOT met or unknown'})",
            "met": bool(top and top["speedup_vs_baseline"] >= TARGET_BEST_CPU and _gate_passed(top)),
        }
    )
    int8 = next((r for r in _best_rows(results, "cpu") if r["variant"] == "int8"), None)
    checks.append(
        {
            "target": f"INT8 alone on ONNX Runtime >= {TARGET_INT8_ORT}x vs FP32 on plain ORT",
            "measured": None if int8 is None else f"{int8['speedup_vs_baseline']:.2f}x",
            "met": bool(int8 and int8["speedup_vs_baseline"] >= TARGET_INT8_ORT),
        }
    )
    lite = next((r for r in _best_rows(results, "rpi") if r["variant"] == "int8"), None)
    checks.append(
        {
            "target": "LiteRT INT8 faster than LiteRT FP32",
            "measured": None
            if lite is None
            else f"{lite['speedup_vs_fp32']:.2f}x"
            if lite["speedup_vs_fp32"]
            else None,
            "met": bool(lite and (lite["speedup_vs_fp32"] or 0) > 1.0),
        }
    )
    checks.append(
        {
            "target": f"pipeline >= {TARGET_PIPELINE_FPS:.0f} FPS on 2 cores",
            "measured": None if pipeline is None else f"{pipeline['fps']:.1f} FPS",
            "met": bool(pipeline and pipeline["fps"] >= TARGET_PIPELINE_FPS),
        }
    )
    return checks


# ---- output --------------------------------------------------------------------------------------------
def write_markdown(summary: dict[str, Any], path: Path) -> None:
    from edge_sdk.bench.report import format_markdown_table, format_pipeline

    lines = [
        "# edge-sdk performance",
        "",
        f"Machine: **{summary['machine_name']}** ({summary['machine']['cpu']}, {summary['machine']['cores_usable']} "
        f"usable cores, {summary['machine']['os']}). Produced by `python benchmarks/run_all.py` on "
        f"{summary['created_utc']}. Batch 1; every precision of a target and the baseline run interleaved in one "
        "process so machine drift cancels. **Only rows marked `device? yes` are figures of the target device**; "
        "jetson/rpi/openvino rows measured here are stand-ins on this CPU.",
        "",
        "## Targets",
        "",
        "| target | measured | status |",
        "|:---|:---|:---|",
    ]
    for check in summary["targets"]:
        lines.append(f"| {check['target']} | {check['measured'] or 'n/a'} | {'met' if check['met'] else 'MISSED'} |")
    for result in summary["models"]:
        lines += ["", f"## {result['target']['name']} ({result['target']['device']})", ""]
        lines.append(format_markdown_table(result["results"]))
        lines += [f"\nnote: {n}" for n in result["notes"]]
    if summary.get("pipeline"):
        lines += ["", "## Pipeline", "", "```", format_pipeline(summary["pipeline"]), "```"]
    if summary.get("log_writer"):
        lines += ["", "## Log writer", "", "```json", json.dumps(summary["log_writer"], indent=2), "```"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machine", required=True, help='how the results name this machine, e.g. "2-core x86 dev box"')
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--pipeline-frames", type=int, default=600)
    parser.add_argument("--fresh", action="store_true", help="re-export and re-convert even if outputs exist")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import datetime as dt

    from edge_sdk.bench.machine import collect_machine_info
    from edge_sdk.bench.plot import plot_latency

    folders = export_folders(args.fresh)
    fp32 = fp32_references(args.fresh)
    models = [folders["int8"], folders["pruned"], *fp32]
    threads = tuple(int(t) for t in args.threads.split(","))
    results = model_benchmarks(models, args.runs, args.warmup, threads)
    pipeline = pipeline_benchmark([folders["pruned"], folders["int8"]], args.pipeline_frames)
    log_writer = log_writer_benchmark(args.machine)
    summary = {
        "machine_name": args.machine,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": collect_machine_info().to_dict(),
        "targets": check_targets(results, pipeline),
        "models": results,
        "pipeline": pipeline,
        "log_writer": log_writer,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "performance.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    write_markdown(summary, args.out / "performance.md")
    plot_latency(results, args.out / "performance.png", title=f"edge-sdk latency, batch 1, on {args.machine}")
    for check in summary["targets"]:
        print(f"{'met   ' if check['met'] else 'MISSED'} {check['target']}: {check['measured']}")
    print(f"wrote {args.out / 'performance.md'}, .json, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
