"""Judge an OpenVINO artifact on a smaller x86 CPU's int8 kernels, natively, by capping oneDNN's ISA.

An INT8 file's accuracy depends on the int8 kernels of the CPU that runs it (:mod:`edge_sdk.cpu`): x86 without
VNNI sums u8 x s8 pairs in int16 and can saturate. OpenVINO's CPU plugin runs its int8 kernels through oneDNN,
which honours ``ONEDNN_MAX_CPU_ISA``: a child process started with ``ONEDNN_MAX_CPU_ISA=AVX2`` on a VNNI (or
AMX) host runs the kernels an AVX2-only box runs. Measured 2026-12-03 on a 2-core Xeon (avx512_vnni, amx_int8):
the FER2013 Xception's IR judged that way gave exactly the figures it gave inside ``qemu-x86_64 -cpu Haswell``
(expression agreement 0.96154, KL 0.02822), in seconds instead of minutes of emulation.

onnxruntime has no such switch (MLAS picks its kernels from cpuid), so ONNX and TFLite files are judged on
other kernel classes only under qemu, by ``benchmarks/int8_isa.py`` and ``benchmarks/arch_zoo.py``.

The child only runs the artifact and saves its raw outputs; the caller compares them with FP32 and applies the
gates, exactly as for the native judgement.

Example (a VNNI host; on an AVX2-only host there is nothing smaller to cap to)::

    >>> from edge_sdk.cpu import CpuInfo
    >>> here = CpuInfo("Xeon", "x86_64", ("avx2", "avx512_vnni"), "x86-vnni", 2)
    >>> cappable_kernel_classes(here)
    {'x86-no-vnni': 'AVX2'}
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.processing import HeadOutputs
from edge_sdk.cpu import CpuInfo

logger = logging.getLogger(__name__)

ISA_CAP_VARIABLE = "ONEDNN_MAX_CPU_ISA"
# kernel class -> (oneDNN ISA cap that selects it, the host flags the cap needs, the host classes above it)
_CAPS: dict[str, tuple[str, frozenset[str], frozenset[str]]] = {
    "x86-no-vnni": ("AVX2", frozenset({"avx2"}), frozenset({"x86-vnni"})),
}
CHILD_TIMEOUT_S = 600.0


def cappable_kernel_classes(here: CpuInfo) -> dict[str, str]:
    """The int8 kernel classes below ``here``'s that a capped oneDNN reaches natively: class -> ISA cap."""
    flags = set(here.isa_flags)
    return {
        kernels: cap for kernels, (cap, needs, above) in _CAPS.items() if here.int8_kernels in above and needs <= flags
    }


def capped_env(isa_cap: str) -> dict[str, str]:
    """This process's environment with oneDNN's ISA capped to ``isa_cap`` (what a judging child runs with)."""
    return {**os.environ, ISA_CAP_VARIABLE: isa_cap}


@dataclass(frozen=True)
class CappedJudgement:
    """An artifact's gates on another int8 kernel class, measured with oneDNN capped to ``isa_cap``."""

    kernels: str  # a key of edge_sdk.cpu.INT8_KERNEL_CLASSES
    isa_cap: str  # the ONEDNN_MAX_CPU_ISA value that selected it
    passed: bool
    metrics: dict[str, float | None] = field(default_factory=dict)
    failing: tuple[str, ...] = ()  # the failing gates' messages
    error: str | None = None  # the child could not run the artifact (then passed is False and nothing was judged)

    @property
    def failed(self) -> bool:
        """The artifact ran with the cap and missed a gate (an error is not a verdict: see :func:`judge_capped`)."""
        return self.error is None and not self.passed

    def to_check(self) -> dict[str, Any]:
        """The report's ``checks.kernel_classes[kernels]`` entry."""
        check: dict[str, Any] = {
            "how": f"{ISA_CAP_VARIABLE}={self.isa_cap} (oneDNN capped on this CPU)",
            "passed": self.passed,
            "metrics": dict(self.metrics),
            "failed_gates": list(self.failing),
        }
        if self.error:
            check["error"] = self.error
        return check

    def summary(self) -> str:
        """One line for logs and reasons."""
        if self.error:
            return f"{self.kernels} ({ISA_CAP_VARIABLE}={self.isa_cap}): could not run: {self.error}"
        verdict = "pass" if self.passed else "; ".join(self.failing)
        return f"{self.kernels} ({ISA_CAP_VARIABLE}={self.isa_cap}): {verdict}"


