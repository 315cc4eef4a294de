"""Accuracy recovery for the rpi target's full-integer ``.tflite`` (edge_sdk_export.quant_tflite.recover_tflite).

On the tiny 4-head test network with a gate on the valence/arousal head's CCC: the all-INT8 file is
judged, each weighted op is re-quantized alone in float through TensorFlow's QuantizationDebugger
(denylisted) and ranked, the best kept, and the mixed file must be closer to FP32, keep the card's int8
input (same scale/zero point), have float32 outputs, load in a child and through the LiteRT backend with its
sidecar card. A gate between the two errors must then pass with exactly that one layer in float; an
unreachable gate spends the budget, keeps the all-INT8 file and says why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_sdk.contract.card import ExportInfo, ModelCard
from edge_sdk_export.fidelity import Gate
from edge_sdk_export.recovery import EXPLORE_FACTOR, RecoverySettings
from tests.model_factory import build_multitask_onnx, multitask_card

SIZE = 32


def _va_gate(threshold: float) -> dict[str, Gate]:
    # random weights: the expression head is near uniform (its error ~1e-6); valence/arousal is continuous
    return {"va_ccc": Gate("va_ccc", threshold, True, "valence_arousal")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from edge_sdk.backend import load_backend

    root = tmp_path_factory.mktemp("tflite-recovery")
    fp32 = build_multitask_onnx(root / "tiny_fp32.onnx", size=SIZE)
    card = ModelCard.from_dict(multitask_card(SIZE))
    card = card.with_changes(export=ExportInfo(target="rpi", precision="int8", tool="tests"))
    rng = np.random.default_rng(0)
    calib = rng.normal(0, 1, (16, 3, SIZE, SIZE)).astype(np.float32)
    heldout = rng.normal(0, 1, (32, 3, SIZE, SIZE)).astype(np.float32)
    ref = load_backend(fp32, threads=1).run(heldout)
    return {"root": root, "fp32": fp32, "card": card, "calib": calib, "heldout": heldout, "ref": ref}


def _export(tiny: dict, name: str, threshold: float, budget: int):  # noqa: ANN202 (test helper)
    from edge_sdk_export.quant_tflite import TfliteRecoveryInputs, quantize_tflite_recovering

    settings = RecoverySettings(max_float_layers=budget, gates=_va_gate(threshold), threads=1, latency_runs=3)
    inputs = TfliteRecoveryInputs(tiny["heldout"], tiny["ref"], settings, tiny["root"] / f"work-{name}")
    out = tiny["root"] / name
    out.mkdir()
    return quantize_tflite_recovering(tiny["fp32"], out / f"{name}.tflite", tiny["card"], tiny["calib"], inputs)


def test_unreachable_gate_spends_the_budget_and_keeps_the_int8_file(tiny: dict) -> None:
    from edge_sdk_export.quant_tflite import float_ops

    path, card, recovery = _export(tiny, "unreachable", 1.0, budget=1)
    assert recovery is not None and recovery.needed and not recovery.passed
    assert float_ops(path.read_bytes()) == []  # all-INT8 file kept
    assert recovery.reason is not None and "--max-float-layers 1" in recovery.reason
    assert 1 <= len(recovery.tried) <= EXPLORE_FACTOR and recovery.best is not None
    ranked = [entry["layer"] for entry in recovery.ranking]  # every weighted op was judged alone in INT8, ranked
    assert recovery.tried[0] in ranked and recovery.evaluations > len(ranked)
    # the head in float is closer to FP32 than all-INT8 (the mechanism the passing case relies on)
    before = recovery.baseline.metrics["va_ccc"]
    after = recovery.best.metrics["va_ccc"]
    assert after > before
    tiny["errors"] = (before, after)


def test_one_op_in_float_passes_a_gate_all_int8_misses(tiny: dict) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from edge_sdk.backend import load_backend
    from edge_sdk_export.artifacts import write_sidecar
    from edge_sdk_export.convert import check_litert_loads
    from edge_sdk_export.quant_tflite import WEIGHTED_OPS, float_ops, tflite_ops

    if "errors" not in tiny:
        pytest.skip("needs test_unreachable_gate_spends_the_budget_and_keeps_the_int8_file")
    before, after = tiny["errors"]
    path, card, recovery = _export(tiny, "mixed", (before + after) / 2, budget=1)
    assert recovery is not None and recovery.needed and recovery.passed and recovery.reason is None
    assert len(recovery.float_layers) == 1
    flat = path.read_bytes()
    assert float_ops(flat) == list(recovery.float_layers)
    ops = tflite_ops(flat)
    weighted = [op for op in ops if op["op"] in WEIGHTED_OPS]
    assert sum(op["input_dtypes"][0] == "float32" for op in weighted) == 1  # only the kept op: the rest stays int8
    interpreter = Interpreter(model_content=flat)
    (inp,) = interpreter.get_input_details()
    assert np.dtype(inp["dtype"]) == np.int8
    assert card.input.dtype == "int8" and card.input.scale == pytest.approx(inp["quantization"][0])
    assert card.input.zero_point == inp["quantization"][1]
    dtypes = {d["name"]: np.dtype(d["dtype"]) for d in interpreter.get_output_details()}
    assert all(dtypes[h.output] == np.float32 for h in card.heads)
    cost = recovery.to_check()["cost"]
    assert cost["size_bytes"] > cost["size_bytes_all_int8"] and cost["latency_ms"] > 0
    check_litert_loads(path)
    write_sidecar(card, [path])
    backend = load_backend(path, threads=1)  # the sidecar card
    out = backend.run(tiny["heldout"][:4])
    assert all(np.isfinite(v).all() for v in out.values())
    assert set(out) == set(tiny["ref"])


def test_int8_file_that_passes_is_left_alone(tiny: dict, tmp_path: Path) -> None:
    from edge_sdk_export.quant_tflite import float_ops

    path, card, recovery = _export(tiny, "passing", 0.0, budget=4)
    assert recovery is not None and not recovery.needed and recovery.to_check()["float_layers"] == []
    assert float_ops(path.read_bytes()) == []
    assert card.input.dtype == "int8"
