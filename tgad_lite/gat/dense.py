"""GAT layer on a dense ``[H, N, N]`` score matrix masked outside the adjacency.

The original paper's implementation style: score every pair of nodes, then put ``-inf`` where
there is no edge so the row-wise softmax only sees the neighbourhood. Because
``a^T [W h_i || W h_j] = a_i . W h_i + a_j . W h_j``, the scores are an outer *sum* of two
``[H, N]`` vectors, computed for all pairs at once by broadcasting. Time and memory are
O(H N^2): fine for Cora (2708 nodes, 59M scores), out of room on graphs of tens of thousands.

A dense mask holds one entry per node pair, so repeated edges count once here (GATConv and the
other layers count them as often as they appear). Coalesce such graphs first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tgad_lite.gat.base import GATLayerBase, add_self_loops
from tgad_lite.gat.sparse_features import SparseFeatures


class DenseGATLayer(GATLayerBase):
    """Dense masked GAT layer. Same constructor and parameters as :class:`GATLayerBase`."""

    def forward(
        self,
        x: Tensor | SparseFeatures,
        edge_index: Tensor,
        return_attention: bool = False,
        num_targets: int | None = None,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x [N, F]``, ``edge_index [2, E]`` -> ``[N, H*C]`` (concat) or ``[N, C]`` (mean).

        ``x`` may be dense, torch sparse or :class:`SparseFeatures`, as for the sparse layer.
        """
        self._check_graph(x, edge_index)
        n = x.size(0)
        x_in = self._dropout_input(x)
        wh = self._project(x_in)  # [N, H, C]
        if self.add_self_loops:
            edge_index = add_self_loops(edge_index, n)
        adj = torch.zeros(n, n, dtype=torch.bool, device=wh.device)
        adj[edge_index[1], edge_index[0]] = True  # adj[i, j]: j -> i, row i is i's neighbourhood

        s_dst = (wh * self.att_dst).sum(-1).t()  # [H, N]  a_i . W h_i
        s_src = (wh * self.att_src).sum(-1).t()  # [H, N]  a_j . W h_j
        e = F.leaky_relu(s_dst.unsqueeze(2) + s_src.unsqueeze(1), self.negative_slope)  # [H, N, N]
        e = e.masked_fill(~adj, float("-inf"))
        # Without self loops an isolated node's row is all -inf, whose softmax is NaN: give such a
        # row finite scores and zero its attention instead, so values and gradients stay finite.
        lonely = ~adj.any(dim=-1)  # [N]
        e = e.masked_fill(lonely[None, :, None], 0.0)
        alpha = torch.softmax(e, dim=-1).masked_fill(lonely[None, :, None], 0.0)
        alpha_dropped = F.dropout(alpha, self.dropout, self.training)
        out = torch.bmm(alpha_dropped, wh.transpose(0, 1))  # [H, N, N] @ [H, N, C] -> [H, N, C]

        out = self._finish(out.transpose(0, 1), x_in)[:num_targets]  # see NaiveGATLayer on num_targets
        if not return_attention:
            return out
        edge_alpha = alpha[:, edge_index[1], edge_index[0]].t()  # [E', H]
        return out, self._attention_into(edge_index, edge_alpha, num_targets)


def from_pyg(conv: torch.nn.Module, input_dropout: float = 0.0) -> DenseGATLayer:
    """A :class:`DenseGATLayer` with the weights of a ``torch_geometric.nn.GATConv``."""
    return DenseGATLayer.from_pyg(conv, input_dropout)
