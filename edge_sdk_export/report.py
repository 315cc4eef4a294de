"""The export report: report.json (everything), report.md (the table people read) and report.png (a chart).

Rows are :class:`~edge_sdk.bench.export_row.ExportRow` (``report.json`` holds their ``to_dict()``); the
report says which faces every gate was measured on (``heldout``) and what calibrated the artifacts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_sdk.bench.export_row import ExportRow


def _field(name: str) -> Callable[[ExportRow], Any]:
    return lambda row: getattr(row, name)


def _metric(name: str) -> Callable[[ExportRow], Any]:
    return lambda row: row.metric(name)


COLUMNS: tuple[tuple[Callable[[ExportRow], Any], str], ...] = (
    (_field("target"), "target"),
    (_field("format"), "format"),
    (_field("size_kb"), "size KB"),
    (_field("size_ratio"), "size / FP32"),
    (_field("params"), "params"),
    (_field("latency_ms"), "latency ms"),
    (_field("fp32_latency_ms"), "FP32 latency ms"),
    (_field("latency_ratio"), "INT8/FP32 latency"),
    (_metric("expression_agreement"), "expr. agree"),
    (_metric("au_occurrence_f1"), "AU F1"),
    (_metric("au_intensity_mae"), "AU int. MAE"),
    (_metric("va_ccc"), "VA CCC (min)"),
    (_metric("pspi_mae"), "PSPI MAE"),
    (_field("status"), "status"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def typed_rows(rows: list[dict[str, Any]] | list[ExportRow]) -> list[ExportRow]:
    """Rows as :class:`ExportRow` (the report dict holds them as plain dicts)."""
    return [r if isinstance(r, ExportRow) else ExportRow.from_dict(r, f"rows[{i}]") for i, r in enumerate(rows)]


def markdown_table(rows: list[dict[str, Any]] | list[ExportRow]) -> str:
    """The report's main table, one line per row."""
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [header, rule]
    for row in typed_rows(rows):
        lines.append("| " + " | ".join(_cell(value(row)) for value, _ in COLUMNS) + " |")
    return "\n".join(lines)


def _calibration_line(calib: dict[str, Any]) -> str:
    if calib.get("kind") == "rendered":
        text = f"{calib.get('count')} rendered faces (--calib synthetic)"
    else:
        empty = calib.get("files_without_faces", [])
        files = [f for f in calib.get("files", []) if f not in empty]
        text = (
            f"{calib.get('count')} of {calib.get('faces_found')} face crops found in {len(files)} "
            f"file{'s' * (len(files) != 1)} ({', '.join(files)})"
        )
        if empty:
            text += f"; no face in {', '.join(empty)}"
    cover = calib.get("range_cover")
    if cover:
        text += f" + {cover.get('count')} rendered range-cover faces"
    return text


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """report.md: the model, the faces (calibration and held-out, counted), the table, gates, checks, notes."""
    rows = typed_rows(report["rows"])
    heldout = report["heldout"]
    lines = [
        f"# edge-sdk export report: {report['model']['name']}",
        "",
        f"- model: {report['model']['source']} (FP32 {report['model']['size_kb']} KB, "
        f"{report['model']['params']} params)",
        f"- calibration: {_calibration_line(report['calibration'])}",
        f"- held-out fidelity set (every gate below is measured on it): {heldout['description']}",
        f"- held-out split: {heldout['how']}; files: {', '.join(heldout['files']) or 'none'}; "
        f"{heldout['real_crops']} real crops, {heldout['rendered']} rendered, {heldout['count']} in all",
        f"- pruning: {json.dumps(report['pruning'])}",
        f"- machine: {report['machine']}",
        "",
        markdown_table(rows),
        "",
        "Fidelity is measured against the unpruned FP32 parent on the held-out set, through the runtime's own "
        "backends (edge_sdk.backend.load_backend). Latency: batch 1, median, on this machine.",
        "",
        f"## Gates (measured on {heldout['description']})",
    ]
    for row in rows:
        if row.reason:
            lines.append(f"- {row.target}: **{row.status}** {row.reason}")
        for gate in row.gates:
            lines.append(f"- {row.target}: **{gate.status}** {gate.message}")
    for row in rows:
        for key, value in row.checks.items():
            lines.append(f"- {row.target} check `{key}`: `{json.dumps(value)}`")
        for note in row.notes:
            lines.append(f"- {row.target}: {note}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_chart(rows: list[ExportRow], path: Path, gates: dict[str, dict[str, Any]] | None = None) -> None:
    """Size ratio, latency ratio and the gated fidelity metrics per artifact (dashed line: the gate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.target for r in rows]
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
        values = [_figure(r, key) or 0.0 for r in rows]
        colors = ["tab:red" if r.status == "failed" else "tab:blue" for r in rows]
        ax.bar(names, values, color=colors)
        if gate is not None:
            ax.axhline(gate, color="k", linestyle="--", linewidth=1)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _figure(row: ExportRow, key: str) -> float | None:
    return getattr(row, key) if key in ("size_ratio", "latency_ratio") else row.metric(key)


def write_report(report: dict[str, Any], folder: Path) -> None:
    """report.json, report.md and report.png in ``folder``."""
    (folder / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    write_markdown(report, folder / "report.md")
    write_chart(typed_rows(report["rows"]), folder / "report.png", report.get("gates"))
