"""The export report: report.json (everything), report.md (the table people read) and report.png (a chart)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = (
    ("target", "target"),
    ("format", "format"),
    ("size_kb", "size KB"),
    ("size_ratio", "size / FP32"),
    ("params", "params"),
    ("latency_ms", "latency ms"),
    ("fp32_latency_ms", "FP32 latency ms"),
    ("latency_ratio", "INT8/FP32 latency"),
    ("expression_agreement", "expr. agree"),
    ("au_occurrence_f1", "AU F1"),
    ("au_intensity_mae", "AU int. MAE"),
    ("va_ccc", "VA CCC (min)"),
    ("pspi_mae", "PSPI MAE"),
    ("status", "status"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [header, rule]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key)) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def write_markdown(report: dict[str, Any], path: Path) -> None:
    lines = [
        f"# edge-sdk export report: {report['model']['name']}",
        "",
        f"- model: {report['model']['source']} (FP32 {report['model']['size_kb']} KB, "
        f"{report['model']['params']} params)",
        f"- calibration: {json.dumps(report['calibration'])}",
        f"- held-out fidelity set: {json.dumps(report['heldout'])}",
        f"- pruning: {json.dumps(report['pruning'])}",
        f"- machine: {report['machine']}",
        "",
        markdown_table(report["rows"]),
        "",
        "Fidelity is measured against the unpruned FP32 parent on the held-out set, through the runtime's own "
        "backends (edge_sdk.backend.load_backend). Latency: batch 1, median, on this machine.",
        "",
        "## Gates",
    ]
    for row in report["rows"]:
        if row.get("reason"):
            lines.append(f"- {row['target']}: **{row['status']}** {row['reason']}")
        for gate in row.get("gates", []):
            lines.append(f"- {row['target']}: **{gate['status']}** {gate['message']}")
    for row in report["rows"]:
        for key, value in row.get("checks", {}).items():
            lines.append(f"- {row['target']} check `{key}`: `{json.dumps(value)}`")
        for note in row.get("notes", []):
            lines.append(f"- {row['target']}: {note}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_chart(rows: list[dict[str, Any]], path: Path, gates: dict[str, dict[str, Any]] | None = None) -> None:
    """Size ratio, latency ratio and the gated fidelity metrics per artifact (dashed line: the gate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["target"] for r in rows]
    panels = (
        ("size_ratio", "size / FP32", None),
        ("latency_ratio", "INT8 / FP32 latency", None),
        ("expression_agreement", "expression agreement", True),
        ("au_occurrence_f1", "AU occurrence F1", True),
        ("va_ccc", "VA CCC (min)", True),
        ("pspi_mae", "PSPI MAE (0-16)", True),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2))
    for ax, (key, title, gated) in zip(axes, panels, strict=True):
        gate = (gates or {}).get(key, {}).get("threshold") if gated else None
        values = [r.get(key) if r.get(key) is not None else 0.0 for r in rows]
        colors = ["tab:red" if r.get("status") == "failed" else "tab:blue" for r in rows]
        ax.bar(names, values, color=colors)
        if gate is not None:
            ax.axhline(gate, color="k", linestyle="--", linewidth=1)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: dict[str, Any], folder: Path) -> None:
    (folder / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    write_markdown(report, folder / "report.md")
    write_chart(report["rows"], folder / "report.png", report.get("gates"))
