"""Thresholds that turn anomaly scores ``[T]`` into alarms.

Every threshold here is applied the same way: **an alarm is ``score > threshold``** (strictly
greater), so a threshold from any function can be swapped for another without an off-by-one.

- :func:`pot_threshold`: Peaks-Over-Threshold (Siffer et al., KDD 2017). Extreme value theory:
  above a high initial threshold ``t`` the excesses follow a generalized Pareto distribution
  (GPD); fit it by maximum likelihood and extrapolate to the score exceeded with probability ``q``.
- :class:`SPOT` / :class:`DSPOT`: the same, streaming: ``update(score) -> is_alarm`` refits the
  tail as new peaks arrive; DSPOT scores relative to a moving mean so it follows slow drift.
- :func:`dynamic_threshold`: the non-parametric threshold of Hundman et al. (KDD 2018, telemanom):
  smoothed errors, ``mean + z * std`` chosen by a score, then pruning of marginal sequences.
- :func:`percentile_threshold`: a fixed percentile of *training* scores (no labels).
- :func:`fixed_ratio_threshold`: the top ``r`` % of training-side and test scores pooled (Anomaly
  Transformer's rule): holds its alarm rate under any shift, but reads the test scores (no labels).
- :func:`best_f1_threshold`: the **oracle** -- it reads the test labels, so it is an upper bound
  for comparison, never a threshold a deployed detector could use.

Arrays in, numbers out: numpy/scipy/scikit-learn only (no torch, no model code). Degenerate
inputs that still allow a threshold (too few peaks, a collapsing tail fit) give a
:class:`ThresholdWarning` that says what happened and what was done instead; inputs that do not
(NaN scores, a risk ``q`` outside the tail) raise ``ValueError`` naming the fix.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from tgad_lite.anomaly.smoothing import ewma
from tgad_lite.intervals import check_labels, label_ranges, ranges_to_labels

__all__ = [
    "DSPOT",
    "SPOT",
    "DynamicThresholdResult",
    "OracleThreshold",
    "PotResult",
    "ThresholdWarning",
    "best_f1_threshold",
    "dynamic_threshold",
    "exponential_log_likelihood",
    "fit_gpd",
    "fixed_ratio_threshold",
    "gpd_log_likelihood",
    "percentile_threshold",
    "pot_threshold",
]


class ThresholdWarning(UserWarning):
    """A threshold was still computed, but not the way asked (the message says how instead)."""


# --------------------------------------------------------------------------------------------
# input checks


def _scores_1d(scores: Any, name: str = "scores", min_len: int = 1) -> np.ndarray:
    """``scores`` (list, array or tensor) as a finite 1-D float64 array ``[T]``, or a ValueError."""
    if hasattr(scores, "detach") and hasattr(scores, "cpu"):  # a torch tensor, without importing torch
        scores = scores.detach().cpu().numpy()
    arr = np.asarray(scores)
    if arr.dtype.kind not in "iufb":
        raise ValueError(f"{name} must be numbers, got dtype {arr.dtype}; convert with np.asarray(..., dtype=float)")
    arr = arr.astype(np.float64)
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D [T] (one score per time step), got shape {arr.shape}; "
            "reduce per-feature scores [T, F] first (e.g. scores.max(axis=1))"
        )
    if arr.size < min_len:
        raise ValueError(f"{name} has {arr.size} values; at least {min_len} are needed")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} holds {int(bad.sum())} non-finite value(s) (first: {arr[i]} at index {i}); "
            "a threshold over NaN/inf is meaningless -- fix the scorer, or drop/replace those steps first"
        )
    return arr


def _check_q_level(q: float, level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1) (the quantile used as initial threshold), got {level!r}")
    if not 0.0 < q < 1.0 - level:
        raise ValueError(
            f"q={q!r} must be in (0, 1 - level) = (0, {1 - level:g}): POT extrapolates *into* the tail above "
            "the level quantile; use a smaller q (e.g. 1e-3) or a lower level"
        )


# --------------------------------------------------------------------------------------------
# log-likelihoods


def exponential_log_likelihood(excesses: Any, scale: float | None = None) -> float:
    """Log-likelihood of ``excesses [N]`` (all >= 0) under Exp(scale): ``-N log(scale) - sum(y) / scale``.

    This is the GPD's shape-0 case. ``scale=None`` uses its maximum-likelihood estimate, the mean,
    which gives ``-N (1 + log(mean(y)))`` -- always *minus* that: the SPOT code shared by several
    public repositories returns ``+N (1 + log(mean(y)))``, which for mean(y) > 1/e beats every
    GPD candidate, so it picks the exponential tail even for heavy-tailed scores.
    """
    y = _scores_1d(excesses, "excesses")
    if (y < 0).any():
        raise ValueError("excesses must be >= 0 (scores minus the initial threshold, for scores above it)")
    if scale is None:
        scale = float(y.mean())
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r} (all-zero excesses have no exponential fit)")
    return float(-y.size * math.log(scale) - y.sum() / scale)


def gpd_log_likelihood(excesses: Any, shape: float, scale: float) -> float:
    """Log-likelihood of ``excesses [N]`` under GPD(shape xi, scale sigma, location 0).

    ``-N log sigma - (1 + 1/xi) sum log(1 + xi y / sigma)``; ``shape == 0`` is the exponential limit
    (:func:`exponential_log_likelihood`); ``-inf`` when a value lies outside the support
    (``1 + xi y / sigma <= 0``, possible for xi < 0).
    """
    if shape == 0:
        return exponential_log_likelihood(excesses, scale)
    y = _scores_1d(excesses, "excesses")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    z = 1.0 + shape * y / scale
    if (z <= 0).any():
        return -math.inf
    return float(-y.size * math.log(scale) - (1.0 + 1.0 / shape) * np.log(z).sum())


# --------------------------------------------------------------------------------------------
# GPD maximum likelihood

_GRID = 64  # profile-likelihood grid points on each side of x = 0, before the bounded refinement


def _profile(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shape ``xi(x) = mean(log(1 + x y))`` and the profile log-likelihood per point, for ``x [K]``, ``y [N]``.

    With ``x = xi / sigma`` the GPD log-likelihood maximised over sigma is
    ``L(x) = -N (log(xi(x) / x) + xi(x) + 1)`` (Grimshaw 1993): a function of one variable.
    """
    xi = np.log1p(np.multiply.outer(x, y)).mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = -y.size * (np.log(xi / x) + xi + 1.0)
    return xi, ll


