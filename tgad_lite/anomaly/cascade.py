"""System level: is a failure cascading? A cascade score per step, baseline system detectors, labels.

Per-service risk says *which* services look sick; an operator also wants one alarm per step that
fires when a failure is *spreading* through the dependency graph. This module turns per-service
risk ``[T, N]`` into that signal, gives two system-level baselines that ignore the graph, and the
incident labels to score all of them with :mod:`tgad_lite.metrics.detection` (event-wise recall,
precision, detection delay): ``evaluate(score, incident_labels(tel), threshold)``.

Cascade score (:func:`cascade_score`)
-------------------------------------
For risk ``r[t, v]`` in ``[0, 1]`` and the dependency graph taken as undirected (a sick callee
makes its callers sick, so either end of an edge can be where the trouble came from)::

    cascade[t] = (1 / N) * sum_v r[t, v] * max_{w adjacent to v} r[t, w]

the expected fraction of services that are at risk AND have an at-risk caller or callee, reading
risks as probabilities. A chain of ``k`` services lit up (risk 1) scores ``k / N``; the same
``k`` services scattered with no edge between them score 0; a single sick service scores 0 (a
failure that has not spread); everything at risk scores 1 (minus services with no edge). It is
in ``[0, 1]``, needs no threshold of its own and grows smoothly with the model's confidence.
From windows (``ServiceWindows``), risk row ``b`` belongs to step ``t_end[b]``: score it against
``incident_labels(telemetry)[windows.t_end]``.

Why not the alternatives: (a) the mean over edges of ``r[u] r[v]`` relative to what the same
risks scattered at random would give is a ratio of tiny numbers when little is at risk (noise
dominates) and is 1 when everything is at risk, however it got there; (b) the size of the
largest connected component of services above a risk level needs that level, jumps by whole
services and ignores how sure the model is. The score is a plain function of the risk: it is
only as good as the risk model feeding it, which is the point of comparing models with it.

Baselines (same ``fit(x_train) / score(x) -> [T]`` shape, graph-free)
---------------------------------------------------------------------
- :class:`MaxZScoreDetector`: the largest robust z-score over all observed (service, metric)
  pairs at each step, statistics from a training span.
- :class:`ServiceIForestDetector`: an isolation forest on the per-step vector of every
  service's largest robust z-score (``[T, N]``, one summary per service).
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from tgad_lite.data.microservices.windows import robust_center_scale

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest

__all__ = [
    "MaxZScoreDetector",
    "ServiceIForestDetector",
    "cascade_score",
    "check_edge_index",
    "incident_labels",
]

_CHUNK_ELEMENTS = 4_000_000


def check_edge_index(edge_index: Any, num_nodes: int) -> np.ndarray:
    """``edge_index [2, E]`` (row 0 caller, row 1 callee) as int64, every id in ``0 .. N - 1``."""
    if hasattr(edge_index, "detach") and hasattr(edge_index, "cpu"):  # a torch tensor, without importing torch
        edge_index = edge_index.detach().cpu().numpy()
    ei = np.asarray(edge_index)
    if ei.size == 0:
        return np.zeros((2, 0), dtype=np.int64)
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise ValueError(
            f"edge_index must have shape [2, E] (row 0 callers, row 1 callees), got {ei.shape}; "
            "transpose an [E, 2] edge list with .T"
        )
    if ei.dtype.kind not in "iu":
        raise ValueError(f"edge_index must hold integer service ids, got dtype {ei.dtype}")
    if ei.min() < 0 or ei.max() >= num_nodes:
        raise ValueError(
            f"edge_index refers to service {int(ei.min()) if ei.min() < 0 else int(ei.max())}, outside "
            f"0..{num_nodes - 1} (N = {num_nodes} services in the risk/telemetry array); use the graph of this series"
        )
    return ei.astype(np.int64)


def _check_risk(risk: Any) -> np.ndarray:
    if hasattr(risk, "detach") and hasattr(risk, "cpu"):
        risk = risk.detach().cpu().numpy()
    r = np.asarray(risk)
    if r.dtype.kind not in "biuf":
        raise ValueError(f"risk must be numbers, got dtype {r.dtype}")
    if r.ndim != 2 or 0 in r.shape:
        raise ValueError(f"risk must be [T, N] (steps, services) with T, N >= 1, got shape {r.shape}")
    r = r.astype(np.float64)
    bad = ~np.isfinite(r) | (r < 0) | (r > 1)
    if bad.any():
        t, v = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"risk must lie in [0, 1] (a probability-like score), found {r[t, v]} at step {t}, service {v}; "
            "give unobserved services 0 (no evidence) and squash unbounded scores first (e.g. s / (s + c))"
        )
    return r


def cascade_score(risk: Any, edge_index: Any) -> np.ndarray:
    """``[T]`` cascade score: the risk-weighted fraction of services with an at-risk neighbour.

    ``cascade[t] = (1/N) sum_v risk[t, v] * max_{w ~ v} risk[t, w]`` over the undirected
    dependency graph (module docstring: what it means and why this definition). ``risk [T, N]``
    in ``[0, 1]`` (e.g. :meth:`TemporalGAT` risk or a baseline's ``predict_risk`` per step),
    ``edge_index [2, E]`` caller -> callee; self loops are ignored, duplicate edges are harmless.
    Chunked over steps, so ten thousand steps of a thousand services fit in memory.
    """
    r = _check_risk(risk)
    steps, n = r.shape
    ei = check_edge_index(edge_index, n)
    keep = ei[0] != ei[1]
    src = np.concatenate([ei[0, keep], ei[1, keep]])  # both directions: adjacency, not call direction
    dst = np.concatenate([ei[1, keep], ei[0, keep]])
    out = np.zeros(steps, dtype=np.float64)
    if src.size == 0:
        return out
    order = np.argsort(dst, kind="stable")
    src, dst = src[order], dst[order]
    targets, starts = np.unique(dst, return_index=True)  # each target's run of incoming neighbours
    chunk = max(1, _CHUNK_ELEMENTS // src.size)
    for lo in range(0, steps, chunk):
        block = r[lo : lo + chunk]
        # max over each target's neighbours in one reduceat along the sorted edge axis
        neighbour_max = np.maximum.reduceat(block[:, src], starts, axis=1)  # [t, len(targets)]
        out[lo : lo + chunk] = (block[:, targets] * neighbour_max).sum(axis=1) / n
    return out


def incident_labels(telemetry: Any) -> np.ndarray:
    """``[T]`` int8, 1 while any incident is active (from its start to the end of its footprint).

    Read from ``telemetry.root_cause`` (``-1`` when no incident is active), the generator's own
    definition of "active"; use it as ``labels`` in :func:`tgad_lite.metrics.detection.evaluate`.
    """
    try:
        root = np.asarray(telemetry.root_cause)
    except AttributeError:
        raise TypeError(
            f"telemetry must be a Telemetry (from simulate) with .root_cause [T], got {type(telemetry).__name__}"
        ) from None
    if root.ndim != 1:
        raise ValueError(f"telemetry.root_cause must be [T], got shape {root.shape}")
    return (root >= 0).astype(np.int8)


# ----------------------------------------------------------------------------- graph-free baselines


def _check_series(x: Any, mask: Any, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """``x [T, N, F]`` as float64 with NaN outside ``mask`` (default: the finite entries)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf" or arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(
            f"{name} must be a numeric series [T, N, F] (steps, services, metrics) with T, N, F >= 1, got "
            f"{arr.dtype} {arr.shape}"
        )
    if shape is not None and arr.shape[1:] != shape:
        raise ValueError(f"{name} has (N, F) = {arr.shape[1:]} but the detector was fitted on {shape}; refit")
    v = arr.astype(np.float64)
    if mask is None:
        return np.where(np.isfinite(v), v, np.nan)
    m = np.asarray(mask)
    if m.shape != arr.shape or m.dtype != np.bool_:
        raise ValueError(f"mask must be a bool array shaped like {name} {arr.shape}, got {m.dtype} {m.shape}")
    if (m & ~np.isfinite(v)).any():
        raise ValueError(f"{name} is not finite where mask says observed; fix the data or set mask False there")
    return np.where(m, v, np.nan)


