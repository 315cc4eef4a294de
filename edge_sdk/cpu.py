"""The CPU this process runs on: its name, the ISA flags that matter for inference, and the int8
kernel class those flags select.

INT8 results depend on the CPU, not only on the model file. ONNX Runtime multiplies uint8
activations by int8 weights (u8s8) with ``vpmaddubsw`` on x86 without VNNI, which adds pairs of
products into int16 and **saturates**; with AVX512-VNNI or AVX-VNNI (``vpdpbusd``) the sums go
straight to int32 and do not. onnxruntime documents ``reduce_range`` (7-bit weights) for such
machines. So the same QDQ file can agree 0.997 with its FP32 parent on one x86 box and 0.907 on
another; every accuracy or speed figure should name :func:`int8_kernel_class`.

Example::

    >>> from edge_sdk.cpu import describe_cpu
    >>> info = describe_cpu()
    >>> info.int8_kernels in INT8_KERNEL_CLASSES
    True
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# Flags from /proc/cpuinfo that decide which inference kernels run (x86 "flags", ARM "Features").
ISA_FLAGS_THAT_MATTER = (
    "sse4_1",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "asimd",  # NEON on AArch64
    "neon",  # NEON on 32-bit ARM
    "asimddp",  # dot product (SDOT/UDOT), ARMv8.2
    "i8mm",  # int8 matrix multiply, ARMv8.6
)

# Int8 kernel class -> what it means for u8s8 / s8s8 int8 products (printed in reports and test headers).
INT8_KERNEL_CLASSES: dict[str, str] = {
    "x86-vnni": "x86 with VNNI (avx512_vnni/avx_vnni/amx_int8): int8 dot products accumulate in int32, no saturation",
    "x86-no-vnni": (
        "x86 without VNNI (AVX2/AVX512BW): u8s8 pairs are summed in int16 and can saturate "
        "(onnxruntime documents reduce_range=True for this class)"
    ),
    "arm-dotprod": "ARM with the dot-product extension (asimddp): int8 dot products into int32",
    "arm-neon": "ARM NEON without dot product: int8 products widened to int16/int32",
    "other": "a CPU without the SIMD extensions above: reference kernels",
}


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """The first value of every key in a /proc/cpuinfo text (the first processor describes them all here)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    fields = _cpuinfo_fields(_read("/proc/cpuinfo") if cpuinfo is None else cpuinfo)
    for key in ("model name", "Model", "Hardware"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine()


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """Every ISA flag the kernel reports (x86 ``flags``, ARM ``Features``); empty where unknown."""
    fields = _cpuinfo_fields(_read("/proc/cpuinfo") if cpuinfo is None else cpuinfo)
    return frozenset((fields.get("flags") or fields.get("Features") or "").split())


def int8_kernel_class(arch: str, flags: frozenset[str]) -> str:
    """Which class of int8 kernels this CPU runs (a key of :data:`INT8_KERNEL_CLASSES`).

    >>> int8_kernel_class("x86_64", frozenset({"avx2", "fma"}))
    'x86-no-vnni'
    >>> int8_kernel_class("x86_64", frozenset({"avx2", "avx512f", "avx512_vnni"}))
    'x86-vnni'
    >>> int8_kernel_class("aarch64", frozenset({"asimd", "asimddp"}))
    'arm-dotprod'
    """
    machine = arch.lower()
    if machine in ("x86_64", "amd64", "i686", "i386", "x86"):
        if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
            return "x86-vnni"
        return "x86-no-vnni" if flags & {"avx2", "avx512bw", "sse4_1"} else "other"
    if machine.startswith(("aarch64", "arm")):
        if "asimddp" in flags:
            return "arm-dotprod"
        # AArch64 always has NEON, even where /proc/cpuinfo is unreadable
        return "arm-neon" if flags & {"asimd", "neon"} or machine.startswith("aarch64") else "other"
    return "other"


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity / cgroup pinning included where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@dataclass(frozen=True)
class CpuInfo:
    """This machine's CPU, as every recorded figure must name it."""

    model: str
    arch: str
    isa_flags: tuple[str, ...]  # the flags of ISA_FLAGS_THAT_MATTER this CPU has, in that order
    int8_kernels: str  # a key of INT8_KERNEL_CLASSES
    cores_usable: int

    @property
    def summary(self) -> str:
        """One line: ``AMD EPYC (x86_64), int8 kernels x86-vnni, ISA avx2 avx512f ..., 2 usable cores``."""
        flags = " ".join(self.isa_flags) or "unknown"
        return (
            f"{self.model} ({self.arch}), int8 kernels {self.int8_kernels}, ISA {flags}, "
            f"{self.cores_usable} usable cores"
        )


def describe_cpu(cpuinfo: str | None = None, arch: str | None = None) -> CpuInfo:
    """Read this machine's CPU (or the given ``/proc/cpuinfo`` text and architecture, for tests)."""
    machine = arch or platform.machine()
    flags = cpu_flags(cpuinfo)
    return CpuInfo(
        model=cpu_model(cpuinfo),
        arch=machine,
        isa_flags=tuple(f for f in ISA_FLAGS_THAT_MATTER if f in flags),
        int8_kernels=int8_kernel_class(machine, flags),
        cores_usable=usable_cores(),
    )


def kernels_notice(
    measured_on: str | None,
    here: CpuInfo | None = None,
    what: str = "this artifact",
    also_on: Mapping[str, bool] | None = None,
) -> str | None:
    """A one-line notice when fidelity gates measured on the int8 kernel class ``measured_on`` are relied on
    by a CPU of another class (``here``, default this machine); None when the classes match, when the gates
    also passed on this CPU's class (``also_on``: class -> passed, measured with the exporting CPU's ISA capped)
    or nothing says where the gates were measured.

    >>> cpu = CpuInfo("Some Xeon", "x86_64", ("avx2",), "x86-no-vnni", 4)
    >>> kernels_notice("x86-no-vnni", cpu) is None
    True
    >>> print(kernels_notice("x86-vnni", cpu))  # doctest: +ELLIPSIS
    this artifact's fidelity gates were measured on int8 kernels x86-vnni, but this CPU (Some Xeon) runs x86-no-vnni...
    >>> kernels_notice("x86-vnni", cpu, also_on={"x86-no-vnni": True}) is None
    True
    """
    if not measured_on:
        return None
    cpu = here or describe_cpu()
    if measured_on == cpu.int8_kernels:
        return None
    judged_here = (also_on or {}).get(cpu.int8_kernels)
    if judged_here is True:
        return None
    meaning = INT8_KERNEL_CLASSES.get(cpu.int8_kernels, "an unknown kernel class")
    if judged_here is False:
        return (
            f"{what} FAILED its fidelity gates on int8 kernels {cpu.int8_kernels} ({meaning}), the class of this CPU "
            f"({cpu.model}), when the export checked it with its CPU's ISA capped: do not rely on its accuracy here; "
            f"use an artifact that passed on {cpu.int8_kernels} (or its FP32 file)"
        )
    return (
        f"{what}'s fidelity gates were measured on int8 kernels {measured_on}, but this CPU ({cpu.model}) runs "
        f"{cpu.int8_kernels} ({meaning}): its accuracy here is not what the export checked; re-validate it on "
        f"a machine of class {cpu.int8_kernels} (run `edge-sdk export` there) before relying on it"
    )


class _Validation(Protocol):
    @property
    def kernels(self) -> str: ...

    @property
    def also_on(self) -> Mapping[str, bool]: ...


class _ExportInfo(Protocol):
    """What :func:`artifact_kernels_notice` reads of a card's ``export`` (edge_sdk.contract.card.ExportInfo)."""

    @property
    def precision(self) -> str: ...

    @property
    def validated_on(self) -> _Validation | None: ...


def artifact_kernels_notice(
    export: _ExportInfo, what: str = "this artifact", here: CpuInfo | None = None
) -> str | None:
    """:func:`kernels_notice` for a model card's ``export`` section: None for FP32 files (their accuracy does
    not depend on int8 kernels) and for cards that do not record where they were validated."""
    validated = export.validated_on
    if validated is None or export.precision == "fp32":
        return None
    return kernels_notice(validated.kernels, here, what, validated.also_on)
