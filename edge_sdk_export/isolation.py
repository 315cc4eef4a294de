"""Run one target's export + evaluation in a child process, so no target can take the whole run down.

A converter that aborts (LiteRT's ``abort()``), segfaults, hangs or raises fails its own target only: the
parent turns that into a ``failed`` report row with a reason (signal name, or timeout, or the exception,
plus the stage the child had reached) and goes on with the next target.

The child is started with the ``spawn`` method (forking a process that already runs torch/TF/onnxruntime
threads is unsafe) and gets everything explicitly, including the target's row: a row added at run time
(a test's ``monkeypatch.setitem(TARGETS, ...)``) is not in a fresh interpreter's table.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sdk.bench.export_row import ExportRow
from edge_sdk.errors import EdgeSdkError
from edge_sdk.targets import Target

logger = logging.getLogger(__name__)
RESULT_FILE = "isolation-result.pkl"
STAGE_FILE = "isolation-stage.txt"
MIN_TIMEOUT_S = 1.0
MAX_TIMEOUT_S = 86_400.0  # a day: a finite limit, far above any real export


@dataclass(frozen=True)
class EvalSettings:
    """How the child judges an artifact (no torch module, no detector: only what it needs, all picklable)."""

    threads: int
    latency_runs: int
    gates: dict[str, Any]  # metric -> edge_sdk_export.fidelity.Gate
    heldout: str  # which faces the gates are measured on (ExportRow.heldout)


@dataclass(frozen=True)
class TargetTask:
    """Everything the child needs to export and evaluate one target (all picklable)."""

    row: Target
    job: Any  # edge_sdk_export.exporters.ExportJob
    ref: Any  # FP32 head outputs on job.heldout
    fp32_size: int
    params: int
    settings: EvalSettings


def failed_row(row: Target, reason: str, heldout: str | None = None) -> ExportRow:
    """A report row for a target that produced no result: no files, no metrics, the reason."""
    return ExportRow(target=row.name, format=row.artifact_format, status="failed", reason=reason, heldout=heldout)


def set_stage(work: Path, stage: str) -> None:
    """Record the stage the child is in (read by the parent when the child dies or hangs)."""
    (work / STAGE_FILE).write_text(stage, encoding="utf-8")


def _read_stage(work: Path) -> str:
    try:
        return (work / STAGE_FILE).read_text(encoding="utf-8").strip() or "start-up"
    except OSError:
        return "start-up"


def run_task(task: TargetTask) -> ExportRow:
    """Export and evaluate one target in this process (what the child runs)."""
    from edge_sdk.targets import resolve
    from edge_sdk_export.pipeline import _evaluate

    work = task.job.work
    set_stage(work, "loading the export function")
    exporter = resolve(task.row.exporter)
    set_stage(work, "converting and quantizing")
    exported = exporter(task.job)
    set_stage(work, "validating")
    return _evaluate(
        task.row, exported, task.job.card, task.job.heldout, task.ref, task.fp32_size, task.params, task.settings
    )


def _child(task: TargetTask) -> None:
    work = task.job.work
    try:
        outcome: tuple[str, Any, str] = ("ok", run_task(task), "")
    except BaseException as exc:  # every Python failure becomes the target's reason
        message = str(exc) or type(exc).__name__
        # An EdgeSdkError is a diagnosed failure (its message is the reason); anything else is a bug worth a traceback.
        trace = "" if isinstance(exc, EdgeSdkError) else traceback.format_exc()
        outcome = ("error", f"{type(exc).__name__}: {message}", trace)
    tmp = work / (RESULT_FILE + ".tmp")
    tmp.write_bytes(pickle.dumps(outcome))
    tmp.replace(work / RESULT_FILE)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_isolated(task: TargetTask, timeout_s: float) -> ExportRow:
    """Run :func:`run_task` in a spawned child with a time limit; a crash, hang or exception -> failed row."""
    work = task.job.work
    heldout = task.settings.heldout
    for name in (RESULT_FILE, STAGE_FILE):
        (work / name).unlink(missing_ok=True)
    process = multiprocessing.get_context("spawn").Process(target=_child, args=(task,), name=f"export-{task.row.name}")
    process.start()
    try:
        process.join(timeout_s)
        if process.is_alive():
            process.kill()
            process.join(10)
            return failed_row(task.row, f"hung: no result after {timeout_s:g} s during {_read_stage(work)}", heldout)
    finally:
        if process.is_alive():  # KeyboardInterrupt in the parent: take the child down too
            process.kill()
            process.join(10)
    code = process.exitcode
    result = work / RESULT_FILE
    if code is not None and code < 0:
        name = _signal_name(-code)
        return failed_row(task.row, f"native crash: {name} (signal {-code}) during {_read_stage(work)}", heldout)
    if not result.exists():
        reason = f"child exited with code {code} and no result during {_read_stage(work)}"
        return failed_row(task.row, reason, heldout)
    outcome = pickle.loads(result.read_bytes())
    if outcome[0] == "ok":
        return outcome[1]
    if outcome[2]:
        logger.warning("[%s] failed; the child's traceback:\n%s", task.row.name, outcome[2])
    return failed_row(task.row, f"{outcome[1]} (during {_read_stage(work)})", heldout)
