"""Evaluation tables for service risk models: detection and root cause, each with bootstrap intervals.

Everything here takes arrays (risk, labels, scores, rankings) and returns plain ``dict`` rows with
stable keys, never NaN, so notebooks stack them into tables and write them to ``metrics.json``.
Three tables, one rule each:

- **Per-service risk detection** (:func:`detection_row`): risk ``[B, N]`` of every service at the
  last step of each window against the labels ``[B, N]``. PR-AUC over all (window, service) pairs,
  point-wise F1 and **event-wise** precision, recall and F1 at a threshold chosen on validation
  windows (:func:`validation_threshold`, the rule of :func:`~tgad_lite.temporal.train_risk_model`:
  the best F1 over the validation pairs, alarm = ``risk > threshold``), and the best F1 over all
  thresholds on the test pairs, an ORACLE (it reads the test labels), under a key that says so.
- **System-level incident detection** (:func:`system_row`): one score per step (a cascade score,
  the largest z-score) against ``[T]`` incident labels: event recall, event precision, detection
  delay, false-alarm events.
- **Root cause** (:func:`rootcause_rows`, :func:`paired_rootcause`): AC@k and Avg@k of rankings per
  incident, and the paired difference of two methods on the same incidents.

Events (per service)
--------------------
For service ``v``, its labelled *segments* are the maximal runs of 1 in ``labels[:, v]`` and its
*alarm runs* the maximal runs of ``risk[:, v] > threshold``, over windows in time order (rows are
consecutive steps, as :func:`~tgad_lite.data.microservices.make_windows` with stride 1 gives them).
A segment is *detected* when an alarm falls inside it; an alarm run is *true* when it overlaps a
segment of the same service. Pooled over services::

    event recall    = detected segments / segments
    event precision = true alarm runs / alarm runs       (0 without alarms)
    event F1        = 2 P R / (P + R)                    (0 when P + R = 0)

Unlike point-wise F1, a long incident counts once and a model is not paid for flagging every step of
it; unlike point-adjusted F1 (notebook 04), false alarms count per run, not per step, so they are
not drowned by the steps of long segments.

Bootstrap units
---------------
Windows of one series are not independent (neighbouring windows share steps and incidents), so
resampling (window, service) pairs would make intervals far too narrow. The detection table
resamples *incident blocks* (:func:`incident_blocks`): the steps are cut halfway between
consecutive incident starts, so each block holds one incident with the quiet steps around it, and a
resample is a multiset of blocks. PR-AUC of a resample is the average precision with every pair
weighted by how often its block was drawn (the same as concatenating the drawn blocks;
``tests/test_temporal_evaluate.py`` checks it). Segments and alarm runs belong to the block of
their first step. The system table resamples incidents (event recall), alarm runs (event precision)
and detected incidents (delay); the root-cause tables resample incidents (paired: the same incidents
for both methods). All intervals are percentile intervals from
:mod:`tgad_lite.metrics.bootstrap`, seeded.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tgad_lite.intervals import check_labels, label_ranges
from tgad_lite.metrics.bootstrap import bootstrap_ci, paired_bootstrap
from tgad_lite.metrics.detection import best_f1, detection_delays, false_alarm_events, pr_auc, precision_recall_f1
from tgad_lite.metrics.rootcause import avg_at_k_per_incident, hits_at_k, rootcause_report

__all__ = [
    "DETECTION_KEYS",
    "ROOTCAUSE_KEYS",
    "SYSTEM_KEYS",
    "event_counts",
    "event_prf",
    "detection_row",
    "incident_blocks",
    "paired_rootcause",
    "rootcause_rows",
    "system_row",
    "validation_threshold",
]

DETECTION_KEYS = (
    "name",
    "threshold",
    "n_pairs",
    "positive_rate",
    "n_blocks",
    "pr_auc",
    "pr_auc_low",
    "pr_auc_high",
    "precision",
    "recall",
    "f1",
    "event_segments",
    "event_alarm_runs",
    "event_precision",
    "event_recall",
    "event_f1",
    "event_f1_low",
    "event_f1_high",
    "oracle_best_f1",
)
SYSTEM_KEYS = (
    "name",
    "threshold",
    "n_steps",
    "n_events",
    "n_detected",
    "event_recall",
    "event_recall_low",
    "event_recall_high",
    "n_alarm_runs",
    "event_precision",
    "event_precision_low",
    "event_precision_high",
    "event_f1",
    "delay_mean",
    "delay_mean_low",
    "delay_mean_high",
    "false_alarm_events",
    "pr_auc",
)
ROOTCAUSE_KEYS = (
    "method",
    "n_incidents",
    "AC@1",
    "AC@1_low",
    "AC@1_high",
    "AC@3",
    "AC@3_low",
    "AC@3_high",
    "Avg@5",
    "Avg@5_low",
    "Avg@5_high",
)


def _settings(n_resamples: Any, level: Any, seed: Any) -> tuple[int, float, int]:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an int >= 1 (1000 is a good default), got {n_resamples!r}")
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise ValueError(f"level must be a number in (0, 1), e.g. 0.95, got {level!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    return int(n_resamples), float(level), int(seed)


def _threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not np.isfinite(threshold):
        raise ValueError(
            f"threshold must be a finite number (e.g. validation_threshold(val_risk, val_labels)), got {threshold!r}"
        )
    return float(threshold)


def _risk_labels(risk: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``risk [B, N]`` float64 (finite) and ``labels [B, N]`` int8 (0/1), checked against each other."""
    r = np.asarray(risk.detach().cpu().numpy() if hasattr(risk, "detach") else risk)
    if r.dtype.kind not in "biuf" or r.ndim != 2 or 0 in r.shape:
        raise ValueError(
            f"risk must be numbers shaped [B, N] (windows, services), got {r.dtype} {r.shape}; "
            "a single service's scores are risk[:, None]"
        )
    r = r.astype(np.float64)
    if not np.isfinite(r).all():
        raise ValueError(f"risk holds {int((~np.isfinite(r)).sum())} non-finite values; fix the model or its inputs")
    lab = check_labels(labels, length=r.shape[0])
    if lab.shape != r.shape:
        raise ValueError(f"labels must be [B, N] = {r.shape} like risk, got {lab.shape}")
    return r, lab


