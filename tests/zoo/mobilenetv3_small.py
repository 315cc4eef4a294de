"""Zoo model: MobileNetV3-small (Howard et al. 2019) at 64x64 with the four card heads.

``edge-sdk export --model tests/zoo/mobilenetv3_small.py:build`` (torch.nn only). The blocks of the two-head
fixture tests/byo_torch_model.py (hardswish, squeeze-excitation with hardsigmoid, depthwise 3x3/5x5, MobileNetV3-
small's eleven inverted residuals), ending in a 1x1 conv to 576 channels, average pooling, a Linear-hardswish neck
and one Linear per head. Weights and card: :mod:`tests.zoo.training`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

try:
    from tests.zoo import training
except ImportError:  # loaded by path (--model tests/zoo/mobilenetv3_small.py:build): this folder is on sys.path
    import training  # type: ignore[no-redef]

try:
    from tests.byo_torch_model import SETTINGS, InvertedResidual, _conv_bn_act
except ImportError:  # loaded by path from outside the repository root
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.byo_torch_model import SETTINGS, InvertedResidual, _conv_bn_act

NAME = "mobilenetv3_small"


class MobileNetV3Small(nn.Module):
    """Stem, MobileNetV3-small's inverted residuals (SE, hardswish), 1x1 to 576, pooling, neck, four heads."""

    def __init__(self, last: int = 576, neck: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_act(3, 16, 3, 2)]
        cin = 16
        for kernel, expanded, cout, se, act, stride in SETTINGS:
            layers.append(InvertedResidual(cin, kernel, expanded, cout, se, act, stride))
            cin = cout
        layers.append(_conv_bn_act(cin, last, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.neck = nn.Sequential(nn.Linear(last, neck), nn.Hardswish())
        self.heads = training.Heads(neck)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, InvertedResidual) and m.residual:  # residual branches start at zero
                nn.init.zeros_(m.body[-1][1].weight)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.neck(self.pool(self.features(x))))


def build(
    fit: bool = True, seed: int = training.SEED, recipe: training.Recipe = training.FULL
) -> tuple[nn.Module, dict[str, Any]]:
    """``(module, card)`` for ``--model tests/zoo/mobilenetv3_small.py:build``."""
    family = "MobileNetV3-small (hardswish, squeeze-excitation), 64x64"
    return training.built(NAME, MobileNetV3Small, family, "tests/zoo/mobilenetv3_small.py", fit, seed, recipe)
