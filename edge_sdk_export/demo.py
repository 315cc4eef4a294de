"""The shipped synthetic demo weights as a torch module (for pruning/quantization in edge_sdk_export).

The weights are package data of ``edge_sdk_export`` (``weights/demo_synthetic.pt``, see ``[tool.setuptools.
package-data]`` in pyproject.toml), found next to this module, so ``edge-sdk export --model demo --prune R``
prunes from a regular (non-editable) install as well as from a checkout.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from edge_sdk_export.network import FaceNet, NetworkConfig

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().with_name("weights")  # inside the installed package, not the checkout
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
    log.debug("loaded %s (%s backbone)", path, model.config.backbone)
    return model.eval()


def load_demo_torch_model() -> FaceNet:
    """The trained synthetic demo network (the source of edge_sdk/model/demo/edge_sdk_demo_synthetic.onnx).

    Raises FileNotFoundError when this install of ``edge_sdk_export`` lacks its package data (the weights).
    """
    if not DEMO_CHECKPOINT.is_file():
        raise FileNotFoundError(
            f"{DEMO_CHECKPOINT}: the demo's torch weights are missing from this install of edge_sdk_export "
            "(package data weights/*.pt); reinstall the package, e.g. `pip install '.[export]'`"
        )
    return load_checkpoint(DEMO_CHECKPOINT)
