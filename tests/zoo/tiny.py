"""The zoo models after a few seconds of their recipe (:data:`TINY`), for ``--model tests/zoo/tiny.py:NAME``.

tests/test_zoo_export.py exports these through the CLI on a fresh checkout: trained weights with the zoo's group
sparsity, non-degenerate, but far too briefly trained for the default fidelity gates to mean anything (the real
gate results, 1500-step weights, are benchmarks/arch_zoo.py's)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from torch import nn

try:
    from tests.zoo import efficientnet_lite as _efficientnet_lite
    from tests.zoo import mobilefacenet as _mobilefacenet
    from tests.zoo import training
except ImportError:  # loaded by path (--model tests/zoo/tiny.py:NAME) from outside the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.zoo import efficientnet_lite as _efficientnet_lite
    from tests.zoo import mobilefacenet as _mobilefacenet
    from tests.zoo import training

TINY = training.Recipe(steps=12, faces=128, batch=16, warmup=3)


def mobilefacenet() -> tuple[nn.Module, dict[str, Any]]:
    """MobileFaceNet after :data:`TINY` (12 steps)."""
    return _mobilefacenet.build(recipe=TINY)


def efficientnet_lite() -> tuple[nn.Module, dict[str, Any]]:
    """EfficientNet-lite after :data:`TINY` (12 steps)."""
    return _efficientnet_lite.build(recipe=TINY)
