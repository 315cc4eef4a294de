"""Structured pruning of any torch face model with torch-pruning, and label-free recovery by self-distillation.

Channels are removed for real (the pruned model is a smaller dense network: fewer parameters and MACs, no
masks). :func:`prune_and_recover` works on any ``torch.nn.Module`` whose forward takes the preprocessed batch in
the card's layout and returns the card's output tensors (a tuple in ``card.output_tensors`` order, a dict keyed by
those names, or a single tensor for a one-output card). The layers that produce each output are found by tracing
the module's autograd graph back from its outputs (:func:`output_layers`), never by attribute names, and are kept
whole, so every head keeps its outputs. Recovery trains the pruned student to reproduce the unpruned teacher's raw
head outputs on unlabelled face crops (per head, by the card's activation and clamp), so a user's own unlabelled
footage is all it needs. Everything is seeded and runs on the CPU in a fixed number of steps.

The reference network (:class:`edge_sdk_export.network.FaceNet`) gets two extras, found by its structure wherever
it sits in the module: its neck keeps full width and the neck features are distilled too (see :func:`_reference`).
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_sdk.backend.base import to_layout as runtime_layout
from edge_sdk.errors import ArtifactError, InputError

if TYPE_CHECKING:
    import torch

    from edge_sdk.contract.card import ModelCard

log = logging.getLogger(__name__)

DEFAULT_STEPS = 2000  # ~3.5 min on a 2-core x86 box (~0.1 s per batch of 64)
DEFAULT_BATCH = 64
# Starting from the teacher's own weights: 1e-3 (and 4e-3 before it) first knocked the pruned student far off
# them. Measured on the pruned MobileFaceNet of the zoo (2-core Xeon): at 1e-3 its validation score fell from
# 0.36 to -2.5 in 250 steps and was still below step 0's after 1000; at 1e-4 it passed every gate on the real
# held-out crops after 250 steps and reached AU F1 0.989 / VA CCC 0.9998 / PSPI MAE 0.027 after 750 (step 0:
# 0.943 / 0.964 / 0.102). The demo's pruned network lost 0.995 -> 0.839 agreement in 250 steps at 1e-3.
DEFAULT_LR = 1e-4
KD_TEMPERATURE = 2.0
# Optionally round kept channel counts down to a multiple (``--round-to``): int8 kernels work in channel
# blocks. Measured on the pruned demo (2-core x86, 1 thread): ONNX Runtime's CPU int8 file ran 0.252 ms with
# counts 11/22/44/89 (no faster than unpruned INT8) and 0.185 ms with round_to 4 (8/20/44/88), but the extra
# channels removed cost fidelity: jetson expression agreement 0.990 -> 0.977, below its 0.98 gate. Off by default.
DEFAULT_ROUND_TO: int | None = None
DEFAULT_CHECK_EVERY = 250  # distillation steps between two validation checks (when a validator is given)
# Checks in a row without a better score before distillation stops. Measured on the pruned demo (2-core Xeon):
# its sparsity-trained teacher prunes to 0.995 expression agreement with no distillation, the first 250
# steps (lr 1e-3) knocked it to 0.84, and 2000 steps climbed back only to 0.98: the best weights were step 0's.
DEFAULT_PATIENCE = 4
HEAD_WEIGHT_REGRESSION = 4.0  # VA pre-activations: small values, so a larger weight than the other heads
# Parts of the reference network (FaceNet) that pruning recognises by structure, wherever it sits in a module.
REFERENCE_PARTS = ("backbone", "pool", "neck", "head_layers")

Activations = list[tuple[str, tuple[float, float] | None]]
# Scores a student (in eval mode) on faces it is not trained on; higher is better. Called before the first step
# and every ``check_every`` steps; the best-scoring weights are the ones kept.
Validator = Callable[[Any], float]


@dataclass(frozen=True)
class PruneResult:
    """The pruned (and recovered) model plus what pruning and recovery did.

    ``model`` is normalised: ``forward(x)`` takes the batch in the card's layout and returns a tuple of tensors
    in ``card.output_tensors`` order (a module returning a dict or a single tensor comes back wrapped).
    """

    model: Any  # torch.nn.Module
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    distill: dict[str, Any]
    kept_whole: dict[str, list[str]] = field(default_factory=dict)  # output -> layers kept whole for it

    def summary(self) -> dict[str, Any]:
        return {
            "params_before": self.params_before,
            "params_after": self.params_after,
            "params_ratio": round(self.params_after / self.params_before, 4),
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "macs_ratio": round(self.macs_after / self.macs_before, 4),
            "distillation": self.distill,
            "kept_whole": self.kept_whole,
        }


@dataclass(frozen=True)
class HeadTarget:
    """What one distillation loss term compares: a slice of one model output, and how the card activates it."""

    name: str
    output: int  # index into the model's output tuple
    columns: tuple[int, int] | None  # [start, stop) of the output's last axis; None = all of it
    activation: str
    clamp: tuple[float, float] | None

    def select(self, outputs: Sequence[Any]) -> Any:
        tensor = outputs[self.output]
        return tensor if self.columns is None else tensor[..., self.columns[0] : self.columns[1]]


# ---- the module as the card sees it ------------------------------------------------------------------------------


@functools.cache
def _tuple_outputs_type() -> type:
    """The :class:`torch.nn.Module` wrapper behind :func:`tuple_outputs` (defined on first use: torch loads lazily)."""
    import torch

    class TupleOutputs(torch.nn.Module):
        """Returns the wrapped module's dict outputs (or its single tensor) as a tuple in ``names`` order."""

        def __init__(self, module: torch.nn.Module, names: Sequence[str]) -> None:
            super().__init__()
            self.module = module
            self.names = tuple(names)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.module(x)
            if isinstance(out, dict):
                return tuple(out[name] for name in self.names)
            if isinstance(out, torch.Tensor):
                return (out,)
            return tuple(out)

    return TupleOutputs


