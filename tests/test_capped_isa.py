"""Issue #16 item 1 for OpenVINO: an IR is judged natively on a smaller x86 CPU's int8 kernels by capping
oneDNN's ISA (edge_sdk_export.capped_isa), and the export keeps an IR that passes on both.

The mechanism is checked with a real probe: one 64-channel 1x1 convolution quantized by NNCF without overflow
fix, fed its calibration maximum, so every u8 x s8 pair sum is 255 * 127 * 2 = 64,770. x86 int8 kernels without
VNNI (``vpmaddubsw``) saturate it at 32,767; VNNI/AMX kernels do not. On a VNNI host the capped child must
return the saturated result and the uncapped one the exact result: if OpenVINO ever stops honouring
``ONEDNN_MAX_CPU_ISA``, this test fails instead of the export silently judging VNNI twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from edge_sdk.contract.card import ModelCard, ValidatedOn
from edge_sdk.cpu import CpuInfo, describe_cpu, kernels_notice
from edge_sdk.errors import ContractError
from edge_sdk_export.capped_isa import CappedJudgement, cappable_kernel_classes, capped_env, judge_capped
from tests.model_factory import multitask_card

VNNI_XEON = CpuInfo("Xeon", "x86_64", ("avx2", "avx512f", "avx512_vnni", "amx_int8"), "x86-vnni", 2)
HASWELL = CpuInfo("Core i5-4590", "x86_64", ("avx2", "fma"), "x86-no-vnni", 4)
PI5 = CpuInfo("Cortex-A76", "aarch64", ("asimd", "asimddp"), "arm-dotprod", 4)
CAN_CAP = bool(cappable_kernel_classes(describe_cpu()))


def test_only_a_vnni_x86_host_can_cap_down_to_avx2():
    assert cappable_kernel_classes(VNNI_XEON) == {"x86-no-vnni": "AVX2"}
    assert cappable_kernel_classes(HASWELL) == {}  # already the smallest class: the native judgement is it
    assert cappable_kernel_classes(PI5) == {}  # oneDNN's x86 caps mean nothing on ARM
    no_avx2 = replace(VNNI_XEON, isa_flags=("avx512_vnni",))
    assert cappable_kernel_classes(no_avx2) == {}  # the cap needs the ISA it caps to


PROBE = """
import sys
import numpy as np
import onnx
import openvino as ov
import nncf
from onnx import TensorProto, helper, numpy_helper
from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

folder, channels = sys.argv[1], 64
if sys.argv[2] == "build":
    weights = numpy_helper.from_array(np.ones((1, channels, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])], "u8s8_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 1])], [weights])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), f"{folder}/p.onnx")
    data = nncf.Dataset([np.ones((1, channels, 1, 1), np.float32), np.zeros((1, channels, 1, 1), np.float32)])
    advanced = AdvancedQuantizationParameters(overflow_fix=OverflowFix.DISABLE)
    quantized = nncf.quantize(ov.convert_model(f"{folder}/p.onnx"), data, subset_size=2, advanced_parameters=advanced)
    ov.save_model(quantized, f"{folder}/p.xml", compress_to_fp16=False)
