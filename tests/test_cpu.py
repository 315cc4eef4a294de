"""edge_sdk.cpu: the CPU name, ISA flags and int8 kernel class, from real /proc/cpuinfo layouts."""

from __future__ import annotations

import platform

import pytest

from edge_sdk.cpu import INT8_KERNEL_CLASSES, cpu_flags, cpu_model, describe_cpu, int8_kernel_class
from tests.isa import int8_kernels, onnxruntime_u8s8_saturates

# Abbreviated from real machines: an AVX2-only Xeon, an AVX512-VNNI EPYC, a Raspberry Pi 5 and a Pi 4.
X86_AVX2 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU E5-2673 v4 @ 2.30GHz
flags\t\t: fpu sse4_1 sse4_2 avx f16c fma avx2 bmi2
processor\t: 1
model name\t: Intel(R) Xeon(R) CPU E5-2673 v4 @ 2.30GHz
"""
X86_VNNI = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse4_1 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16
"""
PI5 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""
PI4 = """processor\t: 0
Features\t: fp asimd evtstrm crc32 cpuid
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


@pytest.mark.parametrize(
    ("cpuinfo", "arch", "model", "kernels"),
    [
        (X86_AVX2, "x86_64", "Intel(R) Xeon(R) CPU E5-2673 v4 @ 2.30GHz", "x86-no-vnni"),
        (X86_VNNI, "x86_64", "AMD EPYC", "x86-vnni"),
        (PI5, "aarch64", "Raspberry Pi 5 Model B Rev 1.0", "arm-dotprod"),
        (PI4, "aarch64", "Raspberry Pi 4 Model B Rev 1.4", "arm-neon"),
        ("", "riscv64", platform.processor() or platform.machine(), "other"),
    ],
    ids=["avx2", "avx512-vnni", "pi5", "pi4", "unknown"],
)
def test_cpu_model_flags_and_kernel_class(cpuinfo: str, arch: str, model: str, kernels: str) -> None:
    info = describe_cpu(cpuinfo, arch)
    assert (info.model, info.arch, info.int8_kernels) == (model, arch, kernels)
    assert set(info.isa_flags) <= cpu_flags(cpuinfo)
    assert kernels in info.summary and model in info.summary


def test_avx_vnni_and_amx_count_as_vnni() -> None:
    for flag in ("avx_vnni", "amx_int8"):
        assert int8_kernel_class("x86_64", frozenset({"avx2", flag})) == "x86-vnni"
    assert int8_kernel_class("x86_64", frozenset({"avx2", "avx512f", "avx512bw"})) == "x86-no-vnni"


def test_this_machine_is_described_and_onnxruntime_agrees_on_the_architecture() -> None:
    info = describe_cpu()
    assert info.model == cpu_model() and info.cores_usable >= 1
    assert int8_kernels() in INT8_KERNEL_CLASSES
    if onnxruntime_u8s8_saturates():  # only x86 kernels without VNNI saturate
        assert info.arch in ("x86_64", "AMD64") and int8_kernels() == "x86-no-vnni"
