"""Root-cause ranking metrics (RCAEval's definitions): AC@k and Avg@k, per incident and overall.

For each incident a method ranks services, most likely root first; ``truths`` holds the true
root of each incident. With ``rank`` the 1-based position of the true root in its ranking:

- ``AC@k`` = the fraction of incidents whose true root is in the top ``k`` (``rank <= k``);
- ``Avg@k`` = ``(AC@1 + ... + AC@k) / k``, which per incident is ``max(0, k - rank + 1) / k``
  (1 at rank 1, ``1 - 1/k`` at rank 2, ..., 0 beyond ``k``) averaged over incidents.

(Pham et al., "RCAEval: A Benchmark for Root Cause Analysis of Microservice Systems", 2025.)
The per-incident forms (:func:`hits_at_k`, :func:`avg_at_k_per_incident`) are the units a
bootstrap resamples (:mod:`tgad_lite.metrics.bootstrap`): :func:`rootcause_report` gives AC@k and
Avg@k with percentile intervals in one call.

A ranking is a sequence of service ids (distinct non-negative ints), e.g. a row of an ``[I, N]``
array, a list of lists, or anything with an ``order`` attribute (a
:class:`~tgad_lite.anomaly.rootcause.RootCauseRanking`). Partial rankings (a top-m list) are
allowed: a true root missing from its ranking counts as a miss at every ``k``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from tgad_lite.metrics.bootstrap import BootstrapCI, bootstrap_ci

__all__ = ["ac_at_k", "avg_at_k", "avg_at_k_per_incident", "hits_at_k", "rank_of_truth", "rootcause_report"]


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    return int(k)


def _row(ranking: Any, i: int) -> np.ndarray:
    order = getattr(ranking, "order", ranking)
    if hasattr(order, "detach") and hasattr(order, "cpu"):
        order = order.detach().cpu().numpy()
    r = np.asarray(order)
    if r.ndim != 1 or (r.size and r.dtype.kind not in "iu"):
        raise ValueError(
            f"ranking {i} must be a 1-D list of int service ids (best first), got {r.dtype} shape {r.shape}; "
            "turn scores into a ranking with np.argsort(-scores)"
        )
    if r.size and r.min() < 0:
        raise ValueError(f"ranking {i} holds a negative service id {int(r.min())}; ids are 0 .. N - 1")
    if np.unique(r).size != r.size:
        raise ValueError(f"ranking {i} lists a service more than once; rank each service at most once")
    return r


def rank_of_truth(rankings: Any, truths: Any) -> np.ndarray:
    """``[I]`` float64: the 1-based position of each incident's true root in its ranking, ``inf``
    when the ranking does not contain it (a partial ranking that missed it)."""
    if hasattr(rankings, "detach") and hasattr(rankings, "cpu"):  # a torch tensor [I, N]
        rankings = rankings.detach().cpu().numpy()
    if isinstance(rankings, np.ndarray) and not (
        rankings.ndim == 2 or (rankings.ndim == 1 and rankings.dtype == object)
    ):
        raise ValueError(
            f"rankings must be [I, N] (one ranking per incident), got shape {rankings.shape}; "
            "wrap a single incident's ranking in a list"
        )
    if isinstance(rankings, str | bytes) or not isinstance(rankings, Sequence | np.ndarray):
        raise ValueError(f"rankings must be a sequence of rankings (one per incident), got {type(rankings).__name__}")
    rows = list(rankings)
    t = np.asarray(truths)
    if t.ndim != 1 or (t.size and t.dtype.kind not in "iu"):
        raise ValueError(
            f"truths must be a 1-D list of int root-service ids (one per incident), got {t.dtype} {t.shape}"
        )
    if not rows:
        raise ValueError("rankings is empty: root-cause metrics need at least one incident")
    if len(rows) != t.size:
        raise ValueError(
            f"{len(rows)} rankings but {t.size} truths: pass one ranking and one true root per incident, "
            "in the same order"
        )
    if t.min() < 0:
        raise ValueError(
            f"truths holds a negative service id {int(t.min())}; incidents without a root do not belong here"
        )
    out = np.full(t.size, np.inf)
    for i, (ranking, truth) in enumerate(zip(rows, t, strict=True)):
        hit = np.flatnonzero(_row(ranking, i) == truth)
        if hit.size:
            out[i] = hit[0] + 1
    return out


def hits_at_k(rankings: Any, truths: Any, k: int) -> np.ndarray:
    """``[I]`` float64, 1.0 where the true root is in the top ``k``, else 0.0."""
    k = _check_k(k)
    return (rank_of_truth(rankings, truths) <= k).astype(np.float64)


def ac_at_k(rankings: Any, truths: Any, k: int) -> float:
    """AC@k: the fraction of incidents whose true root is among the first ``k`` services ranked."""
    return float(hits_at_k(rankings, truths, k).mean())


def avg_at_k_per_incident(rankings: Any, truths: Any, k: int = 5) -> np.ndarray:
    """``[I]`` float64: ``(1/k) sum_{j=1..k} [rank <= j] = max(0, k - rank + 1) / k`` per incident."""
    k = _check_k(k)
    rank = rank_of_truth(rankings, truths)
    return np.where(rank <= k, (k - rank + 1) / k, 0.0)


def avg_at_k(rankings: Any, truths: Any, k: int = 5) -> float:
    """Avg@k = the mean of AC@1 .. AC@k."""
    return float(avg_at_k_per_incident(rankings, truths, k).mean())


def rootcause_report(
    rankings: Any,
    truths: Any,
    ks: Sequence[int] = (1, 3),
    avg_k: int = 5,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, BootstrapCI]:
    """``{"AC@1": BootstrapCI, "AC@3": ..., "Avg@5": ...}``: each metric with its percentile
    bootstrap interval over incidents (:func:`tgad_lite.metrics.bootstrap.bootstrap_ci`)."""
    out = {}
    for k in ks:
        out[f"AC@{_check_k(k)}"] = bootstrap_ci(hits_at_k(rankings, truths, k), np.mean, n_resamples, level, seed)
    per = avg_at_k_per_incident(rankings, truths, avg_k)
    out[f"Avg@{avg_k}"] = bootstrap_ci(per, np.mean, n_resamples, level, seed)
    return out
