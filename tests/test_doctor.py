"""``edge-sdk doctor``: every check against real files and runtimes; fakes only for camera hardware."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from edge_sdk.cli import main
from edge_sdk.cli.doctor import Setup, blocking, check_camera, check_registry, check_storage, diagnose
from edge_sdk.models_registry import pull
from tests.model_factory import build_multitask_onnx

KEY_HEX = "11" * 32
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_file(relative: str) -> Path:
    """A file under ../shared; fails (never skips) when missing: CI always has it."""
    path = SHARED / relative
    assert path.is_file(), f"test data {path} is missing: the ../shared folder beside the checkout is needed"
    return path


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no default log key
    monkeypatch.delenv("EDGE_SDK_LOG_KEY", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fakes"))  # where a fake picamera2 may be written


def _fake_picamera2(tmp_path: Path, body: str) -> None:
    package = tmp_path / "fakes" / "picamera2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(body))


ONE_CAMERA = """
class Picamera2:
    @staticmethod
    def global_camera_info():
        return [{"Model": "imx708", "Location": 2, "Num": 0}]
"""
HANGING = """
import time
class Picamera2:
    @staticmethod
    def global_camera_info():
        time.sleep(60)
"""


def _by_check(findings):
    return {f.check: f for f in findings}


# ---- cameras -----------------------------------------------------------------------------------------
def test_no_camera_is_a_blocking_failure(tmp_path):
    findings = check_camera(Setup(dev_dir=tmp_path / "dev"))
    found = _by_check(findings)
    assert found["camera picamera2"].status == "info" and "not installed" in found["camera picamera2"].detail
    assert found["camera"].status == "FAIL" and "no camera" in found["camera"].detail
    assert blocking(findings) == [found["camera"]]


def test_video_node_that_does_not_open_is_reported(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "video0").touch()  # a node OpenCV cannot open (this machine has no camera)
    (tmp_path / "dev" / "video-meta").touch()  # not a capture index: ignored
    found = _by_check(check_camera(Setup(dev_dir=tmp_path / "dev", camera_timeout_s=20)))
    assert found["camera 0"].status == "FAIL"
    assert "none of" in found["camera"].detail and "video[0]" in found["camera"].detail


def test_fake_picamera2_camera_is_found(tmp_path):
    _fake_picamera2(tmp_path, ONE_CAMERA)
    found = _by_check(check_camera(Setup(dev_dir=tmp_path / "dev", camera_timeout_s=20)))
    assert found["camera picamera2"].status == "ok" and "imx708" in found["camera picamera2"].detail
    assert "camera" not in found  # something opened: no blocking failure
    configured = check_camera(Setup(source="picamera2", camera_timeout_s=20))
    assert [f.status for f in configured] == ["ok"]


def test_hanging_camera_driver_times_out(tmp_path):
    _fake_picamera2(tmp_path, HANGING)
    start = time.monotonic()
    (finding,) = check_camera(Setup(source="picamera2", camera_timeout_s=2.0))
    assert time.monotonic() - start < 10
    assert finding.status == "FAIL" and "no answer within 2 s" in finding.detail and finding.required


def test_video_file_source_reads_one_frame():
    video = shared_file("data/faces/single_face.mp4")
    (finding,) = check_camera(Setup(source=str(video), camera_timeout_s=30))
    assert finding.status == "ok" and "read a" in finding.detail


def test_missing_source_file_fails():
    (finding,) = check_camera(Setup(source="/nonexistent/clip.mp4", camera_timeout_s=30))
    assert finding.status == "FAIL" and finding.required and finding.fix


# ---- cache, log dir, key -----------------------------------------------------------------------------
def test_cache_verified_and_tampered():
    pull("yunet", source=shared_file("models/yunet/yunet_s_640_640.onnx"))
    found = _by_check(check_registry(Setup()))
    assert found["cache yunet"].status == "ok" and "sha256 verified" in found["cache yunet"].detail
    assert found["cache hsemotion-mbf-va"].status == "info"
    path = Path(found["cache yunet"].detail.split(" sha256")[0])
    path.write_bytes(path.read_bytes()[:-10])
    assert _by_check(check_registry(Setup()))["cache yunet"].status == "FAIL"


def test_log_dir_and_key(tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    found = _by_check(check_storage(Setup(log_dir=str(blocked / "log"))))
    assert found["log dir"].status == "FAIL" and "ReadWritePaths" in found["log dir"].fix
    assert found["log key"].status == "FAIL" and "no log key" in found["log key"].detail
    monkeypatch.setenv("EDGE_SDK_LOG_KEY", KEY_HEX)
    found = _by_check(check_storage(Setup(log_dir=str(tmp_path / "log"))))
    assert found["log dir"].status == "ok" and found["log key"].status == "ok"
    assert list((tmp_path / "log").iterdir()) == []  # the write test leaves nothing behind
    assert found["disk (log dir)"].status in ("ok", "warn")


def test_no_log_dir_is_informational():
    found = _by_check(check_storage(Setup()))
    assert found["log"].status == "info" and not blocking(list(found.values()))


# ---- the whole report and the exit code -----------------------------------------------------------------
def test_runnable_configuration_exits_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGE_SDK_LOG_KEY", KEY_HEX)
    pull("yunet", source=SHARED / "models" / "yunet")
    model = build_multitask_onnx(tmp_path / "model.onnx")
    config = tmp_path / "edge-sdk.toml"
    video = shared_file("data/faces/single_face.mp4")
    config.write_text(f'model = "{model}"\nsource = "{video}"\nlog_dir = "{tmp_path / "log"}"\n')
    assert main(["doctor", "--config", str(config), "--camera-timeout", "30"]) == 0
    out = capsys.readouterr().out
    assert "the configured pipeline can run" in out and "[ ok ] face detector" in out


def test_this_machine_without_camera_exits_one_with_json(tmp_path, capsys):
    pull("yunet", source=SHARED / "models" / "yunet")
    model = build_multitask_onnx(tmp_path / "model.onnx")
    assert main(["doctor", "--model", str(model), "--json", "--camera-timeout", "20"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["can_run"] is False
    failed = {f["check"] for f in report["findings"] if f["status"] == "FAIL" and f["required"]}
    if Path("/dev/video0").exists():
        pytest.fail("this test assumes a machine without cameras (CI); /dev/video0 exists here")
    assert failed == {"camera"}


def test_missing_model_is_blocking_and_crashing_check_is_reported(monkeypatch):
    findings = diagnose(Setup(model="no-such-model.onnx", source="/nonexistent.mp4", camera_timeout_s=30))
    assert "model no-such-model.onnx" in {f.check for f in blocking(findings)}

    def broken(setup):
        raise RuntimeError("boom")

    monkeypatch.setattr("edge_sdk.cli.doctor.CHECKS", (broken,))
    (finding,) = diagnose(Setup())
    assert finding.status == "FAIL" and "boom" in finding.detail


def test_camera_findings_never_show_stream_credentials() -> None:
    from edge_sdk.cli.doctor import probe_opencv

    finding = probe_opencv("rtsp://nurse:s3cret@127.0.0.1:9/live", timeout_s=20)
    assert finding.status == "FAIL" and "rtsp://***@127.0.0.1:9/live" in finding.check
    assert "s3cret" not in finding.check + finding.detail + finding.fix
