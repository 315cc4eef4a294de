"""``pull``: fetch a registry model (URL or local folder), verify its pin, install it atomically.

Everything is written to ``<file>.part`` first; only a copy whose hash matches the registry is
renamed into place, so a failed pull never leaves a file the runtime could pick up. Face models get
their card checked against the real ONNX graph and written as the sidecar ``<stem>.card.json``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from edge_sdk.contract.card import ModelCard, sidecar_path
from edge_sdk.errors import ArtifactError, InputError
from edge_sdk.models_registry.cache import MANIFEST_NAME, Manifest, model_dir, model_path, verify_pulled
from edge_sdk.models_registry.download import download
from edge_sdk.models_registry.entries import RegistryEntry, get_entry
from edge_sdk.models_registry.hashes import FileDigest, digest_file


@dataclass
class PullResult:
    """What a pull did."""

    entry: RegistryEntry
    path: Path
    manifest: Manifest
    already_present: bool = False
    notes: list[str] = field(default_factory=list)


def mismatch(entry: RegistryEntry, digest: FileDigest) -> str | None:
    """Why ``digest`` is not the registry's file, or None when it is."""
    if entry.sha256 and digest.sha256 != entry.sha256:
        return f"sha256 is {digest.sha256}, the registry pins {entry.sha256}"
    if entry.git_blob_sha1 and digest.git_blob_sha1 != entry.git_blob_sha1:
        return f"git blob id is {digest.git_blob_sha1}, the registry pins {entry.git_blob_sha1}"
    return None


def find_in_folder(entry: RegistryEntry, folder: Path) -> Path:
    """The file in ``folder`` that matches ``entry``'s pin: its upstream name first, then any same-suffix file."""
    if not folder.is_dir():
        raise InputError(f"--from {folder}: not a folder or file")
    suffix = Path(entry.filename).suffix
    named = folder / entry.filename
    candidates = [named] if named.is_file() else []
    candidates += sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == suffix and p != named)
    checked = []
    for path in candidates:
        problem = mismatch(entry, digest_file(path))
        if problem is None:
            return path
        checked.append(f"{path.name} ({problem})")
    raise ArtifactError(
        f"--from {folder}: no {suffix} file there matches '{entry.name}' (pinned by {entry.pin}); "
        + (f"checked: {'; '.join(checked)}" if checked else f"no {suffix} files found")
    )


def fit_card_to_model(card: ModelCard, path: Path) -> tuple[ModelCard, list[str]]:
    """Check a hand-written card against the real ONNX graph (input name/size, output tensors).

    A single-output model whose output is named differently from the card's guess gets the card
    rewritten to the real name (reported in the notes); any other disagreement is an error.
    """
    from edge_sdk.backend.onnxruntime_backend import open_session

    session = open_session(path, threads=1, optimize=False)
    notes: list[str] = []
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ArtifactError(f"{path}: expected one image input, the model has {len(inputs)}")
    shape = inputs[0].shape
    spatial = tuple(shape[2:4]) if card.input.layout == "NCHW" else tuple(shape[1:3])
    expected = (card.input.height, card.input.width)
    if all(isinstance(s, int) for s in spatial) and spatial != expected:
        raise ArtifactError(f"{path}: input {inputs[0].name} is {list(shape)}, the card expects {list(expected)}")
    if inputs[0].name != card.input.name:
        notes.append(f"card input name {card.input.name!r} -> {inputs[0].name!r} (checked against the file)")
        card = replace(card, input=replace(card.input, name=inputs[0].name))
    outputs = {o.name: tuple(d if isinstance(d, int) else None for d in o.shape) for o in session.get_outputs()}
    missing = [t for t in card.output_tensors if t not in outputs]
    if missing and len(outputs) == 1 and len(card.output_tensors) == 1:
        (actual,) = outputs
        notes.append(f"card output tensor {missing[0]!r} -> {actual!r} (checked against the file)")
        card = replace(card, heads=tuple(replace(h, output=actual) for h in card.heads))
    card.check_outputs(outputs, str(path))
    return card, notes


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def pull(
    name: str,
    *,
    source: str | Path | None = None,
    registry: dict[str, RegistryEntry] | None = None,
    force: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
    **download_options: float,
) -> PullResult:
    """Install registry model ``name`` into the cache, from its URL or from ``source`` (a file or folder).

    ``download_options`` go to :func:`edge_sdk.models_registry.download.download` (timeout_s,
    attempts, backoff_s). Returns where it went and what was verified.
    """
    entry = get_entry(name, registry)
    final = model_path(entry)
    if final.is_file() and not force:
        try:
            return PullResult(entry, final, verify_pulled(entry), already_present=True)
        except ArtifactError:
            pass  # changed or half-installed: pull again
    model_dir(entry).mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    try:
        if source is None:
            origin = entry.url
            download(entry.url, part, progress=progress, **download_options)  # type: ignore[arg-type]
        else:
            src = Path(source).expanduser()
            if src.is_dir():
                src = find_in_folder(entry, src)
            elif not src.is_file():
                raise InputError(f"--from {src}: no such file or folder")
            origin = str(src.resolve())
            shutil.copyfile(src, part)
        digest = digest_file(part)
        problem = mismatch(entry, digest)
        if problem is not None:
            raise ArtifactError(f"{origin}: not the registry's '{entry.name}': {problem}; nothing was saved")
        notes: list[str] = []
        card = None
        if entry.card is not None:
            card, notes = fit_card_to_model(entry.card, part)
            card = replace(card, files={entry.filename: digest.sha256})
        os.replace(part, final)
    except BaseException:
        part.unlink(missing_ok=True)
        if not any(model_dir(entry).iterdir()):
            model_dir(entry).rmdir()
        raise
    if card is not None:
        _write_text_atomic(sidecar_path(final), card.to_json() + "\n")
    manifest = Manifest(
        name=entry.name,
        filename=entry.filename,
        size=digest.size,
        sha256=digest.sha256,
        git_blob_sha1=digest.git_blob_sha1,
        source=origin,
        verified_by="sha256" if entry.sha256 else "git blob",
        pulled_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    manifest.write(model_dir(entry) / MANIFEST_NAME)
    if entry.sha256 is None:
        notes.append(
            f"verified by git blob {digest.git_blob_sha1}; its sha256 is {digest.sha256} "
            "(recorded in the cache manifest; pin it in edge_sdk/models_registry/entries.py)"
        )
    return PullResult(entry, final, manifest, notes=notes)
