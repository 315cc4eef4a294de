"""edge_sdk.bench.timing: which calls are made, in which order, which are timed, and the statistics.

Cheap counting callables and a fake clock only: nothing here asserts on real elapsed time.
"""

from __future__ import annotations

import ast
import doctest
import gc
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

from edge_sdk.bench import timing
from edge_sdk.bench.measure import run_interleaved
from edge_sdk.bench.timing import block_schedule, latency_stats, time_call, time_interleaved
from tests.conftest import REPO


def step_clock(step_ns: int = 1000) -> Callable[[], int]:
    """A clock that advances ``step_ns`` per reading: every timed call lasts exactly ``step_ns``."""
    ticks: Iterator[int] = iter(range(0, 10**12, step_ns))
    return lambda: next(ticks)


def recorder(log: list[str], name: str) -> Callable[[], None]:
    return lambda: log.append(name)


def test_doctests_run() -> None:
    result = doctest.testmod(timing)
    assert result.attempted >= 4 and result.failed == 0


def test_time_call_warms_up_then_times_each_run() -> None:
    log: list[str] = []
    latencies = time_call(recorder(log, "a"), runs=7, warmup=3, clock=step_clock(250))
    assert latencies == [250] * 7
    assert len(log) == 10


def test_time_call_with_no_runs_times_nothing() -> None:
    assert time_call(lambda: None, runs=0, warmup=2) == []


def test_block_schedule_rotates_the_first_callable_each_round() -> None:
    assert list(block_schedule(2, runs=25, block=10)) == [(0, 10), (1, 10), (1, 10), (0, 10), (0, 5), (1, 5)]
    assert list(block_schedule(3, runs=0, block=10)) == []
    assert list(block_schedule(0, runs=5, block=2)) == []


def test_time_interleaved_call_order() -> None:
    log: list[str] = []
    calls = [recorder(log, "a"), recorder(log, "b")]
    time_interleaved(calls, runs=3, warmup=1, block=2, clock=step_clock())
    warmup, timed = log[:2], log[2:]
    assert warmup == ["a", "b"]
    # each block: one untimed call, then its timed calls; round 2 starts with "b" and has one timed call each
    assert timed == ["a"] * 3 + ["b"] * 3 + ["b"] * 2 + ["a"] * 2


def test_time_interleaved_returns_one_list_per_callable_in_order() -> None:
    counts = {"slow": 0, "fast": 0}
    now = [0]

    def clock() -> int:
        return now[0]

    def call(name: str, cost_ns: int) -> Callable[[], None]:
        def run() -> None:
            counts[name] += 1
            now[0] += cost_ns

        return run

    slow, fast = time_interleaved([call("slow", 3000), call("fast", 1000)], runs=12, warmup=2, block=5, clock=clock)
    assert slow == [3000] * 12 and fast == [1000] * 12
    assert counts == {"slow": 2 + 3 + 12, "fast": 2 + 3 + 12}  # warm-up + one untimed call per block + timed


def test_time_interleaved_rejects_an_empty_block() -> None:
    with pytest.raises(ValueError, match="block"):
        time_interleaved([lambda: None], runs=5, block=0)


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_is_paused_while_timing_and_restored(enabled: bool) -> None:
    seen: list[bool] = []
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        time_interleaved([lambda: seen.append(gc.isenabled())], runs=3, block=2)
        time_call(lambda: seen.append(gc.isenabled()), runs=2)
        assert not any(seen)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_gc_is_restored_when_a_call_raises() -> None:
    def boom() -> None:
        if not gc.isenabled():
            raise RuntimeError("timed call failed")

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        time_call(boom, runs=1)
    assert gc.isenabled()


def test_latency_stats() -> None:
    stats = latency_stats([4_000_000, 1_000_000, 3_000_000, 2_000_000])
    assert list(stats) == ["min", "p50", "p90", "p99", "max", "mean", "std", "fps"]
    assert stats["min"] == 1.0 and stats["max"] == 4.0 and stats["p50"] == 2.5 and stats["mean"] == 2.5
    assert stats["p90"] == pytest.approx(3.7) and stats["p99"] == pytest.approx(3.97)
    assert stats["std"] == pytest.approx(1.118034, rel=1e-6) and stats["fps"] == 400.0
    assert latency_stats([]) == {}


def test_measure_run_interleaved_adds_to_each_session() -> None:
    log: list[str] = []
    sessions = [SimpleNamespace(call=recorder(log, n), latencies_ns=[7]) for n in ("a", "b", "c")]
    run_interleaved(sessions, runs=4, warmup=2, block=3)  # type: ignore[arg-type]  # duck-typed Session
    assert [len(s.latencies_ns) for s in sessions] == [5, 5, 5]
    assert all(s.latencies_ns[0] == 7 for s in sessions)
    assert log.count("a") == log.count("b") == log.count("c") == 2 + 2 + 4


def test_timing_needs_only_numpy_and_the_standard_library() -> None:
    tree = ast.parse((REPO / "edge_sdk" / "bench" / "timing.py").read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "gc", "math", "time", "collections", "contextlib", "numpy"}
