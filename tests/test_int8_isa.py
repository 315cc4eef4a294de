"""The cpu target's QDQ scheme holds its gates on x86 without VNNI: judged inside ``qemu-x86_64 -cpu Haswell``.

x86 CPUs without VNNI (AVX2 only; many deployed Intel and AMD boxes) multiply onnxruntime's uint8 activations by
int8 weights with ``vpmaddubsw``, which sums each pair of products in int16 and saturates (tests/isa.py). The cpu
scheme stores 7-bit weights (``reduce_range``) so that no pair can reach the limit. This test builds a tiny
multitask net whose convolutions do saturate with 8-bit weights (weights mostly positive, bright inputs),
quantizes it with the cpu scheme and with the same scheme in 8 bits, and judges both against FP32 in an emulated
Haswell process (AVX2, no AVX512, no VNNI; the probe confirms onnxruntime ran its non-VNNI kernels there):

* the cpu scheme passes the export's default gates there, with the very outputs it has natively (same integers);
* the 8-bit control fails there (so the test sees the saturation it guards against) while passing natively.

qemu-user is a system tool the test suite needs on x86-64 (``apt-get install qemu-user``); a missing one fails
here with that hint. On a non-x86 host there is nothing to emulate with (an ARM interpreter cannot run under
qemu-x86_64): skipped.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_sdk.contract.card import ExportInfo, ModelCard
from edge_sdk.errors import ArtifactError
from edge_sdk_export.quant_onnx import ORT_CPU_SCHEME, check_qdq, quantize_qdq
from tests.model_factory import AU_LABELS, _backbone, _init, _save, multitask_card

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
HEAD_WIDTHS = {"au_occurrence": len(AU_LABELS), "au_intensity": len(AU_LABELS), "expression": 8, "valence_arousal": 2}
# Faces whose FP32 top-1 expression leads the runner-up by less than this are near ties, left out: a random
# tiny net has many, and a tie flips under any rounding, which would test nothing about the kernels.
MIN_MARGIN = 0.5
EMULATED_CPU = "Haswell"


def _inputs(rng: np.random.Generator, count: int) -> np.ndarray:
    """Preprocessed NCHW 'faces': a colour cast and a horizontal light ramp per image, plus noise."""
    colour = rng.uniform(-1.5, 1.5, (count, 3, 1, 1))
    ramp = rng.uniform(-1, 1, (count, 1, 1, 1)) * np.linspace(-1, 1, SIZE)[None, None, None, :]
    return (colour + ramp + rng.normal(0, 0.3, (count, 3, SIZE, SIZE))).astype(np.float32)


def build_saturating_onnx(path: Path, seed: int = 0) -> Path:
    """conv/2 -> relu -> conv/2 -> relu -> pool -> four Gemm heads, with mostly positive conv weights (so 8-bit
    u8s8 pair sums overflow int16 on bright inputs) and heads standardised on the features (outputs spread ~N(0, 2)
    rather than saturating the sigmoids)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    nodes, weights, c2 = _backbone(rng, SIZE, channels=(16, 32), weight_mean=(0.2, 0.1), weight_std=(0.3, 0.1))
    input_info = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])
    backbone = helper.make_graph(
        nodes, "backbone", [input_info], [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", c2])]
    )
    backbone.initializer.extend(weights)
    model = helper.make_model(backbone, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    features = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input": _inputs(np.random.default_rng(99), 64)}
    )[0]
    mean, std = features.mean(0), features.std(0) + 1e-6
    for name, width in HEAD_WIDTHS.items():
        gain = rng.normal(0, 0.4, (c2, width))
        weights += [_init(f"{name}_w", gain / std[:, None]), _init(f"{name}_b", -(mean / std) @ gain)]
        nodes.append(helper.make_node("Gemm", ["features", f"{name}_w", f"{name}_b"], [name]))
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", w]) for name, w in HEAD_WIDTHS.items()]
    graph = helper.make_graph(nodes, "saturating", [input_info], outputs, initializer=weights)
    return _save(graph, path, multitask_card(SIZE))


def judge(folder: Path) -> dict[str, Any]:
    """Every INT8 file in ``folder`` against ``fp32.onnx`` on ``heldout.npy`` (non-tied faces), on this process's
    int8 kernels; raw outputs saved as ``<file>.<kernels>.npz``. Runs unchanged inside qemu."""
    from edge_sdk.backend import load_backend
    from edge_sdk_export.fidelity import DEFAULT_GATES, apply_gates, compare
    from tests.isa import int8_kernels

    kernels = int8_kernels()
    heldout = np.load(folder / "heldout.npy")
    ref = load_backend(folder / "fp32.onnx", threads=1).run(heldout)
    top = np.sort(ref["expression"], axis=1)
    keep = top[:, -1] - top[:, -2] > MIN_MARGIN
    ref = {k: v[keep] for k, v in ref.items()}
    result: dict[str, Any] = {"int8_kernels": kernels, "faces": int(keep.sum()), "files": {}}
    for path in sorted(folder.glob("*_int8.onnx")):
        backend = load_backend(path, threads=1)
        out = {k: v[keep] for k, v in backend.run(heldout).items()}
        np.savez(folder / f"{path.stem}.{kernels}.npz", **out)
        metrics = compare(backend.card, ref, out)
        passed, gates = apply_gates(metrics, DEFAULT_GATES)
        failed = [g.message for g in gates if g.status == "fail"]
        result["files"][path.stem] = {"passed": passed, "failed": failed, "metrics": metrics}
    return result


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("int8-isa")
    fp32 = build_saturating_onnx(folder / "fp32.onnx")
    card = ModelCard.from_dict(multitask_card(SIZE)).with_changes(
        export=ExportInfo(target="cpu", precision="int8", tool="tests")
    )
    rng = np.random.default_rng(1)
    calib = _inputs(rng, 32)
    np.save(folder / "heldout.npy", _inputs(rng, 400))
    quantize_qdq(fp32, folder / "cpu_int8.onnx", card, calib, ORT_CPU_SCHEME)
    quantize_qdq(fp32, folder / "full8bit_int8.onnx", card, calib, replace(ORT_CPU_SCHEME, reduce_range=False))
    return folder


@pytest.fixture(scope="module")
def emulated(quantized: Path) -> dict[str, Any]:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"emulating an AVX2 x86 CPU needs an x86-64 host and interpreter (this is {platform.machine()})")
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        pytest.fail("qemu-x86_64 not found: install qemu-user (apt-get install -y qemu-user) to test non-VNNI x86")
    out = quantized / "emulated.json"
    code = (
        "import json, sys; from pathlib import Path; from tests.test_int8_isa import judge; "
        "Path(sys.argv[2]).write_text(json.dumps(judge(Path(sys.argv[1]))))"
    )
    # sys.executable is the interpreter binary itself (a pyenv/venv shim script would not run under qemu)
    argv = [qemu, "-cpu", EMULATED_CPU, sys.executable, "-c", code, str(quantized), str(out)]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def native(quantized: Path) -> dict[str, Any]:
    return judge(quantized)


