"""Attribution: which features a detector blames for each anomaly event it detected.

A detector with per-feature scores ``per_feature [T, F]`` (higher = that feature is more anomalous at
that step; :class:`tgad_lite.mtad.MTADGAT`, the magnitude and PCA baselines have them) says not only
*when* something is wrong but *where*. This module turns its alarms into events and ranks culprit
features per event:

- :func:`detected_events`: the maximal runs of alarms of ``scores [T]`` at a threshold, under the
  project's alarm rule ``score > threshold`` (:func:`tgad_lite.metrics.detection.alarms_at`), as
  ``(start, end)`` pairs with an **inclusive** end (the :mod:`tgad_lite.intervals` convention);
- :func:`event_culprits`: for each event, the ``top_k`` features by their **mean** per-feature
  score over the event's steps, with those means and each feature's share of the event's total.

Scoring attribution against ground truth (HitRate@P%, SMD's interpretation labels) is
:func:`tgad_lite.metrics.detection.hit_rate`; it works per labelled step, this module per detected
event, which is what an operator reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tgad_lite.intervals import label_ranges
from tgad_lite.metrics.detection import alarms_at

__all__ = ["EventCulprits", "detected_events", "event_culprits"]


@dataclass(frozen=True)
class EventCulprits:
    """The features blamed for one event, most to blame first.

    ``start``, ``end``: the event's steps (inclusive end). ``features``: the ``top_k`` feature
    indices (0-based columns of ``per_feature``), ranked by ``scores``, their mean per-feature
    score over the event's steps. ``names``: those features' names. ``shares``: each one's
    fraction of the event's total (the sum over *all* features of their means, i.e. the mean total
    score over the event); ``None`` when a mean is negative or the total is 0, where a fraction of a
    total means nothing. ``event_total``: that total.
    """

    start: int
    end: int
    features: tuple[int, ...]
    names: tuple[str, ...]
    scores: tuple[float, ...]
    shares: tuple[float, ...] | None
    event_total: float

    @property
    def length(self) -> int:
        """Number of steps in the event."""
        return self.end - self.start + 1


def detected_events(scores: Any, threshold: Any) -> list[tuple[int, int]]:
    """Runs of alarms of ``scores [T]`` as ``[(start, end_inclusive), ...]`` in time order.

    Step ``t`` alarms when ``scores[t] > threshold`` (strictly greater; ``threshold`` a number or
    ``[T]`` per-step values), the rule every threshold of :mod:`tgad_lite.anomaly.threshold` and every
    metric of :mod:`tgad_lite.metrics.detection` use, so these events are the alarms those metrics
    score. Consecutive alarming steps form one event; one silent step splits two. Non-finite scores or
    thresholds, a threshold of the wrong length and 2-D scores are refused with a ``ValueError``.
    """
    return label_ranges(alarms_at(scores, threshold))


def _check_per_feature(per_feature: Any) -> np.ndarray:
    if hasattr(per_feature, "detach") and hasattr(per_feature, "cpu"):  # a torch tensor, without importing torch
        per_feature = per_feature.detach().cpu().numpy()
    x = np.asarray(per_feature)
    if x.dtype.kind not in "biuf":
        raise ValueError(
            f"per_feature must hold numbers, got dtype {x.dtype}; pass the detector's per-feature scores "
            "(e.g. MTADGAT.score_features(x)) as a float array"
        )
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        hint = "; for one feature use per_feature[:, None]" if x.ndim == 1 else ""
        raise ValueError(
            f"per_feature must be 2-D [T, F] (one score per time step and feature) with T, F > 0, "
            f"got shape {x.shape}{hint}"
        )
    x = x.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        t, f = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"per_feature must be finite, found {float(x[t, f])} at step {t}, feature {f} "
            f"({int(bad.sum())} non-finite in all); fix the detector or replace them (np.nan_to_num) first"
        )
    return x


def _check_events(events: Any, length: int) -> list[tuple[int, int]]:
    if isinstance(events, str | bytes) or not isinstance(events, Sequence | np.ndarray):
        raise ValueError(
            f"events must be a list of (start, end_inclusive) pairs, got {type(events).__name__}; "
            "get them from detected_events(scores, threshold)"
        )
    out = []
    for i, item in enumerate(events):
        try:
            start, end = item
        except (TypeError, ValueError):
            raise ValueError(f"event {i} is {item!r}; each event must be a (start, end_inclusive) pair") from None
        for bound in (start, end):
            if isinstance(bound, bool | np.bool_) or not isinstance(bound, int | np.integer):
                raise ValueError(f"event {i} {item!r}: bounds must be whole time-step indices, got {bound!r}")
        if start > end:
            raise ValueError(f"event {i} {item!r}: start > end; events are (start, end_inclusive) with start <= end")
        if start < 0 or end >= length:
            raise ValueError(
                f"event {i} {item!r} lies outside the series: per_feature has steps 0..{length - 1}; "
                "events must come from scores of the same series as per_feature"
            )
        out.append((int(start), int(end)))
    return out


def _check_names(feature_names: Sequence[str] | None, n_features: int) -> list[str]:
    if feature_names is None:
        return [f"feature {f}" for f in range(n_features)]
    if isinstance(feature_names, str) or not isinstance(feature_names, Sequence | np.ndarray):
        raise ValueError(f"feature_names must be a list of {n_features} names, got {type(feature_names).__name__}")
    names = [str(n) for n in feature_names]
    if len(names) != n_features:
        raise ValueError(
            f"feature_names has {len(names)} names but per_feature has {n_features} features; "
            "pass one name per column, in column order"
        )
    return names


def event_culprits(
    per_feature: Any,
    events: Sequence[tuple[int, int]],
    top_k: int = 3,
    feature_names: Sequence[str] | None = None,
) -> list[EventCulprits]:
    """The ``top_k`` culprit features of each event, from per-feature scores ``per_feature [T, F]``.

    ``events``: ``(start, end_inclusive)`` pairs inside ``0..T-1`` (e.g. :func:`detected_events` of
    the same detector's total scores). Returns one :class:`EventCulprits` per event, in the given
    order; ``top_k`` larger than ``F`` returns all ``F`` features.

    Ranking: each feature's **mean** per-feature score over the event's steps, highest first. Within
    one event the mean and the sum rank alike (every feature has the same number of steps); the mean
    keeps the scores on the per-step scale, so events of different lengths can be compared. The mean,
    not the maximum, because one noisy step should not decide the blame: a culprit is a feature that
    stays anomalous through the event. Ties (equal means, e.g. identical columns) go to the lower
    feature index (a stable sort), the rule of :func:`tgad_lite.metrics.detection.hit_rate`.

    Raises ``ValueError`` for non-2-D or non-finite ``per_feature``, an event outside the series or
    with ``start > end``, ``top_k < 1`` or not an int, and ``feature_names`` of the wrong length.
    """
    x = _check_per_feature(per_feature)
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1 (how many features to blame per event), got {top_k!r}")
    names = _check_names(feature_names, x.shape[1])
    checked = _check_events(events, x.shape[0])
    out = []
    for start, end in checked:
        # A plain mean per event (not prefix sums), so equal columns give exactly equal means and tie.
        means = x[start : end + 1].mean(axis=0)  # [F]
        order = np.argsort(-means, kind="stable")[: int(top_k)]
        total = float(means.sum())
        shares = None if (means < 0).any() or total == 0 else tuple(float(means[f] / total) for f in order)
        out.append(
            EventCulprits(
                start=start,
                end=end,
                features=tuple(int(f) for f in order),
                names=tuple(names[f] for f in order),
                scores=tuple(float(means[f]) for f in order),
                shares=shares,
                event_total=total,
            )
        )
    return out
