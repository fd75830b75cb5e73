"""GATv2 (Brody, Alon & Yahav, 2022): dynamic attention, on the edge list.

GAT scores ``e_ij = LeakyReLU(a^T [W h_i || W h_j]) = LeakyReLU(a_i . W h_i + a_j . W h_j)``.
The neighbour's part ``a_j . W h_j`` does not depend on the query node ``i``, and LeakyReLU is
monotonic, so every node ranks its neighbours in the same order: GAT attention is *static*.
GATv2 moves the nonlinearity inside, ``e_ij = a^T LeakyReLU(W_r h_i + W_l h_j)``, so the ranking
can change with the query: *dynamic* attention. Parameter names follow
``torch_geometric.nn.GATv2Conv`` (``lin_l`` for sources, ``lin_r`` for targets, ``att``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tgad_lite.gat.base import GATLayerBase, _copy_pyg, add_self_loops
from tgad_lite.gat.sparse import neighbourhood_softmax
from tgad_lite.gat.sparse_features import SparseFeatures, bernoulli_free_dropout


class GATv2Layer(GATLayerBase):
    """Edge-list GATv2 layer: ``x [N, F]``, ``edge_index [2, E]`` -> ``[N, H*C]`` or ``[N, C]``.

    Same settings, validation and input dropout as :class:`GATLayerBase` (``x`` may be dense,
    torch sparse or :class:`SparseFeatures`); its own parameters carry ``GATv2Conv``'s names
    (``lin_l``, ``lin_r``, ``att``, ``bias``), so weights copy between the two with
    ``load_state_dict``. ``share_weights``: one matrix for sources and targets (``lin_r is lin_l``).
    No residual: :meth:`from_pyg` refuses a ``GATv2Conv`` that has one.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        add_self_loops: bool = True,
        bias: bool = True,
        share_weights: bool = False,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            heads=heads,
            concat=concat,
            negative_slope=negative_slope,
            dropout=dropout,
            input_dropout=input_dropout,
            add_self_loops=add_self_loops,
            bias=bias,
            residual=False,
        )
        self.share_weights = share_weights
        if share_weights:  # both names stay in the state dict, as in GATv2Conv
            self.lin_r = self.lin_l

    def _build_parameters(self, bias: bool, residual: bool) -> None:
        width = self.heads * self.out_channels
        self.lin_l = nn.Linear(self.in_channels, width, bias=bias)  # sources j
        self.lin_r = nn.Linear(self.in_channels, width, bias=bias)  # targets i
        self.att = nn.Parameter(torch.empty(1, self.heads, self.out_channels))
        self.bias = nn.Parameter(torch.empty(self.total_out)) if bias else None

    def reset_parameters(self) -> None:
        for lin in (self.lin_l, self.lin_r):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        bound = (6.0 / (self.heads + self.out_channels)) ** 0.5
        nn.init.uniform_(self.att, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(
        self,
        x: Tensor | SparseFeatures,
        edge_index: Tensor,
        return_attention: bool = False,
        num_targets: int | None = None,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
        """``num_targets``: compute only the first ``T`` nodes' outputs, as :class:`SparseGATLayer` does."""
        self._check_graph(x, edge_index)
        n, h, c = x.size(0), self.heads, self.out_channels
        t = n if num_targets is None else num_targets
        x = self._dropout_input(x)
        x_l = self._linear(x, self.lin_l).view(n, h, c)  # sources j
        x_r = x_l if self.share_weights else self._linear(x, self.lin_r).view(n, h, c)  # targets i
        if self.add_self_loops:
            edge_index = add_self_loops(edge_index, n, t)
        src, dst = edge_index
        # The nonlinearity sits between the sum and the attention vector: dynamic attention.
        e = (F.leaky_relu(x_l[src] + x_r[dst], self.negative_slope) * self.att).sum(-1)  # [E, H]
        alpha = neighbourhood_softmax(e, dst, t)
        messages = bernoulli_free_dropout(alpha, self.dropout, self.training).unsqueeze(-1) * x_l[src]
        out = x_l.new_zeros(t, h, c).index_add_(0, dst, messages)
        out = self._finish(out, x)
        return (out, (edge_index, alpha)) if return_attention else out

    @classmethod
    def from_pyg(cls, conv: nn.Module, input_dropout: float = 0.0) -> GATv2Layer:
        """Build this layer with the weights and settings of a ``torch_geometric.nn.GATv2Conv``."""
        if not isinstance(conv.in_channels, int):
            raise ValueError("bipartite GATv2Conv is not supported; use in_channels=int")
        if conv.edge_dim is not None or getattr(conv, "res", None) is not None:
            raise ValueError("GATv2Conv with edge_dim or residual is not modelled by GATv2Layer")
        return _copy_pyg(cls, conv, input_dropout, share_weights=conv.share_weights)


def from_pyg(conv: nn.Module, input_dropout: float = 0.0) -> GATv2Layer:
    """A :class:`GATv2Layer` with the weights and settings of a ``torch_geometric.nn.GATv2Conv``."""
    return GATv2Layer.from_pyg(conv, input_dropout)
