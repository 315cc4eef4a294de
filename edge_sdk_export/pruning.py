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

DEFAULT_STEPS = 2000  # ~3.5 min on a 2-core x86 box (~0.1 s per batch of 64)
DEFAULT_BATCH = 64
DEFAULT_LR = 1e-3  # starting from the teacher's own weights: 4e-3 first knocked the student far off it
KD_TEMPERATURE = 2.0
# Optionally round kept channel counts down to a multiple (``--round-to``): int8 kernels work in channel
# blocks. Measured on the pruned demo (2-core x86, 1 thread): ONNX Runtime's CPU int8 file ran 0.252 ms with
# counts 11/22/44/89 (no faster than unpruned INT8) and 0.185 ms with round_to 4 (8/20/44/88), but the extra
# channels removed cost fidelity: jetson expression agreement 0.990 -> 0.977, below its 0.98 gate. Off by default.
DEFAULT_ROUND_TO: int | None = None
HEAD_WEIGHT_REGRESSION = 4.0  # VA pre-activations: small values, so a larger weight than the other heads


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


def feature_layers(model: Any) -> list[Any]:
    """Linear layers of ``model.neck`` (if any): their outputs keep full width, so the student's neck features
    stay comparable to the teacher's (feature distillation) and the unpruned heads read what they were trained on."""
    import torch

    neck = getattr(model, "neck", None)
    return [] if neck is None else [m for m in neck.modules() if isinstance(m, torch.nn.Linear)]


def _importance() -> Any:
    """The channel-group importance that both pruning and sparse training rank by (L2 magnitude of the group)."""
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=2)


def _protected(model: Any) -> list[Any]:
    return head_layers(model) + feature_layers(model)


def prune_channels(
    model: Any,
    ratio: float,
    input_size: tuple[int, int],
    global_pruning: bool = False,
    round_to: int | None = DEFAULT_ROUND_TO,
) -> Any:
    """Remove ``ratio`` of the prunable channels (L2 magnitude, dependency-aware); returns the pruned copy.

    The heads and the neck's output width are protected; every backbone layer loses at least ``ratio`` of its
    channels, its kept count rounded down to a multiple of ``round_to`` (None: no rounding).
    """
    import torch
    import torch_pruning as tp

    pruned = copy.deepcopy(model).eval()
    example = torch.zeros(1, 3, *input_size)
    pruner = tp.pruner.MetaPruner(
        pruned,
        example,
        importance=_importance(),
        pruning_ratio=ratio,
        global_pruning=global_pruning,
        ignored_layers=_protected(pruned),
        round_to=round_to,
    )
    pruner.step()
    return pruned


class GroupSparsity:
    """Sparse training for a prune-friendly model: DepGraph's group regulariser (CVPR 2023, torch-pruning's
    ``GroupNormPruner.regularize``) applied as a decoupled decay.

    Call :meth:`apply` after ``optimizer.step()``. Each prunable channel group (the weights, BatchNorm scale
    and shift a removal would delete together) shrinks by ``lr * reg * gamma``, gamma running from 1 for
    the strongest group of a layer to 16 for its weakest. The weak groups fade towards zero, so
    :func:`prune_channels` later removes channels the network has learnt to do without, and what pruning
    loses is small enough for distillation to recover. Same importance and protected layers as
    :func:`prune_channels`.

    Decoupled, like AdamW's weight decay, because added to the gradient Adam would rescale it: a branch
    whose loss gradient is still ~0 (zero-initialised residual branches early in training) then shrinks at
    the full learning rate whatever ``reg`` is, and training collapsed to chance at reg 1e-3 and 1e-2 alike.
    """

    def __init__(self, model: Any, input_size: tuple[int, int], reg: float) -> None:
        import torch
        import torch_pruning as tp

        self.model = model
        self.reg = reg
        self._pruner = tp.pruner.GroupNormPruner(
            model, torch.zeros(1, 3, *input_size), importance=_importance(), reg=reg, ignored_layers=_protected(model)
        )

    def apply(self, lr: float) -> None:
        import torch

        params = [p for p in self.model.parameters() if p.requires_grad]
        for p in params:
            p.grad = torch.zeros_like(p)
        self._pruner.regularize(self.model, bias=True)  # writes reg * gamma * weight into .grad
        with torch.no_grad():
            for p in params:
                p.sub_(lr * torch.nan_to_num(p.grad))  # nan: a layer whose groups are all equal (no ranking)
                p.grad = None


def count_ops(model: Any, input_size: tuple[int, int]) -> tuple[int, int]:
    """(MACs, parameters) of one batch-1 forward pass, as torch-pruning counts them."""
    import torch
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model.eval(), torch.zeros(1, 3, *input_size))
    return int(macs), int(params)


def _clamped_error(student: Any, teacher: Any, low: float, high: float) -> Any:
    """Student minus clamped teacher, ignoring errors that clamping hides (both below ``low`` or above ``high``)."""
    target = teacher.clamp(low, high)
    diff = student - target
    diff = diff.where(target > low, diff.clamp(min=0))
    return diff.where(target < high, diff.clamp(max=0))


