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


class MissingExtraError(EdgeSdkError):
    """A feature needs a package that the base install leaves out; the message names the extra to install."""


#: The extra that installs each optional package (by its import name), as pyproject.toml declares them.
EXTRA_OF_PACKAGE: dict[str, str] = {
    "matplotlib": "data",
    "pandas": "data",
    "pyarrow": "data",
    "openvino": "openvino",
    "ai_edge_litert": "litert",
    "paho": "forward",
    "starlette": "station",
    "uvicorn": "station",
    "ray": "ray",
    "torch": "export",
    "onnx": "export",
    "onnxscript": "export",
    "nncf": "export",
    "tensorflow": "export",
    "onnx2tf": "export",
    "torch_pruning": "export",
}


def install_hint(package: str, extra: str | None = None) -> str:
    """``pip install 'edge-sdk[EXTRA]'`` for a package an extra provides, else ``pip install PACKAGE``."""
    extra = extra or EXTRA_OF_PACKAGE.get(package.split(".")[0])
    return f"pip install 'edge-sdk[{extra}]'" if extra else f"pip install {package.split('.')[0]}"


def missing_extra(package: str, needed_for: str, extra: str | None = None) -> MissingExtraError:
    """The one-line error for a missing optional package, e.g.
    ``the timeline plot (--plot) needs the 'matplotlib' package, which is not installed; install it with:
    pip install 'edge-sdk[data]'``. ``extra`` defaults to :data:`EXTRA_OF_PACKAGE`'s entry. Raise it
    ``from None`` inside the ``except ImportError`` of a lazy import; the CLI prints it with exit code 2."""
    top = package.split(".")[0]
    return MissingExtraError(
        f"{needed_for} needs the '{top}' package, which is not installed; install it with: "
        f"{install_hint(package, extra)}"
    )
