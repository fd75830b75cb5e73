"""Root-cause rules: rank every service per incident, best suspect first, from telemetry alone.

These are the baselines a graph model's root-cause ranking must beat (scored with
:mod:`tgad_lite.metrics.rootcause`: AC@k, Avg@k). Public benchmarks (RCAEval, 2025) find such rules
strong on microservice metrics, and on this project's generator the easy regime is easy for them
too (see :mod:`tgad_lite.data.microservices.regimes`).

Every rule has the same signature::

    rule(x [T, N, F], mask [T, N, F] | None, edge_index [2, E], start, *, lookback=12, horizon=3, ...)
        -> RootCauseRanking(order [N], z [N], unobserved [N])

``start`` is the first step of the incident's alarm window (the incident's start for an oracle
alarm, or a detector's first alarm). A rule reads only the *reference* steps
``[start - lookback, start)`` (assumed normal: the robust statistics of each service and metric
come from them) and the *analysis* steps ``[start, start + horizon)`` (clipped to the series).
The robust z-score of a value is ``|x - median_ref| / scale_ref`` with
``scale_ref = max(1.4826 * MAD_ref, 1e-3 * |median_ref|, 1e-9)``: the floor keeps a metric that sat
still in the reference (an error rate of exactly 0) from turning any wiggle into a huge z.
A service's z at a step is the max over its observed metrics. ``log=True`` computes it on
``log(max(x, 1e-6))`` instead (scale floored at 1e-3), so a doubling weighs the same for every
service; on this generator raw values did as well or better, so raw is the default.

Defaults (``lookback=12``, ``horizon=3``, ``threshold=8``, ``min_segment=6``) were set on a few
generated series (shop graph and random DAGs of 30 and 100 services, seeds 10-12, both regimes;
not the tests' seeds): with ``threshold=4`` noise alone made some service "anomalous" in the
larger graphs, which hurts the most-downstream rule most; a change point with fewer than 6 steps
before it gave an unstable MAD.

Rules:

- :func:`rank_largest_z`: largest z anywhere in the analysis window.
- :func:`rank_earliest_onset`: the first analysis step at which a service's z exceeds
  ``threshold``; ties by the larger z at that step; services that never exceed it follow.
- :func:`rank_most_downstream`: services anomalous in the window (z above ``threshold``) none of
  whose callees is anomalous come first (the deepest sick dependency: failures propagate from a
  callee up to its callers), then the other anomalous services, then the rest; each group by z.
- :func:`rank_changepoint_z`: per series, the single mean-shift change point in
  ``[start - lookback, start + horizon)`` (CUSUM); the series' z is its largest robust z after
  the change relative to the steps before it; services ranked by their largest such z. The
  RCAEval "BARO"-style baseline (change point, then robust scaling against the pre-change
  period), with a simple CUSUM for the Bayesian change-point detector.
- :func:`rank_random`: a seeded uniform permutation; the floor (AC@k = k / N on average).

Unobserved services. A service with no observed value in the analysis window, or no observed
reference to compare it with (an uninstrumented database; too little history), cannot be judged
from its own telemetry: every rule but random ranks such services LAST (by index among
themselves) and flags them in ``RootCauseRanking.unobserved`` (``note`` says how many). Rules do
not guess for them from neighbours: that inference is what a graph model can add, and a
baseline that hard-coded it would blur the comparison. In the hard regime this caps the rules'
accuracy on incidents whose root is uninstrumented; the random rule ranks all services alike.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from tgad_lite.anomaly.cascade import check_edge_index
from tgad_lite.data.microservices.windows import robust_center_scale

__all__ = [
    "RULES",
    "RootCauseRanking",
    "incident_starts_roots",
    "rank_changepoint_z",
    "rank_earliest_onset",
    "rank_incidents",
    "rank_largest_z",
    "rank_most_downstream",
    "rank_random",
    "window_z",
]

_MIN_REFERENCE = 3  # observed reference steps needed for a median and MAD worth the name


class RootCauseRanking(NamedTuple):
    """One incident's ranking of all ``N`` services.

    ``order [N]`` int64: service ids, most likely root first. ``z [N]`` float64: the evidence the
    rule ranked by (its robust z-score per service; NaN for unobserved services). ``unobserved
    [N]`` bool: services that could not be judged from their own telemetry (ranked last).
    """

    order: np.ndarray
    z: np.ndarray
    unobserved: np.ndarray

    @property
    def note(self) -> str:
        k = int(self.unobserved.sum())
        if not k:
            return ""
        return f"{k} of {len(self.order)} services unobserved in the window: ranked last"


def _as_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _as_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _series(x: Any, mask: Any) -> tuple[np.ndarray, np.ndarray | None]:
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf" or arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(
            f"x must be a numeric series [T, N, F] (steps, services, metrics) with T, N, F >= 1, got "
            f"{arr.dtype} {arr.shape}; pass telemetry.x"
        )
    if mask is None:
        return arr, None
    m = np.asarray(mask)
    if m.shape != arr.shape or m.dtype != np.bool_:
        raise ValueError(f"mask must be a bool array shaped like x {arr.shape}, got {m.dtype} {m.shape}")
    return arr, m


def _values(arr: np.ndarray, m: np.ndarray | None, lo: int, hi: int, log: bool = False) -> np.ndarray:
    """Steps ``[lo, hi)`` as float64 with NaN where unobserved (``log``: log of max(x, 1e-6))."""
    v = arr[lo:hi].astype(np.float64)
    if m is None:
        v = np.where(np.isfinite(v), v, np.nan)
    elif (m[lo:hi] & ~np.isfinite(v)).any():
        raise ValueError(
            f"x is not finite between steps {lo} and {hi - 1} where mask says observed; fix the data or set mask False"
        )
    else:
        v = np.where(m[lo:hi], v, np.nan)
    return np.log(np.maximum(v, 1e-6)) if log else v


def _floored(center: np.ndarray, scale: np.ndarray, log: bool) -> np.ndarray:
    # 1e-3 of the level: on log values that is an absolute 1e-3 (0.1 %), on raw values relative.
    return np.maximum(scale, 1e-3) if log else np.maximum(np.maximum(scale, 1e-3 * np.abs(center)), 1e-9)


def _window(arr: np.ndarray, start: Any, lookback: Any, horizon: Any) -> tuple[int, int, int]:
    steps = arr.shape[0]
    start = _as_int(start, "start", 0)
    lookback = _as_int(lookback, "lookback", _MIN_REFERENCE)
    horizon = _as_int(horizon, "horizon", 1)
    if start >= steps:
        raise ValueError(f"start={start} is past the series (steps 0..{steps - 1}); pass the alarm's first step")
    if start < _MIN_REFERENCE:
        raise ValueError(
            f"start={start} leaves fewer than {_MIN_REFERENCE} reference steps before the alarm; the rules need "
            "history to know what normal looks like: skip incidents this early"
        )
    return max(0, start - lookback), start, min(steps, start + horizon)


def window_z(
    x: Any, mask: Any, start: int, *, lookback: int = 12, horizon: int = 3, log: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Robust z-scores of the analysis steps against the reference steps.

    Returns ``z [H, N]`` (per analysis step and service, max over observed metrics; NaN where
    the service has no metric with both an observed value there and a reference) and
    ``unobserved [N]`` (no finite z in the whole window). See the module docstring.
    """
    arr, m = _series(x, mask)
    lo, start, hi = _window(arr, start, lookback, horizon)
    ref = _values(arr, m, lo, start, log)
    center, scale = robust_center_scale(ref, axis=0, method="mad", min_count=_MIN_REFERENCE)  # [N, F]
    z = np.abs(_values(arr, m, start, hi, log) - center) / _floored(center, scale, log)  # [H, N, F]
    finite = np.isfinite(z)
    service_z = np.where(finite.any(axis=2), np.where(finite, z, -np.inf).max(axis=2), np.nan)
    return service_z, ~finite.any(axis=(0, 2))


