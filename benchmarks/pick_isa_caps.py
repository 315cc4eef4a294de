"""`edge-sdk pick --target openvino` on the int8 kernels of smaller x86 CPUs, measured natively by capping oneDNN.

OpenVINO's CPU plugin runs its kernels through oneDNN, which honours ``ONEDNN_MAX_CPU_ISA``: with ``AVX2`` a
VNNI/AMX host runs the kernels an AVX2-only box runs (edge_sdk_export/capped_isa.py judges accuracy the same
way). This runs ``pick`` once per cap in a child process and records the INT8 IR against the FP32 file on the
same runtime: whether INT8 still pays off on that kernel path. It is the AVX2 kernel path on this CPU's cores
and caches, not a real AVX2-only CPU: ratios carry over better than absolute times. onnxruntime has no such
switch, so the cpu and jetson ONNX files are not covered here.

Usage::

    python benchmarks/pick_isa_caps.py --model EXPORT_DIR [EXPORT_DIR ...] [--runs 300] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CAPS: tuple[tuple[str, str], ...] = (  # (ONEDNN_MAX_CPU_ISA or "" for none, what it selects)
    ("", "this CPU's best (AMX / VNNI here)"),
    ("AVX512_CORE_VNNI", "AVX-512 VNNI (no AMX)"),
    ("AVX2", "AVX2 (no VNNI: the kernels of an AVX2-only x86 box)"),
)
RESULTS = Path(__file__).with_name("results")


def pick_with_cap(model: Path, cap: str, runs: int) -> dict[str, Any]:
    """``edge-sdk pick --target openvino --json`` on a copy of ``model`` (pick.json stays out of the original)."""
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    if cap:
        env["ONEDNN_MAX_CPU_ISA"] = cap
    with tempfile.TemporaryDirectory(prefix="pick-cap-") as tmp:
        folder = Path(tmp) / model.name
        shutil.copytree(model, folder, ignore=shutil.ignore_patterns("pick.json"))
        command = [sys.executable, "-m", "edge_sdk", "pick", "--model", str(folder), "--target", "openvino",
                   "--json", "--quiet", "--runs", str(runs)]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"pick with ONEDNN_MAX_CPU_ISA={cap or '(unset)'} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def row(model: Path, cap: str, meaning: str, picked: dict[str, Any]) -> dict[str, Any]:
    timed = {c["kind"]: c for c in picked["candidates"] if c["status"] == "timed" and c["backend"] == "openvino"}
    fp32, int8 = timed.get("fp32", {}), timed.get("int8", {})
    return {
        "model": fp32.get("file", model.name),
        "onednn_max_cpu_isa": cap or None,
        "kernels": meaning,
        "fp32_p50_ms": fp32.get("p50_ms"),
        "int8_p50_ms": int8.get("p50_ms"),
        "int8_speedup": int8.get("speedup_vs_fp32_same_runtime"),
        "choice": picked["choice"]["label"],
        "reason": picked["reason"],
    }


def markdown(record: dict[str, Any]) -> str:
    machine = record["machine"]
    lines = [
        "# `edge-sdk pick --target openvino` with oneDNN's ISA capped",
        "",
        f"Reproduce: `python benchmarks/pick_isa_caps.py --model {' '.join(record['models'])} --runs {record['runs']}`"
        " (export folders of `edge-sdk export ... --targets ...,openvino`).",
        f"Host: **{machine.get('cpu')}**, ISA flags: {' '.join(machine.get('isa_flags', []))}; "
        f"runtimes: {json.dumps(machine.get('runtimes', {}))}. Batch 1, p50 over {record['runs']} interleaved runs "
        "(pick's own timing). The capped rows run the smaller CPU's kernels on this CPU's cores and caches: "
        "INT8/FP32 ratios carry over, absolute times do not. onnxruntime has no such switch (cpu/jetson files "
        "not covered).",
        "",
        "| FP32 parent | ONEDNN_MAX_CPU_ISA | kernels | FP32 p50 ms | INT8 IR p50 ms | INT8 speed-up | pick's choice |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        speed = f"{r['int8_speedup']:.2f}×" if r["int8_speedup"] else "–"
        lines.append(
            f"| {r['model']} | {r['onednn_max_cpu_isa'] or '(unset)'} | {r['kernels']} | {r['fp32_p50_ms']} | "
            f"{r['int8_p50_ms']} | {speed} | {r['choice']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", type=Path, nargs="+", required=True, help="`edge-sdk export` output folders")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows, machine = [], {}
    for model in args.model:
        for cap, meaning in CAPS:
            picked = pick_with_cap(model, cap, args.runs)
            machine = picked["machine"]
            rows.append(row(model, cap, meaning, picked))
    record = {"models": [str(m) for m in args.model], "runs": args.runs, "machine": machine, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pick_isa_caps.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    (args.out / "pick_isa_caps.md").write_text(markdown(record), encoding="utf-8")
    sys.stdout.write(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
