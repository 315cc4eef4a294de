"""What machine a benchmark ran on, and whether its figures count as figures of the target device.

A number measured on a workstation must never read as a device number, so every result carries
:class:`MachineInfo` and a :func:`device_verdict` that says whether this machine *is* the target
(a Jetson running TensorRT/CUDA, a Raspberry Pi, an Intel machine for OpenVINO) or a stand-in.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_sdk.cpu import describe_cpu
from edge_sdk.targets import TARGETS, resolve

# Runtimes whose versions a result records (distribution name -> label). Looked up in package
# metadata, so nothing is imported just to print a version.
RUNTIME_DISTRIBUTIONS = {
    "onnxruntime": "onnxruntime",
    "onnxruntime-gpu": "onnxruntime-gpu",
    "ai-edge-litert": "ai_edge_litert",
    "openvino": "openvino",
    "tensorflow": "tensorflow",  # the LiteRT export's converter, where installed
    "tensorflow-cpu": "tensorflow-cpu",
    "numpy": "numpy",
    "opencv-python-headless": "opencv",
}


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip("\x00\n ")
    except OSError:
        return ""


def cpu_vendor() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "vendor_id":
            return value.strip()
    return ""


def board_model() -> str:
    """The board name on single-board computers (Raspberry Pi, Jetson), '' elsewhere."""
    return _read("/proc/device-tree/model")


def is_jetson() -> bool:
    return Path("/etc/nv_tegra_release").is_file() or "jetson" in board_model().lower()


def is_raspberry_pi() -> bool:
    return "raspberry pi" in board_model().lower()


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux; peak RSS elsewhere)."""
    for line in _read("/proc/self/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return None


def runtime_versions() -> dict[str, str]:
    """Installed versions of the inference runtimes and numeric libraries (absent ones left out)."""
    versions = {"python": platform.python_version()}
    for dist, label in RUNTIME_DISTRIBUTIONS.items():
        try:
            versions[label] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class MachineInfo:
    """The machine a benchmark ran on; recorded with every result."""

    cpu: str
    cpu_vendor: str
    arch: str
    cores_logical: int
    cores_usable: int
    os: str
    board: str
    device_class: str
    isa_flags: tuple[str, ...] = ()  # the inference-relevant ISA flags (edge_sdk.cpu.ISA_FLAGS_THAT_MATTER)
    int8_kernels: str = "other"  # edge_sdk.cpu.INT8_KERNEL_CLASSES key: int8 results depend on it
    runtimes: dict[str, str] = field(default_factory=dict)
    onnxruntime_providers: tuple[str, ...] = ()
    load_average_start: tuple[float, float, float] | None = None

    @property
    def summary(self) -> str:
        board = f"{self.board}, " if self.board else ""
        flags = " ".join(self.isa_flags) or "unknown"
        return (
            f"{board}{self.cpu} ({self.arch}; int8 kernels {self.int8_kernels}; ISA {flags}), "
            f"{self.cores_usable} usable cores, {self.os}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def onnxruntime_providers() -> tuple[str, ...]:
    try:
        import onnxruntime as ort
    except ImportError:
        return ()
    return tuple(ort.get_available_providers())


def collect_machine_info() -> MachineInfo:
    """Describe this machine (cheap: reads /proc and package metadata, imports only onnxruntime)."""
    cpu = describe_cpu()
    return MachineInfo(
        cpu=cpu.model,
        cpu_vendor=cpu_vendor(),
        arch=cpu.arch,
        cores_logical=os.cpu_count() or 1,
        cores_usable=cpu.cores_usable,
        os=platform.platform(terse=True),
        board=board_model(),
        device_class="jetson" if is_jetson() else "raspberry-pi" if is_raspberry_pi() else "generic",
        isa_flags=cpu.isa_flags,
        int8_kernels=cpu.int8_kernels,
        runtimes=runtime_versions(),
        onnxruntime_providers=onnxruntime_providers(),
        load_average_start=load_average(),
    )


# ---- is this machine the target device? ------------------------------------------------------
@dataclass(frozen=True)
class DeviceVerdict:
    """Whether a figure measured here is a figure of the target device, and why (printed verbatim)."""

    is_device: bool
    reason: str


def jetson_verdict(machine: MachineInfo, ran_on: str) -> DeviceVerdict:
    gpu = ran_on in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    if is_jetson() and gpu:
        return DeviceVerdict(True, f"Jetson, ran on {ran_on}")
    where = "a Jetson" if is_jetson() else f"this {machine.arch} machine ({machine.cpu}), not a Jetson"
    return DeviceVerdict(
        False, f"ran on {ran_on} on {where}: NOT a Jetson/TensorRT figure (TensorRT/CUDA providers absent)"
    )


def rpi_verdict(machine: MachineInfo, ran_on: str) -> DeviceVerdict:
    if is_raspberry_pi():
        return DeviceVerdict(True, f"{machine.board}, ran on {ran_on}")
    return DeviceVerdict(
        False, f"ran on {ran_on} on this {machine.arch} machine ({machine.cpu}): NOT a Raspberry Pi figure"
    )


def openvino_verdict(machine: MachineInfo, ran_on: str) -> DeviceVerdict:
    intel_device = ran_on.upper().startswith(("GPU", "NPU")) or machine.cpu_vendor == "GenuineIntel"
    if intel_device:
        return DeviceVerdict(True, f"Intel machine, ran on OpenVINO {ran_on}")
    return DeviceVerdict(
        False,
        f"ran on OpenVINO {ran_on} on a non-Intel CPU ({machine.cpu}): OpenVINO runs here, but this is "
        "NOT an Intel CPU/GPU/NPU figure",
    )


def any_cpu_verdict(machine: MachineInfo, ran_on: str) -> DeviceVerdict:
    """For targets that are any CPU: every machine is the device."""
    return DeviceVerdict(True, f"the cpu target is any CPU: this {machine.cpu} ({ran_on})")


def device_verdict(target: str, machine: MachineInfo, ran_on: str) -> DeviceVerdict:
    """Is a figure of ``target`` that ran on ``ran_on`` (provider/device) here a device figure?

    The target's row names its check (``Target.device_check``)."""
    row = TARGETS.get(target)
    if row is None:
        return DeviceVerdict(False, f"no device check is known for target '{target}'")
    return resolve(row.device_check)(machine, ran_on)
