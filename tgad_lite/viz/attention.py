"""Attention figures: entropy of learned attention against uniform attention."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


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