def fit_gpd(excesses: Any) -> tuple[float, float]:
    """Maximum-likelihood GPD ``(shape xi, scale sigma)`` of ``excesses [N]`` (location 0).

    The likelihood depends on ``(xi, sigma)`` only through ``x = xi / sigma`` once sigma is profiled
    out (:func:`_profile`), so the fit is a search over one variable: a grid of ``x`` on both
    sides of 0 (``x > -1 / max(y)`` keeps every excess inside the support), then a bounded scalar
    refinement between the best grid point's neighbours. Shapes below -1 are not searched: there
    the likelihood is unbounded as ``x -> -1 / max(y)`` and no maximum exists (the regular region
    is ``xi > -1``). About 10x faster than ``scipy.stats.genpareto.fit`` (a general simplex search),
    and at least as likely on every case tested (tests/test_threshold.py), which is what SPOT needs
    for a refit on every new peak. ``(0, mean(y))`` -- the exponential tail -- when no ``x != 0`` is
    more likely.
    """
    from scipy.optimize import minimize_scalar  # scipy: a dependency, imported late to keep imports light

    y = _scores_1d(excesses, "excesses", min_len=2)
    if (y < 0).any():
        raise ValueError("excesses must be >= 0 (scores minus the initial threshold, for scores above it)")
    mean, top = float(y.mean()), float(y.max())
    if not mean > 0:
        raise ValueError("all excesses are 0: no GPD fits them")
    # Negative side: from just inside the support boundary -1/max(y) to just below 0; positive side:
    # heavy tails have x up to a few hundred / mean(y); both spaced geometrically towards their ends.
    u = np.geomspace(1e-9, 1.0 - 1e-9, _GRID)
    grid = np.concatenate([-(1.0 - u[::-1]) / top, np.geomspace(1e-6, 1e4, _GRID) / mean])
    grid = np.sort(np.concatenate([grid, -u[:8] / top]))  # a few points very close to 0 from below
    xi, ll = _profile(grid, y)
    ll[~(xi > -1.0) | ~np.isfinite(ll)] = -np.inf
    best = int(np.argmax(ll))
    exp_ll = -y.size * (math.log(mean) + 1.0)
    if not ll[best] > exp_ll:
        return 0.0, mean
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]

    def neg(x: float) -> float:
        xi_x, v = (a[0] for a in _profile(np.array([x]), y))
        return -float(v) if xi_x > -1.0 and math.isfinite(v) else math.inf

    x_best, ll_best = float(grid[best]), float(ll[best])
    if lo < hi and not lo < 0 < hi:  # refine inside one side of 0 (L is not defined at x = 0)
        # Outside the support neg() is inf, and Brent's arithmetic on it raises RuntimeWarnings
        # (inf - inf); the result is checked below, so they are noise, not a failure.
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            res = minimize_scalar(
                neg, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12 * max(abs(lo), abs(hi))}
            )
        if res.success and math.isfinite(res.fun) and -res.fun > ll_best:
            x_best, ll_best = float(res.x), float(-res.fun)
    shape = float(np.log1p(x_best * y).mean())
    return shape, shape / x_best


