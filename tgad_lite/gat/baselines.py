"""Baselines for node classification: what a GAT is measured against.

- :class:`MLP` ignores the graph: each node is classified from its own features. The gap between
  it and a GNN is what the neighbours contribute.
- :class:`GCN` (Kipf & Welling, 2017; PyG's ``GCNConv``) averages neighbours with fixed weights
  ``1 / sqrt(deg_i deg_j)``. The gap between it and a GAT is what *learned* weights over
  neighbours (attention) contribute.

Both are called like :class:`tgad_lite.gat.GAT`, ``model(x [N, F], edge_index [2, E]) -> logits
[N, num_classes]``, so :func:`tgad_lite.train.train_node_classifier` trains all three with the
same loop. ``x`` may be dense, a torch sparse tensor or a :class:`~tgad_lite.gat.SparseFeatures`:
as in the GAT layers, sparse input dropout touches only the non-zeros and the first projection
is a sparse matmul (on Cora about 20x cheaper than dropping out and multiplying the dense
2708 x 1433 matrix, and the same distribution).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tgad_lite.gat.sparse_features import SparseFeatures, bernoulli_free_dropout


def _check_sizes(in_channels: int, hidden: int, num_classes: int, dropout: float) -> None:
    for name, value in (("in_channels", in_channels), ("hidden", hidden), ("num_classes", num_classes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1) (the probability of zeroing an entry), got {dropout!r}")


def _input(x: Tensor | SparseFeatures, in_channels: int) -> Tensor | SparseFeatures:
    """``x`` as a dense tensor or :class:`SparseFeatures` (torch sparse becomes SparseFeatures)."""
    if isinstance(x, Tensor) and x.layout != torch.strided:
        x = SparseFeatures(x)
    if not isinstance(x, (Tensor, SparseFeatures)):
        raise TypeError(f"x must be a tensor [N, F] or SparseFeatures, got {type(x).__name__}")
    if len(x.shape) != 2 or x.shape[1] != in_channels:
        raise ValueError(
            f"x must be [N, {in_channels}] (the model was built with in_channels={in_channels}), "
            f"got shape {tuple(x.shape)}"
        )
    return x


def _dropout(x: Tensor | SparseFeatures, p: float, training: bool) -> Tensor | SparseFeatures:
    if isinstance(x, SparseFeatures):
        return x.dropout(p, training)  # the non-zeros only: a dropped zero stays zero
    return bernoulli_free_dropout(x, p, training)


def _linear(x: Tensor | SparseFeatures, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x [N, F] @ weight.T [F, D] (+ bias [D]) -> [N, D]`` for dense or SparseFeatures ``x``."""
    out = x.matmul(weight.t()) if isinstance(x, SparseFeatures) else F.linear(x, weight)
    return out if bias is None else out + bias


class MLP(nn.Module):
    """Two linear layers with ELU between them and dropout on each layer's input; no graph.

    The default width and dropout are those of the paper's GAT's first layer on Cora
    (8 heads x 8 features = 64, dropout 0.6), so the comparison changes only the message passing.
    ``forward(x [N, F], edge_index=None) -> logits [N, num_classes]``; ``edge_index`` is accepted
    and ignored, so a training loop can call every model the same way.
    """

    def __init__(self, in_channels: int, num_classes: int, *, hidden: int = 64, dropout: float = 0.6) -> None:
        super().__init__()
        _check_sizes(in_channels, hidden, num_classes, dropout)
        self.in_channels, self.dropout = in_channels, float(dropout)
        self.lin1 = nn.Linear(in_channels, hidden)
        self.lin2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor | SparseFeatures, edge_index: Tensor | None = None) -> Tensor:
        """``x [N, F]`` (dense, torch sparse or SparseFeatures) -> logits ``[N, num_classes]``."""
        x = _dropout(_input(x, self.in_channels), self.dropout, self.training)
        h = F.elu(_linear(x, self.lin1.weight, self.lin1.bias))  # [N, hidden]
        h = F.dropout(h, self.dropout, self.training)
        return self.lin2(h)


def _sparse_aware_pyg_linear(in_channels: int, out_channels: int) -> nn.Module:
    """PyG's ``Linear`` as ``GCNConv`` builds it (no bias, Glorot init), also accepting SparseFeatures."""
    from torch_geometric.nn.dense.linear import Linear

    class SparseAwareLinear(Linear):
        def forward(self, x):  # type: ignore[override]
            if isinstance(x, SparseFeatures):
                return _linear(x, self.weight, self.bias)
            return super().forward(x)

    return SparseAwareLinear(in_channels, out_channels, bias=False, weight_initializer="glorot")


class GCN(nn.Module):
    """Kipf & Welling's two-layer GCN, ``GCNConv -> ReLU -> GCNConv``, dropout on each layer's input.

    Each layer computes ``H' = D^-1/2 (A + I) D^-1/2 H W + b`` (self loops added, symmetric
    normalisation): neighbour ``j`` of node ``i`` gets the weight ``1 / sqrt(deg_i deg_j)``, fixed
    by the graph, not learned. Defaults are the paper's Cora settings: 16 hidden units and dropout
    0.5 (train with learning rate 0.01 and weight decay 5e-4).
    ``forward(x [N, F], edge_index [2, E]) -> logits [N, num_classes]``.
    """

    def __init__(self, in_channels: int, num_classes: int, *, hidden: int = 16, dropout: float = 0.5) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        _check_sizes(in_channels, hidden, num_classes, dropout)
        self.in_channels, self.dropout = in_channels, float(dropout)
        # cached=False: the normalisation is recomputed from the edge_index passed in, so the model
        # can be evaluated on another graph (a cached one would silently keep the first).
        self.conv1 = GCNConv(in_channels, hidden, cached=False)
        # Same weight shape and initialisation as GCNConv's own; also takes sparse bag-of-words input.
        self.conv1.lin = _sparse_aware_pyg_linear(in_channels, hidden)
        self.conv2 = GCNConv(hidden, num_classes, cached=False)

    def forward(self, x: Tensor | SparseFeatures, edge_index: Tensor) -> Tensor:
        """``x [N, F]``, ``edge_index [2, E]`` (row 0 sources, row 1 targets) -> logits ``[N, num_classes]``."""
        if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(
                "GCN needs the graph as edge_index [2, E] (row 0 sources, row 1 targets), got "
                f"{getattr(edge_index, 'shape', type(edge_index).__name__)}; use MLP for a model without edges"
            )
        x = _dropout(_input(x, self.in_channels), self.dropout, self.training)
        h = F.relu(self.conv1(x, edge_index))  # [N, hidden]
        h = F.dropout(h, self.dropout, self.training)
        return self.conv2(h, edge_index)


__all__ = ["GCN", "MLP"]
