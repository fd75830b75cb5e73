"""Argument checks shared by the generator's modules: each error names the argument and the fix."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    return int(value)


def as_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def pair(value: Any, name: str, kind: type) -> tuple:
    """``(low, high)`` converted with ``kind`` (int or float), ``low <= high``."""
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (low, high) pair, got {value!r}") from None
    conv = as_int if kind is int else as_float
    lo, hi = conv(lo, f"{name}[0]"), conv(hi, f"{name}[1]")
    if lo > hi:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {value!r}")
    return lo, hi
