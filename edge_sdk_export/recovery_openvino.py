"""Accuracy recovery for OpenVINO IRs: NNCF's accuracy control ranks the layers, the export's gates decide.

When the all-INT8 IR misses a gate on the held-out faces, :func:`recover_openvino`

1. runs ``nncf.quantize_with_accuracy_control`` once, its metric :func:`edge_sdk_export.fidelity.gate_score`
   (1.0 when every gate passes, less by the failing gates' relative shortfall) with a drop of 0 allowed, at most
   ``--max-float-layers`` iterations. NNCF ranks the quantized layers by how much they move the outputs (per-face
   output error against FP32) and reverts them, most harmful first; the order it reverted them in is read from
   its log;
2. quantizes again with the first 1, 2, ... of those layers left out of quantization (NNCF's ignored scope)
   until every gate passes or the budget is spent. Reverting after the fact is not the same model: NNCF's full
   bias correction of the layers after a reverted one was computed for its INT8 output. Measured 2026-12-03 on a
   pruned EfficientNet-lite (Xeon, x86-vnni): accuracy control's own reverts made the IR *worse* (fidelity score
   drop 0.068 -> 0.19 at best after 6 reverts), while the first layer it ranked, left out of quantization, passed
   (VA CCC 0.9795 -> 0.9819, mean |dp| 0.0104 -> 0.0097).

The IR kept is judged here with the gates; the report lists its float layers and their size/latency cost
against the all-INT8 IR. Over budget the all-INT8 IR stays and the row's reason says what was tried.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.processing import HeadOutputs
from edge_sdk_export.recovery import Recovery, RecoverySettings

logger = logging.getLogger(__name__)

IR_SUFFIXES = (".xml", ".bin")


def ir_size(xml: Path) -> int:
    """Bytes of an IR: its ``.xml`` graph and ``.bin`` weights."""
    return sum(xml.with_suffix(s).stat().st_size for s in IR_SUFFIXES)


def _ir_judge(card: ModelCard, heldout: np.ndarray, ref: HeadOutputs, settings: RecoverySettings, work: Path) -> Any:
    """Recovery's judge (:class:`edge_sdk_export.recovery._Judge`, the export's gates) running IR files on the
    OpenVINO backend, in the chunks the export's own judgement uses."""
    from edge_sdk.backend import load_backend
    from edge_sdk_export.fidelity import head_outputs
    from edge_sdk_export.recovery import _Judge

    def outputs(xml: Path) -> HeadOutputs:
        return head_outputs(load_backend(xml, card=card, threads=settings.threads), heldout)

    return _Judge(card, heldout, ref, settings, work, outputs)


