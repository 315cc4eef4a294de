"""Deploy recipes: systemd units verify, scripts pass shellcheck, the Pi installer's Python steps work.

systemd-analyze and shellcheck must be installed (Debian packages ``systemd`` and ``shellcheck``);
a missing tool fails the test with the package to install, it never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from edge_sdk.pipeline.config import build_config, load_toml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
SHARED = REPO.parent / "shared"
UNITS = sorted(DEPLOY.glob("*/*.service"))
DEVICE_UNITS = [unit for unit in UNITS if unit.parent.name != "station"]  # the ward station's has its own tests
SCRIPTS = sorted(DEPLOY.glob("*/*.sh")) + sorted((REPO / "scripts").glob("*.sh"))
CONFIGS = sorted(DEPLOY.glob("*/edge-sdk.toml"))


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install -y {package}")
    return path


def test_every_device_has_its_recipe():
    assert {p.parent.name for p in DEVICE_UNITS} == {"rpi", "jetson", "openvino"}
    assert (DEPLOY / "jetson" / "Dockerfile").is_file() and (DEPLOY / "openvino" / "Dockerfile").is_file()
    assert {p.parent.name for p in CONFIGS} == {"rpi", "kiosk"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_unit_passes_systemd_analyze_verify(unit, tmp_path):
    analyze = _tool("systemd-analyze", "systemd")
    # verify also checks that ExecStart binaries exist; point them at a stub (the rest is verified as is).
    stub = tmp_path / "stub"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    text = unit.read_text()
    for binary in ("/opt/edge-sdk/venv/bin/edge-sdk", "/usr/bin/docker"):
        text = text.replace(binary, str(stub))
    copy = tmp_path / unit.name
    copy.write_text(text)
    # the container units need docker.service; this machine may have no Docker: a stand-in unit beside it
    (tmp_path / "docker.service").write_text(f"[Service]\nExecStart={stub}\n")
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


@pytest.mark.parametrize("unit", DEVICE_UNITS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_unit_hardening(unit):
    text = unit.read_text()
    lines = set(text.splitlines())
    for setting in (
        "Restart=on-failure",
        "User=edge-sdk",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/edge-sdk/log",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
    ):
        assert setting in lines, f"{unit}: missing {setting}"
    if "docker run" in text:  # the client needs no network; the container gets its own firewalled bridge
        assert "PrivateNetwork=yes" in lines and "--network edge-sdk" in text and "--network none" not in text
    else:  # the bedside process: every address denied but loopback, the [forward] endpoints by drop-in
        assert {"IPAddressDeny=any", "IPAddressAllow=localhost"} <= lines and "PrivateNetwork=yes" not in lines
        assert "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6" in lines


FORWARD_CONFIG = """
[forward]
device_id = "bed-12"
[forward.mqtt]
url = "mqtts://127.0.0.1:8883"
username = "bed-12"
[forward.webhook]
url = "https://localhost:8443/hook"
secret_file = "/etc/edge-sdk/webhook-secret"
"""


def test_network_allowlist_renders_a_dropin_that_systemd_accepts(tmp_path):
    """network-allowlist.sh (with the venv's python standing in) writes IPAddressAllow= exactly the configured
    endpoints' addresses (a name resolved, its nameservers added); the unit with that drop-in verifies."""
    config = tmp_path / "edge-sdk.toml"
    config.write_text(FORWARD_CONFIG)
    prefix = tmp_path / "opt"
    (prefix / "venv" / "bin").mkdir(parents=True)
    (prefix / "venv" / "bin" / "python").symlink_to(sys.executable)
    dropins = tmp_path / "edge-sdk.service.d"
    env = {**os.environ, "EDGE_SDK_PREFIX": str(prefix), "EDGE_SDK_DROPIN_DIR": str(dropins), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        ["bash", str(DEPLOY / "rpi" / "network-allowlist.sh"), str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    dropin = (dropins / "network.conf").read_text()
    allow = next(line for line in dropin.splitlines() if line.startswith("IPAddressAllow="))
    addresses = set(allow.removeprefix("IPAddressAllow=").split())
    assert "127.0.0.1" in addresses and addresses <= {"127.0.0.1", "::1"} | _nameservers()
    # the unit plus the drop-in still verifies
    analyze = _tool("systemd-analyze", "systemd")
    stub = tmp_path / "stub"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    unit = (DEPLOY / "rpi" / "edge-sdk.service").read_text().replace("/opt/edge-sdk/venv/bin/edge-sdk", str(stub))
    copy = tmp_path / "edge-sdk.service"
    copy.write_text(unit + "\n" + dropin)
    verified = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and not (verified.stdout + verified.stderr).strip(), verified.stderr
    # containers: DOCKER-USER rules for the same endpoints, everything else from the subnet dropped
    from edge_sdk.forward.allowlist import allowed, iptables_rules

    rules = iptables_rules(allowed(build_config(load_toml(config)).forward), "172.30.99.0/29")
    assert "-d 127.0.0.1 -p tcp --dport 8883 -j ACCEPT" in rules and "--dport 8443" in rules
    assert rules.splitlines()[1] == "iptables -I DOCKER-USER -s 172.30.99.0/29 -j DROP"


def test_no_forward_section_means_loopback_only(tmp_path):
    from edge_sdk.forward.allowlist import allowed, systemd_dropin

    assert "IPAddressAllow" not in systemd_dropin(allowed(build_config({}).forward))


def _nameservers() -> set[str]:
    from edge_sdk.forward.allowlist import nameservers

    return set(nameservers())


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_script_passes_shellcheck(script):
    shellcheck = _tool("shellcheck", "shellcheck")
    done = subprocess.run([shellcheck, "--severity=style", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert os.access(script, os.X_OK), f"{script} is not executable"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.parent.name)
def test_sample_configs_are_valid_run_configs(config):
    run = build_config(load_toml(config))
    data = tomllib.loads(config.read_text())
    assert run.detector.kind == "yunet"
    if config.parent.name == "kiosk":
        assert "log_dir" not in data  # nothing kept on disk
    else:
        assert run.log_dir == "/var/lib/edge-sdk/log" and run.source == "picamera2"


def test_kiosk_examples_compile():
    for path in (DEPLOY / "kiosk").glob("*.py"):
        compile(path.read_text(), str(path), "exec")


def _clean_copy(destination: Path) -> Path:
    """The checkout without build leftovers (pip builds in place: it must not write into the checkout)."""
    ignore = shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".venv", "artifacts", ".*_cache")
    shutil.copytree(REPO, destination, ignore=ignore)
    return destination


def test_rpi_install_python_steps_in_a_fresh_venv(tmp_path):
    """The installer with EDGE_SDK_SYSTEM=0: venv --system-site-packages, pip install, picamera2 visible, yunet.

    Built with ``--no-build-isolation``, so the venv's own setuptools builds the wheel: the case that broke
    where the system's setuptools (Python 3.11 bundles 65.x) had no ``wheel`` package beside it. The installer
    must bring its own build tools into the venv, whatever the system has.
    """
    assert (SHARED / "models" / "yunet").is_dir(), "../shared/models/yunet is missing"
    fakes = tmp_path / "system-site"  # stands in for the apt python3-picamera2 in dist-packages
    (fakes / "picamera2").mkdir(parents=True)
    (fakes / "picamera2" / "__init__.py").write_text("class Picamera2:\n    pass\n")
    prefix = tmp_path / "opt"
    source = _clean_copy(tmp_path / "src")
    env = {
        **os.environ,
        "PYTHONPATH": str(fakes),
        "EDGE_SDK_SYSTEM": "0",
        "EDGE_SDK_PREFIX": str(prefix),
        "EDGE_SDK_PIP_SPEC": f"{source}[litert]",
        "EDGE_SDK_PIP_ARGS": "--no-build-isolation --quiet --disable-pip-version-check",
        "EDGE_SDK_MODELS_FROM": str(SHARED / "models" / "yunet"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", str(DEPLOY / "rpi" / "install.sh")], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    venv_python = prefix / "venv" / "bin" / "python"
    cfg = (prefix / "venv" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg
    assert (prefix / "home" / "models" / "yunet" / "face_detection_yunet_2023mar.onnx").is_file()
    check = subprocess.run(
        [
            str(venv_python),
            "-c",
            "import edge_sdk, picamera2, setuptools, setuptools.command.bdist_wheel; "
            "print(edge_sdk.__file__); print(setuptools.__version__)",
        ],
        env=env,
        cwd=tmp_path,  # not the checkout: the import must come from the venv
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    edge_sdk_file, setuptools_version = check.stdout.split()
    assert str(prefix) in edge_sdk_file, check.stdout
    major, minor = (int(part) for part in setuptools_version.split(".")[:2])
    assert (major, minor) >= (70, 1), f"the venv builds with setuptools {setuptools_version} (needs >= 70.1)"
