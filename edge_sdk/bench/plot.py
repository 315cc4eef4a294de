"""PNG bar chart of p50 latency (with p90 whiskers) per row, labelled with target, precision and threads.

matplotlib is imported here only, when a chart is asked for; it is not a device dependency.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_sdk.bench.measure import BASELINE_VARIANT
from edge_sdk.errors import InputError
from edge_sdk.plotting import pyplot


def _pyplot():  # -> matplotlib.pyplot
    return pyplot("the benchmark plot (--plot)")


PALETTE = {"fp32": "#7f7f7f", "int8": "#1f77b4", "pruned-fp32": "#9467bd", "pruned-int8": "#2ca02c"}
BASELINE_COLOUR = "#d62728"  # the plain ONNX Runtime baseline (``--baseline``)


def _precision(row: dict[str, Any]) -> str:
    """``INT8``, ``pruned 30% FP32``, ``plain ORT FP32`` (the baseline): what was run, precision included."""
    precision = str(row.get("precision") or row["variant"]).upper()
    if row["variant"] == BASELINE_VARIANT:
        return f"plain ORT {precision}"
    pruned = row.get("pruning_ratio") or 0.0
    return f"pruned {pruned:.0%} {precision}" if pruned else precision


def _threads(row: dict[str, Any], beside: int | None) -> str:
    """The thread count (and OpenVINO device) a row ran with; the baseline uses ONNX Runtime's default."""
    if row["threads"] is None:
        where = f" (beside the {beside}-thread rows)" if beside is not None else ""
        return f"ORT default threads{where}"
    count = f"{row['threads']} thread{'s' if row['threads'] != 1 else ''}"
    return f"{row['device']}, {count}" if row.get("device") else count


def _rows(results: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, Any], int | None]]:
    """Every row with its target's name and the thread count of its group (rows come group by group; a
    baseline row, ONNX Runtime's default threads, is timed interleaved with the group before it)."""
    found = []
    for result in results:
        beside: int | None = None
        for row in result["results"]:
            if row["threads"] is not None:
                beside = row["threads"]
            found.append((result["target"]["name"], row, beside))
    return found


def row_labels(results: Sequence[dict[str, Any]]) -> list[str]:
    """One label per benchmark row, in order: target, precision (and pruning), threads and what it ran on.
    Labels never repeat: rows that would share one (the same variant of two ``--model`` exports) get their
    artifact's file name, and a count if even that is the same."""
    rows = _rows(results)
    labels = [f"{target} {_precision(row)}\n{_threads(row, beside)} on {row['ran_on']}" for target, row, beside in rows]
    files = [Path(str(row.get("artifact") or "")).name for _, row, _ in rows]
    counts = Counter(labels)
    named = [
        f"{label} ({name})" if counts[label] > 1 and name else label for label, name in zip(labels, files, strict=True)
    ]
    repeats, seen = Counter(named), Counter[str]()
    unique = []
    for label in named:
        seen[label] += 1
        unique.append(label if repeats[label] == 1 else f"{label} #{seen[label]}")
    return unique


def plot_latency(results: Sequence[dict[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """Write a horizontal bar chart of p50 latency (whisker: p90) for every row of one or more benchmark
    results. Each row is labelled with its target, precision, thread count and provider; the numbers stand
    in a column right of the plot, where no whisker reaches them."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"--plot {path}: expected a .png file name")
    plt = _pyplot()
    found = _rows(results)
    rows = [row for _, row, _ in found]
    if not rows:
        raise InputError("nothing to plot: the benchmark has no rows")
    labels = row_labels(results)
    p50 = [row["latency_ms"]["p50"] for row in rows]
    p90 = [max(row["latency_ms"]["p90"], row["latency_ms"]["p50"]) for row in rows]
    colours = [
        BASELINE_COLOUR if row["variant"] == BASELINE_VARIANT else PALETTE.get(row["variant"], "#8c564b")
        for row in rows
    ]
    height = max(2.5, 0.5 * len(rows) + 1.4)
    fig, ax = plt.subplots(figsize=(10, height))
    positions = list(range(len(rows)))[::-1]
    whiskers = [hi - lo for lo, hi in zip(p50, p90, strict=True)]
    ax.barh(positions, p50, xerr=[[0.0] * len(p50), whiskers], color=colours, capsize=3, error_kw={"lw": 0.8})
    ax.set_yticks(positions, labels, fontsize=7)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    numbers = ax.get_yaxis_transform()  # x in axes fractions, y in data: a column right of the plot
    ax.text(1.02, len(rows) - 0.4, "p50 / p90 (ms)", transform=numbers, fontsize=7, va="bottom", weight="bold")
    for y, lo, hi in zip(positions, p50, p90, strict=True):
        ax.text(1.02, y, f"{lo:.2f} / {hi:.2f}", transform=numbers, va="center", fontsize=7, family="monospace")
    groups = [(target, beside) for target, _, beside in found]
    for i in (
        i for i in range(1, len(rows)) if groups[i] != groups[i - 1]
    ):  # a thin line between targets and between thread-count groups
        ax.axhline(positions[i] + 0.5, color="#cccccc", lw=0.6)
    ax.set_xlim(0, max(p90) * 1.05)
    ax.grid(axis="x", color="#eeeeee", lw=0.6)
    ax.set_axisbelow(True)
    machine = results[0]["machine"]
    ax.set_xlabel("latency per inference, batch 1 (ms): bar = p50, whisker = p90")
    ax.set_title(
        title or f"edge-sdk benchmark on {machine['cpu']}, {machine['cores_usable']} cores", fontsize=9, pad=16
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
