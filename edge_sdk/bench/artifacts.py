"""Which artifacts a benchmark runs for a target: one file, an export folder, or the packaged demo.

Every artifact is checked against the target before anything is timed: its format must be one the
target runs (``Target.suffixes``: its own format, and an FP32 ``.onnx`` parent for OpenVINO, which
reads ONNX directly) and its card's ``export.target`` must be the target (or unset,
for an FP32 parent). The variant label (``fp32``, ``int8``, ``pruned-int8``...) comes from the card.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_sdk.bench.export_row import REPORT_SCHEMA, ExportRow, rows_from_report
from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.card_io import load_card
from edge_sdk.errors import ArtifactError, ContractError, InputError
from edge_sdk.targets import Target, format_for_suffix

REPORT_NAMES = ("report.json",)
VARIANT_ORDER = ("fp32", "fp16", "int8", "pruned-fp32", "pruned-fp16", "pruned-int8")
EXPORT_HINT = "run `edge-sdk export --target {target} --out DIR` and pass --model DIR"


def variant_of(card: ModelCard) -> str:
    """``fp32`` | ``int8`` | ``pruned-int8`` ...: precision, prefixed when the artifact was pruned."""
    prefix = "pruned-" if card.export.pruning_ratio > 0 else ""
    return prefix + card.export.precision


@dataclass(frozen=True)
class BenchArtifact:
    """One artifact to time for a target."""

    variant: str
    path: Path
    backend: str  # key of edge_sdk.backend.BACKENDS
    card: ModelCard
    files: tuple[Path, ...]  # every file the artifact consists of (an IR is .xml + .bin)
    fidelity: dict[str, Any] | None = None
    note: str = ""

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files if p.is_file())

    @property
    def pruning_ratio(self) -> float:
        return self.card.export.pruning_ratio


@dataclass
class ArtifactSet:
    """The artifacts found for a target and what was looked for but is missing (printed as notes)."""

    target: str
    source: str
    artifacts: list[BenchArtifact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def fp32(self) -> BenchArtifact | None:
        return next((a for a in self.artifacts if a.variant == "fp32"), None)


def artifact_files(path: Path, card: ModelCard) -> tuple[Path, ...]:
    """The files of an artifact: those its sidecar lists, else the file (plus ``.bin`` for an IR)."""
    if card.files:
        return tuple(path.with_name(name) for name in card.files)
    found = format_for_suffix(path.suffix)
    return (path, *(path.with_suffix(s) for s in (found.companions if found else ())))


def check_for_target(path: Path, card: ModelCard, target: Target) -> str:
    """Raise unless ``path`` can be benchmarked as ``target``; returns the backend that runs it."""
    # Another target's artifact first: in a multi-target export folder that is the answer (scan_folder skips
    # such files quietly), whatever its suffix.
    if card.export.target not in (None, target.name):
        raise ContractError(
            "export.target",
            f"this artifact was exported for target '{card.export.target}', not '{target.name}'; "
            f"use --target {card.export.target} or the {target.name} artifact",
            str(path),
        )
    suffix = path.suffix.lower()
    parent_ok = suffix in target.fp32_parent_suffixes and card.export.target is None
    if suffix != target.artifact_suffix and not parent_ok:
        raise ArtifactError(
            f"{path}: a {suffix or 'suffixless'} file is not an artifact of target {target.name}, which runs "
            f"{target.artifact_suffix} ({target.artifact_format}) files"
        )
    return target.backend  # the target's backend runs every suffix it accepts


def load_artifact(path: Path, target: Target, fidelity: dict[str, Any] | None = None) -> BenchArtifact:
    """Read ``path``'s card, check it against ``target`` and describe it for the benchmark."""
    card = load_card(path)
    backend = check_for_target(path, card, target)
    return BenchArtifact(
        variant=variant_of(card),
        path=path,
        backend=backend,
        card=card,
        files=artifact_files(path, card),
        fidelity=fidelity,
    )


# ---- export report (fidelity) --------------------------------------------------------------
def read_report(folder: Path) -> tuple[list[ExportRow] | None, str | None]:
    """(rows of the export folder's ``report.json``, a note): (None, None) without one; (None, note) for a
    report of another edge-sdk version (no fidelity columns then); a malformed one is an error naming the field."""
    for name in REPORT_NAMES:
        path = folder / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
            if not isinstance(data, dict):
                raise ArtifactError(f"{path}: expected a JSON object")
            if data.get("schema") != REPORT_SCHEMA:
                return None, (
                    f"{path}: written by another edge-sdk version (schema {data.get('schema')!r}, expected "
                    f"{REPORT_SCHEMA!r}), so no fidelity columns; re-run `edge-sdk export` for them"
                )
            return rows_from_report(data, str(path)), None
    return None, None