def tuple_outputs(module: Any, names: Sequence[str]) -> Any:
    """``module`` (returning a dict keyed by ``names``, a list or one tensor) wrapped to return a tuple in ``names``
    order, as pruning, distillation and ONNX export expect."""
    return _tuple_outputs_type()(module, names)


def _check_outputs(out: Any, names: Sequence[str] | None) -> str:
    """How ``out`` (one forward pass) holds the card's outputs: "tuple", "list", "dict" or "tensor"; raises
    ArtifactError naming what is missing or unexpected when it does not match the card."""
    import torch

    expected = ", ".join(names) if names else ""
    if isinstance(out, dict):
        if names is None:
            raise ArtifactError("torch module returns a dict: a card is needed to put its outputs in order")
        missing = [n for n in names if n not in out]
        extra = [str(k) for k in out if k not in names]
        if missing or extra:
            parts = ([f"missing {', '.join(map(repr, missing))}"] if missing else []) + (
                [f"unexpected {', '.join(map(repr, extra))}"] if extra else []
            )
            raise ArtifactError(
                f"torch module output does not match the card: its dict has {'; '.join(parts)} "
                f"(the card's heads read the outputs: {expected})"
            )
        kind, values = "dict", [out[n] for n in names]
    elif isinstance(out, torch.Tensor):
        kind, values = "tensor", [out]
    elif isinstance(out, (tuple, list)):
        kind, values = type(out).__name__, list(out)
    else:
        raise ArtifactError(f"torch module returns {type(out).__name__}: expected tensors (a tuple, or a dict by name)")
    if names is not None and len(values) != len(names):
        raise ArtifactError(
            f"torch module returns {len(values)} tensor(s), the card's heads read {len(names)} output(s): {expected} "
            "(return one tensor per distinct head output, in order of first use, or a dict keyed by those names)"
        )
    bad = [i for i, v in enumerate(values) if not isinstance(v, torch.Tensor)]
    if bad:
        raise ArtifactError(f"torch module output {bad[0]} is a {type(values[bad[0]]).__name__}, expected a tensor")
    return kind


def normalised(model: Any, card: ModelCard | None, example: Any) -> Any:
    """``model`` itself when it already returns a tuple of the card's outputs, else wrapped by :func:`tuple_outputs`.

    Runs one forward pass on ``example`` (in the card's layout) to check the outputs against the card.
    """
    import torch

    names = card.output_tensors if card is not None else None
    with torch.no_grad():
        kind = _check_outputs(model.eval()(example), names)
    if kind == "tuple":
        return model
    return tuple_outputs(model, names if names is not None else ("output",))


