"""Deterministic CPU training of the reference network on rendered faces; writes checkpoint, ONNX and metrics.

    python -m edge_sdk_export.train --out DIR [--steps N] [--seed S] [--backbone resnet|mobilenetv2] [--sparsity R]

Writes ``DIR/demo_synthetic.pt`` (state_dict + config), ``DIR/demo_synthetic.json`` (config, training
settings, timings), ``DIR/edge_sdk_demo_synthetic.onnx`` (FP32, card embedded) and ``DIR/metrics.json``
(held-out synthetic metrics of the ONNX file, scored through edge_sdk.FaceModel).

Group sparsity (``--sparsity``, default 0.5, from 25 % of the steps on) trains the network to be pruned:
see :class:`edge_sdk_export.pruning.GroupSparsity`. Runs are bit-identical for the same (seed, threads, steps,
faces). The shipped demo weights come from ``python -m edge_sdk_export.train --out DIR --threads 1`` (defaults
otherwise): on a 2-core box shared with other jobs, 2 torch threads thrash (5-10x slower per step),
1 thread does not.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edge_sdk.cli.flags import settings_from_args
from edge_sdk.contract.card import AU_LABELS, ExportInfo, Provenance
from edge_sdk_export.network import DEFAULT_BACKBONE, HEAD_NAMES, INPUT_SIZE, FaceNet, NetworkConfig, reference_card
from edge_sdk_export.onnx_io import export_onnx
from edge_sdk_export.pruning import GroupSparsity
from edge_sdk_export.synthetic import SyntheticDataset, render_dataset

CHECKPOINT_NAME = "demo_synthetic.pt"
CONFIG_NAME = "demo_synthetic.json"
ONNX_NAME = "edge_sdk_demo_synthetic.onnx"
# The shipped demo was trained before the package was renamed from `export`; the string is its recorded history.
PROVENANCE_SOURCE = "edge-sdk synthetic demo training (export/train.py)"
# AUs occur in ~10-50% of faces; weighting positives keeps rare ones (AU43, AU17) from being ignored.
OCCURRENCE_POS_WEIGHT = torch.full((len(AU_LABELS),), 2.0)
# Group sparsity starts once the network has learnt which channels matter (the regulariser ranks by magnitude).
SPARSITY_START = 0.25


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    seed: int = 0
    batch: int = 64
    train_faces: int = 20000
    eval_faces: int = 2000
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    threads: int = 2
    backbone: str = DEFAULT_BACKBONE
    sparsity: float = 0.5  # group-sparsity regularisation (edge_sdk_export/pruning.py GroupSparsity); 0 = off

    @property
    def train_seed(self) -> int:
        return 1000 + self.seed

    @property
    def eval_seed(self) -> int:
        return 900_000 + self.seed  # disjoint from every training seed


def seed_everything(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


class Batches:
    """Deterministic minibatches from a pre-rendered set, with flip and brightness/contrast augmentation.

    A horizontal flip keeps every label valid: AUs are bilateral labels and a unilateral AU12
    (contempt) stays contempt on the other side.
    """

    def __init__(self, data: SyntheticDataset, batch: int, seed: int) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(data.images[:, :, :, ::-1]))  # RGB, NHWC uint8
        self.targets = {
            "au_occurrence": torch.from_numpy(data.au_occurrence),
            "au_intensity": torch.from_numpy(data.au_intensity),
            "expression": torch.from_numpy(data.expression),
            "valence_arousal": torch.from_numpy(data.valence_arousal),
        }
        self.batch = batch
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        idx = torch.from_numpy(self.rng.integers(0, len(self.images), self.batch))
        x = self.images[idx].permute(0, 3, 1, 2).float().div_(255.0)
        flip = torch.from_numpy(self.rng.uniform(size=self.batch) < 0.5)
        x[flip] = x[flip].flip(3)
        gain = torch.from_numpy(self.rng.uniform(0.75, 1.25, (self.batch, 1, 1, 1)).astype(np.float32))
        bias = torch.from_numpy(self.rng.uniform(-0.08, 0.08, (self.batch, 1, 1, 1)).astype(np.float32))
        x = ((x * gain + bias).clamp_(0.0, 1.0) - 0.5) / 0.5
        return x.contiguous(memory_format=torch.channels_last), {k: v[idx] for k, v in self.targets.items()}


def ccc_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """1 - concordance correlation, averaged over columns."""
    pm, tm = pred.mean(0), true.mean(0)
    cov = ((pred - pm) * (true - tm)).mean(0)
    ccc = 2 * cov / (pred.var(0, unbiased=False) + true.var(0, unbiased=False) + (pm - tm) ** 2 + 1e-6)
    return (1 - ccc).mean()


def multitask_loss(out: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    va = torch.tanh(out["valence_arousal"])
    parts = {
        "au_occurrence": F.binary_cross_entropy_with_logits(
            out["au_occurrence"], y["au_occurrence"], pos_weight=OCCURRENCE_POS_WEIGHT
        ),
        "au_intensity": F.smooth_l1_loss(out["au_intensity"], y["au_intensity"]),
        "expression": F.cross_entropy(out["expression"], y["expression"]),
        "valence_arousal": 2.0 * F.mse_loss(va, y["valence_arousal"]) + 0.5 * ccc_loss(va, y["valence_arousal"]),
    }
    return sum(parts.values()), {k: float(v.detach()) for k, v in parts.items()}  # type: ignore[return-value]


def learning_rate(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + np.cos(np.pi * progress))


def train(cfg: TrainConfig, log_every: int = 100) -> tuple[FaceNet, dict[str, float]]:
    """Render the training set and train; returns the model (eval mode) and timings."""
    seed_everything(cfg.seed, cfg.threads)
    t0 = time.perf_counter()
    data = render_dataset(cfg.train_faces, cfg.train_seed, INPUT_SIZE)
    t_render = time.perf_counter() - t0
    print(f"rendered {len(data)} training faces in {t_render:.1f} s", flush=True)
    model = FaceNet(NetworkConfig(backbone=cfg.backbone)).to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    batches = Batches(data, cfg.batch, cfg.train_seed)
    sparsity = GroupSparsity(model, (INPUT_SIZE, INPUT_SIZE), cfg.sparsity) if cfg.sparsity > 0 else None
    model.train()
    t1 = time.perf_counter()
    running: dict[str, float] = {}
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg)
        x, y = batches.next()
        loss, parts = multitask_loss(dict(zip(HEAD_NAMES, model(x), strict=True)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if sparsity is not None and step >= SPARSITY_START * cfg.steps:
            sparsity.apply(optimizer.param_groups[0]["lr"])
        for k, v in parts.items():
            running[k] = running.get(k, 0.0) + v / log_every
        if (step + 1) % log_every == 0:
            elapsed = time.perf_counter() - t1
            summary = " ".join(f"{k}={v:.3f}" for k, v in running.items())
            print(f"step {step + 1}/{cfg.steps} {elapsed:.0f}s {summary}", flush=True)
            running = {}
    t_train = time.perf_counter() - t1
    model.eval()
    return model.to(memory_format=torch.contiguous_format), {
        "render_s": round(t_render, 1),
        "train_s": round(t_train, 1),
    }


def demo_card(cfg: TrainConfig):  # -> ModelCard
    provenance = Provenance(
        source=PROVENANCE_SOURCE,
        synthetic_demo=True,
        training_data=(
            f"{cfg.train_faces} synthetic cartoon faces rendered by export/synthetic.py (seed {cfg.train_seed}): "
            "OpenCV-drawn faces with EMFACS-like expression prototypes, random AU noise and a pain mode; "
            "no real people. Outputs are meaningless on real faces."
        ),
        license="Apache-2.0",
    )
    return reference_card(
        provenance,
        ExportInfo(target=None, precision="fp32", tool="export/train.py"),
        name="edge-sdk-demo-synthetic",
        description=(
            f"Synthetic demo of the reference multitask network ({cfg.backbone} backbone, 112x112 RGB). "
            "Trained only on rendered cartoon faces: not a clinical model, meaningless on real people."
        ),
    )


def evaluate_onnx(onnx_path: Path, cfg: TrainConfig) -> dict[str, object]:
    """Held-out metrics of the exported ONNX through the device runtime (FaceModel, ONNX Runtime)."""
    from edge_sdk.model.face_model import FaceModel
    from edge_sdk_export.evaluate import evaluate

    model = FaceModel(onnx_path, backend="onnxruntime", threads=cfg.threads)
    held_out = render_dataset(cfg.eval_faces, cfg.eval_seed, INPUT_SIZE)
    metrics = evaluate(model.predict, held_out)
    metrics["eval_seed"] = cfg.eval_seed
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    # Each flag's dest is the TrainConfig field it sets; a flag left off keeps the field's default.
    parser.add_argument("--steps", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--train-faces", type=int)
    parser.add_argument("--eval-faces", type=int)
    parser.add_argument("--backbone", choices=("resnet", "mobilenetv2"))
    parser.add_argument(
        "--sparsity", type=float, help="group-sparsity regularisation so the model prunes well later (0 = off)"
    )
    parser.add_argument("--threads", type=int, help="torch threads; use 1 on a CPU shared with other jobs")
    args = parser.parse_args(argv)
    cfg = settings_from_args(TrainConfig, args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    model, timings = train(cfg)
    torch.save({"state_dict": model.state_dict(), "config": model.config.to_dict()}, out / CHECKPOINT_NAME)
    diffs = export_onnx(model, out / ONNX_NAME, demo_card(cfg))
    metrics = evaluate_onnx(out / ONNX_NAME, cfg)
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    record = {
        "network": model.config.to_dict(),
        "training": asdict(cfg),
        "timings": timings,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "machine": f"{os.cpu_count()}-core x86 dev box, no GPU, torch {torch.__version__}",
        "onnx_vs_torch_max_abs_diff": diffs,
    }
    (out / CONFIG_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"timings": timings, **{k: v for k, v in metrics.items() if not isinstance(v, dict)}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
