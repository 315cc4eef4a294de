"""The model benchmark of one target: find its artifacts, time them side by side, return every figure.

:func:`run_benchmark` returns a JSON-ready dict (schema :data:`SCHEMA`, described in
``edge_sdk/bench/__init__.py``); :mod:`edge_sdk.bench.report` prints it as a table and
:mod:`edge_sdk.bench.plot` draws it.
"""

from __future__ import annotations

import datetime as _dt
import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sdk.bench.artifacts import ArtifactSet, BenchArtifact, find_all_artifacts, fp32_onnx_in, select_variants
from edge_sdk.bench.machine import (
    MachineInfo,
    collect_machine_info,
    device_verdict,
    load_average,
    peak_rss_mb,
)
from edge_sdk.bench.measure import (
    BASELINE_DESCRIPTION,
    BASELINE_VARIANT,
    DEFAULT_BLOCK,
    Session,
    load_baseline,
    load_session,
    run_interleaved,
    sample_batch,
)
from edge_sdk.cpu import CpuInfo, kernels_notice, usable_cores
from edge_sdk.errors import InputError
from edge_sdk.model.face_model import DEMO_MODEL
from edge_sdk.targets import Target, get_target
from edge_sdk.version import __version__

SCHEMA = "edge-sdk-benchmark/1"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    """What to benchmark and how (the CLI's arguments)."""

    target: str
    models: tuple[str, ...] | None = None  # artifact files / export folders; None = the packaged demo
    precisions: tuple[str, ...] | None = None
    threads: tuple[int, ...] | None = None
    devices: tuple[str, ...] | None = None  # OpenVINO devices (CPU, GPU, NPU); None = all available
    runs: int = 500
    warmup: int = 50
    block: int = DEFAULT_BLOCK
    baseline: bool = False
    baseline_model: str | None = None  # an FP32 .onnx for the baseline; None = the FP32 ONNX found, or the demo

    def check(self) -> None:
        if self.runs < 1:
            raise InputError(f"--runs: expected at least 1, got {self.runs}")
        if self.warmup < 0:
            raise InputError(f"--warmup: expected 0 or more, got {self.warmup}")
        if self.threads is not None and any(t < 1 for t in self.threads):
            raise InputError(f"--threads: expected positive thread counts, got {list(self.threads)}")


def default_threads() -> tuple[int, ...]:
    """1 thread and every usable core (the two ends a device runs at)."""
    return tuple(sorted({1, usable_cores()}))


def _openvino_devices() -> tuple[str, ...]:
    try:
        import openvino as ov
    except ImportError:
        return ("CPU",)
    found = [d for d in ov.Core().available_devices if d.split(".")[0] in ("CPU", "GPU", "NPU")]
    return tuple(found) or ("CPU",)


# Target name -> the execution devices its runtime offers on this machine (one group of rows each).
DEVICE_LISTERS: dict[str, Callable[[], tuple[str | None, ...]]] = {"openvino": _openvino_devices}


def _groups(config: BenchConfig, target: Target) -> list[tuple[int | None, str | None]]:
    lister = DEVICE_LISTERS.get(target.name)
    devices: Sequence[str | None] = config.devices or (lister() if lister else (None,))
    threads = config.threads or default_threads()
    groups: list[tuple[int | None, str | None]] = []
    for device in devices:
        cpu_like = device is None or device.upper().startswith("CPU")
        groups.extend((t, device) for t in threads) if cpu_like else groups.append((None, device))
    return groups


def _ratio(reference: float | None, value: float | None) -> float | None:
    return None if not reference or not value else reference / value


def _rows(sessions: list[Session], target: Target, machine: MachineInfo, sizes: dict[str, int]) -> list[dict[str, Any]]:
    """Result rows of one group, with the speed-up over FP32 and over the baseline in that group."""
    p50 = {s.variant: s.stats().get("p50") for s in sessions}
    fp32_size = sizes.get("fp32")
    rows = []
    for s in sessions:
        stats = s.stats()
        verdict = device_verdict(target.name, machine, s.ran_on)
        size = sizes.get(s.variant) if s.artifact is not None else s.path.stat().st_size
        row: dict[str, Any] = {
            "variant": s.variant,
            "artifact": str(s.path),
            "files": [str(p) for p in s.artifact.files] if s.artifact else [str(s.path)],
            "precision": s.artifact.card.export.precision if s.artifact else "fp32",
            "pruning_ratio": s.artifact.pruning_ratio if s.artifact else 0.0,
            "backend": s.backend,
            "runtime": s.runtime,
            "ran_on": s.ran_on,
            "device_figure": verdict.is_device if s.artifact else False,
            "device_note": verdict.reason if s.artifact else BASELINE_DESCRIPTION,
            "threads": s.threads,
            "device": s.device,
            "size_bytes": size,
            "size_mb": None if size is None else size / 1e6,
            "size_ratio_vs_fp32": _ratio(size, fp32_size),
            "load_ms": s.load_ms,
            "first_inference_ms": s.first_inference_ms,
            "rss_delta_mb": s.rss_delta_mb,
            "runs": len(s.latencies_ns),
            "latency_ms": {k: v for k, v in stats.items() if k != "fps"},
            "fps": stats.get("fps"),
            "speedup_vs_fp32": _ratio(p50.get("fp32"), stats.get("p50")),
            "speedup_vs_baseline": _ratio(p50.get(BASELINE_VARIANT), stats.get("p50")),
            "fidelity": s.artifact.fidelity if s.artifact else None,
            "backend_extra": s.info_extra,
        }
        rows.append(row)
    return rows