def _ranked(keys: list[np.ndarray], z: np.ndarray, unobserved: np.ndarray) -> RootCauseRanking:
    """Order by ``keys`` (most significant FIRST, each ascending), unobserved services last, then by id."""
    n = z.shape[0]
    # np.lexsort sorts by its LAST key first; the service id is the final tie-break.
    order = np.lexsort([np.arange(n), *reversed(keys), unobserved])
    return RootCauseRanking(order=order.astype(np.int64), z=np.where(unobserved, np.nan, z), unobserved=unobserved)


def _peak(z: np.ndarray) -> np.ndarray:
    """``[H, N]`` -> ``[N]`` max over steps, -inf where all NaN."""
    return np.where(np.isnan(z), -np.inf, z).max(axis=0)


def rank_largest_z(
    x: Any, mask: Any, edge_index: Any, start: int, *, lookback: int = 12, horizon: int = 3, log: bool = False
) -> RootCauseRanking:
    """Services by their largest robust z-score in the analysis window (``edge_index`` unused)."""
    z, unobserved = window_z(x, mask, start, lookback=lookback, horizon=horizon, log=log)
    peak = _peak(z)
    return _ranked([-peak], peak, unobserved)


def rank_earliest_onset(
    x: Any,
    mask: Any,
    edge_index: Any,
    start: int,
    *,
    lookback: int = 12,
    horizon: int = 3,
    threshold: float = 8.0,
    log: bool = False,
) -> RootCauseRanking:
    """Services by the first analysis step their z exceeds ``threshold``; ties by the larger z then.

    Services that never exceed it follow, by their peak z. With ``hop_delay >= 1`` (the easy
    regime) the root's symptoms start a step before its callers'; with simultaneous onset every
    hit service ties and the loudest wins, which amplification makes a caller.
    """
    threshold = _as_positive(threshold, "threshold")
    z, unobserved = window_z(x, mask, start, lookback=lookback, horizon=horizon, log=log)
    fired = np.nan_to_num(z, nan=0.0) > threshold  # [H, N]
    ever = fired.any(axis=0)
    onset = np.where(ever, fired.argmax(axis=0), z.shape[0])  # z.shape[0]: never
    peak = _peak(z)
    # Ties at the same onset go to the larger z AT that step: later steps mix in the cascade.
    at_onset = np.where(
        ever, np.nan_to_num(z, nan=-np.inf)[np.minimum(onset, z.shape[0] - 1), np.arange(z.shape[1])], peak
    )
    return _ranked([onset, -at_onset], peak, unobserved)


