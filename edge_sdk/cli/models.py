"""``edge-sdk models list|pull|path``: the public model registry and the local cache."""

from __future__ import annotations

import argparse
import sys

from edge_sdk.errors import ArtifactError
from edge_sdk.models_registry import (
    REGISTRY,
    cache_dir,
    get_entry,
    model_path,
    pull,
    require_pulled_model,
    verify_pulled,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="the registry: name, kind, licence, pin, and whether it is pulled")
    p = actions.add_parser("pull", help="download (or import with --from) and verify a model into the cache")
    p.add_argument("name", choices=sorted(REGISTRY), metavar="NAME", help=f"one of: {', '.join(REGISTRY)}")
    p.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help="import from a local file or folder instead of downloading (air-gapped devices)",
    )
    p.add_argument("--force", action="store_true", help="pull again even if a verified copy is cached")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP attempt (default 30)")
    p.add_argument("--attempts", type=int, default=4, help="download attempts, resuming each time (default 4)")
    p = actions.add_parser("path", help="print the verified path of a pulled model (exit 1 if not pulled)")
    p.add_argument("name", metavar="NAME")


def _list() -> int:
    print(f"cache: {cache_dir()}")
    print(f"{'NAME':22} {'KIND':14} {'LICENCE':11} {'PULLED':8} FILE")
    for entry in REGISTRY.values():
        try:
            verify_pulled(entry)
            state = "yes"
        except ArtifactError:
            state = "changed" if model_path(entry).is_file() else "no"
        print(f"{entry.name:22} {entry.kind:14} {entry.license:11} {state:8} {entry.filename}")
        print(f"{'':22} {entry.description}")
        print(f"{'':22} pinned by {entry.pinned_by}")
    return 0


def _progress(done: int, total: int | None) -> None:
    if sys.stderr.isatty():
        size = f"/{total / 1e6:.1f}" if total else ""
        print(f"\r  {done / 1e6:.1f}{size} MB", end="", file=sys.stderr, flush=True)


def _pull(args: argparse.Namespace) -> int:
    entry = get_entry(args.name)
    where = args.source or entry.url
    print(f"pulling {entry.name} ({entry.license}) from {where}")
    result = pull(
        entry.name,
        source=args.source,
        force=args.force,
        progress=_progress,
        timeout_s=args.timeout,
        attempts=args.attempts,
    )
    if sys.stderr.isatty():
        print(file=sys.stderr)
    state = (
        "already in the cache, re-verified" if result.already_present else f"verified by {result.manifest.verified_by}"
    )
    print(f"{result.path}: {state}; sha256 {result.manifest.sha256}")
    for note in result.notes:
        print(f"note: {note}")
    if entry.card is not None:
        print(f"card: {result.path.with_name(result.path.stem + '.card.json')} (use --model {entry.name})")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list()
    if args.action == "pull":
        return _pull(args)
    try:
        print(require_pulled_model(args.name))
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