def recover_openvino(
    xml: Path,
    card: ModelCard,
    heldout: np.ndarray,
    heldout_ref: HeadOutputs,
    settings: RecoverySettings,
    work: Path,
    quantize: Callable[..., Path],
    fp32_xml: Path | None = None,
) -> Recovery:
    """Judge the IR at ``xml``; when a gate fails, find the fewest layers (in NNCF's ranking order) to leave in
    float for every gate to pass, within ``settings.max_float_layers``, and rewrite ``xml`` (+ ``.bin``) with it.

    ``quantize(out_xml, validation=None, max_iterations=None, float_layers=())`` quantizes the same parent with
    the same settings: under accuracy control when ``validation`` (held-out batch, score function) is given, else
    with ``float_layers`` left out. ``fp32_xml`` (the parent as an FP32 IR) is timed beside the two for the cost.
    """
    from edge_sdk_export.fidelity import gate_score, score_on_rows

    start = time.perf_counter()
    judge = _ir_judge(card, heldout, heldout_ref, settings, work)
    baseline = judge.judge(xml, ())
    budget = max(0, int(settings.max_float_layers))
    if baseline.passed or budget == 0:
        return Recovery(budget, baseline, baseline, evaluations=judge.count, seconds=time.perf_counter() - start)
    logger.info("openvino recovery: all-INT8 misses %s; ranking layers with NNCF", "; ".join(baseline.failing))
    folder = work / "openvino_recovery"
    folder.mkdir(parents=True, exist_ok=True)
    with _RevertLog() as reverted:
        score = score_on_rows(card, heldout_ref, partial(gate_score, gates=judge.gates))
        ranking = quantize(folder / "ranking.xml", validation=(heldout, score), max_iterations=budget)
    ranked = ranked_layers(reverted.layers, ranking, xml)[:budget]
    best, kept = baseline, None
    for count in range(1, len(ranked) + 1):
        layers = tuple(ranked[:count])
        candidate = quantize(folder / f"float{count}.xml", float_layers=layers)
        trial = judge.judge(candidate, layers)
        logger.info("openvino recovery: %d in float: %s", count, "pass" if trial.passed else trial.failing)
        if trial.passed or trial.key() <= best.key():
            best = trial
        if trial.passed:
            kept = candidate
            break
    seconds = time.perf_counter() - start
    if kept is None:
        logger.warning("openvino recovery: no IR within %d float layers passes every gate", budget)
        return Recovery(budget, baseline, baseline, tuple(ranked), (), {}, judge.count, seconds, best=best)
    int8_copy = folder / f"{xml.stem}.all_int8.xml"
    for suffix in IR_SUFFIXES:
        shutil.copyfile(xml.with_suffix(suffix), int8_copy.with_suffix(suffix))
        shutil.copyfile(kept.with_suffix(suffix), xml.with_suffix(suffix))
    cost = _cost(int8_copy, xml, fp32_xml, card, heldout, settings)
    logger.info("openvino recovery: kept in float %s (%s)", ", ".join(best.float_layers), cost)
    tried = tuple(ranked[: len(best.float_layers)])
    seconds = time.perf_counter() - start
    return Recovery(budget, baseline, best, tried, (), cost, judge.count, seconds, float_nodes=best.float_layers)


def ranked_layers(logged: list[str], ranking_xml: Path, all_int8_xml: Path) -> list[str]:
    """The layers accuracy control reverted, in its order (``logged``, from its log); when the log gave none (a
    changed message format), the weighted layers ``ranking_xml`` holds in float that ``all_int8_xml`` quantized,
    in graph order."""
    from edge_sdk_export.quant_openvino import int8_weight_ops

    if logged:
        return list(logged)
    quantized = int8_weight_ops(all_int8_xml)
    fallback = [name for name, is_int8 in int8_weight_ops(ranking_xml).items() if not is_int8 and quantized.get(name)]
    if fallback:
        logger.warning("openvino recovery: NNCF's log named no reverted layer; using the float layers of its IR")
    return fallback


class _RevertLog(logging.Handler):
    """Collects, in order, the layers NNCF's accuracy control logs as reverted to floating point (its log is the
    only place the order appears: ``Reverted N operations to the floating-point precision:`` + one per line)."""

    MARKER = "operations to the floating-point precision"

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.layers: list[str] = []
        self._logger = logging.getLogger("nncf")

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Reverted") and self.MARKER in message:
            for line in message.splitlines()[1:]:
                if (name := line.strip()) and name not in self.layers:
                    self.layers.append(name)

    def __enter__(self) -> _RevertLog:
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)


def _cost(
    int8: Path, mixed: Path, fp32: Path | None, card: ModelCard, x: np.ndarray, settings: RecoverySettings
) -> dict[str, Any]:
    """Size (graph + weights) and batch-1 OpenVINO latency (p50, runs interleaved) of the mixed IR against the
    all-INT8 one and the FP32 IR (when given)."""
    from edge_sdk.backend import load_backend
    from edge_sdk_export.recovery import mixed_cost

    files = {"all_int8": (int8, card), "mixed": (mixed, card)} | ({"fp32": (fp32, None)} if fp32 else {})
    backends = {k: load_backend(path, card=c, threads=settings.threads) for k, (path, c) in files.items()}
    cost = mixed_cost(backends, int8, mixed, x, settings.latency_runs)
    size_int8, size = ir_size(int8), ir_size(mixed)
    return cost | {"size_bytes_all_int8": size_int8, "size_bytes": size, "size_delta_bytes": size - size_int8}
