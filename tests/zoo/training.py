"""Shared by the zoo models: their four-head card and a seeded training on rendered faces, cached on disk.

Each zoo file (``tests/zoo/NAME.py``) defines a network whose ``forward`` takes the preprocessed 64x64 RGB batch
(NCHW, mean/std 0.5) and returns a dict keyed by the card's outputs: ``au_occurrence`` (13 logits, sigmoid in the
card), ``au_intensity`` (13, clamped to 0-5), ``expression`` (8 logits, softmax) and ``valence_arousal`` (2, tanh),
and a ``build()`` that ``edge-sdk export --model tests/zoo/NAME.py:build`` calls.

Weights (:data:`FULL`): seeded initialisation, then 1500 steps of the demo's own multitask training
(:func:`edge_sdk_export.train.multitask_loss`, AU intensity/occurrence + expression + valence/arousal, its cosine
schedule and augmentation) on 8000 rendered faces (:func:`edge_sdk_export.synthetic.render_dataset`), with the
demo's group sparsity (:class:`edge_sdk_export.pruning.GroupSparsity`, reg 0.5 as ``--sparsity`` defaults to) from
a quarter of the way in, so ``--prune`` removes channels the network learnt to do without. One torch thread,
deterministic per seed. The state dict and its rendered held-out metrics are cached per process and on disk under
``.cache/zoo/`` (gitignored; the file name carries a hash of the zoo sources and the recipe, so a change retrains).
Training both zoo models takes ~15 min on 2 cores: ``python -m tests.zoo.training`` trains them in parallel (one
process and one core each); the benchmark does that first. These are test fixtures: cartoon faces only,
meaningless on real people.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_sdk.contract.card import AU_LABELS, CONTRACT_VERSION, EXPRESSION_LABELS

log = logging.getLogger(__name__)

INPUT_SIZE = 64
SEED = 0
SPARSITY_START = 0.25  # as edge_sdk_export.train: sparsity starts once the net has learnt which channels matter
TRAINING_VERSION = 2  # part of the cache key: bump when the loop itself changes what it computes
LOG_EVERY = 100
EVAL_FACES = 1000  # rendered held-out faces (seed 900_000 + seed, disjoint from every training seed; at most as
# many as the recipe trained on, so a few-second recipe is not scored for longer than it trained)
ZOO = Path(__file__).resolve().parent
CACHE = ZOO.parents[1] / ".cache" / "zoo"
OUTPUTS = ("au_occurrence", "au_intensity", "expression", "valence_arousal")
HEAD_WIDTHS = {"au_occurrence": len(AU_LABELS), "au_intensity": len(AU_LABELS), "expression": 8, "valence_arousal": 2}
MODELS = ("mobilefacenet", "efficientnet_lite")  # what `python -m tests.zoo.training` trains by default


@dataclass(frozen=True)
class Recipe:
    """How a zoo model is trained: the demo's recipe (edge_sdk_export.train) at a size that fits the zoo."""

    steps: int = 1500
    faces: int = 8000  # rendered training faces
    batch: int = 32
    lr: float = 3e-3
    warmup: int = 100
    sparsity: float = 0.5  # GroupSparsity reg, the demo's --sparsity default; 0 = off

    def describe(self) -> str:
        sparse = f", group sparsity {self.sparsity:g} from step {round(SPARSITY_START * self.steps)}"
        return (
            f"{self.steps} steps (batch {self.batch}, lr {self.lr:g} cosine) of the demo's multitask training on "
            f"{self.faces} rendered faces" + (sparse if self.sparsity > 0 else "")
        )


FULL = Recipe()  # the benchmark's and `--model tests/zoo/NAME.py:build`'s weights


class Heads(nn.Module):
    """One Linear per card output on a shared embedding; returns the dict the card reads."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.layers = nn.ModuleDict({name: nn.Linear(features, width) for name, width in HEAD_WIDTHS.items()})

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: layer(z) for name, layer in self.layers.items()}


def card_dict(name: str, description: str, source: str) -> dict[str, Any]:
    """The zoo card (contract 1.1): 64x64 RGB NCHW, mean/std 0.5, the reference network's four heads."""
    aus = list(AU_LABELS)
    return {
        "contract_version": CONTRACT_VERSION,
        "name": name,
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
        },
        "heads": [
            {
                "name": "au_occurrence",
                "kind": "au_occurrence",
                "labels": aus,
                "activation": "sigmoid",
                "output": "au_occurrence",
            },
            {
                "name": "au_intensity",
                "kind": "au_intensity",
                "labels": aus,
                "activation": "clamp",
                "output": "au_intensity",
                "clamp": [0.0, 5.0],
            },
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
        ],  # fmt: skip
        "provenance": {"source": source, "synthetic_demo": False, "license": "Apache-2.0"},
    }