def rank_most_downstream(
    x: Any,
    mask: Any,
    edge_index: Any,
    start: int,
    *,
    lookback: int = 12,
    horizon: int = 3,
    threshold: float = 8.0,
    log: bool = False,
) -> RootCauseRanking:
    """Anomalous services with no anomalous callee first, then other anomalous ones, then the rest.

    "Anomalous" = peak z in the window above ``threshold``; ``edge_index [2, E]`` is caller ->
    callee. Each group is ordered by z. An unobserved callee is never anomalous, so with an
    uninstrumented root the rule blames the deepest observed caller (see the module docstring).
    """
    threshold = _as_positive(threshold, "threshold")
    z, unobserved = window_z(x, mask, start, lookback=lookback, horizon=horizon, log=log)
    peak = _peak(z)
    group = downstream_groups(peak > threshold, edge_index)
    return _ranked([group, -peak], peak, unobserved)


def downstream_groups(anomalous: np.ndarray, edge_index: Any) -> np.ndarray:
    """``[N]`` group of each service for the most-downstream ranking: 0 = anomalous with no anomalous
    callee, 1 = other anomalous services, 2 = the rest. ``anomalous [N]`` bool, ``edge_index [2, E]``
    caller -> callee (self loops ignored). Shared by the z-score rule and the model's risk ranking."""
    ei = check_edge_index(edge_index, anomalous.shape[0])
    sick_edge = anomalous[ei[0]] & anomalous[ei[1]] & (ei[0] != ei[1])
    has_sick_callee = np.zeros(anomalous.shape[0], dtype=bool)
    has_sick_callee[ei[0, sick_edge]] = True
    return np.where(anomalous & ~has_sick_callee, 0, np.where(anomalous, 1, 2))


def _changepoints(v: np.ndarray, min_segment: int) -> np.ndarray:
    """Per column of ``v [L, ...]`` (NaN = missing), the index ``k`` where the post-change segment
    starts, maximising the CUSUM mean-shift statistic ``sqrt(n1 n2 / n) |mean_1 - mean_2|`` with
    at least ``min_segment`` observations before and one after. -1 where no split qualifies."""
    obs = ~np.isnan(v)
    vals = np.where(obs, v, 0.0)
    n1 = np.cumsum(obs, axis=0)[:-1]  # observations in [0, k) for k = 1 .. L - 1
    s1 = np.cumsum(vals, axis=0)[:-1]
    n, s = obs.sum(axis=0), vals.sum(axis=0)
    n2, s2 = n - n1, s - s1
    ok = (n1 >= min_segment) & (n2 >= 1) & obs[1:]  # the change step itself must be observed
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = np.sqrt(n1 * n2 / n) * np.abs(s1 / n1 - s2 / n2)
    stat = np.where(ok, stat, -np.inf)
    k = stat.argmax(axis=0) + 1
    return np.where(ok.any(axis=0), k, -1)


