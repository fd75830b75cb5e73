"""What every GAT layer implementation shares: parameters, input dropout, self loops, heads.

The three implementations (``naive``, ``dense``, ``sparse``) differ only in how they compute the
attention coefficients and aggregate; they inherit the same constructor and the same parameter
names as ``torch_geometric.nn.GATConv`` (``lin.weight``, ``att_src``, ``att_dst``, ``bias``,
``res.weight``), so weights copy between them with ``load_state_dict``.
"""

from __future__ import annotations

import numbers

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


def check_layer_settings(
    in_channels: int, out_channels: int, heads: int, negative_slope: float, dropout: float, input_dropout: float
) -> None:
    """Refuse settings no attention layer can use, naming the argument and its allowed values."""
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("heads", heads)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    for name, p in (("dropout", dropout), ("input_dropout", input_dropout)):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {p!r} (0 turns it off; 1 would drop everything)")
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real) or not negative_slope >= 0.0:
        raise ValueError(f"negative_slope must be a number >= 0 (paper: 0.2), got {negative_slope!r}")


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

    Subclasses with other parameters (GATv2) override :meth:`_build_parameters` and
    :meth:`reset_parameters`; the settings, their validation and input dropout stay shared.
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
        check_layer_settings(in_channels, out_channels, heads, negative_slope, dropout, input_dropout)
        self.in_channels, self.out_channels, self.heads = int(in_channels), int(out_channels), int(heads)
        self.concat, self.negative_slope = concat, negative_slope
        self.dropout, self.input_dropout = dropout, input_dropout
        self.add_self_loops = add_self_loops
        self.res: nn.Linear | None = None
        self.bias: nn.Parameter | None = None
        self._build_parameters(bias=bias, residual=residual)
        self.reset_parameters()

    @property
    def total_out(self) -> int:
        """Output features per node: ``H*C`` (concat) or ``C`` (mean over heads)."""
        return self.heads * self.out_channels if self.concat else self.out_channels

    def _build_parameters(self, bias: bool, residual: bool) -> None:
        """GATConv's parameters: ``lin`` (W, all heads), ``att_src``/``att_dst`` (a_j, a_i), ``res``, ``bias``."""
        self.lin = nn.Linear(self.in_channels, self.heads * self.out_channels, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, self.heads, self.out_channels))
        self.att_dst = nn.Parameter(torch.empty(1, self.heads, self.out_channels))
        self.res = nn.Linear(self.in_channels, self.total_out, bias=False) if residual else None
        self.bias = nn.Parameter(torch.empty(self.total_out)) if bias else None

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
    def _check_graph(self, x: Tensor | SparseFeatures, edge_index: Tensor) -> None:
        """``edge_index`` must be ``[2, E]`` integer ids on ``x``'s device: say so before a kernel fails."""
        if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
            shape = tuple(edge_index.shape) if isinstance(edge_index, Tensor) else type(edge_index).__name__
            raise ValueError(f"edge_index must be a [2, E] tensor (sources, targets), got {shape}")
        if edge_index.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"edge_index must hold integer node ids (torch.long), got {edge_index.dtype}")
        if edge_index.device != x.device:
            raise ValueError(
                f"x is on {x.device} but edge_index on {edge_index.device}; move both to one device, "
                f"e.g. edge_index.to(x.device)"
            )

    def _dropout_input(self, x: Tensor | SparseFeatures) -> Tensor | SparseFeatures:
        """Input dropout; a sparse ``x`` (torch sparse or :class:`SparseFeatures`) stays sparse."""
        if isinstance(x, Tensor) and x.layout != torch.strided:
            x = SparseFeatures(x)
        if isinstance(x, SparseFeatures):
            return x.dropout(self.input_dropout, self.training)
        return bernoulli_free_dropout(x, self.input_dropout, self.training)

    @staticmethod
    def _linear(x: Tensor | SparseFeatures, lin: nn.Linear) -> Tensor:
        """``lin(x)`` for a dense ``x [N, F]`` or :class:`SparseFeatures`: ``[N, D]``."""
        if not isinstance(x, SparseFeatures):
            return lin(x)
        out = x.matmul(lin.weight.t())
        return out if lin.bias is None else out + lin.bias

    def _project(self, x: Tensor | SparseFeatures) -> Tensor:
        """``[N, F] -> [N, H, C]``: the shared linear map ``W h`` for every head."""
        return self._linear(x, self.lin).view(-1, self.heads, self.out_channels)

    def _finish(self, out: Tensor, x: Tensor | SparseFeatures) -> Tensor:
        """``[T, H, C]`` -> concat or mean over heads, then residual (from ``x``'s first T rows) and bias."""
        out = out.reshape(-1, self.heads * self.out_channels) if self.concat else out.mean(dim=1)
        if self.res is not None:
            out = out + self._linear(x, self.res)[: out.size(0)]
        if self.bias is not None:
            out = out + self.bias
        return out

    @staticmethod
    def _attention_into(edge_index: Tensor, alpha: Tensor, num_targets: int | None) -> tuple[Tensor, Tensor]:
        """The attention of the edges into the first ``num_targets`` nodes (all edges if None)."""
        if num_targets is None:
            return edge_index, alpha
        keep = edge_index[1] < num_targets
        return edge_index[:, keep], alpha[keep]

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, heads={self.heads}, concat={self.concat}, "
            f"dropout={self.dropout}, input_dropout={self.input_dropout}"
        )

    @classmethod
    def from_pyg(cls, conv: nn.Module, input_dropout: float = 0.0) -> GATLayerBase:
        """Build this layer with the weights and settings of a ``torch_geometric.nn.GATConv``."""
        if getattr(conv, "lin", None) is None:
            raise ValueError("bipartite GATConv (lin_src/lin_dst) is not supported; use in_channels=int")
        if getattr(conv, "edge_dim", None) is not None:
            raise ValueError("GATConv with edge_dim has edge features, which these layers do not model")
        return _copy_pyg(cls, conv, input_dropout, residual=conv.res is not None)


def _copy_pyg(cls: type[nn.Module], conv: nn.Module, input_dropout: float, **extra) -> nn.Module:
    """``cls`` built with ``conv``'s settings (a PyG GATConv or GATv2Conv) plus ``extra``, holding its weights."""
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
        **extra,
    )
    # att_edge exists only with edge features, which from_pyg refuses before getting here.
    layer.load_state_dict({k: v for k, v in conv.state_dict().items() if not k.endswith("att_edge")})
    return layer.to(next(conv.parameters()).device)