class _RobustZ:
    """Per (service, metric) median and 1.4826 MAD from a training span; |z| per step."""

    center_: np.ndarray | None = None
    scale_: np.ndarray | None = None

    def _fit_z(self, x: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
        v = _check_series(x, mask, "x_train")
        center, scale = robust_center_scale(v, axis=0, method="mad")
        scale = np.maximum(np.nan_to_num(scale, nan=0.0), 1e-6 * np.maximum(1.0, np.abs(np.nan_to_num(center))))
        return center, scale

    def _z(self, x: Any, mask: Any) -> np.ndarray:
        """``[T, N]`` max |z| over each service's observed metrics; 0 where none is observed."""
        if self.center_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(x_train) before score")
        v = _check_series(x, mask, "x", shape=self.center_.shape)
        z = np.abs(v - self.center_) / self.scale_
        return np.where(np.isnan(z), 0.0, z).max(axis=2)


class MaxZScoreDetector(_RobustZ):
    """``score[t]`` = the largest robust z over every observed (service, metric) at step ``t``.

    ``fit(x_train [T, N, F], mask=None)`` keeps per (service, metric) the median and
    ``1.4826 * MAD`` of the training span (floored at ``1e-6 * max(1, |median|)``); a pair never
    observed in training is ignored. ``score(x [T, N, F], mask=None) -> [T]`` (0 at a step where
    nothing is observed). No graph, no model: an alarm on "anything far from usual".
    """

    name = "max-z"

    def fit(self, x_train: Any, mask: Any = None) -> Self:
        center, scale = self._fit_z(x_train, mask)
        self.center_, self.scale_ = center, scale
        return self

    def score(self, x: Any, mask: Any = None) -> np.ndarray:
        return self._z(x, mask).max(axis=1)


class ServiceIForestDetector(_RobustZ):
    """Isolation forest on per-step service summaries: each service's largest robust z, ``[T, N]``.

    ``fit(x_train [T, N, F], mask=None)`` fits the robust statistics (as
    :class:`MaxZScoreDetector`) and then scikit-learn's ``IsolationForest`` on the training
    steps' summaries; ``score(x, mask=None) -> [T]`` is the paper's anomaly score
    ``-score_samples`` in ``(0, 1]``. Unsupervised: incidents in the training span are not removed.
    """

    name = "iforest"

    def __init__(self, n_estimators: int = 100, max_samples: int | str = "auto", seed: int = 0) -> None:
        if isinstance(n_estimators, bool) or not isinstance(n_estimators, numbers.Integral) or n_estimators < 1:
            raise ValueError(f"n_estimators must be an int >= 1, got {n_estimators!r}")
        if max_samples != "auto" and (
            isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Integral) or max_samples < 1
        ):
            raise ValueError(f"max_samples must be 'auto' or an int >= 1, got {max_samples!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
        self.n_estimators, self.max_samples, self.seed = int(n_estimators), max_samples, int(seed)
        self.forest_: IsolationForest | None = None

    def fit(self, x_train: Any, mask: Any = None) -> Self:
        from sklearn.ensemble import IsolationForest

        center, scale = self._fit_z(x_train, mask)
        z = np.abs(_check_series(x_train, mask, "x_train") - center) / scale
        feats = np.where(np.isnan(z), 0.0, z).max(axis=2)  # [T, N]
        max_samples = self.max_samples if self.max_samples == "auto" else min(int(self.max_samples), feats.shape[0])
        forest = IsolationForest(
            n_estimators=self.n_estimators, max_samples=max_samples, random_state=self.seed, n_jobs=1
        ).fit(feats)
        self.center_, self.scale_, self.forest_ = center, scale, forest
        return self

    def score(self, x: Any, mask: Any = None) -> np.ndarray:
        z = self._z(x, mask)  # refuses an unfitted detector
        return -self.forest_.score_samples(z)