def test_cpu_scheme_is_reduce_range_and_checked(quantized: Path) -> None:
    counts = check_qdq(quantized / "cpu_int8.onnx", ORT_CPU_SCHEME)
    assert counts["reduce_range"] is True and counts["activations"] == "uint8"
    with pytest.raises(ArtifactError, match="not reduce_range"):  # 8-bit weights are not the cpu scheme
        check_qdq(quantized / "full8bit_int8.onnx", ORT_CPU_SCHEME)


def test_emulation_runs_non_vnni_kernels(emulated: dict[str, Any]) -> None:
    assert emulated["int8_kernels"] == "x86-no-vnni", (
        f"qemu -cpu {EMULATED_CPU} ran {emulated['int8_kernels']} int8 kernels, not the saturating AVX2 ones"
    )
    assert emulated["faces"] >= 50


def test_cpu_scheme_passes_on_non_vnni_x86_with_native_outputs(
    quantized: Path, emulated: dict[str, Any], native: dict[str, Any]
) -> None:
    row = emulated["files"]["cpu_int8"]
    assert row["passed"], "; ".join(row["failed"])
    assert native["files"]["cpu_int8"]["passed"], "; ".join(native["files"]["cpu_int8"]["failed"])
    here = np.load(quantized / f"cpu_int8.{native['int8_kernels']}.npz")
    there = np.load(quantized / "cpu_int8.x86-no-vnni.npz")
    for head in HEAD_WIDTHS:  # 7-bit weights: the same integers on every kernel class, so the same outputs
        np.testing.assert_allclose(there[head], here[head], atol=1e-4, err_msg=head)


def test_8bit_control_saturates_on_non_vnni_x86(emulated: dict[str, Any], native: dict[str, Any]) -> None:
    """Without reduce_range the same net fails there: what the test above would miss if the emulation were off."""
    assert not emulated["files"]["full8bit_int8"]["passed"], emulated["files"]["full8bit_int8"]["metrics"]
    if native["int8_kernels"] != "x86-no-vnni":
        assert native["files"]["full8bit_int8"]["passed"], native["files"]["full8bit_int8"]["failed"]
