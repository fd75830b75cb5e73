"""Argument checks shared by the package's public functions: a clear ``ValueError`` naming the
argument, the allowed range and the value given (``bool`` is never accepted as a number)."""

from __future__ import annotations

import math
import numbers
from typing import Any


def int_at_least(name: str, value: Any, low: int) -> int:
    """``value`` as an ``int`` when it is an integer ``>= low``; else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def real_in(
    name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> float:
    """``value`` as a ``float`` when it is a finite number in the interval (open ends as asked)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be a number in {lo}{low}, {high}{hi}, got {value!r}")
    return float(value)
