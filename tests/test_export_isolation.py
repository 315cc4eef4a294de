"""No target can take an export run down: a native crash or a hang in one target's export fails that target only.

Each target is exported and evaluated in a spawned child (export.isolation); the fake targets here abort
(SIGABRT, as LiteRT's converter does) or sleep, and the cpu target beside them still passes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from edge_sdk.targets import TARGETS, Target
from edge_sdk_export.pipeline import ExportOptions, run_export
from tests.test_export import third_party_model


def export_abort(job):  # a converter dying in native code
    os.abort()


def export_hang(job):  # a converter that never returns
    time.sleep(600)


def export_raise(job):
    raise RuntimeError("converter said no")


def fake(name: str, exporter: str) -> Target:
    return Target(
        name=name,
        device="A test target",
        format_name="onnx",
        quantization="none: it fails",
        exporter=f"tests.test_export_isolation:{exporter}",
        device_check="edge_sdk.bench.machine:any_cpu_verdict",
        providers=("CPUExecutionProvider",),
    )


def export_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *rows: Target, **extra) -> dict:
    for row in rows:
        monkeypatch.setitem(TARGETS, row.name, row)
    out = tmp_path / "out"
    report = run_export(
        ExportOptions(
            model=str(third_party_model(tmp_path)),
            targets=[*(r.name for r in rows), "cpu"],
            calib="synthetic",
            out=out,
            calib_size=16,
            heldout_size=16,
            latency_runs=2,
            gates={},
            progress=False,
            **extra,
        )
    )
    for name in ("report.json", "report.md", "report.png"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "report.json").read_text())["failed"] == [r.name for r in rows]
    cpu = report["rows"][-1]
    assert cpu["target"] == "cpu" and cpu["status"] == "passed" and cpu["latency_ms"] > 0
    assert cpu["metrics"]["expression_agreement"] is not None and (out / cpu["files"][0]).exists()
    assert report["heldout"]["description"] == "16 rendered faces" and cpu["heldout"] == "16 rendered faces"
    return report


def test_native_crash_and_exception_fail_their_target_only(tmp_path, monkeypatch):
    report = export_with(tmp_path, monkeypatch, fake("aborts", "export_abort"), fake("raises", "export_raise"))
    aborts, raises = report["rows"][:2]
    assert aborts["status"] == "failed" and aborts["gates"] == [] and aborts["format"] == "onnx"
    assert aborts["reason"] == "native crash: SIGABRT (signal 6) during converting and quantizing"
    assert raises["reason"] == "RuntimeError: converter said no (during converting and quantizing)"
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| aborts | onnx | n/a |" in markdown and "- aborts: **failed** native crash: SIGABRT" in markdown


def test_hang_is_cut_off_at_the_time_limit(tmp_path, monkeypatch):
    # 15 s: long enough for the real cpu target beside it to finish on a loaded 2-core machine (5 s was not)
    report = export_with(tmp_path, monkeypatch, fake("hangs", "export_hang"), target_timeout_s=15)
    assert report["rows"][0]["reason"] == "hung: no result after 15 s during converting and quantizing"
    assert report["rows"][0]["export_s"] < 30


def test_time_limit_must_be_finite(tmp_path):
    from edge_sdk.errors import InputError

    with pytest.raises(InputError, match="--target-timeout inf"):
        run_export(
            ExportOptions(
                model="x", targets=["cpu"], calib="synthetic", out=tmp_path / "o", target_timeout_s=float("inf")
            )
        )
