"""ONNX export of the reference network (its card is embedded with :func:`edge_sdk_export.onnx_card.embed_card`).

Export uses the TorchScript exporter (``dynamo=False``): with torch 2.13 the dynamo exporter only has
opset-18 implementations, its down-conversion to opset 17 fails on ``ReduceMean`` (axes as an input) and
it silently leaves an opset-18 model. The TorchScript exporter writes a clean opset-17 graph
(Conv/Relu/Add/GlobalAveragePool/Gemm) that ONNX Runtime's quantizer, OpenVINO, onnx2tf and TensorRT
all take as is.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from edge_sdk.contract.card import ModelCard
from edge_sdk_export.network import HEAD_NAMES, INPUT_NAME, INPUT_SIZE
from edge_sdk_export.onnx_card import embed_card

MATCH_TOLERANCE = 1e-4


def _drop_identities(model: onnx.ModelProto) -> None:
    """Remove Identity nodes (left by eval-mode Dropout) so converters see a plain graph."""
    outputs = {o.name for o in model.graph.output}
    rename: dict[str, str] = {}
    keep = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
        else:
            keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def verification_batch(seed: int = 0, rendered: int = 4, random: int = 2) -> np.ndarray:
    """Preprocessed rendered faces plus uniform-noise images, NCHW float32 in the card's normalisation."""
    from edge_sdk_export.synthetic import render_dataset

    faces = render_dataset(rendered, seed, INPUT_SIZE).images[:, :, :, ::-1]  # BGR -> RGB
    noise = np.random.default_rng(seed).integers(0, 256, (random, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    rgb = np.concatenate([faces, noise]).astype(np.float32) / 255.0
    return ((rgb - 0.5) / 0.5).transpose(0, 3, 1, 2).copy()


def compare_with_onnxruntime(model: torch.nn.Module, onnx_path: str | Path, batch: np.ndarray) -> dict[str, float]:
    """Max |torch - ONNX Runtime| per head on ``batch``."""
    import onnxruntime as ort

    model.eval()
    with torch.no_grad():
        expected = [t.numpy() for t in model(torch.from_numpy(batch))]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(list(HEAD_NAMES), {INPUT_NAME: batch})
    return {name: float(np.abs(e - g).max()) for name, e, g in zip(HEAD_NAMES, expected, got, strict=True)}


def export_onnx(
    model: torch.nn.Module, path: str | Path, card: ModelCard, opset: int = 17, tolerance: float = MATCH_TOLERANCE
) -> dict[str, float]:
    """Export ``model`` (eval mode, dynamic batch) to ``path`` with ``card`` embedded; verify against torch.

    Returns the max abs difference per head between torch and ONNX Runtime on rendered faces and
    random images; raises RuntimeError when any head differs by more than ``tolerance``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    dummy = torch.zeros(1, 3, card.input.height, card.input.width)
    dynamic = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in HEAD_NAMES}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(HEAD_NAMES),
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
            external_data=False,
        )
    onnx_model = onnx.load(str(path))
    _drop_identities(onnx_model)
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))
    embed_card(path, card)
    diffs = compare_with_onnxruntime(model, path, verification_batch())
    worst = max(diffs.values())
    if worst > tolerance:
        raise RuntimeError(f"{path}: ONNX Runtime differs from torch by up to {worst:.2e} (> {tolerance:g}): {diffs}")
    return diffs
