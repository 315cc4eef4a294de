"""The export report: report.json (everything), report.md (the table people read) and report.png (a chart).

Rows are :class:`~edge_sdk.bench.export_row.ExportRow` (``report.json`` holds their ``to_dict()``); the
report says which faces every gate was measured on (``heldout``), on which machine and int8 kernel class
(``machine_info``, each row's and gate's ``measured_on``) and what calibrated the artifacts.
:func:`record_validation` writes the same machine facts into each validated artifact's card
(``export.validated_on``), because the artifact alone is often what ships.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_sdk.bench.export_row import ExportRow
from edge_sdk.bench.machine import MachineInfo
from edge_sdk.contract.card import SIDECAR_SUFFIX, ModelCard, ValidatedOn, sidecar_path
from edge_sdk.contract.card_io import read_onnx_metadata_card, read_sidecar
from edge_sdk.cpu import INT8_KERNEL_CLASSES
from edge_sdk.errors import EdgeSdkError

logger = logging.getLogger(__name__)


def _field(name: str) -> Callable[[ExportRow], Any]:
    return lambda row: getattr(row, name)


def _metric(name: str) -> Callable[[ExportRow], Any]:
    return lambda row: row.metric(name)


def _kernels(row: ExportRow) -> str | None:
    """The int8 kernel class the row was measured on, plus those judged with the CPU's ISA capped (OpenVINO)."""
    capped = (row.checks or {}).get("kernel_classes", {})

    def verdict(check: dict[str, Any]) -> str:
        return "not run" if check.get("error") else "pass" if check.get("passed") else "FAIL"

    extra = [f"{k} {verdict(v)} (capped)" for k, v in capped.items()]
    return " + ".join([row.measured_on, *extra]) if row.measured_on and extra else row.measured_on


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
    (_metric("expression_mean_abs_dp"), "expr. mean abs dp"),
    (_metric("expression_kl"), "expr. KL"),
    (_metric("au_occurrence_f1"), "AU F1"),
    (_metric("au_intensity_mae"), "AU int. MAE"),
    (_metric("va_ccc"), "VA CCC (min)"),
    (_metric("pspi_mae"), "PSPI MAE"),
    (_kernels, "int8 kernels"),
    (_field("status"), "status"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if 0 < abs(value) < 1e-3:
            return f"{value:.1e}"  # probability-level figures (KL, mean |dp|) of good artifacts are this small
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


def machine_lines(info: dict[str, Any] | None) -> list[str]:
    """report.md's lines naming the CPU, its int8 kernel class and the runtimes (none for older reports)."""
    if not info:
        return []
    kernels = info.get("int8_kernels", "unknown")
    runtimes = ", ".join(f"{k} {v}" for k, v in (info.get("runtimes") or {}).items())
    return [
        f"- CPU: {info.get('cpu')} ({info.get('arch')}), {info.get('cores_usable')} usable cores, {info.get('os')}",
        f"- int8 kernels: **{kernels}** ({INT8_KERNEL_CLASSES.get(kernels, 'unknown class')}); ISA: "
        f"{' '.join(info.get('isa_flags') or []) or 'unknown'}",
        f"- runtimes: {runtimes or 'unknown'}",
    ]


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
        *machine_lines(report.get("machine_info")),
        "",
        markdown_table(rows),
        "",
        "Fidelity is measured against the unpruned FP32 parent on the held-out set, through the runtime's own "
        "backends (edge_sdk.backend.load_backend). Latency: batch 1, median, on this machine. INT8 accuracy "
        "depends on the CPU's int8 kernels (column 'int8 kernels'): a gate measured on one class says little "
        "about another. 'expr. mean abs dp' is the mean |p_int8 - p_fp32| over faces and expression classes, "
        "'expr. KL' the mean KL(p_fp32 || p_int8) in nats: unlike top-1 agreement they stay small when a "
        "weak model's nearly tied classes swap places.",
        "",
        f"## Gates (measured on {heldout['description']})",
    ]
    for row in rows:
        if row.reason:
            lines.append(f"- {row.target}: **{row.status}** {row.reason}")
        for gate in row.gates:
            where = f" (int8 kernels {gate.measured_on})" if gate.measured_on else ""
            lines.append(f"- {row.target}: **{gate.status}** {gate.message}{where}")
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


# ---- where the gates were measured, in each artifact's card --------------------------------------
def validated_on(row: ExportRow, machine: MachineInfo) -> ValidatedOn:
    """What an artifact's card records about its validation: the kernel class, CPU, runtime and figures."""
    return ValidatedOn(
        kernels=row.measured_on or machine.int8_kernels,
        cpu=machine.cpu,
        isa_flags=tuple(machine.isa_flags),
        runtime=row.backend or "",
        passed=None if row.status == "info" else row.passed,
        metrics=dict(row.metrics),
        also_on={  # only classes where the artifact ran: a capped run that errored says nothing
            k: bool(v.get("passed"))
            for k, v in (row.checks or {}).get("kernel_classes", {}).items()
            if not v.get("error")
        },
    )


def write_validated_on(artifact: Path, validation: ValidatedOn) -> ModelCard:
    """Rewrite ``artifact``'s card with ``export.validated_on`` set; returns the card written.

    A sidecar card is re-read (its files' sha256 verified) and written again over the same files, main file
    first, so the hashes it records stay those of the files. An embedded ONNX card is replaced through
    :func:`edge_sdk_export.onnx_card.embed_card`, which records the weights hash again (unchanged: only the
    metadata changes). Raises EdgeSdkError when the card cannot be read.
    """
    from edge_sdk_export.artifacts import write_sidecar

    if sidecar_path(artifact).is_file():
        card = read_sidecar(artifact)
        new = card.with_changes(export=replace(card.export, validated_on=validation))
        names = [artifact.name, *(n for n in card.files if n != artifact.name)]
        write_sidecar(new, [artifact.with_name(n) for n in names])
        return new
    from edge_sdk_export.onnx_card import embed_card

    card = read_onnx_metadata_card(artifact)
    new = card.with_changes(export=replace(card.export, validated_on=validation))
    embed_card(artifact, new, indent=2 if card.export.precision == "fp32" else None)  # quantized: compact
    return new


def record_validation(
    folder: Path, rows: list[ExportRow], machine: MachineInfo, fp32_size: int | None = None
) -> list[ExportRow]:
    """Write ``export.validated_on`` into the card of every gated artifact of ``rows`` in ``folder``; returns
    the rows with their sizes measured again (an embedded card grows the file by a few hundred bytes; the
    size ratio is taken against ``fp32_size`` when given).

    Rows without files or gates (a crashed target, the pruned FP32 info row) are returned unchanged. A card
    that cannot be rewritten is logged as a warning and noted on its row (the row still says where it was
    measured).
    """
    result: list[ExportRow] = []
    for row in rows:
        if row.status == "info" or not row.files or not row.gates:
            result.append(row)
            continue
        try:
            write_validated_on(folder / row.files[0], validated_on(row, machine))
        except (EdgeSdkError, OSError) as exc:
            logger.warning("[%s] could not record where its gates were measured in its card: %s", row.target, exc)
            result.append(replace(row, notes=(*row.notes, f"card not updated with export.validated_on: {exc}")))
            continue
        size = sum((folder / name).stat().st_size for name in row.files if not name.endswith(SIDECAR_SUFFIX))
        ratio = round(size / fp32_size, 4) if fp32_size else row.size_ratio
        result.append(replace(row, size_bytes=size, size_kb=round(size / 1024, 1), size_ratio=ratio))
    return result