def capped_outputs(
    artifact: Path, card: ModelCard, heldout: np.ndarray, isa_cap: str, work: Path
) -> dict[str, np.ndarray]:
    """The artifact's raw head outputs on ``heldout``, computed in a child process with oneDNN capped to ``isa_cap``
    (``card`` is the artifact's: the export judges it before its sidecar is written).

    Raises RuntimeError naming the artifact and the cap when the child fails (crash, timeout, exception).
    """
    work.mkdir(parents=True, exist_ok=True)
    batch, outputs = work / "capped_input.npy", work / f"capped_outputs_{isa_cap}.npz"
    card_file = work / "capped_card.json"
    np.save(batch, heldout)
    card_file.write_text(card.to_json(), encoding="utf-8")
    outputs.unlink(missing_ok=True)
    env = capped_env(isa_cap)
    what = f"{artifact.name} with {ISA_CAP_VARIABLE}={isa_cap}"
    command = [sys.executable, "-m", __name__, str(artifact), str(card_file), str(batch), str(outputs)]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what}: no result in {CHILD_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0 or not outputs.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise RuntimeError(f"{what}: {tail[0][:300]}")
    with np.load(outputs) as saved:
        return {name: saved[name] for name in saved.files}


def judge_capped(
    artifact: Path,
    card: ModelCard,
    heldout: np.ndarray,
    reference: HeadOutputs,
    gates: dict[str, Any],
    here: CpuInfo,
    work: Path,
) -> list[CappedJudgement]:
    """The artifact's gates on every kernel class :func:`cappable_kernel_classes` reaches from ``here``
    (an empty list where there is none: an AVX2-only or ARM host, or no AVX2).

    A child that cannot run the artifact gives a judgement with ``error`` set, which is no verdict either way:
    capping is not a perfect stand-in for the smaller CPU. Measured 2026-12-03 on the Xeon (AMX, AVX512-BF16): an
    IR with layers NNCF's accuracy control reverted to float failed with ``ONEDNN_MAX_CPU_ISA=AVX2`` ("Convolution
    node ... is not initialized") while OpenVINO ran those layers in bf16, its default on such CPUs, for which the
    capped oneDNN has no kernels; with the f32 precision hint the backend now always sets on CPU it runs (as an
    AVX2-only CPU, which has no bf16, would). All-INT8 IRs gave the qemu Haswell figures exactly.
    """
    from edge_sdk_export.fidelity import apply_gates, compare

    judged = []
    for kernels, cap in cappable_kernel_classes(here).items():
        try:
            outputs = capped_outputs(artifact, card, heldout, cap, work)
        except RuntimeError as exc:
            judged.append(CappedJudgement(kernels, cap, passed=False, error=str(exc)))
            logger.warning("%s", judged[-1].summary())
            continue
        metrics = compare(card, reference, outputs)
        passed, results = apply_gates(metrics, gates)
        failing = tuple(r.message for r in results if r.status == "fail")
        judged.append(CappedJudgement(kernels, cap, passed, metrics, failing))
        logger.info("%s: %s", artifact.name, judged[-1].summary())
    return judged


def _main(argv: list[str]) -> int:
    """Child: ``python -m edge_sdk_export.capped_isa ARTIFACT CARD.json INPUT.npy OUTPUTS.npz`` (cap in the env)."""
    from edge_sdk.backend import load_backend
    from edge_sdk_export.fidelity import head_outputs

    artifact, card_file, batch_file, out_file = argv
    card = ModelCard.from_json(Path(card_file).read_text(encoding="utf-8"), card_file)
    np.savez(out_file, **head_outputs(load_backend(artifact, card=card, threads=1), np.load(batch_file)))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
