"""YuNet in the box: ``scripts/vendor-models.py`` places the pinned YuNet (verified by its sha256) into a copy of
this checkout, a real wheel is built from it, installed into a fresh venv, and ``edge-sdk predict`` there finds
the face with YuNet from the package, with an empty model cache and from a folder outside the checkout. The
model file is never written into the checkout itself (it is gitignored and never committed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edge_sdk.errors import ArtifactError
from edge_sdk.face import detect
from edge_sdk.models_registry import REGISTRY
from tests.conftest import REPO, shared_file
from tests.runtime_fixtures import face_file, yunet_path

YUNET = REGISTRY["yunet"]


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, cwd=cwd, env=env or os.environ, timeout=300
    )
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
    return done


def checkout_copy(dest: Path) -> Path:
    """The files git would ship from this checkout (tracked and not ignored), copied to ``dest``."""
    listed = run("git", "ls-files", "-co", "--exclude-standard", "-z", cwd=REPO).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_vendored_wheel_detects_faces_without_a_pull(tmp_path: Path) -> None:
    source = checkout_copy(tmp_path / "src")
    models = source / "edge_sdk" / "face" / "models"
    assert not (models / YUNET.filename).exists()  # never in git: the checkout does not carry it
    done = run(sys.executable, "scripts/vendor-models.py", "--from", yunet_path().parent, cwd=source)
    assert f"sha256 {YUNET.sha256}" in done.stdout
    assert (models / YUNET.filename).read_bytes() == yunet_path().read_bytes()
    assert f"Licence: {YUNET.license}" in (models / "LICENSE-yunet.txt").read_text()

    pip = [sys.executable, "-m", "pip"]
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", ".", cwd=source)
    (wheel,) = (tmp_path / "dist").glob("edge_sdk-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"edge_sdk/face/models/{YUNET.filename}", "edge_sdk/face/models/LICENSE-yunet.txt"}
    assert wanted <= shipped, "pyproject.toml's package-data must ship edge_sdk/face/models/*.onnx and LICENSE-*.txt"
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(*pip, "--python", python, "install", "-q", "--no-deps", wheel, cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XDG_CACHE_HOME")}
    env["EDGE_SDK_HOME"] = str(tmp_path / "empty-cache")  # nothing pulled
    where = run(python, "-c", "import edge_sdk.face.detect as d; print(d.find_yunet_model())", cwd=elsewhere, env=env)
    found = where.stdout.strip()
    assert found.startswith(str(venv)) and found.endswith(f"site-packages/edge_sdk/face/models/{YUNET.filename}")
    predicted = run(
        venv / "bin" / "edge-sdk",
        "predict",
        "--model",
        "demo",
        "--json",
        face_file("single_face.jpg"),
        cwd=elsewhere,
        env=env,
    )
    assert '"detector": "yunet"' in predicted.stdout and predicted.stdout.count('"box"') == 1, predicted.stdout[-2000:]
    assert not (tmp_path / "empty-cache").exists()  # found in the package, not pulled


def test_packaged_model_is_checked_against_its_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_SDK_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(detect, "PACKAGED_MODELS_DIR", tmp_path)
    assert detect.find_yunet_model() is None  # neither packaged nor pulled
    shutil.copyfile(yunet_path(), tmp_path / YUNET.filename)
    assert detect.find_yunet_model() == tmp_path / YUNET.filename
    assert isinstance(detect.create_detector("auto"), detect.YuNetDetector)
    other = shared_file("models/yunet/yunet_n_dynamic.onnx")  # a real YuNet, but not the pinned one
    shutil.copyfile(other, tmp_path / YUNET.filename)
    with pytest.raises(ArtifactError, match=f"is not the pinned YuNet {YUNET.sha256}.*reinstall edge-sdk"):
        detect.find_yunet_model()


def test_vendor_script_refuses_a_folder_without_the_pinned_file(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    shutil.copyfile(shared_file("models/yunet/yunet_n_dynamic.onnx"), tmp_path / "src" / "model.onnx")
    (tmp_path / "src" / "LICENSE").write_text("MIT")
    done = subprocess.run(
        [sys.executable, REPO / "scripts" / "vendor-models.py", "--from", tmp_path / "src", "--dest", tmp_path / "out"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: --from ") and "matches 'yunet'" in done.stderr
    assert not any((tmp_path / "out").glob("*.onnx"))
