"""Architecture zoo: torch models of other families and the two real Keras models through every target, judged
on this host's int8 kernels and on emulated AVX2 (no VNNI) kernels.

    python benchmarks/arch_zoo.py --fresh --models keras   # one stretch per model:
    python benchmarks/arch_zoo.py --models mobilefacenet   # results merge by model
    python benchmarks/arch_zoo.py --models efficientnet_lite
    python benchmarks/arch_zoo.py --models mobilefacenet --unpruned --no-emulate        # also unpruned, native only
    python benchmarks/arch_zoo.py --render-only                                         # .md again from the .json

Models: ``tests/zoo/*.py`` (MobileFaceNet with PReLU and a GDC head; EfficientNet-lite0 style MBConv/ReLU6; all
four card heads, trained 1500 steps on rendered faces with group sparsity first, in parallel, cached in
.cache/zoo/: see tests/zoo/training.py) exported with ``--prune 0.3``
(and unpruned with ``--unpruned``), and ``../shared/models/face_classification/*.hdf5`` with their example cards.
Each runs exactly what a user runs::

    edge-sdk export --model tests/zoo/NAME.py:build --prune 0.3 --targets jetson,rpi,openvino,cpu \\
        --calib ../shared/data/faces --detector-model ../shared/models/yunet/yunet_s_640_640.onnx --out DIR

(exit 0: every gate passed; 1: a gate or a target failed, reason in the report; anything else stops this script).
Then every artifact is judged again outside the export, against the unpruned FP32 parent's outputs on the
export's own held-out crops (rebuilt with the export's own steps and checked against report.json), with the
export's metrics and default gates:

* **native**: this host's int8 kernels (CPU model and ISA flags named in the output); the INT8/FP32 speed ratio
  is the export's own batch-1 p50 of each artifact over its FP32 file on the same runtime;
* **emulated**: the same artifacts and held-out batch inside ``qemu-x86_64 -cpu Haswell`` (AVX2 + FMA, no
  AVX512, no VNNI), where onnxruntime runs its u8s8 kernels whose int16 pair sums saturate (tests/isa.py's
  probe records which kernels ran). Accuracy only: latency under an emulator is meaningless. The jetson file is
  judged as the export judges it, on ONNX Runtime CPU with QDQ simulated (a TensorRT proxy). Only artifacts that
  pass natively are judged again emulated (the no-VNNI path only saturates more), and not fer2013's TensorRT
  proxy (:data:`EMULATION_SKIPPED`: > 10 min under TCG); the table says which were skipped and why.

Writes ``benchmarks/results/arch_zoo.{json,md}``. Heavy (5-15 min per model on 2 cores): run it under the heavy
lock, one model per invocation.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests.isa (the saturation probe), benchmarks.int8_isa when run as a script

SHARED = REPO.parent / "shared"
FACES = SHARED / "data" / "faces"
YUNET = SHARED / "models" / "yunet" / "yunet_s_640_640.onnx"
KERAS = SHARED / "models" / "face_classification"
CARDS = REPO / "examples" / "cards"
ZOO = REPO / "tests" / "zoo"
ZOO_MODELS = ("mobilefacenet", "efficientnet_lite", "mobilenetv3_small")
TARGETS = ("jetson", "rpi", "openvino", "cpu")
PRUNE = 0.3
# Distillation after pruning: the export's default (2000 steps at most; it keeps its best checkpoint and stops
# after 4 checks without a better one). The recorded runs before 2026-12-03 used 500 steps at lr 1e-3.
DISTILL_STEPS = 0
# The zoo models learnt on rendered faces only, so (as the export does by default for the synthetic demo) rendered
# faces join the calibration footage as distillation data: 300-odd real crops alone are easy to overfit.
DISTILL_SYNTHETIC = 3000
RESULTS = Path(__file__).with_name("results")
WORK = REPO / "artifacts" / "arch_zoo"
# The export's documented setting for weak models whose expression classes are nearly tied (edge_sdk_export.fidelity
# OPTIONAL_GATES): expression judged by its probabilities, every other head by the default gates.
NEAR_TIE_GATES = ("expression_agreement=off", "expression_mean_abs_dp=0.01")
METRICS = ("expression_agreement", "expression_mean_abs_dp", "au_occurrence_f1", "va_ccc", "pspi_mae")

logger = logging.getLogger("arch_zoo")


@dataclass(frozen=True)
class ZooRun:
    """One export: a model argument for ``--model``, its card (None when the source carries it), the prune ratio."""

    key: str
    family: str
    model: str
    card: Path | None
    prune: float
    distill_steps: int = 0  # 0: the export's default
    gates: tuple[str, ...] = ()  # --gate overrides of the export (NEAR_TIE_GATES for weak, near-tied models)

    def argv(self, out: Path) -> list[str]:
        argv = [sys.executable, "-m", "edge_sdk", "export", "--model", self.model, "--targets", ",".join(TARGETS),
                "--calib", str(FACES), "--detector-model", str(YUNET), "--out", str(out), "--force",
                "--no-progress"]  # fmt: skip
        if self.card is not None:
            argv += ["--card", str(self.card)]
        if self.prune > 0:
            argv += ["--prune", f"{self.prune:g}"]
        if self.prune > 0 and self.distill_steps > 0:
            argv += ["--distill-steps", str(self.distill_steps)]
        if self.prune > 0 and self.card is None:  # a zoo model: trained on rendered faces, distilled on them too
            argv += ["--distill-synthetic", str(DISTILL_SYNTHETIC)]
        for gate in self.gates:
            argv += ["--gate", gate]
        return argv


def zoo_runs(models: list[str], unpruned: bool, distill_steps: int = 0, near_tie: bool = False) -> list[ZooRun]:
    """The exports asked for: each zoo model pruned (and unpruned), then each Keras model (quantized only).
    ``near_tie``: the pruned zoo exports run with :data:`NEAR_TIE_GATES` (key suffix ``-neartie``)."""
    keras: list[ZooRun] = []
    for path in sorted(KERAS.glob("*.hdf5")):
        stem = path.name.split(".")[0]  # fer2013_big_XCEPTION.54-0.66.hdf5 -> fer2013_big_XCEPTION
        if stem in models or "keras" in models:
            family = f"real third-party Keras CNN ({path.name}), quantized only"
            keras.append(ZooRun(stem, family, str(path), CARDS / f"{stem}.card.json", 0.0))
    pruned, dense = [], []
    for name in ZOO_MODELS:
        if name not in models:
            continue
        module = __import__(f"tests.zoo.{name}", fromlist=["build"])
        family = (module.__doc__ or name).split("\n", 1)[0].removeprefix("Zoo model: ").rstrip(".")
        model = f"{(ZOO / f'{name}.py').relative_to(REPO)}:build"
        key, gates = f"{name}-pruned{round(PRUNE * 100)}", NEAR_TIE_GATES if near_tie else ()
        pruned.append(ZooRun(key + ("-neartie" if near_tie else ""), family, model, None, PRUNE, distill_steps, gates))
        if unpruned:
            dense.append(ZooRun(name, family, model, None, 0.0))
    return keras + pruned + dense


# ---- 1. export -------------------------------------------------------------------------------------------------
def export(run: ZooRun, out: Path) -> dict[str, Any]:
    """The CLI on one model; returns exit code, seconds and the report."""
    argv = run.argv(out)
    logger.info("+ %s", " ".join(argv))
    t0 = time.perf_counter()
    code = subprocess.run(argv, cwd=REPO).returncode
    seconds = round(time.perf_counter() - t0, 1)
    if code not in (0, 1):
        raise SystemExit(f"{run.key}: export exited {code} (only 0 or 1 are allowed: 2/signal is a bug)")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return {"exit": code, "seconds": seconds, "report": report}


# ---- 2. the export's held-out batch and FP32 reference, rebuilt ------------------------------------------------
def prepare(run: ZooRun, out: Path, report: dict[str, Any]) -> dict[str, Any]:
    """The export's held-out crops (its own face steps, same options and seed) and the unpruned FP32 parent's
    outputs on them, saved beside the artifacts for the (emulated) judge."""
    from edge_sdk.face import create_detector
    from edge_sdk_export.pipeline import ExportOptions, faces_step, plan_step, reference_step, resolve_step

    folder = out / "_judge"
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "source").mkdir(parents=True)
    options = ExportOptions(
        model=run.model,
        targets=["cpu"],
        calib=str(FACES),
        out=folder / "unused",
        card=run.card,
        detector=create_detector("auto", str(YUNET)),
        progress=False,
    )
    source = resolve_step(options, folder / "source")
    faces = faces_step(options, source.card, plan_step(options, source.card))
    ref = reference_step(source, faces, options)
    same = {
        "fp32_sha256": ref.sha256 == report["model"]["sha256"],
        "heldout": ref.heldout_description == report["heldout"]["description"],
    }
    if not all(same.values()):  # judged anyway (against this FP32 file), and flagged in the results
        logger.warning("%s: rebuilt reference differs from the export's: %s", run.key, same)
    np.save(folder / "heldout.npy", ref.heldout)
    np.savez(folder / "fp32_outputs.npz", **ref.outputs)
    artifacts = {
        row["target"]: str(out / row["files"][0])
        for row in report["rows"]
        if row["target"] in TARGETS and row.get("files")
    }
    return {"key": run.key, "folder": str(folder), "artifacts": artifacts, "rebuilt_matches_export": same}


# ---- 3. judging: natively and inside qemu ----------------------------------------------------------------------
JUDGE_ORDER = ("cpu", "jetson", "rpi", "openvino")  # OpenVINO last: under qemu it is the likeliest to die
# Artifacts not judged under qemu, and why (recorded in the results): fer2013's TensorRT proxy (an unfused QDQ
# graph of a 640k-parameter Xception) ran > 10 min under TCG emulation without finishing.
EMULATION_SKIPPED = {
    ("fer2013_big_XCEPTION", "jetson"): "not judged: the unfused QDQ TensorRT proxy ran > 10 min under qemu TCG",
}
NATIVE_FAIL_SKIP = "not judged: fails natively already"
EMULATED_TIMEOUT_S = 600  # per emulated judge process (one model)


def emulation_manifest(manifest: dict[str, Any], native: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The artifacts worth judging under qemu (those passing natively by the gates their export used, minus
    :data:`EMULATION_SKIPPED`) and a ``{key: {target: {"skipped": why}}}`` record of the others: an artifact that
    already fails on this host's kernels is not judged again on emulated ones (the AVX2 path only saturates more)."""
    models, skipped = [], {}
    for prepared in manifest["models"]:
        key, keep = prepared["key"], {}
        for target, path in prepared["artifacts"].items():
            judged = native["models"].get(key, {}).get(target) or {}
            passed = judged.get("passed") or (  # a -neartie export is held to the near-tie gates
                key.endswith("-neartie") and "metrics" in judged and _near_tie_verdict(judged["metrics"]) == "pass"
            )
            why = EMULATION_SKIPPED.get((key, target)) or (None if passed else NATIVE_FAIL_SKIP)
            if why:
                skipped.setdefault(key, {})[target] = {"skipped": why}
            else:
                keep[target] = path
        if keep:
            models.append({**prepared, "artifacts": keep})
    return {"models": models}, skipped


