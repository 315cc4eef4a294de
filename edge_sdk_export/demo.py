"""The shipped synthetic demo weights as a torch module (for pruning/quantization experiments in export/)."""

from __future__ import annotations

from pathlib import Path

import torch

from edge_sdk_export.network import FaceNet, NetworkConfig

WEIGHTS_DIR = Path(__file__).with_name("weights")
DEMO_CHECKPOINT = WEIGHTS_DIR / "demo_synthetic.pt"


def load_checkpoint(path: str | Path) -> FaceNet:
    """A FaceNet rebuilt from a checkpoint written by edge_sdk_export/train.py (eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: checkpoint not found (train one with `python -m edge_sdk_export.train --out DIR`)"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = FaceNet(NetworkConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def load_demo_torch_model() -> FaceNet:
    """The trained synthetic demo network (the source of edge_sdk/model/demo/edge_sdk_demo_synthetic.onnx)."""
    return load_checkpoint(DEMO_CHECKPOINT)
