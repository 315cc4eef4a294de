"""One row of ``edge-sdk export``'s report: the typed record export writes and ``edge-sdk benchmark`` reads.

Torch-free and numpy-free on purpose: the export (workstation) writes rows through :class:`ExportRow`, and
the benchmark (on the device) reads them back through the same class, so neither guesses at keys. A
``report.json`` carries ``"schema": REPORT_SCHEMA``; :func:`rows_from_report` refuses a bad row naming
the field (``rows[2].latency_ms: expected a number, got 'fast'``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from edge_sdk.errors import ArtifactError

REPORT_SCHEMA = "edge-sdk-export-report/2"
STATUSES = ("passed", "failed", "info")  # info: a row that is not gated (the pruned FP32 parent)
GATE_STATUSES = ("pass", "fail", "n/a")


class ReportRowError(ArtifactError):
    """A report row (or the report around it) is not what :class:`ExportRow` expects; names the field."""

    def __init__(self, field_name: str, problem: str, source: str | None = None) -> None:
        self.field = field_name
        self.problem = problem
        where = f"{source}: " if source else ""
        super().__init__(f"{where}export report field '{field_name}': {problem}")


@dataclass(frozen=True)
class GateResult:
    """One fidelity gate of one artifact: ``status`` is ``pass``, ``fail`` or ``n/a`` (no such head).

    ``measured_on`` is the int8 kernel class (:data:`edge_sdk.cpu.INT8_KERNEL_CLASSES`) of the CPU the gate
    was measured on: the same INT8 file can pass on one class and fail on another. None in reports written
    before it was recorded.
    """

    metric: str
    status: str
    message: str
    measured_on: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"metric": self.metric, "status": self.status, "message": self.message, "measured_on": self.measured_on}

    @classmethod
    def from_dict(cls, data: Any, where: str = "gates[0]", source: str | None = None) -> GateResult:
        data = _object(data, where, source)
        _no_unknown(data, ("metric", "status", "message", "measured_on"), where, source)
        status = _str(data, "status", where, source)
        if status not in GATE_STATUSES:
            raise ReportRowError(
                f"{where}.status", f"expected one of {', '.join(GATE_STATUSES)}, got {status!r}", source
            )
        return cls(
            _str(data, "metric", where, source),
            status,
            _str(data, "message", where, source),
            _opt_str(data, "measured_on", where, source),
        )


@dataclass(frozen=True)
class ExportRow:
    """One artifact (or one target that produced none) in the export report.

    ``metrics`` are the fidelity figures against the FP32 parent (None: the model has no such head);
    ``heldout`` says which faces they (and every gate) were measured on, ``measured_on`` on which int8
    kernel class (:data:`edge_sdk.cpu.INT8_KERNEL_CLASSES`; None: nothing measured, or a report written
    before it was recorded). A ``failed`` row with a ``reason`` and no files is a target whose export
    crashed, hung or raised.
    """

    target: str
    format: str
    status: str
    files: tuple[str, ...] = ()
    backend: str | None = None
    size_bytes: int | None = None
    size_kb: float | None = None
    size_ratio: float | None = None
    params: int | None = None
    latency_ms: float | None = None
    fp32_latency_ms: float | None = None
    latency_ratio: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    gates: tuple[GateResult, ...] = ()
    checks: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    reason: str | None = None
    export_s: float | None = None
    heldout: str | None = None
    measured_on: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ReportRowError("status", f"expected one of {', '.join(STATUSES)}, got {self.status!r}")

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def metric(self, name: str) -> float | None:
        """One fidelity figure, or None (not measured, or the model has no such head)."""
        return self.metrics.get(name)

    def fidelity(self) -> dict[str, Any]:
        """What the benchmark shows: ``passed`` (gated rows only), every measured figure and ``measured_on``
        (the int8 kernel class, where recorded)."""
        found: dict[str, Any] = {"passed": self.passed} if self.status != "info" else {}
        found.update({k: v for k, v in self.metrics.items() if v is not None})
        if found and self.measured_on:
            found["measured_on"] = self.measured_on  # the int8 kernel class those figures were measured on
        return found

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written in ``report.json``'s ``rows`` (every field, lists for tuples)."""
        return {
            "target": self.target,
            "format": self.format,
            "status": self.status,
            "files": list(self.files),
            "backend": self.backend,
            "size_bytes": self.size_bytes,
            "size_kb": self.size_kb,
            "size_ratio": self.size_ratio,
            "params": self.params,
            "latency_ms": self.latency_ms,
            "fp32_latency_ms": self.fp32_latency_ms,
            "latency_ratio": self.latency_ratio,
            "metrics": dict(self.metrics),
            "gates": [g.to_dict() for g in self.gates],
            "checks": dict(self.checks),
            "notes": list(self.notes),
            "reason": self.reason,
            "export_s": self.export_s,
            "heldout": self.heldout,
            "measured_on": self.measured_on,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "row", source: str | None = None) -> ExportRow:
        """A row from its JSON object; a missing, unknown or mistyped field raises :class:`ReportRowError`."""
        data = _object(data, where, source)
        _no_unknown(data, _FIELDS, where, source)
        metrics = _object(data.get("metrics", {}), f"{where}.metrics", source)
        for name, value in metrics.items():
            _number_or_none(value, f"{where}.metrics.{name}", source)
        checks = _object(data.get("checks", {}), f"{where}.checks", source)
        status = _str(data, "status", where, source)
        if status not in STATUSES:
            raise ReportRowError(f"{where}.status", f"expected one of {', '.join(STATUSES)}, got {status!r}", source)
        return cls(
            target=_str(data, "target", where, source),
            format=_str(data, "format", where, source),
            status=status,
            files=tuple(_str_list(data, "files", where, source)),
            backend=_opt_str(data, "backend", where, source),
            size_bytes=_opt_int(data, "size_bytes", where, source),
            size_kb=_opt_num(data, "size_kb", where, source),
            size_ratio=_opt_num(data, "size_ratio", where, source),
            params=_opt_int(data, "params", where, source),
            latency_ms=_opt_num(data, "latency_ms", where, source),
            fp32_latency_ms=_opt_num(data, "fp32_latency_ms", where, source),
            latency_ratio=_opt_num(data, "latency_ratio", where, source),
            metrics={str(k): (None if v is None else float(v)) for k, v in metrics.items()},
            gates=tuple(
                GateResult.from_dict(g, f"{where}.gates[{i}]", source)
                for i, g in enumerate(_list(data, "gates", where, source))
            ),
            checks=dict(checks),
            notes=tuple(_str_list(data, "notes", where, source)),
            reason=_opt_str(data, "reason", where, source),
            export_s=_opt_num(data, "export_s", where, source),
            heldout=_opt_str(data, "heldout", where, source),
            measured_on=_opt_str(data, "measured_on", where, source),
        )

    def with_measured_on(self, kernels: str) -> ExportRow:
        """This row with ``measured_on`` (and every gate's) set to ``kernels`` where not yet recorded; a row
        that measured nothing (a crashed target: no metrics, no gates) is returned unchanged."""
        if not self.metrics and not self.gates:
            return self
        gates = tuple(g if g.measured_on else replace(g, measured_on=kernels) for g in self.gates)
        return replace(self, measured_on=self.measured_on or kernels, gates=gates)


