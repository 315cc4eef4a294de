"""edge-sdk export on bad input: one clear edge_sdk error each, and nothing half-written left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_sdk.cli import main
from tests.conftest import shared_file
from tests.model_factory import build_multitask_onnx, build_packed_onnx


def export(tmp_path: Path, model: Path, calib: str, out: Path, *extra: str) -> int:
    yunet = shared_file("models/yunet/yunet_s_640_640.onnx")
    return main(
        ["export", "--model", str(model), "--targets", "cpu", "--calib", calib, "--out", str(out)]
        + ["--detector", "yunet", "--detector-model", str(yunet), "--cache-dir", str(tmp_path / "cache")]
        + ["--calib-size", "8", "--heldout-size", "8", "--latency-runs", "1", "--no-progress", *extra]
    )


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".staging-" in p.name]


@pytest.fixture
def model(tmp_path):
    return build_multitask_onnx(tmp_path / "m.onnx")


def test_empty_calibration_folder(tmp_path, model, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    assert export(tmp_path, model, str(tmp_path / "empty"), out) == 2
    assert "no images or videos" in capsys.readouterr().err
    assert not out.exists() and not leftovers(tmp_path)


def test_video_without_faces(tmp_path, model, capsys):
    out = tmp_path / "out"
    assert export(tmp_path, model, str(shared_file("data/faces/no_face.mp4")), out) == 2
    err = capsys.readouterr().err
    assert "found no face in no_face.mp4" in err
    assert not out.exists() and not leftovers(tmp_path)


def test_model_without_card(tmp_path, capsys):
    bare = build_packed_onnx(tmp_path / "bare.onnx")
    assert export(tmp_path, bare, "synthetic", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "no model card" in err and "edge-sdk card init" in err
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_unknown_target(tmp_path, model, capsys):
    code = main(["export", "--model", str(model), "--targets", "cpu,tpu", "--calib", "synthetic", "--out", "x"])
    assert code == 2
    assert "unknown target 'tpu'; expected one of: jetson, rpi, openvino, cpu" in capsys.readouterr().err


def test_existing_output_folder_needs_force(tmp_path, model, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert export(tmp_path, model, "synthetic", out) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    code = export(tmp_path, model, "synthetic", out, "--force", "--gate", "va_ccc=0", "--gate", "au_occurrence_f1=0")
    assert code in (0, 1)  # gates are not what this test is about
    assert not (out / "keep.txt").exists() and (out / "test-multitask_cpu_int8.onnx").is_file()
    assert not leftovers(tmp_path)


def test_negative_round_to(tmp_path, model, capsys):
    out = tmp_path / "out"
    assert export(tmp_path, model, "synthetic", out, "--round-to", "-4") == 2
    assert "--round-to -4: expected a channel multiple >= 1" in capsys.readouterr().err
    assert not out.exists() and not leftovers(tmp_path)
