"""Bring your own model, end to end through ``edge-sdk export``: a PyTorch network that is not the reference
network (tests/byo_torch_model.py, MobileNetV3-small style, dict outputs) pruned with ``--prune 0.3``, and a
real third-party Keras model (../shared) quantized for two targets with its card from examples/cards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.backend import load_backend
from edge_sdk.cli import main
from edge_sdk.cpu import cpu_flags
from tests.conftest import REPO, shared_file

BYO_TORCH = REPO / "tests" / "byo_torch_model.py"


def _outputs(path: Path, card_input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    backend = load_backend(path, threads=1)
    batch = np.zeros((2, *card_input_shape[1:]), np.float32)  # NCHW: backends put it in their own layout
    return {name: value.shape for name, value in backend.run(batch).items()}


def test_torch_model_prunes_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(
        ["export", "--model", f"{BYO_TORCH}:build", "--prune", "0.3", "--targets", "cpu,openvino"]
        + ["--calib", "synthetic", "--calib-size", "64", "--synthetic-heldout", "64", "--distill-steps", "30"]
        + ["--max-float-layers", "0"]  # this test is about pruning; accuracy recovery has tests/test_recovery.py
        + ["--latency-runs", "1", "--out", str(out), "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    )
    assert code in (0, 1)  # 30 distillation steps may leave a gate unmet; the artifacts must still be right
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["model"]["kind"] == "pytorch"
    assert report["pruning"]["applied"] and report["pruning"]["params_ratio"] <= 0.6  # >= 40 % fewer parameters
    rows = {row["target"]: row for row in report["rows"]}
    assert set(rows) == {"pruned-fp32", "cpu", "openvino"}
    pruned = out / rows["pruned-fp32"]["files"][0]
    from edge_sdk.contract import load_card

    card = load_card(pruned)
    shape = (1, card.input.channels, card.input.height, card.input.width)
    expected = {"expression": (2, 8), "valence_arousal": (2, 2)}
    assert _outputs(pruned, shape) == expected
    for target in ("cpu", "openvino"):
        row = rows[target]
        if target == "openvino" and str(row.get("reason", "")).startswith("native crash") and "amx_int8" in cpu_flags():
            # Measured 2026-12-03 (Intel Xeon, amx_int8, openvino 2026.4.1): this pruned MobileNetV3-small INT8 IR
            # segfaults in OpenVINO's CPU plugin with its AMX kernels at batch 1 (f32 or bf16 hint alike) and runs
            # with ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI or AVX2. The export isolates the crash and names it.
            pytest.xfail(f"OpenVINO native crash on an AMX CPU (known runtime bug): {row['reason']}")
        assert row["status"] in ("passed", "failed"), row
        parent_misses = "the pruned FP32 model (--prune 0.3) already misses"
        assert not row.get("reason") or row["reason"].startswith(parent_misses), row
        assert _outputs(out / rows[target]["files"][0], shape) == expected


def test_prune_on_a_keras_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = shared_file("models/face_classification/tiny_XCEPTION_KDEF.hdf5")
    card = REPO / "examples" / "cards" / "tiny_XCEPTION_KDEF.card.json"
    code = main(
        ["export", "--model", str(model), "--card", str(card), "--prune", "0.3", "--targets", "cpu"]
        + ["--calib", "synthetic", "--out", str(tmp_path / "out"), "--no-progress"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--prune 0.3" in err and "keras" in err and not (tmp_path / "out").exists()


def test_keras_model_through_two_targets(tmp_path: Path) -> None:
    """The small real Keras model (1-channel GRAY, NHWC, box crop) to rpi and cpu on real faces."""
    model = shared_file("models/face_classification/tiny_XCEPTION_KDEF.hdf5")
    card = REPO / "examples" / "cards" / "tiny_XCEPTION_KDEF.card.json"
    yunet = shared_file("models/yunet/yunet_s_640_640.onnx")
    out = tmp_path / "out"
    code = main(
        ["export", "--model", str(model), "--card", str(card), "--targets", "rpi,cpu"]
        + ["--calib", str(shared_file("data/faces/single_face.mp4").parent)]
        + ["--detector", "yunet", "--detector-model", str(yunet)]
        + ["--calib-size", "64", "--latency-runs", "1", "--out", str(out), "--no-progress"]
        + ["--cache-dir", str(tmp_path / "cache")]
    )
    assert code in (0, 1)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["heldout"]["rendered"] == 0 and report["heldout"]["real_crops"] > 0  # real faces only
    for row in report["rows"]:
        assert row["status"] in ("passed", "failed") and not row.get("reason"), row
        assert row["metrics"]["expression_agreement"] is not None