def _head_loss(student: Any, teacher: Any, activation: str, clamp: tuple[float, float] | None) -> Any:
    """Knowledge-distillation loss of one head, chosen by the head's activation in the card.

    softmax: temperature-softened KL (x T^2) so the teacher's ranking of the runner-up classes is learnt too;
    sigmoid: BCE against the teacher's probabilities; clamp: squared error that ignores what clamping hides;
    tanh/none: squared error on the pre-activation outputs.
    """
    import torch.nn.functional as F

    if activation == "softmax":
        t = KD_TEMPERATURE
        soft = F.kl_div(F.log_softmax(student / t, -1), F.softmax(teacher / t, -1), reduction="batchmean")
        return soft * t * t
    if activation == "sigmoid":
        return F.binary_cross_entropy_with_logits(student, teacher.sigmoid())
    if activation == "clamp" and clamp is not None:
        return _clamped_error(student, teacher, *clamp).square().mean()
    return HEAD_WEIGHT_REGRESSION * F.mse_loss(student, teacher)


def _augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label-free augmentation of an NCHW batch (any float dtype): horizontal flips and small brightness/contrast
    changes; returns a new float32 batch."""
    flip = rng.random(len(batch)) < 0.5
    out = batch.astype(np.float32)
    out[flip] = out[flip][..., ::-1]
    gain = rng.uniform(0.85, 1.15, (len(batch), 1, 1, 1)).astype(np.float32)
    bias = rng.uniform(-0.1, 0.1, (len(batch), 1, 1, 1)).astype(np.float32)
    return out * gain + bias


def _forward(model: Any, x: Any) -> tuple[Any, tuple[Any, ...]]:
    """(neck features or None, head outputs): features exist for networks with backbone/pool/neck/head_layers."""
    from edge_sdk_export.network import HEAD_NAMES

    parts = ("backbone", "pool", "neck", "head_layers")
    if not all(hasattr(model, p) for p in parts) or set(model.head_layers) != set(HEAD_NAMES):
        return None, tuple(model(x))
    z = model.neck(model.pool(model.backbone(x)))
    return z, tuple(model.head_layers[name](z) for name in HEAD_NAMES)


def _no_dropout(model: Any) -> list[tuple[Any, float]]:
    """Switch dropout off (the teacher's soft targets already regularise); returns what to restore."""
    import torch

    saved = [(m, m.p) for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    for m, _ in saved:
        m.p = 0.0
    return saved


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
    """Train ``student`` to match ``teacher`` on the NCHW batch ``data`` (knowledge distillation, no labels).

    Loss = per-head KD loss (``activations``: one ``(activation, clamp)`` per model output, from the card;
    without it MSE on raw outputs) + MSE between the neck features of student and teacher. One-cycle LR.
    Deterministic for a given seed: fixed sample order and augmentation, deterministic torch kernels.
    """
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    torch.manual_seed(seed)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(seed)
    teacher = teacher.eval()
    # The student stays in eval mode: BatchNorm normalises with its running statistics, exactly as the teacher
    # and the exported file do, and only its affine parameters learn. In train mode (batch statistics) the
    # student computes a different function from the one it ships, and distillation stalls at a floor:
    # distilling an unpruned copy of the demo into itself fell from identical to expression agreement 0.96 /
    # PSPI MAE 0.17 (train mode, lr 4e-3), but stayed at 1.00 / 0.016 (eval mode, lr 1e-3; 500 steps each).
    student.eval()
    dropout = _no_dropout(student)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    # One-cycle: 10 % warm-up then cosine decay. Very short runs (tests) only see the start of a 20-step cycle.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(20, steps), pct_start=0.1)
    losses: list[float] = []
    try:
        for _ in tqdm(range(steps), desc="distillation", disable=not progress, leave=False, dynamic_ncols=True):
            idx = rng.choice(len(data), size=min(batch, len(data)), replace=False)
            x = torch.from_numpy(np.ascontiguousarray(_augment(data[idx], rng)))
            with torch.no_grad():
                t_features, targets = _forward(teacher, x)
            s_features, outputs = _forward(student, x)
            kinds = activations or [("none", None)] * len(outputs)
            loss = sum(_head_loss(o, t, act, clamp) for o, t, (act, clamp) in zip(outputs, targets, kinds, strict=True))
            if s_features is not None:
                loss = loss + F.mse_loss(s_features, t_features)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
    finally:
        torch.use_deterministic_algorithms(deterministic)
        for m, p in dropout:
            m.p = p
    student.eval()
    head = max(1, steps // 10)
    return {
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "schedule": "one-cycle",
        "kd_temperature": KD_TEMPERATURE,
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
    round_to: int | None = DEFAULT_ROUND_TO,
) -> PruneResult:
    """Prune ``ratio`` of the channels of ``model`` and recover by self-distillation on ``data`` (NCHW float32)."""
    import torch

    size = (int(data.shape[2]), int(data.shape[3]))
    teacher = copy.deepcopy(model).eval()
    macs_before, params_before = count_ops(teacher, size)
    torch.manual_seed(seed)
    student = prune_channels(model, ratio, size, global_pruning, round_to)
    macs_after, params_after = count_ops(student, size)
    report = distill(student, teacher, data, steps=steps, lr=lr, seed=seed, progress=progress, activations=activations)
    report["global_pruning"] = global_pruning
    report["round_to"] = round_to
    return PruneResult(student, params_before, params_after, macs_before, macs_after, report)
