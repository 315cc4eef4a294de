"""Latency timing of callables: warm-up, timed runs (one callable alone or several interleaved), statistics.

Every latency the project reports comes from here: ``edge-sdk benchmark`` (:mod:`edge_sdk.bench.measure`),
the export report's ``latency_ms``/``fp32_latency_ms`` and the scripts in ``benchmarks/``. Needs numpy only.

Several callables are timed in rotating round-robin blocks, so a slow drift of the machine (thermal
throttling, a neighbour's load) hits them alike and their ratios stay honest. Each block starts with one
untimed call, so a switch between callables (cold caches, a sleeping thread pool) is not charged to the
next one. The garbage collector is paused while timing: a collection inside a timed call would be charged
to whichever callable ran.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

DEFAULT_BLOCK = 10
PERCENTILES = (50, 90, 99)

Clock = Callable[[], int]  # nanoseconds, like time.perf_counter_ns


def time_call(
    call: Callable[[], object], runs: int, warmup: int = 0, *, clock: Clock = time.perf_counter_ns
) -> list[int]:
    """``warmup`` untimed calls of ``call``, then the latency in ns of each of ``runs`` timed calls.

    >>> calls = []
    >>> latencies = time_call(lambda: calls.append(1), runs=5, warmup=3)
    >>> len(latencies), len(calls)
    (5, 8)
    """
    for _ in range(warmup):
        call()
    latencies: list[int] = []
    with _gc_paused():
        _timed_runs(call, runs, clock, latencies)
    return latencies


def time_interleaved(
    calls: Sequence[Callable[[], object]],
    runs: int,
    warmup: int = 0,
    block: int = DEFAULT_BLOCK,
    *,
    clock: Clock = time.perf_counter_ns,
) -> list[list[int]]:
    """Latencies in ns of ``runs`` timed calls of each callable, timed in rotating round-robin blocks.

    First ``warmup`` rounds call every callable once, untimed. Then round ``r`` gives each callable one
    block of ``block`` timed calls (fewer in the last round), starting at callable ``r % len(calls)``;
    every block begins with one untimed call. Returns one list per callable, in the order of ``calls``.

    >>> calls = {"a": 0, "b": 0}
    >>> def call(name):
    ...     return lambda: calls.update({name: calls[name] + 1})
    >>> latencies = time_interleaved([call("a"), call("b")], runs=25, warmup=2, block=10)
    >>> [len(ns) for ns in latencies], calls  # 2 warm-up + 3 untimed block starts + 25 timed calls each
    ([25, 25], {'a': 30, 'b': 30})
    """
    if block < 1:
        raise ValueError(f"block: expected 1 or more, got {block}")
    for _ in range(warmup):
        for call in calls:
            call()
    latencies: list[list[int]] = [[] for _ in calls]
    with _gc_paused():
        for index, count in block_schedule(len(calls), runs, block):
            calls[index]()  # untimed: re-warm after switching callables
            _timed_runs(calls[index], count, clock, latencies[index])
    return latencies


def block_schedule(callables: int, runs: int, block: int) -> Iterator[tuple[int, int]]:
    """(callable index, timed calls) of each block, in the order :func:`time_interleaved` runs them.

    >>> list(block_schedule(3, runs=4, block=2))
    [(0, 2), (1, 2), (2, 2), (1, 2), (2, 2), (0, 2)]
    """
    for round_index in range(math.ceil(runs / block)):
        count = min(block, runs - round_index * block)
        for offset in range(callables):
            yield (round_index + offset) % callables, count


def latency_stats(latencies_ns: Sequence[int]) -> dict[str, float]:
    """min/p50/p90/p99/max/mean/std in ms and ``fps`` (batch 1: 1000 / mean) of latencies in ns; {} for none.

    >>> stats = latency_stats([1_000_000, 2_000_000, 3_000_000, 4_000_000])
    >>> stats["min"], stats["p50"], stats["max"], stats["mean"], stats["fps"]
    (1.0, 2.5, 4.0, 2.5, 400.0)
    """
    if len(latencies_ns) == 0:
        return {}
    ms = np.asarray(latencies_ns, np.float64) / 1e6
    out = {"min": float(ms.min())}
    out.update({f"p{p}": float(np.percentile(ms, p)) for p in PERCENTILES})
    out.update({"max": float(ms.max()), "mean": float(ms.mean()), "std": float(ms.std())})
    out["fps"] = 1000.0 / out["mean"]
    return out


def _timed_runs(call: Callable[[], object], count: int, clock: Clock, latencies: list[int]) -> None:
    """Append the latency of each of ``count`` calls of ``call`` to ``latencies``."""
    record = latencies.append
    for _ in range(count):
        start = clock()
        call()
        record(clock() - start)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The garbage collector off inside the block, and back on after it if it was on before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
