"""Which int8 kernels this test run exercises, read two ways, so that every CI log names them.

``/proc/cpuinfo`` (edge_sdk.cpu) says what the CPU advertises. The probe below asks onnxruntime
itself: one ``MatMulInteger`` whose uint8 x int8 pairs overflow int16 (255 * 127 * 2 = 64,770).
x86 kernels without VNNI (``vpmaddubsw``) saturate those pair sums at 32,767; VNNI and ARM kernels
accumulate in int32 and return the exact product. The probe is what decides ISA-dependent
expectations in tests, because it is what the quantized models actually run (it also sees through
an emulator that advertises a smaller CPU than the host, e.g. ``qemu-x86_64 -cpu Haswell``).
"""

from __future__ import annotations

import functools

import numpy as np

from edge_sdk.cpu import INT8_KERNEL_CLASSES, describe_cpu

_DEPTH = 64


@functools.cache
def onnxruntime_u8s8_saturates() -> bool:
    """True when onnxruntime's uint8 x int8 products saturate in int16 on this machine (x86 without VNNI)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.full((_DEPTH, 1), 127, np.int8), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])],
        "u8s8_probe",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, _DEPTH])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = int(session.run(None, {"a": np.full((1, _DEPTH), 255, np.uint8)})[0][0, 0])
    return got != 255 * 127 * _DEPTH


def int8_kernels() -> str:
    """The int8 kernel class onnxruntime runs here: a key of edge_sdk.cpu.INT8_KERNEL_CLASSES."""
    advertised = describe_cpu().int8_kernels
    if onnxruntime_u8s8_saturates():
        return "x86-no-vnni"
    return "x86-vnni" if advertised == "x86-no-vnni" else advertised


def header_lines() -> list[str]:
    """What the test run prints first: the CPU, its ISA flags, and the int8 kernels actually exercised."""
    cpu = describe_cpu()
    kernels = int8_kernels()
    lines = [f"cpu: {cpu.summary}", f"int8 kernels exercised: {kernels}: {INT8_KERNEL_CLASSES[kernels]}"]
    if kernels != cpu.int8_kernels:
        lines.append(f"note: /proc/cpuinfo advertises {cpu.int8_kernels}, onnxruntime runs {kernels} (emulated CPU?)")
    return lines
