"""Timing artifacts side by side: load, first inference, warm-up, then interleaved timed runs.

All sessions of one group (one thread count, one device) are loaded together and timed in
round-robin blocks by :func:`edge_sdk.bench.timing.time_interleaved`, so a slow drift of the machine
(thermal throttling, a neighbour's load) hits every precision alike and their ratios stay honest.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.backend import backend_class, load_backend
from edge_sdk.backend.base import prepare_input
from edge_sdk.bench.artifacts import BenchArtifact
from edge_sdk.bench.machine import rss_mb
from edge_sdk.bench.timing import DEFAULT_BLOCK, latency_stats, time_interleaved
from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.processing import preprocess
from edge_sdk.targets import Target

BASELINE_VARIANT = "fp32-plain-ort"
BASELINE_DESCRIPTION = (
    "the FP32 ONNX on plain ONNX Runtime: InferenceSession(path, providers=['CPUExecutionProvider']) "
    "with default SessionOptions (no thread settings), as a user would run it without edge-sdk"
)


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
        return latency_stats(self.latencies_ns)


# Loads a model and returns (one inference on the sample batch, {"runtime", "ran_on", "extra"}).
Loader = Callable[[], tuple[Callable[[], object], dict[str, Any]]]


def _timed_session(
    load: Loader,
    variant: str,
    path: Path,
    backend: str,
    *,
    artifact: BenchArtifact | None = None,
    threads: int | None = None,
    device: str | None = None,
) -> Session:
    """Run ``load`` and a first inference; the Session with load ms, time to first inference and RSS growth."""
    gc.collect()
    rss_before = rss_mb()
    start = time.perf_counter()
    call, meta = load()
    loaded = time.perf_counter()
    call()
    first = time.perf_counter()
    return Session(
        variant=variant,
        artifact=artifact,
        path=path,
        call=call,
        backend=backend,
        runtime=meta["runtime"],
        ran_on=meta["ran_on"],
        threads=threads,
        device=device,
        load_ms=(loaded - start) * 1e3,
        first_inference_ms=(first - start) * 1e3,
        rss_delta_mb=rss_mb() - rss_before,
        info_extra=dict(meta["extra"]),
    )


def load_session(
    artifact: BenchArtifact, target: Target, threads: int | None, device: str | None, batch: np.ndarray
) -> Session:
    """Load ``artifact`` on its backend with the target's providers/device; time load and first run."""

    def load() -> tuple[Callable[[], object], dict[str, Any]]:
        options = backend_class(artifact.backend).options_for(target, threads, device)
        backend = load_backend(artifact.path, artifact.backend, **options)
        info = backend.info
        meta = {"runtime": f"{info.backend} {info.runtime_version}", "ran_on": info.device, "extra": info.extra}
        return (lambda: backend.run(batch)), meta

    return _timed_session(
        load, artifact.variant, artifact.path, artifact.backend, artifact=artifact, threads=threads, device=device
    )


def load_baseline(path: Path, card: ModelCard, batch: np.ndarray) -> Session:
    """The FP32 ONNX on plain ONNX Runtime, as without edge-sdk (see :data:`BASELINE_DESCRIPTION`)."""

    def load() -> tuple[Callable[[], object], dict[str, Any]]:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: prepare_input(batch, card.input.layout, np.float32)}  # NHWC parents
        meta = {"runtime": f"onnxruntime {ort.__version__} (plain)", "ran_on": session.get_providers()[0], "extra": {}}
        return (lambda: session.run(None, feed)), meta

    return _timed_session(load, BASELINE_VARIANT, path, "onnxruntime")


def run_interleaved(sessions: Sequence[Session], runs: int, warmup: int, block: int = DEFAULT_BLOCK) -> None:
    """Warm up, then time ``runs`` calls per session in rotating round-robin blocks of ``block``."""
    latencies = time_interleaved([s.call for s in sessions], runs, warmup, block)
    for session, measured in zip(sessions, latencies, strict=True):
        session.latencies_ns.extend(measured)