def to_layout(batch: np.ndarray, card: ModelCard | None) -> np.ndarray:
    """The NCHW batch in the card's input layout (NHWC: transposed); a contiguous float32 array."""
    if card is not None:
        batch = runtime_layout(batch, card.input.layout)
    return np.ascontiguousarray(batch, dtype=np.float32)


def example_input(data: np.ndarray, card: ModelCard | None) -> Any:
    """A batch-1 zero input shaped like one sample of the NCHW ``data``, in the card's layout."""
    import torch

    return torch.from_numpy(to_layout(np.zeros((1, *data.shape[1:]), np.float32), card))


# ---- which layers make the outputs -------------------------------------------------------------------------------


def _weighted(module: Any) -> bool:
    """A layer whose weight mixes channels (Conv, Linear, ...): its output channels are what pruning removes."""
    return any(p.ndim >= 2 for p in module.parameters(recurse=False))


def output_layers(model: Any, example: Any) -> list[list[Any]]:
    """For each output of ``model(example)`` (a tuple), the layers that produce it: kept whole by pruning.

    Walks the autograd graph back from each output through parameter-free operations (reshapes, activations,
    concatenations, additions, slicing...) and stops at the first layer with a channel-mixing weight (Conv,
    Linear) on every path; channel-wise layers met on the way (BatchNorm, LayerNorm, PReLU) are kept too. So a head
    ``Linear -> tanh``, two Linears concatenated into one output, or ``Conv1x1 -> BN -> flatten`` keep every
    channel they produce. Found from the module's own graph, whatever its attributes are called.
    """
    import torch

    producers: dict[Any, list[Any]] = {}  # autograd node -> the modules whose output it made (nested ones share it)
    owners = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]

    def hook(module: Any, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.grad_fn is not None:
            producers.setdefault(output.grad_fn, []).append(module)

    handles = [m.register_forward_hook(hook) for m in owners]
    try:
        with torch.enable_grad():
            outputs = model(example.clone().requires_grad_(True))
    finally:
        for handle in handles:
            handle.remove()
    found: list[list[Any]] = []
    for out in outputs:
        layers: list[Any] = []
        todo = [out.grad_fn] if out.grad_fn is not None else []
        seen: set[Any] = set()
        while todo:
            fn = todo.pop()
            if fn is None or fn in seen:
                continue
            seen.add(fn)
            modules = producers.get(fn, [])
            layers += [m for m in modules if m not in layers]
            if any(_weighted(m) for m in modules):
                continue
            todo.extend(next_fn for next_fn, _ in fn.next_functions)
        found.append(layers)
    return found


def _reference(model: Any) -> Any | None:
    """The reference network (FaceNet: backbone, pool, neck and one head layer per reference head) inside
    ``model``, recognised by its structure, or None."""
    from edge_sdk_export.network import HEAD_NAMES

    for m in model.modules():
        if all(hasattr(m, p) for p in REFERENCE_PARTS) and set(getattr(m, "head_layers", ())) == set(HEAD_NAMES):
            return m
    return None


def head_layers(model: Any) -> list[Any]:
    """The reference network's head layers (``model.head_layers``), else the last Linear layer (sparse training)."""
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
    """Layers of the reference network kept whole: its heads and its neck (sparse training and prune_channels)."""
    return head_layers(model) + feature_layers(model)


def _prune(
    model: Any, example: Any, ratio: float, ignored: list[Any], global_pruning: bool, round_to: int | None
) -> Any:
    """A pruned copy of ``model``: ``ratio`` of the channels of every prunable group removed, ``ignored`` kept."""
    import torch_pruning as tp

    pruned = copy.deepcopy(model).eval()
    ids = {id(m) for m in ignored}  # layers of ``model``: the copy's are at the same positions in modules()
    kept = [copy_ for m, copy_ in zip(model.modules(), pruned.modules(), strict=True) if id(m) in ids]
    pruner = tp.pruner.MetaPruner(
        pruned,
        example,
        importance=_importance(),
        pruning_ratio=ratio,
        global_pruning=global_pruning,
        ignored_layers=kept,
        round_to=round_to,
    )
    pruner.step()
    return pruned


def prune_channels(
    model: Any,
    ratio: float,
    input_size: tuple[int, int],
    global_pruning: bool = False,
    round_to: int | None = DEFAULT_ROUND_TO,
) -> Any:
    """Remove ``ratio`` of the prunable channels of the reference network (L2 magnitude, dependency-aware); returns
    the pruned copy.

    The heads and the neck's output width are protected; every backbone layer loses at least ``ratio`` of its
    channels, its kept count rounded down to a multiple of ``round_to`` (None: no rounding).
    """
    import torch

    return _prune(model, torch.zeros(1, 3, *input_size), ratio, _protected(model), global_pruning, round_to)


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
        example = torch.zeros(1, 3, *input_size)
        training = model.training
        model.eval()  # trace with running statistics: a BatchNorm after global pooling cannot run on batch 1
        try:
            self._pruner = tp.pruner.GroupNormPruner(
                model, example, importance=_importance(), reg=reg, ignored_layers=_sparsity_protected(model, example)
            )
        finally:
            model.train(training)

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


def _sparsity_protected(model: Any, example: Any) -> list[Any]:
    """Layers sparse training must not shrink: the reference network's heads and neck, or, for any other module,
    every layer producing one of its outputs (:func:`output_layers`, the layers :func:`prune_and_recover` keeps
    whole). Without this a multi-head model kept only its last Linear whole, and the regulariser faded the output
    rows of its other heads towards zero."""
    import torch

    if _reference(model) is not None:
        return _protected(model)
    with torch.no_grad():
        out = model(example)
    if isinstance(out, dict):
        net = tuple_outputs(model, tuple(out))
    elif isinstance(out, torch.Tensor):
        net = tuple_outputs(model, ("output",))
    else:
        net = model
    return [m for layers in output_layers(net, example) for m in layers]


def count_ops(model: Any, input_size: tuple[int, int], example: Any = None) -> tuple[int, int]:
    """(MACs, parameters) of one batch-1 forward pass, as torch-pruning counts them (``example``: the input, by
    default a 3-channel NCHW zero image of ``input_size``)."""
    import torch
    import torch_pruning as tp

    x = torch.zeros(1, 3, *input_size) if example is None else example
    macs, params = tp.utils.count_ops_and_params(model.eval(), x)
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


# ---- label-free recovery -----------------------------------------------------------------------------------------


def head_targets(card: ModelCard | None, outputs: int, activations: Activations | None = None) -> list[HeadTarget]:
    """The distillation terms: one per card head (its output by position in ``card.output_tensors``, its
    ``columns``, activation and clamp); without a card one per output, with ``activations`` (one
    ``(activation, clamp)`` per output) or plain squared error."""
    if card is not None:
        index = {name: i for i, name in enumerate(card.output_tensors)}
        return [HeadTarget(h.name, index[h.tensor], h.columns, h.activation, h.clamp) for h in card.heads]
    kinds = activations or [("none", None)] * outputs
    if len(kinds) != outputs:
        raise InputError(f"distillation: {len(kinds)} activations for a model with {outputs} outputs")
    return [HeadTarget(f"output {i}", i, None, act, clamp) for i, (act, clamp) in enumerate(kinds)]


def _neck_hooks(student: Any, teacher: Any, store: dict[str, Any]) -> list[Any]:
    """Hooks that put the reference network's neck features of student and teacher into ``store`` on every
    forward pass (feature distillation); none when the module holds no reference network."""
    nets = {"student": _reference(student), "teacher": _reference(teacher)}
    if any(net is None for net in nets.values()):
        return []

    def keeper(role: str) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            store[role] = output

        return hook

    return [net.neck.register_forward_hook(keeper(role)) for role, net in nets.items()]


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
    activations: Activations | None = None,
    card: ModelCard | None = None,
    validator: Validator | None = None,
    check_every: int = DEFAULT_CHECK_EVERY,
    patience: int = DEFAULT_PATIENCE,
) -> dict[str, Any]:
    """Train ``student`` to match ``teacher`` on the NCHW batch ``data`` (knowledge distillation, no labels).

    Both take the batch in the card's layout and return a tuple of outputs. Loss = per-head KD loss (the card's
    heads, see :func:`head_targets`; without a card ``activations`` or MSE on raw outputs) + MSE between the neck
    features of student and teacher when they are the reference network. One-cycle LR. Deterministic for a given
    seed: fixed sample order and augmentation, deterministic torch kernels.

    With a ``validator`` (a score on faces kept out of ``data``), the student is scored before the first step
    and every ``check_every`` steps, and the best-scoring weights are kept: where the last step lands is chance
    (the pruned demo's last step agreed 0.993 with its teacher on one CPU and 0.974 on another), and a pruned
    model that is already good may get worse before it gets better. Training stops after ``patience`` checks
    in a row without a better score (0: never). The report lists every check.
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
    features: dict[str, Any] = {}
    hooks = _neck_hooks(student, teacher, features)
    heads: list[HeadTarget] | None = None
    losses: list[float] = []
    checks = _Checkpoints(student, validator)
    log.info("distillation: %d steps of batch %d on %d crops (lr %g, seed %d)", steps, batch, len(data), lr, seed)
    try:
        checks.check(0)
        for step in tqdm(range(steps), desc="distillation", disable=not progress, leave=False, dynamic_ncols=True):
            idx = rng.choice(len(data), size=min(batch, len(data)), replace=False)
            x = torch.from_numpy(to_layout(_augment(data[idx], rng), card))
            with torch.no_grad():
                targets = tuple(teacher(x))
            outputs = tuple(student(x))
            heads = heads or head_targets(card, len(outputs), activations)
            loss = sum(_head_loss(h.select(outputs), h.select(targets), h.activation, h.clamp) for h in heads)
            if hooks:
                loss = loss + F.mse_loss(features["student"], features["teacher"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if (step + 1) % max(1, check_every) == 0 or step + 1 == steps:
                checks.check(step + 1)
                if patience and checks.stale >= patience and step + 1 < steps:
                    log.info("distillation: no better score in %d checks; stopped at step %d", patience, step + 1)
                    break
    finally:
        torch.use_deterministic_algorithms(deterministic)
        for m, p in dropout:
            m.p = p
        for hook in hooks:
            hook.remove()
    student.eval()
    head = max(1, steps // 10)
    report = {
        "steps": steps,
        "steps_run": len(losses),
        "batch": batch,
        "lr": lr,
        "schedule": "one-cycle",
        "kd_temperature": KD_TEMPERATURE,
        "seed": seed,
        "samples": len(data),
        "loss_first": round(float(np.mean(losses[:head])), 5) if losses else None,
        "loss_last": round(float(np.mean(losses[-head:])), 5) if losses else None,
        **checks.keep_best(),
    }
    log.info("distillation: loss %s -> %s", report["loss_first"], report["loss_last"])
    return report


class _Checkpoints:
    """The validator's score of the student at each check, and the best weights so far (a copy in memory)."""

    def __init__(self, student: Any, validator: Validator | None) -> None:
        self.student = student
        self.validator = validator
        self.history: list[dict[str, float | int]] = []
        self.best: tuple[float, int, dict[str, Any]] | None = None
        self.stale = 0  # checks since the best one

    def check(self, step: int) -> None:
        if self.validator is None:
            return
        import torch

        with torch.no_grad():
            score = float(self.validator(self.student))
        self.history.append({"step": step, "score": round(score, 5)})
        log.info("distillation step %d: validation score %.4f", step, score)
        if self.best is None or score > self.best[0]:
            self.best = (score, step, copy.deepcopy(self.student.state_dict()))
            self.stale = 0
        else:
            self.stale += 1

    def keep_best(self) -> dict[str, Any]:
        """Load the best weights into the student; the report's fields (none without a validator)."""
        if self.best is None:
            return {}
        score, step, state = self.best
        self.student.load_state_dict(state)
        log.info("distillation: kept the weights of step %d (validation score %.4f)", step, score)
        return {"checks": self.history, "kept_step": step, "kept_score": round(score, 5)}