def judge(manifest: dict[str, Any], partial: Path | None = None) -> dict[str, Any]:
    """Metrics and default gates of every artifact in ``manifest`` against the FP32 outputs, on this process's
    int8 kernels; the jetson file as the export judges it (QDQ simulated). Runs unchanged under qemu."""
    from edge_sdk.backend import load_backend
    from edge_sdk.targets import TARGETS as TARGET_TABLE
    from edge_sdk_export.fidelity import DEFAULT_GATES, apply_gates, compare, head_outputs
    from tests.isa import int8_kernels, onnxruntime_u8s8_saturates

    result: dict[str, Any] = {"int8_kernels": int8_kernels(), "u8s8_saturates": onnxruntime_u8s8_saturates()}
    models: dict[str, Any] = {}
    for prepared in manifest["models"]:
        folder = Path(prepared["folder"])
        heldout = np.load(folder / "heldout.npy")
        ref = dict(np.load(folder / "fp32_outputs.npz"))
        rows: dict[str, Any] = {}
        models[prepared["key"]] = rows
        artifacts = prepared["artifacts"]
        for target in sorted(artifacts, key=lambda t: JUDGE_ORDER.index(t) if t in JUDGE_ORDER else 99):
            path = artifacts[target]
            if partial is not None:  # what is judged so far survives a native crash of the next artifact
                partial.write_text(json.dumps({**result, "models": models}, indent=1))
            t0 = time.perf_counter()
            proxy = {"optimize": False} if TARGET_TABLE[target].simulated_proxy else {}
            try:
                backend = load_backend(path, threads=1, **proxy)
                metrics = compare(backend.card, ref, head_outputs(backend, heldout))
            except Exception as exc:  # an artifact this (emulated) CPU cannot run: recorded, not fatal
                rows[target] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                logger.info("%s %s: cannot run here: %s", prepared["key"], target, rows[target]["error"])
                continue
            passed, gates = apply_gates(metrics, DEFAULT_GATES)
            rows[target] = {
                "metrics": metrics,
                "passed": passed,
                "failed_gates": [g.message for g in gates if g.status == "fail"],
                "seconds": round(time.perf_counter() - t0, 1),
            }
            logger.info("%s %s: %s", prepared["key"], target, "pass" if passed else rows[target]["failed_gates"])
    result["models"] = models
    return result


