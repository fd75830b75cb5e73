"""How peaked is learned attention? Per-node entropy of attention versus uniform attention."""

from __future__ import annotations

from typing import Any

import numpy as np


def _np(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def attention_entropy(index: Any, alpha: Any, num_nodes: int) -> np.ndarray:
    """Entropy (nats) of each node's attention distribution: ``[N, H]``.

    ``index [E]``: the target node of each edge (row 1 of the attended ``edge_index``);
    ``alpha [E, H]`` or ``[E]``: attention coefficients, summing to 1 over each target's edges.
    ``H_i = -sum_{j in N(i)} alpha_ij log alpha_ij``; a node with no edges gets 0.
    """
    index, alpha = _np(index).astype(np.int64), _np(alpha).astype(np.float64)
    if alpha.ndim == 1:
        alpha = alpha[:, None]
    if alpha.shape[0] != index.shape[0]:
        raise ValueError(f"alpha has {alpha.shape[0]} rows but index has {index.shape[0]} edges")
    sums = np.zeros((num_nodes, alpha.shape[1]))
    np.add.at(sums, index, alpha)
    has_edges = np.bincount(index, minlength=num_nodes) > 0
    if not np.allclose(sums[has_edges], 1.0, atol=1e-4):
        raise ValueError("alpha does not sum to 1 over each target's edges: pass softmax outputs per target")
    plogp = np.where(alpha > 0, alpha * np.log(np.clip(alpha, 1e-300, None)), 0.0)
    out = np.zeros((num_nodes, alpha.shape[1]))
    np.add.at(out, index, -plogp)
    return out


def uniform_entropy(index: Any, num_nodes: int) -> np.ndarray:
    """Entropy of uniform attention over each node's edges, ``log(in-degree)``: ``[N]``."""
    deg = np.bincount(_np(index).astype(np.int64), minlength=num_nodes)
    return np.log(np.maximum(deg, 1)).astype(np.float64)
