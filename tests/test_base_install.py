"""The device runtime installs and runs with the base dependencies only (no torch/TF/NNCF/export)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO, shared_file

FORBIDDEN = ("torch", "tensorflow", "nncf", "onnx2tf", "torch_pruning", "export", "onnx")

IMPORT_EVERYTHING = f"""
import importlib, pkgutil, sys
import edge_sdk
for info in pkgutil.walk_packages(edge_sdk.__path__, "edge_sdk."):
    importlib.import_module(info.name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})
assert not bad, f"edge_sdk imported workstation-only modules: {{bad}}"
print("ok")
"""


def test_importing_every_runtime_module_pulls_no_workstation_package() -> None:
    result = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with `pip install edge-sdk` (base dependencies only), built from this checkout."""
    root = tmp_path_factory.mktemp("base-venv")
    # Build from a clean copy: a stale build/ folder in the checkout could leak files into the wheel.
    source = root / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".venv", "artifacts", ".*_cache"),
    )
    venv.create(root / "venv", with_pip=True)
    root = root / "venv"
    result = subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return root


def run_in(venv_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv_root / 'bin'}:{env.get('PATH', '')}"
    return subprocess.run(list(args), capture_output=True, text=True, cwd=str(venv_root), env=env, timeout=300)


def test_base_install_has_no_workstation_packages(base_venv: Path) -> None:
    listed = run_in(base_venv, "python", "-m", "pip", "list", "--format=freeze").stdout.lower()
    for name in ("torch", "tensorflow", "nncf", "onnx2tf", "openvino"):
        assert f"\n{name}==" not in f"\n{listed}", f"{name} was installed by the base install"
    check = run_in(base_venv, "python", "-c", IMPORT_EVERYTHING)
    assert check.returncode == 0, check.stderr[-2000:]


def test_base_install_cli_help_and_demo_prediction(base_venv: Path) -> None:
    help_ = run_in(base_venv, "edge-sdk", "--help")
    assert help_.returncode == 0 and "predict" in help_.stdout, help_.stderr
    card = run_in(base_venv, "edge-sdk", "card", "demo")
    assert card.returncode == 0, card.stderr
    assert '"synthetic_demo": true' in card.stdout
    predict = run_in(
        base_venv, "edge-sdk", "predict", "--model", "demo", str(shared_file("data/faces/single_face.jpg"))
    )
    assert predict.returncode == 0, predict.stderr[-2000:]
    assert "SYNTHETIC" in predict.stderr
    assert "pspi" in predict.stdout.lower()


def test_base_install_public_api_analyses_one_image(base_venv: Path) -> None:
    """The README's Python example works on the base install (numpy, OpenCV, onnxruntime; no extras)."""
    image = shared_file("data/faces/single_face.jpg")
    yunet = shared_file("models/yunet/yunet_s_640_640.onnx")
    script = (
        "import warnings, edge_sdk\n"
        "from edge_sdk import FaceModel, FaceAnalyzer, analyze_video\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    analyzer = FaceAnalyzer('demo', edge_sdk.create_detector('yunet', {str(yunet)!r}))\n"
        f"faces = analyzer.analyze({str(image)!r})\n"
        "assert any(issubclass(w.category, edge_sdk.SyntheticWeightsWarning) for w in caught), caught\n"
        "assert len(faces) == 1 and faces[0].pspi is not None, faces\n"
        "print('faces', len(faces))\n"
    )
    check = run_in(base_venv, "python", "-c", script)
    assert check.returncode == 0, check.stderr[-2000:]
    assert "faces 1" in check.stdout
