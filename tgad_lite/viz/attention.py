"""Attention figures: one node's attention over its neighbours, and entropy against uniform attention.

A node ``i`` with ``d`` in-edges (its self loop included) splits its attention over them; uniform
attention gives each ``1/d``. The figures here always show that reference beside the learned
values, and draw attention as widths proportional to the values (from zero), so a neighbour
with 9% more attention than uniform looks 9% wider, not thick against thin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tgad_lite.viz.graph import _to_numpy, draw_graph


@dataclass(frozen=True)
class NeighbourhoodAttention:
    """The attention one node pays to its in-neighbours in one head of one layer.

    ``neighbours [d]``: source node ids (the self loop excluded); ``alpha [d]``: their
    coefficients; ``self_alpha``: the self loop's coefficient (``None`` without a self loop);
    ``uniform``: ``1 / in-degree`` counting the self loop, what every edge would get if attention
    were uniform.
    """

    node: int
    neighbours: np.ndarray
    alpha: np.ndarray
    self_alpha: float | None
    uniform: float

    @property
    def num_edges(self) -> int:
        """In-edges of ``node``, its self loop included (``1 / uniform``)."""
        return len(self.neighbours) + (self.self_alpha is not None)

    def summary(self) -> dict[str, float | int | None]:
        """Range of the neighbours' attention, absolute and relative to uniform (JSON-ready)."""
        return {
            "node": int(self.node),
            "num_edges": self.num_edges,
            "min": float(self.alpha.min()),
            "max": float(self.alpha.max()),
            "uniform": float(self.uniform),
            "min_over_uniform": float(self.alpha.min() / self.uniform),
            "max_over_uniform": float(self.alpha.max() / self.uniform),
            "self": None if self.self_alpha is None else float(self.self_alpha),
        }


def neighbourhood_attention(edge_index: Any, alpha: Any, node: int, head: int = 0) -> NeighbourhoodAttention:
    """Pick node ``node``'s in-edges from a layer's ``(edge_index [2, E], alpha [E, H] or [E])``.

    ``edge_index`` row 1 is the attending node (target), row 0 the attended one (source), as
    returned by ``forward_with_attention``. Raises ValueError for mismatched shapes, a node or
    head out of range, or a node without in-edges.
    """
    ei = _to_numpy(edge_index)
    a = _to_numpy(alpha).astype(np.float64)
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise ValueError(f"edge_index must be [2, E] (row 0 sources, row 1 targets), got shape {ei.shape}")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != ei.shape[1]:
        raise ValueError(f"alpha must be [E] or [E, H] with E = {ei.shape[1]} (one row per edge), got {a.shape}")
    if not 0 <= head < a.shape[1]:
        raise ValueError(f"head {head} does not exist: alpha has {a.shape[1]} head(s), numbered 0..{a.shape[1] - 1}")
    into = ei[1] == node
    if not into.any():
        raise ValueError(f"node {node} has no in-edges in edge_index: nothing attends from it (pick another node)")
    src, att = ei[0, into], a[into, head]
    loop = src == node
    return NeighbourhoodAttention(
        node=int(node),
        neighbours=src[~loop].astype(np.int64),
        alpha=att[~loop],
        self_alpha=float(att[loop].sum()) if loop.any() else None,
        uniform=1.0 / int(into.sum()),
    )


def plot_attention_neighbourhood(
    nbh: NeighbourhoodAttention,
    *,
    ax: Any,
    node_color: Any = None,
    legend: Sequence[str] | None = None,
    max_width: float = 2.5,
    seed: int = 0,
    title: str | None = None,
) -> np.ndarray:
    """Draw ``nbh.node`` (large, centre) and its neighbours with edge width proportional to attention.

    ``node_color``: ``[N]`` class ids for the *whole* graph (the drawn nodes' are picked out);
    ``legend``: the class names. Widths are ``max_width * alpha / max(alpha)`` points (from zero);
    the edge legend shows three attention values and, dashed, the uniform value ``1/d``.
    Returns the positions ``[1 + d, 2]`` (centre first, then ``nbh.neighbours`` in order).
    """
    d = len(nbh.neighbours)
    local_nodes = np.concatenate([[nbh.node], nbh.neighbours])
    # Star graph on local ids: neighbour k (1..d) -> centre 0, the direction attention flows in.
    local_edges = np.stack([np.arange(1, d + 1), np.zeros(d, dtype=np.int64)])
    colors = None if node_color is None else _to_numpy(node_color)[local_nodes]
    sizes = np.r_[6.0, np.ones(d)]
    k = nbh.num_edges
    return draw_graph(
        local_edges,
        d + 1,
        ax=ax,
        node_color=colors,
        node_size=sizes,
        edge_width=nbh.alpha,
        edge_scale="zero",
        width_range=(0.0, max_width),
        edge_legend="attention",
        edge_reference={f"uniform, 1/{k}": nbh.uniform},
        legend=legend,
        layout="fr",
        seed=seed,
        title=title,
    )


