"""ONNX export of a torch module with its card's tensor names, and the checks every imported model passes.

Nothing here knows the reference network: the input name and layout, the output names and their order
come from the card (:attr:`~edge_sdk.contract.card.ModelCard.output_tensors`). A torch module given to
:func:`export_onnx` is *normalised*: ``forward(x)`` takes the preprocessed float32 batch in the card's
layout and returns a tuple of tensors in ``card.output_tensors`` order (``edge_sdk_export.sources`` wraps
modules that return a dict or a single tensor).

Export uses the TorchScript exporter (``dynamo=False``): with torch 2.13 the dynamo exporter only has
opset-18 implementations, its down-conversion to opset 17 fails on ``ReduceMean`` (axes as an input) and
it silently leaves an opset-18 model. The TorchScript exporter writes a clean opset-17 graph
(Conv/Relu/Add/GlobalAveragePool/Gemm) that ONNX Runtime's quantizer, OpenVINO, onnx2tf and TensorRT
all take as is.

Every import (a torch module exported here, a Keras or TFLite model converted by
:mod:`edge_sdk_export.keras_import`) is compared with its source on the same preprocessed faces
(:func:`verification_batch`): each head may differ by at most :data:`MATCH_TOLERANCE`, or
:func:`check_match` raises an error naming the head and the difference.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch

from edge_sdk.backend.base import to_layout as runtime_layout
from edge_sdk.contract.card import ModelCard
from edge_sdk.errors import ArtifactError
from edge_sdk_export.onnx_card import embed_card

logger = logging.getLogger(__name__)

MATCH_TOLERANCE = 1e-4
DEFAULT_OPSET = 17
BATCH_DIM = "batch"


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


def to_layout(batch_nchw: np.ndarray, card: ModelCard) -> np.ndarray:
    """A preprocessed NCHW batch (what :func:`edge_sdk.contract.processing.preprocess` returns) in the
    card's layout: unchanged for NCHW, transposed to NHWC (C-contiguous) for an NHWC card."""
    if card.input.layout == "NHWC":
        return np.ascontiguousarray(runtime_layout(batch_nchw, "NHWC"))
    return batch_nchw


def verification_crops(
    card: ModelCard, seed: int = 0, rendered: int = 4, random: int = 2, real: np.ndarray | None = None
) -> np.ndarray:
    """BGR uint8 crops at the card's input size: ``rendered`` synthetic faces, ``random`` uniform-noise
    images, then the ``real`` face crops given (any size; resized here)."""
    import cv2

    from edge_sdk_export.calibration import synthetic_crops

    height, width = card.input.height, card.input.width
    parts = [synthetic_crops(height, width, rendered, seed).crops] if rendered else []
    if random:
        parts.append(np.random.default_rng(seed).integers(0, 256, (random, height, width, 3), dtype=np.uint8))
    if real is not None and len(real):
        parts.append(np.stack([cv2.resize(c, (width, height), interpolation=cv2.INTER_AREA) for c in real]))
    return np.concatenate(parts)


