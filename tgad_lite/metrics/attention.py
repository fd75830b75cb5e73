"""How peaked is learned attention? Per-node entropy of attention versus uniform attention.

A node's attention over its ``d`` in-edges is a probability distribution; its entropy is
``log d`` (nats) when uniform and 0 when all of it goes to one edge. :func:`entropy_ratio`
summarises a layer in one number per head: 1.0 means "as spread out as uniform attention".
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _np(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def _check_index(index: Any, num_nodes: int) -> np.ndarray:
    """``index [E]`` as int64, every id in ``0 .. num_nodes - 1`` (a negative id would wrap silently)."""
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int | np.integer) or num_nodes < 0:
        raise ValueError(f"num_nodes must be a non-negative int, got {num_nodes!r}")
    idx = _np(index)
    if idx.ndim != 1:
        raise ValueError(f"index must be 1-D [E] (row 1 of edge_index: each edge's target), got shape {idx.shape}")
    if idx.size and idx.dtype.kind not in "iu":
        raise ValueError(f"index must hold integer node ids, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= num_nodes):
        bad = idx[(idx < 0) | (idx >= num_nodes)][0]
        raise ValueError(f"index holds node id {int(bad)}, outside 0..{num_nodes - 1} (num_nodes={num_nodes})")
    return idx.astype(np.int64)


def attention_entropy(index: Any, alpha: Any, num_nodes: int) -> np.ndarray:
    """Entropy (nats) of each node's attention distribution: ``[N, H]``.

    ``index [E]``: the target node of each edge (row 1 of the attended ``edge_index``);
    ``alpha [E, H]`` or ``[E]``: attention coefficients, summing to 1 over each target's edges.
    ``H_i = -sum_{j in N(i)} alpha_ij log alpha_ij``; a node with no edges gets 0.
    """
    index = _check_index(index, num_nodes)
    alpha = _np(alpha).astype(np.float64)
    if alpha.ndim == 1:
        alpha = alpha[:, None]
    if alpha.ndim != 2 or alpha.shape[0] != index.shape[0]:
        raise ValueError(
            f"alpha must be [E] or [E, H] with E = {index.shape[0]} (one row per edge), got shape {alpha.shape}"
        )
    if not np.isfinite(alpha).all() or (alpha < 0).any():
        raise ValueError("alpha must be finite and non-negative (softmax outputs); found NaN, inf or a negative value")
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
    deg = np.bincount(_check_index(index, num_nodes), minlength=num_nodes)
    return np.log(np.maximum(deg, 1)).astype(np.float64)


def entropy_ratio(index: Any, alpha: Any, num_nodes: int) -> np.ndarray:
    """Learned over uniform attention entropy, per head: ``[H]`` (``alpha [E]`` gives ``[1]``).

    ``sum_i H_i / sum_i log(deg_i)`` over all nodes, i.e. the mean learned entropy divided by the
    mean uniform entropy. 1.0: as spread out as uniform attention (each of ``d`` neighbours gets
    ``1/d``); 0.0: every node puts all its attention on one neighbour. Nodes with a single
    in-edge add 0 to both sums (they have no choice to make). ``ValueError`` when no node has
    two or more in-edges, where the ratio is undefined (0/0).
    """
    uniform = uniform_entropy(index, num_nodes)
    total = uniform.sum()
    if total <= 0:
        raise ValueError(
            "entropy_ratio is undefined (0/0): no node has two or more in-edges, so no attention "
            "distribution can be more or less peaked than uniform; check index (the target of each edge)"
        )
    return attention_entropy(index, alpha, num_nodes).sum(axis=0) / total
