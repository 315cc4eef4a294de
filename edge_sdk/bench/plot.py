"""PNG bar chart of p50 latency (with p90 whiskers) per variant, grouped by thread count/device.

matplotlib is imported here only, when a chart is asked for; it is not a device dependency.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_sdk.errors import BackendUnavailableError, InputError


def _pyplot():  # -> matplotlib.pyplot
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise BackendUnavailableError(
            "--plot needs matplotlib, which is not installed; install it with: pip install matplotlib"
        ) from None
    return plt


def _label(row: dict[str, Any], target: str) -> str:
    where = row["device"] or (f"{row['threads']} thr" if row["threads"] else "default thr")
    return f"{target} {row['variant']}\n{where}, {row['ran_on']}"


def plot_latency(results: Sequence[dict[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """Write a horizontal bar chart of p50 latency for every row of one or more benchmark results."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"--plot {path}: expected a .png file name")
    plt = _pyplot()
    labels, p50, p90, colours = [], [], [], []
    palette = {"fp32": "#7f7f7f", "int8": "#1f77b4", "pruned-int8": "#2ca02c", "fp32-plain-ort": "#d62728"}
    for result in results:
        for row in result["results"]:
            labels.append(_label(row, result["target"]["name"]))
            p50.append(row["latency_ms"]["p50"])
            p90.append(row["latency_ms"]["p90"])
            colours.append(palette.get(row["variant"], "#9467bd"))
    if not labels:
        raise InputError("nothing to plot: the benchmark has no rows")
    height = max(2.5, 0.55 * len(labels) + 1.2)
    fig, ax = plt.subplots(figsize=(9, height))
    positions = range(len(labels))[::-1]
    whiskers = [max(0.0, hi - lo) for lo, hi in zip(p50, p90, strict=True)]
    ax.barh(list(positions), p50, xerr=[[0] * len(p50), whiskers], color=colours, capsize=3)
    ax.set_yticks(list(positions), labels, fontsize=7)
    for y, value in zip(positions, p50, strict=True):
        ax.text(value, y, f" {value:.2f} ms", va="center", fontsize=7)
    machine = results[0]["machine"]
    ax.set_xlabel("latency per inference, batch 1 (ms): bar = p50, whisker = p90")
    ax.set_title(title or f"edge-sdk benchmark on {machine['cpu']}, {machine['cores_usable']} cores", fontsize=9)
    ax.margins(x=0.15)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
