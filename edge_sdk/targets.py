"""The two tables every part reads: artifact formats and deployment targets.

* :data:`FORMATS`, one row per model file format: its suffixes, the backend module that runs it, the
  package that backend needs and how to install it, the tools whose versions an export records.
* :data:`TARGETS`, one row per deployment target: its format, quantization scheme, execution
  providers, device hints, and the two functions that are target-specific: the exporter (workstation
  side) and the device check (is this machine that device?). Those are *named* ("module:function"),
  not imported, so the device runtime never imports workstation code.

The CLI's ``--target`` choices, ``edge-sdk export``, ``edge-sdk benchmark``, ``edge-sdk doctor`` and
the backend loader all read these rows and nothing else.

* Adding a target whose format exists = one row in ``TARGETS`` + one export function (anywhere
  importable; ``edge_sdk_export/exporters.py`` for ours) + a device check (reuse :func:`~edge_sdk.bench.machine.
  any_cpu_verdict` or write one).
* Adding a format = one backend module (a :class:`~edge_sdk.backend.base.Backend` subclass) + one row
  in ``FORMATS``.

Example::

    >>> TARGETS["rpi"].format.suffix, TARGETS["rpi"].backend
    ('.tflite', 'litert')
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_sdk.errors import InputError


@dataclass(frozen=True)
class ArtifactFormat:
    """A model file format and the backend that runs it."""

    name: str  # "onnx" | "tflite" | "openvino"
    suffix: str  # the main file; the backend is chosen from it
    backend: str  # the backend's name (``--backend`` choices, BackendInfo.backend)
    backend_class: str  # "module:Class", a Backend subclass
    requires: str  # the import the backend needs
    install_hint: str
    companions: tuple[str, ...] = ()  # files beside the main one with the same stem (an IR's ".bin")
    export_tools: tuple[str, ...] = ()  # distributions whose versions an export's card records


@dataclass(frozen=True)
class Target:
    """A deployment target: the format of its artifact and how that artifact is made and judged."""

    name: str
    device: str
    format_name: str  # key of FORMATS
    quantization: str  # human-readable scheme of the INT8 artifact
    exporter: str  # "module:function" taking an export.exporters.ExportJob, returning an Exported
    device_check: str  # "module:function" (MachineInfo, ran_on) -> edge_sdk.bench.machine.DeviceVerdict
    providers: tuple[str, ...] = ()  # onnxruntime execution providers, best first
    device_hints: tuple[str, ...] = ()
    fp32_parent_suffixes: tuple[str, ...] = ()  # FP32 files the target's backend also runs (benchmark baseline)
    # Judged here on ONNX Runtime CPU as a proxy with graph optimisations off (QDQ simulated in float with exact
    # sums, as TensorRT's int32 accumulation computes them), so its gates do not depend on this CPU's int8 kernels.
    simulated_proxy: bool = False

    @property
    def format(self) -> ArtifactFormat:
        return FORMATS[self.format_name]

    @property
    def artifact_format(self) -> str:
        return self.format_name

    @property
    def artifact_suffix(self) -> str:
        return self.format.suffix

    @property
    def backend(self) -> str:
        return self.format.backend

    @property
    def suffixes(self) -> tuple[str, ...]:
        """Every main-file suffix a benchmark of this target accepts (its own, then FP32 parents)."""
        return (self.artifact_suffix, *self.fp32_parent_suffixes)


FORMATS: dict[str, ArtifactFormat] = {
    f.name: f
    for f in (
        ArtifactFormat(
            name="onnx",
            suffix=".onnx",
            backend="onnxruntime",
            backend_class="edge_sdk.backend.onnxruntime_backend:OnnxRuntimeBackend",
            requires="onnxruntime",
            install_hint="pip install edge-sdk",
            export_tools=("onnxruntime",),
        ),
        ArtifactFormat(
            name="tflite",
            suffix=".tflite",
            backend="litert",
            backend_class="edge_sdk.backend.litert_backend:LiteRTBackend",
            requires="ai_edge_litert",
            install_hint="pip install 'edge-sdk[litert]'",
            export_tools=("tensorflow", "onnx2tf"),
        ),
        ArtifactFormat(
            name="openvino",
            suffix=".xml",
            backend="openvino",
            backend_class="edge_sdk.backend.openvino_backend:OpenVINOBackend",
            requires="openvino",
            install_hint="pip install 'edge-sdk[openvino]'",
            companions=(".bin",),
            export_tools=("openvino", "nncf"),
        ),
    )
}

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            name="jetson",
            device="NVIDIA Jetson (TensorRT)",
            format_name="onnx",
            quantization="QDQ ONNX, symmetric int8 activations and per-channel int8 weights "
            "(TensorRT explicit quantization)",
            exporter="edge_sdk_export.exporters:export_jetson",
            device_check="edge_sdk.bench.machine:jetson_verdict",
            providers=("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
            simulated_proxy=True,
            device_hints=(
                "Jetson: run `sudo nvpmodel -m 0 && sudo jetson_clocks` first for stable, maximal clocks.",
                "Build the engine on the device: trtexec --onnx=model.onnx --int8 --fp16 --saveEngine=model.engine",
            ),
        ),
        Target(
            name="rpi",
            device="Raspberry Pi 4/5 (LiteRT + XNNPACK)",
            format_name="tflite",
            quantization="TFLite full-integer: int8 weights and activations, int8 input/output",
            exporter="edge_sdk_export.exporters:export_rpi",
            device_check="edge_sdk.bench.machine:rpi_verdict",
            device_hints=(
                "Pi: set the CPU governor to performance: "
                "`echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor`.",
                "Pi: check throttling with `vcgencmd get_throttled` (0x0 = never throttled); use a heatsink/fan.",
            ),
        ),
        Target(
            name="openvino",
            device="Intel CPU/GPU/NPU (OpenVINO)",
            format_name="openvino",
            quantization="OpenVINO IR INT8 via NNCF post-training quantization",
            exporter="edge_sdk_export.exporters:export_openvino",
            device_check="edge_sdk.bench.machine:openvino_verdict",
            device_hints=("OpenVINO: set the power plan to performance; `benchmark_app` gives a second opinion.",),
            fp32_parent_suffixes=(".onnx",),  # OpenVINO reads ONNX itself
        ),
        Target(
            name="cpu",
            device="Any x86/ARM CPU (ONNX Runtime)",
            format_name="onnx",
            quantization="QDQ ONNX, uint8 activations and per-channel 7-bit int8 weights (ONNX Runtime CPU; "
            "reduce_range: no int16 saturation on x86 without VNNI, same results on AVX2, VNNI and ARM)",
            exporter="edge_sdk_export.exporters:export_cpu",
            device_check="edge_sdk.bench.machine:any_cpu_verdict",
            providers=("CPUExecutionProvider",),
        ),
    )
}


def get_target(name: str) -> Target:
    """Return the target called ``name`` or raise a clear error listing the known ones."""
    try:
        return TARGETS[name]
    except KeyError:
        raise InputError(f"unknown target '{name}'; expected one of: {', '.join(TARGETS)}") from None


def format_for_suffix(suffix: str) -> ArtifactFormat | None:
    """The format whose main file has ``suffix`` (case-insensitive), or None."""
    return next((f for f in FORMATS.values() if f.suffix == suffix.lower()), None)


def resolve(reference: str) -> Callable[..., Any]:
    """The object a row names as ``"module:name"`` (imported on first use; ImportError says what is missing)."""
    module, _, name = reference.partition(":")
    if not module or not name:
        raise ValueError(f"{reference!r}: expected 'module:name'")
    return getattr(importlib.import_module(module), name)
