"""A benchmark result as an aligned terminal table (and the same table in markdown).

The header names the machine and, when the figures are not figures of the target device (a Jetson
artifact on a workstation's CPUExecutionProvider), says so in capitals above the table; every row
also carries its own ``device?`` column, so a copied row cannot lose that fact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]
BASELINE = "fp32-plain-ort"  # edge_sdk.bench.measure.BASELINE_VARIANT (not imported: keeps this module light)


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _fidelity(row: Row) -> str:
    """A short fidelity summary from the export report: pass/FAIL plus up to two figures."""
    fidelity = row.get("fidelity")
    if not isinstance(fidelity, dict) or not fidelity:
        return "-"
    parts = []  # the dict is edge_sdk.bench.export_row.ExportRow.fidelity(): "passed" plus the figures
    if isinstance(fidelity.get("passed"), bool):
        parts.append("pass" if fidelity["passed"] else "FAIL")
    if isinstance(fidelity.get("measured_on"), str):
        parts.append(f"@{fidelity['measured_on']}")  # the int8 kernel class the export measured it on
    numbers = [(k, v) for k, v in fidelity.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    parts.extend(f"{k}={v:.3g}" for k, v in numbers[:2])
    return " ".join(parts) or "-"


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Row], str]
    left: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("variant", lambda r: r["variant"], left=True),
    Column("thr", lambda r: "-" if r["threads"] is None else str(r["threads"])),
    Column("runtime", lambda r: r["runtime"], left=True),
    Column("ran on", lambda r: r["ran_on"], left=True),
    Column(
        "device?", lambda r: "ref" if r["variant"] == BASELINE else "yes" if r["device_figure"] else "NO", left=True
    ),
    Column("size MB", lambda r: _num(r["size_mb"])),
    Column("x size", lambda r: _ratio(r["size_ratio_vs_fp32"])),
    Column("load ms", lambda r: _num(r["load_ms"], 1)),
    Column("1st ms", lambda r: _num(r["first_inference_ms"], 1)),
    Column("RSS+MB", lambda r: _num(r["rss_delta_mb"], 1)),
    Column("min", lambda r: _num(r["latency_ms"].get("min"), 3)),
    Column("p50", lambda r: _num(r["latency_ms"].get("p50"), 3)),
    Column("p90", lambda r: _num(r["latency_ms"].get("p90"), 3)),
    Column("p99", lambda r: _num(r["latency_ms"].get("p99"), 3)),
    Column("max", lambda r: _num(r["latency_ms"].get("max"), 3)),
    Column("FPS", lambda r: _num(r["fps"], 1)),
    Column("vs fp32", lambda r: _ratio(r["speedup_vs_fp32"])),
    Column("vs plain", lambda r: _ratio(r["speedup_vs_baseline"])),
    Column("fidelity", _fidelity, left=True),
)


def _align(cells: list[list[str]], columns: tuple[Column, ...]) -> list[str]:
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return [
        "  ".join(c.ljust(w) if col.left else c.rjust(w) for c, w, col in zip(row, widths, columns, strict=True))
        for row in cells
    ]


def format_table(rows: list[Row], columns: tuple[Column, ...] = COLUMNS) -> str:
    """The rows as an aligned table; a blank line between thread-count/device groups."""
    header = [c.header for c in columns]
    cells = [header] + [[c.cell(r) for c in columns] for r in rows]
    lines = _align(cells, columns)
    out = [lines[0], "-" * len(lines[0])]
    previous = None
    for row, line in zip(rows, lines[1:], strict=True):
        group = (row["threads"], row["device"])
        if previous is not None and group != previous and row["variant"] != BASELINE:
            out.append("")
        out.append(line)
        previous = group if row["variant"] != BASELINE else previous
    return "\n".join(out)


def format_markdown_table(rows: list[Row], columns: tuple[Column, ...] = COLUMNS) -> str:
    """The same table in GitHub markdown."""
    header = "| " + " | ".join(c.header for c in columns) + " |"
    rule = "|" + "|".join(":---" if c.left else "---:" for c in columns) + "|"
    body = ["| " + " | ".join(c.cell(r) for c in columns) + " |" for r in rows]
    return "\n".join([header, rule, *body])


def not_device_warning(result: dict[str, Any]) -> str | None:
    """The capitalised warning printed when any row is not a figure of the target device."""
    rows = [r for r in result["results"] if r["artifact"] and r["variant"] != BASELINE]
    stand_ins = [r for r in rows if not r["device_figure"]]
    if not stand_ins:
        return None
    return f"NOT {result['target']['name'].upper()} DEVICE FIGURES: {stand_ins[0]['device_note']}."


def format_result(result: dict[str, Any]) -> str:
    """Header, table, legend, notes and device hints, as printed by ``benchmark``."""
    machine = result["machine"]
    settings = result["settings"]
    target = result["target"]
    runtimes = ", ".join(f"{k} {v}" for k, v in machine["runtimes"].items())
    load = result["machine"].get("load_average_start")
    isa = " ".join(machine.get("isa_flags") or []) or "unknown"  # results recorded before 0.1.0 lack it
    lines = [
        f"edge-sdk benchmark: target {target['name']} ({target['device']})",
        f"machine: {machine['cpu']} ({machine['arch']}), {machine['cores_usable']} usable cores, {machine['os']}"
        + (f", board {machine['board']}" if machine["board"] else ""),
        f"int8 kernels: {machine.get('int8_kernels', 'unknown')}; ISA: {isa}",
        f"runtimes: {runtimes}",
        f"artifacts: {settings['source']}; batch 1, {settings['warmup']} warm-up + {settings['runs']} timed runs "
        f"per row, interleaved in blocks of {settings['block']}"
        + (f"; load average at start {load[0]:.2f}" if load else ""),
    ]
    if load and load[0] > 0.5 * machine["cores_usable"]:
        lines.append(
            f"!! BUSY MACHINE: load average {load[0]:.2f} on {machine['cores_usable']} cores at start; "
            "figures are noisy (ratios within a group stay comparable: rows are interleaved)"
        )
    warning = not_device_warning(result)
    if warning:
        lines.append(f"!! {warning}")
    lines += ["", format_table(result["results"]), ""]
    lines.append(
        "latency in ms; FPS = 1000 / mean latency at batch 1; vs fp32 = FP32 p50 / row p50 in the same group "
        "(higher is faster); vs plain = the same against the FP32 ONNX on plain ONNX Runtime; "
        "1st ms = load + first inference; RSS+MB = memory the session added."
    )
    if settings.get("baseline"):
        lines.append(f"fp32-plain-ort = {settings['baseline']}.")
    pipeline = result.get("pipeline")
    if pipeline:
        lines += ["", format_pipeline(pipeline)]
    for note in result["notes"]:
        lines.append(f"note: {note}")
    if result["hints"]:
        lines.append("device hints (printed, not executed):")
        lines.extend(f"  - {hint}" for hint in result["hints"])
    return "\n".join(lines)


STAGE_COLUMNS: tuple[Column, ...] = (
    Column("stage", lambda r: r["stage"], left=True),
    Column("mean ms", lambda r: _num(r["mean"], 3)),
    Column("p50 ms", lambda r: _num(r["p50"], 3)),
    Column("p90 ms", lambda r: _num(r["p90"], 3)),
    Column("max ms", lambda r: _num(r["max"], 3)),
    Column("share", lambda r: f"{100 * r['share']:.0f}%"),
)


def format_pipeline(pipeline: dict[str, Any]) -> str:
    """End-to-end FPS and per-stage milliseconds of the pipeline benchmark."""
    stages = pipeline.get("stages_ms", {})
    total = sum(s["mean"] for s in stages.values()) or 1.0
    rows = [{"stage": name, **s, "share": s["mean"] / total} for name, s in stages.items()]
    cells = [[c.header for c in STAGE_COLUMNS]] + [[c.cell(r) for c in STAGE_COLUMNS] for r in rows]
    table = _align(cells, STAGE_COLUMNS)
    head = (
        f"pipeline: {pipeline['video']} ({pipeline['frames']} frames, {pipeline['faces']} faces, "
        f"detector {pipeline['detector']}) -> {pipeline['fps']:.1f} FPS steady state "
        f"({pipeline['fps_whole_run']:.1f} whole run) with {pipeline['threads']} inference thread(s), "
        f"model {pipeline['variant']} on {pipeline['ran_on']}"
    )
    legend = "decode runs on the capture thread, overlapped with the other stages; log = the sink stage (result log)."
    return "\n".join([head, table[0], "-" * len(table[0]), *table[1:], legend])
