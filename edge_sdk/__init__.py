"""edge-sdk: on-device facial behaviour analysis (AUs, expression, valence/arousal, PSPI).

Data path: ``capture`` -> ``face`` -> ``model`` -> ``backend`` -> ``pipeline`` -> ``store``.
This package is the device runtime: it needs numpy, opencv-python-headless and one inference
runtime, and never imports torch, NNCF, TensorFlow or the workstation ``export`` package.

The names below are loaded on first use, so that ``import edge_sdk.store`` (a log writer process)
does not pay for OpenCV and the inference runtimes::

    from edge_sdk import RunConfig, build_pipeline
"""

from __future__ import annotations

import importlib
from typing import Any

from edge_sdk.version import __version__

# public name -> module that defines it
_PUBLIC = {
    "build_pipeline": "edge_sdk.assembly",
    "RunConfig": "edge_sdk.pipeline.config",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'edge_sdk' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