def _check_data(data: np.ndarray, card: ModelCard | None) -> None:
    """Raise InputError unless ``data`` is a non-empty NCHW batch of the card's input (channels, size)."""
    shape = getattr(data, "shape", ())
    if len(shape) != 4 or shape[0] < 1:
        raise InputError(f"pruning data: expected a non-empty NCHW batch (N, C, H, W), got shape {tuple(shape)}")
    if card is not None:
        spec = card.input
        want = (spec.channels, spec.height, spec.width)
        if tuple(shape[1:]) != want:
            raise InputError(
                f"pruning data: expected NCHW crops of {want} (channels, height, width) for "
                f"{card.name}, got {tuple(shape[1:])}"
            )


def _layer_names(model: Any, layers: list[list[Any]], names: Sequence[str]) -> dict[str, list[str]]:
    """{output name: qualified names of the layers producing it} (for logs and the report)."""
    qualified = {id(m): name or type(m).__name__ for name, m in model.named_modules()}
    return {
        out: [qualified.get(id(m), type(m).__name__) for m in found] for out, found in zip(names, layers, strict=True)
    }


def prune_and_recover(
    model: Any,
    ratio: float,
    data: np.ndarray,
    card: ModelCard | None = None,
    *,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    global_pruning: bool = False,
    progress: bool = True,
    lr: float = DEFAULT_LR,
    round_to: int | None = DEFAULT_ROUND_TO,
    batch: int = DEFAULT_BATCH,
    activations: Activations | None = None,
    validator: Validator | None = None,
) -> PruneResult:
    """Prune ``ratio`` of the channels of any torch ``model`` and recover by self-distillation on ``data``.

    ``model``: forward takes the preprocessed batch in ``card.input.layout`` and returns the card's outputs (a
    tuple in ``card.output_tensors`` order, a dict keyed by those names, or one tensor); a dict with missing or
    extra keys, or the wrong number of tensors, is refused (ArtifactError). ``data``: preprocessed NCHW crops (any
    float dtype, e.g. float16), transposed here for an NHWC card. The layers producing each output are kept whole
    (:func:`output_layers`); the teacher is an unpruned copy; each card head is distilled by its activation and
    clamp, on its ``columns`` of a shared output. Without a card (the reference network, legacy callers) the
    outputs are distilled by ``activations`` or plain squared error. ``validator``: see :func:`distill` (the
    best-scoring checkpoint is kept). The model passed in is not modified.
    """
    import torch

    if not 0.0 < ratio < 1.0:
        raise InputError(f"--prune {ratio}: expected a fraction of channels in (0, 1)")
    _check_data(data, card)
    example = example_input(data, card)
    net = normalised(copy.deepcopy(model), card, example)
    teacher = copy.deepcopy(net).eval()
    names = card.output_tensors if card is not None else tuple(f"output {i}" for i in range(len(net(example))))
    heads = output_layers(net, example)
    kept_names = _layer_names(net, heads, names)
    for out, layers in kept_names.items():
        if layers:
            log.info("pruning keeps whole the layers producing %s: %s", out, ", ".join(layers))
        else:
            log.warning("pruning: no layer produces output %s (nothing to keep whole for it)", out)
    protected = [m for layers in heads for m in layers]
    reference = _reference(net)
    if reference is not None:  # the reference network's neck keeps full width (feature distillation)
        protected += feature_layers(reference)
    macs_before, params_before = count_ops(teacher, (), example)
    torch.manual_seed(seed)
    student = _prune(net, example, ratio, protected, global_pruning, round_to)
    macs_after, params_after = count_ops(student, (), example)
    with torch.no_grad():
        want = [tuple(t.shape) for t in teacher(example)]
        got = [tuple(t.shape) for t in student(example)]
    if want != got:  # cannot happen while the output layers are kept whole; never ship a model with other heads
        raise ArtifactError(f"pruning changed the output shapes {want} -> {got}: the model's heads cannot be kept")
    log.info(
        "pruned %.0f%% of channels: %d -> %d parameters, %d -> %d MACs",
        ratio * 100,
        params_before,
        params_after,
        macs_before,
        macs_after,
    )
    report = distill(
        student,
        teacher,
        data,
        steps=steps,
        batch=batch,
        lr=lr,
        seed=seed,
        progress=progress,
        activations=activations,
        card=card,
        validator=validator,
    )
    report["global_pruning"] = global_pruning
    report["round_to"] = round_to
    return PruneResult(student, params_before, params_after, macs_before, macs_after, report, kept_names)
