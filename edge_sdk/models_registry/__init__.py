"""Public models edge-sdk can pull, pinned by hash: the registry, the cache and the pull.

``find_pulled_model("yunet")`` is how the runtime finds a pulled model by name (``--model NAME``).
"""

from edge_sdk.models_registry.cache import (
    Manifest,
    cache_dir,
    find_pulled_model,
    model_path,
    models_dir,
    require_pulled_model,
    verify_pulled,
)
from edge_sdk.models_registry.entries import REGISTRY, RegistryEntry, get_entry
from edge_sdk.models_registry.hashes import FileDigest, digest_file, git_blob_sha1_file
from edge_sdk.models_registry.pull import PullResult, pull

__all__ = [
    "REGISTRY",
    "FileDigest",
    "Manifest",
    "PullResult",
    "RegistryEntry",
    "cache_dir",
    "digest_file",
    "find_pulled_model",
    "get_entry",
    "git_blob_sha1_file",
    "model_path",
    "models_dir",
    "pull",
    "require_pulled_model",
    "verify_pulled",
]
