"""Accuracy recovery for OpenVINO IRs: keep the fewest activation tensors in float until every gate passes.

When the all-INT8 IR misses a gate on the held-out faces, :func:`recover_openvino`

1. searches the IR's own activation quantizers: a variant with some ``FakeQuantize`` nodes removed keeps those
   tensors in float (the layers reading them run in float on their INT8-stored weights, dequantized when the IR
   is compiled), so every variant is one graph edit and one inference pass, no re-quantization. The search is
   the QDQ one (:func:`edge_sdk_export.recovery.find_float_layers`: each quantizer's damage alone in INT8 ranks
   them, then the forward and backward passes), its "layers" the ``FakeQuantize`` names NNCF gives
   (``<tensor>/fq_output_0``);
2. when that finds no variant within the budget, falls back to NNCF's accuracy control as a ranking: it runs
   ``nncf.quantize_with_accuracy_control`` once (its metric :func:`edge_sdk_export.fidelity.gate_score`, a
   drop of 0 allowed, at most ``--max-float-layers`` iterations), reads the order it reverted layers in from its
   log, and quantizes again with the first 1, 2, ... of those left out (NNCF's ignored scope).

Why the order: on the pruned zoo models (AVX2 EPYC, 2026-12-04) the accuracy-control path failed both IRs that
missed (EfficientNet-lite: VA CCC 0.957 all-INT8, 0.963 at best; MobileNetV3-small 0.934 -> 0.941) in 165 and
370 s, while the quantizer search passed them with 3 and 5 float tensors in 14 and 47 s (VA CCC 0.983 and
0.980): re-quantizing changes the model it ranked (NNCF's bias correction of the layers after a reverted one
was computed for its INT8 output), and removing a quantizer does not. ``--max-drop`` still runs NNCF's accuracy
control on the whole export instead (:func:`edge_sdk_export.quant_openvino.quantize_openvino`).

The IR kept is judged here with the gates; the report lists its float tensors (or layers) and their size/latency
cost against the all-INT8 IR. Over budget the all-INT8 IR stays and the row's reason says what was tried.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.processing import HeadOutputs
from edge_sdk_export.recovery import Recovery, RecoverySettings, Trial, find_float_layers

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
    """Judge the IR at ``xml``; when a gate fails, find the fewest activation tensors (else NNCF-ranked layers) to
    leave in float for every gate to pass, within ``settings.max_float_layers``, and rewrite ``xml`` (+ ``.bin``)
    with that IR (see the module docstring).

    ``quantize(out_xml, validation=None, max_iterations=None, float_layers=())`` quantizes the same parent with
    the same settings: under accuracy control when ``validation`` (held-out batch, score function) is given, else
    with ``float_layers`` left out. ``fp32_xml`` (the parent as an FP32 IR) is timed beside the two for the cost.
    """
    start = time.perf_counter()
    judge = _ir_judge(card, heldout, heldout_ref, settings, work)
    baseline = judge.judge(xml, ())
    budget = max(0, int(settings.max_float_layers))
    if baseline.passed or budget == 0:
        return Recovery(budget, baseline, baseline, evaluations=judge.count, seconds=time.perf_counter() - start)
    logger.info("openvino recovery: all-INT8 misses %s; searching its quantizers", "; ".join(baseline.failing))
    folder = work / "openvino_recovery"
    folder.mkdir(parents=True, exist_ok=True)
    judge.focus_on(baseline)
    baseline = judge.judge(xml, ())  # its error on the failing heads only
    variants = FakeQuantizeVariants(xml, judge, folder / "candidate.xml")
    best, tried, ranking = find_float_layers(variants.layers, variants.trial, baseline, budget)
    kept = variants.build(best.float_layers, folder / "float_tensors.xml") if best.passed else None
    if kept is None:
        logger.info("openvino recovery: no quantizer set within %d passes; ranking layers with NNCF", budget)
        nncf_best, kept, ranked = nncf_ranked_search(xml, card, heldout_ref, judge, baseline, budget, quantize, folder)
        if kept is not None or nncf_best.key() < best.key():
            best, tried, ranking = nncf_best, ranked, ()
    seconds = time.perf_counter() - start
    if kept is None:
        logger.warning("openvino recovery: no IR within %d float layers passes every gate", budget)
        return Recovery(budget, baseline, baseline, tried, ranking, {}, judge.count, seconds, best=best)
    int8_copy = folder / f"{xml.stem}.all_int8.xml"
    for suffix in IR_SUFFIXES:
        shutil.copyfile(xml.with_suffix(suffix), int8_copy.with_suffix(suffix))
        shutil.copyfile(kept.with_suffix(suffix), xml.with_suffix(suffix))
    cost = _cost(int8_copy, xml, fp32_xml, card, heldout, settings)
    logger.info("openvino recovery: kept in float %s (%s)", ", ".join(best.float_layers), cost)
    seconds = time.perf_counter() - start
    nodes = best.float_layers
    return Recovery(budget, baseline, best, tried, ranking, cost, judge.count, seconds, float_nodes=nodes)


class FakeQuantizeVariants:
    """Variants of one INT8 IR with some activation ``FakeQuantize`` nodes removed (``trial`` judges one)."""

    def __init__(self, xml: Path, judge: Any, candidate: Path) -> None:
        import openvino as ov

        self.model = ov.Core().read_model(str(xml))
        self.layers = [
            op.get_friendly_name()
            for op in self.model.get_ordered_ops()
            if op.get_type_name() == "FakeQuantize" and not _is_constant(op.input_value(0).get_node())
        ]
        self.judge, self.candidate = judge, candidate

    def build(self, layers: Sequence[str], out_xml: Path) -> Path:
        """Write the IR with the quantizers named in ``layers`` removed (their input passed on as is)."""
        import openvino as ov

        from edge_sdk_export.quant_openvino import compact_ir_xml

        model = self.model.clone()
        names = set(layers)
        for op in model.get_ordered_ops():
            if op.get_type_name() == "FakeQuantize" and op.get_friendly_name() in names:
                op.output(0).replace(op.input_value(0))
        ov.save_model(model, str(out_xml), compress_to_fp16=False)
        compact_ir_xml(out_xml)
        return out_xml

    def trial(self, layers: list[str]) -> Trial:
        return self.judge.judge(self.build(layers, self.candidate), layers)


def _is_constant(node: Any) -> bool:
    """A weight quantizer's input: a constant, possibly converted."""
    kind = node.get_type_name()
    return kind == "Constant" or (kind == "Convert" and _is_constant(node.input_value(0).get_node()))


