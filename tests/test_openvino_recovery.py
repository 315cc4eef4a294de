"""OpenVINO accuracy recovery: when the all-INT8 IR misses a gate, NNCF's accuracy control (steered by the
export's gates) ranks the layers, and the IR is quantized again with the fewest of them left in float that pass;
kept only within ``--max-float-layers``.

Real NNCF and OpenVINO on a small random-weight multitask net, with a VA CCC gate strict enough that its
all-INT8 IR misses it.
"""

from __future__ import annotations

import doctest
from pathlib import Path

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
from edge_sdk_export.recovery_openvino import ranked_layers, recover_openvino
from tests.model_factory import build_multitask_onnx

CAN_CAP = bool(cappable_kernel_classes(describe_cpu()))
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


def _recover(net: dict, folder: Path, budget: int):
    xml = quantize_openvino(net["onnx"], folder / "m.xml", net["card"], net["calib"])

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

    settings = RecoverySettings(budget, STRICT, threads=1, latency_runs=3)
    return xml, recover_openvino(xml, net["card"], net["heldout"], net["ref"], settings, folder / "w", again)


@pytest.fixture(scope="module")
def recovered(net: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recovery]:
    """One recovery run (~20 s) shared by the tests that read its result."""
    return _recover(net, tmp_path_factory.mktemp("recovered"), budget=8)


def test_recovery_keeps_layers_in_float_until_every_gate_passes(net: dict, recovered: tuple[Path, Recovery]) -> None:
    xml, recovery = recovered
    assert not recovery.baseline.passed  # the all-INT8 IR misses the strict gate
    assert recovery.passed and recovery.reason is None
    weights = int8_weight_ops(xml)  # the IR written is the recovered one
    # Layers NNCF ranked can be weightless (a pooling whose input it quantized); the weighted ones hold float weights.
    named = set(recovery.float_layers)
    assert named and named & set(weights) and {n for n, q in weights.items() if not q} == named & set(weights)
    check = recovery.to_check()
    assert check["metrics"]["va_ccc"] >= 0.9999 > check["all_int8_metrics"]["va_ccc"]
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
    (judged,) = judge_capped(xml, net["card"], net["heldout"], net["ref"], STRICT, describe_cpu(), tmp_path / "c")
    assert judged.error is None and judged.passed, judged.summary()


def test_without_nncf_log_lines_the_ranking_ir_gives_the_layers(recovered: tuple[Path, Recovery]) -> None:
    """The revert order comes from NNCF's log; a changed log format falls back to the ranking IR's float layers."""
    xml, recovery = recovered
    folder = xml.parent / "w" / "openvino_recovery"
    ranking, all_int8 = folder / "ranking.xml", folder / f"{xml.stem}.all_int8.xml"
    assert ranked_layers(["a", "b"], ranking, all_int8) == ["a", "b"]
    fallback = ranked_layers([], ranking, all_int8)
    quantized = int8_weight_ops(all_int8)
    assert fallback and all(quantized[name] and not int8_weight_ops(ranking)[name] for name in fallback)


def test_over_budget_the_all_int8_ir_stays(net: dict, tmp_path: Path) -> None:
    xml, recovery = _recover(net, tmp_path, budget=1)
    assert not recovery.passed
    assert all(int8_weight_ops(xml).values())  # nothing in float in the IR that ships
    assert "--max-float-layers 1" in recovery.reason and recovery.best is not None


def test_gate_score_examples() -> None:
    assert doctest.testmod(edge_sdk_export.fidelity).failed == 0
