"""The reference multitask face network (torch.nn only).

112x112 RGB in (NCHW, normalised with mean 0.5 / std 0.5 by the card), four heads out:
``au_occurrence`` (13 logits), ``au_intensity`` (13, clamped to 0-5 by the card), ``expression``
(8 logits) and ``valence_arousal`` (2, tanh by the card). Two backbones share the same neck and heads:

- ``"resnet"``: plain residual 3x3 Conv-BN-ReLU net (the default, see benchmarks/backbone_choice.md);
- ``"mobilenetv2"``: MobileNetV2-style inverted residuals.

Both are built only from Conv-BN-ReLU(6), identity additions, global average pooling and Linear
layers, so torch-pruning can trace and prune them and INT8 quantizers fuse them cleanly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from edge_sdk.contract.card import (
    AU_LABELS,
    EXPRESSION_LABELS,
    ExportInfo,
    HeadSpec,
    InputSpec,
    ModelCard,
    Provenance,
)

INPUT_SIZE = 112
INPUT_NAME = "image"
# Head name -> output width. Names are also the ONNX output tensor names.
HEAD_WIDTHS: dict[str, int] = {
    "au_occurrence": len(AU_LABELS),
    "au_intensity": len(AU_LABELS),
    "expression": len(EXPRESSION_LABELS),
    "valence_arousal": 2,
}
HEAD_NAMES = tuple(HEAD_WIDTHS)
DEFAULT_BACKBONE = "resnet"
PARAM_BUDGET = 1_500_000
MAC_BUDGET = 150_000_000


def conv_bn_relu(
    cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, relu6: bool = False
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU/ReLU6: the one block both backbones are made of."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True) if relu6 else nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity shortcut (channels and resolution unchanged)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(channels, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn2(self.conv2(self.conv1(x))) + x)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear project; identity when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_relu(cin, hidden, 1, relu6=True))
        layers += [
            conv_bn_relu(hidden, hidden, 3, stride, groups=hidden, relu6=True),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.body = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.use_residual else y


def resnet_backbone(
    widths: tuple[int, ...] = (16, 32, 64, 128), blocks: tuple[int, ...] = (0, 1, 1, 1)
) -> tuple[nn.Module, int]:
    """Plain residual net: each stage = stride-2 3x3 Conv-BN-ReLU then ``blocks`` BasicBlocks."""
    layers: list[nn.Module] = []
    cin = 3
    for width, n in zip(widths, blocks, strict=True):
        layers.append(conv_bn_relu(cin, width, 3, 2))
        layers += [BasicBlock(width) for _ in range(n)]
        cin = width
    return nn.Sequential(*layers), cin


# (expand, channels, repeats, first stride), MobileNetV2 at width 1.0 without its last stage.
MOBILENETV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 2, 2))


def mobilenetv2_backbone(settings=MOBILENETV2_SETTINGS, stem: int = 32, last: int = 256) -> tuple[nn.Module, int]:  # noqa: ANN001
    """MobileNetV2-style inverted residual net ending in a 1x1 Conv-BN-ReLU6 to ``last`` channels."""
    layers: list[nn.Module] = [conv_bn_relu(3, stem, 3, 2, relu6=True)]
    cin = stem
    for expand, cout, repeats, stride in settings:
        for i in range(repeats):
            layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
            cin = cout
    layers.append(conv_bn_relu(cin, last, 1, relu6=True))
    return nn.Sequential(*layers), last


BACKBONES: dict[str, Callable[[], tuple[nn.Module, int]]] = {
    "resnet": resnet_backbone,
    "mobilenetv2": mobilenetv2_backbone,
}


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to rebuild the network (stored next to checkpoints)."""

    backbone: str = DEFAULT_BACKBONE
    neck: int = 256
    dropout: float = 0.1
    input_size: int = INPUT_SIZE

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class FaceNet(nn.Module):
    """Backbone -> global average pool -> Linear-ReLU neck -> one Linear per head.

    ``forward`` returns raw head tensors as a tuple in :data:`HEAD_NAMES` order (what ONNX export
    names them); :meth:`heads` returns them as a dict.
    """

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetworkConfig()
        if self.config.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.config.backbone!r}; expected one of {', '.join(BACKBONES)}")
        self.backbone, features = BACKBONES[self.config.backbone]()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.neck = nn.Sequential(
            nn.Flatten(), nn.Linear(features, self.config.neck), nn.ReLU(inplace=True), nn.Dropout(self.config.dropout)
        )
        self.head_layers = nn.ModuleDict({name: nn.Linear(self.config.neck, w) for name, w in HEAD_WIDTHS.items()})
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for block in self.modules():  # residual branches start near zero: stabler early training
            if isinstance(block, BasicBlock):
                nn.init.zeros_(block.bn2.weight)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z = self.neck(self.pool(self.backbone(x)))
        return tuple(self.head_layers[name](z) for name in HEAD_NAMES)

    def heads(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(HEAD_NAMES, self(x), strict=True))


def build_network(backbone: str = DEFAULT_BACKBONE, **config: object) -> FaceNet:
    """The reference network with ``backbone`` ("resnet" or "mobilenetv2")."""
    return FaceNet(NetworkConfig(backbone=backbone, **config))  # type: ignore[arg-type]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def reference_card(
    provenance: Provenance, export: ExportInfo | None = None, name: str = "edge-sdk-reference", description: str = ""
) -> ModelCard:
    """The card of the reference network: input normalisation, head kinds, labels and activations."""
    heads = (
        HeadSpec("au_occurrence", "au_occurrence", AU_LABELS, "sigmoid", output="au_occurrence"),
        HeadSpec("au_intensity", "au_intensity", AU_LABELS, "clamp", output="au_intensity", clamp=(0.0, 5.0)),
        HeadSpec("expression", "expression", EXPRESSION_LABELS, "softmax", output="expression"),
        HeadSpec("valence_arousal", "valence_arousal", ("valence", "arousal"), "tanh", output="valence_arousal"),
    )
    spec = InputSpec(INPUT_NAME, INPUT_SIZE, INPUT_SIZE, "NCHW", "RGB", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return ModelCard(name, spec, heads, provenance, export or ExportInfo(), description)
