"""A base install that lacks an optional package says which extra to install: one ``error:`` line naming
``pip install 'edge-sdk[EXTRA]'``, exit code 2, no traceback. The missing package is simulated in a real
``edge-sdk`` process by blocking its import (``sys.modules[name] = None``, what Python does for a module that
is not there); the real base-install venv is covered by tests/test_no_tracebacks.py (slower)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_sdk.errors import EXTRA_OF_PACKAGE, EdgeSdkError, MissingExtraError, install_hint, missing_extra
from edge_sdk.pipeline.config import LogSettings
from edge_sdk.store.sink import EncryptedLogSink
from tests.conftest import REPO

BLOCKED_RUN = "import sys\nfor name in sys.argv[1].split(','):\n    sys.modules[name] = None\n"
BLOCKED_RUN += "from edge_sdk.cli import main\nsys.exit(main(sys.argv[2:]))\n"


def edge_sdk_without(blocked: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", BLOCKED_RUN, blocked, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def assert_names_the_extra(done: subprocess.CompletedProcess, extra: str) -> None:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, (done.returncode, done.stderr[-3000:])
    assert f"install it with: pip install 'edge-sdk[{extra}]'" in errors[0], errors
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-3000:]


def test_missing_extra_is_one_line_naming_the_extra() -> None:
    error = missing_extra("matplotlib.pyplot", "the timeline plot (--plot)")
    assert isinstance(error, MissingExtraError) and isinstance(error, EdgeSdkError)
    assert str(error) == (
        "the timeline plot (--plot) needs the 'matplotlib' package, which is not installed; "
        "install it with: pip install 'edge-sdk[data]'"
    )
    assert install_hint("openvino") == "pip install 'edge-sdk[openvino]'"
    assert install_hint("paho.mqtt.client") == "pip install 'edge-sdk[forward]'"
    assert install_hint("somethingelse") == "pip install somethingelse"  # no extra provides it: the package itself
    assert install_hint("pandas", extra="custom") == "pip install 'edge-sdk[custom]'"


@pytest.mark.parametrize(("package", "extra"), sorted(EXTRA_OF_PACKAGE.items()))
def test_every_named_extra_installs_its_package(package: str, extra: str) -> None:
    """The extra a message names exists in pyproject.toml and lists the package (``data``: pandas, pyarrow,
    matplotlib)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    distribution = package.replace("_", "-")
    assert any(dep.lower().startswith(distribution) for dep in extras.get(extra, [])), (extra, sorted(extras))


def test_summary_plot_without_matplotlib(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    sink = EncryptedLogSink.open(tmp_path / "log", LogSettings(key_file=str(key)))
    for i in range(3):
        sink.write({"frame": i, "media_time": i / 10, "faces": [], "state": "unknown", "pspi": None})
    sink.close()
    out = tmp_path / "plot.png"
    done = edge_sdk_without(
        "matplotlib", "log", "summary", "--log-dir", tmp_path / "log", "--key-file", key, "--plot", out, cwd=tmp_path
    )
    assert_names_the_extra(done, "data")
    assert "the timeline plot (--plot) needs the 'matplotlib' package" in done.stderr
    assert not out.exists()


def test_benchmark_openvino_without_openvino(tmp_path: Path) -> None:
    done = edge_sdk_without(
        "openvino", "benchmark", "--target", "openvino", "--runs", "1", "--warmup", "0", cwd=tmp_path
    )
    assert_names_the_extra(done, "openvino")


def test_export_without_the_workstation_packages(tmp_path: Path) -> None:
    done = edge_sdk_without(
        "torch,onnx,nncf,tensorflow",
        "export",
        "--model",
        "demo",
        "--calib",
        "synthetic",
        "--out",
        tmp_path / "out",
        cwd=tmp_path,
    )
    assert_names_the_extra(done, "export")
    assert not (tmp_path / "out").exists()
