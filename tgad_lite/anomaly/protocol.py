"""Evaluation protocol: what is fitted on which data, and over which entities a metric is taken.

Two choices change published anomaly-detection numbers as much as the detector does, so this
module makes both explicit:

- **Normalisation fitted on training data only.** :func:`fit_normaliser` learns min-max or
  z-score statistics from ``train [T, F]`` and applies them unchanged to test data; fitting a
  scaler on the test series leaks the test distribution (a test excursion would be squeezed back
  into ``[0, 1]``).
- **Per entity or concatenated.** Data sets such as MSL, SMAP (channels) and SMD (machines) hold
  several independent series ("entities"). :func:`evaluate_per_entity` scores each entity on its
  own and averages the rows (as the published per-trace tables do); :func:`evaluate_concatenated`
  joins all entities end to end and scores once with one threshold (as OmniAnomaly and MTAD-GAT
  report MSL and SMAP). Every row these return carries a ``"protocol"`` key that says which, e.g.
  ``"per-entity mean (27 channels)"`` or ``"concatenated (27 channels)"``, so two numbers measured
  differently are never put side by side unlabelled.

The metric itself is a parameter, ``evaluate_fn(scores [T], labels [T]) -> dict``
(for instance :func:`tgad_lite.metrics.detection.evaluate`); this module imports no metric and
no model, only numpy.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tgad_lite.intervals import check_labels

__all__ = [
    "Normaliser",
    "check_series",
    "cross_fit_choice",
    "evaluate_concatenated",
    "evaluate_entities",
    "evaluate_per_entity",
    "fit_normaliser",
    "split_entities",
]

NORMALISER_METHODS = ("minmax", "zscore")
# evaluate_fn(scores, labels) -> row, or evaluate_fn(scores, labels, threshold) -> row with per-entity thresholds.
EvaluateFn = Callable[..., Mapping[str, Any]]
# Keys this module writes into every row; a metric row that already has one is refused, not overwritten.
PROTOCOL_KEYS = ("protocol", "entities")


def _to_numpy(a: Any) -> np.ndarray:
    # Duck-typed so torch tensors (on any device) work without importing torch here.
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def check_series(x: Any, name: str = "x", n_features: int | None = None, min_length: int = 1) -> np.ndarray:
    """``x`` (``[T, F]``: array, nested list or tensor of real numbers) as a float64 array ``[T, F]``.

    Raises ``ValueError`` naming ``name`` and the fix when ``x`` is not 2-D, has no features or
    fewer than ``min_length`` time steps, is not real numbers (bool, complex, strings), holds NaN
    or inf (with the first position), or has a feature count other than ``n_features`` (the
    count a detector or normaliser was fitted on). The input is never modified.
    """
    arr = _to_numpy(x)
    if arr.dtype.kind not in "iuf":
        raise ValueError(
            f"{name} must hold real numbers, got dtype {arr.dtype}; convert it, e.g. np.asarray({name}, dtype=float)"
        )
    if arr.ndim != 2:
        hint = f"; for one feature use {name}[:, None]" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D [T, F] (time steps x features), got shape {arr.shape}{hint}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {arr.shape}); pass at least one column")
    if arr.shape[0] < min_length:
        raise ValueError(
            f"{name} has {arr.shape[0]} time steps, fewer than the {min_length} needed; pass a longer series"
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features but the model was fitted on {n_features}; "
            "pass the same columns as the training data"
        )
    out = arr.astype(np.float64)  # always a copy, so callers' arrays are never touched
    bad = ~np.isfinite(out)
    if bad.any():
        t, f = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} has {int(bad.sum())} non-finite values (first {arr[t, f]!r} at step {t}, feature {f}); "
            "fill or drop them before fitting or scoring"
        )
    return out


@dataclass(frozen=True)
class Normaliser:
    """Per-feature affine map fitted on training data: ``(x - offset) / scale``, then optional clip.

    ``offset [F]`` and ``scale [F]`` (float64) are the training minimum and range (``"minmax"``:
    training data maps to ``[0, 1]``) or mean and standard deviation (``"zscore"``). A feature
    that is constant in training has ``scale = 1`` (as scikit-learn's scalers do), so it maps to
    0 on training data and a test change of that feature shows up in its raw units instead of
    dividing by zero. ``clip = (lo, hi)`` clips the transformed values; ``None`` (the default)
    keeps values outside the training range, since how far a test point leaves that range is
    exactly what a detector should see. Build one with :func:`fit_normaliser`.
    """

    method: str
    offset: np.ndarray
    scale: np.ndarray
    clip: tuple[float, float] | None = None

    @property
    def n_features(self) -> int:
        return int(self.offset.shape[0])

    def transform(self, x: Any, name: str = "x") -> np.ndarray:
        """``x [T, F]`` normalised with the training statistics, float64 ``[T, F]`` (a new array)."""
        out = (check_series(x, name, n_features=self.n_features) - self.offset) / self.scale
        if self.clip is not None:
            np.clip(out, self.clip[0], self.clip[1], out=out)
        return out

    __call__ = transform


def fit_normaliser(
    train: Any,
    method: Literal["minmax", "zscore"] = "minmax",
    clip: tuple[float, float] | None = None,
) -> Normaliser:
    """Fit a :class:`Normaliser` on ``train [T, F]`` only; apply it to train and test alike.

    ``method``: ``"minmax"`` (training min to 0, max to 1) or ``"zscore"`` (training mean 0,
    standard deviation 1). Constant training features get ``scale = 1`` (see
    :class:`Normaliser`). ``clip``: ``None`` keeps test values outside the training range;
    ``(lo, hi)`` clips every transformed value into ``[lo, hi]`` (e.g. ``(-1.0, 2.0)`` bounds a
    min-max test series to one training range either side).
    """
    if method not in NORMALISER_METHODS:
        raise ValueError(f"method must be one of {NORMALISER_METHODS}, got {method!r}")
    if clip is not None:
        ok = isinstance(clip, Sequence) and len(clip) == 2
        ok = ok and all(isinstance(c, numbers.Real) and not isinstance(c, bool) and math.isfinite(c) for c in clip)
        if not ok or clip[0] >= clip[1]:
            raise ValueError(f"clip must be None or a pair (lo, hi) of finite numbers with lo < hi, got {clip!r}")
        clip = (float(clip[0]), float(clip[1]))
    x = check_series(train, "train")
    if method == "minmax":
        offset = x.min(axis=0)
        scale = x.max(axis=0) - offset
    else:
        offset = x.mean(axis=0)
        scale = x.std(axis=0)
    # Relative tolerance: the mean of identical float32 values can differ from them by rounding,
    # leaving a spread of ~1e-16 of their size that must still count as constant.
    constant = scale <= 1e-12 * np.maximum(1.0, np.abs(offset))
    scale = np.where(constant, 1.0, scale)
    return Normaliser(method=method, offset=offset, scale=scale, clip=clip)


def split_entities(
    scores: Any, labels: Any, boundaries: Any, names: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Cut concatenated ``scores [T]`` and ``labels [T]`` back into entities.

    ``boundaries [C]`` is the row where each entity starts (the first is 0, strictly increasing,
    as :class:`tgad_lite.data.telemanom.TelemanomData` gives ``test_boundaries``); ``names`` the
    ``C`` entity names in the same order. Returns ``{name: (scores [T_c], labels [T_c])}`` in
    that order, ready for :func:`evaluate_per_entity`.
    """
    s, lab = _check_pair(scores, labels, "scores")
    b = _to_numpy(boundaries)
    if b.ndim != 1 or b.size == 0 or b.dtype.kind not in "iu":
        raise ValueError(f"boundaries must be a 1-D integer array [C] of entity start rows, got {b.dtype} {b.shape}")
    if len(names) != b.size:
        raise ValueError(f"{len(names)} names for {b.size} boundaries; pass one name per entity")
    if b[0] != 0 or (np.diff(b) <= 0).any() or b[-1] >= s.shape[0]:
        raise ValueError(
            f"boundaries must start at 0 and increase strictly below the series length {s.shape[0]}, "
            f"got {b.tolist()}; pass the start row of each entity"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"entity names must be unique, got {list(names)}")
    ends = [*b[1:].tolist(), s.shape[0]]
    return {str(n): (s[a:e], lab[a:e]) for n, a, e in zip(names, b.tolist(), ends, strict=True)}


def _check_pair(scores: Any, labels: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    s = _to_numpy(scores)
    if s.dtype.kind not in "iuf" or s.ndim != 1 or s.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array [T] of real numbers, got {s.dtype} {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(
            f"{name} holds {int((~np.isfinite(s)).sum())} non-finite values; a detector must give finite scores"
        )
    lab = check_labels(labels, length=s.shape[0], name=f"labels of {name}")
    if lab.ndim != 1:
        raise ValueError(f"labels of {name} must be 1-D [T], got shape {lab.shape}")
    return s.astype(np.float64), lab


def _check_results(results: Mapping[str, tuple[Any, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not isinstance(results, Mapping) or not results:
        got = "an empty mapping" if isinstance(results, Mapping) else type(results).__name__
        raise ValueError(f"results must be a non-empty mapping {{entity name: (scores [T], labels [T])}}, got {got}")
    out = {}
    for entity, pair in results.items():
        if not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"results[{entity!r}] must be a pair (scores [T], labels [T]), got {type(pair).__name__}")
        out[str(entity)] = _check_pair(pair[0], pair[1], f"scores of {entity!r}")
    return out


def _call(
    evaluate_fn: EvaluateFn, scores: np.ndarray, labels: np.ndarray, where: str, threshold: Any = None
) -> dict[str, Any]:
    row = evaluate_fn(scores, labels) if threshold is None else evaluate_fn(scores, labels, threshold)
    if not isinstance(row, Mapping):
        raise TypeError(f"evaluate_fn must return a dict of metrics, got {type(row).__name__} for {where}")
    clash = [k for k in PROTOCOL_KEYS if k in row]
    if clash:
        raise ValueError(
            f"evaluate_fn's row for {where} already has the key(s) {clash}, which the protocol writes; rename them"
        )
    return dict(row)


def _all_equal(values: list[Any]) -> bool:
    first = values[0]
    try:
        return all(type(v) is type(first) and bool(np.all(v == first)) for v in values)
    except (TypeError, ValueError):  # e.g. arrays of different shapes: they differ
        return False


def _is_number(v: Any) -> bool:
    # bool is an int in Python, but a mean of flags would be a different kind of value.
    return isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_)


def _check_thresholds(thresholds: Mapping[str, Any] | None, names: list[str]) -> Mapping[str, Any]:
    if thresholds is None:
        return {}
    missing = [n for n in names if n not in thresholds]
    extra = [n for n in thresholds if n not in names]
    if missing or extra:
        raise ValueError(
            f"thresholds must name exactly the entities of results: missing {missing}, unknown {extra}; "
            "give one threshold (a number or [T_e] per-step values) per entity"
        )
    return thresholds


def evaluate_entities(
    results: Mapping[str, tuple[Any, Any]],
    evaluate_fn: EvaluateFn,
    thresholds: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One metric row per entity: ``{"protocol": "per-entity", "entities": name, **evaluate_fn(...)}``.

    ``results`` maps each entity name to ``(scores [T_e], labels [T_e])``; rows come in its order.
    ``thresholds``: optional ``{entity name: threshold}`` (each entity its own, e.g. POT fitted on
    that entity's held-out scores); ``evaluate_fn(scores, labels, threshold)`` then gets it.
    """
    checked = _check_results(results)
    per_entity = _check_thresholds(thresholds, list(checked))
    return [
        {
            "protocol": "per-entity",
            "entities": name,
            **_call(evaluate_fn, s, lab, f"entity {name!r}", per_entity.get(name)),
        }
        for name, (s, lab) in checked.items()
    ]


def evaluate_per_entity(
    results: Mapping[str, tuple[Any, Any]],
    evaluate_fn: EvaluateFn,
    unit: str = "entities",
    nan_policy: Literal["propagate", "omit"] = "propagate",
    thresholds: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score every entity on its own and average the rows (each entity weighs the same).

    ``results``: ``{entity name: (scores [T_e], labels [T_e])}``; ``evaluate_fn(scores, labels) ->
    dict``; ``unit`` names the entities in the protocol string (``"channels"``, ``"machines"``);
    ``thresholds``: optional per-entity thresholds, passed as ``evaluate_fn(scores, labels, threshold)``.
    Returns one row: ``"protocol": "per-entity mean (27 channels)"``, ``"entities": 27``, then
    every numeric metric as the unweighted mean over entities. A non-numeric value (a string,
    a bool, None) is kept when all entities agree and becomes ``"varies"`` otherwise.

    ``nan_policy``: a metric undefined on some entity (NaN, e.g. recall on an entity without
    anomalies) makes its mean NaN with ``"propagate"`` (the default: nothing is hidden); with
    ``"omit"`` the mean is over the entities where it is defined, the protocol string says so
    and ``"undefined"`` lists how many entities each such metric skipped (e.g. ``"recall: 2"``).
    """
    if nan_policy not in ("propagate", "omit"):
        raise ValueError(f"nan_policy must be 'propagate' or 'omit', got {nan_policy!r}")
    rows = [
        {k: v for k, v in r.items() if k not in PROTOCOL_KEYS}
        for r in evaluate_entities(results, evaluate_fn, thresholds)
    ]
    keys = list(dict.fromkeys(k for r in rows for k in r))  # first-seen order across rows
    averaged: dict[str, Any] = {}
    skipped: dict[str, int] = {}
    for key in keys:
        values = [r.get(key) for r in rows]
        if all(_is_number(v) for v in values):
            arr = np.asarray(values, dtype=np.float64)
            defined = np.isfinite(arr)
            if nan_policy == "omit" and not defined.all():
                skipped[key] = int((~defined).sum())
                averaged[key] = float(arr[defined].mean()) if defined.any() else float("nan")
            else:
                averaged[key] = float(arr.mean())
        else:
            # Missing in some row, or not a number: keep it only if every entity agrees.
            averaged[key] = values[0] if _all_equal(values) else "varies"
    n = len(rows)
    protocol = f"per-entity mean ({n} {unit})"
    if skipped:
        protocol = f"per-entity mean ({n} {unit}; undefined values omitted)"
    row: dict[str, Any] = {"protocol": protocol, "entities": n}
    if nan_policy == "omit":
        row["undefined"] = ", ".join(f"{k}: {c}" for k, c in skipped.items())
    row.update(averaged)
    return row


def evaluate_concatenated(
    results: Mapping[str, tuple[Any, Any]], evaluate_fn: EvaluateFn, unit: str = "entities"
) -> dict[str, Any]:
    """Join all entities end to end (in ``results`` order) and score once with ``evaluate_fn``.

    Same arguments as :func:`evaluate_per_entity`. Returns ``{"protocol": "concatenated (27
    channels)", "entities": 27, **evaluate_fn(all scores [sum T_e], all labels [sum T_e])}``.
    One threshold then serves every entity, so detectors whose score scale differs between
    entities are penalised here and not in the per-entity mean. A labelled segment that ends one
    entity and one that starts the next touch in the concatenation and so count as one segment
    for segment-based metrics, as in the published concatenated protocol.
    """
    checked = _check_results(results)
    scores = np.concatenate([s for s, _ in checked.values()])
    labels = np.concatenate([lab for _, lab in checked.values()])
    n = len(checked)
    return {
        "protocol": f"concatenated ({n} {unit})",
        "entities": n,
        **_call(evaluate_fn, scores, labels, "the concatenation"),
    }


def cross_fit_choice(quality: Mapping[Any, Mapping[str, float]], n_folds: int = 2) -> dict[str, Any]:
    """Per entity, the candidate that did best on the OTHER entities: a setting chosen with labels,
    never with the labels of the entity it is then scored on (cross-fitting over entities).

    ``quality[candidate][entity]``: how well ``candidate`` (a smoothing span, a threshold level, any
    setting) did on ``entity``, higher is better (for instance an event-aware F1 at the threshold
    the rule fits); every candidate holds the same entities. The entities, sorted by name, are dealt
    round robin into ``n_folds`` folds (position ``i`` goes to fold ``i % n_folds``); every entity
    of a fold gets the candidate with the highest mean quality over the entities of all other folds,
    ties going to the candidate listed first. Picking the best candidate on the entities it is then
    reported on would be an oracle choice, like an oracle threshold; this is the honest version.

    Returns ``{entity: candidate}``. Raises ``ValueError`` naming the fix when ``n_folds`` is not an
    integer >= 2, there are fewer entities than folds, candidates disagree on the entities, or a
    quality is not a finite number.
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, numbers.Integral) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2 (choose on some entities, score on others), got {n_folds!r}")
    if not quality:
        raise ValueError("quality is empty; pass {candidate: {entity: quality}} for at least one candidate")
    candidates = list(quality)
    entities = sorted(quality[candidates[0]])
    for cand in candidates:
        if sorted(quality[cand]) != entities:
            raise ValueError(
                f"candidate {cand!r} was scored on entities {sorted(quality[cand])}, candidate {candidates[0]!r} "
                f"on {entities}; score every candidate on the same entities"
            )
        for entity, value in quality[cand].items():
            if not _is_number(value) or not math.isfinite(value):
                raise ValueError(
                    f"quality of candidate {cand!r} on entity {entity!r} is {value!r}; every quality must be a "
                    "finite number (a metric undefined on an entity cannot rank candidates: drop the entity)"
                )
    if len(entities) < n_folds:
        raise ValueError(
            f"{len(entities)} entities cannot fill {n_folds} folds; pass at least {n_folds} entities or fewer folds"
        )
    folds = [entities[k::n_folds] for k in range(n_folds)]
    chosen: dict[str, Any] = {}
    for k, fold in enumerate(folds):
        others = [e for j, f in enumerate(folds) if j != k for e in f]
        means = [float(np.mean([quality[c][e] for e in others])) for c in candidates]
        best = candidates[int(np.argmax(means))]  # argmax: the first of equal maxima
        chosen.update(dict.fromkeys(fold, best))
    return chosen
