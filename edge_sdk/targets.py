"""The target table: one row per deployment target.

This table is the single source of truth for the CLI (`--target` choices), the exporter
(which artifact format and quantization scheme to produce) and the benchmark (which backend
and providers to try, which device hints to print). Adding a target means adding a row here
and one export function in ``export/``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """A deployment target and how its artifact is built and run."""

    name: str
    device: str
    artifact_format: str  # "onnx" | "tflite" | "openvino"
    artifact_suffix: str
    backend: str  # key into edge_sdk.backend.BACKENDS
    quantization: str  # human-readable scheme of the INT8 artifact
    providers: tuple[str, ...] = ()  # onnxruntime execution providers, best first
    device_hints: tuple[str, ...] = ()


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            name="jetson",
            device="NVIDIA Jetson (TensorRT)",
            artifact_format="onnx",
            artifact_suffix=".onnx",
            backend="onnxruntime",
            quantization="QDQ ONNX, symmetric int8 activations and per-channel int8 weights "
            "(TensorRT explicit quantization)",
            providers=("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
            device_hints=(
                "Jetson: run `sudo nvpmodel -m 0 && sudo jetson_clocks` first for stable, maximal clocks.",
                "Build the engine on the device: trtexec --onnx=model.onnx --int8 --fp16 --saveEngine=model.engine",
            ),
        ),
        Target(
            name="rpi",
            device="Raspberry Pi 4/5 (LiteRT + XNNPACK)",
            artifact_format="tflite",
            artifact_suffix=".tflite",
            backend="litert",
            quantization="TFLite full-integer: int8 weights and activations, int8 input/output",
            device_hints=(
                "Pi: set the CPU governor to performance: "
                "`echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor`.",
                "Pi: check throttling with `vcgencmd get_throttled` (0x0 = never throttled); use a heatsink/fan.",
            ),
        ),
        Target(
            name="openvino",
            device="Intel CPU/GPU/NPU (OpenVINO)",
            artifact_format="openvino",
            artifact_suffix=".xml",
            backend="openvino",
            quantization="OpenVINO IR INT8 via NNCF post-training quantization",
            device_hints=("OpenVINO: set the power plan to performance; `benchmark_app` gives a second opinion.",),
        ),
        Target(
            name="cpu",
            device="Any x86/ARM CPU (ONNX Runtime)",
            artifact_format="onnx",
            artifact_suffix=".onnx",
            backend="onnxruntime",
            quantization="QDQ ONNX, uint8 activations and per-channel int8 weights (ONNX Runtime CPU)",
            providers=("CPUExecutionProvider",),
        ),
    )
}


def get_target(name: str) -> Target:
    """Return the target called ``name`` or raise a clear error listing the known ones."""
    from edge_sdk.errors import InputError

    try:
        return TARGETS[name]
    except KeyError:
        raise InputError(f"unknown target '{name}'; expected one of: {', '.join(TARGETS)}") from None
