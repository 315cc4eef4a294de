"""The target and format tables drive the CLI, export, benchmark, doctor and the backend loader.

``test_a_new_target_is_one_row`` adds a target in one place (a row naming an export function) and
sees it everywhere: the CLI's ``--target`` choices, ``edge-sdk export``, ``edge-sdk benchmark`` and
``edge-sdk doctor``.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from edge_sdk.backend import BACKENDS, backend_class, backend_for, load_backend
from edge_sdk.backend.base import Backend
from edge_sdk.contract.card_io import load_card
from edge_sdk.errors import InputError
from edge_sdk.targets import FORMATS, TARGETS, Target, format_for_suffix, get_target, resolve


def test_every_target_maps_to_a_known_backend_and_format() -> None:
    assert set(TARGETS) == {"jetson", "rpi", "openvino", "cpu"}
    for target in TARGETS.values():
        assert target.format_name in FORMATS and target.backend in BACKENDS
        assert format_for_suffix(target.artifact_suffix) is target.format
        assert backend_for(f"model{target.artifact_suffix}") == target.backend


def test_every_row_names_functions_that_exist() -> None:
    for fmt in FORMATS.values():
        assert issubclass(backend_class(fmt.backend), Backend)
    for target in TARGETS.values():
        assert list(inspect.signature(resolve(target.exporter)).parameters) == ["job"], target.exporter
        assert len(inspect.signature(resolve(target.device_check)).parameters) == 2, target.device_check


def test_unknown_target_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="unknown target 'tpu'; expected one of: jetson, rpi, openvino, cpu"):
        get_target("tpu")


# ---- adding a target is one row --------------------------------------------------------------------
def export_fake(job):  # the one function a new target brings (it reuses the cpu scheme here)
    from edge_sdk_export.exporters import export_cpu

    exported = export_cpu(job)
    exported.notes.append("fake NPU target: the cpu QDQ scheme")
    return exported


FAKE = Target(
    name="fakenpu",
    device="A test NPU",
    format_name="onnx",
    quantization="QDQ ONNX as for cpu",
    exporter="tests.test_targets:export_fake",
    device_check="edge_sdk.bench.machine:any_cpu_verdict",
    providers=("CPUExecutionProvider",),
)


def test_a_new_target_is_one_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from edge_sdk.cli import main
    from edge_sdk.cli.doctor import Setup, diagnose
    from tests.test_export import third_party_model

    monkeypatch.setitem(TARGETS, FAKE.name, FAKE)  # the only change: one row
    model = third_party_model(tmp_path)
    out = tmp_path / "out"
    export_args = ["export", "--model", str(model), "--targets", FAKE.name, "--calib", "synthetic", "--out", str(out)]
    export_args += ["--calib-size", "16", "--heldout-size", "16", "--latency-runs", "2", "--no-progress"]
    assert main([*export_args, "--gate", "va_ccc=0", "--gate", "expression_agreement=0"]) == 0, capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    assert [r["target"] for r in report["rows"]] == [FAKE.name]
    artifact = out / report["rows"][0]["files"][0]
    assert load_card(artifact).export.target == FAKE.name and load_backend(artifact).info.backend == "onnxruntime"
    assert "fake NPU target: the cpu QDQ scheme" in report["rows"][0]["notes"]
    capsys.readouterr()

    code = main(["benchmark", "--target", FAKE.name, "--model", str(out), "--runs", "5", "--warmup", "1", "--quiet"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert f"target {FAKE.name} ({FAKE.device})" in printed.out

    findings = {f.check: f for f in diagnose(Setup(dev_dir=tmp_path))}
    assert f"target {FAKE.name}" in findings and "the cpu target is any CPU" in findings[f"target {FAKE.name}"].detail

    with pytest.raises(SystemExit):  # argparse's --target choices come from TARGETS
        main(["benchmark", "--target", "nosuch", "--model", str(out)])
    err = capsys.readouterr().err
    assert "invalid choice: 'nosuch'" in err and FAKE.name in err
