"""`benchmark` / `edge-sdk benchmark`: real, short runs on real artifacts of every target.

One module fixture builds a small export folder like `edge-sdk export` writes (FP32 parent ONNX, QDQ INT8
for cpu and jetson, FP32 + NNCF INT8 IR for openvino, FP32 + full-integer INT8 .tflite for rpi, report.json)
from the tiny test network, so each run takes about a second. Bad inputs must exit 2 with one clear line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.bench.export_row import REPORT_SCHEMA, ExportRow
from edge_sdk.bench.machine import collect_machine_info, device_verdict
from edge_sdk.cli import main
from edge_sdk.contract.card import ExportInfo, ModelCard
from edge_sdk.cpu import INT8_KERNEL_CLASSES
from edge_sdk.model.face_model import DEMO_MODEL
from edge_sdk.targets import TARGETS
from tests.conftest import REPO, shared_file
from tests.model_factory import build_multitask_onnx, multitask_card

QUICK = ["--runs", "20", "--warmup", "5", "--threads", "1", "--quiet"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROW_KEYS = {
    "variant", "artifact", "precision", "pruning_ratio", "backend", "runtime", "ran_on", "device_figure",
    "device_note", "threads", "size_bytes", "size_ratio_vs_fp32", "load_ms", "first_inference_ms",
    "rss_delta_mb", "runs", "latency_ms", "fps", "speedup_vs_fp32", "speedup_vs_baseline", "fidelity",
}  # fmt: skip


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small multi-target export folder (the layout the benchmark scans) with a report.json."""
    from edge_sdk_export.artifacts import write_sidecar
    from edge_sdk_export.convert import onnx_to_openvino_fp32, onnx_to_tflite_fp32
    from edge_sdk_export.quant_onnx import ORT_CPU_SCHEME, TENSORRT_SCHEME, quantize_qdq
    from edge_sdk_export.quant_openvino import quantize_openvino
    from edge_sdk_export.quant_tflite import quantize_tflite

    out = tmp_path_factory.mktemp("export")
    fp32 = build_multitask_onnx(out / "tiny_fp32.onnx", size=64)
    card = ModelCard.from_dict(multitask_card(64))
    calib = np.random.default_rng(0).normal(0, 1, (16, 3, 64, 64)).astype(np.float32)

    def int8_card(target: str, base: ModelCard = card) -> ModelCard:
        return base.with_changes(export=ExportInfo(target=target, precision="int8", tool="tests"))

    for target, scheme in (("cpu", ORT_CPU_SCHEME), ("jetson", TENSORRT_SCHEME)):
        (out / target).mkdir()
        quantize_qdq(fp32, out / target / f"tiny_{target}_int8.onnx", int8_card(target), calib, scheme)
    onnx_to_openvino_fp32(fp32, out / "openvino")
    xml = quantize_openvino(fp32, out / "openvino" / "tiny_openvino_int8.xml", card, calib)
    write_sidecar(int8_card("openvino"), [xml, xml.with_suffix(".bin")])
    onnx_to_tflite_fp32(fp32, out / "rpi")
    tflite, tflite_card = quantize_tflite(fp32, out / "rpi" / "tiny_rpi_int8.tflite", int8_card("rpi"), calib)
    write_sidecar(tflite_card, [tflite])
    # `edge-sdk export` writes its rows through the same typed ExportRow the benchmark reads them with
    row = ExportRow("cpu", "onnx", "passed", files=("tiny_cpu_int8.onnx",), metrics={"expression_agreement": 0.97})
    report = {"schema": REPORT_SCHEMA, "rows": [row.to_dict()]}
    (out / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return out


def _bench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["benchmark", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_target_runs_prints_table_and_writes_json_and_png(
    target: str, export_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    code, out, err = _bench(
        capsys, "--target", target, "--model", str(export_dir), *QUICK, "--json", str(out_json), "--plot", str(out_png)
    )
    assert code == 0, err
    assert f"target {target}" in out and "p50" in out and "vs fp32" in out
    result = json.loads(out_json.read_text())
    assert result["schema"] == "edge-sdk-benchmark/1"
    assert {"machine", "settings", "results", "hints", "notes", "target", "device_figures"} <= set(result)
    assert {"cpu", "cores_usable", "os", "runtimes", "onnxruntime_providers"} <= set(result["machine"])
    assert result["machine"]["int8_kernels"] in INT8_KERNEL_CLASSES and "int8 kernels: " in out
    variants = [r["variant"] for r in result["results"]]
    assert variants == ["fp32", "int8"], variants  # the FP32 reference found beside each target's INT8
    for row in result["results"]:
        assert set(row) >= ROW_KEYS, ROW_KEYS - set(row)
        assert row["runs"] == 20
        lat = row["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert row["first_inference_ms"] >= row["load_ms"] > 0
    int8 = result["results"][1]
    assert int8["speedup_vs_fp32"] == pytest.approx(
        result["results"][0]["latency_ms"]["p50"] / int8["latency_ms"]["p50"]
    )
    assert out_png.read_bytes()[:8] == PNG_MAGIC and out_png.stat().st_size > 2000
    for hint in TARGETS[target].device_hints:
        assert hint in out


def test_jetson_on_this_machine_says_cpu_provider_and_not_a_device_figure(
    export_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "j.json"
    code, out, err = _bench(capsys, "--target", "jetson", "--model", str(export_dir), *QUICK, "--json", str(out_json))
    assert code == 0, err
    result = json.loads(out_json.read_text())
    ran_on = {r["ran_on"] for r in result["results"]}
    if "TensorrtExecutionProvider" not in result["machine"]["onnxruntime_providers"]:
        assert ran_on == {"CPUExecutionProvider"}
        assert result["device_figures"] is False
        assert "NOT JETSON DEVICE FIGURES" in out and "CPUExecutionProvider" in out
        assert all(not r["device_figure"] for r in result["results"])


def test_fidelity_from_the_export_report_and_precision_filter(
    export_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "c.json"
    code, out, err = _bench(
        capsys, "--target", "cpu", "--model", str(export_dir), *QUICK, "--precision", "int8,pruned-int8",
        "--baseline", "--json", str(out_json),
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out_json.read_text())
    rows = {r["variant"]: r for r in result["results"]}
    assert set(rows) == {"int8", "fp32-plain-ort"}
    assert rows["int8"]["fidelity"] == {"passed": True, "expression_agreement": 0.97}
    assert "pass expression_agreement=0.97" in out
    assert any("pruned-int8: no such cpu artifact" in n for n in result["notes"])
    assert rows["fp32-plain-ort"]["speedup_vs_baseline"] == pytest.approx(1.0)


def _copy_with_report(export_dir: Path, tmp_path: Path, report: dict) -> Path:
    folder = tmp_path / "export"
    shutil.copytree(export_dir / "cpu", folder)
    (folder / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return folder


def test_a_bad_report_row_is_an_error_naming_the_field(
    export_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row = ExportRow("cpu", "onnx", "passed", files=("tiny_cpu_int8.onnx",)).to_dict()
    folder = _copy_with_report(export_dir, tmp_path, {"schema": REPORT_SCHEMA, "rows": [{**row, "latency_ms": "x"}]})
    code, _, err = _bench(capsys, "--target", "cpu", "--model", str(folder), *QUICK)
    assert code == 2 and "export report field 'rows[0].latency_ms': expected a number, got 'x'" in err


def test_a_report_of_another_version_gives_no_fidelity_and_says_why(
    export_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = {"rows": [{"target": "cpu", "files": ["tiny_cpu_int8.onnx"], "status": "passed", "expression_agreement": 1}]}
    folder = _copy_with_report(export_dir, tmp_path, old)
    out_json = tmp_path / "o.json"
    code, _, err = _bench(capsys, "--target", "cpu", "--model", str(folder), *QUICK, "--json", str(out_json))
    assert code == 0, err
    result = json.loads(out_json.read_text())
    assert all(r["fidelity"] is None for r in result["results"])
    assert any("written by another edge-sdk version" in n for n in result["notes"])


def test_single_int8_file_finds_its_fp32_reference(
    export_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "s.json"
    artifact = export_dir / "cpu" / "tiny_cpu_int8.onnx"
    code, _, err = _bench(capsys, "--target", "cpu", "--model", str(artifact), *QUICK, "--json", str(out_json))
    assert code == 0, err
    assert [r["variant"] for r in json.loads(out_json.read_text())["results"]] == ["fp32", "int8"]


def test_default_model_is_the_packaged_demo_fp32(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert DEMO_MODEL.is_file(), f"{DEMO_MODEL} is missing: the packaged demo model must ship with edge-sdk"
    out_json = tmp_path / "d.json"
    code, out, err = _bench(capsys, "--target", "cpu", *QUICK, "--json", str(out_json))
    assert code == 0, err
    result = json.loads(out_json.read_text())
    assert [r["variant"] for r in result["results"]] == ["fp32"]
    assert any("edge-sdk export" in n for n in result["notes"])


def test_pipeline_benchmark_on_a_real_video(
    export_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = shared_file("data/faces/WolfgangLanger_Pexels.mp4")
    yunet = shared_file("models/yunet/yunet_s_640_640.onnx")
    out_json = tmp_path / "p.json"
    code, out, err = _bench(
        capsys, "--target", "cpu", "--model", str(export_dir / "cpu"), *QUICK, "--pipeline", str(video),
        "--pipeline-frames", "30", "--detector-model", str(yunet), "--json", str(out_json),
    )  # fmt: skip
    assert code == 0, err
    pipeline = json.loads(out_json.read_text())["pipeline"]
    assert pipeline["frames"] == 30 and pipeline["fps"] > 0 and pipeline["faces"] > 0
    assert set(pipeline["stages_ms"]) == {"decode", "detect", "align", "infer", "post", "log"}
    assert pipeline["stages_ms"]["log"]["mean"] > 0  # the sink time is recorded, not lost
    assert "FPS steady state" in out


def test_console_script_is_the_same_command(export_dir: Path) -> None:
    script = shutil.which("benchmark")
    assert script, "the `benchmark` console script is not installed (pip install -e .)"
    done = subprocess.run(
        [script, "--target", "cpu", "--model", str(export_dir / "cpu"), *QUICK],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "CPUExecutionProvider" in done.stdout


# ---- bad input: exit 2 and one clear line -------------------------------------------------------
def _one_error_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, _, err = _bench(capsys, *argv)
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_artifact_exported_for_another_target(export_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error_line(capsys, "--target", "jetson", "--model", str(export_dir / "cpu" / "tiny_cpu_int8.onnx"))
    assert "export.target" in line and "'cpu'" in line and "jetson" in line


def test_wrong_format_for_the_target(export_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error_line(capsys, "--target", "rpi", "--model", str(export_dir / "tiny_fp32.onnx"))
    assert ".tflite" in line and "rpi" in line


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error_line(capsys, "--target", "cpu", "--model", str(tmp_path / "nope.onnx"))
    assert "nope.onnx" in line


def test_folder_without_artifacts_for_the_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error_line(capsys, "--target", "rpi", "--model", str(tmp_path))
    assert "no rpi artifact" in line and "edge-sdk export" in line


def test_video_with_no_frames(export_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    line = _one_error_line(
        capsys, "--target", "cpu", "--model", str(export_dir / "cpu"), *QUICK, "--pipeline", str(empty),
        "--pipeline-frames", "20",
    )  # fmt: skip
    assert "empty.mp4" in line


def test_bad_numbers(capsys: pytest.CaptureFixture[str], export_dir: Path) -> None:
    line = _one_error_line(capsys, "--target", "cpu", "--model", str(export_dir), "--runs", "0")
    assert "--runs" in line


# ---- device verdicts ----------------------------------------------------------------------------
def test_every_target_has_a_device_verdict() -> None:
    machine = collect_machine_info()
    for name in TARGETS:
        assert device_verdict(name, machine, "CPU").reason
    assert not device_verdict("nosuch", machine, "CPU").is_device
    assert device_verdict("cpu", machine, "CPUExecutionProvider").is_device
    if machine.board == "":
        assert not device_verdict("jetson", machine, "CPUExecutionProvider").is_device
        assert not device_verdict("rpi", machine, "XNNPACK (CPU)").is_device


def test_benchmark_package_imports_no_workstation_packages() -> None:
    code = (
        "import sys, edge_sdk.cli.benchmark, edge_sdk.bench.run, edge_sdk.bench.pipeline, edge_sdk.bench.report;"
        "bad = [m for m in ('torch', 'tensorflow', 'nncf', 'onnx', 'export', 'matplotlib') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_plot_labels_name_threads_and_precision_and_never_repeat(tmp_path: Path) -> None:
    """The recorded four-target benchmark: every bar says its precision and thread count (the plain-ORT
    baseline, timed once per thread group, says which group), and no two bars share a label."""
    from edge_sdk.bench.plot import plot_latency, row_labels

    recorded = json.loads((REPO / "benchmarks" / "results" / "performance.json").read_text())["models"]
    labels = row_labels(recorded)
    assert len(labels) == sum(len(r["results"]) for r in recorded) == len(set(labels))
    assert "cpu pruned 30% INT8\n2 threads on CPUExecutionProvider" in labels
    assert "cpu plain ORT FP32\nORT default threads (beside the 1-thread rows) on CPUExecutionProvider" in labels
    assert "openvino INT8\nCPU, 1 thread on CPU" in labels
    twice = [recorded[0], recorded[0]]  # the same export benchmarked twice: numbered, still unique
    assert len(set(row_labels(twice))) == 2 * len(recorded[0]["results"])
    assert plot_latency(recorded[:1], tmp_path / "p.png").read_bytes()[:8] == PNG_MAGIC
