"""Finite numeric ranges: one kind of range per kind of number, shared by model cards and run settings.

A :class:`Range` is called with a value and returns the problem in words, or None when the value is a
finite number (an integer where ``integer``) inside it. Booleans and strings are never numbers here, and
NaN or infinity is never inside a range: ``raise_after_s = inf`` would mean "never alert".

Example::

    >>> SECONDS = Range(0.0, 3600.0, low_open=True)
    >>> SECONDS(2.5) is None
    True
    >>> SECONDS(float("inf"))
    'must be > 0 and <= 3600'
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """``[low, high]`` (``(low, high]`` when ``low_open``) of finite numbers, integers only when ``integer``."""

    low: float
    high: float
    low_open: bool = False
    integer: bool = False

    def __str__(self) -> str:
        what = "an integer " if self.integer else ""
        return f"{what}{'>' if self.low_open else '>='} {_number(self.low)} and <= {_number(self.high)}"

    def contains(self, value: object) -> bool:
        """True when ``value`` is a finite number of the right kind inside this range."""
        kinds = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return False
        if isinstance(value, float) and not math.isfinite(value):  # (an int is finite, however large)
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def __call__(self, value: object) -> str | None:
        """The problem with ``value`` (``'must be > 0 and <= 3600'``), or None when it is in range."""
        return None if self.contains(value) else f"must be {self}"


def _number(value: float) -> str:
    """``1048576`` rather than ``1.04858e+06``: a bound is printed exactly."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
