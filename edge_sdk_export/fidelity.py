"""Fidelity of an exported artifact to its FP32 parent, per head, and the gates that pass or fail it.

Everything compares post-processed outputs (probabilities, 0-5 intensities, tanh VA, PSPI 0-16) of the
artifact with those of the FP32 parent on the same held-out crops: the FP32 model is the reference, not
ground truth, so these numbers measure only what export changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_sdk.bench.export_row import GateResult
from edge_sdk.contract.card import ModelCard
from edge_sdk.contract.processing import HeadOutputs, postprocess
from edge_sdk.errors import InputError
from edge_sdk_export.evaluate import ccc, f1

OCCURRENCE_THRESHOLD = 0.5


def _head(card: ModelCard, kind: str) -> str | None:
    head = card.head(kind)
    return None if head is None else head.name


def au_occurrence_f1(card: ModelCard, ref: HeadOutputs, out: HeadOutputs) -> float | None:
    """Micro F1 of the artifact's AU decisions (p >= 0.5) against the FP32 decisions."""
    name = _head(card, "au_occurrence")
    if name is None:
        return None
    return f1(out[name] >= OCCURRENCE_THRESHOLD, ref[name] >= OCCURRENCE_THRESHOLD)


def au_intensity_mae(card: ModelCard, ref: HeadOutputs, out: HeadOutputs) -> float | None:
    """Mean absolute difference of AU intensities (0-5 scale)."""
    name = _head(card, "au_intensity")
    return None if name is None else float(np.abs(out[name] - ref[name]).mean())


def expression_agreement(card: ModelCard, ref: HeadOutputs, out: HeadOutputs) -> float | None:
    """Fraction of faces whose top-1 expression equals the FP32 top-1."""
    name = _head(card, "expression")
    return None if name is None else float((out[name].argmax(1) == ref[name].argmax(1)).mean())


def _expression_probabilities(
    card: ModelCard, ref: HeadOutputs, out: HeadOutputs
) -> tuple[np.ndarray, np.ndarray] | None:
    """(FP32, artifact) expression class probabilities, faces x classes, or None without an expression head.

    The head's output after its card activation is used as is when the FP32 side is already a distribution
    (softmax in the card, or a model that ends in its own softmax with activation ``none``); the artifact's
    side is then only clipped at 0 and renormalised (an int8 softmax output sums to 1 within a few quantization
    steps, e.g. 1.0039 with 1/256 steps). Otherwise (logits, sigmoid scores) a softmax over the classes makes
    one, the same for both sides: the FP32 side decides, so both are always treated alike.
    """
    name = _head(card, "expression")
    if name is None:
        return None
    if _is_distribution(ref[name]):
        return _renormalised(ref[name]), _renormalised(out[name])
    return _softmax(ref[name]), _softmax(out[name])


def _is_distribution(values: np.ndarray) -> bool:
    x = np.asarray(values, dtype=np.float64)
    return bool(x.ndim == 2 and x.size and (x >= 0).all() and np.allclose(x.sum(axis=1), 1.0, atol=1e-3))


def _renormalised(values: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(values, dtype=np.float64), 0.0, None)
    total = x.sum(axis=-1, keepdims=True)
    return np.divide(x, total, out=np.full_like(x, 1.0 / x.shape[-1]), where=total > 0)


