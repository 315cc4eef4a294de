"""Structured pruning of the reference network with torch-pruning, and label-free recovery by self-distillation.

Channels are removed for real (the pruned model is a smaller dense network: fewer parameters and MACs, no
masks). The head layers are never pruned: every head keeps its outputs. Recovery trains the pruned student to
reproduce the unpruned teacher's raw head outputs on unlabelled face crops, so a user's own unlabelled footage
is all it needs. Everything is seeded and runs on the CPU in a fixed number of steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_STEPS = 300
DEFAULT_BATCH = 32
DEFAULT_LR = 3e-3


@dataclass(frozen=True)
class PruneResult:
    """The pruned (and recovered) model plus what pruning and recovery did."""

    model: Any  # torch.nn.Module
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    distill: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {
            "params_before": self.params_before,
            "params_after": self.params_after,
            "params_ratio": round(self.params_after / self.params_before, 4),
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "macs_ratio": round(self.macs_after / self.macs_before, 4),
            "distillation": self.distill,
        }


def head_layers(model: Any) -> list[Any]:
    """The layers that produce head outputs (kept intact): ``model.head_layers`` or the last Linear layers."""
    import torch

    heads = getattr(model, "head_layers", None)
    if heads is not None:
        return list(heads.values()) if isinstance(heads, torch.nn.ModuleDict) else list(heads)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return linears[-1:]


def prune_channels(model: Any, ratio: float, input_size: tuple[int, int], global_pruning: bool = False) -> Any:
    """Remove ``ratio`` of the prunable channels (L2 magnitude, dependency-aware); returns the pruned copy."""
    import torch
    import torch_pruning as tp

    pruned = copy.deepcopy(model).eval()
    example = torch.zeros(1, 3, *input_size)
    pruner = tp.pruner.MetaPruner(
        pruned,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=ratio,
        global_pruning=global_pruning,
        ignored_layers=head_layers(pruned),
    )
    pruner.step()
    return pruned


def count_ops(model: Any, input_size: tuple[int, int]) -> tuple[int, int]:
    """(MACs, parameters) of one batch-1 forward pass, as torch-pruning counts them."""
    import torch
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model.eval(), torch.zeros(1, 3, *input_size))
    return int(macs), int(params)


def _head_loss(student: Any, teacher: Any, activation: str, clamp: tuple[float, float] | None) -> Any:
    """Distillation loss of one head, on what the runtime reports (post-activation), not raw logits.

    Matching raw logits spends capacity on magnitudes nobody sees (an AU logit of 9 vs 12, an intensity of
    7 clamped to 5); the fidelity gates compare post-processed outputs, so the loss does too.
    """
    import torch.nn.functional as F

    if activation == "softmax":
        return F.kl_div(F.log_softmax(student, -1), F.softmax(teacher, -1), reduction="batchmean")
    if activation == "sigmoid":
        return F.binary_cross_entropy_with_logits(student, torch_sigmoid(teacher))
    if activation == "clamp" and clamp is not None:
        return F.mse_loss(student.clamp(*clamp), teacher.clamp(*clamp))
    if activation == "tanh":
        return F.mse_loss(student.tanh(), teacher.tanh())
    return F.mse_loss(student, teacher)


def torch_sigmoid(x: Any) -> Any:
    return x.sigmoid()


def _augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label-free augmentation of an NCHW batch: horizontal flips and small brightness/contrast changes."""
    flip = rng.random(len(batch)) < 0.5
    out = batch.copy()
    out[flip] = out[flip][..., ::-1]
    gain = rng.uniform(0.85, 1.15, (len(batch), 1, 1, 1)).astype(np.float32)
    bias = rng.uniform(-0.1, 0.1, (len(batch), 1, 1, 1)).astype(np.float32)
    return out * gain + bias


def distill(
    student: Any,
    teacher: Any,
    data: np.ndarray,
    steps: int = DEFAULT_STEPS,
    batch: int = DEFAULT_BATCH,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    progress: bool = True,
    activations: list[tuple[str, tuple[float, float] | None]] | None = None,
) -> dict[str, Any]:
    """Train ``student`` to match ``teacher`` on the NCHW batch ``data``.

    ``activations`` (one ``(activation, clamp)`` per model output, from the card) selects a loss per head on
    post-activation outputs; without it every head uses MSE on raw outputs.

    Deterministic for a given seed: fixed sample order and augmentation, deterministic torch kernels.
    """
    import torch
    from tqdm import tqdm

    torch.manual_seed(seed)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(seed)
    teacher = teacher.eval()
    student.train()
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    losses: list[float] = []
    try:
        for _ in tqdm(range(steps), desc="distillation", disable=not progress, leave=False, dynamic_ncols=True):
            idx = rng.choice(len(data), size=min(batch, len(data)), replace=False)
            x = torch.from_numpy(np.ascontiguousarray(_augment(data[idx], rng)))
            with torch.no_grad():
                targets = teacher(x)
            outputs = student(x)
            kinds = activations or [("none", None)] * len(outputs)
            loss = sum(_head_loss(o, t, act, clamp) for o, t, (act, clamp) in zip(outputs, targets, kinds, strict=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
    finally:
        torch.use_deterministic_algorithms(deterministic)
    student.eval()
    head = max(1, steps // 10)
    return {
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "seed": seed,
        "samples": len(data),
        "loss_first": round(float(np.mean(losses[:head])), 5) if losses else None,
        "loss_last": round(float(np.mean(losses[-head:])), 5) if losses else None,
    }


def prune_and_recover(
    model: Any,
    ratio: float,
    data: np.ndarray,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    global_pruning: bool = False,
    progress: bool = True,
    lr: float = DEFAULT_LR,
    activations: list[tuple[str, tuple[float, float] | None]] | None = None,
) -> PruneResult:
    """Prune ``ratio`` of the channels of ``model`` and recover by self-distillation on ``data`` (NCHW float32)."""
    import torch

    size = (int(data.shape[2]), int(data.shape[3]))
    teacher = copy.deepcopy(model).eval()
    macs_before, params_before = count_ops(teacher, size)
    torch.manual_seed(seed)
    student = prune_channels(model, ratio, size, global_pruning)
    macs_after, params_after = count_ops(student, size)
    report = distill(student, teacher, data, steps=steps, lr=lr, seed=seed, progress=progress, activations=activations)
    report["global_pruning"] = global_pruning
    return PruneResult(student, params_before, params_after, macs_before, macs_after, report)