# built now or before: run it on this process's int8 kernels, fed its calibration maximum
compiled = ov.Core().compile_model(f"{folder}/p.xml", "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
print(float(compiled(np.ones((1, channels, 1, 1), np.float32))[0].ravel()[0]))
"""


def _probe(folder, step: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(folder), step], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]  # the last line: NNCF may print progress before it


@pytest.mark.skipif(not CAN_CAP, reason="needs an x86 host with VNNI and AVX2 (nothing smaller to cap to here)")
def test_the_avx2_cap_runs_the_saturating_kernels(tmp_path):
    native = float(_probe(tmp_path, "build"))  # built, then run uncapped
    capped = float(_probe(tmp_path, "run", capped_env("AVX2")))
    # the pair sums saturate at 32,767 of 64,770: the capped result is that share of the exact one
    assert capped == pytest.approx(native * 32767 / 64770, rel=0.01), (native, capped)


def test_a_card_records_the_capped_classes_and_the_notice_reads_them():
    validated = ValidatedOn("x86-vnni", "Xeon", passed=True, also_on={"x86-no-vnni": True})
    card = ModelCard.from_dict(multitask_card())
    card = card.with_changes(export=replace(card.export, precision="int8", validated_on=validated))
    back = ModelCard.from_json(card.to_json())
    assert back.export.validated_on.also_on == {"x86-no-vnni": True}
    assert "also_on" not in ValidatedOn("x86-vnni").to_dict()  # cards without it keep their bytes
    assert kernels_notice("x86-vnni", HASWELL, "m.xml", {"x86-no-vnni": True}) is None
    failed = kernels_notice("x86-vnni", HASWELL, "m.xml", {"x86-no-vnni": False})
    assert failed.startswith("m.xml FAILED its fidelity gates on int8 kernels x86-no-vnni")
    assert "measured on int8 kernels x86-vnni" in kernels_notice("x86-vnni", PI5, "m.xml", {"x86-no-vnni": True})
    bad = json.loads(card.to_json())
    bad["export"]["validated_on"]["also_on"] = {"x86-no-vnni": "yes"}
    with pytest.raises(ContractError, match="export.validated_on.also_on.x86-no-vnni"):
        ModelCard.from_dict(bad)


def test_a_child_that_cannot_run_the_artifact_is_a_failed_judgement_not_a_crash(tmp_path):
    card = ModelCard.from_dict(multitask_card())
    broken = tmp_path / "m.xml"
    broken.write_text("<net>not an IR</net>", encoding="utf-8")
    heldout = np.zeros((2, 3, 64, 64), np.float32)
    judged = judge_capped(broken, card, heldout, {}, {}, VNNI_XEON, tmp_path / "work")
    assert [j.kernels for j in judged] == ["x86-no-vnni"]
    (one,) = judged
    assert isinstance(one, CappedJudgement) and not one.passed and "m.xml with ONEDNN_MAX_CPU_ISA=AVX2" in one.error
    assert one.to_check()["error"] == one.error and "could not run" in one.summary()


def test_a_capped_run_that_errors_is_no_verdict():
    """Capping is not a perfect stand-in (an accuracy-control IR with bf16 float layers could not run with the AVX2
    cap, yet ran under qemu Haswell): such a judgement neither fails the row nor lets the card claim the class."""
    from edge_sdk.bench.export_row import ExportRow
    from edge_sdk.bench.machine import collect_machine_info
    from edge_sdk_export.report import markdown_table, validated_on

    errored = CappedJudgement("x86-no-vnni", "AVX2", passed=False, error="m.xml with ONEDNN_MAX_CPU_ISA=AVX2: empty")
    failed = CappedJudgement("x86-no-vnni", "AVX2", passed=False, failing=("expression head: ...",))
    assert not errored.failed and failed.failed
    row = ExportRow(
        target="openvino",
        format="openvino",
        status="passed",
        files=("m.xml", "m.bin", "m.card.json"),
        metrics={"expression_agreement": 0.99},
        checks={"kernel_classes": {"x86-no-vnni": errored.to_check()}},
        measured_on="x86-vnni",
    )
    assert validated_on(row, collect_machine_info()).also_on == {}
    assert "x86-vnni + x86-no-vnni not run (capped)" in markdown_table([row])
    judged = replace(row, checks={"kernel_classes": {"x86-no-vnni": failed.to_check()}})
    assert validated_on(judged, collect_machine_info()).also_on == {"x86-no-vnni": False}


def _decide(
    tmp_path, monkeypatch, host: CpuInfo, capped: list[CappedJudgement], parent_misses: bool = False
) -> tuple[str, list[str]]:
    """Run the export's OpenVINO portability step with NNCF replaced by a stub that writes which overflow fix it
    used, where the first-layer IR fails the gates here and the all-layer one passes: (fix kept, fixes tried)."""
    from types import SimpleNamespace

    import edge_sdk_export.exporters as exporters
    from edge_sdk_export.quant_openvino import ALL_LAYERS_OVERFLOW_FIX, FIRST_LAYER_OVERFLOW_FIX

    tried: list[str] = []

    def quantize(job, xml, overflow_fix, reference):
        tried.append(overflow_fix)
        for suffix in (".xml", ".bin"):
            xml.with_suffix(suffix).write_text(overflow_fix, encoding="utf-8")

    monkeypatch.setattr("edge_sdk.cpu.describe_cpu", lambda: host)
    monkeypatch.setattr("edge_sdk_export.capped_isa.judge_capped", lambda *args: capped)
    monkeypatch.setattr(exporters, "_openvino_int8", quantize)
    monkeypatch.setattr(exporters, "_passes_here", lambda job, ir, recovery: ir.read_text() == ALL_LAYERS_OVERFLOW_FIX)
    xml = tmp_path / "m.xml"
    for suffix in (".xml", ".bin"):
        xml.with_suffix(suffix).write_text(FIRST_LAYER_OVERFLOW_FIX, encoding="utf-8")
    job = SimpleNamespace(
        heldout=np.zeros((2, 3, 64, 64), np.float32),
        heldout_ref={},
        card=None,
        work=tmp_path,
        recovery=None,
        parent_misses=parent_misses,
    )
    _, kept, _ = exporters._portable_openvino(job, xml, tmp_path / "reference.xml", None)
    assert xml.read_text() == kept  # the IR in place is the one reported
    return kept, tried


def test_an_ir_failing_on_this_hosts_saturating_kernels_is_quantized_again_with_the_all_layer_overflow_fix(
    tmp_path, monkeypatch
):
    """Found on a real AVX2-only AMD EPYC: the FER2013 Xception's IR (first-layer fix) agreed 0.9615 there and float
    layers did not help; only VNNI hosts, through the capped judge, used to try the all-layer fix."""
    from edge_sdk_export.quant_openvino import ALL_LAYERS_OVERFLOW_FIX, FIRST_LAYER_OVERFLOW_FIX

    assert _decide(tmp_path, monkeypatch, HASWELL, []) == (ALL_LAYERS_OVERFLOW_FIX, [ALL_LAYERS_OVERFLOW_FIX])
    # a VNNI host whose own kernels fail the IR: saturation is not why, so no all-layer retry (recovery's job)
    assert _decide(tmp_path, monkeypatch, VNNI_XEON, []) == (FIRST_LAYER_OVERFLOW_FIX, [])
    # an ARM host neither: its int8 kernels accumulate in int32
    assert _decide(tmp_path, monkeypatch, PI5, []) == (FIRST_LAYER_OVERFLOW_FIX, [])
    # nor a pruned parent that misses the gates itself: no INT8 scheme can pass then
    assert _decide(tmp_path, monkeypatch, HASWELL, [], parent_misses=True) == (FIRST_LAYER_OVERFLOW_FIX, [])