# --------------------------------------------------------------------------------------------
# POT


@dataclass(frozen=True)
class PotResult:
    """What :func:`pot_threshold` computed, enough to redraw the tail fit.

    ``threshold``: alarm when ``score > threshold``. ``init_threshold`` t: the ``level`` quantile.
    ``num_peaks`` N_t: scores above t; ``n``: scores seen. ``shape`` xi, ``scale`` sigma: the fitted
    GPD of the excesses (NaN for ``method == "empirical"``). ``method``: ``"gpd"``, ``"exponential"``
    (shape 0; chosen by likelihood or as a fallback) or ``"empirical"`` (no tail model, see
    :func:`pot_threshold`). ``warnings``: the messages of any fallback taken.
    """

    threshold: float
    init_threshold: float
    num_peaks: int
    shape: float
    scale: float
    level: float
    q: float
    n: int
    method: str
    log_likelihood: float = math.nan
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def tail_probability(self, x: Any) -> np.ndarray:
        """Estimated ``P(score > x)`` for ``x [K] >= init_threshold`` under the fitted tail (for plots).

        ``(N_t / n) * (1 + xi (x - t) / sigma) ** (-1 / xi)`` (``exp(-(x - t) / sigma)`` for xi = 0);
        NaN below t and for the empirical method.
        """
        x = np.asarray(x, dtype=np.float64)
        if self.method == "empirical":
            return np.full(x.shape, np.nan)
        y = x - self.init_threshold
        rate = self.num_peaks / self.n
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.shape == 0:
                sf = np.exp(-y / self.scale)
            else:
                base = 1.0 + self.shape * y / self.scale
                sf = np.where(base > 0, np.power(np.maximum(base, 0.0), -1.0 / self.shape), 0.0)
        return np.where(y >= 0, rate * sf, np.nan)


def _tail_quantile(t: float, shape: float, scale: float, r: float) -> float:
    """``z_q = t + sigma/xi (r^-xi - 1)`` with ``r = q n / N_t``; ``t - sigma log r`` at xi = 0."""
    log_r = math.log(r)
    if shape == 0:
        return t - scale * log_r
    return t + scale * math.expm1(-shape * log_r) / shape  # expm1: exact as xi -> 0


