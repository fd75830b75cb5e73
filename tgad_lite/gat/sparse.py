"""GAT layer on the edge list: O(E) memory, the shape every production GNN library uses.

Scores are computed only for existing edges (``[E, H]``), the softmax runs over each target's
incoming edges with scatter operations, and messages are summed into their targets with
``index_add_``. The softmax subtracts each neighbourhood's maximum before ``exp``, exactly as
``torch.softmax`` does within a row, so large scores cannot overflow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tgad_lite.gat.base import GATLayerBase, add_self_loops
from tgad_lite.gat.sparse_features import SparseFeatures, bernoulli_free_dropout


def neighbourhood_softmax(scores: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Softmax of ``scores [E, H]`` over the edges that share a target ``index [E]``.

    ``alpha_e = exp(s_e - max_{e' -> i} s_e') / sum_{e' -> i} exp(s_e' - max)``, for ``e -> i``.
    """
    idx = index.unsqueeze(-1).expand_as(scores)
    smax = scores.detach().new_full((num_nodes, scores.size(1)), float("-inf"))
    # The max is a constant shift: taking it without gradient changes no value or gradient.
    smax = smax.scatter_reduce(0, idx, scores.detach(), reduce="amax", include_self=True)
    exp = (scores - smax.index_select(0, index)).exp()
    denom = exp.new_zeros(num_nodes, scores.size(1)).index_add_(0, index, exp)
    return exp / denom.index_select(0, index)


class SparseGATLayer(GATLayerBase):
    """Edge-list GAT layer. Same constructor and parameters as :class:`GATLayerBase`.

    ``x`` may be a dense ``[N, F]`` tensor, a torch sparse one, or a
    :class:`~tgad_lite.gat.sparse_features.SparseFeatures` (bag-of-words features, built once):
    then input dropout touches only the non-zeros and the projection is a sparse matmul.
    """

    def forward(
        self,
        x: Tensor | SparseFeatures,
        edge_index: Tensor,
        return_attention: bool = False,
        num_targets: int | None = None,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x [N, F]``, ``edge_index [2, E]`` -> ``[N, H*C]`` (concat) or ``[N, C]`` (mean).

        ``num_targets``: compute only the first ``T`` nodes' outputs (``[T, ...]``); every edge
        must point into them. A receptive field lists its nodes targets first, so each layer
        of a pruned forward pass skips the rows the next layer never reads.
        """
        self._check_graph(x, edge_index)
        n = x.size(0)
        t = n if num_targets is None else num_targets
        x_in = self._dropout_input(x)
        wh = self._project(x_in)  # [N, H, C]
        if self.add_self_loops:
            edge_index = add_self_loops(edge_index, n, t)
        src, dst = edge_index

        s_src = (wh * self.att_src).sum(-1)  # [N, H]  a_j . W h_j
        s_dst = (wh[:t] * self.att_dst).sum(-1)  # [T, H]  a_i . W h_i, targets only
        # index_select, not wh[src]: same values, but its backward is a fast index_add.
        e = F.leaky_relu(s_src.index_select(0, src) + s_dst.index_select(0, dst), self.negative_slope)
        alpha = neighbourhood_softmax(e, dst, t)  # [E, H], one coefficient per edge and head
        alpha_dropped = bernoulli_free_dropout(alpha, self.dropout, self.training)
        messages = alpha_dropped.unsqueeze(-1) * wh.index_select(0, src)  # [E, H, C]
        out = wh.new_zeros(t, self.heads, self.out_channels).index_add_(0, dst, messages)

        out = self._finish(out, x_in)
        return (out, (edge_index, alpha)) if return_attention else out


def from_pyg(conv: torch.nn.Module, input_dropout: float = 0.0) -> SparseGATLayer:
    """A :class:`SparseGATLayer` with the weights of a ``torch_geometric.nn.GATConv``."""
    return SparseGATLayer.from_pyg(conv, input_dropout)