def _fingerprint(name: str, seed: int, recipe: Recipe) -> str:
    """Hash of the model's source file, this file and the recipe: the disk cache key."""
    digest = hashlib.sha256((ZOO / f"{name}.py").read_bytes())
    settings = (name, seed, asdict(recipe), SPARSITY_START, TRAINING_VERSION, torch.__version__)
    digest.update(repr(settings).encode())
    return digest.hexdigest()[:16]


def cache_path(name: str, seed: int = SEED, recipe: Recipe = FULL) -> Path:
    """Where ``name``'s trained state dict is cached (its metrics beside it, ``.json``)."""
    return CACHE / f"{name}-{_fingerprint(name, seed, recipe)}.pt"


def train(model: nn.Module, seed: int, recipe: Recipe) -> dict[str, float]:
    """Train ``model`` in place on rendered faces with the demo's multitask loss, schedule and augmentation;
    returns timings and the last logged losses."""
    from edge_sdk_export.pruning import GroupSparsity
    from edge_sdk_export.synthetic import render_dataset
    from edge_sdk_export.train import Batches, TrainConfig, learning_rate, multitask_loss

    t0 = time.perf_counter()
    data = render_dataset(recipe.faces, 1000 + seed, INPUT_SIZE)
    render_s = time.perf_counter() - t0
    cfg = TrainConfig(steps=recipe.steps, seed=seed, batch=recipe.batch, lr=recipe.lr, warmup=recipe.warmup)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    batches = Batches(data, recipe.batch, cfg.train_seed)
    sparsity = GroupSparsity(model, (INPUT_SIZE, INPUT_SIZE), recipe.sparsity) if recipe.sparsity > 0 else None
    model.train()
    running: dict[str, float] = {}
    t1 = time.perf_counter()
    every = min(LOG_EVERY, recipe.steps)
    for step in range(recipe.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg)
        x, y = batches.next()
        loss, parts = multitask_loss(model(x.contiguous()), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if sparsity is not None and step >= SPARSITY_START * recipe.steps:
            sparsity.apply(optimizer.param_groups[0]["lr"])
        for k, v in parts.items():
            running[k] = running.get(k, 0.0) + v / every
        if (step + 1) % every == 0 and step + 1 < recipe.steps:
            log.info("step %d/%d: %s", step + 1, recipe.steps, " ".join(f"{k}={v:.3f}" for k, v in running.items()))
            running = {}
    model.eval()
    return {"render_s": round(render_s, 1), "train_s": round(time.perf_counter() - t1, 1)}


def heldout_metrics(model: nn.Module, seed: int = SEED, faces: int = EVAL_FACES) -> dict[str, float]:
    """The trained net against the *labels* of rendered held-out faces (not against another model): expression
    accuracy and its median top-1 probability, AU occurrence F1 (micro), valence/arousal CCC, AU intensity MAE."""
    from edge_sdk_export.synthetic import render_dataset

    data = render_dataset(faces, 900_000 + seed, INPUT_SIZE)
    x = torch.from_numpy(np.ascontiguousarray(data.images[:, :, :, ::-1])).permute(0, 3, 1, 2).float()
    x = (x / 255.0 - 0.5) / 0.5
    with torch.no_grad():
        outs = [model.eval()(x[i : i + 256]) for i in range(0, len(x), 256)]
    out = {k: torch.cat([o[k] for o in outs]).numpy() for k in OUTPUTS}
    probs = np.exp(out["expression"] - out["expression"].max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    occ = 1 / (1 + np.exp(-out["au_occurrence"])) >= 0.5
    truth = data.au_occurrence >= 0.5
    tp, fp, fn = (occ & truth).sum(), (occ & ~truth).sum(), (~occ & truth).sum()
    va, va_true = np.tanh(out["valence_arousal"]), data.valence_arousal
    ccc = []
    for j in range(2):
        p, t = va[:, j], va_true[:, j]
        ccc.append(2 * np.cov(p, t, bias=True)[0, 1] / (p.var() + t.var() + (p.mean() - t.mean()) ** 2))
    return {
        "faces": faces,
        "expression_accuracy": round(float((probs.argmax(1) == data.expression).mean()), 4),
        "expression_median_top1_prob": round(float(np.median(probs.max(1))), 4),
        "au_occurrence_f1": round(float(2 * tp / max(1, 2 * tp + fp + fn)), 4),
        "va_ccc": round(float(np.mean(ccc)), 4),
        "au_intensity_mae": round(float(np.abs(np.clip(out["au_intensity"], 0, 5) - data.au_intensity).mean()), 4),
    }


@functools.cache
def trained_state(
    name: str, factory: Callable[[], nn.Module], seed: int, recipe: Recipe = FULL
) -> dict[str, torch.Tensor]:
    """State dict of ``factory()`` (seeded) after training by ``recipe``: from memory, .cache/zoo/, or trained now
    (then cached with its held-out metrics). ``recipe.steps == 0``: the seeded initialisation, not cached."""
    path = cache_path(name, seed, recipe)
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches on a shared 2-core box: one thread is faster than two
    try:
        torch.manual_seed(seed)
        np.random.seed(seed)
        model = factory()
        if recipe.steps <= 0:
            return model.eval().state_dict()  # untrained: nothing worth a file
        summary: dict[str, Any] = train(model, seed, recipe)
        summary["heldout"] = heldout_metrics(model, seed, min(EVAL_FACES, recipe.faces))
        log.info("zoo %s: %s: %s", name, recipe.describe(), summary)
        state = model.eval().state_dict()
    finally:
        torch.set_num_threads(threads)
    CACHE.mkdir(parents=True, exist_ok=True)
    meta = {"name": name, "seed": seed, "recipe": asdict(recipe), "recipe_text": recipe.describe(), **summary}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    fd, tmp = tempfile.mkstemp(dir=CACHE, suffix=".tmp")
    os.close(fd)
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: parallel processes never read half a file
    return state


def training_record(name: str, seed: int = SEED, recipe: Recipe = FULL) -> dict[str, Any] | None:
    """The cached training's timings and held-out metrics (None when not trained yet)."""
    meta = cache_path(name, seed, recipe).with_suffix(".json")
    return json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else None


def built(
    name: str,
    factory: Callable[[], nn.Module],
    family: str,
    source: str,
    fit: bool,
    seed: int,
    recipe: Recipe = FULL,
) -> tuple[nn.Module, dict[str, Any]]:
    """``(module, card)``: a fresh ``factory()`` with the cached trained weights (``fit``), in eval mode."""
    recipe = recipe if fit else Recipe(steps=0)
    model = factory()
    model.load_state_dict({k: v.clone() for k, v in trained_state(name, factory, seed, recipe).items()})
    how = f"then {recipe.describe()}" if fit else "not trained"
    description = f"Zoo test fixture: {family}; weights seeded (seed {seed}), {how}. Meaningless on real faces."
    card = card_dict(f"zoo-{name}", description, f"{source} (seed {seed})")
    return model.eval(), card


def _train_one(name: str) -> int:
    """Child process: train (or find cached) one zoo model with the full recipe."""
    import importlib

    importlib.import_module(f"tests.zoo.{name}").build()
    return 0


def train_all(names: tuple[str, ...] = MODELS) -> dict[str, dict[str, Any]]:
    """Train the zoo models with the full recipe, one process (one core) each, in parallel; returns their records.
    Already cached ones are not retrained."""
    import subprocess

    repo = ZOO.parents[1]
    procs = {
        name: subprocess.Popen([sys.executable, "-m", "tests.zoo.training", "--one", name], cwd=repo)
        for name in names
        if training_record(name) is None
    }
    for name, proc in procs.items():
        if proc.wait() != 0:
            raise RuntimeError(f"training {name} exited {proc.returncode}")
    return {name: training_record(name) or {} for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="train the zoo models (full recipe) into .cache/zoo/")
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: the per-model child process
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.one:
        return _train_one(args.one)
    print(json.dumps(train_all(tuple(args.models)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
