"""What every GAT layer implementation shares: parameters, input dropout, self loops, heads.

The three implementations (``naive``, ``dense``, ``sparse``) differ only in how they compute the
attention coefficients and aggregate; they inherit the same constructor and the same parameter
names as ``torch_geometric.nn.GATConv`` (``lin.weight``, ``att_src``, ``att_dst``, ``bias``,
``res.weight``), so weights copy between them with ``load_state_dict``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tgad_lite.gat.sparse_features import SparseFeatures, bernoulli_free_dropout


def add_self_loops(edge_index: Tensor, num_nodes: int, num_targets: int | None = None) -> Tensor:
    """Drop existing self loops and add exactly one per target node (as GATConv does).

    ``edge_index`` is ``[2, E]`` with row 0 the source ``j`` and row 1 the target ``i`` of a
    message ``j -> i``; the result is ``[2, E' + T]`` with the self loops last. Targets are the
    first ``num_targets`` of the ``num_nodes`` nodes (default: all of them).
    """
    num_targets = num_nodes if num_targets is None else num_targets
    if edge_index.numel() and int(edge_index.max()) >= num_nodes:
        raise ValueError(
            f"edge_index refers to node {int(edge_index.max())} but x has only {num_nodes} rows; "
            "pass the node features of the whole graph or relabel the edges"
        )
    if not 0 <= num_targets <= num_nodes:
        raise ValueError(f"num_targets must lie in 0..{num_nodes} (the rows of x), got {num_targets}")
    if edge_index.numel() and int(edge_index[1].max()) >= num_targets:
        raise ValueError(
            f"an edge points into node {int(edge_index[1].max())}, beyond the first {num_targets} "
            "(target) nodes; order nodes targets first, as receptive_field() does"
        )
    keep = edge_index[0] != edge_index[1]
    loops = torch.arange(num_targets, device=edge_index.device).repeat(2, 1)
    return torch.cat([edge_index[:, keep], loops], dim=1)


class GATLayerBase(nn.Module):
    """Multi-head graph attention layer (Veličković et al., 2018), implementation-agnostic part.

    Args:
        in_channels: F, input features per node.
        out_channels: C, output features per head.
        heads: H, number of attention heads.
        concat: concatenate the heads (output ``[N, H*C]``) or average them (``[N, C]``).
        negative_slope: LeakyReLU slope for the attention scores (paper: 0.2).
        dropout: dropout on the attention coefficients (paper: 0.6).
        input_dropout: dropout on the layer's input features (paper: 0.6). GATConv leaves this to
            the model; here it belongs to the layer so sparse inputs can be dropped out cheaply.
        add_self_loops: each node attends to itself too (paper: yes).
        bias: learnable output bias.
        residual: add a linear projection of the input to the output.
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
        residual: bool = False,
    ) -> None:
        super().__init__()
        for name, p in (("dropout", dropout), ("input_dropout", input_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.concat, self.negative_slope = concat, negative_slope
        self.dropout, self.input_dropout = dropout, input_dropout
        self.add_self_loops = add_self_loops
        total_out = heads * out_channels if concat else out_channels
        self.lin = nn.Linear(in_channels, heads * out_channels, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, heads, out_channels))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out_channels))
        self.res = nn.Linear(in_channels, total_out, bias=False) if residual else None
        self.bias = nn.Parameter(torch.empty(total_out)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.lin.weight)
        # Glorot on the [1, H, C] attention vectors, as PyG does (fan computed on the last 2 dims).
        for att in (self.att_src, self.att_dst):
            bound = (6.0 / (att.size(-2) + att.size(-1))) ** 0.5
            nn.init.uniform_(att, -bound, bound)
        if self.res is not None:
            nn.init.xavier_uniform_(self.res.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    # -- pieces every implementation calls -------------------------------------------------
    def _dropout_input(self, x: Tensor | SparseFeatures) -> Tensor | SparseFeatures:
        """Input dropout; a sparse ``x`` (torch sparse or :class:`SparseFeatures`) stays sparse."""
        if isinstance(x, Tensor) and x.layout != torch.strided:
            x = SparseFeatures(x)
        if isinstance(x, SparseFeatures):
            return x.dropout(self.input_dropout, self.training)
        return bernoulli_free_dropout(x, self.input_dropout, self.training)

    def _project(self, x: Tensor | SparseFeatures) -> Tensor:
        """``[N, F] -> [N, H, C]``: the shared linear map ``W h`` for every head."""
        h = x.matmul(self.lin.weight.t()) if isinstance(x, SparseFeatures) else self.lin(x)
        return h.view(-1, self.heads, self.out_channels)

    def _finish(self, out: Tensor, x: Tensor | SparseFeatures) -> Tensor:
        """``[T, H, C]`` -> concat or mean over heads, then residual (from ``x``'s first T rows) and bias."""
        out = out.reshape(-1, self.heads * self.out_channels) if self.concat else out.mean(dim=1)
        if self.res is not None:
            res = x.matmul(self.res.weight.t()) if isinstance(x, SparseFeatures) else self.res(x)
            out = out + res[: out.size(0)]
        if self.bias is not None:
            out = out + self.bias
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, heads={self.heads}, concat={self.concat}, "
            f"dropout={self.dropout}, input_dropout={self.input_dropout}"
        )

    @classmethod
    def from_pyg(cls, conv: nn.Module, input_dropout: float = 0.0) -> "GATLayerBase":
        """Build this layer with the weights and settings of a ``torch_geometric.nn.GATConv``."""
        if getattr(conv, "lin", None) is None:
            raise ValueError("bipartite GATConv (lin_src/lin_dst) is not supported; use in_channels=int")
        if getattr(conv, "edge_dim", None) is not None:
            raise ValueError("GATConv with edge_dim has edge features, which these layers do not model")
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            heads=conv.heads,
            concat=conv.concat,
            negative_slope=conv.negative_slope,
            dropout=conv.dropout,
            input_dropout=input_dropout,
            add_self_loops=conv.add_self_loops,
            bias=conv.bias is not None,
            residual=conv.res is not None,
        )
        state = {k: v for k, v in conv.state_dict().items() if not k.endswith("att_edge")}
        layer.load_state_dict(state)
        return layer.to(next(conv.parameters()).device)
