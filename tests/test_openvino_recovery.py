"""OpenVINO accuracy recovery: when the all-INT8 IR misses a gate, the fewest of its activation quantizers are
removed that make every gate pass, kept only within ``--max-float-layers``; failing that, NNCF's accuracy control
(steered by the export's gates) ranks the layers and the IR is quantized again with some of them left in float.

Real NNCF and OpenVINO on a small random-weight multitask net, with a VA CCC gate strict enough that its
all-INT8 IR misses it.
"""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edge_sdk_export.fidelity
from edge_sdk.backend import load_backend
from edge_sdk.backend.onnxruntime_backend import open_session
from edge_sdk.contract.card_io import load_card
from edge_sdk.cpu import describe_cpu
from edge_sdk_export.capped_isa import cappable_kernel_classes, judge_capped
from edge_sdk_export.fidelity import Gate
from edge_sdk_export.quant_openvino import FIRST_LAYER_OVERFLOW_FIX, int8_weight_ops, quantize_openvino
from edge_sdk_export.recovery import Recovery, RecoverySettings
from edge_sdk_export.recovery_openvino import _ir_judge, nncf_ranked_search, ranked_layers, recover_openvino
from tests.model_factory import build_multitask_onnx

CAN_CAP = bool(cappable_kernel_classes(describe_cpu()))
# Measured on this net: all-INT8 IR 0.9949, its GAP output in float 0.9985, no activation quantized (weights still
# INT8) 0.9993: quantizers alone can meet TENSORS but never STRICT, which needs float weights (NNCF's fallback).
TENSORS = {"va_ccc": Gate("va_ccc", 0.998, True, "valence_arousal")}
STRICT = {"va_ccc": Gate("va_ccc", 0.9999, True, "valence_arousal")}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("ov_recovery")
    onnx_path = build_multitask_onnx(folder / "m.onnx")
    card = load_card(onnx_path)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((24, 3, 64, 64)).astype(np.float32)
    heldout = rng.standard_normal((32, 3, 64, 64)).astype(np.float32)
    names = list(card.output_tensors)
    outputs = open_session(onnx_path, threads=1).run(names, {card.input.name: heldout})
    ref = dict(zip(names, outputs, strict=True))
    return {"onnx": onnx_path, "card": card, "calib": calib, "heldout": heldout, "ref": ref}


def _again(net: dict):  # noqa: ANN202 (test helper: the exporter's re-quantizing function)
    def again(out: Path, validation=None, max_iterations=None, float_layers=()) -> Path:  # noqa: ANN001
        drop = None if validation is None else 0.0
        return quantize_openvino(
            net["onnx"],
            out,
            net["card"],
            net["calib"],
            validation,
            drop,
            FIRST_LAYER_OVERFLOW_FIX,
            max_iterations,
            float_layers,
        )

    return again


def _recover(net: dict, folder: Path, budget: int, gates: dict[str, Gate] = TENSORS):
    xml = quantize_openvino(net["onnx"], folder / "m.xml", net["card"], net["calib"])
    settings = RecoverySettings(budget, gates, threads=1, latency_runs=3)
    return xml, recover_openvino(xml, net["card"], net["heldout"], net["ref"], settings, folder / "w", _again(net))


def _fake_quantizers(xml: Path) -> set[str]:
    import openvino as ov

    return {
        op.get_friendly_name()
        for op in ov.Core().read_model(str(xml)).get_ordered_ops()
        if op.get_type_name() == "FakeQuantize"
    }


@pytest.fixture(scope="module")
def recovered(net: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recovery]:
    """One recovery run (~20 s) shared by the tests that read its result."""
    return _recover(net, tmp_path_factory.mktemp("recovered"), budget=8)


