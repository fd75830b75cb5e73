"""The two-layer GAT of the paper, with a switch for which layer implementation runs it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tgad_lite.gat.base import check_layer_settings
from tgad_lite.gat.dense import DenseGATLayer
from tgad_lite.gat.gatv2 import GATv2Layer
from tgad_lite.gat.naive import NaiveGATLayer
from tgad_lite.gat.sparse import SparseGATLayer
from tgad_lite.gat.sparse_features import SparseFeatures


class PyGGATLayer(nn.Module):
    """``torch_geometric.nn.GATConv`` behind the same interface (input dropout outside the conv).

    Settings are validated as for :class:`GATLayerBase`. ``x`` may be :class:`SparseFeatures`
    (densified: GATConv has no sparse-input path). ``num_targets`` keeps the first ``T`` output
    rows and, with ``return_attention``, only the attention of edges into those rows, as the
    sparse layer returns them; GATConv still computes every node.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__()
        from torch_geometric.nn import GATConv

        check_layer_settings(
            in_channels, out_channels, heads, kwargs.get("negative_slope", 0.2), dropout, input_dropout
        )
        self.input_dropout = input_dropout
        self.conv = GATConv(in_channels, out_channels, heads=heads, concat=concat, dropout=dropout, **kwargs)

    def forward(
        self,
        x: Tensor | SparseFeatures,
        edge_index: Tensor,
        return_attention: bool = False,
        num_targets: int | None = None,
    ):
        if isinstance(x, SparseFeatures) or (isinstance(x, Tensor) and x.layout != torch.strided):
            x = x.to_dense()
        x = F.dropout(x, self.input_dropout, self.training)
        if not return_attention:
            return self.conv(x, edge_index)[:num_targets]
        out, (att_ei, alpha) = self.conv(x, edge_index, return_attention_weights=True)
        if num_targets is not None:
            keep = att_ei[1] < num_targets
            out, att_ei, alpha = out[:num_targets], att_ei[:, keep], alpha[keep]
        return out, (att_ei, alpha)


LAYERS: dict[str, type[nn.Module]] = {
    "naive": NaiveGATLayer,
    "dense": DenseGATLayer,
    "sparse": SparseGATLayer,
    "gatv2": GATv2Layer,
    "pyg": PyGGATLayer,
}


class GAT(nn.Module):
    """Two GAT layers: ``heads`` x ``hidden`` concatenated + ELU, then ``out_heads`` averaged.

    Defaults are the paper's Cora settings (8 heads x 8 features, 1 output head, dropout 0.6 on
    every layer's input and attention). ``impl`` picks the layer: naive, dense, sparse, gatv2, pyg.

    ``forward(x [N, F], edge_index [2, E]) -> logits [N, num_classes]``; ``x`` may be dense, torch
    sparse or :class:`SparseFeatures` for every implementation (only naive, dense, sparse and gatv2
    use its sparsity).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        hidden: int = 8,
        heads: int = 8,
        out_heads: int = 1,
        dropout: float = 0.6,
        impl: str = "sparse",
    ) -> None:
        super().__init__()
        if impl not in LAYERS:
            raise ValueError(f"unknown GAT implementation {impl!r}; choose one of {sorted(LAYERS)}")
        layer = LAYERS[impl]
        self.impl = impl
        self.conv1 = layer(in_channels, hidden, heads=heads, concat=True, dropout=dropout, input_dropout=dropout)
        self.conv2 = layer(
            heads * hidden, num_classes, heads=out_heads, concat=False, dropout=dropout, input_dropout=dropout
        )

    def forward(
        self,
        x: Tensor | SparseFeatures,
        edge_index: Tensor | Sequence[Tensor],
        num_targets: Sequence[int] | None = None,
    ) -> Tensor:
        """``edge_index``: one ``[2, E]`` graph, or one edge set per layer (receptive-field pruning).

        ``num_targets``: per layer, how many leading nodes that layer must output (a
        :class:`~tgad_lite.gat.ReceptiveField`'s ``layer_targets``); the result is then
        ``[num_targets[-1], num_classes]``.
        """
        e1, e2 = (edge_index, edge_index) if isinstance(edge_index, Tensor) else edge_index
        t1, t2 = (None, None) if num_targets is None else num_targets
        return self.conv2(F.elu(self.conv1(x, e1, num_targets=t1)), e2, num_targets=t2)

    def forward_with_attention(self, x: Tensor | SparseFeatures, edge_index: Tensor):
        """Logits ``[N, K]``, hidden ``[N, heads*hidden]`` and per layer ``(edge_index [2, E'], alpha [E', H])``."""
        h, att1 = self.conv1(x, edge_index, return_attention=True)
        h = F.elu(h)
        out, att2 = self.conv2(h, edge_index, return_attention=True)
        return out, h, [att1, att2]
