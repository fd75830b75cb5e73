"""Scoring time-series anomaly detectors: point-wise, point-adjusted, event-wise, ranking, attribution.

Every function takes arrays and returns numbers; nothing here imports a model or torch (a tensor is
accepted, duck-typed). Shapes: ``scores [T]`` (higher = more anomalous), ``labels [T]`` (0/1, 1 =
anomalous), ``threshold`` a number or ``[T]`` per-step thresholds (streaming rules such as DSPOT).

**Alarm rule**: step ``t`` raises an alarm when ``scores[t] > threshold[t]`` (strictly greater), the
rule of every threshold in :mod:`tgad_lite.anomaly.threshold` (POT, percentile, ...) and of the PA%K
reference code, so a threshold from there is scored here exactly as it alarms. Oracle thresholds
from scikit-learn's precision-recall curve (alarms ``>= t``) are returned as the float just below
``t``, which gives the same alarms under this rule.

A *segment* (event) is a maximal run of 1s in ``labels``, from :func:`tgad_lite.intervals.label_ranges`
(inclusive ends). Conventions for undefined values, chosen so that no result is ever NaN:

- precision is 0.0 when there is no alarm (scikit-learn's ``zero_division=0``);
- recall, F1 and everything built on them (point-adjusted, PA%K, composite) are ``None`` when the
  labels hold no anomaly: recall has no denominator, and 0 would wrongly punish a silent detector;
- ROC-AUC and PR-AUC are ``None`` when the labels are all one class.

:func:`evaluate` gathers all of it into one row with stable keys (:data:`EVALUATE_KEYS`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from tgad_lite.intervals import check_labels, label_ranges

__all__ = [
    "EVALUATE_KEYS",
    "PRF",
    "BestF1",
    "alarms_at",
    "precision_recall_f1",
    "best_f1",
    "point_adjust",
    "point_adjusted_f1",
    "best_point_adjusted_f1",
    "pa_k_curve",
    "pa_k_auc",
    "event_recall",
    "composite_f1",
    "roc_auc",
    "pr_auc",
    "detection_delays",
    "false_alarm_events",
    "culprits_per_point",
    "hit_rate",
    "evaluate",
]


class PRF(NamedTuple):
    """Precision, recall and F1 at one threshold (recall and F1 ``None`` when labels hold no anomaly)."""

    precision: float
    recall: float | None
    f1: float | None


class BestF1(NamedTuple):
    """The best F1 over all thresholds and where it is reached. An ORACLE: it chose ``threshold``
    by looking at the test labels, so it is an upper bound, not a deployable detector's score."""

    f1: float | None
    threshold: float
    precision: float
    recall: float | None


# ----------------------------------------------------------------------------- input checks


def _np(a: Any) -> np.ndarray:
    # Duck-typed so torch tensors (on any device) work without importing torch here.
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _check_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """``scores [T]`` as float64, refusing what would make a metric silently wrong."""
    s = _np(scores)
    if s.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numbers, got dtype {s.dtype}; pass a numeric array (np.asarray(x, float))")
    if s.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D [T] (one score per time step), got shape {s.shape}; "
            "reduce per-feature scores [T, F] first (e.g. .max(axis=1)) or pass them as per_feature_scores"
        )
    if s.size == 0:
        raise ValueError(f"{name} is empty; metrics need at least one time step")
    s = s.astype(np.float64)
    bad = ~np.isfinite(s)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must be finite, found {float(s[i])} at step {i} ({int(bad.sum())} non-finite in all); "
            "fix the detector or replace them (e.g. np.nan_to_num) before scoring"
        )
    return s