def fidelity_for(rows: list[ExportRow] | None, path: Path) -> dict[str, Any] | None:
    """The fidelity figures the export report records for the artifact ``path`` (the row listing its file)."""
    for row in rows or []:
        if path.name in row.files:
            return row.fidelity() or None
    return None


# ---- discovery ------------------------------------------------------------------------------
def _candidates(folder: Path, max_depth: int = 3) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*")):
        depth = len(path.relative_to(folder).parts)
        if depth <= max_depth and path.is_file() and format_for_suffix(path.suffix) is not None:
            found.append(path)
    return found


def _prefer(a: BenchArtifact, b: BenchArtifact, target: Target) -> BenchArtifact:
    """Of two artifacts of one variant, the one in the target's own format and explicitly for it."""

    def rank(x: BenchArtifact) -> tuple[int, int]:
        return (x.path.suffix.lower() == target.artifact_suffix, x.card.export.target == target.name)

    return a if rank(a) >= rank(b) else b


def scan_folder(folder: Path, target: Target) -> ArtifactSet:
    """Every artifact in an export folder that runs on ``target``; others' artifacts are skipped."""
    rows, report_note = read_report(folder)
    found: dict[str, BenchArtifact] = {}
    skipped: list[str] = []
    for path in _candidates(folder):
        if path.suffix.lower() not in target.suffixes:
            continue
        try:
            artifact = load_artifact(path, target, None)
        except (ContractError, ArtifactError) as exc:
            if isinstance(exc, ContractError) and exc.field == "export.target":
                continue  # another target's artifact in a multi-target folder
            skipped.append(f"{path.relative_to(folder)}: {exc}")
            continue
        artifact = BenchArtifact(**{**artifact.__dict__, "fidelity": fidelity_for(rows, path)})
        key = f"{artifact.variant}@{artifact.pruning_ratio:.2f}"
        found[key] = _prefer(found[key], artifact, target) if key in found else artifact
    if not found:
        detail = f" (unreadable: {'; '.join(skipped)})" if skipped else ""
        raise ArtifactError(
            f"{folder}: no {target.name} artifact ({target.artifact_suffix}) in this folder{detail}; "
            + EXPORT_HINT.format(target=target.name)
        )
    result = ArtifactSet(target.name, str(folder), sorted(found.values(), key=_sort_key))
    result.notes.extend(f"skipped {s}" for s in skipped)
    if report_note:
        result.notes.append(report_note)
    elif rows is None:
        result.notes.append(f"{folder}: no report.json, so no fidelity columns")
    return result


def _sort_key(a: BenchArtifact) -> tuple[int, float, str]:
    order = VARIANT_ORDER.index(a.variant) if a.variant in VARIANT_ORDER else len(VARIANT_ORDER)
    return (order, a.pruning_ratio, str(a.path))


def _demo_parent(found: ArtifactSet, target: Target, demo_path: Path) -> BenchArtifact | None:
    """The packaged demo model as FP32 reference when it is the artifacts' parent (by sha256) and runs here."""
    from edge_sdk.contract.card_io import sha256_file

    suffixes = target.suffixes
    if not demo_path.is_file() or demo_path.suffix.lower() not in suffixes:
        return None
    parents = {a.card.provenance.parent_sha256 for a in found.artifacts} - {None}
    if sha256_file(demo_path) not in parents:
        return None
    return load_artifact(demo_path, target)