def entropy_ratio_frame(entropies: Sequence[np.ndarray], uniform: np.ndarray, layer_names: Sequence[str] | None = None):
    """Per node and head, learned entropy over uniform entropy, as a long pandas DataFrame.

    ``entropies``: per layer ``[N, H]`` (nats); ``uniform``: ``[N]`` ``log(in-degree)``. Only nodes
    with at least two in-edges appear (with one there is nothing to choose, the ratio is 0/0).
    Columns: ``layer``, ``head`` (1-based), ``node``, ``ratio`` (1 = uniform, 0 = one edge only).
    """
    import pandas as pd

    uniform = np.asarray(uniform, dtype=np.float64)
    keep = uniform > 0
    names = list(layer_names) if layer_names is not None else [f"layer {i + 1}" for i in range(len(entropies))]
    if len(names) != len(entropies):
        raise ValueError(f"{len(names)} layer names for {len(entropies)} layers")
    frames = []
    for name, ent in zip(names, entropies, strict=True):
        ent = np.asarray(ent, dtype=np.float64)
        if ent.ndim != 2 or ent.shape[0] != uniform.shape[0]:
            raise ValueError(f"{name}: entropies must be [N, H] with N = {uniform.shape[0]}, got {ent.shape}")
        for h in range(ent.shape[1]):
            frames.append(
                pd.DataFrame(
                    {
                        "layer": name,
                        "head": h + 1,
                        "node": np.flatnonzero(keep),
                        "ratio": ent[keep, h] / uniform[keep],
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def entropy_ratio_boxplot(frame: Any, *, ax: Any, title: str | None = None) -> None:
    """Box plot (seaborn) of :func:`entropy_ratio_frame`'s ratios per layer and head, with the
    uniform-attention line at 1. Boxes hug 1 when attention is close to uniform."""
    import seaborn as sns

    data = frame.assign(
        panel=[f"{layer}\nhead {head}" for layer, head in zip(frame["layer"], frame["head"], strict=True)]
    )
    sns.boxplot(data=data, x="panel", y="ratio", ax=ax, color="tab:blue", fliersize=1.5, linewidth=0.8, width=0.6)
    ax.axhline(1.0, color="k", ls="--", lw=1)
    # Room above the line for its label, so no key sits on the boxes.
    low = float(min(frame["ratio"].min(), 1.0))
    ax.set_ylim(top=1.0 + 0.1 * max(1.0 - low, 1e-6))
    ax.annotate(
        "uniform attention (ratio 1)",
        (1.0, 1.0),
        xycoords=("axes fraction", "data"),
        xytext=(-4, 2),
        textcoords="offset points",
        ha="right",
        va="bottom",
        fontsize=8,
    )
    ax.set_xlabel("layer and attention head")
    ax.set_ylabel("entropy / entropy of uniform attention")
    if title:
        ax.set_title(title)


def entropy_histograms(
    entropies: Sequence[np.ndarray],
    uniform: np.ndarray,
    *,
    axes: Any,
    layer_names: Sequence[str] | None = None,
    bins: int = 30,
) -> None:
    """One row per layer, one panel per head: histogram of node entropies vs uniform attention.

    ``entropies``: per layer an ``[N, H]`` array (nats); ``uniform``: ``[N]`` entropy of uniform
    attention (``log degree``); ``axes``: a 2-D array of matplotlib axes, at least
    ``len(entropies)`` rows and ``max H`` columns (unused panels are hidden).
    """
    axes = np.atleast_2d(axes)
    edges = np.linspace(0.0, max(float(uniform.max()), max(float(e.max()) for e in entropies)) + 1e-9, bins + 1)
    for row, ent in enumerate(entropies):
        name = layer_names[row] if layer_names else f"layer {row + 1}"
        for head in range(axes.shape[1]):
            ax = axes[row, head]
            if head >= ent.shape[1]:
                ax.set_visible(False)
                continue
            ax.hist(uniform, bins=edges, color="0.6", alpha=0.6, label="uniform attention")
            ax.hist(ent[:, head], bins=edges, histtype="step", lw=1.8, color="C3", label="learned attention")
            ax.set_title(f"{name}, head {head + 1}", fontsize=9)
            ax.set_xlabel("entropy (nats)")
            if head == 0:
                ax.set_ylabel("nodes")
    axes[0, 0].legend(fontsize=8, loc="upper right")