def test_recovery_keeps_tensors_in_float_until_every_gate_passes(net: dict, recovered: tuple[Path, Recovery]) -> None:
    xml, recovery = recovered
    assert not recovery.baseline.passed  # the all-INT8 IR misses the strict gate
    assert recovery.passed and recovery.reason is None
    all_int8 = xml.parent / "w" / "openvino_recovery" / f"{xml.stem}.all_int8.xml"
    removed = _fake_quantizers(all_int8) - _fake_quantizers(xml)  # the IR written is the recovered one
    assert removed and removed == set(recovery.float_layers) == set(recovery.float_nodes)
    assert all(int8_weight_ops(xml).values())  # its weights stay INT8: only activations went float
    check = recovery.to_check()
    assert check["metrics"]["va_ccc"] >= 0.998 > check["all_int8_metrics"]["va_ccc"]
    assert check["sensitivity"] and check["sensitivity"][0]["layer"] in _fake_quantizers(all_int8)
    assert {"size_bytes", "size_bytes_all_int8", "latency_ratio"} <= set(check["cost"])
    assert "kept" in recovery.note() and recovery.float_layers[0] in recovery.note()
    # Its float layers run in f32, not the bf16 OpenVINO picks by default on AMX / AVX512-BF16 CPUs.
    assert load_backend(xml, threads=1, card=net["card"]).info.extra["inference_precision"] == "f32"


@pytest.mark.skipif(not CAN_CAP, reason="needs an x86 host with VNNI/AMX and AVX2 (oneDNN ISA cap)")
def test_a_recovered_ir_is_judged_on_avx2_kernels_too(
    net: dict, recovered: tuple[Path, Recovery], tmp_path: Path
) -> None:
    """Its float layers used to run in bf16 on this kind of host, which a capped oneDNN cannot run (no verdict)."""
    xml, recovery = recovered
    assert recovery.float_layers
    (judged,) = judge_capped(xml, net["card"], net["heldout"], net["ref"], TENSORS, describe_cpu(), tmp_path / "c")
    assert judged.error is None and judged.passed, judged.summary()


@pytest.fixture(scope="module")
def nncf_ranked(net: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    """The fallback alone: NNCF's accuracy control ranks, the IR is quantized again with ranked layers in float."""
    folder = tmp_path_factory.mktemp("nncf_ranked")
    xml = quantize_openvino(net["onnx"], folder / "m.xml", net["card"], net["calib"])
    settings = RecoverySettings(8, STRICT, threads=1, latency_runs=3)
    judge = _ir_judge(net["card"], net["heldout"], net["ref"], settings, folder / "w")
    baseline = judge.judge(xml, ())
    result = nncf_ranked_search(xml, net["card"], net["ref"], judge, baseline, 8, _again(net), folder)
    return xml, folder, result


def test_nncf_ranking_leaves_layers_out_of_quantization(nncf_ranked: tuple[Path, Path, Any]) -> None:
    _, _, (best, kept, ranked) = nncf_ranked
    assert best.passed and kept is not None and best.float_layers == ranked  # STRICT passes with layers in float
    weights = int8_weight_ops(kept)  # the layers it names hold float weights (weightless ones can be named too)
    named = set(best.float_layers)
    assert named & set(weights) and {n for n, q in weights.items() if not q} == named & set(weights)


def test_without_nncf_log_lines_the_ranking_ir_gives_the_layers(nncf_ranked: tuple[Path, Path, Any]) -> None:
    """The revert order comes from NNCF's log; a changed log format falls back to the ranking IR's float layers."""
    all_int8, folder, _ = nncf_ranked
    ranking = folder / "ranking.xml"
    assert ranked_layers(["a", "b"], ranking, all_int8) == ["a", "b"]
    fallback = ranked_layers([], ranking, all_int8)
    quantized = int8_weight_ops(all_int8)
    assert fallback and all(quantized[name] and not int8_weight_ops(ranking)[name] for name in fallback)


def test_over_budget_the_all_int8_ir_stays(net: dict, tmp_path: Path) -> None:
    unreachable = {"va_ccc": Gate("va_ccc", 1.01, True, "valence_arousal")}
    xml, recovery = _recover(net, tmp_path, budget=1, gates=unreachable)
    assert not recovery.passed
    all_int8 = quantize_openvino(net["onnx"], tmp_path / "again.xml", net["card"], net["calib"])
    assert _fake_quantizers(xml) == _fake_quantizers(all_int8) and all(int8_weight_ops(xml).values())
    assert "--max-float-layers 1" in recovery.reason and recovery.best is not None
    assert (tmp_path / "w" / "openvino_recovery" / "ranking.xml").exists()  # NNCF's ranking was tried too


def test_gate_score_examples() -> None:
    assert doctest.testmod(edge_sdk_export.fidelity).failed == 0
