"""Architecture zoo: torch models of other families than the reference network (tests/zoo/) build, carry the four
card heads, train with group sparsity, and go through ``edge-sdk export`` pruned, on real faces (cpu, jetson,
openvino; rpi in benchmarks/arch_zoo.py): every artifact loads and runs in the device runtime, the report has
per-head metrics and the machine's ISA fields, pruning really removed channels, and a pruned parent that already
misses its gates is reported as such.

Structural on purpose: the models here are trained in-test for a few seconds (tests/zoo/tiny.py, so a fresh
checkout needs no cache), far too little for the default fidelity gates to mean anything. The real gate results (the
models trained 1500 steps, every target, native and emulated AVX2 kernels) are benchmarks/arch_zoo.py's, recorded
in benchmarks/results/arch_zoo.md."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge_sdk.backend import load_backend
from edge_sdk.contract import load_card
from edge_sdk.contract.processing import preprocess
from edge_sdk_export.sources import coerce_card
from tests.conftest import REPO, shared_file
from tests.isa import int8_kernels

ZOO = ("mobilefacenet", "efficientnet_lite")
WIDTHS = {"au_occurrence": 13, "au_intensity": 13, "expression": 8, "valence_arousal": 2}
# Per family, a layer type the reference network has none of: the zoo must really be another family.
TRAITS = {"mobilefacenet": torch.nn.PReLU, "efficientnet_lite": torch.nn.ReLU6}


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_builds_with_four_heads(name: str) -> None:
    module = importlib.import_module(f"tests.zoo.{name}")
    model, card_dict = module.build(fit=False)
    card = coerce_card(card_dict, name)
    assert [h.kind for h in card.heads] == list(WIDTHS)
    assert any(isinstance(m, TRAITS[name]) for m in model.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in model.modules())  # not the reference net's ReLU blocks
    with torch.no_grad():
        out = model(torch.randn(3, 3, card.input.height, card.input.width))
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (3, w) for k, w in WIDTHS.items()}
    assert all(bool(torch.isfinite(v).all()) for v in out.values())


# Each architecture through the CLI, pruned 30 %, targets shared out between the two so the test stays near 40 s on
# 2 cores (the two exports run at once, one process each). rpi is left to benchmarks/arch_zoo.py (the full model x
# target matrix with the 1500-step weights) and to tests/test_byo_export.py (a Keras model through rpi): its
# TensorFlow conversion alone takes 25-40 s here.
TARGETS = {"mobilefacenet": ["cpu", "jetson"], "efficientnet_lite": ["openvino"]}
CALIB = ("single_face.jpg", "multi_face.jpg", "single_face.mp4")  # real faces, three files: one is held out


def _argv(name: str, calib: Path, out: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "edge_sdk", "export", "--model", f"tests/zoo/tiny.py:{name}", "--prune", "0.3",
            "--targets", ",".join(TARGETS[name]), "--calib", str(calib), "--out", str(out), "--no-progress",
            "--detector-model", str(shared_file("models/yunet/yunet_s_640_640.onnx")), "--cache-dir", str(cache),
            "--distill-steps", "10", "--distill-synthetic", "0", "--calib-size", "32", "--latency-runs", "2",
            "--threads", "1"]  # fmt: skip


def test_zoo_architectures_prune_and_export_through_the_cli(tmp_path: Path) -> None:
    calib = tmp_path / "faces"
    calib.mkdir()
    for name in CALIB:
        (calib / name).symlink_to(shared_file(f"data/faces/{name}"))
    procs = {
        name: subprocess.Popen(_argv(name, calib, tmp_path / name, tmp_path / f"cache-{name}"), cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name in ZOO
    }  # fmt: skip
    printed = {name: proc.communicate(timeout=600)[0] for name, proc in procs.items()}
    for name in ZOO:
        # 1: a gate failed (expected after 12 training steps); 0 would be fine too; anything else is a crash
        assert procs[name].returncode in (0, 1), (name, printed[name][-3000:])
        _check_export(name, tmp_path / name, printed[name])


def _check_export(name: str, out: Path, printed: str) -> None:
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    # pruning removed channels of the trained net (params and MACs)
    pruning = report["pruning"]
    assert pruning["applied"] and pruning["params_ratio"] < 0.8 and pruning["macs_ratio"] < 0.8, (name, pruning)
    assert report["heldout"]["rendered"] == 0 and report["heldout"]["real_crops"] > 0  # real faces only
    # the machine the gates were measured on: CPU, ISA flags, int8 kernel class, per row and per gate
    machine = report["machine_info"]
    assert machine["cpu"] and machine["isa_flags"] and machine["int8_kernels"] == int8_kernels()
    rows = {row["target"]: row for row in report["rows"]}
    assert list(rows) == ["pruned-fp32", *TARGETS[name]]
    crops = np.stack([cv2.imread(str(shared_file("data/faces/single_face.jpg")))[:200, :200]] * 2)
    for target in TARGETS[name]:
        row = rows[target]
        assert row["status"] in ("passed", "failed"), row  # judged, not crashed
        assert row["measured_on"] == machine["int8_kernels"]
        assert {g["measured_on"] for g in row["gates"]} == {machine["int8_kernels"]}
        # per-head metrics: all four heads measured and gated
        for metric in ("expression_agreement", "expression_mean_abs_dp", "au_occurrence_f1", "va_ccc", "pspi_mae"):
            assert np.isfinite(row["metrics"][metric]), (name, target, metric, row["metrics"])
        assert "n/a" not in [g["status"] for g in row["gates"]]
        # the artifact loads and runs in the device runtime (edge_sdk only), every head its width
        path = out / row["files"][0]
        card = load_card(path)
        assert card.export.target == target and card.export.pruning_ratio == pytest.approx(0.3)
        outputs = load_backend(path, threads=1).run(preprocess(list(crops), card.input))
        assert {k: v.shape for k, v in outputs.items()} == {k: (2, w) for k, w in WIDTHS.items()}, (name, target)
        assert all(np.isfinite(v).all() for v in outputs.values())
    # 12 training steps and 10 distillation steps: the pruned FP32 model misses the gates against the unpruned one
    # itself. The export must say so plainly, exit 1, and not search float layers (they cannot undo pruning).
    parent = pruning["parent_gates"]
    assert parent["passed"] is False and parent["failing"], (name, parent)
    assert rows["pruned-fp32"]["notes"][0].startswith("misses the gates itself:")
    for target in TARGETS[name]:
        row = rows[target]
        if row["status"] == "failed":
            assert row["reason"].startswith("the pruned FP32 model (--prune 0.3) already misses the gates"), row
            assert f"FAILED {target}: the pruned FP32 model (--prune 0.3) already misses" in printed
        recovery = (row.get("checks") or {}).get("recovery")
        if recovery is not None:
            assert recovery["max_float_layers"] == 0 and not recovery["float_layers"], (name, target, recovery)


def test_group_sparsity_keeps_every_head_of_a_multi_head_model() -> None:
    """Sparse training (GroupSparsity, what the zoo trains with) shrinks backbone channel groups but never the layers
    producing an output: on a four-head model all four head Linears, not just the last one, stay untouched."""
    from edge_sdk_export.pruning import GroupSparsity
    from tests.zoo import mobilefacenet

    model, _ = mobilefacenet.build(fit=False)
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    GroupSparsity(model, (64, 64), reg=1.0).apply(lr=0.05)
    assert model.training  # tracing in eval mode (BatchNorm after the 1x1 GDC output) restores the mode
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    # A head's output rows (weight rows + bias) are never a group; its input columns shrink with the embedding
    # channels they read (one DepGraph group), so only the biases show whether an output row was regularised.
    biases = {name for name in before if name.startswith("heads.") and name.endswith(".bias")}
    assert len(biases) == 4 and not changed & biases, sorted(changed & biases)
    assert any(name.startswith("features.") for name in changed)  # the backbone is regularised