def _fit_tail(
    peaks: np.ndarray, t: float, n: int, q: float, level: float, min_peaks: int, min_shape: float
) -> PotResult:
    """Fit the excesses ``peaks [N_t]`` over ``t`` (out of ``n`` scores) and place the threshold.

    Warnings are returned in the result, not emitted, so streaming callers decide when to show them.
    """
    n_t = int(peaks.size)
    notes: list[str] = []

    def empirical(reason: str) -> PotResult:
        # No tail model: the empirical (1 - q) quantile of the scores, read from the peaks alone
        # (P(score > t) ~ N_t / n), so SPOT can use it too. With q n < 1 it is the largest score.
        if n_t == 0:
            thr = t
        else:
            p = min(max(1.0 - q * n / n_t, 0.0), 1.0)
            thr = t + float(np.quantile(peaks, p, method="higher"))
        notes.append(
            f"{reason}; used the empirical (1 - q) quantile of the scores instead ({thr:.6g}), no extrapolation"
        )
        return PotResult(thr, t, n_t, math.nan, math.nan, level, q, n, "empirical", math.nan, tuple(notes))

    if n_t < min_peaks:
        return empirical(
            f"only {n_t} score(s) above the initial threshold t={t:.6g} (min_peaks={min_peaks}), too few to fit a "
            "tail; lower `level` or pass more calibration scores"
        )
    if np.ptp(peaks) == 0:
        return empirical(f"all {n_t} excesses over t={t:.6g} are equal ({peaks[0]:.6g}): the scores are discrete there")
    r = q * n / n_t
    if r >= 1:  # ties at t left fewer peaks than (1 - level) n: z_q would fall below t
        return empirical(f"q n / N_t = {r:.3g} >= 1 (ties at t left only {n_t} peaks): the risk q is not in the tail")

    exp_scale = float(peaks.mean())
    exp_ll = exponential_log_likelihood(peaks, exp_scale)
    shape, scale, ll, method = 0.0, exp_scale, exp_ll, "exponential"
    try:
        c, s = fit_gpd(peaks)
        fit_ok = math.isfinite(c) and math.isfinite(s) and s > 0
        why = f"returned shape={c!r}, scale={s!r}"
    except Exception as exc:  # noqa: BLE001 -- any optimiser failure means "no usable GPD fit"
        fit_ok, why = False, f"raised {type(exc).__name__}: {exc}"
    if not fit_ok:
        notes.append(f"the GPD fit of {n_t} excesses {why}; used the exponential tail (shape 0, scale = mean excess)")
    elif c < min_shape:
        notes.append(
            f"the GPD fit gave shape xi={c:.3g} < min_shape={min_shape}: the likelihood is irregular there and the "
            f"fit clings to the largest peak (bounded tail ending at t + {s / -c:.4g}); used the exponential tail "
            "(shape 0, scale = mean excess) instead"
        )
    else:
        gpd_ll = gpd_log_likelihood(peaks, c, s)
        # Shape 0 is always a candidate (as in Grimshaw's procedure); keep whichever is more likely.
        if gpd_ll > exp_ll:
            shape, scale, ll, method = float(c), float(s), gpd_ll, "gpd"
    thr = _tail_quantile(t, shape, scale, r)
    return PotResult(float(thr), t, n_t, shape, scale, level, q, n, method, ll, tuple(notes))


def _emit(notes: tuple[str, ...], stacklevel: int = 3) -> None:
    for note in notes:
        warnings.warn(note, ThresholdWarning, stacklevel=stacklevel)


def pot_threshold(
    scores: Any, level: float = 0.98, q: float = 1e-4, *, min_peaks: int = 10, min_shape: float = -0.5
) -> PotResult:
    """Peaks-Over-Threshold: the score exceeded with probability ``q``, from ``scores [n]``.

    ``t`` = the ``level`` quantile of ``scores``; the excesses ``y = s - t`` of the ``N_t`` scores
    above it get a GPD fit by maximum likelihood (:func:`fit_gpd`, location 0,
    compared with the exponential MLE; the more likely one is kept), and the threshold is
    ``z_q = t + sigma/xi ((q n / N_t)^-xi - 1)`` (``t - sigma log(q n / N_t)`` for shape 0).

    Fallbacks, each with a :class:`ThresholdWarning` (also kept in ``result.warnings``):
    fewer than ``min_peaks`` peaks, or all excesses equal -> ``method="empirical"``, the empirical
    (1 - q) quantile of the scores (the largest score when ``q n < 1``); a failed fit or a shape
    below ``min_shape`` (default -0.5, where the GPD maximum likelihood is irregular) -> the
    exponential tail. Raises ``ValueError`` for non-finite scores and for ``q`` not in ``(0, 1 - level)``.
    """
    _check_q_level(q, level)
    x = _scores_1d(scores)
    t = float(np.quantile(x, level))
    result = _fit_tail(x[x > t] - t, t, int(x.size), q, level, min_peaks, min_shape)
    _emit(result.warnings)
    return result


