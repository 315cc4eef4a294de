"""Error types. Every user-facing failure is one of these, with one clear message.

The CLI catches :class:`EdgeSdkError` and prints ``error: <message>`` with exit code 2,
so a bad file or field never surfaces as a bare traceback.
"""

from __future__ import annotations


class EdgeSdkError(Exception):
    """Base class for every error the SDK reports to a user."""


class ContractError(EdgeSdkError):
    """A model card is missing, malformed, or does not match its artifact."""

    def __init__(self, field: str, problem: str, source: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}model card field '{field}': {problem}")


class ArtifactError(EdgeSdkError):
    """A model file cannot be read or is not what its name or card says."""


class InputError(EdgeSdkError):
    """Data handed to the SDK (an image, a batch, a config value) is not what was expected."""


class BackendUnavailableError(EdgeSdkError):
    """The inference runtime needed for an artifact is not installed on this device."""