def run_emulated(manifest: dict[str, Any], cpu: str, work: Path, jobs: int) -> dict[str, Any]:
    """:func:`judge` inside ``qemu-x86_64 -cpu CPU``, one emulated process per model, ``jobs`` at a time, each
    stopped after :data:`EMULATED_TIMEOUT_S` (benchmarks/int8_isa.py's scheduler)."""
    from benchmarks.int8_isa import run_emulated as run_judges

    return run_judges(
        manifest, cpu, work, jobs, script=Path(__file__).resolve(), key="key", timeout_s=EMULATED_TIMEOUT_S
    )


# ---- 4. report ---------------------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _near_tie_verdict(metrics: dict[str, Any]) -> str:
    from edge_sdk_export.fidelity import apply_gates, parse_gates

    passed, gates = apply_gates(metrics, parse_gates(list(NEAR_TIE_GATES)))
    return "pass" if passed else "fail: " + "; ".join(g.message.split(":")[0] for g in gates if g.status == "fail")


def _row_cells(judged: dict[str, Any] | None) -> list[str]:
    if judged is None:
        return ["not run"] + ["–"] * 6
    if "skipped" in judged:
        return [judged["skipped"]] + ["–"] * 6
    if "error" in judged:
        return [f"not runnable: {judged['error'][:80]}"] + ["–"] * 6
    m = judged["metrics"]
    verdict = "pass" if judged["passed"] else "**fail**: " + "; ".join(judged["failed_gates"])
    dp = m.get("expression_mean_abs_dp")
    return [
        verdict,
        _near_tie_verdict(m),
        _fmt(m.get("expression_agreement")),
        "–" if dp is None else f"{dp:.4f}",
        _fmt(m.get("au_occurrence_f1")),
        _fmt(m.get("va_ccc")),
        _fmt(m.get("pspi_mae")),
    ]


