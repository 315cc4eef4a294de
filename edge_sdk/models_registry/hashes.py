"""File digests used to pin public models: sha256, and the git blob id (SHA-1) for files whose
sha256 has not been recorded yet but whose git blob id is published by the upstream repository."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from edge_sdk.contract.card_io import sha256_file

__all__ = ["FileDigest", "digest_file", "git_blob_sha1_file", "sha256_file"]

_CHUNK = 1 << 20


def git_blob_sha1_file(path: str | Path) -> str:
    """The git blob id of a file: SHA-1 over ``b"blob <size>\\0"`` followed by the bytes."""
    path = Path(path)
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileDigest:
    """Size, sha256 and git blob id of one file, read in a single pass."""

    size: int
    sha256: str
    git_blob_sha1: str


def digest_file(path: str | Path) -> FileDigest:
    """Read ``path`` once and return its size, sha256 and git blob id."""
    path = Path(path)
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            sha256.update(block)
            blob.update(block)
    return FileDigest(size=size, sha256=sha256.hexdigest(), git_blob_sha1=blob.hexdigest())