def _blocks(blocks: Any, length: int) -> np.ndarray:
    b = np.asarray(blocks)
    if b.shape != (length,) or (b.size and b.dtype.kind not in "iu"):
        raise ValueError(
            f"blocks must be [B] = ({length},) int block ids, one per window (incident_blocks(windows.t_end, starts)), "
            f"got {b.dtype} {b.shape}"
        )
    if b.size and (b.min() < 0 or np.any(np.diff(b) < 0)):
        raise ValueError(
            "blocks must be non-negative and non-decreasing: windows in time order, as incident_blocks gives"
        )
    return b.astype(np.int64)


def validation_threshold(risk: Any, labels: Any) -> float:
    """The alarm threshold of every model in a table: the best F1 over the VALIDATION pairs.

    ``risk [B, N]`` (or ``[B]``) on validation windows, ``labels`` alike; alarm = ``risk >
    threshold``. The rule :func:`~tgad_lite.temporal.train_risk_model` uses for the temporal GAT,
    so a baseline's threshold is chosen exactly as the model's.
    """
    r = np.asarray(risk, dtype=np.float64).reshape(-1)
    lab = check_labels(np.asarray(labels).reshape(-1), length=r.size)
    if not 0 < int(lab.sum()) < lab.size:
        raise ValueError("the validation labels must hold positive and negative pairs to choose a threshold")
    return float(best_f1(r, lab).threshold)


def incident_blocks(steps: Any, starts: Any) -> np.ndarray:
    """``[B]`` int64 block id of each step: the bootstrap units of the detection table (module docstring).

    ``steps [B]``: the series step of each row, non-decreasing (``windows.t_end``); ``starts [I]``: incident
    start steps. Only starts inside ``[steps[0], steps[-1]]`` count; the cuts lie halfway between
    consecutive ones (the later half-step goes to the later incident), so block ``i`` holds the ``i``-th
    incident's start. Without any start inside, every step is in block 0.
    """
    t = np.asarray(steps)
    if t.ndim != 1 or t.size == 0 or t.dtype.kind not in "iu" or np.any(np.diff(t) < 0):
        raise ValueError(
            f"steps must be a non-empty, non-decreasing 1-D int array (windows.t_end), got {t.dtype} {t.shape}"
        )
    s = np.asarray(starts)
    if s.ndim != 1 or (s.size and s.dtype.kind not in "iu"):
        raise ValueError(f"starts must be a 1-D int array of incident start steps, got {s.dtype} {s.shape}")
    s = np.unique(s[(s >= t[0]) & (s <= t[-1])])
    cuts = (s[:-1] + s[1:] + 1) // 2  # first step of blocks 1 .. len(s) - 1
    return np.searchsorted(cuts, t, side="right").astype(np.int64)


