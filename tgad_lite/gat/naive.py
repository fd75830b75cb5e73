"""GAT layer, node by node: a line-by-line transcription of the paper's equations.

For every node ``i`` with neighbourhood ``N(i)`` (its in-neighbours plus itself) and every head
(the step numbers of notebook 01):

    z_j      = W h_j                                     (1) shared linear projection
    e_ij     = LeakyReLU(a^T [z_i || z_j])               (2) raw score of neighbour j for node i
    alpha_ij = exp(e_ij) / sum_{k in N(i)} exp(e_ik)     (3) softmax over the neighbourhood
    h'_i     = sum_{j in N(i)} alpha_ij z_j              (4) attention-weighted sum

A Python loop over nodes: clear, slow (use it on graphs of a few hundred nodes). It is the
reference the ``dense`` and ``sparse`` layers are checked against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tgad_lite.gat.base import GATLayerBase, add_self_loops
from tgad_lite.gat.sparse_features import SparseFeatures


class NaiveGATLayer(GATLayerBase):
    """Per-node GAT layer. Same constructor and parameters as :class:`GATLayerBase`."""

    def forward(
        self,
        x: Tensor | SparseFeatures,
        edge_index: Tensor,
        return_attention: bool = False,
        num_targets: int | None = None,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x [N, F]``, ``edge_index [2, E]`` (source j -> target i) -> ``[N, H*C]`` or ``[N, C]``.

        With ``return_attention`` also returns ``(edge_index [2, E'], alpha [E', H])`` for the
        edges actually attended over (self loops included).
        """
        self._check_graph(x, edge_index)
        n = x.size(0)
        x_in = self._dropout_input(x)
        wh = self._project(x_in)  # (1): [N, H, C]
        if self.add_self_loops:
            edge_index = add_self_loops(edge_index, n)
        a = torch.cat([self.att_dst, self.att_src], dim=-1)[0]  # [H, 2C]: a = [a_i || a_j]

        out = wh.new_zeros(n, self.heads, self.out_channels)
        alphas = wh.new_zeros(edge_index.size(1), self.heads)
        for i in range(n):
            edge_ids = (edge_index[1] == i).nonzero().view(-1)  # edges j -> i
            if edge_ids.numel() == 0:
                continue  # no neighbours and no self loop: h'_i stays 0
            nbrs = edge_index[0, edge_ids]
            wh_i = wh[i].expand(len(nbrs), -1, -1)  # [deg, H, C]
            wh_j = wh[nbrs]  # [deg, H, C]
            e = F.leaky_relu((torch.cat([wh_i, wh_j], dim=-1) * a).sum(-1), self.negative_slope)  # (2)
            alpha = torch.softmax(e, dim=0)  # (3): over the neighbours, separately per head
            alphas[edge_ids] = alpha
            alpha = F.dropout(alpha, self.dropout, self.training)
            out[i] = (alpha.unsqueeze(-1) * wh_j).sum(dim=0)  # (4)

        # num_targets (receptive-field pruning) is an optimisation only the edge-list layers make;
        # here every node is computed, and the first num_targets rows (and the attention of the
        # edges into them) are returned, as the sparse layer returns them.
        out = self._finish(out, x_in)[:num_targets]
        return (out, self._attention_into(edge_index, alphas, num_targets)) if return_attention else out


def from_pyg(conv: torch.nn.Module, input_dropout: float = 0.0) -> NaiveGATLayer:
    """A :class:`NaiveGATLayer` with the weights of a ``torch_geometric.nn.GATConv``."""
    return NaiveGATLayer.from_pyg(conv, input_dropout)
