"""Zoo model: MobileFaceNet (Chen et al. 2018) at 64x64, width 0.5, with the four card heads.

``edge-sdk export --model tests/zoo/mobilefacenet.py:build`` (torch.nn only). Family traits kept: PReLU
activations everywhere, a 3x3 stem then a depthwise 3x3, MobileNetV2 bottlenecks (1x1 expand + PReLU, depthwise
3x3 + PReLU, linear 1x1 project, identity shortcut), a 1x1 conv to the embedding width, a *global depthwise
convolution* (GDC: a linear depthwise conv over the whole 4x4 map instead of average pooling) and a linear 1x1 conv
+ BatchNorm to a 128-d embedding, on which one Linear per head sits. Weights and card: :mod:`tests.zoo.training`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

try:
    from tests.zoo import training
except ImportError:  # loaded by path (--model tests/zoo/mobilefacenet.py:build): this folder is on sys.path
    import training  # type: ignore[no-redef]

NAME = "mobilefacenet"
# (expansion, out channels, repeats, first stride): MobileFaceNet's table 1 at half width and fewer repeats.
SETTINGS = ((2, 32, 2, 2), (4, 64, 1, 2), (2, 64, 3, 1), (4, 64, 1, 2), (2, 64, 1, 1))
EMBEDDING = 128


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, prelu: bool = True) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ per-channel PReLU); padding keeps the size unless the kernel is the map."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if prelu:
        layers.append(nn.PReLU(cout))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """1x1 expand + PReLU, depthwise 3x3 + PReLU, linear 1x1 project; identity shortcut when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.body = nn.Sequential(
            conv_bn(cin, hidden, 1),
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            conv_bn(hidden, cout, 1, prelu=False),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    """Stem, depthwise 3x3, bottlenecks, 1x1 to 256, GDC 4x4, linear 1x1 + BN to the embedding, four heads."""

    def __init__(self, stem: int = 32, last: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, stem, 3, 2), conv_bn(stem, stem, 3, groups=stem)]
        cin = stem
        for expansion, cout, repeats, stride in SETTINGS:
            for i in range(repeats):
                layers.append(Bottleneck(cin, cout, stride if i == 0 else 1, expansion))
                cin = cout
        layers.append(conv_bn(cin, last, 1))
        self.features = nn.Sequential(*layers)
        side = training.INPUT_SIZE // 16  # four stride-2 stages
        self.gdc = nn.Sequential(nn.Conv2d(last, last, side, groups=last, bias=False), nn.BatchNorm2d(last))
        self.embed = nn.Sequential(nn.Conv2d(last, EMBEDDING, 1, bias=False), nn.BatchNorm2d(EMBEDDING), nn.Flatten())
        self.heads = training.Heads(EMBEDDING)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.embed(self.gdc(self.features(x))))


def build(
    fit: bool = True, seed: int = training.SEED, recipe: training.Recipe = training.FULL
) -> tuple[nn.Module, dict[str, Any]]:
    """``(module, card)`` for ``--model tests/zoo/mobilefacenet.py:build``."""
    family = "MobileFaceNet (PReLU, depthwise bottlenecks, global depthwise conv head), width 0.5, 64x64"
    return training.built(NAME, MobileFaceNet, family, "tests/zoo/mobilefacenet.py", fit, seed, recipe)
