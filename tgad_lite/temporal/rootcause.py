"""Root cause from a trained temporal risk model: rank services per incident by its risk, attention, or both.

Per incident, starting at step ``t0`` (the generator's start, from
:func:`~tgad_lite.anomaly.rootcause.incident_starts_roots`: an oracle alarm, as for the rules), the
model reads the ``horizon`` windows whose last steps are ``t0, t0 + 1, ..., t0 + horizon - 1``
(the same analysis steps the rules read; clipped at the series end), in eval mode:

(a) **risk**: ``risk_score[v]`` = the mean over those windows of the model's risk of ``v``. A
    perfect risk model rates every service in the cascade high, so this ranks *sick* services;
    it finds the root only where the model rates the root highest.
(b) **attention flow**: the last graph layer's attention at the analysis steps (the attention at
    step ``t`` is that of the window ending at ``t``, its last snapshot), averaged over heads and
    steps: ``a[k]`` for each message edge ``k = (source, target)`` of
    ``TemporalGATOutput.attention_edge_index``. Then::

        flow[v] = sum over message edges k = (v -> u), u != v, of a[k] * risk_score[u]

    how much attention the services at risk pay to ``v``: a target's attention over its incoming
    edges sums to 1, so ``a[k]`` is the share of ``u``'s update that comes from ``v``, and each
    share counts as much as ``u`` is at risk. Self loops are left out (a service attending to
    itself says nothing about who it depends on). A service that many sick neighbours attend to
    scores high: under the hypothesis that the model attends to where trouble comes from, that is
    the upstream end of the cascade (the root). Nothing in training asks the attention to do this
    (the model is trained on risk labels only): whether it does is what the evaluation measures.
    Which neighbours can attend to ``v`` depends on the model's ``direction``: with ``"reverse"``
    (callee -> caller messages only) the sick callers of the root attend to it and the root's
    own attention goes down to its callees; with ``"both"`` a service in the middle of a
    cascade chain is attended from both sides, which favours it over the root at the end.
(c) **combined**: the rank average of (a) and (b): each service's rank under risk and under
    flow (1 = highest, ties share the average rank), averaged; lowest average first. Neither
    score's scale matters, only the order each gives.
(d) **downstream**: the model's risk read along the call graph. Incidents spread from the root
    to its callers, so the root is the service at risk with no callee at risk. Services with
    ``risk_score > threshold`` (the validation-chosen threshold, ``TrainResult.threshold``) and
    no such callee in ``edge_index`` (caller -> callee) come first, then the other services at
    risk, then the rest, each group by risk. This is the most-downstream rule
    (:func:`~tgad_lite.anomaly.rootcause.rank_most_downstream`) fed with the model's risk instead
    of z-scores: beside that rule it measures what the learned risk adds (it can rate an
    uninstrumented service, and is not fooled by amplified callers), and beside the same ranker
    on the no-graph model's risk, what the graph encoder adds.

Every ranking breaks ties by the lower service id and is a
:class:`~tgad_lite.anomaly.rootcause.RootCauseRanking` (``order``, ``z`` = the score ranked by,
``unobserved`` all False: unlike the rules, the model ranks services without telemetry of their
own like any other, from their neighbours), so :mod:`tgad_lite.metrics.rootcause` scores it
beside the rules. Inputs are the SERIES the model was trained on, normalised the same way (pass
``normaliser=split.normaliser``), not raw telemetry.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tgad_lite.anomaly.cascade import check_edge_index
from tgad_lite.anomaly.rootcause import RootCauseRanking, downstream_groups

__all__ = [
    "MODEL_RANKERS",
    "RootCauseEvidence",
    "attention_flow",
    "incident_evidence",
    "model_rootcause",
    "rank_average",
    "rank_by_score",
    "rank_downstream",
]

MODEL_RANKERS = ("risk", "attention", "combined", "downstream")


@dataclass(frozen=True)
class RootCauseEvidence:
    """What the model says about each of ``I`` incidents on ``N`` services.

    - ``starts [I]``: each incident's first step.
    - ``risk [I, N]``: mean risk over the analysis windows (see the module docstring, (a)).
    - ``flow [I, N]``: attention flow (b); ``None`` for a model without graph layers.
    - ``attention [I, E']``: the attention averaged over heads and analysis steps, per message edge;
      ``None`` without graph layers. ``message_edges [2, E']``: those edges ``(source, target)``.
    """

    starts: np.ndarray
    risk: np.ndarray
    flow: np.ndarray | None = None
    attention: np.ndarray | None = None
    message_edges: np.ndarray | None = None


def _scores(values: Any, name: str) -> np.ndarray:
    v = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values)
    if v.dtype.kind not in "biuf" or v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of numbers (one per service), got {v.dtype} {v.shape}")
    v = v.astype(np.float64)
    if not np.isfinite(v).all():
        raise ValueError(f"{name} holds non-finite values (at services {np.flatnonzero(~np.isfinite(v))[:5].tolist()})")
    return v


def attention_flow(attention: Any, message_edges: Any, risk: Any) -> np.ndarray:
    """``flow [N]``: ``flow[v] = sum_{k = (v -> u), u != v} a[k] * risk[u]`` (module docstring, (b)).

    ``attention``: ``[E']`` per message edge, or ``[..., E', H]`` (then averaged over every axis
    but ``E'``: steps, windows and heads); ``message_edges [2, E']`` (source, target), e.g.
    ``TemporalGATOutput.attention_edge_index``; ``risk [N]`` in ``[0, 1]`` per service.
    """
    r = _scores(risk, "risk")
    n = r.size
    a = np.asarray(attention.detach().cpu().numpy() if hasattr(attention, "detach") else attention)
    if a.dtype.kind not in "biuf" or a.ndim == 0:
        raise ValueError(f"attention must be numbers shaped [E'] or [..., E', H], got {a.dtype} {a.shape}")
    a = a.astype(np.float64)
    if a.ndim > 1:
        a = np.moveaxis(a, -2, 0).reshape(a.shape[-2], -1).mean(axis=1)
    ei = check_edge_index(message_edges, n)
    if ei.shape[1] != a.size:
        raise ValueError(
            f"attention has {a.size} edges but message_edges {ei.shape[1]}; pass the attention_edge_index that "
            "came with this attention"
        )
    if not np.isfinite(a).all():
        raise ValueError("attention holds non-finite values; read it from a model in eval() mode on finite inputs")
    src, dst = ei
    keep = src != dst
    flow = np.zeros(n, dtype=np.float64)
    np.add.at(flow, src[keep], a[keep] * r[dst[keep]])
    return flow


def rank_by_score(score: Any) -> RootCauseRanking:
    """Services by ``score [N]`` descending (ties: lower id first) as a ``RootCauseRanking``."""
    s = _scores(score, "score")
    order = np.lexsort([np.arange(s.size), -s]).astype(np.int64)
    return RootCauseRanking(order=order, z=s, unobserved=np.zeros(s.size, dtype=bool))


def rank_average(*scores: Any) -> np.ndarray:
    """``[N]`` minus the mean rank of each service over ``scores`` (rank 1 = highest score; tied
    scores share their average rank), so higher is better and :func:`rank_by_score` applies."""
    from scipy.stats import rankdata

    if not scores:
        raise ValueError("rank_average needs at least one score array")
    arrays = [_scores(s, f"scores[{i}]") for i, s in enumerate(scores)]
    if len({a.size for a in arrays}) != 1:
        raise ValueError(f"every score array must have one entry per service; got sizes {[a.size for a in arrays]}")
    return -np.mean([rankdata(-a, method="average") for a in arrays], axis=0)


def rank_downstream(risk: Any, edge_index: Any, threshold: float = 0.5) -> RootCauseRanking:
    """Services at risk with no callee at risk first, then other services at risk, then the rest,
    each group by ``risk [N]`` descending (ties: lower id); see the module docstring, (d).

    ``edge_index [2, E]``: caller -> callee; at risk = ``risk > threshold``.
    """
    r = _scores(risk, "risk")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number (e.g. TrainResult.threshold), got {threshold!r}")
    group = downstream_groups(r > threshold, edge_index)
    order = np.lexsort([np.arange(r.size), -r, group]).astype(np.int64)
    return RootCauseRanking(order=order, z=r, unobserved=np.zeros(r.size, dtype=bool))


def _model_device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def incident_evidence(
    model: nn.Module,
    x: Any,
    mask: Any,
    edge_index: Any,
    starts: Sequence[int] | np.ndarray,
    *,
    window: int,
    horizon: int = 3,
    normaliser: Any = None,
    layer: int = -1,
) -> RootCauseEvidence:
    """Risk and (graph models) attention flow per incident: see the module docstring.

    Args:
        model: a trained :class:`~tgad_lite.temporal.TemporalGAT`; run in eval mode on its device
            (its mode is restored after).
        x: ``[T, N, F]`` the series (NaN where unobserved), normalised as in training, or raw with
            ``normaliser`` (e.g. ``time_split(...).normaliser``), which is applied first.
        mask: ``[T, N, F]`` bool, True = observed (None: the finite entries of ``x``).
        edge_index: ``[2, E]`` caller -> callee of this series' graph (ignored by a no-graph model).
        starts: ``[I]`` incident start steps; each needs ``window - 1`` steps of history.
        window: ``S``, the window length the model was trained with.
        horizon: analysis windows per incident (ending at ``t0 .. t0 + horizon - 1``).
        layer: which graph layer's attention (default the last).
    """
    if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 1:
        raise ValueError(f"window must be an int >= 1 (the model's training window), got {window!r}")
    if isinstance(horizon, bool) or not isinstance(horizon, numbers.Integral) or horizon < 1:
        raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
    arr = np.asarray(x)
    if arr.ndim != 3 or arr.dtype.kind not in "biuf" or 0 in arr.shape:
        raise ValueError(f"x must be a numeric series [T, N, F], got {arr.dtype} {arr.shape}; pass telemetry.x")
    m = np.isfinite(arr) if mask is None else np.asarray(mask)
    if m.shape != arr.shape or m.dtype != np.bool_:
        raise ValueError(f"mask must be a bool array shaped like x {arr.shape}, got {m.dtype} {m.shape}")
    if normaliser is not None:
        arr = normaliser.transform(arr)
    steps, n, _ = arr.shape
    st = np.asarray(starts)
    if st.ndim != 1 or st.size == 0 or st.dtype.kind not in "iu":
        raise ValueError(f"starts must be a non-empty 1-D list of int steps, got {starts!r}")
    early = st[(st < window - 1) | (st >= steps)]
    if early.size:
        raise ValueError(
            f"incident start(s) {early[:5].tolist()} lie outside steps {window - 1}..{steps - 1}: a window of "
            f"{window} steps ending there needs {window - 1} earlier steps; drop them "
            f"(incident_starts_roots(tel, min_start={window - 1}))"
        )
    graph = bool(getattr(model, "graph", True))
    dev = _model_device(model)
    edge = None
    if graph:
        edge = torch.from_numpy(np.array(check_edge_index(edge_index, n), dtype=np.int64)).to(dev)
    was_training = model.training
    model.eval()
    risks, flows, attns, msg = [], [], [], None
    try:
        with torch.no_grad():
            for t0 in st.tolist():
                ends = np.arange(t0, min(steps, t0 + horizon))
                idx = ends[:, None] + np.arange(1 - window, 1)[None, :]  # [h, S] steps of each window
                xb = torch.from_numpy(np.ascontiguousarray(arr[idx], dtype=np.float32)).to(dev)
                mb = torch.from_numpy(np.ascontiguousarray(m[idx])).to(dev)
                out = model(xb, edge, mb, return_attention=graph)
                risk = out.risk.double().mean(dim=0).cpu().numpy()  # [N]
                risks.append(risk)
                if graph:
                    # The last snapshot of the window ending at t is step t: one attention per analysis step.
                    att = out.layer_attention[layer][:, -1].double().mean(dim=(0, 2)).cpu().numpy()  # [E']
                    msg = out.attention_edge_index.cpu().numpy()
                    attns.append(att)
                    flows.append(attention_flow(att, msg, risk))
    finally:
        model.train(was_training)
    return RootCauseEvidence(
        starts=st.astype(np.int64),
        risk=np.stack(risks),
        flow=np.stack(flows) if graph else None,
        attention=np.stack(attns) if graph else None,
        message_edges=msg,
    )


def model_rootcause(
    model: nn.Module,
    x: Any,
    mask: Any,
    edge_index: Any,
    starts: Sequence[int] | np.ndarray,
    *,
    window: int,
    horizon: int = 3,
    normaliser: Any = None,
    layer: int = -1,
    threshold: float = 0.5,
) -> dict[str, list[RootCauseRanking]]:
    """``{"risk", "attention", "combined", "downstream"}`` -> one ranking per incident each (module
    docstring, (a) to (d)). A no-graph model has no attention: ``"risk"`` and, when ``edge_index``
    is given, ``"downstream"``. ``threshold``: "at risk" for (d), pass ``TrainResult.threshold``.
    Other arguments as :func:`incident_evidence`."""
    ev = incident_evidence(
        model, x, mask, edge_index, starts, window=window, horizon=horizon, normaliser=normaliser, layer=layer
    )
    out = {"risk": [rank_by_score(r) for r in ev.risk]}
    if ev.flow is not None:
        out["attention"] = [rank_by_score(f) for f in ev.flow]
        out["combined"] = [rank_by_score(rank_average(r, f)) for r, f in zip(ev.risk, ev.flow, strict=True)]
    if edge_index is not None:
        out["downstream"] = [rank_downstream(r, edge_index, threshold) for r in ev.risk]
    return out
