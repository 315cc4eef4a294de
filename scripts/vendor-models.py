#!/usr/bin/env python3
"""Place the YuNet face detector (and its licence) into edge_sdk/face/models/ before building a release wheel.

The model file is never committed (it is gitignored); this script puts the exact pinned file there, so that
``pip install edge-sdk && edge-sdk run --source 0`` finds a detector without ``edge-sdk models pull yunet``.
The file is verified against the sha256 pinned in edge_sdk/models_registry/entries.py before it is placed.

    python scripts/vendor-models.py --from ../shared/models/yunet   # offline: a folder holding the file
    python scripts/vendor-models.py                                 # download the pinned URL (and licence)
    python -m build --wheel                                         # then build: the wheel carries the model
    python scripts/vendor-models.py --clean                         # remove the vendored files again

Exit codes: 0 placed (or already there and verified), 2 an error (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the registry of this checkout, also when edge-sdk is not installed

from edge_sdk.errors import EdgeSdkError, InputError  # noqa: E402
from edge_sdk.models_registry.download import download  # noqa: E402
from edge_sdk.models_registry.entries import REGISTRY, RegistryEntry  # noqa: E402
from edge_sdk.models_registry.hashes import digest_file  # noqa: E402
from edge_sdk.models_registry.pull import find_in_folder, mismatch  # noqa: E402

DEST = REPO / "edge_sdk" / "face" / "models"
VENDORED = ("yunet",)
LICENSE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md")


def license_file(name: str) -> str:
    return f"LICENSE-{name}.txt"


def raw_url(page: str) -> str:
    """GitHub's ``.../blob/BRANCH/PATH`` page as its raw file URL."""
    return page.replace("/blob/", "/raw/", 1) if "github.com" in page else page


def vendor(entry: RegistryEntry, source: Path | None, dest: Path) -> Path:
    """Verify and place ``entry``'s file and licence in ``dest``; the placed model path."""
    if not entry.sha256:
        raise InputError(f"{entry.name}: no sha256 pinned in the registry; only sha256-pinned models are vendored")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / entry.filename
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        staged_model, staged_license = Path(tmp) / entry.filename, Path(tmp) / license_file(entry.name)
        if source is not None:
            shutil.copyfile(find_in_folder(entry, source), staged_model)
            found = [source / n for n in LICENSE_NAMES if (source / n).is_file()]
            if not found:
                raise InputError(f"--from {source}: no LICENSE file beside the model; the wheel must carry it")
            licence_text, licence_from = found[0].read_text(encoding="utf-8"), str(found[0])
        else:
            download(entry.url, staged_model)
            download(raw_url(entry.license_url), staged_license)
            licence_text, licence_from = staged_license.read_text(encoding="utf-8"), raw_url(entry.license_url)
        problem = mismatch(entry, digest_file(staged_model))
        if problem is not None:
            raise EdgeSdkError(f"{entry.name}: {problem}; nothing was placed")
        header = (
            f"{entry.filename}: {entry.description}\n"
            f"Source: {entry.homepage}\nLicence: {entry.license} ({entry.license_url})\n"
            f"sha256: {entry.sha256}\nThe licence text below was copied from {licence_from}\n\n"
        )
        staged_license.write_text(header + licence_text, encoding="utf-8")
        staged_model.replace(target)
        staged_license.replace(dest / license_file(entry.name))
    return target


def clean(dest: Path) -> list[Path]:
    removed = []
    for name in VENDORED:
        entry = REGISTRY[name]
        for path in (dest / entry.filename, dest / license_file(name)):
            if path.exists():
                path.unlink()
                removed.append(path)
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, help="a folder holding the model file and its LICENSE")
    parser.add_argument("--dest", type=Path, default=DEST, help=f"where to place them (default {DEST})")
    parser.add_argument("--clean", action="store_true", help="remove the vendored files instead")
    args = parser.parse_args(argv)
    try:
        if args.clean:
            for path in clean(args.dest):
                print(f"removed {path}")
            return 0
        for name in VENDORED:
            entry = REGISTRY[name]
            path = vendor(entry, args.source, args.dest)
            print(f"placed {path} (sha256 {entry.sha256}, {entry.license}) and {license_file(name)}")
        return 0
    except EdgeSdkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