def _softmax(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def expression_mean_abs_dp(card: ModelCard, ref: HeadOutputs, out: HeadOutputs) -> float | None:
    """Mean over faces of the mean over classes of |p_artifact - p_FP32| (expression probabilities).

    Unlike top-1 agreement it does not jump when two classes are nearly tied: a weak model whose top two
    classes sit at 0.31 and 0.30 flips its top-1 on a 0.01 change, which this counts as 0.01 / classes.
    """
    probs = _expression_probabilities(card, ref, out)
    return None if probs is None else float(np.abs(probs[1] - probs[0]).mean())


KL_EPSILON = 1e-7  # probabilities are clipped to this before the logarithm (an int8 softmax can output 0)


def expression_kl(card: ModelCard, ref: HeadOutputs, out: HeadOutputs) -> float | None:
    """Mean over faces of KL(p_FP32 || p_artifact) in nats (expression probabilities, clipped at 1e-7)."""
    probs = _expression_probabilities(card, ref, out)
    if probs is None:
        return None
    p, q = (np.clip(x, KL_EPSILON, 1.0) for x in probs)
    p, q = p / p.sum(axis=1, keepdims=True), q / q.sum(axis=1, keepdims=True)
    return float(np.maximum((p * (np.log(p) - np.log(q))).sum(axis=1), 0.0).mean())


def _va_ccc(card: ModelCard, ref: HeadOutputs, out: HeadOutputs, column: int) -> float | None:
    name = _head(card, "valence_arousal")
    return None if name is None else ccc(out[name][:, column], ref[name][:, column])


def va_ccc(card: ModelCard, ref: HeadOutputs, out: HeadOutputs) -> float | None:
    """The lower of valence CCC and arousal CCC against FP32 (both must hold)."""
    values = [_va_ccc(card, ref, out, c) for c in (0, 1)]
    return None if values[0] is None else float(min(v for v in values if v is not None))


def pspi_mae(card: ModelCard, ref: HeadOutputs, out: HeadOutputs) -> float | None:
    """Mean absolute PSPI difference on the 0-16 scale."""
    return None if "pspi" not in ref else float(np.abs(out["pspi"] - ref["pspi"]).mean())


Metric = Callable[[ModelCard, HeadOutputs, HeadOutputs], "float | None"]

METRICS: dict[str, Metric] = {
    "au_occurrence_f1": au_occurrence_f1,
    "au_intensity_mae": au_intensity_mae,
    "expression_agreement": expression_agreement,
    "expression_mean_abs_dp": expression_mean_abs_dp,
    "expression_kl": expression_kl,
    "valence_ccc": lambda card, ref, out: _va_ccc(card, ref, out, 0),
    "arousal_ccc": lambda card, ref, out: _va_ccc(card, ref, out, 1),
    "va_ccc": va_ccc,
    "pspi_mae": pspi_mae,
}


@dataclass(frozen=True)
class Gate:
    """``metric`` must be >= (``higher_is_better``) or <= ``threshold``."""

    metric: str
    threshold: float
    higher_is_better: bool
    head: str  # the head a failure is reported against

    def check(self, value: float | None) -> tuple[str, str]:
        """(status, message): status is ``pass``, ``fail`` or ``n/a`` (the model has no such head)."""
        if value is None:
            return "n/a", f"{self.metric}: no {self.head} head"
        ok = value >= self.threshold if self.higher_is_better else value <= self.threshold
        op = ">=" if self.higher_is_better else "<="
        if ok:
            return "pass", f"{self.metric} {value:.4f} {op} {self.threshold:g}"
        short = abs(value - self.threshold)
        return "fail", (
            f"{self.head} head: {self.metric} {value:.4f} misses the gate {op} {self.threshold:g} by {short:.4f}"
        )


DEFAULT_GATES: dict[str, Gate] = {
    g.metric: g
    for g in (
        Gate("expression_agreement", 0.98, True, "expression"),
        Gate("au_occurrence_f1", 0.95, True, "au_occurrence"),
        Gate("va_ccc", 0.98, True, "valence_arousal"),
        Gate("pspi_mae", 0.15, False, "au_intensity (PSPI)"),
    )
}


# Gates that are off unless asked for (``--gate expression_mean_abs_dp=0.01``). The probability-level gate is
# not on by default: top-1 agreement is what a user of the expression head sees change, and the threshold that
# separates "near-tie flips" from real damage depends on how peaked the model's probabilities are. Turn it on
# (and ``expression_agreement=off``) for weak models whose top classes are nearly tied.
OPTIONAL_GATES: dict[str, Gate] = {
    g.metric: g for g in (Gate("expression_mean_abs_dp", 0.01, False, "expression (probabilities)"),)
}
GATE_OFF = "off"


def parse_gates(overrides: list[str] | None) -> dict[str, Gate]:
    """Default gates with ``metric=threshold`` overrides (e.g. ``expression_agreement=0.97``), optional gates
    turned on the same way (``expression_mean_abs_dp=0.01``), and any gate turned off with ``metric=off``."""
    gates = dict(DEFAULT_GATES)
    known = {**DEFAULT_GATES, **OPTIONAL_GATES}
    for item in overrides or []:
        name, sep, value = item.partition("=")
        if not sep or name not in known:
            raise InputError(
                f"--gate {item!r}: expected METRIC=VALUE (or METRIC={GATE_OFF}) with METRIC one of {', '.join(known)}"
            )
        if value.strip().lower() == GATE_OFF:
            gates.pop(name, None)
            continue
        try:
            threshold = float(value)
        except ValueError:
            raise InputError(f"--gate {item!r}: {value!r} is not a number (or {GATE_OFF!r})") from None
        gate = known[name]
        gates[name] = Gate(gate.metric, threshold, gate.higher_is_better, gate.head)
    return gates


def head_outputs(backend: Any, batch: np.ndarray, size: int = 32) -> HeadOutputs:
    """``backend.run`` over ``batch`` in chunks of ``size`` rows, concatenated: raw head outputs for ``compare``."""
    parts = [backend.run(batch[i : i + size]) for i in range(0, len(batch), size)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def compare(card: ModelCard, ref_raw: HeadOutputs, out_raw: HeadOutputs) -> dict[str, float | None]:
    """Every metric of raw (backend) outputs ``out_raw`` against the FP32 raw outputs ``ref_raw``."""
    ref, out = postprocess(card, ref_raw), postprocess(card, out_raw)
    values = {name: fn(card, ref, out) for name, fn in METRICS.items()}
    return {k: None if v is None else _rounded(k, float(v)) for k, v in values.items()}


# Figures that are tiny for a good artifact (1e-6 .. 1e-2): kept to 4 significant digits, not 5 decimals.
PROBABILITY_METRICS = ("expression_mean_abs_dp", "expression_kl")


def _rounded(name: str, value: float) -> float:
    return float(f"{value:.4g}") if name in PROBABILITY_METRICS else round(value, 5)


def apply_gates(metrics: dict[str, float | None], gates: dict[str, Gate]) -> tuple[bool, tuple[GateResult, ...]]:
    """(passed, one result per gate with its status and message)."""
    results = tuple(GateResult(gate.metric, *gate.check(metrics.get(gate.metric))) for gate in gates.values())
    return all(r.status != "fail" for r in results), results


def gate_margin(metrics: dict[str, float | None], gates: dict[str, Gate]) -> float:
    """The worst gate's margin, relative to the room between its threshold and a perfect value (1 for a
    ``>=`` gate, 0 for a ``<=`` gate): > 0 when every gate passes, < 0 when one fails, 1 for a perfect copy.

    >>> gate_margin({"expression_agreement": 0.99, "pspi_mae": 0.075}, DEFAULT_GATES)
    0.5
    """
    margins = []
    for gate in gates.values():
        value = metrics.get(gate.metric)
        if value is None:
            continue
        if gate.higher_is_better:
            room = 1.0 - gate.threshold
            margins.append((value - gate.threshold) / room if room > 0 else value - gate.threshold)
        else:
            margins.append((gate.threshold - value) / gate.threshold if gate.threshold > 0 else -value)
    return float(min(margins)) if margins else 1.0


def relative_shortfall(gate: Gate, value: float | None) -> float:
    """How far ``value`` misses ``gate``, relative to the gate's room (0 when it passes or does not apply).

    >>> relative_shortfall(DEFAULT_GATES["expression_agreement"], 0.97)
    0.5
    """
    if value is None or not np.isfinite(value):
        return 0.0
    threshold = float(gate.threshold)
    if gate.higher_is_better:
        short, room = threshold - value, (1.0 - threshold if threshold < 1.0 else 1.0)
    else:
        short, room = value - threshold, (threshold if threshold > 0 else 1.0)
    return max(0.0, short) / max(room, 1e-6)


def gate_score(metrics: dict[str, float | None], gates: dict[str, Gate]) -> float:
    """1.0 when every gate passes, else 1 minus the failing gates' summed relative shortfall: the metric OpenVINO
    recovery gives NNCF's accuracy control (no drop allowed: it reverts layers until every gate passes).

    >>> gate_score({"expression_agreement": 0.97, "pspi_mae": 0.1}, DEFAULT_GATES)
    0.5
    """
    return 1.0 - sum(relative_shortfall(g, metrics.get(g.metric)) for g in gates.values())


def worst_fidelity(metrics: dict[str, float | None]) -> float:
    """One number in [0, 1] for ``--max-drop`` (NNCF's accuracy control): the worst of expression agreement, AU F1
    and VA CCC."""
    values = [metrics[k] for k in ("expression_agreement", "au_occurrence_f1", "va_ccc") if metrics[k] is not None]
    return float(min(values)) if values else 1.0


def score_on_rows(
    card: ModelCard, reference: HeadOutputs, score: Callable[[dict[str, float | None]], float]
) -> Callable[[dict[str, np.ndarray], np.ndarray], float]:
    """An NNCF validation score: ``score`` of the metrics of raw outputs (tensor name -> array) on the held-out
    ``rows`` against the same rows of ``reference`` (NNCF also scores subsets and single faces)."""
    from edge_sdk.contract.processing import split_heads

    def on_rows(outputs: dict[str, np.ndarray], rows: np.ndarray) -> float:
        expected = {head: values[rows] for head, values in reference.items()}
        return score(compare(card, expected, split_heads(card, outputs)))

    return on_rows