def event_counts(alarms: Any, labels: Any, blocks: Any = None) -> np.ndarray:
    """Per block ``[K, 4]`` int64: segments, detected segments, alarm runs, true alarm runs.

    ``alarms [B, N]`` bool and ``labels [B, N]`` 0/1, rows consecutive steps in time order; ``blocks [B]``
    (default all 0): each segment and alarm run counts in the block of its first row. See the module
    docstring for the definitions; :func:`event_prf` turns counts into precision, recall and F1.
    """
    a = np.asarray(alarms)
    if a.dtype != np.bool_ or a.ndim != 2:
        raise ValueError(f"alarms must be bool [B, N], got {a.dtype} {a.shape}; e.g. risk > threshold")
    lab = check_labels(labels, length=a.shape[0])
    if lab.shape != a.shape:
        raise ValueError(f"labels must be [B, N] = {a.shape} like alarms, got {lab.shape}")
    b = np.zeros(a.shape[0], dtype=np.int64) if blocks is None else _blocks(blocks, a.shape[0])
    out = np.zeros((int(b.max()) + 1 if b.size else 1, 4), dtype=np.int64)
    zero = np.zeros((1, a.shape[1]), dtype=np.int64)
    alarm_sum = np.concatenate([zero, np.cumsum(a, axis=0)])  # [B + 1, N]: alarms in rows [s, e] = c[e+1] - c[s]
    label_sum = np.concatenate([zero, np.cumsum(lab, axis=0, dtype=np.int64)])
    for v in range(a.shape[1]):
        for s, e in label_ranges(lab[:, v]):
            out[b[s], 0] += 1
            out[b[s], 1] += int(alarm_sum[e + 1, v] - alarm_sum[s, v] > 0)
        for s, e in label_ranges(a[:, v].astype(np.int8)):
            out[b[s], 2] += 1
            out[b[s], 3] += int(label_sum[e + 1, v] - label_sum[s, v] > 0)
    return out


def event_prf(counts: Any) -> tuple[float, float | None, float | None]:
    """``(precision, recall, f1)`` from pooled :func:`event_counts` (``[4]`` or ``[K, 4]``, summed).

    Precision is 0 without alarm runs; recall and F1 are None without segments (nothing to find).
    """
    c = np.asarray(counts, dtype=np.int64)
    if c.shape[-1:] != (4,):
        raise ValueError(f"counts must be [4] or [K, 4] (from event_counts), got shape {c.shape}")
    segments, detected, runs, true = c.reshape(-1, 4).sum(axis=0).tolist()
    precision = true / runs if runs else 0.0
    if not segments:
        return float(precision), None, None
    recall = detected / segments
    return (
        float(precision),
        float(recall),
        float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
    )


def _f1_of_counts(counts: np.ndarray) -> np.ndarray:
    """Event F1 of ``counts [..., 4]`` (pooled), vectorised over the leading axes."""
    segments, detected, runs, true = np.moveaxis(counts.astype(np.float64), -1, 0)
    precision = np.divide(true, runs, out=np.zeros_like(true), where=runs > 0)
    recall = np.divide(detected, segments, out=np.full_like(detected, np.nan), where=segments > 0)
    total = precision + recall
    return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1.0), 0.0)


