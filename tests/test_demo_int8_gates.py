"""The packaged demo's INT8 artifacts against their fidelity gates, on the int8 kernels of this machine.

The export's default run (all four targets, real faces from ../shared, the default gates; held-out = whole
files split off ../shared/data/faces plus, for the synthetic demo, 300 rendered faces) must pass. Two kinds
of gap are known and are issue #16's to close; until then they are strict expected failures *with the
measured numbers* (an unexpected pass fails too, so the tables below cannot go stale), on the kernel classes
where they were measured and nowhere else:

- on x86 without VNNI onnxruntime's uint8 x int8 products saturate in int16. The cpu file stores 7-bit weights
  (``reduce_range``) since issue #16, so it computes the same integers there as on VNNI and passes on both
  (benchmarks/results/int8_isa.md); the jetson file keeps 8-bit weights for TensorRT (its 7-bit variant lost
  agreement: 0.9735, 0.897 on the real crops), so its ORT CPU proxy still saturates there;
- since the held-out set holds real faces (the synthetic demo's outputs on real faces are out of
  distribution, with near-tied expression classes), jetson and rpi all-INT8 miss the expression gate on x86
  even with VNNI (on the 78 real crops alone jetson agrees 0.949 and rpi 0.910 with FP32); accuracy recovery
  (layers kept in float) made both pass. Since the export equalizes activation ranges before quantizing
  (edge_sdk_export.equalize, 2026-12-03) every target passes all-INT8 on the Intel Xeon's VNNI kernels
  (expression agreement jetson 0.981, rpi 0.981, cpu 0.987, openvino 0.989; no layer kept in float).

The kernel class comes from onnxruntime itself (tests/isa.py), not from /proc/cpuinfo alone.
"""

from __future__ import annotations

import pytest

from edge_sdk_export.pipeline import ExportOptions, run_export
from tests.conftest import SHARED, shared_file
from tests.isa import int8_kernels

TARGETS = ("jetson", "rpi", "openvino", "cpu")

# Measured 2026-12-02 on x86 without VNNI: the artifacts of this export, judged under
# `qemu-x86_64 -cpu Haswell` (onnxruntime's AVX2 u8s8 kernels; tests/isa.py saw the saturation) on an
# AMD EPYC host, held-out = 78 real crops + 300 rendered faces (benchmarks/int8_isa.py). The cpu file
# (reduce_range) passes there with the numbers it has on VNNI: expression agreement 0.981 (0.936 on the real
# crops), AU F1 0.988, VA CCC 0.999, PSPI MAE 0.067; with 8-bit weights it measured 0.841 / 0.888 / 0.932 /
# 0.422 there. The jetson file is judged on ORT CPU with graph optimisations off (QDQ simulated with exact sums,
# as TensorRT computes; Target.simulated_proxy), the same on every CPU: 0.979 (0.949 real) all-INT8 on both
# (fused it measured 0.860 under Haswell), and accuracy recovery keeps 2 layers in float to pass (0.9815).
# rpi (LiteRT, the same integer kernels on AVX2 as with VNNI) passes after its accuracy recovery (below; not
# re-measured under qemu); openvino passes on both.
KNOWN_NON_VNNI_GAPS: dict[str, str] = {}

# Measured 2026-12-02 on the AMD EPYC host's VNNI kernels, held-out = 78 real crops (single_face.jpg,
# multi_face.jpg, single_face.mp4) + 300 rendered faces. cpu (0.981 since reduce_range; 0.995 with 8-bit
# weights), openvino, and jetson after accuracy recovery (2 layers kept in float: 0.9788 -> 0.9815) pass there.
# rpi all-INT8 agrees 0.9735 (0.910 on the real crops alone; its int8 expression output ties 4 of its 7
# real-face flips, 0.0624 logit per step); its recovery (edge_sdk_export.quant_tflite.recover_tflite) keeps
# 4 ops in float (the expression head's FULLY_CONNECTED and 3 convolutions; float32 outputs): 0.9815,
# 1.63 MB vs 0.56 MB all-INT8 (0.79 of FP32), LiteRT latency 1.25x the all-INT8 file, still below FP32.
KNOWN_REAL_FACE_GAPS: dict[str, str] = {}


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from edge_sdk.face import YuNetDetector

    out = tmp_path_factory.mktemp("demo-int8") / "artifacts"
    report = run_export(
        ExportOptions(
            model="demo",
            targets=list(TARGETS),
            calib=str(SHARED / "data" / "faces"),
            out=out,
            latency_runs=3,
            detector=YuNetDetector(shared_file("models/yunet/yunet_s_640_640.onnx")),
            progress=False,
        )
    )
    return {**report, "out_dir": str(out)}  # where the artifacts are (not part of the report)


@pytest.mark.parametrize("target", TARGETS)
def test_demo_int8_artifact_passes_its_gates(target: str, demo_report: dict, request: pytest.FixtureRequest) -> None:
    kernels = int8_kernels()
    known = None
    if kernels == "x86-no-vnni" and target in KNOWN_NON_VNNI_GAPS:
        known = KNOWN_NON_VNNI_GAPS[target]
    elif kernels == "x86-vnni" and target in KNOWN_REAL_FACE_GAPS:
        known = KNOWN_REAL_FACE_GAPS[target]
    if known:
        # strict: once issue #16 makes it pass there, this entry must go (an XPASS fails the run)
        reason = f"known gap on {kernels} int8 kernels, issue #16: {known}"
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    row = next(r for r in demo_report["rows"] if r["target"] == target)
    failed = [g["message"] for g in row["gates"] if g["status"] == "fail"]
    assert row["status"] == "passed", f"{target} on {kernels} int8 kernels: " + "; ".join(failed)


def test_the_openvino_ir_is_also_judged_on_kernels_without_vnni(demo_report: dict) -> None:
    """On a VNNI host the IR is judged a second time with oneDNN capped to AVX2 (edge_sdk_export.capped_isa), the
    result is in the row and in the card; on a host that cannot cap (AVX2-only, ARM) the native judgement is all."""
    from edge_sdk.contract.card_io import load_card
    from edge_sdk.cpu import describe_cpu
    from edge_sdk_export.capped_isa import cappable_kernel_classes

    row = next(r for r in demo_report["rows"] if r["target"] == "openvino")
    capped = cappable_kernel_classes(describe_cpu())
    judged = row["checks"].get("kernel_classes", {})
    assert sorted(judged) == sorted(capped)
    for kernels, check in judged.items():
        failed = "; ".join(check["failed_gates"])
        assert check["passed"], f"openvino IR on {kernels} ({check['how']}): {failed}"
    card = load_card(f"{demo_report['out_dir']}/{row['files'][0]}")
    assert card.export.validated_on.also_on == {k: True for k in capped}
