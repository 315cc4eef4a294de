"""``edge-sdk pick``: which of an export folder's artifacts this device should run.

An export's gates say an artifact is *accurate enough*; whether it is *faster* depends on the device (INT8
pays 2x on an AVX512-VNNI x86 box and nothing on an AVX2-only one). :func:`run_pick` times, here, every
artifact of the folder that passed its gates and can run here, together with the FP32 file(s) on the same
runtimes, interleaved as ``edge-sdk benchmark`` times them (:mod:`edge_sdk.bench.measure`), and chooses by
p50 latency with :func:`decide`:

* candidates are the unpruned FP32 parent (the reference every gate is measured against), the pruned
  FP32 model (when its figures in ``report.json`` meet the report's gates) and INT8 artifacts whose
  ``report.json`` row (:class:`~edge_sdk.bench.export_row.ExportRow`) passed; a failed one is never timed;
* a file that changes the model more (pruned, then INT8) is chosen only when it is at least ``min_gain``
  faster than the fastest file that changes it less, so the choice is never slower than an FP32 file
  timed beside it, on its runtime or any other;
* which runtimes: ONNX Runtime CPU always; OpenVINO / LiteRT when the export has such artifacts and the
  runtime imports; the TensorRT-targeted jetson file only with ``--target jetson``.

The result is written beside the artifacts as ``pick.json`` (schema :data:`PICK_SCHEMA`), which
:func:`edge_sdk.model.face_model.read_pick` reads when ``edge-sdk run --model EXPORT_DIR`` starts.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_sdk.backend import backend_class
from edge_sdk.bench.artifacts import BenchArtifact, load_artifact, scan_folder
from edge_sdk.bench.export_row import REPORT_SCHEMA, ExportRow, rows_from_report
from edge_sdk.bench.measure import DEFAULT_BLOCK, load_session, run_interleaved, sample_batch
from edge_sdk.contract.card_io import sha256_file
from edge_sdk.cpu import INT8_KERNEL_CLASSES, describe_cpu
from edge_sdk.errors import ArtifactError, BackendUnavailableError, ContractError, EdgeSdkError, InputError
from edge_sdk.model.face_model import DEMO_MODEL, PICK_FILE, PICK_SCHEMA
from edge_sdk.targets import TARGETS, Target, get_target
from edge_sdk.version import __version__

logger = logging.getLogger(__name__)

DEFAULT_RUNS = 300
DEFAULT_WARMUP = 30
# A file that changes the model more must be at least this much faster (p50) than one that changes it less:
# a gain inside timing noise is not worth an INT8 or pruned model's accuracy loss.
DEFAULT_MIN_GAIN = 0.05
# Targets whose artifacts are timed only when asked for by --target: the jetson file is built for TensorRT,
# and ONNX Runtime's CPU kernels run its symmetric int8 activations slower than FP32.
ONLY_WHEN_ASKED = ("jetson",)

# How much a candidate changes the model: the unpruned FP32 parent, the pruned FP32, a quantized artifact.
KIND_PARENT = "fp32"
KIND_PRUNED = "pruned-fp32"
KIND_INT8 = "int8"
LOSS_RANK = {KIND_PARENT: 0, KIND_PRUNED: 1, KIND_INT8: 2}

TIMED = "timed"
GATES_FAILED = "gates failed: "


@dataclass(frozen=True)
class PickConfig:
    """What to pick from and how to time it (the CLI's arguments)."""

    folder: Path
    targets: tuple[str, ...] | None = None  # None: cpu + the folder's other targets (jetson only when asked)
    threads: int | None = None  # None: the backend's default, as `edge-sdk run` loads a model without --threads
    runs: int = DEFAULT_RUNS
    warmup: int = DEFAULT_WARMUP
    block: int = DEFAULT_BLOCK
    min_gain: float = DEFAULT_MIN_GAIN

    def check(self) -> None:
        """Raise :class:`InputError` for a value no run could use, before anything is read."""
        if self.runs < 1:
            raise InputError(f"--runs: expected at least 1, got {self.runs}")
        if self.warmup < 0:
            raise InputError(f"--warmup: expected 0 or more, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads: expected a positive thread count, got {self.threads}")
        if not 0.0 <= self.min_gain < 1.0:
            raise InputError(f"--min-gain: expected a fraction in [0, 1), got {self.min_gain}")
        for name in self.targets or ():
            get_target(name)


@dataclass
class Candidate:
    """One file of the folder (or the FP32 parent) on one runtime: whether it may be chosen, and its timing."""

    label: str  # "fp32 parent", "pruned-fp32", "int8 (cpu)", ...
    path: Path | None  # None: a target whose export produced no file
    kind: str  # a key of LOSS_RANK
    eligible: bool
    status: str  # TIMED, "gates failed", "skipped", "not loaded", ...
    reason: str
    target: str | None = None  # the target whose runtime options load it
    backend: str | None = None
    artifact: BenchArtifact | None = None
    runtime: str = ""  # "onnxruntime 1.22.0", once loaded
    p50_ms: float | None = None
    p90_ms: float | None = None

    @property
    def name(self) -> str:
        """Unique among candidates: the file and the runtime that ran it."""
        return f"{self.path.name if self.path else self.label}@{self.backend or '-'}"

    def to_dict(self, folder: Path) -> dict[str, Any]:
        return {
            "label": self.label,
            "file": _relative(self.path, folder) if self.path else None,
            "kind": self.kind,
            "target": self.target,
            "backend": self.backend,
            "runtime": self.runtime or None,
            "eligible": self.eligible,
            "status": self.status,
            "reason": self.reason,
            "p50_ms": _round(self.p50_ms),
            "p90_ms": _round(self.p90_ms),
        }


@dataclass(frozen=True)
class Timing:
    """What :func:`decide` needs of a timed candidate."""

    name: str
    backend: str
    kind: str
    p50_ms: float

    @property
    def loss_rank(self) -> int:
        return LOSS_RANK[self.kind]


@dataclass(frozen=True)
class Decision:
    """The chosen candidate's name (None: nothing to choose) and why, in one sentence."""

    choice: str | None
    reason: str
    fp32_compared: bool


# ---- the decision -----------------------------------------------------------------------------
def decide(timings: Sequence[Timing], min_gain: float = DEFAULT_MIN_GAIN) -> Decision:
    """Choose among timed candidates that may be chosen (gates passed, or FP32).

    Start from the fastest unpruned FP32 file; move to a file that changes the model more (the pruned FP32,
    then INT8) only when the fastest of those is at least ``min_gain`` faster at p50 than the current choice.
    The result is an FP32 file or the fastest of all, so it is never slower than an FP32 file timed beside
    it. Without any FP32 file the fastest INT8 artifact is chosen and ``fp32_compared`` is False.

    >>> t = [Timing("a.onnx@ort", "ort", "fp32", 2.0), Timing("b.onnx@ort", "ort", "int8", 1.0)]
    >>> decide(t).choice
    'b.onnx@ort'
    >>> decide([Timing("a", "ort", "fp32", 2.0), Timing("b", "ort", "int8", 1.95)]).choice
    'a'
    """
    if not timings:
        return Decision(None, "no artifact passed its gates and no FP32 file is there to fall back on", False)
    fp32_compared = any(t.kind != KIND_INT8 for t in timings)
    choice: Timing | None = None
    for level in sorted({t.loss_rank for t in timings}):
        best = min((t for t in timings if t.loss_rank <= level), key=lambda t: t.p50_ms)
        if choice is None or best.p50_ms < choice.p50_ms * (1.0 - min_gain):
            choice = best
    assert choice is not None
    return Decision(choice.name, _reason(choice, timings, min_gain, fp32_compared), fp32_compared)


def _reason(choice: Timing, timings: Sequence[Timing], min_gain: float, fp32_compared: bool) -> str:
    """One sentence: why ``choice`` (timings in p50 ms; ratios are speed-ups, >1 = faster than the other)."""
    fastest = min(timings, key=lambda t: t.p50_ms)
    said = f"p50 {choice.p50_ms:.3f} ms"
    if not fp32_compared:
        return f"fastest by {said}; NO FP32 FILE to compare with, so INT8 artifacts were compared with each other only"
    if fastest is not choice:
        gain = 1.0 - fastest.p50_ms / choice.p50_ms
        return (
            f"{said}; {fastest.name} is faster ({fastest.p50_ms:.3f} ms) but only by {gain:.1%}, less than "
            f"--min-gain {min_gain:.0%}: not worth the accuracy it gives up"
        )
    others = [t for t in timings if t is not choice]
    if not others:
        return f"the only candidate ({said})"
    if choice.kind == KIND_INT8:
        fp32 = [t for t in others if t.kind != KIND_INT8]
        same = [t for t in fp32 if t.backend == choice.backend]
        versus = min(same or fp32, key=lambda t: t.p50_ms)
        where = "on the same runtime" if same else f"on {versus.backend}"
        speedup = versus.p50_ms / choice.p50_ms
        return f"fastest by {said}: {speedup:.2f}x faster than the FP32 file {versus.name} {where}"
    int8 = [t for t in others if t.kind == KIND_INT8]
    if int8:
        best = min(int8, key=lambda t: t.p50_ms)
        return (
            f"fastest by {said}; the fastest INT8 file, {best.name}, takes {best.p50_ms:.3f} ms "
            f"({choice.p50_ms / best.p50_ms:.2f}x): INT8 does not pay on this device"
        )
    runner_up = min(others, key=lambda t: t.p50_ms)
    return f"fastest by {said}; the next, {runner_up.name}, takes {runner_up.p50_ms:.3f} ms"


# ---- candidates -------------------------------------------------------------------------------
@dataclass
class Found:
    """The candidates of a folder, its report's model section and notes for the user."""

    candidates: list[Candidate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)


def read_export_report(folder: Path) -> tuple[dict[str, Any], list[ExportRow]]:
    """``folder``'s ``report.json`` (as a dict) and its rows; an :class:`EdgeSdkError` when it is not a readable
    report of this edge-sdk version."""
    if not folder.exists():
        raise InputError(f"--model {folder}: no such folder")
    if not folder.is_dir():
        raise InputError(
            f"--model {folder}: not a folder; `edge-sdk pick` chooses among the artifacts of an `edge-sdk export` "
            "output folder"
        )
    path = folder / "report.json"
    if not path.is_file():
        raise InputError(
            f"--model {folder}: no report.json in this folder, so no gate results; pass the folder "
            "`edge-sdk export --out` wrote"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and data.get("schema") != REPORT_SCHEMA:
        raise ArtifactError(
            f"{path}: written by another edge-sdk version (schema {data.get('schema')!r}, expected "
            f"{REPORT_SCHEMA!r}); re-run `edge-sdk export`"
        )
    return data, rows_from_report(data, str(path))


def _targets(config: PickConfig, rows: list[ExportRow]) -> tuple[list[str], list[str]]:
    """(targets whose runtimes are timed, notes): asked-for ones must run here; by default cpu (ONNX Runtime
    runs the FP32 parent everywhere) and the folder's other targets whose runtimes import."""
    asked = config.targets is not None
    wanted = list(config.targets) if asked else ["cpu", *(r.target for r in rows if r.target in TARGETS)]
    wanted = [t for t in dict.fromkeys(wanted) if asked or t not in ONLY_WHEN_ASKED]
    wanted.sort(key=lambda t: (t != "cpu", list(TARGETS).index(t)))
    runnable, notes = [], []
    for name in wanted:
        try:
            backend_class(get_target(name).backend)
        except BackendUnavailableError as exc:
            if asked:
                raise
            notes.append(f"{name} artifacts not timed: {exc}")
            continue
        runnable.append(name)
    return runnable, notes


def _row_for(rows: list[ExportRow], path: Path) -> ExportRow | None:
    return next((r for r in rows if path.name in r.files), None)


def _meets_report_gates(report: dict[str, Any], row: ExportRow) -> tuple[bool, str]:
    """Whether a row's figures (the pruned FP32's, which the export records but does not gate) meet the
    thresholds of the report's ``gates`` section."""
    gates = report.get("gates")
    if not isinstance(gates, dict) or not gates:
        return False, "report.json has no gates to judge it by"
    failed, judged = [], 0
    for metric, gate in gates.items():
        value = row.metric(metric)
        if value is None or not isinstance(gate, dict) or not isinstance(gate.get("threshold"), (int, float)):
            continue
        judged += 1
        higher = bool(gate.get("higher_is_better", True))
        if (value < gate["threshold"]) if higher else (value > gate["threshold"]):
            failed.append(f"{metric} {value:.4g} {'<' if higher else '>'} {gate['threshold']:g}")
    if failed:
        return False, "misses the report's gates: " + ", ".join(failed)
    if not judged:
        return False, "no figure of it matches a gate in report.json"
    return True, f"meets the report's {judged} gate(s)"


def _gates_failed(row: ExportRow) -> str:
    return "; ".join([g.message for g in row.gates if g.status == "fail"] or [row.reason or f"status {row.status}"])


def _judge(artifact: BenchArtifact, rows: list[ExportRow], report: dict[str, Any]) -> tuple[str, str, bool, str]:
    """(label, kind, may be chosen, why) for one artifact found in the folder."""
    export = artifact.card.export
    row = _row_for(rows, artifact.path)
    if export.target is None and export.precision == "fp32":
        if export.pruning_ratio > 0:
            label = f"pruned-fp32 ({export.pruning_ratio:.0%})"
            if row is None:
                return label, KIND_PRUNED, False, "no report.json row lists it (no fidelity figures)"
            ok, why = _meets_report_gates(report, row)
            return label, KIND_PRUNED, ok, why
        model = report.get("model") if isinstance(report.get("model"), dict) else {}
        parent_sha = model.get("sha256")
        if parent_sha and sha256_file(artifact.path) != parent_sha:
            return "fp32", KIND_PARENT, False, "an FP32 file that is not this export's parent (sha256 differs)"
        return "fp32 parent", KIND_PARENT, True, "the FP32 parent (the reference every gate is measured against)"
    label = f"{artifact.variant} ({export.target})" if export.target else artifact.variant
    if row is None:
        return label, KIND_INT8, False, "no report.json row lists it (no gate result)"
    if not row.passed:
        return label, KIND_INT8, False, GATES_FAILED + _gates_failed(row)
    return label, KIND_INT8, True, "gates passed" + (f" ({row.heldout})" if row.heldout else "")


def _parent_outside(folder: Path, report: dict[str, Any]) -> tuple[Path | None, str]:
    """The FP32 parent when the folder lacks it: report.json's ``model.file``, or the packaged demo, by sha256."""
    model = report.get("model") if isinstance(report.get("model"), dict) else {}
    sha = model.get("sha256")
    if not sha:
        return None, ""
    recorded = Path(str(model.get("file") or ""))
    for path, where in ((recorded, "report.json's model.file"), (DEMO_MODEL, "the packaged demo model")):
        if str(path) not in ("", ".") and path.is_file() and sha256_file(path) == sha:
            return path, where
    return None, ""


def find_candidates(folder: Path, config: PickConfig, report: dict[str, Any], rows: list[ExportRow]) -> Found:
    """Every artifact of ``folder`` (and the FP32 parent) on each runtime to consider, judged, not yet timed."""
    targets, notes = _targets(config, rows)
    found = Found(notes=notes, targets=targets)
    seen: set[tuple[Path, str]] = set()

    def add(artifact: BenchArtifact, target: Target) -> None:
        key = (artifact.path.resolve(), artifact.backend)
        if key in seen:
            return
        seen.add(key)
        label, kind, ok, why = _judge(artifact, rows, report)
        found.candidates.append(
            Candidate(
                label,
                artifact.path,
                kind,
                ok,
                "to time" if ok else ("gates failed" if why.startswith(GATES_FAILED) else "not eligible"),
                why.removeprefix(GATES_FAILED),
                target.name,
                artifact.backend,
                artifact,
            )
        )

    for name in targets:
        target = TARGETS[name]
        try:
            scanned = scan_folder(folder, target)
        except ArtifactError as exc:  # none of this target's files here; an unreadable one is worth a note
            if "unreadable" in str(exc):
                found.notes.append(str(exc))
            continue
        found.notes.extend(n for n in scanned.notes if n.startswith("skipped ") and n not in found.notes)
        for artifact in scanned.artifacts:
            add(artifact, target)
    if not any(c.kind == KIND_PARENT and c.eligible for c in found.candidates):
        parent, where = _parent_outside(folder, report)
        if parent is not None:
            found.notes.append(f"FP32 parent: {parent} ({where}; it is not in the folder)")
            for name in targets:
                target = TARGETS[name]
                if parent.suffix.lower() in target.suffixes:
                    try:
                        add(load_artifact(parent, target), target)
                    except (ArtifactError, ContractError) as exc:
                        found.notes.append(f"FP32 parent not usable for {name}: {exc}")
        else:
            found.notes.append(
                "NO FP32 FILE: the FP32 parent is not in the folder (report.json names "
                f"{(report.get('model') or {}).get('file')!r}); INT8 artifacts are compared with each other only. "
                "Copy the FP32 parent ONNX (with its card) into the folder to compare with it"
            )
    _add_skipped(found, folder, rows, targets, config.targets)
    order = {name: i for i, name in enumerate(targets)}
    found.candidates.sort(key=lambda c: (not c.eligible, order.get(c.target or "", len(order)), LOSS_RANK[c.kind]))
    return found


def _add_skipped(
    found: Found, folder: Path, rows: list[ExportRow], targets: list[str], asked: tuple[str, ...] | None
) -> None:
    """Rows of the report no candidate covers: failed ones, other targets' artifacts, targets with no file."""
    listed = {c.path.name for c in found.candidates if c.path is not None}
    for row in rows:
        if row.target not in TARGETS or (row.files and row.files[0] in listed):
            continue
        path = folder / row.files[0] if row.files else None
        if not row.files:
            status, why = "no file", f"the export produced no file: {row.reason or row.status}"
        elif not row.passed:
            status, why = "gates failed", _gates_failed(row)
        elif row.target in ONLY_WHEN_ASKED and row.target not in targets:
            status, why = "skipped", f"built for {TARGETS[row.target].device}; timed only with --target {row.target}"
        elif row.target not in targets and asked:
            status, why = "skipped", f"not among --target {','.join(asked)}"
        elif row.target not in targets:
            status, why = "skipped", "its runtime is not installed here (see the notes)"
        elif path is not None and path.is_file():
            status, why = "unreadable", "it could not be read as this target's artifact (see the notes)"
        else:
            status, why = "missing", "report.json lists it but it is not in the folder"
        found.candidates.append(Candidate(f"int8 ({row.target})", path, KIND_INT8, False, status, why, row.target))


# ---- timing -----------------------------------------------------------------------------------
def time_candidates(candidates: list[Candidate], config: PickConfig) -> None:
    """Load every eligible candidate on its runtime and time them all interleaved (``edge-sdk benchmark``'s
    machinery); fills ``p50_ms``/``p90_ms``/``runtime``. One that fails to load here is marked, not fatal."""
    todo = [c for c in candidates if c.eligible and c.artifact is not None]
    if not todo:
        return
    assert todo[0].artifact is not None
    batch = sample_batch(todo[0].artifact.card)
    loaded = []
    for c in todo:
        assert c.artifact is not None and c.target is not None
        try:
            session = load_session(c.artifact, TARGETS[c.target], config.threads, None, batch)
        except EdgeSdkError as exc:
            c.eligible, c.status, c.reason = False, "not loaded", f"cannot run here: {exc}"
            logger.warning("%s: not timed, it cannot run here: %s", c.path, exc)
            continue
        loaded.append((c, session))
    logger.info(
        "timing %d candidate(s) interleaved: %d warm-up + %d runs each", len(loaded), config.warmup, config.runs
    )
    run_interleaved([s for _, s in loaded], config.runs, config.warmup, config.block)
    for c, session in loaded:
        stats = session.stats()
        c.p50_ms, c.p90_ms, c.runtime, c.status = stats["p50"], stats["p90"], session.runtime, TIMED


# ---- the run ----------------------------------------------------------------------------------
def run_pick(config: PickConfig) -> dict[str, Any]:
    """Find, judge and time the folder's candidates, decide, and return ``pick.json``'s content (not written)."""
    config.check()
    folder = Path(config.folder)
    report, rows = read_export_report(folder)
    found = find_candidates(folder, config, report, rows)
    logger.info("candidates in %s: %d to time", folder, sum(c.eligible for c in found.candidates))
    time_candidates(found.candidates, config)
    timed = [c for c in found.candidates if c.status == TIMED]
    by_name = {c.name: c for c in timed}
    decision = decide([Timing(c.name, c.backend or "", c.kind, c.p50_ms or 0.0) for c in timed], config.min_gain)
    chosen = by_name.get(decision.choice) if decision.choice else None
    cpu = describe_cpu()
    runtimes = {c.backend: c.runtime for c in timed if c.backend}
    return {
        "schema": PICK_SCHEMA,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "edge_sdk_version": __version__,
        "folder": str(folder.resolve()),
        "machine": {
            "cpu": cpu.model,
            "arch": cpu.arch,
            "isa_flags": list(cpu.isa_flags),
            "int8_kernels": cpu.int8_kernels,
            "int8_kernels_note": INT8_KERNEL_CLASSES.get(cpu.int8_kernels, ""),
            "cores_usable": cpu.cores_usable,
            "runtimes": runtimes,
        },
        "settings": {
            "targets": found.targets,
            "threads": config.threads,
            "runs": config.runs,
            "warmup": config.warmup,
            "block": config.block,
            "interleaved": True,
            "statistic": "p50",
            "min_gain": config.min_gain,
        },
        "candidates": [{**c.to_dict(folder), **_ratio_field(c, found.candidates)} for c in found.candidates],
        "choice": None if chosen is None else _choice(chosen, folder),
        "reason": decision.reason,
        "fp32_compared": decision.fp32_compared,
        "notes": found.notes,
    }


def _fp32_beside(c: Candidate, candidates: list[Candidate]) -> Candidate | None:
    """The FP32 file timed on ``c``'s runtime (the unpruned parent first) that ``vs FP32`` is measured against."""
    same = [x for x in candidates if x.status == TIMED and x.backend == c.backend and x.kind != KIND_INT8]
    return min(same, key=lambda x: LOSS_RANK[x.kind]) if same else None


def _ratio_field(c: Candidate, candidates: list[Candidate]) -> dict[str, Any]:
    reference = _fp32_beside(c, candidates)
    ratio = None
    if reference is not None and c.p50_ms and reference.p50_ms:
        ratio = round(reference.p50_ms / c.p50_ms, 2)
    return {"speedup_vs_fp32_same_runtime": ratio, "fp32_reference": reference.name if reference else None}


def _choice(c: Candidate, folder: Path) -> dict[str, Any]:
    assert c.path is not None
    return {
        "label": c.label,
        "file": _relative(c.path, folder),
        "sha256": sha256_file(c.path),
        "backend": c.backend,
        "target": c.target,
        "kind": c.kind,
        "runtime": c.runtime,
        "p50_ms": _round(c.p50_ms),
        "p90_ms": _round(c.p90_ms),
    }


def write_pick(result: dict[str, Any], folder: Path) -> Path:
    """Write ``result`` as ``folder/pick.json`` (via a temporary file, so a reader never sees half of it)."""
    path = Path(folder) / PICK_FILE
    tmp = path.with_name(f".{PICK_FILE}.tmp")
    try:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the choice ({exc.strerror or exc}); is the folder writable?") from None
    return path


# ---- printing ---------------------------------------------------------------------------------
def format_pick(result: dict[str, Any]) -> str:
    """The table of candidates and the choice with its reason, as ``edge-sdk pick`` prints them."""
    m = result["machine"]
    s = result["settings"]
    threads = s["threads"] if s["threads"] else "runtime default"
    lines = [
        f"machine: {m['cpu']} ({m['arch']}), int8 kernels {m['int8_kernels']}, ISA {' '.join(m['isa_flags']) or '?'}",
        f"timed interleaved: {s['warmup']} warm-up + {s['runs']} runs each, threads {threads}, "
        f"targets {', '.join(s['targets']) or '-'}",
        "",
    ]
    header = ("", "candidate", "file", "runtime", "p50 ms", "p90 ms", "vs FP32", "status")
    choice = result["choice"]
    table = []
    for c in result["candidates"]:
        chosen = choice is not None and c["file"] == choice["file"] and c["backend"] == choice["backend"]
        ratio = c.get("speedup_vs_fp32_same_runtime")
        status = c["status"] if c["status"] == TIMED else f"{c['status']}: {c['reason']}"
        table.append(
            (
                "->" if chosen else "",
                c["label"],
                c["file"] or "-",
                c["backend"] or "-",
                "-" if c["p50_ms"] is None else f"{c['p50_ms']:.3f}",
                "-" if c["p90_ms"] is None else f"{c['p90_ms']:.3f}",
                "-" if ratio is None else f"{ratio:.2f}x",
                status,
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header) - 1)]
    for row in [header, *table]:
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    lines.append("")
    if choice is None:
        lines.append(f"no choice: {result['reason']}")
    else:
        lines.append(f"choice: {choice['label']} {choice['file']} on {choice['backend']}: {result['reason']}")
    lines.extend(f"note: {n}" for n in result["notes"])
    return "\n".join(lines)


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(folder).resolve()))
    except ValueError:
        return str(path.resolve())


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


__all__ = [
    "DEFAULT_MIN_GAIN",
    "Candidate",
    "Decision",
    "PickConfig",
    "Timing",
    "decide",
    "find_candidates",
    "format_pick",
    "run_pick",
    "write_pick",
]
