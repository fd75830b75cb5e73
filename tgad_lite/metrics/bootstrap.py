"""Percentile bootstrap confidence intervals over units (incidents, events), single and paired.

A root-cause accuracy over 30 incidents or an event recall over 12 events is a small-sample
estimate; the interval says how much it would move on other incidents like these. Both
functions resample UNITS with replacement (one outcome per incident or event: hit or miss, a
rank, a delay) and recompute the statistic, ``n_resamples`` times:

- :func:`bootstrap_ci` -> ``(estimate, low, high)``: the statistic on the data and the
  ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of its resampled values (the percentile
  method; the same as ``scipy.stats.bootstrap(..., method="percentile")``).
- :func:`paired_bootstrap` -> the difference ``statistic(a) - statistic(b)`` of two methods
  scored on the SAME units, its interval (the same resampled units for both, so what the units
  share cancels), and the fraction of resamples where ``a``'s statistic is ``<=`` ``b``'s (a
  one-sided bootstrap p-value for "a is better than b").

NumPy only, seeded (``np.random.default_rng(seed)``): the same inputs and seed give the same
interval. Inputs must be finite: a unit whose outcome is undefined must be dropped (or given a
value) before, deliberately, not silently here.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

__all__ = ["BootstrapCI", "PairedBootstrap", "bootstrap_ci", "paired_bootstrap"]

_BLOCK_ELEMENTS = 2_000_000  # resampled values drawn per block: bounds memory for many units


class BootstrapCI(NamedTuple):
    """A statistic and its percentile bootstrap interval: ``low <= estimate <= high`` typically."""

    estimate: float
    low: float
    high: float


class PairedBootstrap(NamedTuple):
    """``difference = statistic(a) - statistic(b)`` with its interval, and the fraction of
    resamples where ``statistic(a) <= statistic(b)`` (small: ``a`` is reliably larger)."""

    difference: float
    low: float
    high: float
    frac_a_le_b: float


def _units(values: Any, name: str) -> np.ndarray:
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # torch, without importing it
        values = values.detach().cpu().numpy()
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers (one outcome per unit), got {values!r}") from None
    if v.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one outcome per incident or event), got shape {v.shape}")
    if v.size == 0:
        raise ValueError(f"{name} is empty: a bootstrap needs at least one unit (incident or event)")
    bad = ~np.isfinite(v)
    if bad.any():
        raise ValueError(
            f"{name} holds {int(bad.sum())} non-finite value(s) (first at unit {int(np.flatnonzero(bad)[0])}); "
            "drop units whose outcome is undefined, or give them a value, before bootstrapping"
        )
    return v


def _settings(n_resamples: Any, level: Any, seed: Any) -> tuple[int, float, int]:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an int >= 1 (2000 is a good default), got {n_resamples!r}")
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise ValueError(f"level must be a number in (0, 1), e.g. 0.95, got {level!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    return int(n_resamples), float(level), int(seed)


def _apply(statistic: Callable[..., Any], samples: np.ndarray) -> np.ndarray:
    """``statistic`` over each row of ``samples [R, n]`` -> ``[R]``: one vectorised call when it takes
    ``axis`` like NumPy's reductions, else a loop over rows."""
    try:
        out = np.asarray(statistic(samples, axis=1), dtype=np.float64)
        if out.shape == (samples.shape[0],):
            return out
    except TypeError:
        pass
    return np.array([float(statistic(row)) for row in samples], dtype=np.float64)


def _resampled(
    statistic: Callable[..., Any], arrays: list[np.ndarray], n_resamples: int, seed: int
) -> list[np.ndarray]:
    """``statistic`` of every array over the SAME ``n_resamples`` resamples of unit indices."""
    n = arrays[0].size
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ELEMENTS // n)
    outs: list[list[np.ndarray]] = [[] for _ in arrays]
    for lo in range(0, n_resamples, block):
        idx = rng.integers(0, n, size=(min(block, n_resamples - lo), n))
        for out, a in zip(outs, arrays, strict=True):
            out.append(_apply(statistic, a[idx]))
    return [np.concatenate(o) for o in outs]


def _interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    if not np.isfinite(boot).all():
        raise ValueError("the statistic gave a non-finite value on a resample; use a statistic defined on every sample")
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])  # linear interpolation, as scipy's
    return float(lo), float(hi)


def bootstrap_ci(
    values: Any,
    statistic: Callable[..., Any] = np.mean,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """Percentile bootstrap interval of ``statistic`` over units.

    ``values [n]``: one finite outcome per unit (1/0 for a hit, a delay, a rank). ``statistic``
    maps a 1-D sample to a number; NumPy reductions (``np.mean``, ``np.median``) or any function
    taking ``axis=`` are applied to all resamples in one call, others row by row. Returns
    ``BootstrapCI(estimate = statistic(values), low, high)``. With one unit, or identical
    outcomes, the interval has zero width: the data show no variation, not certainty.
    """
    n_resamples, level, seed = _settings(n_resamples, level, seed)
    v = _units(values, "values")
    estimate = float(statistic(v))
    (boot,) = _resampled(statistic, [v], n_resamples, seed)
    low, high = _interval(boot, level)
    return BootstrapCI(estimate, low, high)


def paired_bootstrap(
    a: Any,
    b: Any,
    statistic: Callable[..., Any] = np.mean,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedBootstrap:
    """Percentile bootstrap of ``statistic(a) - statistic(b)`` for two methods on the SAME units.

    ``a [n]`` and ``b [n]`` are the two methods' outcomes on the same ``n`` units in the same
    order (incident ``i`` is ``a[i]`` and ``b[i]``). Each resample draws unit indices once and
    uses them for both, so the interval is that of the paired difference. ``frac_a_le_b`` is the
    fraction of resamples with ``statistic(a) <= statistic(b)``: "the difference excludes zero
    (a better)" at level ``1 - 2p`` reads ``low > 0``, and ``frac_a_le_b`` is its one-sided p.
    """
    n_resamples, level, seed = _settings(n_resamples, level, seed)
    va, vb = _units(a, "a"), _units(b, "b")
    if va.shape != vb.shape:
        raise ValueError(
            f"a and b must score the same units: a has {va.size}, b has {vb.size}; pass both methods' outcomes "
            "on the same incidents in the same order"
        )
    difference = float(statistic(va)) - float(statistic(vb))
    boot_a, boot_b = _resampled(statistic, [va, vb], n_resamples, seed)
    low, high = _interval(boot_a - boot_b, level)
    return PairedBootstrap(difference, low, high, float(np.mean(boot_a <= boot_b)))