def find_all_artifacts(target: Target, models: Sequence[str | Path] | None, demo_path: Path) -> ArtifactSet:
    """Artifacts for ``target`` from several files/folders (e.g. an unpruned and a pruned export), merged.

    When none of them is an FP32 artifact, the packaged demo model stands in as the FP32 reference if
    it is their parent (by sha256).
    """
    if not models:
        return find_artifacts(target, None, demo_path)
    merged = ArtifactSet(target.name, ", ".join(str(m) for m in models))
    seen: set[tuple[str, float]] = set()
    for model in models:
        found = find_artifacts(target, model, demo_path)
        merged.notes.extend(found.notes)
        for artifact in found.artifacts:
            key = (artifact.variant, round(artifact.pruning_ratio, 3))
            if key not in seen:
                seen.add(key)
                merged.artifacts.append(artifact)
    if merged.fp32 is None:
        parent = _demo_parent(merged, target, demo_path)
        if parent is not None:
            merged.artifacts.append(parent)
            merged.notes.append(f"FP32 reference: the packaged demo model {demo_path.name} (the artifacts' parent)")
    merged.notes = [n for n in merged.notes if not (merged.fp32 is not None and n.startswith("no FP32 reference"))]
    merged.artifacts.sort(key=_sort_key)
    return merged


def find_artifacts(target: Target, model: str | Path | None, demo_path: Path) -> ArtifactSet:
    """Artifacts for ``target`` from ``model``: a file, an export folder, or None (the packaged demo)."""
    if model is None or str(model) == "demo":
        if not demo_path.is_file():
            raise ArtifactError(f"{demo_path}: the packaged demo model is missing from this install")
        if demo_path.suffix.lower() not in target.suffixes:
            raise ArtifactError(
                f"target {target.name} runs {target.artifact_suffix} artifacts and the packaged demo model is "
                f"{demo_path.suffix}; " + EXPORT_HINT.format(target=target.name)
            )
        result = ArtifactSet(target.name, "packaged demo model", [load_artifact(demo_path, target)])
        result.notes.append(
            "only the FP32 demo model was benchmarked; INT8 and pruned artifacts need `edge-sdk export "
            f"--target {target.name} --out DIR` and --model DIR"
        )
        return result
    path = Path(model)
    if path.is_dir():
        return scan_folder(path, target)
    if not path.exists():
        raise ArtifactError(f"{path}: no such model file or export folder")
    artifact = load_artifact(path, target)
    result = ArtifactSet(target.name, str(path), [artifact])
    rows, report_note = read_report(path.parent)
    if report_note:
        result.notes.append(report_note)
    if rows is not None:
        result.artifacts[0] = BenchArtifact(**{**artifact.__dict__, "fidelity": fidelity_for(rows, path)})
    if artifact.variant != "fp32":
        reference = _fp32_beside(path, target)
        if reference is not None:
            result.artifacts.insert(0, reference)
        else:
            result.notes.append(
                f"no FP32 reference for {path.name} beside it, so no ratio to FP32; pass the export folder instead"
            )
    return result


def _fp32_beside(path: Path, target: Target) -> BenchArtifact | None:
    """An FP32 artifact for ``target`` in the folder of ``path`` (or its parent), if there is one."""
    for folder in (path.parent, path.parent.parent):
        try:
            found = scan_folder(folder, target)
        except ArtifactError:
            continue
        if found.fp32 is not None:
            return found.fp32
    return None


def fp32_onnx_in(folder: Path) -> Path | None:
    """An FP32 ``.onnx`` with no export target (the exported models' parent) in ``folder``, if any."""
    for path in _candidates(folder):
        if path.suffix.lower() != ".onnx":
            continue
        try:
            card = load_card(path)
        except (ContractError, ArtifactError):
            continue
        if card.export.precision == "fp32" and card.export.target is None and card.export.pruning_ratio == 0:
            return path
    return None


def select_variants(found: ArtifactSet, wanted: Sequence[str] | None) -> ArtifactSet:
    """Keep the requested variants; a requested one that is missing is a note (all missing: an error)."""
    if not wanted:
        return found
    unknown = [w for w in wanted if w not in VARIANT_ORDER]
    if unknown:
        raise InputError(f"--precision: unknown {', '.join(unknown)}; expected a list of {', '.join(VARIANT_ORDER)}")
    kept = [a for a in found.artifacts if a.variant in wanted]
    have = {a.variant for a in found.artifacts}
    missing = [w for w in wanted if w not in have]
    if not kept:
        raise ArtifactError(
            f"{found.source}: none of the requested precisions ({', '.join(wanted)}) is there for target "
            f"{found.target} (found: {', '.join(sorted(have))}); " + EXPORT_HINT.format(target=found.target)
        )
    notes = [*found.notes, *(f"{m}: no such {found.target} artifact in {found.source}" for m in missing)]
    return ArtifactSet(found.target, found.source, kept, notes)