def nncf_ranked_search(
    xml: Path,
    card: ModelCard,
    heldout_ref: HeadOutputs,
    judge: Any,
    baseline: Trial,
    budget: int,
    quantize: Callable[..., Path],
    folder: Path,
) -> tuple[Trial, Path | None, tuple[str, ...]]:
    """Step 2 of the module docstring: NNCF's accuracy control ranks the layers; the IR is quantized again with
    the first 1, 2, ... left out until every gate passes. ``baseline`` is ``judge``'s trial of the all-INT8 IR at
    ``xml``. Returns the best trial, the passing IR (None when none passed within ``budget``) and the ranked layers
    tried."""
    from edge_sdk_export.fidelity import gate_score, score_on_rows

    with _RevertLog() as reverted:
        score = score_on_rows(card, heldout_ref, partial(gate_score, gates=judge.gates))
        ranking = quantize(folder / "ranking.xml", validation=(judge.heldout, score), max_iterations=budget)
    ranked = ranked_layers(reverted.layers, ranking, xml)[:budget]
    best = baseline
    for count in range(1, len(ranked) + 1):
        layers = tuple(ranked[:count])
        candidate = quantize(folder / f"float{count}.xml", float_layers=layers)
        trial = judge.judge(candidate, layers)
        logger.info("openvino recovery: %d in float: %s", count, "pass" if trial.passed else trial.failing)
        if trial.passed or trial.key() <= best.key():
            best = trial
        if trial.passed:
            return best, candidate, layers
    return best, None, tuple(ranked)


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