def _float_layers(row: dict[str, Any]) -> str:
    recovery = (row.get("checks") or {}).get("recovery") or {}
    layers = recovery.get("float_layers") or []
    return str(len(layers)) if not layers else f"{len(layers)} ({', '.join(str(x) for x in layers)[:60]})"


def _speed(row: dict[str, Any]) -> str:
    ms, fp32 = row.get("latency_ms"), row.get("fp32_latency_ms")
    return "–" if not ms or not fp32 else f"{fp32 / ms:.2f}×"


def _training_lines(record: dict[str, Any]) -> list[str]:
    """How the zoo models were trained and how good they are at their own (rendered) task, against its labels."""
    training = record.get("training") or {}
    if not training:
        return []
    lines = [
        "",
        "## Zoo training (FP32, before any export)",
        "",
        "tests/zoo/training.py, cached in `.cache/zoo/` by a hash of the sources and recipe. Held-out = 1000 "
        "rendered faces of a seed no training uses, scored against their labels (the zoo models know nothing else).",
        "",
        "| model | recipe | train time | expr. accuracy | median top-1 prob | AU F1 | VA CCC | AU intensity MAE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, meta in training.items():
        h, minutes = meta.get("heldout", {}), meta.get("train_s", 0) / 60
        lines.append(
            f"| {name} | {meta.get('recipe_text', '?')} | {minutes:.1f} min (+{meta.get('render_s')} s rendering, "
            f"1 thread) | {_fmt(h.get('expression_accuracy'))} | "
            f"{_fmt(h.get('expression_median_top1_prob'))} | {_fmt(h.get('au_occurrence_f1'))} | "
            f"{_fmt(h.get('va_ccc'))} | {_fmt(h.get('au_intensity_mae'))} |"
        )
    return lines


def _pruned_parent_lines(record: dict[str, Any]) -> list[str]:
    """The pruned FP32 model against the unpruned one, before INT8: what pruning + distillation alone cost."""
    lines = []
    for result in record["results"]:
        report = result["report"]
        row = next((r for r in report["rows"] if r["target"] == "pruned-fp32"), None)
        if row is None:
            continue
        m, pruning = row["metrics"], report["pruning"]
        parent = pruning.get("parent_gates") or {}
        failing = parent.get("failing") or []
        verdict = "pass" if parent.get("passed") else "**fail**: " + "; ".join(failing) if failing else "?"
        dp = m.get("expression_mean_abs_dp")
        lines.append(
            f"| {result['key']} | {verdict} | {_fmt(m.get('expression_agreement'))} | "
            f"{'–' if dp is None else f'{dp:.4f}'} | {_fmt(m.get('au_occurrence_f1'))} | {_fmt(m.get('va_ccc'))} | "
            f"{_fmt(m.get('pspi_mae'))} | {pruning.get('params_ratio')}× / {pruning.get('macs_ratio')}× |"
        )
    if not lines:
        return []
    return [
        "",
        "## Pruned FP32 vs unpruned (before INT8)",
        "",
        "The export's `pruned-fp32` row: the pruned and distilled model against the unpruned FP32 parent on the same "
        "held-out crops, default gates. When it misses, every INT8 file of it misses too and the export says so "
        "(accuracy recovery skipped: float layers cannot undo pruning).",
        "",
        "| model | default gates | expr. agreement | mean abs Δp | AU F1 | VA CCC | PSPI MAE | params / MACs |",
        "|---|---|---|---|---|---|---|---|",
    ] + lines


def _not_run(native_kernels: str) -> list[str]:
    from benchmarks.int8_isa import not_run

    return not_run(native_kernels)


def markdown(record: dict[str, Any]) -> str:
    host, native, emulated = record["host"], record["native"], record.get("emulated")
    lines = [
        "# Architecture zoo: other model families through every target, per x86 int8-kernel class",
        "",
        "Reproduce, one run per model (results merge by model): `python "
        "benchmarks/arch_zoo.py --models M` for M = keras (with `--fresh` to start anew), mobilefacenet, "
        f"efficientnet_lite ({record['seconds'] / 60:.0f} min here for the runs recorded below, zoo training "
        "excluded: it is cached in .cache/zoo/).",
        "",
        f"Host: **{host['cpu']}**, {host['arch']}, ISA flags: {' '.join(host['isa_flags'])}; onnxruntime "
        f"{host['onnxruntime']}; native int8 kernels **{native['int8_kernels']}** (MatMulInteger probe: u8s8 "
        f"saturates = {native['u8s8_saturates']}). Not run: "
        f"{' and '.join(record.get('not_run') or _not_run(native['int8_kernels']))}.",
    ]
    if emulated:
        lines += [
            "",
            f"Emulated: the same artifacts judged inside `qemu-x86_64 -cpu {emulated['qemu_cpu']}` (AVX2 + FMA, no "
            f"AVX512, no VNNI): onnxruntime ran **{emulated['int8_kernels']}** kernels (probe: u8s8 saturates = "
            f"{emulated['u8s8_saturates']}). Accuracy only; no latency under the emulator.",
        ]
    lines += [
        "",
        "Command per model: `edge-sdk export --model M --targets jetson,rpi,openvino,cpu --calib ../shared/data/faces"
        " [--prune 0.3 --distill-steps N]` (zoo models: `tests/zoo/NAME.py:build`; Keras: `FILE.hdf5 --card "
        "examples/cards/STEM.card.json`; each run's exact command under *Models*). Metrics against the unpruned "
        "FP32 parent on the export's held-out real-face crops; default "
        "gates: expression agreement >= 0.98, AU F1 >= 0.95, VA CCC >= 0.98, PSPI MAE <= 0.15 (n/a for a head a "
        "model lacks). Mean abs Δp = mean absolute change of the expression probabilities (reported, not gated). "
        "Float layers = layers the export's accuracy recovery kept in float. INT8 vs FP32 = the FP32 file's "
        "batch-1 p50 over the INT8 file's on the same runtime, 1 thread, native only (> 1×: INT8 faster). jetson "
        "= ONNX Runtime CPU proxy of the TensorRT file (QDQ simulated). Near-tie gates = the export's setting for "
        f"weak models with nearly tied classes (`--gate {' --gate '.join(NEAR_TIE_GATES)}`): expression judged by "
        "its probabilities, the other heads by the default gates.",
        "",
        "| model | target | ISA | default gates | near-tie gates | expr. agreement | mean abs Δp | AU F1 | VA CCC "
        "| PSPI MAE | float layers | INT8 vs FP32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in record["results"]:
        key = result["key"]
        rows = {row["target"]: row for row in result["report"]["rows"]}
        for target in TARGETS:
            row = rows.get(target, {})
            isa_native = f"{native['int8_kernels']} (native)"
            lines.append(
                f"| {key} | {target} | {isa_native} | "
                + " | ".join(_row_cells(native["models"].get(key, {}).get(target)))
                + f" | {_float_layers(row)} | {_speed(row)} |"
            )
            if emulated:
                isa = f"{emulated['int8_kernels']} (qemu {emulated['qemu_cpu']})"
                lines.append(
                    f"| {key} | {target} | {isa} | "
                    + " | ".join(_row_cells(emulated["models"].get(key, {}).get(target)))
                    + f" | {_float_layers(row)} | – |"
                )
    lines += _training_lines(record) + _pruned_parent_lines(record)
    lines += ["", "## Models", ""]
    for result in record["results"]:
        report = result["report"]
        pruning = report.get("pruning", {})
        pruned = (
            f"pruned {pruning.get('ratio', 0):g}: params {pruning.get('params_ratio', '?')}×, "
            f"MACs {pruning.get('macs_ratio', '?')}×; "
            if pruning.get("applied")
            else ""
        )
        lines.append(
            f"- **{result['key']}**: {result['family']}. {pruned}export exit {result['exit']} in "
            f"{result['seconds']:.0f} s; held-out: {report['heldout']['description']}. "
            f"Command: `{result.get('argv', '')}`."
        )
    if record.get("findings"):
        lines += ["", "## Findings", ""] + [f"- {f}" for f in record["findings"]]
    return "\n".join(lines) + "\n"


def emulate_recorded(args: argparse.Namespace) -> int:
    """The emulated half alone, on the exports and rebuilt references a native run left in ``args.work``."""
    from benchmarks.int8_isa import EMULATED_CPUS

    path = args.out / "arch_zoo.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    prepared = []
    for result in record["results"]:
        out = args.work / result["key"]
        rows = result["report"]["rows"]
        artifacts = {r["target"]: str(out / r["files"][0]) for r in rows if r["target"] in TARGETS and r.get("files")}
        prepared.append({"key": result["key"], "folder": str(out / "_judge"), "artifacts": artifacts})
    qemu_cpu = EMULATED_CPUS["haswell"]
    record["emulated"] = {**run_emulated({"models": prepared}, qemu_cpu, args.work, args.jobs), "qemu_cpu": qemu_cpu}
    record["not_run"] = _not_run(record["native"]["int8_kernels"])
    record["seconds"] = round(record["seconds"] + time.perf_counter() - t0, 1)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    (args.out / "arch_zoo.md").write_text(markdown(record), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default="mobilefacenet,efficientnet_lite,keras",
        help="comma list of zoo model names, Keras stems, or 'keras' for both Keras models",
    )
    parser.add_argument("--unpruned", action="store_true", help="also export the zoo models without --prune")
    parser.add_argument("--fresh", action="store_true", help="start a new results file instead of merging into it")
    parser.add_argument("--no-emulate", action="store_true", help="native only")
    parser.add_argument(
        "--distill-steps", type=int, default=DISTILL_STEPS, help="--distill-steps of the pruned exports (0: default)"
    )
    parser.add_argument(
        "--near-tie-gates",
        action="store_true",
        help="export the pruned zoo models with the near-tie gates (key suffix -neartie; for weak, near-tied heads)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="emulated processes at a time (one core each)")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the recorded .json")
    parser.add_argument(
        "--emulate-only", action="store_true", help="judge the exports already in --work under qemu; update the .json"
    )
    parser.add_argument("--judge", type=Path, help=argparse.SUPPRESS)  # internal: the (emulated) judge process
    parser.add_argument("--judge-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    if args.judge:
        result = judge(json.loads(args.judge.read_text()), partial=args.judge_out)
        args.judge_out.write_text(json.dumps(result, indent=1))
        return 0
    if args.render_only:
        record = json.loads((args.out / "arch_zoo.json").read_text(encoding="utf-8"))
        (args.out / "arch_zoo.md").write_text(markdown(record), encoding="utf-8")
        return 0

    if args.emulate_only:
        return emulate_recorded(args)

    import onnxruntime

    from benchmarks.int8_isa import EMULATED_CPUS
    from edge_sdk.cpu import describe_cpu

    os.chdir(REPO)  # the zoo models are given as tests/zoo/NAME.py:build
    t0 = time.perf_counter()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    path = args.out / "arch_zoo.json"
    # One invocation per model (or a few) keeps each run short; results merge by model key.
    record: dict[str, Any] = {} if args.fresh or not path.is_file() else json.loads(path.read_text(encoding="utf-8"))
    zoo = tuple(n for n in names if n in ZOO_MODELS)
    if zoo:
        from tests.zoo import training

        logger.info("training (or loading from .cache/zoo) %s", ", ".join(zoo))
        record.setdefault("training", {}).update(training.train_all(zoo))
    runs = zoo_runs(names, args.unpruned, args.distill_steps, args.near_tie_gates)
    args.work.mkdir(parents=True, exist_ok=True)
    results, prepared = [], []
    for run in runs:
        out = args.work / run.key
        exported = export(run, out)
        results.append({"key": run.key, "family": run.family, "model": run.model, "prune": run.prune,
                        "argv": " ".join(run.argv(out)[2:]), **exported})  # fmt: skip
        prepared.append(prepare(run, out, exported["report"]))
    manifest = {"models": prepared}
    cpu = describe_cpu()
    record["host"] = {
        "cpu": cpu.model,
        "arch": cpu.arch,
        "isa_flags": list(cpu.isa_flags),
        "cores_usable": cpu.cores_usable,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }
    native = judge(manifest)
    merged = record.setdefault("native", {"models": {}})
    merged.update({k: v for k, v in native.items() if k != "models"})
    merged["models"].update(native["models"])
    for result, prep in zip(results, prepared, strict=True):
        result["rebuilt_matches_export"] = prep["rebuilt_matches_export"]
    keys = [r["key"] for r in results]
    record["results"] = [r for r in record.get("results", []) if r["key"] not in keys] + results
    invocation = {"models": names, "seconds": round(time.perf_counter() - t0, 1)}
    record.setdefault("invocations", []).append(invocation)
    record["seconds"] = round(sum(i["seconds"] for i in record["invocations"]), 1)
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")  # native so far
    (args.out / "arch_zoo.md").write_text(markdown(record), encoding="utf-8")
    if not args.no_emulate:
        qemu_cpu = EMULATED_CPUS["haswell"]
        worth, skipped = emulation_manifest(manifest, native)
        emulated = run_emulated(worth, qemu_cpu, args.work, args.jobs) if worth["models"] else {"models": {}}
        merged = record.setdefault("emulated", {"models": {}})
        merged["qemu_cpu"] = qemu_cpu
        merged.update({k: v for k, v in emulated.items() if k not in ("models", "seconds") and v is not None})
        for key in keys:
            merged["models"][key] = {**skipped.get(key, {}), **emulated["models"].get(key, {})}
    record["not_run"] = _not_run(record["native"]["int8_kernels"])
    invocation["seconds"] = round(time.perf_counter() - t0, 1)
    record["seconds"] = round(sum(i["seconds"] for i in record["invocations"]), 1)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    (args.out / "arch_zoo.md").write_text(markdown(record), encoding="utf-8")
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
