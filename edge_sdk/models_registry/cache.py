"""Where pulled models live and how a pulled copy is re-verified.

Layout: ``<cache>/models/<name>/<filename>`` plus ``pulled.json`` (the manifest: hashes, source,
time) and, for face models, the sidecar card ``<stem>.card.json``. ``<cache>`` is
``$EDGE_SDK_HOME``, else ``$XDG_CACHE_HOME/edge-sdk``, else ``~/.cache/edge-sdk``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from edge_sdk.errors import ArtifactError
from edge_sdk.models_registry.entries import REGISTRY, RegistryEntry
from edge_sdk.models_registry.hashes import digest_file

MANIFEST_NAME = "pulled.json"


def cache_dir() -> Path:
    """The edge-sdk cache root (not created here)."""
    if os.environ.get("EDGE_SDK_HOME"):
        return Path(os.environ["EDGE_SDK_HOME"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "edge-sdk"
    return Path.home() / ".cache" / "edge-sdk"


def models_dir() -> Path:
    """Folder holding one sub-folder per pulled model."""
    return cache_dir() / "models"


def model_dir(entry: RegistryEntry) -> Path:
    return models_dir() / entry.name


def model_path(entry: RegistryEntry) -> Path:
    """Where ``entry``'s file lives once pulled."""
    return model_dir(entry) / entry.filename


@dataclass(frozen=True)
class Manifest:
    """What a pull recorded about the file it installed."""

    name: str
    filename: str
    size: int
    sha256: str
    git_blob_sha1: str
    source: str  # URL or local path it came from
    verified_by: str  # "sha256" or "git blob"
    pulled_at: str  # ISO 8601 UTC

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{path}: unreadable pull manifest ({exc}); pull the model again") from None

    def write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def verify_pulled(entry: RegistryEntry) -> Manifest:
    """Re-hash a pulled file against the registry pin and its manifest; raise ArtifactError if it changed."""
    path = model_path(entry)
    manifest_path = model_dir(entry) / MANIFEST_NAME
    if not path.is_file() or not manifest_path.is_file():
        raise ArtifactError(
            f"model '{entry.name}' is not pulled ({path} missing); run: edge-sdk models pull {entry.name}"
        )
    manifest = Manifest.read(manifest_path)
    digest = digest_file(path)
    expected = entry.sha256 or manifest.sha256
    if digest.sha256 != expected:
        raise ArtifactError(
            f"{path}: sha256 {digest.sha256} does not match the pinned {expected}; the file changed since it was "
            f"pulled. Delete {model_dir(entry)} and run: edge-sdk models pull {entry.name}"
        )
    if entry.git_blob_sha1 and digest.git_blob_sha1 != entry.git_blob_sha1:
        raise ArtifactError(f"{path}: git blob {digest.git_blob_sha1} is not the registry's {entry.git_blob_sha1}")
    return manifest


def find_pulled_model(name: str) -> Path | None:
    """Path of the pulled model called ``name`` (hash re-verified), or None if ``name`` is not a pulled model.

    Raises ArtifactError when the model was pulled but its file no longer matches its pinned hash.
    """
    entry = REGISTRY.get(name)
    if entry is None or not model_path(entry).is_file():
        return None
    verify_pulled(entry)
    return model_path(entry)


def require_pulled_model(name: str) -> Path:
    """Like :func:`find_pulled_model` but raises a clear error naming the pull command when absent."""
    from edge_sdk.models_registry.entries import get_entry

    entry = get_entry(name)
    verify_pulled(entry)
    return model_path(entry)