def _check(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = _check_scores(scores)
    lab = check_labels(labels, length=len(s))
    if lab.ndim != 1:
        raise ValueError(f"labels must be 1-D [T], got shape {lab.shape}; pass one label per time step")
    return s, lab


def _check_threshold(threshold: Any, length: int) -> np.ndarray | float:
    if isinstance(threshold, bool) or threshold is None:
        raise ValueError(f"threshold must be a finite number or a [T] array of them, got {threshold!r}")
    th = _np(threshold)
    if th.dtype.kind not in "iuf":
        raise ValueError(f"threshold must be a finite number or a [T] array of them, got {threshold!r}")
    if th.ndim == 0:
        if not np.isfinite(th):
            raise ValueError(f"threshold must be finite, got {float(th)!r}; pick a real cut-off (e.g. from POT)")
        return float(th)
    if th.shape != (length,):
        raise ValueError(
            f"per-step threshold must have shape [T] = ({length},) like the scores, got {th.shape}; "
            "pass one number or one threshold per time step"
        )
    if not np.isfinite(th).all():
        i = int(np.flatnonzero(~np.isfinite(th))[0])
        raise ValueError(f"threshold must be finite, found {float(th[i])} at step {i}")
    return th.astype(np.float64)


def alarms_at(scores: Any, threshold: Any) -> np.ndarray:
    """Alarms ``[T]`` (bool): ``scores > threshold``; ``threshold`` a number or ``[T]`` per-step values."""
    s = _check_scores(scores)
    return s > _check_threshold(threshold, len(s))


# ----------------------------------------------------------------------------- core on alarms


def _prf(tp: int, n_alarms: int, n_pos: int) -> PRF:
    precision = tp / n_alarms if n_alarms else 0.0
    if n_pos == 0:
        return PRF(float(precision), None, None)
    recall = tp / n_pos
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return PRF(float(precision), float(recall), float(f1))


def _prf_of(alarms: np.ndarray, lab: np.ndarray) -> PRF:
    return _prf(int((alarms & (lab == 1)).sum()), int(alarms.sum()), int(lab.sum()))


def _segment_counts(alarms: np.ndarray, ranges: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Alarms inside each segment ``[S]`` and each segment's length ``[S]`` (int64)."""
    if not ranges:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.array([r[0] for r in ranges])
    ends = np.array([r[1] for r in ranges])
    csum = np.concatenate([[0], np.cumsum(alarms, dtype=np.int64)])
    return csum[ends + 1] - csum[starts], ends - starts + 1


def _adjusted(counts: np.ndarray, lengths: np.ndarray, k: int) -> np.ndarray:
    # Kim et al.'s rule "alarms exceed K% of the segment", in exact integer arithmetic
    # (the reference code's float k / 100 * length misjudges e.g. 29 alarms in 100 at K = 29).
    return counts * 100 > k * lengths


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k <= 100:
        raise ValueError(f"K must be a whole percentage 0..100 (0 = point adjustment, 100 = point-wise), got {k!r}")
    return int(k)


# ----------------------------------------------------------------------------- point-wise


def precision_recall_f1(scores: Any, labels: Any, threshold: Any) -> PRF:
    """Point-wise precision, recall and F1 of the alarms ``scores > threshold``.

    ``scores [T]``, ``labels [T]``, ``threshold`` a number or ``[T]``. Every time step counts once:
    ``P = TP / alarms``, ``R = TP / anomalous steps``, ``F1 = 2PR / (P + R)``.
    """
    s, lab = _check(scores, labels)
    return _prf_of(s > _check_threshold(threshold, len(s)), lab)


def _best_from_curve(s: np.ndarray, lab: np.ndarray) -> BestF1:
    if lab.sum() == 0:
        # No anomaly: F1 is undefined at every threshold; the honest choice raises no alarm.
        return BestF1(None, float(s.max()), 0.0, None)
    precision, recall, thresholds = precision_recall_curve(lab, s)
    p, r = precision[:-1], recall[:-1]  # the last pair (P=1, R=0) has no threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    i = int(np.argmax(f1))  # ties: the lowest threshold reaching the maximum
    # sklearn alarms on score >= t; the float just below t gives the same alarms under score > t'.
    return BestF1(float(f1[i]), float(np.nextafter(thresholds[i], -np.inf)), float(p[i]), float(r[i]))


def best_f1(scores: Any, labels: Any) -> BestF1:
    """ORACLE best point-wise F1 over every threshold, in one pass.

    ``scores [T]``, ``labels [T]``. Uses :func:`sklearn.metrics.precision_recall_curve`, whose
    thresholds are the distinct scores with alarms ``scores >= t``; the threshold returned is the
    float just below that ``t``, so it gives the same alarms under this package's ``scores >
    threshold``. The threshold is chosen with the test labels, so the F1 is an upper bound no
    deployed detector can claim; report it as "oracle best-F1". On ties in F1 the lowest threshold
    wins. With no anomaly in ``labels`` the F1 is ``None`` and the threshold is the largest score
    (no alarm).
    """
    s, lab = _check(scores, labels)
    return _best_from_curve(s, lab)


# ----------------------------------------------------------------------------- point adjustment


def point_adjust(alarms: Any, labels: Any, k: int = 0) -> np.ndarray:
    """Point-adjusted alarms ``[T]`` (bool) under PA%K (Kim et al., AAAI 2022).

    ``alarms [T]`` (0/1 or bool), ``labels [T]``. Every labelled segment in which the alarms
    *exceed* ``k`` % of its steps (``alarms_in_segment * 100 > k * length``, as in the paper and
    its reference code) is marked detected on every step. ``k = 0`` is the classic point
    adjustment (Xu et al., WWW 2018): one alarm anywhere credits the whole segment. ``k = 100``
    never adjusts (point-wise). Alarms outside segments are left as they are.
    """
    a = check_labels(alarms, name="alarms").astype(bool)
    if a.ndim != 1:
        raise ValueError(f"alarms must be 1-D [T], got shape {a.shape}")
    lab = check_labels(labels, length=len(a))
    if lab.ndim != 1:
        raise ValueError(f"labels must be 1-D [T], got shape {lab.shape}; pass one label per time step")
    k = _check_k(k)
    ranges = label_ranges(lab)
    counts, lengths = _segment_counts(a, ranges)
    out = a.copy()
    for (start, end), adj in zip(ranges, _adjusted(counts, lengths, k), strict=True):
        if adj:
            out[start : end + 1] = True
    return out


def point_adjusted_f1(scores: Any, labels: Any, threshold: Any, k: int = 0) -> PRF:
    """Precision, recall and F1 after PA%K adjustment (``k = 0``: point-adjusted F1).

    ``scores [T]``, ``labels [T]``, ``threshold`` a number or ``[T]``; see :func:`point_adjust`.
    Precision can only rise under adjustment, which is why uniform random scores reach ~0.9 on
    long segments: treat this number as an optimistic bound, never alone.
    """
    s, lab = _check(scores, labels)
    alarms = s > _check_threshold(threshold, len(s))
    return _prf_of(point_adjust(alarms, lab, k), lab)


def _pa_scores(s: np.ndarray, lab: np.ndarray, k: int) -> np.ndarray:
    """Scores whose point-wise alarms equal the PA%K-adjusted alarms at *every* threshold.

    A segment of length L is adjusted at threshold tau iff more than k% of it alarms, i.e. iff at
    least m = floor(k L / 100) + 1 of its scores are >= tau, i.e. iff tau <= its m-th largest score.
    So raising each of its scores to that m-th largest value (when m <= L) reproduces PA%K.
    """
    out = s.copy()
    for start, end in label_ranges(lab):
        length = end - start + 1
        m = k * length // 100 + 1
        if m <= length:
            seg = out[start : end + 1]
            kth = np.partition(seg, length - m)[length - m]  # m-th largest
            np.maximum(seg, kth, out=seg)
    return out


def best_point_adjusted_f1(scores: Any, labels: Any, k: int = 0) -> BestF1:
    """ORACLE best PA%K F1 over every threshold, in one pass (``k = 0``: best point-adjusted F1).

    ``scores [T]``, ``labels [T]``. The usual "point-adjusted F1 with the best threshold" of the
    literature. Computed exactly by :func:`best_f1` on scores transformed so that their plain
    alarms are the adjusted ones (each segment's scores raised to the value at which it becomes
    detected). Chosen with the test labels: an upper bound, not a detector's score.
    """
    s, lab = _check(scores, labels)
    return _best_from_curve(_pa_scores(s, lab, _check_k(k)), lab)


def pa_k_curve(
    scores: Any, labels: Any, threshold: Any, ks: Iterable[int] = range(101)
) -> tuple[np.ndarray, np.ndarray]:
    """F1 under PA%K for each K: ``(ks [n] int, f1 [n] float)`` at one fixed threshold.

    ``scores [T]``, ``labels [T]``, ``threshold`` a number or ``[T]``. ``f1[0]`` (K = 0) is the
    point-adjusted F1 and ``f1`` at K = 100 the point-wise F1; the curve falls in between as K
    rises. Raises ``ValueError`` when the labels hold no anomaly (F1 undefined for every K).
    """
    s, lab = _check(scores, labels)
    alarms = s > _check_threshold(threshold, len(s))
    ks_arr = np.array([_check_k(k) for k in ks], dtype=np.int64)
    n_pos = int(lab.sum())
    if n_pos == 0:
        raise ValueError("labels hold no anomaly, so F1 is undefined for every K; score a series with anomalies")
    counts, lengths = _segment_counts(alarms, label_ranges(lab))
    tp0, n_alarms0 = int((alarms & (lab == 1)).sum()), int(alarms.sum())
    f1 = np.empty(len(ks_arr))
    for i, k in enumerate(ks_arr):
        # Adjusting a segment turns its (length - count) silent steps into true-positive alarms.
        gain = int(((lengths - counts) * _adjusted(counts, lengths, int(k))).sum())
        f1[i] = _prf(tp0 + gain, n_alarms0 + gain, n_pos).f1
    return ks_arr, f1


def pa_k_auc(scores: Any, labels: Any, threshold: Any) -> float | None:
    """Area under the PA%K F1 curve for K = 0, 1, ..., 100 with K/100 on the x axis (trapezoid).

    Kim et al. (AAAI 2022). In ``[0, 1]``; between point-wise F1 and point-adjusted F1.
    ``None`` when the labels hold no anomaly.
    """
    s, lab = _check(scores, labels)
    if lab.sum() == 0:
        return None
    ks, f1 = pa_k_curve(s, lab, threshold)
    return float(np.trapezoid(f1, ks / 100))


# ----------------------------------------------------------------------------- event-wise


def event_recall(scores: Any, labels: Any, threshold: Any) -> float | None:
    """Fraction of labelled segments with at least one alarm inside; ``None`` without segments."""
    s, lab = _check(scores, labels)
    counts, _ = _segment_counts(s > _check_threshold(threshold, len(s)), label_ranges(lab))
    return float((counts > 0).mean()) if len(counts) else None


def composite_f1(scores: Any, labels: Any, threshold: Any) -> float | None:
    """Composite F1 (Garg et al., IEEE TNNLS 2021): harmonic mean of point-wise precision and
    event-wise recall (:func:`event_recall`). ``None`` when the labels hold no anomaly."""
    s, lab = _check(scores, labels)
    p = precision_recall_f1(s, lab, threshold).precision
    r = event_recall(s, lab, threshold)
    if r is None:
        return None
    return float(2 * p * r / (p + r)) if p + r > 0 else 0.0


def detection_delays(scores: Any, labels: Any, threshold: Any) -> list[int | None]:
    """For each labelled segment (in time order), ``first alarm index - segment start``, or ``None``
    when no alarm falls inside the segment. Alarms before the segment do not count as early."""
    s, lab = _check(scores, labels)
    alarms = s > _check_threshold(threshold, len(s))
    out: list[int | None] = []
    for start, end in label_ranges(lab):
        hits = np.flatnonzero(alarms[start : end + 1])
        out.append(int(hits[0]) if hits.size else None)
    return out


def false_alarm_events(scores: Any, labels: Any, threshold: Any) -> int:
    """Number of maximal runs of consecutive alarms that share no time step with a labelled segment."""
    s, lab = _check(scores, labels)
    alarms = (s > _check_threshold(threshold, len(s))).astype(np.int8)
    runs = label_ranges(alarms)
    counts, _ = _segment_counts(lab.astype(bool), runs)  # labelled steps inside each alarm run
    return int((counts == 0).sum())


# ----------------------------------------------------------------------------- ranking


def roc_auc(scores: Any, labels: Any) -> float | None:
    """ROC-AUC (:func:`sklearn.metrics.roc_auc_score`); ``None`` when labels are all one class
    (the true- or false-positive rate has no denominator)."""
    s, lab = _check(scores, labels)
    return float(roc_auc_score(lab, s)) if 0 < lab.sum() < len(lab) else None


def pr_auc(scores: Any, labels: Any) -> float | None:
    """PR-AUC as average precision (:func:`sklearn.metrics.average_precision_score`, step-wise, no
    interpolation); ``None`` when labels are all one class (none: recall undefined; all: trivially 1)."""
    s, lab = _check(scores, labels)
    return float(average_precision_score(lab, s)) if 0 < lab.sum() < len(lab) else None


# ----------------------------------------------------------------------------- attribution


def culprits_per_point(culprits: Any, length: int) -> dict[int, tuple[int, ...]]:
    """Per-step ground-truth culprit features ``{t: (f, ...)}`` from anomaly events.

    ``culprits`` is what :func:`tgad_lite.data.smd.load_smd` returns as ``interpretation``: events
    with ``start``, ``end`` (inclusive, 0-based test rows) and ``features`` (0-based), or plain
    ``(start, end, features)`` tuples; a mapping ``{t: features}`` is taken as already per step.
    Steps covered by several events get the union of their features (sorted).
    """
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
        raise ValueError(f"length must be a positive int (the number of time steps), got {length!r}")
    per: dict[int, set[int]] = {}
    if isinstance(culprits, Mapping):
        items = [(t, t, f) for t, f in culprits.items()]
    else:
        items = []
        for i, ev in enumerate(culprits):
            if all(hasattr(ev, a) for a in ("start", "end", "features")):
                items.append((ev.start, ev.end, ev.features))
            else:
                try:
                    start, end, feats = ev
                except (TypeError, ValueError):
                    raise ValueError(
                        f"culprit event {i} is {ev!r}; pass load_smd(...).interpretation or (start, end, features) "
                        "tuples with inclusive 0-based ends"
                    ) from None
                items.append((start, end, feats))
    for start, end, feats in items:
        for b in (start, end):
            if isinstance(b, bool) or not isinstance(b, int | np.integer):
                raise ValueError(f"culprit event ({start!r}, {end!r}): bounds must be whole time-step indices")
        if not 0 <= start <= end < length:
            raise ValueError(
                f"culprit event ({start}, {end}) lies outside the series (steps 0..{length - 1}) or has start > end; "
                "ends are inclusive and 0-based, as load_smd returns them"
            )
        fs = {int(f) for f in feats}
        for t in range(int(start), int(end) + 1):
            per.setdefault(t, set()).update(fs)
    return {t: tuple(sorted(f)) for t, f in sorted(per.items()) if f}


def hit_rate(per_feature_scores: Any, culprits: Any, p: int = 100) -> float | None:
    """HitRate@P% (Su et al., OmniAnomaly, KDD 2019) of per-feature scores against culprit features.

    ``per_feature_scores [T, F]`` (higher = more to blame), ``culprits`` as in
    :func:`culprits_per_point`. For each step ``t`` with a culprit list ``G_t`` (the labelled
    anomalous steps SMD's interpretation files cover), take the top ``floor(P/100 * |G_t|)``
    features by score and count ``|top ∩ G_t| / |G_t|``; average over those steps. ``P`` is a
    whole percentage (100 and 150 are the usual ones). Ties in scores go to the lower feature
    index (stable sort). ``None`` when no step has a culprit list.
    """
    x = _np(per_feature_scores)
    if x.ndim != 2 or x.dtype.kind not in "biuf" or x.size == 0:
        raise ValueError(
            f"per_feature_scores must be a numeric [T, F] array (one score per step and feature), got shape "
            f"{x.shape} and dtype {x.dtype}"
        )
    if not np.isfinite(x).all():
        t, f = (int(v) for v in np.argwhere(~np.isfinite(x))[0])
        raise ValueError(f"per_feature_scores must be finite, found {float(x[t, f])} at step {t}, feature {f}")
    if isinstance(p, bool) or not isinstance(p, int | np.integer) or p <= 0:
        raise ValueError(f"p must be a positive whole percentage (e.g. 100 or 150), got {p!r}")
    num_features = x.shape[1]
    per = culprits_per_point(culprits, x.shape[0])
    hits = []
    for t, g in per.items():
        bad = [f for f in g if not 0 <= f < num_features]
        if bad:
            raise ValueError(
                f"culprit feature {bad[0]} at step {t} is outside 0..{num_features - 1}; features are 0-based "
                "column indices of per_feature_scores (load_smd already converts the file's 1-based numbers)"
            )
        top = np.argsort(-x[t], kind="stable")[: p * len(g) // 100]
        hits.append(len(set(top.tolist()) & set(g)) / len(g))
    return float(np.mean(hits)) if hits else None


# ----------------------------------------------------------------------------- one row

EVALUATE_KEYS: tuple[str, ...] = (
    "name",  # str | None: what was scored (detector, data, entity)
    "threshold_rule",  # "oracle best-F1" when evaluate chose it, else the caller's rule name
    "threshold",  # the threshold used (None when per-step thresholds were given)
    "n_points",  # T
    "n_anomalous_points",  # labelled anomalous steps
    "n_segments",  # labelled segments (events)
    "n_alarms",  # steps with score > threshold
    "precision",  # point-wise, at the threshold
    "recall",
    "f1",
    "best_f1",  # ORACLE: best point-wise F1 over all thresholds
    "best_f1_threshold",
    "pa_precision",  # point-adjusted (PA%K, K = 0), at the threshold
    "pa_recall",
    "pa_f1",
    "best_pa_f1",  # ORACLE: best point-adjusted F1 over all thresholds (the literature's headline)
    "best_pa_f1_threshold",
    "pak_auc",  # area under PA%K F1 for K = 0..100 (x = K/100), at the threshold
    "event_recall",  # fraction of segments with an alarm, at the threshold
    "composite_f1",  # point-wise precision with event-wise recall, at the threshold
    "roc_auc",  # threshold-free
    "pr_auc",  # threshold-free (average precision)
    "n_detected_segments",
    "delay_mean",  # mean over detected segments of (first alarm - segment start), in steps
    "delay_median",
    "false_alarm_events",  # runs of alarms touching no labelled segment
    "hitrate_100",  # attribution, when per_feature_scores and culprits are given
    "hitrate_150",
    "notes",  # why any value is None ("" when none is)
)


def evaluate(
    scores: Any,
    labels: Any,
    threshold: Any = None,
    *,
    name: str | None = None,
    per_feature_scores: Any = None,
    culprits: Any = None,
    threshold_rule: str | None = None,
) -> dict[str, Any]:
    """Every metric of this module for one detector on one series, as one tidy row (a dict).

    ``scores [T]``, ``labels [T]``; ``threshold`` a number, ``[T]`` per-step thresholds, or
    ``None``: then threshold-dependent metrics use the ORACLE best point-wise F1 threshold and the
    row says ``threshold_rule: "oracle best-F1"``. Name any other rule with ``threshold_rule``
    (e.g. ``"POT q=1e-4"``; default ``"given"``). Optional ``per_feature_scores [T, F]`` and
    ``culprits`` (see :func:`hit_rate`) add HitRate@100% and @150%; pass both or neither.

    Keys are :data:`EVALUATE_KEYS`, always all present and in that order, values ``float``,
    ``int``, ``str`` or ``None`` (never NaN), so rows stack into comparable tables
    (``pandas.DataFrame([row, ...])``). ``notes`` explains every ``None``.
    """
    s, lab = _check(scores, labels)
    if (per_feature_scores is None) != (culprits is None):
        raise ValueError("pass both per_feature_scores [T, F] and culprits for HitRate, or neither")
    if per_feature_scores is not None and _np(per_feature_scores).shape[:1] != (len(s),):
        raise ValueError(
            f"per_feature_scores must have T = {len(s)} rows like the scores, got shape {_np(per_feature_scores).shape}"
        )
    notes = []
    best = _best_from_curve(s, lab)
    if threshold is None:
        if threshold_rule is not None:
            raise ValueError("threshold_rule names a given threshold; pass threshold too, or drop threshold_rule")
        th: np.ndarray | float = best.threshold
        rule = "oracle best-F1"
    else:
        th = _check_threshold(threshold, len(s))
        rule = threshold_rule if threshold_rule is not None else "given"
    alarms = s > th
    ranges = label_ranges(lab)
    n_pos = int(lab.sum())
    point = _prf_of(alarms, lab)
    pa = _prf_of(point_adjust(alarms, lab), lab)
    best_pa = _best_from_curve(_pa_scores(s, lab, 0), lab)
    delays = [d for d in detection_delays(s, lab, th) if d is not None]
    if n_pos == 0:
        notes.append("labels hold no anomaly: recall, F1 and their point-adjusted/event forms are undefined (None)")
    if n_pos in (0, len(lab)):
        notes.append("labels are all one class: ROC-AUC and PR-AUC are undefined (None)")
    if ranges and not delays:
        notes.append("no segment detected: detection delays are undefined (None)")
    hr100 = hr150 = None
    if culprits is not None:
        hr100, hr150 = hit_rate(per_feature_scores, culprits, 100), hit_rate(per_feature_scores, culprits, 150)
        if hr100 is None:
            notes.append("no step has a culprit list: HitRate is undefined (None)")
    row = {
        "name": name,
        "threshold_rule": rule,
        "threshold": float(th) if np.ndim(th) == 0 else None,
        "n_points": len(s),
        "n_anomalous_points": n_pos,
        "n_segments": len(ranges),
        "n_alarms": int(alarms.sum()),
        "precision": point.precision,
        "recall": point.recall,
        "f1": point.f1,
        "best_f1": best.f1,
        "best_f1_threshold": best.threshold,
        "pa_precision": pa.precision,
        "pa_recall": pa.recall,
        "pa_f1": pa.f1,
        "best_pa_f1": best_pa.f1,
        "best_pa_f1_threshold": best_pa.threshold,
        "pak_auc": pa_k_auc(s, lab, th),
        "event_recall": event_recall(s, lab, th),
        "composite_f1": composite_f1(s, lab, th),
        "roc_auc": roc_auc(s, lab),
        "pr_auc": pr_auc(s, lab),
        "n_detected_segments": len(delays),
        "delay_mean": float(np.mean(delays)) if delays else None,
        "delay_median": float(np.median(delays)) if delays else None,
        "false_alarm_events": false_alarm_events(s, lab, th),
        "hitrate_100": hr100,
        "hitrate_150": hr150,
        "notes": "; ".join(notes),
    }
    assert tuple(row) == EVALUATE_KEYS  # keep the documented order honest
    assert not any(isinstance(v, float) and math.isnan(v) for v in row.values())
    return row