def rank_changepoint_z(
    x: Any,
    mask: Any,
    edge_index: Any,
    start: int,
    *,
    lookback: int = 12,
    horizon: int = 3,
    min_segment: int = 6,
    log: bool = False,
) -> RootCauseRanking:
    """Change point per series, then rank by robust z after it against the steps before it.

    For every (service, metric) series over ``[start - lookback, start + horizon)``: the CUSUM
    mean-shift change point (at least ``min_segment`` observed steps before it), the median and
    MAD of the steps before it (floored as in the module docstring), and the largest ``|z|`` from
    the change on. A service's z is the max over its metrics (``edge_index`` unused). Unlike
    :func:`rank_largest_z` the reference adapts to when each series actually changed, so a late
    alarm, whose look-back already holds the incident, does not hide the change.
    """
    min_segment = _as_int(min_segment, "min_segment", 2)
    arr, m = _series(x, mask)
    lo, start, hi = _window(arr, start, lookback, horizon)
    v = _values(arr, m, lo, hi, log)  # [L, N, F]
    k = _changepoints(v, min_segment)  # [N, F]
    step = np.arange(v.shape[0])[:, None, None]
    before = np.where(step < k, v, np.nan)
    center, scale = robust_center_scale(before, axis=0, method="mad", min_count=min_segment)
    after = np.where((step >= k) & (k >= 0), v, np.nan)
    z = np.abs(after - center) / _floored(center, scale, log)  # NaN outside "after" or without a reference
    finite = np.isfinite(z)
    series_z = np.where(finite, z, -np.inf).max(axis=0)  # [N, F]
    peak = series_z.max(axis=1)
    unobserved = ~finite.any(axis=(0, 2))
    return _ranked([-peak], peak, unobserved)


def rank_random(
    x: Any,
    mask: Any,
    edge_index: Any,
    start: int,
    *,
    lookback: int = 12,
    horizon: int = 3,
    log: bool = False,
    seed: int = 0,
) -> RootCauseRanking:
    """A uniform random permutation of all services, seeded by ``(seed, start)``: the floor.

    Unobserved services (as the other rules see them, reported in ``unobserved``) are ranked
    like any other: this rule ignores the data. ``z`` is the robust z the others would see.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    z, unobserved = window_z(x, mask, start, lookback=lookback, horizon=horizon, log=log)
    order = np.random.default_rng([int(seed), int(start)]).permutation(z.shape[1]).astype(np.int64)
    return RootCauseRanking(order=order, z=np.where(unobserved, np.nan, _peak(z)), unobserved=unobserved)


RULES: dict[str, Callable[..., RootCauseRanking]] = {
    "largest_z": rank_largest_z,
    "earliest_onset": rank_earliest_onset,
    "most_downstream": rank_most_downstream,
    "changepoint_z": rank_changepoint_z,
    "random": rank_random,
}


def rank_incidents(
    rule: str | Callable[..., RootCauseRanking],
    x: Any,
    mask: Any,
    edge_index: Any,
    starts: Sequence[int] | np.ndarray,
    **options: Any,
) -> list[RootCauseRanking]:
    """``rule`` (a name in :data:`RULES` or a function with the rules' signature) applied to every
    alarm window start in ``starts``; ``options`` (``lookback``, ``horizon``, ``threshold``, ``seed``
    ...) are passed on. One :class:`RootCauseRanking` per start, in order."""
    if isinstance(rule, str):
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; choose one of {'|'.join(RULES)} or pass a function")
        rule = RULES[rule]
    arr, m = _series(x, mask)
    starts = np.asarray(starts)
    if starts.ndim != 1 or starts.size == 0 or starts.dtype.kind not in "iu":
        raise ValueError(f"starts must be a non-empty 1-D list of int steps, got {starts!r}")
    return [rule(arr, m, edge_index, int(s), **options) for s in starts]


def incident_starts_roots(telemetry: Any, min_start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(starts [I], roots [I])`` int64 of a Telemetry's incidents starting at ``min_start`` or later.

    ``min_start`` drops incidents with too little history for the rules (e.g. the ``lookback``).
    The starts serve as oracle alarm windows; the roots are the ground truth for the metrics.
    """
    try:
        incidents = list(telemetry.incidents)
    except AttributeError:
        raise TypeError(f"telemetry must be a Telemetry (from simulate), got {type(telemetry).__name__}") from None
    min_start = _as_int(min_start, "min_start", 0)
    kept = [inc for inc in incidents if inc.start >= min_start]
    return (
        np.array([inc.start for inc in kept], dtype=np.int64),
        np.array([inc.root for inc in kept], dtype=np.int64),
    )
