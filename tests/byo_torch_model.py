"""A "bring your own" torch face model for the export tests: MobileNetV3-small style, two heads, not the reference net.

``build()`` returns ``(module, card_dict)`` as ``edge-sdk export --model tests/byo_torch_model.py:build`` expects.
The module takes the preprocessed 64x64 RGB batch (NCHW, mean/std 0.5) and returns a dict keyed by the card's
output names: ``expression`` (8 logits, softmax in the card) and ``valence_arousal`` (2 values, tanh in the card).

Architecture (torch.nn only, no torchvision): a 3x3 stride-2 stem, MobileNetV3-small's eleven inverted residual
blocks (1x1 expand, depthwise 3x3/5x5, squeeze-excitation, hardswish/ReLU, 1x1 linear project, identity shortcut
where shapes match), a 1x1 conv to 576 channels, global average pooling, a Linear-hardswish neck and one Linear per
head. Weights: seeded random initialisation, then (``fit=True``, the default) a short fit to the synthetic demo's
expression and valence/arousal outputs on 256 rendered faces (80 steps, ~10 s on one core; cached per process), so
its outputs vary with the face and pruning/distillation have something to lose and recover (untrained, its heads
output ~0 and distillation has nothing to do). Held-out agreement with the demo is low (~0.2 on expression, chance
0.125): it is a test fixture, its outputs mean nothing on real faces.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_sdk.contract.card import CONTRACT_VERSION, EXPRESSION_LABELS

INPUT_SIZE = 64
SEED = 1234
FIT_STEPS = 80
FIT_FACES = 256
FIT_BATCH = 32
FIT_LR = 3e-3
OUTPUTS = ("expression", "valence_arousal")

# (kernel, expanded, out, squeeze-excite, activation, stride): MobileNetV3-small (Howard et al. 2019, table 2).
SETTINGS: tuple[tuple[int, int, int, bool, str, int], ...] = (
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
)


def _divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to a multiple of ``divisor`` (never below 90 % of it), as MobileNets size layers."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


def _conv_bn_act(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = "HS"
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(nn.Hardswish() if act == "HS" else nn.ReLU())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: pool, 1x1 reduce, ReLU, 1x1 expand, hardsigmoid, scale the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = _divisible(channels / 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV3 block: 1x1 expand (unless expanded == in), depthwise kxk, optional SE, 1x1 linear project."""

    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, act: str, stride: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(_conv_bn_act(cin, expanded, 1, act=act))
        layers.append(_conv_bn_act(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcite(expanded))
        layers.append(_conv_bn_act(expanded, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class TinyAffectNet(nn.Module):
    """MobileNetV3-small-style backbone with an expression head and a valence/arousal head (dict output)."""

    def __init__(self, last: int = 576, neck: int = 1024) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_act(3, 16, 3, 2)]
        cin = 16
        for kernel, expanded, cout, se, act, stride in SETTINGS:
            layers.append(InvertedResidual(cin, kernel, expanded, cout, se, act, stride))
            cin = cout
        layers.append(_conv_bn_act(cin, last, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.neck = nn.Sequential(nn.Flatten(), nn.Linear(last, neck), nn.Hardswish(), nn.Dropout(0.2))
        self.expression = nn.Linear(neck, len(EXPRESSION_LABELS))
        self.affect = nn.Linear(neck, 2)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.neck(self.pool(self.features(x)))
        return {"expression": self.expression(z), "valence_arousal": self.affect(z)}


def card_dict(description: str) -> dict[str, Any]:
    """The model's card (contract 1.1): 64x64 RGB NCHW, mean/std 0.5, ArcFace-aligned crop, two heads."""
    return {
        "contract_version": CONTRACT_VERSION,
        "name": "byo-mobilenetv3-small",
        "description": description,
        "input": {
            "name": "image",
            "size": [INPUT_SIZE, INPUT_SIZE],
            "layout": "NCHW",
            "channels": 3,
            "color_order": "RGB",
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "dtype": "float32",
            "crop": {"method": "aligned", "template": "arcface", "scale": 1.0},
        },
        "heads": [
            {
                "name": "expression",
                "kind": "expression",
                "labels": list(EXPRESSION_LABELS),
                "activation": "softmax",
                "output": "expression",
            },
            {
                "name": "valence_arousal",
                "kind": "valence_arousal",
                "labels": ["valence", "arousal"],
                "activation": "tanh",
                "output": "valence_arousal",
            },
        ],
        "provenance": {
            "source": f"tests/byo_torch_model.py (random init, seed {SEED})",
            "synthetic_demo": False,
            "license": "Apache-2.0",
        },
    }


def _demo_targets(faces: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(64x64 preprocessed faces, demo expression logits, demo valence/arousal pre-tanh) on rendered faces."""
    import cv2

    from edge_sdk.contract.processing import preprocess
    from edge_sdk.model import load_card
    from edge_sdk.model.face_model import resolve_model
    from edge_sdk_export.calibration import synthetic_crops
    from edge_sdk_export.demo import load_demo_torch_model
    from edge_sdk_export.network import HEAD_NAMES

    demo_card = load_card(resolve_model("demo"))
    crops = list(synthetic_crops(demo_card.input.height, demo_card.input.width, faces, seed).crops)
    demo = load_demo_torch_model()
    with torch.no_grad():
        out = dict(zip(HEAD_NAMES, demo(torch.from_numpy(preprocess(crops, demo_card.input))), strict=True))
    small = card_dict("")["input"]
    mean, std = np.float32(small["mean"][0]), np.float32(small["std"][0])
    x = np.stack([cv2.resize(c, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA) for c in crops])
    x = ((x[..., ::-1].astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)  # BGR -> RGB, NCHW
    return np.ascontiguousarray(x), out["expression"].numpy(), out["valence_arousal"].numpy()


@functools.cache
def _fitted_state(seed: int, steps: int) -> dict[str, torch.Tensor]:
    """State dict of the seeded network after ``steps`` of fitting to the demo (cached per process)."""
    torch.manual_seed(seed)
    model = TinyAffectNet()
    if steps <= 0:
        return model.state_dict()
    x, expression, affect = _demo_targets(FIT_FACES, seed)
    xt, et, at = torch.from_numpy(x), torch.from_numpy(expression), torch.from_numpy(affect)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=FIT_LR, weight_decay=1e-4)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: on a busy 2-core box two OpenMP threads ran ~8x slower than one
    try:
        for _ in range(steps):
            idx = torch.from_numpy(rng.choice(len(x), FIT_BATCH, replace=False))
            out = model(xt[idx])
            loss = nn.functional.kl_div(
                out["expression"].log_softmax(-1), et[idx].softmax(-1), reduction="batchmean"
            ) + nn.functional.mse_loss(out["valence_arousal"], at[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval().state_dict()


def build(fit: bool = True, seed: int = SEED) -> tuple[nn.Module, dict[str, Any]]:
    """``(module, card)`` for ``--model tests/byo_torch_model.py:build``: the eval-mode network and its card dict."""
    steps = FIT_STEPS if fit else 0
    model = TinyAffectNet()
    model.load_state_dict(copy.deepcopy(_fitted_state(seed, steps)))
    how = f"then {steps} steps fitted to the synthetic demo's outputs on rendered faces" if fit else "not trained"
    description = f"Test fixture: MobileNetV3-small-style network, weights random (seed {seed}), {how}."
    description += " Meaningless on real faces."
    card = card_dict(description)
    card["provenance"]["source"] = f"tests/byo_torch_model.py (random init, seed {seed})"
    return model.eval(), card
