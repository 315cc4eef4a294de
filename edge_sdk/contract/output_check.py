"""Is a model's post-processed output believable? Finite values inside the range each head declares.

Broken weights (bit rot, a bad export, a card describing another model) show up as NaN, infinities or
values no head can produce. The runtime loop uses :func:`output_problems` to refuse to score such a frame,
and ``edge-sdk doctor``/``edge-sdk card`` to fail a model before it is deployed.

A head's range comes from its card: its ``clamp``, or its activation (sigmoid and softmax give
probabilities in [0, 1] and softmax rows sum to 1; tanh gives [-1, 1]). ``RANGE_SLACK`` of the range's
span is tolerated beyond it; PSPI must be in [0, 16]. An ``au_intensity`` regression head without an
activation is on the 0-5 intensity scale but may overshoot it (-0.3 on a neutral face, 5.4 at maximum
pain): ``pspi`` clips it to 0-5, and only values a full scale beyond it (outside [-5, 10]) are a fault.
"""

from __future__ import annotations

import numpy as np

from edge_sdk.contract.card import HeadSpec, ModelCard
from edge_sdk.contract.processing import HeadOutputs

RANGE_SLACK = 0.05  # fraction of a head's range its values may exceed it by
SUM_TOLERANCE = 0.02  # how far a softmax row may sum from 1
AU_INTENSITY_RANGE = (0.0, 5.0)
# An unclamped intensity head's believable values: the 0-5 scale plus a full scale of slack either side.
AU_INTENSITY_TOLERATED = (-5.0, 10.0)
PSPI_RANGE = (0.0, 16.0)


def head_range(head: HeadSpec) -> tuple[float, float] | None:
    """The values ``head`` can hold after its activation, or None when it declares no range (raw logits)."""
    if head.activation == "clamp" and head.clamp is not None:
        return head.clamp
    if head.activation in ("sigmoid", "softmax"):
        return (0.0, 1.0)
    if head.activation == "tanh":
        return (-1.0, 1.0)
    if head.kind == "au_intensity":
        return AU_INTENSITY_TOLERATED
    return None


def _label(head: HeadSpec, column: int) -> str:
    return head.labels[column] if column < len(head.labels) else str(column)


def values_problem(
    name: str,
    values: np.ndarray,
    bounds: tuple[float, float] | None,
    head: HeadSpec | None,
    slack_fraction: float = RANGE_SLACK,
) -> str | None:
    """What is wrong with one face's ``values`` of head ``name`` (None: nothing)."""
    values = np.asarray(values, np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        first = _label(head, int(bad[0])) if head is not None else name
        return f"{name}: {bad.size} non-finite value(s) ({first}={values[bad[0]]})"
    if bounds is not None:
        low, high = bounds
        slack = slack_fraction * (high - low)
        outside = np.flatnonzero((values < low - slack) | (values > high + slack))
        if outside.size:
            first = _label(head, int(outside[0])) if head is not None else name
            return f"{name}: {first}={values[outside[0]]:.4g} outside [{low:g}, {high:g}]"
    if head is not None and head.activation == "softmax" and abs(values.sum() - 1.0) > SUM_TOLERANCE:
        return f"{name}: probabilities sum to {values.sum():.4g}, not 1"
    return None


def output_problems(card: ModelCard, outputs: HeadOutputs) -> list[str | None]:
    """Per face (row), the first problem in its post-processed ``outputs`` (``postprocess``), or None."""
    rows = len(next(iter(outputs.values()))) if outputs else 0
    problems: list[str | None] = []
    for row in range(rows):
        problem = None
        for head in card.heads:
            bounds = head_range(head)
            unclamped_intensity = head.kind == "au_intensity" and head.activation == "none"
            slack = 0.0 if unclamped_intensity else RANGE_SLACK  # its bounds hold a full scale of slack
            problem = values_problem(head.name, outputs[head.name][row], bounds, head, slack)
            if problem:
                break
        if problem is None and "pspi" in outputs:
            problem = values_problem("pspi", outputs["pspi"][row : row + 1], PSPI_RANGE, None)
        problems.append(problem)
    return problems