_FIELDS = tuple(ExportRow.__dataclass_fields__)


def rows_from_report(report: Any, source: str | None = None) -> list[ExportRow]:
    """The rows of a parsed ``report.json``; raises :class:`ReportRowError` naming the bad field."""
    report = _object(report, "report", source)
    schema = report.get("schema")
    if schema != REPORT_SCHEMA:
        found = "none" if schema is None else repr(schema)
        raise ReportRowError(
            "schema", f"expected {REPORT_SCHEMA!r}, found {found} (written by another edge-sdk version?)", source
        )
    rows = report.get("rows")
    if not isinstance(rows, list):
        raise ReportRowError("rows", f"expected a list of rows, got {type(rows).__name__}", source)
    return [ExportRow.from_dict(row, f"rows[{i}]", source) for i, row in enumerate(rows)]


# ---- field checks ----------------------------------------------------------------------------
def _object(value: Any, where: str, source: str | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReportRowError(where, f"expected an object, got {type(value).__name__}", source)
    return value


def _no_unknown(data: dict[str, Any], known: tuple[str, ...], where: str, source: str | None) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ReportRowError(f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(known)})", source)


def _str(data: dict[str, Any], key: str, where: str, source: str | None) -> str:
    if key not in data:
        raise ReportRowError(f"{where}.{key}", "missing", source)
    value = data[key]
    if not isinstance(value, str):
        raise ReportRowError(f"{where}.{key}", f"expected a string, got {value!r}", source)
    return value


def _opt_str(data: dict[str, Any], key: str, where: str, source: str | None) -> str | None:
    return None if data.get(key) is None else _str(data, key, where, source)


def _number_or_none(value: Any, where: str, source: str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportRowError(where, f"expected a number, got {value!r}", source)
    return float(value)


def _opt_num(data: dict[str, Any], key: str, where: str, source: str | None) -> float | None:
    return _number_or_none(data.get(key), f"{where}.{key}", source)


def _opt_int(data: dict[str, Any], key: str, where: str, source: str | None) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReportRowError(f"{where}.{key}", f"expected a whole number, got {value!r}", source)
    return value


def _list(data: dict[str, Any], key: str, where: str, source: str | None) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ReportRowError(f"{where}.{key}", f"expected a list, got {value!r}", source)
    return value


def _str_list(data: dict[str, Any], key: str, where: str, source: str | None) -> list[str]:
    items = _list(data, key, where, source)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ReportRowError(f"{where}.{key}[{i}]", f"expected a string, got {item!r}", source)
    return items