def verification_batch(
    card: ModelCard | None = None,
    seed: int = 0,
    rendered: int = 4,
    random: int = 2,
    real: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`verification_crops` preprocessed as ``card`` says, float32 in the card's layout.

    Without a card: the reference network's card (112x112 RGB NCHW, mean/std 0.5)."""
    from edge_sdk.contract.processing import preprocess

    if card is None:
        from edge_sdk.contract.card import Provenance
        from edge_sdk_export.network import reference_card

        card = reference_card(Provenance("verification", synthetic_demo=True))
    crops = verification_crops(card, seed, rendered, random, real)
    return to_layout(preprocess(list(crops), card.input), card)


def head_diffs(card: ModelCard, expected: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> dict[str, float]:
    """Max |expected - got| per card head; both hold one array per ``card.output_tensors`` entry, in order."""
    index = {name: i for i, name in enumerate(card.output_tensors)}
    diffs: dict[str, float] = {}
    for head in card.heads:
        a = np.asarray(expected[index[head.tensor]], np.float64)
        b = np.asarray(got[index[head.tensor]], np.float64)
        if a.shape != b.shape:
            raise ArtifactError(
                f"head '{head.name}' (output '{head.tensor}'): the source gives shape {list(a.shape)}, "
                f"the ONNX model {list(b.shape)}"
            )
        if head.columns is not None:
            a, b = a[..., head.columns[0] : head.columns[1]], b[..., head.columns[0] : head.columns[1]]
        diffs[head.name] = float(np.abs(a - b).max()) if a.size else 0.0
    return diffs


def check_match(
    diffs: dict[str, float], what: str, card: ModelCard, tolerance: float = MATCH_TOLERANCE, on: str = "faces"
) -> None:
    """ArtifactError naming the first head whose difference exceeds ``tolerance`` (NaN counts as a mismatch)."""
    tensors = {h.name: h.tensor for h in card.heads}
    for name, diff in diffs.items():
        if not diff <= tolerance:
            raise ArtifactError(
                f"{what}: head '{name}' (output '{tensors.get(name, name)}') differs from the source model by "
                f"{diff:.3g} (max abs, > {tolerance:g}) on {on}; the conversion is not faithful"
            )


def run_onnx(path: str | Path, card: ModelCard, batch: np.ndarray) -> list[np.ndarray]:
    """ONNX Runtime (CPU) outputs of the model at ``path`` for ``batch`` (card layout), in
    ``card.output_tensors`` order."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(list(card.output_tensors), {card.input.name: batch})


def torch_outputs(model: torch.nn.Module, batch: np.ndarray) -> list[np.ndarray]:
    """A normalised module's outputs on ``batch`` (eval mode, no grad)."""
    model.eval()
    with torch.no_grad():
        return [t.detach().cpu().numpy() for t in model(torch.from_numpy(batch))]


def compare_with_onnxruntime(
    model: torch.nn.Module, onnx_path: str | Path, batch: np.ndarray, card: ModelCard
) -> dict[str, float]:
    """Max |torch - ONNX Runtime| per card head on ``batch`` (card layout)."""
    return head_diffs(card, torch_outputs(model, batch), run_onnx(onnx_path, card, batch))


def input_shape(card: ModelCard, batch: int = 1) -> tuple[int, int, int, int]:
    """The input shape of ``batch`` images in the card's layout."""
    return (batch, *card.input.shape[1:])


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    card: ModelCard,
    opset: int = DEFAULT_OPSET,
    tolerance: float = MATCH_TOLERANCE,
    real: np.ndarray | None = None,
) -> dict[str, float]:
    """Export a normalised ``model`` (eval mode, dynamic batch) to ``path`` with the card's input and output
    names and ``card`` embedded; verify it against torch.

    Returns the max abs difference per card head between torch and ONNX Runtime on rendered faces,
    random images and the ``real`` face crops given (BGR uint8); raises ArtifactError naming the head
    when one differs by more than ``tolerance``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    outputs = list(card.output_tensors)
    dummy = torch.zeros(input_shape(card))
    dynamic = {card.input.name: {0: BATCH_DIM}, **{name: {0: BATCH_DIM} for name in outputs}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=[card.input.name],
            output_names=outputs,
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
    diffs = compare_with_onnxruntime(model, path, verification_batch(card, real=real), card)
    check_match(diffs, f"{path.name} (torch -> ONNX)", card, tolerance, "rendered, random and real crops")
    logger.info("exported %s; max |torch - onnxruntime| per head: %s", path.name, diffs)
    return diffs


def rename_io(model: onnx.ModelProto, input_name: str, output_names: Sequence[str]) -> None:
    """Rename the graph's single input to ``input_name`` and its outputs, in order, to ``output_names``
    (in place; every node that reads or writes them follows)."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ArtifactError(f"expected a model with one image input, got {len(inputs)}: {[i.name for i in inputs]}")
    if len(graph.output) != len(output_names):
        raise ArtifactError(
            f"the model has {len(graph.output)} outputs {[o.name for o in graph.output]} but the card's heads "
            f"read {len(output_names)}: {list(output_names)}"
        )
    mapping = {inputs[0].name: input_name}
    mapping.update({o.name: new for o, new in zip(graph.output, output_names, strict=True)})
    mapping = {old: new for old, new in mapping.items() if old != new}
    if not mapping:
        return
    taken = {name for node in graph.node for name in (*node.input, *node.output)} | initializers
    clash = (taken - set(mapping)) & set(mapping.values())
    if clash:
        raise ArtifactError(f"cannot rename the model's inputs/outputs: {sorted(clash)} already name other tensors")
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = mapping.get(value.name, value.name)
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = mapping.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = mapping.get(name, name)


def make_batch_dynamic(model: onnx.ModelProto) -> None:
    """Make the first axis of the graph's inputs and outputs the symbolic ``batch`` dimension (in place)."""
    initializers = {i.name for i in model.graph.initializer}
    for value in (*model.graph.input, *model.graph.output):
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM
