"""The GAT paper's inductive model for PPI: three sparse GAT layers, skip connections, 121 logits.

Veličković et al. (2018), section 3.3: "a three-layer GAT model. Both of the first two layers
consist of K = 4 attention heads computing F' = 256 features (for a total of 1024 features),
followed by an ELU nonlinearity. The final layer is used for (multi-label) classification:
K = 6 attention heads computing 121 features each, that are averaged and followed by a logistic
sigmoid activation." No dropout or L2; "skip connections across the intermediate attentional
layer". In the authors' code the skip is a learned projection of the layer's input added to its
output before the ELU (``h_2 = ELU(GAT_2(h_1) + W_s h_1)``), on the middle layer only.

:class:`PPIGAT` returns the *logits* (the sigmoid lives in the loss,
``binary_cross_entropy_with_logits``, and a label is predicted present when its logit is > 0,
i.e. its probability > 0.5). Every layer is the package's :class:`~tgad_lite.gat.SparseGATLayer`;
its ``residual=True`` is that skip projection (``res``, a bias-free linear map).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from tgad_lite.gat.sparse import SparseGATLayer

# Which layers get a skip connection: "intermediate" (the paper: every layer but the first and the
# last), "all" (PyG's PPI example: a linear skip on every layer), "none".
SKIPS = ("intermediate", "all", "none")


class PPIGAT(nn.Module):
    """Multi-label GAT for inductive node classification; defaults are the paper's PPI model.

    Args:
        in_channels: F, features per node (PPI: 50).
        num_labels: L, independent binary labels per node (PPI: 121).
        hidden: features per head in every layer but the last (paper: 256).
        heads: heads per layer, one entry per layer (paper: ``(4, 4, 6)``, three layers). Every
            layer but the last concatenates its heads and applies ELU; the last one averages its
            heads into ``L`` logits.
        skip: ``"intermediate"`` (the paper), ``"all"`` or ``"none"``: see :data:`SKIPS`.
        negative_slope: LeakyReLU slope of the attention scores (paper: 0.2).

    ``forward(x [N, F], edge_index [2, E]) -> logits [N, L]``. A PyG batch of several graphs is
    one graph with ``N`` the total node count: no edge joins two graphs, so attention never mixes
    them. No dropout anywhere (the paper found none needed on PPI).
    """

    def __init__(
        self,
        in_channels: int = 50,
        num_labels: int = 121,
        *,
        hidden: int = 256,
        heads: Sequence[int] = (4, 4, 6),
        skip: str = "intermediate",
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        heads = tuple(heads)
        if len(heads) < 2:
            raise ValueError(f"heads needs one count per layer and at least two layers, got {heads!r}")
        if any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in heads):
            raise ValueError(f"heads must hold positive ints (one per layer), got {heads!r}")
        if skip not in SKIPS:
            raise ValueError(f"skip must be one of {'|'.join(SKIPS)}, got {skip!r}")
        self.heads, self.hidden, self.skip = heads, int(hidden), skip
        self.num_labels = int(num_labels)
        last = len(heads) - 1
        layers = []
        width = in_channels
        for i, h in enumerate(heads):
            residual = skip == "all" or (skip == "intermediate" and 0 < i < last)
            out = num_labels if i == last else hidden
            layers.append(
                SparseGATLayer(width, out, heads=h, concat=i < last, negative_slope=negative_slope, residual=residual)
            )
            width = h * hidden
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """``x [N, F]``, ``edge_index [2, E]`` (row 0 sources, row 1 targets) -> logits ``[N, L]``."""
        h = x
        for layer in self.layers[:-1]:
            h = F.elu(layer(h, edge_index))  # [N, heads * hidden]: heads concatenated (skip added inside)
        return self.layers[-1](h, edge_index)  # [N, L]: the output heads averaged

    def forward_with_attention(
        self, x: Tensor, edge_index: Tensor
    ) -> tuple[Tensor, list[Tensor], list[tuple[Tensor, Tensor]]]:
        """Logits ``[N, L]``, the hidden representations (``[N, heads * hidden]`` per hidden layer)
        and per layer the attention ``(edge_index [2, E'], alpha [E', H])``.

        Each layer's ``edge_index`` is the one it attended over: the input's self loops dropped,
        one self loop per node appended at the end, so ``E' = E - (self loops in the input) + N``
        and ``alpha[k]`` belongs to column ``k`` of *that* edge_index, not of the input's.
        """
        h, hiddens, attention = x, [], []
        for i, layer in enumerate(self.layers):
            h, att = layer(h, edge_index, return_attention=True)
            attention.append(att)
            if i < len(self.layers) - 1:
                h = F.elu(h)
                hiddens.append(h)
        return h, hiddens, attention


__all__ = ["SKIPS", "PPIGAT"]
