"""Drift detection for a streaming monitor: input distributions (KS) and score streams (Page-Hinkley).

A :class:`DriftDetector` watches the raw telemetry ``values [N, F]`` and a few score streams (e.g.
the monitor's cascade score and its largest per-service risk) one step at a time and reports a
:class:`DriftEvent` when the world it was calibrated on has changed (traffic grew, a deploy made a
service slower). It needs no model: it reads what the monitor reads.

Input distributions
-------------------
After construction (or :meth:`DriftDetector.reset`) the first ``reference`` steps are kept as the
reference; from then on the last ``recent`` steps are the recent window. Every ``every`` steps each
(service, metric) pair is tested with the two-sample Kolmogorov-Smirnov statistic

    D = max_x | F_ref(x) - F_recent(x) |

(empirical CDFs; unobserved values are left out, a pair is tested only when at least
``min_observed`` of each window was observed). :func:`ks_statistic` computes it for all pairs at
once and equals :func:`scipy.stats.ks_2samp`'s statistic exactly (tested).

**Autocorrelation.** KS p-values assume independent samples. Telemetry is not: all services follow
one daily traffic cycle and a slow traffic wobble (the generator's AR(1), coefficient 0.9 per step,
shared by every service). Textbook p-values fire constantly: on drift-free replays of the shop graph
(1-day recent window against a 2-day reference, evaluated hourly), about 10% of the evaluations
had some pair below ``1e-4 / pairs`` (``benchmarks/drift_alarms.py --calibrate``). Two measures:

1. *Whole cycles.* ``reference`` and ``recent`` must be whole multiples of ``period`` (default 288,
   one day of 5-minute steps), so both windows hold every phase of the daily cycle equally often
   and the cycle cancels out of the comparison (a window of part of a day differs from the
   reference without any drift).
2. *Effective sample size.* Dependent samples carry less information than their count: the KS
   statistic spreads as if ``n`` were ``n / kappa``. The p-value is Smirnov's asymptotic one with
   effective sizes,

       p = Q_KS( D * sqrt(n_e m_e / (n_e + m_e)) ),  n_e = n / kappa,  m_e = m / kappa,
       Q_KS(l) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 l^2)   (scipy.special.kolmogorov),

   with ``kappa`` (``inflation``) CALIBRATED on drift-free replays: ``--calibrate`` measures, per
   metric, the kappa that makes these p-values right at the median, 99% and 99.9% quantiles of the
   scaled statistic; on the generator it is 1.9 to 3.2 (memory lowest, cpu and error rate highest),
   about the same at every quantile, so one number fits the whole distribution. The default 3.0
   covers all metrics at the 99.9% quantile. For other telemetry, estimate it with
   :func:`ks_inflation` on a long drift-free history (it compares whole periods with each other;
   on 14 generated days it gave 1.5 to 3.7) and pass one value per metric. Estimating it from the
   two-day reference alone is too noisy: the shared traffic wobble makes the reference's two days
   one comparison, not ``N x F`` independent ones.

**Multiple testing.** The ``N x F`` p-values of one evaluation are adjusted with Benjamini-Hochberg
(:func:`scipy.stats.false_discovery_control`); a pair is significant when its adjusted p-value is
``<= alpha``. Chosen over Bonferroni because when nothing drifted (every null true) BH's chance of
any rejection is at most ``alpha``, the same guarantee, while under real drift, which moves many
pairs at once (traffic growth moves every service), BH rejects more of them.

**Persistence.** A pair's drift is *confirmed* when it is significant on ``persistence``
consecutive evaluations; the first confirmation raises a ``"distribution"`` event naming every
confirmed pair's service and metric. Consecutive evaluations share most of their recent window, so
persistence mainly filters a single borderline evaluation; the false-alarm rate itself is set by
``alpha`` and ``kappa`` and is MEASURED on drift-free replays (``benchmarks/drift_alarms.py``).
One evaluation sorts ``reference + recent`` values per pair: at 1000 services x 4 metrics it takes
a large fraction of a second, once every ``every`` steps; a step without an evaluation costs
microseconds.

Score streams
-------------
Each named score stream (``score_names``, default ``("cascade", "max_risk")``) is recorded over the
same ``reference`` steps. Scores follow the daily cycle too, so the reference gives a baseline per
phase of the period (the median of the reference's values at that phase) and a robust spread of
the residuals around it (IQR / 1.349, widened by ``sqrt((1 + 1/r) / (1 - 1/r))`` for ``r`` periods:
the residuals of the reference shrink toward its own baseline, a later value's do not). Later
scores become ``z = (score - baseline[phase]) / spread``, clipped to ``+-score_clip`` (one incident
is a burst of extreme scores, not drift: clipped, a burst cannot reach the threshold alone), and
feed a change detector:

- ``"page_hinkley"`` (default): :class:`PageHinkley`, the two-sided Page-Hinkley test of river
  (``river.drift.PageHinkley``), re-implemented here with identical arithmetic (tested against
  river on the same streams, bit for bit) because river keeps its state in private attributes of a
  Python object: saving it would mean reading those attributes or pickling the object, and the
  state must be plain numbers. Here it is eight floats. Defaults ``delta`` 1 and ``threshold`` 100
  (in ``z`` units) were chosen on drift-free replays of model-free stand-in scores (the benchmark's;
  the residuals are autocorrelated, through the traffic wobble): smaller settings raised a false
  alarm every 400 (``delta`` 0.5, ``threshold`` 50) to 6,500 (``delta`` 0.5, ``threshold`` 100)
  armed steps, these about one per 30,000 (``benchmarks/drift_alarms.py --ph-delta ... --ph-threshold ...``).
- ``"adwin"``: ``river.drift.ADWIN``. Its state lives in a Rust object that can be neither pickled
  nor read, so the detector keeps the stream's standardised values since the stream started and
  rebuilds ADWIN by replaying them on :meth:`DriftDetector.load_state_dict` (exact, since ADWIN is
  deterministic; the state grows by 8 bytes per step until :meth:`~DriftDetector.reset`). Its false
  alarms on autocorrelated scores were not calibrated: prefer Page-Hinkley.
- ``None``: no score detector.

A NaN or ``None`` score (e.g. the cascade score before the monitor's window is full) is skipped.

Events and state
----------------
Each kind fires at most once per reference: the distribution test once, each score stream once.
:attr:`DriftStatus.drifting` stays True from the first event until :meth:`DriftDetector.reset`
(call it after retraining: the new reference starts at the given step). ``state_dict`` holds only
NumPy arrays, Python scalars, strings and dicts of them; after ``load_state_dict(state_dict())`` the
same inputs give the same outputs, bit for bit (tested).

:func:`replay_drift` feeds a whole series through a detector (resetting after each alarm) for the
false-alarm and detection-delay measurements of ``benchmarks/drift_alarms.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import kolmogorov
from scipy.stats import false_discovery_control

from tgad_lite.checks import int_at_least as _int
from tgad_lite.checks import real_in as _real
from tgad_lite.data.microservices.windows import robust_center_scale

__all__ = [
    "DISTRIBUTION",
    "FORMAT",
    "KOLMOGOROV_MEDIAN",
    "SCORE",
    "SCORE_DETECTORS",
    "DriftDetector",
    "DriftEvaluation",
    "DriftEvent",
    "DriftStatus",
    "PageHinkley",
    "ReplayResult",
    "ks_inflation",
    "ks_pvalue",
    "ks_statistic",
    "replay_drift",
]

FORMAT = "tgad-lite-drift/1"
DISTRIBUTION = "distribution"
SCORE = "score"
SCORE_DETECTORS = ("page_hinkley", "adwin")
# Median of the Kolmogorov distribution (scipy.stats.kstwobign.ppf(0.5)).
KOLMOGOROV_MEDIAN = 0.8275735551899059
_KS_CHUNK = 512  # columns per sort in ks_statistic: bounds the temporary arrays at large N
_PH_DEFAULTS = {"min_instances": 30.0, "delta": 1.0, "threshold": 100.0, "alpha": 1.0}
_ADWIN_DEFAULTS = {"delta": 0.002, "clock": 32.0, "max_buckets": 5.0, "min_window_length": 5.0, "grace_period": 10.0}


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class DriftEvent:
    """One confirmed drift.

    ``step``: the step at which it was confirmed; ``kind``: ``"distribution"`` (KS on the inputs) or
    ``"score"`` (a change detector on a score stream); ``services`` / ``metrics``: the services and
    metric names whose inputs drifted (empty for score drift); ``statistic``: the largest KS ``D``
    among the confirmed pairs, or the change detector's value; ``detail``: one human line.
    """

    step: int
    kind: str
    services: tuple[int, ...]
    metrics: tuple[str, ...]
    statistic: float
    detail: str


@dataclass(frozen=True)
class DriftStatus:
    """``drifting``: a drift is confirmed and not yet reset; ``events``: those confirmed at THIS step."""

    drifting: bool
    events: tuple[DriftEvent, ...]


@dataclass(frozen=True)
class DriftEvaluation:
    """One KS evaluation of all (service, metric) pairs, for plots and reports.

    ``statistic``, ``p_value`` (with the effective sample size), ``adjusted`` (Benjamini-Hochberg):
    ``[N, F]`` float64, NaN where the pair was not tested (too few observed values);
    ``significant``: ``[N, F]`` bool, adjusted p-value ``<= alpha``; ``streak``: ``[N, F]`` int64,
    consecutive significant evaluations up to this one.
    """

    step: int
    statistic: np.ndarray
    p_value: np.ndarray
    adjusted: np.ndarray
    significant: np.ndarray
    streak: np.ndarray


@dataclass(frozen=True)
class ReplayResult:
    """What :func:`replay_drift` saw: every event, the steps where the detector was reset after an
    alarm, how many steps were replayed and at how many a test could fire (``armed_steps``)."""

    events: tuple[DriftEvent, ...]
    resets: tuple[int, ...]
    steps: int
    armed_steps: int

    @property
    def alarm_steps(self) -> tuple[int, ...]:
        """The distinct steps with at least one event."""
        return tuple(sorted({e.step for e in self.events}))


# ----------------------------------------------------------------------------- argument checks


# ----------------------------------------------------------------------------- the KS test


def ks_statistic(reference: Any, recent: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-sample KS statistic for every column: ``reference [n, C]`` against ``recent [m, C]``.

    NaN marks a missing value and is left out. Returns ``(D [C], n_obs [C], m_obs [C])``: the
    statistic (0 where either column has no value) and the observed counts. Equal to
    ``scipy.stats.ks_2samp(ref[:, c], rec[:, c]).statistic`` on each column's observed values,
    bit for bit, ties included; one sort per block of columns instead of one call per column.
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(recent, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"reference [n, C] and recent [m, C] must share C columns, got {a.shape} and {b.shape}")
    fa, fb = ~np.isnan(a), ~np.isnan(b)
    if np.isinf(a[fa]).any() or np.isinf(b[fb]).any():
        raise ValueError("ks_statistic got an infinite value; mark missing values as NaN and fix the others")
    n_obs, m_obs = fa.sum(axis=0), fb.sum(axis=0)
    d = np.zeros(a.shape[1])
    for lo in range(0, a.shape[1], _KS_CHUNK):
        cols = slice(lo, lo + _KS_CHUNK)
        # Missing values become +inf: sorted last, counted by neither CDF, never a tie-run end.
        z = np.concatenate([np.where(fa[:, cols], a[:, cols], np.inf), np.where(fb[:, cols], b[:, cols], np.inf)])
        from_a = np.concatenate([fa[:, cols], np.zeros_like(fb[:, cols])])
        from_b = np.concatenate([np.zeros_like(fa[:, cols]), fb[:, cols]])
        order = np.argsort(z, axis=0, kind="stable")
        zs = np.take_along_axis(z, order, axis=0)
        count_a = np.cumsum(np.take_along_axis(from_a, order, axis=0), axis=0)
        count_b = np.cumsum(np.take_along_axis(from_b, order, axis=0), axis=0)
        # Both CDFs as scipy computes them (counts <= x divided by the size), at the last of each
        # run of equal values, where searchsorted(side="right") evaluates them.
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = count_a / n_obs[cols] - count_b / m_obs[cols]
        run_end = np.isfinite(zs)
        run_end[:-1] &= zs[1:] != zs[:-1]
        gap = np.where(run_end, np.abs(diff), 0.0)
        d[cols] = gap.max(axis=0) if gap.shape[0] else 0.0
    empty = (n_obs == 0) | (m_obs == 0)
    d[empty] = 0.0
    return d, n_obs, m_obs


def ks_pvalue(statistic: Any, n: Any, m: Any, inflation: Any = 1.0) -> np.ndarray:
    """Smirnov's asymptotic two-sided p-value with effective sample sizes ``n / inflation``, ``m / inflation``.

    ``p = Q_KS(D sqrt(n_e m_e / (n_e + m_e)))`` with ``Q_KS`` the Kolmogorov survival function
    (``scipy.special.kolmogorov``). ``inflation = 1`` is the textbook test for independent samples;
    larger values account for autocorrelation (module docstring). Arguments broadcast (an
    ``inflation`` per column is fine). NaN where ``n`` or ``m`` is 0.
    """
    kappa = np.asarray(inflation, dtype=np.float64)
    if not (np.isfinite(kappa).all() and (kappa >= 1).all()):
        raise ValueError(f"inflation must be finite and >= 1 (1 = independent samples), got {inflation!r}")
    d = np.asarray(statistic, dtype=np.float64)
    n_e = np.asarray(n, dtype=np.float64) / kappa
    m_e = np.asarray(m, dtype=np.float64) / kappa
    with np.errstate(invalid="ignore", divide="ignore"):
        en = n_e * m_e / (n_e + m_e)
        p = kolmogorov(d * np.sqrt(en))
    return np.where((n_e > 0) & (m_e > 0), np.clip(p, 0.0, 1.0), np.nan)


def ks_inflation(values: Any, period: int, mask: Any = None, min_observed: float = 0.5) -> np.ndarray:
    """The KS variance inflation ``kappa`` per metric of a drift-free history ``values [T, N, F]``.

    ``T`` must hold ``r >= 2`` whole periods (use many: the module docstring says why two are too
    few). Every pair of periods is compared by KS per (service, metric); for metric ``f``,
    ``kappa[f] = (median(l) / 0.8276)^2`` over all period pairs and services, with
    ``l = D sqrt(n m / (n + m))`` (0.8276 is the median of ``l`` for independent samples), at
    least 1; 1.0 for a metric with no (service, period) observed at least ``min_observed`` of a
    period. ``mask [T, N, F]`` (True = observed) or NaN marks missing values. Returns ``[F]`` float64,
    ready for ``DriftDetector(inflation=...)``.
    """
    v = np.asarray(values, dtype=np.float64)
    period = _int("period", period, 1)
    min_observed = _real("min_observed", min_observed, 0.0, 1.0, low_open=True)
    if v.ndim != 3 or v.shape[0] < 2 * period or v.shape[0] % period:
        raise ValueError(
            f"values must be [T, N, F] with T a whole number (>= 2) of periods of {period} steps, got shape "
            f"{v.shape}; cut the history to whole periods"
        )
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != v.shape or m.dtype != np.bool_:
            raise ValueError(f"mask must be a bool array shaped like values {v.shape}, got {m.dtype} {m.shape}")
        v = np.where(m, v, np.nan)
    t, n, f = v.shape
    chunks = v.reshape(t // period, period, n * f)
    scaled: list[list[np.ndarray]] = [[] for _ in range(f)]
    for i in range(len(chunks)):
        for j in range(i + 1, len(chunks)):
            d, n_i, n_j = ks_statistic(chunks[i], chunks[j])
            ok = (n_i >= min_observed * period) & (n_j >= min_observed * period)
            with np.errstate(invalid="ignore", divide="ignore"):
                lam = np.where(ok, d * np.sqrt(n_i * n_j / (n_i + n_j)), np.nan).reshape(n, f)
            for k in range(f):
                scaled[k].append(lam[:, k])
    out = np.ones(f)
    for k in range(f):
        pooled = np.concatenate(scaled[k])
        pooled = pooled[np.isfinite(pooled)]
        if pooled.size:
            out[k] = max(1.0, (np.median(pooled) / KOLMOGOROV_MEDIAN) ** 2)
    return out


# ----------------------------------------------------------------------------- change detectors


class PageHinkley:
    """The Page-Hinkley test, with the arithmetic of ``river.drift.PageHinkley`` (river 0.26).

    For each value ``x_t``: the running mean ``mu_t`` of all values so far, then

        U_t = alpha U_{t-1} + (x_t - mu_t) - delta,   m_t = min(m_{t-1}, U_t)        (rise)
        L_t = alpha L_{t-1} + (x_t - mu_t) + delta,   M_t = max(M_{t-1}, L_t)        (fall)

    with ``U_0 = L_0 = 0``, ``m_0 = inf``, ``M_0 = -1`` (river's start values). From
    ``min_instances`` values on, a change is detected when ``U_t - m_t > threshold`` (``mode``
    ``"up"``), ``M_t - L_t > threshold`` (``"down"``) or either (``"both"``). As in river, the
    update after a detection starts afresh. The state is six numbers (:meth:`state_dict`).
    """

    MODES = ("up", "down", "both")

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: str = "both",
    ) -> None:
        self.min_instances = _int("min_instances", min_instances, 1)
        self.delta = _real("delta", delta, 0.0, math.inf, high_open=True)
        self.threshold = _real("threshold", threshold, 0.0, math.inf, low_open=True, high_open=True)
        self.alpha = _real("alpha", alpha, 0.0, 1.0, low_open=True)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {'|'.join(self.MODES)}, got {mode!r}")
        self.mode = mode
        self._reset()
        self.drift_detected = False

    def _reset(self) -> None:
        self.n = 0.0
        self.mean = 0.0
        self.sum_increase = 0.0
        self.sum_decrease = 0.0
        self.min_increase = math.inf
        self.max_decrease = -1.0
        self.increase = 0.0  # U_t - m_t at the last update (0 before min_instances)
        self.decrease = 0.0  # M_t - L_t

    @property
    def statistic(self) -> float:
        """The larger of the rise and fall statistics (those ``mode`` watches) at the last update."""
        if self.mode == "up":
            return self.increase
        if self.mode == "down":
            return self.decrease
        return max(self.increase, self.decrease)

    def update(self, x: float) -> bool:
        """Feed one value; True when a change is detected at it."""
        if self.drift_detected:
            self._reset()
            self.drift_detected = False
        self.n += 1.0
        self.mean += (1.0 / self.n) * (x - self.mean)  # river's stats.Mean, same operations
        dev = x - self.mean
        self.sum_increase = self.alpha * self.sum_increase + dev - self.delta
        self.sum_decrease = self.alpha * self.sum_decrease + dev + self.delta
        if self.sum_increase < self.min_increase:
            self.min_increase = self.sum_increase
        if self.sum_decrease > self.max_decrease:
            self.max_decrease = self.sum_decrease
        if self.n >= self.min_instances:
            self.increase = self.sum_increase - self.min_increase
            self.decrease = self.max_decrease - self.sum_decrease
            up, down = self.increase > self.threshold, self.decrease > self.threshold
            self.drift_detected = {"up": up, "down": down, "both": up or down}[self.mode]
        return self.drift_detected

    _STATE = ("n", "mean", "sum_increase", "sum_decrease", "min_increase", "max_decrease", "increase", "decrease")

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {k: float(getattr(self, k)) for k in self._STATE}
        state["drift_detected"] = bool(self.drift_detected)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = [k for k in (*self._STATE, "drift_detected") if k not in state]
        if missing:
            raise ValueError(f"Page-Hinkley state lacks {missing}; pass a state from PageHinkley.state_dict()")
        values = {k: float(state[k]) for k in self._STATE}
        for k, v in values.items():
            setattr(self, k, v)
        self.drift_detected = bool(state["drift_detected"])


class _Adwin:
    """``river.drift.ADWIN`` with its input history, so its state can be saved without pickle."""

    def __init__(self, **options: float) -> None:
        self.options = {
            "delta": float(options["delta"]),
            "clock": int(options["clock"]),
            "max_buckets": int(options["max_buckets"]),
            "min_window_length": int(options["min_window_length"]),
            "grace_period": int(options["grace_period"]),
        }
        self._history: list[float] = []
        self._build()

    def _build(self) -> None:
        from river.drift import ADWIN

        self._adwin = ADWIN(**self.options)
        self.drift_detected = False

    @property
    def statistic(self) -> float:
        """ADWIN's estimate of the current mean (standardised units)."""
        return float(self._adwin.estimation)

    def update(self, x: float) -> bool:
        self._history.append(float(x))
        self._adwin.update(float(x))
        self.drift_detected = bool(self._adwin.drift_detected)
        return self.drift_detected

    def state_dict(self) -> dict[str, Any]:
        return {"history": np.asarray(self._history, dtype=np.float64)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        history = np.asarray(state["history"], dtype=np.float64)
        if history.ndim != 1 or not np.isfinite(history).all():
            raise ValueError("ADWIN state must hold a 1-D finite 'history' array from state_dict()")
        self._history = []
        self._build()
        for x in history.tolist():
            self.update(x)


def _change_detector(kind: str, options: Mapping[str, float]) -> PageHinkley | _Adwin:
    if kind == "page_hinkley":
        return PageHinkley(
            min_instances=int(options["min_instances"]),
            delta=options["delta"],
            threshold=options["threshold"],
            alpha=options["alpha"],
            mode="both",
        )
    return _Adwin(**options)


# ----------------------------------------------------------------------------- the detector


class _Stream:
    """One score stream: its reference values (NaN where skipped), seasonal baseline, scale, detector."""

    def __init__(self, reference: int, period: int, kind: str, options: Mapping[str, float]) -> None:
        self.reference = np.full(reference, np.nan)
        self.baseline = np.full(period, np.nan)  # reference median per phase of the period
        self.scale = math.nan
        self.watched = False  # True once the reference had enough values to standardise with
        self.fired = False
        self.last = math.nan  # the last standardised value fed
        self.detector = _change_detector(kind, options)

    def calibrate(self, period: int, min_observed: float) -> None:
        """Baseline per phase and robust scale of the residuals, from the complete reference."""
        finite = np.isfinite(self.reference)
        if finite.sum() < max(2, min_observed * self.reference.size):
            return  # too few values: this stream is not watched until the next reset
        days = self.reference.reshape(-1, period)
        center, _ = robust_center_scale(days, axis=0, method="iqr")
        overall, _ = robust_center_scale(self.reference, axis=0, method="iqr")
        self.baseline = np.where(np.isnan(center), overall, center)
        residual = days - self.baseline
        _, scale = robust_center_scale(residual.reshape(-1), axis=0, method="iqr")
        # With r reference periods a residual from their own mean has variance s^2 (1 - 1/r), a
        # later value's residual s^2 (1 + 1/r) (the baseline's own noise adds): rescale, so later
        # residuals have unit spread. r = 1 leaves no residual to measure: the scale is the floor.
        r = days.shape[0]
        scale = float(scale) * math.sqrt((1 + 1 / r) / (1 - 1 / r)) if r > 1 else 0.0
        # A constant reference (IQR 0) would make every later wobble infinite: floor it.
        floor = 1e-6 * max(1.0, float(np.nanmax(np.abs(self.baseline))))
        self.scale = max(scale, floor)
        self.watched = True


class DriftDetector:
    """Drift in the inputs (KS per service and metric) and in score streams (change detectors).

    Args:
        num_services, metric_names: ``N`` and the ``F`` metric names of ``values [N, F]``.
        reference: steps in the reference (from construction or :meth:`reset`), a whole number of
            ``period`` s; default 576 (two days of 5-minute steps).
        recent: steps in the recent window, a whole number of periods (default 288, one day).
        every: evaluate the KS tests every this many steps (default 12, hourly).
        alpha: Benjamini-Hochberg level over the ``N x F`` pairs of one evaluation.
        persistence: consecutive significant evaluations that confirm a pair's drift.
        period: the seasonal period in steps (default 288: a day of 5-minute steps).
        inflation: ``kappa``, the KS variance inflation from autocorrelation: one number for all
            metrics or one per metric, each ``>= 1``. Default 3.0, measured on the generator's
            drift-free series (module docstring); for other telemetry estimate it from a long
            drift-free history with :func:`ks_inflation`.
        min_observed: a pair (or score stream) is tested only when at least this fraction of each
            window (of the reference) was observed.
        score_detector: ``"page_hinkley"`` (default), ``"adwin"`` or ``None``.
        score_names: the score streams :meth:`update` may receive.
        score_options: settings of the change detector, in reference standard deviations.
            Page-Hinkley: ``min_instances`` (30), ``delta`` (0.5), ``threshold`` (50), ``alpha`` (1: no
            forgetting); ADWIN: river's ``delta`` (0.002), ``clock`` (32), ``max_buckets`` (5),
            ``min_window_length`` (5), ``grace_period`` (10).
        score_clip: standardised scores are clipped to ``[-score_clip, score_clip]``.
        seed: accepted for the monitors' common interface; nothing here is random.

    ``update(step, values, mask, scores) -> DriftStatus`` once per step, steps consecutive.
    """

    def __init__(
        self,
        num_services: int,
        metric_names: Sequence[str],
        *,
        reference: int = 576,
        recent: int = 288,
        every: int = 12,
        alpha: float = 1e-3,
        persistence: int = 3,
        period: int = 288,
        inflation: float | Sequence[float] = 3.0,
        min_observed: float = 0.5,
        score_detector: str | None = "page_hinkley",
        score_names: Sequence[str] = ("cascade", "max_risk"),
        score_options: Mapping[str, float] | None = None,
        score_clip: float = 3.0,
        seed: int = 0,
    ) -> None:
        n = _int("num_services", num_services, 1)
        if isinstance(metric_names, str) or not isinstance(metric_names, Sequence) or not metric_names:
            raise ValueError(f"metric_names must be a non-empty list of names, got {metric_names!r}")
        names = tuple(str(m) for m in metric_names)
        if len(set(names)) != len(names):
            raise ValueError(f"metric_names lists a name twice: {names}")
        period = _int("period", period, 1)
        reference = _int("reference", reference, 1)
        recent = _int("recent", recent, 1)
        for what, value in (("reference", reference), ("recent", recent)):
            if value % period:
                raise ValueError(
                    f"{what}={value} is not a whole number of periods ({period} steps): a window that covers "
                    "part of the daily cycle differs from one covering another part even without drift; use "
                    f"a multiple of {period}, or set period to the series' seasonal period"
                )
        try:
            kappa = np.asarray(inflation, dtype=np.float64)
        except (TypeError, ValueError):
            kappa = np.full(0, np.nan)
        if kappa.ndim == 0:
            kappa = np.full(len(names), float(kappa))
        if kappa.shape != (len(names),) or not (np.isfinite(kappa).all() and (kappa >= 1).all()):
            raise ValueError(
                f"inflation must be a number >= 1 or one per metric ({len(names)}), each >= 1, got {inflation!r}; "
                "ks_inflation(history, period) estimates it"
            )
        if score_detector is not None and score_detector not in SCORE_DETECTORS:
            raise ValueError(f"score_detector must be one of {SCORE_DETECTORS} or None, got {score_detector!r}")
        if isinstance(score_names, str) or not isinstance(score_names, Sequence):
            raise ValueError(f"score_names must be a list of names, got {score_names!r}")
        streams = tuple(str(s) for s in score_names)
        if len(set(streams)) != len(streams):
            raise ValueError(f"score_names lists a name twice: {streams}")
        defaults = _ADWIN_DEFAULTS if score_detector == "adwin" else _PH_DEFAULTS
        unknown = sorted(set(score_options or {}) - set(defaults))
        if unknown:
            raise ValueError(f"unknown score_options {unknown} for {score_detector}; known: {sorted(defaults)}")
        options = {**defaults, **{k: float(v) for k, v in (score_options or {}).items()}}
        if score_detector is not None:
            _change_detector(score_detector, options)  # checks the settings now, not at the first score
        self.config: dict[str, Any] = {
            "num_services": n,
            "metric_names": list(names),
            "reference": reference,
            "recent": recent,
            "every": _int("every", every, 1),
            "alpha": _real("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True),
            "persistence": _int("persistence", persistence, 1),
            "period": period,
            "inflation": [float(k) for k in kappa],
            "min_observed": _real("min_observed", min_observed, 0.0, 1.0, low_open=True),
            "score_detector": score_detector if score_detector is not None else "none",
            "score_names": list(streams),
            "score_options": {k: options[k] for k in sorted(options)},
            "score_clip": _real("score_clip", score_clip, 0.0, math.inf, low_open=True, high_open=True),
            "seed": _int("seed", seed, 0),
        }
        self.num_services, self.metric_names, self.score_names = n, names, streams
        # kappa per column of the flattened [N * F] pairs (metric fastest, as reshape(-1) orders them)
        self._kappa = np.tile(np.asarray(self.config["inflation"]), n)
        self._clear(None)

    # ------------------------------------------------------------------ state

    def _new_stream(self) -> _Stream:
        c = self.config
        return _Stream(c["reference"], c["period"], c["score_detector"], c["score_options"])

    def _clear(self, next_step: int | None) -> None:
        c = self.config
        n, f = self.num_services, len(self.metric_names)
        self._next_step = next_step
        self._seen = 0
        self._reference = np.full((c["reference"], n, f), np.nan)
        self._recent = np.full((c["recent"], n, f), np.nan)
        self._recent_pos = 0
        self._streak = np.zeros((n, f), dtype=np.int64)
        self._drifting = False
        self._distribution_fired = False
        self._last_evaluation: DriftEvaluation | None = None
        watch = c["score_detector"] != "none"
        self._streams = {s: self._new_stream() for s in self.score_names} if watch else {}

    def reset(self, step: int) -> None:
        """Forget everything (after retraining): a new reference starts at ``step``, the next update's step."""
        self._clear(_int("step", step, 0))

    @property
    def drifting(self) -> bool:
        return self._drifting

    @property
    def steps_seen(self) -> int:
        """Updates since construction or the last reset."""
        return self._seen

    @property
    def last_evaluation(self) -> DriftEvaluation | None:
        """The most recent KS evaluation (None before the first)."""
        return self._last_evaluation

    @property
    def score_statistics(self) -> dict[str, float]:
        """Each score stream's change-detector statistic (NaN while it is not watched)."""
        return {s: (st.detector.statistic if st.watched else math.nan) for s, st in self._streams.items()}

    @property
    def armed(self) -> bool:
        """True when a test can fire at the next update (references complete, not yet fired)."""
        c = self.config
        ks = not self._distribution_fired and self._seen + 1 >= c["reference"] + c["recent"]
        return ks or any(st.watched and not st.fired for st in self._streams.values())

    # ------------------------------------------------------------------ update

    def _check_values(self, values: Any, mask: Any) -> np.ndarray:
        shape = (self.num_services, len(self.metric_names))
        v = np.asarray(values, dtype=np.float64)
        if v.shape != shape:
            raise ValueError(
                f"values must be [N, F] = {shape} (services x metrics {list(self.metric_names)}), got {v.shape}"
            )
        if mask is None:
            if not np.isfinite(v).all():
                raise ValueError(
                    "values hold NaN or inf but no mask was given; pass mask [N, F] (True = observed) to mark "
                    "missing values, which are then left out of the tests"
                )
            return v
        m = np.asarray(mask)
        if m.shape != shape or m.dtype != np.bool_:
            raise ValueError(f"mask must be a bool array [N, F] = {shape} (True = observed), got {m.dtype} {m.shape}")
        if not np.isfinite(v[m]).all():
            raise ValueError("values are NaN or inf where mask says observed; fix the data or set mask False there")
        return np.where(m, v, np.nan)

    def _check_scores(self, scores: Mapping[str, Any] | None) -> dict[str, float]:
        if scores is None:
            return {}
        if not isinstance(scores, Mapping):
            raise ValueError(f"scores must be a mapping name -> float, e.g. {{'max_risk': 0.2}}, got {scores!r}")
        unknown = sorted(set(scores) - set(self.score_names))
        if unknown:
            raise ValueError(
                f"unknown score stream(s) {unknown}; this detector watches {list(self.score_names)} "
                "(set score_names when building it)"
            )
        out = {}
        for name, value in scores.items():
            if value is None:
                continue
            try:
                x = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"score {name!r} must be a number (or None/NaN to skip), got {value!r}") from None
            if math.isinf(x):
                raise ValueError(f"score {name!r} is infinite; pass a finite value, or NaN/None to skip this step")
            if not math.isnan(x):
                out[name] = x
        return out

    def update(
        self, step: int, values: Any, mask: Any = None, scores: Mapping[str, float | None] | None = None
    ) -> DriftStatus:
        """Feed one step: ``values [N, F]`` RAW telemetry (NaN allowed only where ``mask`` is False),
        ``mask [N, F]`` bool (True = observed) or None, ``scores`` e.g. ``{"cascade": c, "max_risk": r}``
        (a missing, None or NaN score skips that stream at this step).

        Steps must be consecutive (``step`` = the previous one + 1, or the step given to
        :meth:`reset`). Bad input raises ``ValueError`` and changes nothing.
        """
        step = _int("step", step, 0)
        if self._next_step is not None and step != self._next_step:
            raise ValueError(
                f"step {step} is not the next step {self._next_step}: the detector needs every step in order; "
                "feed the missing steps (mask them if nothing was observed) or reset(step) to start afresh"
            )
        x = self._check_values(values, mask)
        given = self._check_scores(scores)
        c = self.config
        position = self._seen  # this step's index since the reset
        if position < c["reference"]:
            self._reference[position] = x
        else:
            self._recent[self._recent_pos] = x
            self._recent_pos = (self._recent_pos + 1) % c["recent"]
        self._seen += 1
        self._next_step = step + 1
        events = []
        since = self._seen - c["reference"] - c["recent"]
        if since >= 0 and since % c["every"] == 0:
            event = self._evaluate(step)
            if event is not None:
                events.append(event)
        for name, st in self._streams.items():
            event = self._feed(name, st, given.get(name, math.nan), position, step)
            if event is not None:
                events.append(event)
        self._drifting = self._drifting or bool(events)
        return DriftStatus(drifting=self._drifting, events=tuple(events))

    def _evaluate(self, step: int) -> DriftEvent | None:
        c = self.config
        n, f = self.num_services, len(self.metric_names)
        flat_reference = self._reference.reshape(c["reference"], -1)
        d, n_obs, m_obs = ks_statistic(flat_reference, self._recent.reshape(c["recent"], -1))
        tested = (n_obs >= c["min_observed"] * c["reference"]) & (m_obs >= c["min_observed"] * c["recent"])
        tested &= (n_obs > 0) & (m_obs > 0)
        p = np.full(d.shape, np.nan)
        adjusted = np.full(d.shape, np.nan)
        if tested.any():
            p[tested] = ks_pvalue(d[tested], n_obs[tested], m_obs[tested], self._kappa[tested])
            adjusted[tested] = false_discovery_control(p[tested], method="bh")
        significant = (tested & (adjusted <= c["alpha"])).reshape(n, f)
        self._streak = np.where(significant, self._streak + 1, 0)
        self._last_evaluation = DriftEvaluation(
            step=step,
            statistic=np.where(tested, d, np.nan).reshape(n, f),
            p_value=p.reshape(n, f),
            adjusted=adjusted.reshape(n, f),
            significant=significant,
            streak=self._streak.copy(),
        )
        confirmed = self._streak >= c["persistence"]
        if self._distribution_fired or not confirmed.any():
            return None
        self._distribution_fired = True
        return self._distribution_event(step, confirmed, d.reshape(n, f), adjusted.reshape(n, f))

    def _distribution_event(self, step: int, confirmed: np.ndarray, d: np.ndarray, adjusted: np.ndarray) -> DriftEvent:
        c = self.config
        services, metrics = np.nonzero(confirmed)
        parts = []
        for j, name in enumerate(self.metric_names):
            ids = np.flatnonzero(confirmed[:, j])
            if ids.size:
                shown = ",".join(str(i) for i in ids[:8]) + (f" and {ids.size - 8} more" if ids.size > 8 else "")
                parts.append(f"{name} of service{'s' if ids.size > 1 else ''} {shown}")
        worst = float(np.max(d[confirmed]))
        q = float(np.max(adjusted[confirmed]))
        detail = (
            f"KS drift on {int(confirmed.sum())} (service, metric) pair(s): {'; '.join(parts)} (max D={worst:.3f}, "
            f"BH-adjusted p<={q:.1e} <= {c['alpha']:g} on {c['persistence']} evaluations in a row)"
        )
        return DriftEvent(
            step=step,
            kind=DISTRIBUTION,
            services=tuple(int(s) for s in np.unique(services)),
            metrics=tuple(self.metric_names[j] for j in np.unique(metrics)),
            statistic=worst,
            detail=detail,
        )

    def _feed(self, name: str, st: _Stream, value: float, position: int, step: int) -> DriftEvent | None:
        c = self.config
        if position < c["reference"]:
            st.reference[position] = value
            if position == c["reference"] - 1:
                st.calibrate(c["period"], c["min_observed"])
            return None
        if not st.watched or st.fired or math.isnan(value):
            return None
        phase = position % c["period"]
        z = min(max((value - st.baseline[phase]) / st.scale, -c["score_clip"]), c["score_clip"])
        st.last = z
        if not st.detector.update(z):
            return None
        st.fired = True
        stat = st.detector.statistic
        if c["score_detector"] == "page_hinkley":
            way = "rose" if st.detector.increase > st.detector.threshold else "fell"
            detail = (
                f"Page-Hinkley on {name}: its level {way} against the reference's daily profile (statistic "
                f"{stat:.1f} > {st.detector.threshold:g}, in reference standard deviations of {st.scale:.3g})"
            )
        else:
            detail = f"ADWIN on {name}: its level changed (window mean now {stat:+.2f} reference standard deviations)"
        return DriftEvent(step=step, kind=SCORE, services=(), metrics=(), statistic=float(stat), detail=detail)

    # ------------------------------------------------------------------ saving

    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`load_state_dict` needs: NumPy arrays, Python scalars, strings, dicts."""
        ev = self._last_evaluation
        last: dict[str, Any] = {}
        if ev is not None:
            last = {
                "step": ev.step,
                "statistic": ev.statistic.copy(),
                "p_value": ev.p_value.copy(),
                "adjusted": ev.adjusted.copy(),
                "significant": ev.significant.copy(),
                "streak": ev.streak.copy(),
            }
        return {
            "format": FORMAT,
            "config": _plain(self.config),
            "next_step": -1 if self._next_step is None else int(self._next_step),
            "seen": int(self._seen),
            "reference": self._reference.copy(),
            "recent": self._recent.copy(),
            "recent_pos": int(self._recent_pos),
            "streak": self._streak.copy(),
            "drifting": bool(self._drifting),
            "distribution_fired": bool(self._distribution_fired),
            "last_evaluation": last,
            "streams": {
                name: {
                    "reference": st.reference.copy(),
                    "baseline": st.baseline.copy(),
                    "scale": float(st.scale),
                    "watched": bool(st.watched),
                    "fired": bool(st.fired),
                    "last": float(st.last),
                    "detector": st.detector.state_dict(),
                }
                for name, st in self._streams.items()
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`state_dict` of a detector built with the same settings).

        A state of another format, configuration or shape is refused with a ``ValueError`` naming
        what differs; the detector is left unchanged then.
        """
        if not isinstance(state, Mapping) or state.get("format") != FORMAT:
            raise ValueError(
                f"not a drift detector state (expected format {FORMAT!r}); pass DriftDetector.state_dict()"
            )
        stored, wanted = _plain(state.get("config", {})), _plain(self.config)
        if stored != wanted:
            keys = sorted(set(stored) | set(wanted))
            diffs = [f"{k}: state {stored.get(k, '<absent>')!r} vs now {wanted.get(k, '<absent>')!r}" for k in keys
                     if stored.get(k, "<absent>") != wanted.get(k, "<absent>")]  # fmt: skip
            raise ValueError(
                f"the drift state was saved by a detector with other settings ({'; '.join(diffs)}); build the "
                "detector with the saved settings, or start a fresh one"
            )
        c = self.config
        n, f = self.num_services, len(self.metric_names)
        try:
            reference = _array(state, "reference", (c["reference"], n, f), np.float64)
            recent = _array(state, "recent", (c["recent"], n, f), np.float64)
            streak = _array(state, "streak", (n, f), np.int64)
            seen = _int("seen", state["seen"], 0)
            pos = _int("recent_pos", state["recent_pos"], 0)
            if pos >= c["recent"]:
                raise ValueError(f"the drift state's recent_pos {pos} is outside the recent window of {c['recent']}")
            next_step = int(state["next_step"])
            last = state["last_evaluation"]
            evaluation = None
            if last:
                evaluation = DriftEvaluation(
                    step=int(last["step"]),
                    statistic=_array(last, "statistic", (n, f), np.float64),
                    p_value=_array(last, "p_value", (n, f), np.float64),
                    adjusted=_array(last, "adjusted", (n, f), np.float64),
                    significant=_array(last, "significant", (n, f), np.bool_),
                    streak=_array(last, "streak", (n, f), np.int64),
                )
            saved = state["streams"]
            if sorted(saved) != sorted(self._streams):
                raise ValueError(f"the drift state's score streams {sorted(saved)} differ from {sorted(self._streams)}")
            streams = {}
            for name in self._streams:
                s = saved[name]
                st = self._new_stream()
                st.reference = _array(s, "reference", (c["reference"],), np.float64)
                st.baseline = _array(s, "baseline", (c["period"],), np.float64)
                st.scale, st.last = float(s["scale"]), float(s["last"])
                st.watched, st.fired = bool(s["watched"]), bool(s["fired"])
                st.detector.load_state_dict(s["detector"])
                streams[name] = st
            flags = bool(state["drifting"]), bool(state["distribution_fired"])
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"the drift state is incomplete or damaged (missing or wrong {exc}); pass DriftDetector.state_dict()"
            ) from None
        # Everything checked: swap it in at once.
        self._reference, self._recent, self._streak = reference, recent, streak
        self._seen, self._recent_pos = seen, pos
        self._next_step = None if next_step < 0 else next_step
        self._drifting, self._distribution_fired = flags
        self._last_evaluation = evaluation
        self._streams = streams


def _plain(value: Any) -> Any:
    """Config values as plain comparable Python (tuples as lists, NumPy scalars as Python ones)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _array(state: Mapping[str, Any], key: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    a = np.asarray(state[key])
    if a.shape != shape:
        raise ValueError(f"the drift state's {key} has shape {a.shape}, this detector needs {shape}")
    if dtype is np.bool_ and a.dtype != np.bool_:
        raise ValueError(f"the drift state's {key} must be bool, got {a.dtype}")
    return np.array(a, dtype=dtype)


# ----------------------------------------------------------------------------- replay


def replay_drift(
    detector: DriftDetector,
    x: Any,
    mask: Any = None,
    *,
    scores: Mapping[str, Any] | None = None,
    start: int = 0,
    stop: int | None = None,
    reset_on_alarm: bool = True,
) -> ReplayResult:
    """Feed steps ``[start, stop)`` of a series through ``detector``, one :meth:`~DriftDetector.update` each.

    ``x``: ``[T, N, F]`` raw values or a :class:`~tgad_lite.data.microservices.Telemetry` (its ``x``
    and ``mask``); ``mask``: ``[T, N, F]`` bool or None; ``scores``: ``{name: [T] array}`` (NaN =
    skip that step). ``reset_on_alarm``: after a step with events the detector is reset, so the next
    reference starts at the following step, as after a retraining; the false-alarm measurement
    counts alarms this way. The detector must be fresh or expect step ``start``.
    """
    if hasattr(x, "x") and hasattr(x, "mask"):
        if mask is not None:
            raise ValueError("pass either a Telemetry or arrays (x, mask), not both")
        x, mask = x.x, x.mask
    values = np.asarray(x)
    if values.ndim != 3:
        raise ValueError(f"x must be [T, N, F], got shape {values.shape}")
    steps = values.shape[0]
    stop = steps if stop is None else _int("stop", stop, 0)
    start = _int("start", start, 0)
    if not start <= stop <= steps:
        raise ValueError(f"replay_drift(start={start}, stop={stop}) needs 0 <= start <= stop <= {steps}")
    m = None if mask is None else np.asarray(mask)
    series = {}
    for name, s in (scores or {}).items():
        arr = np.asarray(s, dtype=np.float64)
        if arr.shape != (steps,):
            raise ValueError(f"scores[{name!r}] must be [T] = ({steps},), got {arr.shape}")
        series[name] = arr
    events, resets, armed = [], [], 0
    for t in range(start, stop):
        armed += detector.armed
        status = detector.update(t, values[t], None if m is None else m[t], {k: v[t] for k, v in series.items()})
        if status.events:
            events.extend(status.events)
            if reset_on_alarm:
                detector.reset(t + 1)
                resets.append(t + 1)
    return ReplayResult(events=tuple(events), resets=tuple(resets), steps=stop - start, armed_steps=armed)
