"""The README's "bring your own model" table: the two real third-party Keras models in ../shared through every target.

    python benchmarks/byo_models.py --machine "2-core x86 dev box (AMD EPYC, AVX512-VNNI)"

For each ``../shared/models/face_classification/*.hdf5`` (FER2013/KDEF expression CNNs, 64x64 grayscale, softmax
in the graph) this runs exactly what a user runs::

    edge-sdk export --model FILE.hdf5 --card examples/cards/STEM.card.json \\
        --targets jetson,rpi,openvino,cpu --calib ../shared/data/faces --out artifacts/byo/STEM

and collects each export's report.json into benchmarks/results/byo_models.{json,md}. An export may exit 0 (every
gate passed) or 1 (a gate or a target failed, with its reason in the report); exit 2 or a signal is a bug and
stops this script. Heavy (minutes per model): kept out of the default test run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MODELS = SHARED / "models" / "face_classification"
FACES = SHARED / "data" / "faces"
YUNET = SHARED / "models" / "yunet" / "yunet_s_640_640.onnx"
CARDS = REPO / "examples" / "cards"
WORK = REPO / "artifacts" / "byo"
RESULTS = Path(__file__).with_name("results")
TARGETS = "jetson,rpi,openvino,cpu"


def export_one(model: Path, out: Path) -> tuple[int, float]:
    """Run the export CLI on one model; returns (exit code, seconds)."""
    card = CARDS / f"{model.name.split('.')[0]}.card.json"  # fer2013_big_XCEPTION.54-0.66.hdf5 -> fer2013_big_XCEPTION
    argv = [sys.executable, "-m", "edge_sdk", "export", "--model", str(model), "--card", str(card),
            "--targets", TARGETS, "--calib", str(FACES), "--detector-model", str(YUNET),
            "--out", str(out), "--force", "--no-progress"]  # fmt: skip
    print("+", " ".join(argv), flush=True)
    t0 = time.perf_counter()
    code = subprocess.run(argv, cwd=REPO).returncode
    seconds = time.perf_counter() - t0
    if code not in (0, 1):
        raise SystemExit(f"{model.name}: export exited {code} (only 0 or 1 are allowed: 2/signal is a bug)")
    return code, seconds


def _metric(row: dict[str, Any], name: str) -> str:
    value = (row.get("metrics") or row).get(name)
    return "" if value is None else f"{value:.3f}"


def markdown(results: list[dict[str, Any]], machine: str) -> str:
    lines = [
        "# Bring your own model: the two Keras models of ../shared through every target",
        "",
        f"Machine: {machine}. Command per model: `edge-sdk export --model FILE.hdf5 --card "
        f"examples/cards/STEM.card.json --targets {TARGETS} --calib ../shared/data/faces --out DIR`.",
        "",
        "Expression agreement = top-1 agreement with the FP32 model; INT8/FP32 latency = batch-1 p50 of the INT8 file"
        " over the same backend's FP32 file (> 1: slower).",
        "",
        "| model | target | status | expression agreement | size (KB) | INT8/FP32 latency | reason / failed gates |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for row in result["report"]["rows"]:
            gates = "; ".join(g["message"] for g in row.get("gates", []) if g.get("status") == "fail")
            lines.append(
                f"| {result['model']} | {row['target']} | {row['status']} | {_metric(row, 'expression_agreement')} "
                f"| {row.get('size_kb', '')} | {row.get('latency_ratio', '')} | {row.get('reason') or gates} |"
            )
    for result in results:
        held = result["report"].get("heldout", {}).get("description", "?")
        lines.append("")
        lines.append(f"{result['model']}: exit {result['exit']}, {result['seconds']:.0f} s; gates measured on {held}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", default="", help="CPU model and ISA flags, as recorded in every figure")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the recorded .json")
    args = parser.parse_args()
    if args.render_only:
        recorded = json.loads((RESULTS / "byo_models.json").read_text(encoding="utf-8"))
        (RESULTS / "byo_models.md").write_text(markdown(recorded["results"], recorded["machine"]), encoding="utf-8")
        return
    if not args.machine:
        parser.error("--machine is required: name the CPU and its ISA flags (/proc/cpuinfo)")
    models = sorted(MODELS.glob("*.hdf5"))
    if not models:
        raise SystemExit(f"no .hdf5 models in {MODELS}: this benchmark reads ../shared beside the checkout")
    results = []
    for model in models:
        out = WORK / model.stem
        code, seconds = export_one(model, out)
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
        results.append({"model": model.name, "exit": code, "seconds": round(seconds, 1), "report": report})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "byo_models.json").write_text(
        json.dumps({"machine": args.machine, "results": results}, indent=2), encoding="utf-8"
    )
    (RESULTS / "byo_models.md").write_text(markdown(results, args.machine), encoding="utf-8")
    print(markdown(results, args.machine))


if __name__ == "__main__":
    main()