def kernel_notes(artifacts: list[BenchArtifact], machine: MachineInfo) -> list[str]:
    """One note per INT8 artifact whose fidelity gates were measured on another int8 kernel class than this
    machine's (its card's ``export.validated_on``, else its export report row's ``measured_on``)."""
    here = CpuInfo(machine.cpu, machine.arch, tuple(machine.isa_flags), machine.int8_kernels, machine.cores_usable)
    notes = []
    for artifact in artifacts:
        export = artifact.card.export
        if export.precision == "fp32":
            continue
        measured = export.validated_on.kernels if export.validated_on else (artifact.fidelity or {}).get("measured_on")
        also_on = export.validated_on.also_on if export.validated_on else None
        notice = kernels_notice(measured if isinstance(measured, str) else None, here, artifact.path.name, also_on)
        if notice:
            notes.append(notice)
    return notes


def run_benchmark(config: BenchConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Benchmark ``config.target``'s artifacts on this machine; every figure as a JSON-ready dict."""
    say = progress or (lambda message: None)
    config.check()
    target = get_target(config.target)
    machine = collect_machine_info()
    found: ArtifactSet = select_variants(
        find_all_artifacts(target, config.models, DEMO_MODEL), list(config.precisions) if config.precisions else None
    )
    notes = list(found.notes) + kernel_notes(found.artifacts, machine)
    baseline_path = _baseline_path(found, config)
    if config.baseline and baseline_path is None:
        notes.append("baseline skipped: no FP32 .onnx among the artifacts (the baseline runs the FP32 ONNX)")
    batch = sample_batch(found.artifacts[0].card)
    sizes = {a.variant: a.size_bytes for a in found.artifacts}
    groups = _groups(config, target)
    oversubscribed = [t for t, _ in groups if t and t > machine.cores_usable]
    if oversubscribed:
        notes.append(
            f"threads {sorted(set(oversubscribed))} exceed the {machine.cores_usable} usable cores: oversubscribed"
        )
    rows: list[dict[str, Any]] = []
    for threads, device in groups:
        where = f"threads={threads}" + (f", device={device}" if device else "")
        say(f"loading {len(found.artifacts)} artifact(s) for {target.name} ({where})")
        sessions = [load_session(a, target, threads, device, batch) for a in found.artifacts]
        if baseline_path is not None:
            sessions.append(load_baseline(baseline_path, found.artifacts[0].card, batch))
        say(f"timing {', '.join(s.variant for s in sessions)}: {config.warmup} warm-up + {config.runs} runs each")
        run_interleaved(sessions, config.runs, config.warmup, config.block)
        rows.extend(_rows(sessions, target, machine, sizes))
        del sessions
        gc.collect()
    device_rows = [r for r in rows if r["variant"] != BASELINE_VARIANT]
    return {
        "schema": SCHEMA,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "edge_sdk_version": __version__,
        "target": {
            "name": target.name,
            "device": target.device,
            "artifact_format": target.artifact_format,
            "quantization": target.quantization,
        },
        "device_figures": bool(device_rows) and all(r["device_figure"] for r in device_rows),
        "machine": machine.to_dict(),
        "load_average_end": load_average(),
        "peak_rss_mb": peak_rss_mb(),
        "settings": {
            "models": list(config.models) if config.models else ["demo"],
            "source": found.source,
            "runs": config.runs,
            "warmup": config.warmup,
            "block": config.block,
            "batch": 1,
            "threads": sorted({t for t, _ in groups if t is not None}),
            "devices": sorted({d for _, d in groups if d is not None}),
            "interleaved": True,
            "baseline": BASELINE_DESCRIPTION if baseline_path is not None else None,
        },
        "results": rows,
        "hints": list(target.device_hints),
        "notes": notes,
        "pipeline": None,
    }


def _baseline_path(found: ArtifactSet, config: BenchConfig) -> Path | None:
    """The FP32 ONNX the baseline runs: the one given, the FP32 ONNX benchmarked, one in the folder, or the demo."""
    if not config.baseline:
        return None
    if config.baseline_model:
        path = Path(config.baseline_model)
        if path.suffix.lower() != ".onnx" or not path.is_file():
            raise InputError(f"--baseline-model {path}: expected an existing FP32 .onnx file")
        return path
    fp32 = found.fp32
    if fp32 is not None and fp32.path.suffix.lower() == ".onnx":
        return fp32.path
    for model in config.models or ():
        if Path(model).is_dir():
            onnx_parent = fp32_onnx_in(Path(model))
            if onnx_parent is not None:
                return onnx_parent
    return DEMO_MODEL if DEMO_MODEL.is_file() else None
