"""Issue 16's done-when check on this machine: export the demo to every target, pick, and run the pick.

For each run (unpruned, ``--prune 0.3``): ``edge-sdk export --model demo --targets jetson,rpi,openvino,cpu
--calib ../shared/data/faces`` (exit code and wall time), then ``edge-sdk pick --model EXPORT_DIR`` (interleaved
p50 of every artifact that passed its gates here, against the FP32 file on the same runtime) and ``edge-sdk run
--model EXPORT_DIR`` on the 472-frame test video (which artifact it loaded, FPS, faces found). Records the
report's machine fields (CPU, ISA flags, int8 kernel class, runtimes) and, per target, the gates, the metrics,
the layers kept in float, size, the export's quick latency and the kernel class each gate was measured on.
Run it alone on the machine (it times things)::

    python benchmarks/export_pick_run.py [--out benchmarks/results/MACHINE] [--work /tmp/export-pick-run]

Writes export_pick_run.json and .md into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CALIB = SHARED / "data" / "faces"
VIDEO = CALIB / "WolfgangLanger_Pexels.mp4"
YUNET = SHARED / "models" / "yunet" / "yunet_s_640_640.onnx"
RESULTS = Path(__file__).with_name("results")
TARGETS = "jetson,rpi,openvino,cpu"
RUNS: dict[str, list[str]] = {"unpruned": [], "prune30": ["--prune", "0.3"]}
METRICS = ("expression_agreement", "expression_mean_abs_dp", "au_occurrence_f1", "va_ccc", "pspi_mae")


def edge_sdk(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_sdk", *args]


def export(name: str, extra: list[str], work: Path) -> dict[str, Any]:
    """Run one export; its exit code, wall time and the command as a user types it."""
    out = work / name
    args = ["export", "--model", "demo", "--targets", TARGETS, "--calib", str(CALIB)]
    args += ["--detector-model", str(YUNET), *extra, "--out", str(out), "--force", "--no-progress"]
    start = time.perf_counter()
    done = subprocess.run(edge_sdk(*args), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    (work / f"{name}.log").write_text(done.stdout + done.stderr)
    shown = " ".join(["edge-sdk", *args]).replace(str(SHARED), "../shared")
    return {"command": shown, "exit": done.returncode, "seconds": round(seconds, 1), "folder": str(out)}


def target_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for row in report["rows"]:
        recovery = (row.get("checks") or {}).get("recovery") or {}
        float_layers = recovery.get("float_layers") or []  # empty when over budget: the all-INT8 file is kept
        rows.append(
            {
                "target": row["target"],
                "status": row["status"],
                "metrics": {k: row["metrics"].get(k) for k in METRICS},
                "float_layers": list(float_layers),
                "size_kb": row["size_kb"],
                "latency_ms": row["latency_ms"],
                "fp32_latency_ms": row["fp32_latency_ms"],
                "measured_on": row.get("measured_on"),
                "gates_measured_on": sorted({g.get("measured_on") for g in row.get("gates") or [] if g}),
                "reason": row.get("reason"),
            }
        )
    return rows


def pick(folder: Path, runs: int) -> dict[str, Any]:
    done = subprocess.run(
        edge_sdk("pick", "--model", str(folder), "--runs", str(runs), "--json", "--quiet"),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {"exit": done.returncode, "error": done.stderr[-2000:]}
    return {"exit": 0, **json.loads(done.stdout)}


def run_video(folder: Path) -> dict[str, Any]:
    """``edge-sdk run --model EXPORT_DIR`` on the test video: what it loaded and how fast it went."""
    with tempfile.TemporaryDirectory(prefix="export-pick-run-log-") as logs:
        args = ["run", "--model", str(folder), "--source", str(VIDEO), "--detector-model", str(YUNET)]
        done = subprocess.run(
            edge_sdk(*args, "--log-dir", logs, "--log-format", "jsonl"), capture_output=True, text=True, check=False
        )
    text = done.stdout + done.stderr
    loaded = re.search(r"^model: (.+)$", text, re.M)
    fps = re.search(r"processed (\d+) frames in [\d.]+ s = ([\d.]+) frames/s", text)
    faces = re.search(r"faces found in (\d+)/(\d+) frames", text)
    stages = re.search(r"per-stage ms \(mean per frame\): (.+)$", text, re.M)
    return {
        "exit": done.returncode,
        "loaded": loaded.group(1) if loaded else None,
        "frames": int(fps.group(1)) if fps else None,
        "fps": float(fps.group(2)) if fps else None,
        "frames_with_face": int(faces.group(1)) if faces else None,
        "stage_ms_mean": stages.group(1) if stages else None,
        "tail": None if done.returncode == 0 else text[-2000:],
    }


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(data: dict[str, Any]) -> str:
    machine = data["machine"]
    lines = [
        "# Done-when check: export the demo, pick, run (`benchmarks/export_pick_run.py`)",
        "",
        f"Machine: **{machine['cpu']}** ({machine['cpu_vendor']}, {machine['arch']}, {machine['cores_usable']} "
        f"usable cores); ISA flags: {' '.join(machine['isa_flags']) or 'none of note'}; int8 kernels "
        f"**{machine['int8_kernels']}** ({machine['int8_kernels_meaning']}).",
        f"Runtimes: {', '.join(f'{k} {v}' for k, v in machine['runtimes'].items())}. Recorded {data['date']}.",
        "Metrics against the unpruned FP32 parent on the export's held-out faces; default gates (expression "
        "agreement >= 0.98, AU F1 >= 0.95, VA CCC >= 0.98, PSPI MAE <= 0.15). ms = the export's quick batch-1 "
        "p50 (INT8 / FP32 file, same runtime; jetson = ONNX Runtime CPU proxy of the TensorRT file); `pick` "
        f"times interleaved ({data['pick_runs']} runs each) and decides.",
        "",
        "| run | export command | exit | wall |",
        "|---|---|---|---|",
    ]
    for name, run in data["runs"].items():
        ex = run["export"]
        lines.append(f"| {name} | `{ex['command']}` | **{ex['exit']}** | {ex['seconds'] / 60:.1f} min |")
    lines += [
        "",
        "| run | target | status | expr. agreement | mean abs Δp | AU F1 | VA CCC | PSPI MAE | float layers | "
        "size KB | ms (INT8 / FP32) | gates measured on |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in data["runs"].items():
        for row in run["targets"]:
            m = row["metrics"]
            cells = [_fmt(m.get(k), 4 if k == "expression_mean_abs_dp" else 3) for k in METRICS]
            lines.append(
                f"| {name} | {row['target']} | {row['status']} | " + " | ".join(cells) + f" | "
                f"{len(row['float_layers'])} | {row['size_kb']} | {_fmt(row['latency_ms'])} / "
                f"{_fmt(row['fp32_latency_ms'])} | {', '.join(row['gates_measured_on']) or '–'} |"
            )
    lines += ["", "## `edge-sdk pick` and `edge-sdk run --model EXPORT_DIR`", ""]
    for name, run in data["runs"].items():
        chosen = run["pick"]
        lines += [f"**{name}**: " + (chosen.get("reason") or chosen.get("error") or "no choice"), ""]
        lines += ["| candidate | file | runtime | p50 ms | p90 ms | vs FP32 (same runtime) | status |"]
        lines += ["|---|---|---|---|---|---|---|"]
        choice = chosen.get("choice") or {}
        picked = (choice.get("file"), choice.get("backend"))
        for c in chosen.get("candidates", []):
            mark = " (**chosen**)" if (c["file"], c.get("backend")) == picked else ""
            speed = c.get("speedup_vs_fp32_same_runtime")
            lines.append(
                f"| {c['label']}{mark} | {c['file']} | {c.get('backend') or '–'} | {_fmt(c.get('p50_ms'))} | "
                f"{_fmt(c.get('p90_ms'))} | {f'{speed:.2f}×' if speed else '–'} | {c['status']} |"
            )
        video = run["run"]
        lines += [
            "",
            f"`edge-sdk run --model {name}-export-folder --source {VIDEO.name}`: exit {video['exit']}, loaded "
            f"{video['loaded']}; {video['fps']} frames/s over {video['frames']} frames, faces in "
            f"{video['frames_with_face']}/{video['frames']}; per-stage ms (mean): {video['stage_ms_mean']}.",
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for export_pick_run.json/.md")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "export-pick-run")
    parser.add_argument("--runs", type=int, default=300, help="pick's timed runs per artifact")
    parser.add_argument("--only", choices=sorted(RUNS), help="one run instead of both")
    args = parser.parse_args()
    for path in (CALIB, VIDEO, YUNET):
        if not path.exists():
            raise SystemExit(f"{path} is missing: the check reads ../shared beside the checkout")
    args.work.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Any] = {}
    machine: dict[str, Any] = {}
    for name, extra in RUNS.items():
        if args.only and name != args.only:
            continue
        print(f"[{name}] exporting ...", flush=True)
        exported = export(name, extra, args.work)
        folder = Path(exported["folder"])
        report = json.loads((folder / "report.json").read_text())
        machine = report["machine_info"]
        print(f"[{name}] export exit {exported['exit']} in {exported['seconds']} s; picking ...", flush=True)
        runs[name] = {"export": exported, "targets": target_rows(report), "failed": report.get("failed")}
        runs[name]["pick"] = pick(folder, args.runs)
        runs[name]["run"] = run_video(folder)
        print(f"[{name}] run: {runs[name]['run']['loaded']} at {runs[name]['run']['fps']} frames/s", flush=True)
    data = {
        "machine": machine,
        "pick_runs": args.runs,
        "runs": runs,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "export_pick_run.json").write_text(json.dumps(data, indent=1) + "\n")
    (args.out / "export_pick_run.md").write_text(markdown(data))
    print(markdown(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
