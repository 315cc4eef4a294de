"""Zoo model: EfficientNet-lite0 style (Tan & Le 2019; the "lite" edge variant) at 64x64, width and depth 0.5.

``edge-sdk export --model tests/zoo/efficientnet_lite.py:build`` (torch.nn only). Family traits kept: MBConv
blocks (1x1 expand, depthwise 3x3 or 5x5, linear 1x1 project, identity shortcut) with ReLU6 and *no*
squeeze-excitation (lite drops SE and swish for int8-friendly ops), a 3x3 stride-2 stem, a 1x1 head conv, global
average pooling and one Linear per card head. Weights and card: :mod:`tests.zoo.training`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

try:
    from tests.zoo import training
except ImportError:  # loaded by path (--model tests/zoo/efficientnet_lite.py:build): this folder is on sys.path
    import training  # type: ignore[no-redef]

NAME = "efficientnet_lite"
# (expansion, kernel, first stride, out channels, repeats): EfficientNet-B0's stages at width 0.5, depth ~0.5,
# total stride 16 instead of 32 for the 64x64 input.
SETTINGS = (
    (1, 3, 1, 8, 1),
    (6, 3, 2, 16, 1),
    (6, 5, 2, 24, 2),
    (6, 3, 2, 40, 2),
    (6, 5, 1, 56, 2),
    (6, 5, 1, 96, 2),  # stride 1 (B0: 2): at 64x64 input the last map stays 4x4, not 2x2
    (6, 3, 1, 160, 1),
)


def conv_bn_relu6(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """EfficientNet-lite MBConv: 1x1 expand (unless expansion 1), depthwise kxk, linear 1x1 project; no SE."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = [conv_bn_relu6(cin, hidden, 1)] if expansion != 1 else []
        layers += [
            conv_bn_relu6(hidden, hidden, kernel, stride, groups=hidden),
            conv_bn_relu6(hidden, cout, 1, act=False),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """Stem 3x3/2, MBConv stages, 1x1 head conv, average pooling, dropout, four heads."""

    def __init__(self, stem: int = 16, last: int = 640) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu6(3, stem, 3, 2)]
        cin = stem
        for expansion, kernel, stride, cout, repeats in SETTINGS:
            for i in range(repeats):
                layers.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expansion))
                cin = cout
        layers.append(conv_bn_relu6(cin, last, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2))
        self.heads = training.Heads(last)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, MBConv) and m.residual:  # residual branches start at zero: the stack trains
                nn.init.zeros_(m.body[-1][1].weight)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.pool(self.features(x)))


def build(
    fit: bool = True, seed: int = training.SEED, recipe: training.Recipe = training.FULL
) -> tuple[nn.Module, dict[str, Any]]:
    """``(module, card)`` for ``--model tests/zoo/efficientnet_lite.py:build``."""
    family = "EfficientNet-lite0 style (MBConv, ReLU6, no SE), width/depth 0.5, 64x64"
    return training.built(NAME, EfficientNetLite, family, "tests/zoo/efficientnet_lite.py", fit, seed, recipe)
