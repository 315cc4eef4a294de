"""Timing artifacts side by side: load, first inference, warm-up, then interleaved timed runs.

All sessions of one group (one thread count, one device) are loaded together and timed in
round-robin blocks, so a slow drift of the machine (thermal throttling, a neighbour's load) hits
every precision alike and their ratios stay honest. Each block starts with one untimed call, so a
switch between sessions (cold caches, a sleeping thread pool) is not charged to the next session.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.backend import load_backend
from edge_sdk.bench.artifacts import BenchArtifact
from edge_sdk.bench.machine import rss_mb
from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.processing import preprocess
from edge_sdk.targets import Target

BASELINE_VARIANT = "fp32-plain-ort"
BASELINE_DESCRIPTION = (
    "the FP32 ONNX on plain ONNX Runtime: InferenceSession(path, providers=['CPUExecutionProvider']) "
    "with default SessionOptions (no thread settings), as a user would run it without edge-sdk"
)
DEFAULT_BLOCK = 10
PERCENTILES = (50, 90, 99)

# Backend name -> the options the benchmark passes to it for a target, a thread count and a device.
BackendOptions = Callable[[Target, int | None, str | None], dict[str, Any]]
BACKEND_OPTIONS: dict[str, BackendOptions] = {
    "onnxruntime": lambda target, threads, device: {"threads": threads, "providers": target.providers or None},
    "litert": lambda target, threads, device: {"threads": threads},
    "openvino": lambda target, threads, device: {"threads": threads, "device": device or "CPU"},
}


def sample_batch(card: ModelCard, seed: int = 0) -> np.ndarray:
    """A fixed batch-1 input: a smooth random face-sized BGR image through the real preprocessing."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image = np.repeat(np.repeat(coarse, 32, axis=0), 32, axis=1)
    return preprocess([image], card.input)


@dataclass
class Session:
    """One loaded artifact at one thread count/device, and the latencies measured on it."""

    variant: str
    artifact: BenchArtifact | None  # None for the plain-ONNX-Runtime baseline
    path: Path
    call: Callable[[], object]
    backend: str
    runtime: str
    ran_on: str
    threads: int | None
    device: str | None
    load_ms: float
    first_inference_ms: float
    rss_delta_mb: float
    info_extra: dict[str, str] = field(default_factory=dict)
    latencies_ns: list[int] = field(default_factory=list)

    def stats(self) -> dict[str, float]:
        """min/p50/p90/p99/max/mean/std in ms and FPS (batch 1, = 1000 / mean)."""
        if not self.latencies_ns:
            return {}
        ms = np.asarray(self.latencies_ns, np.float64) / 1e6
        out = {"min": float(ms.min())}
        out.update({f"p{p}": float(np.percentile(ms, p)) for p in PERCENTILES})
        out.update({"max": float(ms.max()), "mean": float(ms.mean()), "std": float(ms.std())})
        out["fps"] = 1000.0 / out["mean"]
        return out


def _timed_load(load: Callable[[], tuple[Callable[[], object], dict[str, Any]]]) -> tuple[Any, float, float, float]:
    """(loaded, load ms, time-to-first-inference ms, RSS growth MiB) for a loader returning (call, meta)."""
    gc.collect()
    rss_before = rss_mb()
    start = time.perf_counter()
    call, meta = load()
    loaded = time.perf_counter()
    call()
    first = time.perf_counter()
    return (call, meta), (loaded - start) * 1e3, (first - start) * 1e3, rss_mb() - rss_before


def load_session(
    artifact: BenchArtifact, target: Target, threads: int | None, device: str | None, batch: np.ndarray
) -> Session:
    """Load ``artifact`` on its backend with the target's providers/device; time load and first run."""

    def load() -> tuple[Callable[[], object], dict[str, Any]]:
        options = BACKEND_OPTIONS[artifact.backend](target, threads, device)
        backend = load_backend(artifact.path, artifact.backend, **options)
        info = backend.info
        meta = {"runtime": f"{info.backend} {info.runtime_version}", "ran_on": info.device, "extra": info.extra}
        return (lambda: backend.run(batch)), meta

    (call, meta), load_ms, first_ms, rss = _timed_load(load)
    return Session(
        variant=artifact.variant,
        artifact=artifact,
        path=artifact.path,
        call=call,
        backend=artifact.backend,
        runtime=meta["runtime"],
        ran_on=meta["ran_on"],
        threads=threads,
        device=device,
        load_ms=load_ms,
        first_inference_ms=first_ms,
        rss_delta_mb=rss,
        info_extra=dict(meta["extra"]),
    )


def load_baseline(path: Path, card: ModelCard, batch: np.ndarray) -> Session:
    """The FP32 ONNX on plain ONNX Runtime, as without edge-sdk (see :data:`BASELINE_DESCRIPTION`)."""

    def load() -> tuple[Callable[[], object], dict[str, Any]]:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: batch}
        meta = {"runtime": f"onnxruntime {ort.__version__} (plain)", "ran_on": session.get_providers()[0], "extra": {}}
        return (lambda: session.run(None, feed)), meta

    (call, meta), load_ms, first_ms, rss = _timed_load(load)
    return Session(
        variant=BASELINE_VARIANT,
        artifact=None,
        path=path,
        call=call,
        backend="onnxruntime",
        runtime=meta["runtime"],
        ran_on=meta["ran_on"],
        threads=None,
        device=None,
        load_ms=load_ms,
        first_inference_ms=first_ms,
        rss_delta_mb=rss,
    )


def run_interleaved(sessions: Sequence[Session], runs: int, warmup: int, block: int = DEFAULT_BLOCK) -> None:
    """Warm up, then time ``runs`` calls per session in rotating round-robin blocks of ``block``."""
    for _ in range(warmup):
        for session in sessions:
            session.call()
    remaining = {id(s): runs for s in sessions}
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed call would be charged to whichever session ran
    try:
        round_index = 0
        while any(remaining.values()):
            shift = round_index % len(sessions)
            for session in [*sessions[shift:], *sessions[:shift]]:
                count = min(block, remaining[id(session)])
                if count <= 0:
                    continue
                session.call()  # untimed: re-warm after switching sessions
                record = session.latencies_ns.append
                call = session.call
                for _ in range(count):
                    start = clock()
                    call()
                    record(clock() - start)
                remaining[id(session)] -= count
            round_index += 1
    finally:
        if gc_was_enabled:
            gc.enable()
