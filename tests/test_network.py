"""The reference network: budget, ONNX export with an embedded card, and heads named as the card says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edge_sdk.contract.card import AU_LABELS, EXPRESSION_LABELS, Provenance
from edge_sdk.contract.card_io import read_onnx_metadata_card as read_card
from edge_sdk.model import load_card
from edge_sdk_export.network import (
    BACKBONES,
    DEFAULT_BACKBONE,
    HEAD_NAMES,
    MAC_BUDGET,
    PARAM_BUDGET,
    build_network,
    count_params,
    reference_card,
)
from edge_sdk_export.onnx_card import embed_card
from edge_sdk_export.onnx_io import MATCH_TOLERANCE, export_onnx
from edge_sdk_export.pruning import count_ops


def _randomised(backbone: str) -> torch.nn.Module:
    """A network with non-trivial BatchNorm statistics, so export mistakes show up in the outputs."""
    torch.manual_seed(0)
    model = build_network(backbone)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_budget(backbone: str) -> None:
    model = build_network(backbone)
    assert count_params(model) <= PARAM_BUDGET
    assert count_ops(model, (112, 112))[0] <= MAC_BUDGET


def test_mac_counter_counts_a_known_conv() -> None:
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1, bias=False))
    assert count_ops(conv, (112, 112))[0] == 56 * 56 * 8 * 3 * 9  # torch-pruning's counter, as export reports


def test_heads_have_the_contract_widths() -> None:
    out = build_network().eval().heads(torch.zeros(2, 3, 112, 112))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "au_occurrence": (2, len(AU_LABELS)),
        "au_intensity": (2, len(AU_LABELS)),
        "expression": (2, len(EXPRESSION_LABELS)),
        "valence_arousal": (2, 2),
    }


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_onnx_export_matches_torch_and_carries_the_card(backbone: str, tmp_path: Path) -> None:
    card = reference_card(Provenance("unit test", synthetic_demo=True), name=f"test-{backbone}")
    path = tmp_path / "net.onnx"
    model = _randomised(backbone)
    diffs = export_onnx(model, path, card)
    assert set(diffs) == set(HEAD_NAMES)
    assert max(diffs.values()) <= MATCH_TOLERANCE

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(HEAD_NAMES)
    batch = np.random.default_rng(1).standard_normal((3, 3, 112, 112)).astype(np.float32)  # dynamic batch
    outputs = session.run(None, {"image": batch})
    assert [o.shape[0] for o in outputs] == [3, 3, 3, 3]
    with torch.no_grad():
        expected = model(torch.from_numpy(batch))
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(got, want.numpy(), atol=MATCH_TOLERANCE)

    loaded = load_card(path)
    assert loaded == card == read_card(path)
    assert [h.name for h in loaded.heads] == list(HEAD_NAMES)
    assert loaded.has_pain


def test_embed_card_replaces_the_previous_card(tmp_path: Path) -> None:
    path = tmp_path / "net.onnx"
    first = reference_card(Provenance("first", synthetic_demo=True))
    export_onnx(build_network(DEFAULT_BACKBONE), path, first)
    second = first.with_changes(name="second")
    embed_card(path, second)
    assert read_card(path).name == "second"
    assert load_card(path).name == "second"


def test_default_backbone_is_prunable_with_torch_pruning() -> None:
    tp = pytest.importorskip("torch_pruning")
    model = build_network(DEFAULT_BACKBONE).eval()
    example = torch.zeros(1, 3, 112, 112)
    heads = list(model.head_layers.values())
    pruner = tp.pruner.MagnitudePruner(
        model, example, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=0.5, ignored_layers=heads
    )
    pruner.step()
    assert count_ops(model, (112, 112))[0] < 0.5 * count_ops(build_network(DEFAULT_BACKBONE), (112, 112))[0]
    assert [tuple(t.shape) for t in model(example)] == [(1, 13), (1, 13), (1, 8), (1, 2)]