def _weighted_pr_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Average precision with each pair counted ``weights`` times (scikit-learn's ``sample_weight``),
    which equals the average precision of the pairs repeated that often; NaN when the pairs drawn hold
    one class only."""
    from sklearn.metrics import average_precision_score

    pos = float(weights[labels == 1].sum())
    if pos == 0 or pos == float(weights.sum()):
        return float("nan")
    keep = weights > 0
    return float(average_precision_score(labels[keep], scores[keep], sample_weight=weights[keep]))


def _interval(ci: Any) -> tuple[float, float]:
    return float(ci.low), float(ci.high)


def detection_row(
    name: str,
    risk: Any,
    labels: Any,
    threshold: float,
    blocks: Any = None,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """One row of the per-service detection table (keys :data:`DETECTION_KEYS`).

    ``risk [B, N]`` and ``labels [B, N]`` on the test windows in time order; ``threshold`` chosen on
    validation (:func:`validation_threshold`); ``blocks [B]`` the bootstrap units
    (:func:`incident_blocks`; None: one block, so the intervals have zero width). PR-AUC (average
    precision over all pairs) and event F1 get percentile intervals over blocks (every block must hold
    a positive pair; the event-F1 interval is None unless every block holds a labelled run); ``precision``,
    ``recall``, ``f1`` are point-wise at the threshold; ``oracle_best_f1`` is the best point-wise F1
    over all thresholds on these labels, an ORACLE (upper bound, not a result). ``None`` where a value
    is undefined (no positive pair: no PR-AUC and no recall).
    """
    n_resamples, level, seed = _settings(n_resamples, level, seed)
    r, lab = _risk_labels(risk, labels)
    th = _threshold(threshold)
    b = np.zeros(r.shape[0], dtype=np.int64) if blocks is None else _blocks(blocks, r.shape[0])
    n_blocks = int(b.max()) + 1
    flat_r, flat_l = r.reshape(-1), lab.reshape(-1)
    point = precision_recall_f1(flat_r, flat_l, th)
    counts = event_counts(r > th, lab, b)  # [n_blocks, 4]
    ev_p, ev_r, ev_f1 = event_prf(counts)
    block_ids = np.arange(n_blocks, dtype=np.float64)
    pair_block = np.repeat(b, r.shape[1])
    auc = pr_auc(flat_r, flat_l)
    auc_low = auc_high = None
    if auc is not None:
        empty = np.setdiff1d(np.arange(n_blocks), pair_block[flat_l == 1])
        if empty.size:
            raise ValueError(
                f"block(s) {empty[:5].tolist()} hold no positive pair, so a resample of them has no PR-AUC; "
                "cut blocks around incidents (incident_blocks(windows.t_end, starts))"
            )

        def resampled_auc(sample: np.ndarray) -> float:
            drawn = np.bincount(sample.astype(np.int64), minlength=n_blocks).astype(np.float64)
            return _weighted_pr_auc(flat_r, flat_l, drawn[pair_block])

        ci = bootstrap_ci(block_ids, resampled_auc, n_resamples, level, seed)
        auc_low, auc_high = _interval(ci)
    f1_low = f1_high = None
    if ev_f1 is not None and (counts[:, 0] > 0).all():  # every resample then has segments: F1 is defined

        def resampled_f1(sample: np.ndarray, axis: int = 0) -> np.ndarray:
            # [K] -> [K, 4] summed over axis 0; the bootstrap's [R, K] with axis=1 -> [R, 4]
            return _f1_of_counts(counts[sample.astype(np.int64)].sum(axis=axis))

        f1_low, f1_high = _interval(bootstrap_ci(block_ids, resampled_f1, n_resamples, level, seed))
    # Otherwise some block holds no labelled run, so a resample of such blocks has no event recall: the
    # interval is left undefined (None) rather than guessed.
    row = {
        "name": name,
        "threshold": th,
        "n_pairs": int(flat_r.size),
        "positive_rate": float(flat_l.mean()),
        "n_blocks": n_blocks,
        "pr_auc": auc,
        "pr_auc_low": auc_low,
        "pr_auc_high": auc_high,
        "precision": float(point.precision),
        "recall": point.recall,
        "f1": point.f1,
        "event_segments": int(counts[:, 0].sum()),
        "event_alarm_runs": int(counts[:, 2].sum()),
        "event_precision": ev_p,
        "event_recall": ev_r,
        "event_f1": ev_f1,
        "event_f1_low": f1_low,
        "event_f1_high": f1_high,
        "oracle_best_f1": best_f1(flat_r, flat_l).f1,
    }
    assert tuple(row) == DETECTION_KEYS
    return row


def system_row(
    name: str,
    score: Any,
    labels: Any,
    threshold: float,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """One row of the system-level table (keys :data:`SYSTEM_KEYS`): ``score [T]`` as an incident detector.

    ``labels [T]`` 1 while an incident is active (:func:`~tgad_lite.anomaly.cascade.incident_labels`),
    alarm = ``score > threshold`` (chosen on validation steps, the same rule for every detector).
    ``event_recall``: incidents with an alarm inside / incidents (interval over incidents);
    ``event_precision``: alarm runs overlapping an incident / alarm runs (interval over alarm runs;
    0 without alarms); ``delay_mean``: steps from an incident's start to its first alarm, over the
    detected incidents (interval over them); ``false_alarm_events``: alarm runs touching no incident.
    """
    n_resamples, level, seed = _settings(n_resamples, level, seed)
    s = np.asarray(score, dtype=np.float64)
    th = _threshold(threshold)
    lab = check_labels(labels, length=s.shape[0] if s.ndim else None)
    if s.ndim != 1 or lab.shape != s.shape:
        raise ValueError(f"score and labels must both be [T], got {s.shape} and {lab.shape}")
    delays = detection_delays(s, lab, th)
    detected = np.array([d is not None for d in delays], dtype=np.float64)
    alarms = (s > th).astype(np.int8)
    runs = label_ranges(alarms)
    label_sum = np.concatenate([[0], np.cumsum(lab, dtype=np.int64)])
    true_runs = np.array([float(label_sum[e + 1] - label_sum[st] > 0) for st, e in runs])
    recall = rec_low = rec_high = None
    if detected.size:
        recall, rec_low, rec_high = bootstrap_ci(detected, np.mean, n_resamples, level, seed)
    precision, prec_low, prec_high = 0.0, None, None
    if true_runs.size:
        precision, prec_low, prec_high = bootstrap_ci(true_runs, np.mean, n_resamples, level, seed)
    found = np.array([d for d in delays if d is not None], dtype=np.float64)
    delay = d_low = d_high = None
    if found.size:
        delay, d_low, d_high = bootstrap_ci(found, np.mean, n_resamples, level, seed)
    f1 = None
    if recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    row = {
        "name": name,
        "threshold": th,
        "n_steps": int(s.size),
        "n_events": int(detected.size),
        "n_detected": int(detected.sum()),
        "event_recall": recall,
        "event_recall_low": rec_low,
        "event_recall_high": rec_high,
        "n_alarm_runs": len(runs),
        "event_precision": float(precision),
        "event_precision_low": prec_low,
        "event_precision_high": prec_high,
        "event_f1": f1,
        "delay_mean": delay,
        "delay_mean_low": d_low,
        "delay_mean_high": d_high,
        "false_alarm_events": false_alarm_events(s, lab, th),
        "pr_auc": pr_auc(s, lab),
    }
    assert tuple(row) == SYSTEM_KEYS
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()}


def rootcause_rows(
    rankings: Mapping[str, Sequence[Any]],
    truths: Any,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per method (keys :data:`ROOTCAUSE_KEYS`): AC@1, AC@3, Avg@5 with intervals over incidents.

    ``rankings``: ``{method: one ranking per incident}`` (``RootCauseRanking`` or id lists, best first),
    every method on the same incidents, in the order of ``truths [I]`` (the true roots). Every method
    gets the same resampled incidents (the same ``seed``), so their intervals are comparable.
    """
    n_resamples, level, seed = _settings(n_resamples, level, seed)
    t = np.asarray(truths)
    rows = []
    for method, ranks in rankings.items():
        if len(ranks) != t.size:
            raise ValueError(f"{method!r} has {len(ranks)} rankings for {t.size} incidents; rank the same incidents")
        report = rootcause_report(ranks, t, ks=(1, 3), avg_k=5, n_resamples=n_resamples, level=level, seed=seed)
        row: dict[str, Any] = {"method": method, "n_incidents": int(t.size)}
        for key in ("AC@1", "AC@3", "Avg@5"):
            row[key], row[f"{key}_low"], row[f"{key}_high"] = (float(v) for v in report[key])
        assert tuple(row) == ROOTCAUSE_KEYS
        rows.append(row)
    return rows


def paired_rootcause(
    a: Sequence[Any],
    b: Sequence[Any],
    truths: Any,
    *,
    metric: str = "AC@1",
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Paired bootstrap of ``metric(a) - metric(b)`` over the same incidents (``metric``: ``"AC@k"`` or ``"Avg@k"``).

    Returns ``{"metric", "a", "b", "difference", "low", "high", "p_a_le_b", "n_incidents"}``:
    both methods' values, the difference, its percentile interval, and the fraction of resamples in
    which ``a`` is not better (a one-sided bootstrap p-value for "a beats b").
    """
    n_resamples, level, seed = _settings(n_resamples, level, seed)
    kind, _, k = metric.partition("@")
    if kind not in ("AC", "Avg") or not k.isdigit() or int(k) < 1:
        raise ValueError(f"metric must be 'AC@k' or 'Avg@k' with k >= 1, e.g. 'AC@1', got {metric!r}")
    per = hits_at_k if kind == "AC" else avg_at_k_per_incident
    ua, ub = per(a, truths, int(k)), per(b, truths, int(k))
    pb = paired_bootstrap(ua, ub, np.mean, n_resamples, level, seed)
    return {
        "metric": metric,
        "a": float(ua.mean()),
        "b": float(ub.mean()),
        "difference": float(pb.difference),
        "low": float(pb.low),
        "high": float(pb.high),
        "p_a_le_b": float(pb.frac_a_le_b),
        "n_incidents": int(ua.size),
    }