# --------------------------------------------------------------------------------------------
# streaming


class SPOT:
    """Streaming POT: calibrate with :meth:`fit`, then ``update(score) -> is_alarm`` one score at a time.

    Alarms (``score > threshold``) are not learned from; every other score counts towards ``n``,
    and one above the initial threshold adds a peak and refits the tail, so the threshold adapts to
    the normal data seen. After :meth:`fit` the threshold equals :func:`pot_threshold` on the same
    calibration scores. State: ``threshold``, ``init_threshold``, ``num_peaks``, ``n``, ``result``.
    """

    def __init__(self, q: float = 1e-4, level: float = 0.98, *, min_peaks: int = 10, min_shape: float = -0.5):
        _check_q_level(q, level)
        self.q, self.level, self.min_peaks, self.min_shape = q, level, min_peaks, min_shape
        self.result: PotResult | None = None
        self._peaks: list[float] = []
        self.n = 0

    # -- state
    def _fitted(self) -> PotResult:
        if self.result is None:
            raise RuntimeError(f"{type(self).__name__} is not calibrated: call .fit(calibration_scores) first")
        return self.result

    @property
    def threshold(self) -> float:
        """The current alarm threshold (alarm when ``score > threshold``)."""
        return self._fitted().threshold

    @property
    def init_threshold(self) -> float:
        return self._fitted().init_threshold

    @property
    def num_peaks(self) -> int:
        return len(self._peaks)

    def state_dict(self) -> dict[str, Any]:
        """Everything this SPOT holds, as plain values and a float64 array, its tail fit included:
        ``load_state_dict`` of it continues exactly (same thresholds, same refits)."""
        result = None
        if self.result is not None:
            result = {f.name: getattr(self.result, f.name) for f in fields(self.result)}
            result["warnings"] = list(result["warnings"])
        return {
            "kind": type(self).__name__,
            "q": float(self.q),
            "level": float(self.level),
            "min_peaks": int(self.min_peaks),
            "min_shape": float(self.min_shape),
            "n": int(self.n),
            "peaks": np.asarray(self._peaks, dtype=np.float64),
            "result": result,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; refuses a state of another kind or other settings."""
        if state.get("kind") != type(self).__name__:
            raise ValueError(f"this state is of a {state.get('kind')!r}, not of a {type(self).__name__}")
        mine = (float(self.q), float(self.level), int(self.min_peaks), float(self.min_shape))
        theirs = (float(state["q"]), float(state["level"]), int(state["min_peaks"]), float(state["min_shape"]))
        if mine != theirs:
            raise ValueError(
                f"state saved with (q, level, min_peaks, min_shape) = {theirs}, this {type(self).__name__} has "
                f"{mine}: build it with the saved settings"
            )
        peaks = np.asarray(state["peaks"], dtype=np.float64)
        result = state["result"]
        self.result = None if result is None else PotResult(**{**result, "warnings": tuple(result["warnings"])})
        self._peaks = peaks.tolist()
        self.n = int(state["n"])

    # -- work
    def _calibrate(self, x: np.ndarray) -> None:
        t = float(np.quantile(x, self.level))
        peaks = x[x > t] - t
        self._peaks = peaks.tolist()
        self.n = int(x.size)
        self.result = _fit_tail(peaks, t, self.n, self.q, self.level, self.min_peaks, self.min_shape)
        _emit(self.result.warnings, stacklevel=4)

    def fit(self, calibration_scores: Any) -> SPOT:
        """Calibrate on ``calibration_scores [n]`` (normal data, ideally); returns self."""
        self._calibrate(_scores_1d(calibration_scores, "calibration_scores"))
        return self

    def _step(self, x: float) -> bool:
        res = self._fitted()
        if x > res.threshold:
            return True
        self.n += 1
        if x > res.init_threshold:
            self._peaks.append(x - res.init_threshold)
            new = _fit_tail(
                np.asarray(self._peaks), res.init_threshold, self.n, self.q, self.level, self.min_peaks, self.min_shape
            )
            if new.method != res.method:  # warn on a change of tail model, not on every refit
                _emit(new.warnings, stacklevel=4)
            self.result = new
        # As in Siffer et al.: a score below t only counts towards n; z_q moves at the next refit.
        return False

    def update(self, score: float) -> bool:
        """Feed one score; True when it is an alarm (``score > threshold`` before the update)."""
        x = float(score)
        if not math.isfinite(x):
            raise ValueError(f"score {score!r} is not finite; fix the scorer or skip that step")
        return self._step(x)

    def run(self, scores: Any) -> tuple[np.ndarray, np.ndarray]:
        """``update`` over ``scores [T]``: alarms ``[T]`` (bool) and the threshold in force at each step ``[T]``."""
        x = _scores_1d(scores)
        alarms = np.zeros(x.size, dtype=bool)
        thresholds = np.empty(x.size)
        for i, v in enumerate(x):
            thresholds[i] = self.threshold
            alarms[i] = self._step(float(v))
        return alarms, thresholds


class DSPOT(SPOT):
    """Drift-aware SPOT: POT on ``score - mean(last depth normal scores)`` instead of the raw score.

    A slow drift or a moderate level shift moves the moving mean, so the alarms stop once the
    window has caught up; plain :class:`SPOT` would keep alarming. Alarms never enter the window,
    so a shift larger than the threshold in one step is alarmed on for as long as it lasts.
    ``threshold`` is in score units (relative threshold + current moving mean); the relative one is
    ``relative_threshold``, the mean ``moving_mean``.
    """

    def __init__(
        self, q: float = 1e-4, level: float = 0.98, depth: int = 10, *, min_peaks: int = 10, min_shape: float = -0.5
    ):
        if isinstance(depth, bool) or not isinstance(depth, int | np.integer) or depth < 1:
            raise ValueError(f"depth must be a positive int (the moving-mean window, in steps), got {depth!r}")
        super().__init__(q, level, min_peaks=min_peaks, min_shape=min_shape)
        self.depth = int(depth)
        self._window: deque[float] = deque(maxlen=self.depth)

    @property
    def moving_mean(self) -> float:
        self._fitted()
        return float(np.mean(self._window))

    @property
    def relative_threshold(self) -> float:
        return self._fitted().threshold

    @property
    def threshold(self) -> float:
        """The current alarm threshold in score units (alarm when ``score > threshold``)."""
        return self.relative_threshold + self.moving_mean

    def fit(self, calibration_scores: Any) -> DSPOT:
        """Calibrate on ``calibration_scores [n]`` (n > depth): POT on the ``n - depth`` relative scores."""
        x = _scores_1d(calibration_scores, "calibration_scores", min_len=self.depth + 1)
        csum = np.concatenate([[0.0], np.cumsum(x)])
        prev_mean = (csum[self.depth : -1] - csum[: -self.depth - 1]) / self.depth  # mean of x[i-depth:i]
        self._calibrate(x[self.depth :] - prev_mean)
        self._window = deque(x[-self.depth :].tolist(), maxlen=self.depth)
        return self

    def state_dict(self) -> dict[str, Any]:
        """:meth:`SPOT.state_dict` plus the moving-mean window (``depth`` and its last normal scores)."""
        return {**super().state_dict(), "depth": self.depth, "window": np.asarray(self._window, dtype=np.float64)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") == type(self).__name__ and int(state["depth"]) != self.depth:
            raise ValueError(f"state saved with depth={state['depth']}, this DSPOT has depth={self.depth}")
        super().load_state_dict(state)
        self._window = deque(np.asarray(state["window"], dtype=np.float64).tolist(), maxlen=self.depth)

    def _step(self, x: float) -> bool:
        alarm = super()._step(x - self.moving_mean)
        if not alarm:
            self._window.append(x)
        return alarm


# --------------------------------------------------------------------------------------------
# Hundman et al.'s non-parametric dynamic threshold


@dataclass(frozen=True)
class DynamicThresholdResult:
    """What :func:`dynamic_threshold` found.

    ``threshold``: on the *smoothed* errors (alarm when ``smoothed > threshold``); ``z``: the chosen
    ``(threshold - mean) / std`` (None when no candidate flagged anything); ``segments``: anomalous
    sequences kept after pruning, ``[(start, end_inclusive), ...]``; ``pruned``: those pruning
    removed; ``smoothed [T]``: the EWMA-smoothed errors; ``labels [T]`` (int8): 1 on kept segments.
    """

    threshold: float
    z: float | None
    segments: list[tuple[int, int]]
    pruned: list[tuple[int, int]]
    smoothed: np.ndarray
    labels: np.ndarray


def dynamic_threshold(
    errors: Any,
    *,
    span: float = 105.0,
    z_range: tuple[float, float] = (2.5, 12.0),
    z_step: float = 0.5,
    p: float = 0.13,
) -> DynamicThresholdResult:
    """Hundman et al. (KDD 2018) non-parametric dynamic threshold on prediction ``errors [T]`` (>= 0).

    1. Smooth: ``e_s`` = EWMA of the errors with ``span`` (105 = telemanom's 70 x 30 x 0.05;
       ``span=1`` is no smoothing).
    2. Candidates ``eps = mean(e_s) + z std(e_s)`` for ``z`` in ``z_range`` every ``z_step``; keep the
       one maximising ``(d_mean / mean + d_std / std) / (|E_seq|^2 + |e_a|)``, where ``d_mean``,
       ``d_std`` are the drops in mean and std when the points ``>= eps`` are removed, ``e_a`` the
       points above eps and ``E_seq`` their contiguous sequences (ties: the smallest z).
    3. Prune: sort the sequences' maximum errors in decreasing order and append the largest error
       outside every sequence; the percentage decrease from each maximum to the next is
       ``d_i = (m_i - m_{i+1}) / m_i``. Sequences from the last ``d_i >= p`` on (i.e. whose decrease
       and all later decreases are below ``p``) are reclassified as normal.

    The whole array is one window here (telemanom thresholds sliding windows of errors and pads
    sequences by a buffer; slice ``errors`` and pad ``segments`` to reproduce that).
    """
    e = _scores_1d(errors, "errors")
    if (e < 0).any():
        raise ValueError(
            "errors must be >= 0 (prediction errors such as |y - y_hat|): the score divides by their mean; "
            "pass np.abs(residuals) or a non-negative anomaly score"
        )
    if not span >= 1:
        raise ValueError(f"span must be >= 1 (EWMA span in steps; 1 = no smoothing), got {span!r}")
    lo, hi = z_range
    if not (0 <= lo <= hi and z_step > 0):
        raise ValueError(f"z_range must be (lo, hi) with 0 <= lo <= hi and z_step > 0, got {z_range!r}, {z_step!r}")
    if not 0 <= p < 1:
        raise ValueError(f"p (minimum percentage decrease for pruning) must be in [0, 1), got {p!r}")

    T = e.size
    e_s = ewma(e, float(span))
    mean, std = float(e_s.mean()), float(e_s.std())
    zs = np.arange(lo, hi + z_step / 2, z_step)
    best_z, best_score = None, 0.0
    if std > 0 and mean > 0:
        for z in zs:
            eps = mean + z * std
            above = e_s > eps
            n_above = int(above.sum())
            if n_above == 0:
                break  # larger z flag nothing either
            below = e_s[~above]
            n_seq = len(label_ranges(above))
            score = ((mean - below.mean()) / mean + (std - below.std()) / std) / (n_seq**2 + n_above)
            if score > best_score:
                best_z, best_score = float(z), score
    if best_z is None:
        thr = mean + hi * std
        return DynamicThresholdResult(thr, None, [], [], e_s, np.zeros(T, dtype=np.int8))

    thr = mean + best_z * std
    above = e_s > thr
    seqs = label_ranges(above)
    maxes = np.array([e_s[s : t + 1].max() for s, t in seqs])
    order = np.argsort(-maxes, kind="stable")
    sorted_max = np.append(maxes[order], e_s[~above].max() if (~above).any() else 0.0)
    decrease = (sorted_max[:-1] - sorted_max[1:]) / sorted_max[:-1]
    big = np.flatnonzero(decrease >= p)
    n_keep = int(big[-1]) + 1 if big.size else 0
    kept = sorted(seqs[i] for i in order[:n_keep])
    pruned = sorted(seqs[i] for i in order[n_keep:])
    return DynamicThresholdResult(thr, best_z, kept, pruned, e_s, ranges_to_labels(kept, T))


# --------------------------------------------------------------------------------------------
# simple and oracle thresholds


def percentile_threshold(train_scores: Any, pct: float = 99.0) -> float:
    """The ``pct``-th percentile of *training* scores ``[T_train]`` (alarm when ``score > threshold``).

    Uses no labels and no test data: fit it on scores of normal training data, apply it to test.
    """
    if isinstance(pct, bool) or not isinstance(pct, numbers.Real) or not 0 <= pct <= 100:
        raise ValueError(f"pct must be a percentile in [0, 100], got {pct!r}")
    # float(): a numpy float32 pct would make numpy compute the percentile in float32
    return float(np.percentile(_scores_1d(train_scores, "train_scores"), float(pct)))


def fixed_ratio_threshold(reference_scores: Any, test_scores: Any, ratio_pct: float = 1.0) -> float:
    """The ``(100 - ratio_pct)``-th percentile of reference ``[T_ref]`` and test ``[T_test]`` scores together.

    Alarm when ``score > threshold``: about ``ratio_pct`` % of all those steps alarm (fewer where scores
    tie at the threshold), however far the test scores have shifted from the reference ones, so every
    detector judged with it spends the same alarm budget and only its ranking of the steps differs. It
    is Anomaly Transformer's rule (Xu et al., ICLR 2022), reused by Time-Series-Library (TimesNet and
    others), with the authors' ratios: 1 % for MSL and SMAP, 0.5 % for SMD. It reads no labels, but it
    reads the *test scores*: it is an offline rule that needs the whole test series before its first
    alarm, unlike POT or a percentile fitted on training scores alone (:func:`percentile_threshold`).
    """
    if isinstance(ratio_pct, bool) or not isinstance(ratio_pct, numbers.Real) or not 0 < ratio_pct < 100:
        raise ValueError(
            f"ratio_pct must be a percentage in (0, 100), the share of steps that alarm, got {ratio_pct!r}"
        )
    reference = _scores_1d(reference_scores, "reference_scores")
    test = _scores_1d(test_scores, "test_scores")
    # float(): a numpy float32 ratio would make numpy compute the percentile in float32
    return float(np.percentile(np.concatenate([reference, test]), 100.0 - float(ratio_pct)))


@dataclass(frozen=True)
class OracleThreshold:
    """The best point-wise F1 over all thresholds, found *with the test labels*: an oracle, an upper bound.

    ``threshold``: alarm when ``score > threshold`` (a value halfway to the next lower score);
    ``f1``, ``precision``, ``recall``: point-wise, at that threshold.
    """

    threshold: float
    f1: float
    precision: float
    recall: float


def best_f1_threshold(scores: Any, labels: Any) -> OracleThreshold:
    """ORACLE: the threshold maximising point-wise F1 of ``scores [T]`` against ``labels [T]`` (0/1).

    It reads the labels it is scored on, so it is not a detector's threshold: report it as an
    upper bound ("best F1"), next to a label-free threshold (POT, percentile, dynamic). The choice
    is :func:`tgad_lite.metrics.detection.best_f1`'s (one pass over scikit-learn's precision-recall
    curve; ties in F1 go to the lowest threshold), so the two never disagree; the threshold is then
    placed halfway between the lowest alarming score and the next lower score, which gives the
    same alarms and reads well on a plot. Raises ``ValueError`` when the labels hold no anomaly.
    """
    from tgad_lite.metrics.detection import best_f1

    x = _scores_1d(scores)
    y = check_labels(labels, length=x.size)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D [T], got shape {y.shape}")
    if not y.any():
        raise ValueError("labels hold no anomaly (all 0): F1 is undefined; evaluate on data with labelled anomalies")
    best = best_f1(x, y)
    thr = best.threshold  # the float just below the lowest alarming score
    lowest_alarm = float(x[x > thr].min())
    lower = x[x <= thr]
    if lower.size:
        below = float(lower.max())
        mid = (below + lowest_alarm) / 2
        # Adjacent floats can round the midpoint up to the alarming score itself: keep best's then.
        thr = mid if below <= mid < lowest_alarm else thr
    return OracleThreshold(float(thr), float(best.f1), float(best.precision), float(best.recall))
