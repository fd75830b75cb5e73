"""Graph attention over a complete graph of K nodes, batched: MTAD-GAT's feature and time layers.

MTAD-GAT (Zhao et al. 2020, arXiv 2009.02040) treats a window ``x [B, W, F]`` as two complete graphs:

* feature-oriented: ``K = F`` nodes, node ``i`` is feature ``i``'s series over the window (``D = W``);
* time-oriented: ``K = W`` nodes, node ``t`` is the ``F`` values at step ``t`` (``D = F``).

Every node attends to every node (itself included), so the score matrix is dense ``[B, K, K]``.

GAT (default). The score ``e_ij = LeakyReLU(a^T [W v_i || W v_j])`` splits as
``a_1^T W v_i + a_2^T W v_j``: one number per node and side, then an outer sum. That costs
``[B, K, E]`` for the projection and ``[B, K, K]`` for the scores; the popular PyTorch port builds the
concatenation ``[B, K, K, 2E]`` first (256 x 100 x 100 x 110 floats for the time layer), which is where
its time and memory go. GATv2 (``e_ij = a^T LeakyReLU(W [v_i || v_j])``) cannot split, because the
nonlinearity sits between ``W`` and ``a``: it needs the pairwise ``[B, K, K, E]`` tensor, so it is
computed ``chunk_size`` windows at a time, and under autograd each chunk is checkpointed (recomputed in
the backward pass) so the pairwise tensors of the whole batch are never alive together.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

GAT_CHOICES = ("gat", "gatv2")
AGGREGATE_CHOICES = ("input", "projected")


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class CompleteGraphAttention(nn.Module):
    """One graph-attention layer on a complete graph: ``nodes [B, K, D]`` -> ``[B, K, D']``.

    ``D' = D`` with ``aggregate="input"`` (default), ``D' = embed_dim`` with ``"projected"``.

    Output. As we read the paper (its eq. for ``h_i``), and as the popular port does, the layer
    outputs ``h_i = sigmoid(sum_j alpha_ij v_j)``: the attention mixes the *original* node vectors
    ``v_j``, and the learnt projection ``W`` only shapes the scores. That keeps each output in its
    input's space (feature ``i`` over the window, or step ``t``'s features), which is what lets
    MTAD-GAT concatenate ``[x, h_feature, h_time]`` step by step. ``aggregate="projected"`` gives the
    original GAT's ``sigmoid(sum_j alpha_ij W v_j)`` instead (GAT only; ``D' = embed_dim``).

    Args:
        num_nodes: ``K``; fixes the shape of the optional score bias ``[K, K]``.
        node_dim: ``D``, the length of each node vector.
        embed_dim: width of ``W``. Default as the port: ``D`` for GAT, ``2 D`` for GATv2.
        gat: ``"gat"`` (decomposed, ``[B, K, K]`` memory) or ``"gatv2"`` (pairwise, chunked).
        negative_slope: LeakyReLU slope (0.2 as in GAT).
        dropout: dropout on the attention weights after the softmax (training only).
        bias: a learnt ``[K, K]`` term added to the scores, as in the port.
        aggregate: ``"input"`` or ``"projected"``, see above.
        chunk_size: GATv2 only: windows per chunk of the pairwise tensor (``None``: the whole batch,
            no checkpointing). Peak extra memory is about ``chunk_size * K * K * embed_dim`` floats.

    Parameter names follow the port (``lin``, ``a`` of shape ``[2E, 1]`` for GAT and ``[E, 1]`` for
    GATv2, ``bias``), so its state dicts load here.
    """

    def __init__(
        self,
        num_nodes: int,
        node_dim: int,
        embed_dim: int | None = None,
        gat: str = "gat",
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        bias: bool = True,
        aggregate: str = "input",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.num_nodes = _positive_int("num_nodes", num_nodes)
        self.node_dim = _positive_int("node_dim", node_dim)
        if gat not in GAT_CHOICES:
            raise ValueError(f"gat must be one of {'|'.join(GAT_CHOICES)}, got {gat!r}")
        if aggregate not in AGGREGATE_CHOICES:
            raise ValueError(f"aggregate must be one of {'|'.join(AGGREGATE_CHOICES)}, got {aggregate!r}")
        if aggregate == "projected" and gat == "gatv2":
            raise ValueError(
                "aggregate='projected' is defined for gat='gat' only (GATv2 projects the concatenated pair, "
                "not each node); use aggregate='input' with GATv2"
            )
        if embed_dim is None:
            embed_dim = node_dim if gat == "gat" else 2 * node_dim
        self.embed_dim = _positive_int("embed_dim", embed_dim)
        if chunk_size is not None:
            _positive_int("chunk_size", chunk_size)
        if not isinstance(dropout, int | float) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r} (0 turns it off)")
        if not isinstance(negative_slope, int | float) or negative_slope < 0:
            raise ValueError(f"negative_slope must be a number >= 0 (GAT: 0.2), got {negative_slope!r}")
        self.gat = gat
        self.aggregate = aggregate
        self.chunk_size = chunk_size
        self.negative_slope = float(negative_slope)
        self.dropout = float(dropout)
        in_dim = node_dim if gat == "gat" else 2 * node_dim
        a_dim = 2 * self.embed_dim if gat == "gat" else self.embed_dim
        self.lin = nn.Linear(in_dim, self.embed_dim)
        self.a = nn.Parameter(torch.empty(a_dim, 1))
        self.bias = nn.Parameter(torch.zeros(num_nodes, num_nodes)) if bias else None
        nn.init.xavier_uniform_(self.a, gain=1.414)  # the port's initialisation

    @property
    def out_dim(self) -> int:
        """``D'``: ``node_dim`` for ``aggregate="input"``, ``embed_dim`` for ``"projected"``."""
        return self.node_dim if self.aggregate == "input" else self.embed_dim

    def scores(self, v: Tensor) -> Tensor:
        """Raw scores ``e [B, K, K]`` (bias included, before the softmax) for nodes ``v [B, K, D]``."""
        if self.gat == "gat":
            wv = self.lin(v)  # [B, K, E]
            e = self._gat_scores(wv)
        else:
            e = self._gatv2_scores(v)
        if self.bias is not None:
            e = e + self.bias
        return e

    def _gat_scores(self, wv: Tensor) -> Tensor:
        # a^T [W v_i || W v_j] = a_1 . W v_i + a_2 . W v_j: two numbers per node, then an outer sum.
        a = self.a.view(2, self.embed_dim)  # row 0 multiplies the query i, row 1 the neighbour j
        s = wv @ a.t()  # [B, K, 2]
        return F.leaky_relu(s[..., 0, None] + s[..., None, :, 1], self.negative_slope)  # [B, K, K]

    def _gatv2_scores(self, v: Tensor) -> Tensor:
        # W [v_i || v_j] + b = W_i v_i + W_j v_j + b: project each node once, then form the pairwise
        # sum, never the [B, K, K, 2D] concatenation. The LeakyReLU between W and a forbids going further.
        d = self.node_dim
        left = F.linear(v, self.lin.weight[:, :d], self.lin.bias)  # [B, K, E], query side i
        right = F.linear(v, self.lin.weight[:, d:])  # [B, K, E], neighbour side j
        chunk = self.chunk_size or v.shape[0]
        if chunk >= v.shape[0]:
            return self._pairwise(left, right, self.a)
        parts = []
        for start in range(0, v.shape[0], chunk):  # a loop over chunks of windows, bounded memory
            lc, rc = left[start : start + chunk], right[start : start + chunk]
            if torch.is_grad_enabled() and (lc.requires_grad or rc.requires_grad or self.a.requires_grad):
                # Without checkpointing, autograd would keep every chunk's [c, K, K, E] tensor alive
                # until the backward pass, and chunking would bound nothing.
                parts.append(checkpoint(self._pairwise, lc, rc, self.a, use_reentrant=False))
            else:
                parts.append(self._pairwise(lc, rc, self.a))
        return torch.cat(parts, dim=0)

    def _pairwise(self, left: Tensor, right: Tensor, a: Tensor) -> Tensor:
        pair = F.leaky_relu(left[:, :, None, :] + right[:, None, :, :], self.negative_slope)  # [c, K, K, E]
        return (pair @ a).squeeze(-1)  # [c, K, K]

    def forward(self, v: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """``v [B, K, D]`` -> ``h [B, K, D']``, and the attention ``[B, K, K]`` (rows sum to 1) if asked.

        The returned attention is the softmax before dropout, so it is a distribution even in training.
        """
        if v.dim() != 3 or v.shape[1] != self.num_nodes or v.shape[2] != self.node_dim:
            raise ValueError(
                f"nodes must be [B, {self.num_nodes}, {self.node_dim}] (batch, nodes, node_dim), "
                f"got {list(v.shape)}; build the layer with num_nodes/node_dim matching the data"
            )
        attention = torch.softmax(self.scores(v), dim=-1)  # over the neighbours j
        weights = F.dropout(attention, self.dropout, self.training)
        values = v if self.aggregate == "input" else self.lin(v)
        h = torch.sigmoid(weights @ values)
        return (h, attention) if return_attention else h

    def extra_repr(self) -> str:
        return (
            f"num_nodes={self.num_nodes}, node_dim={self.node_dim}, embed_dim={self.embed_dim}, gat={self.gat!r}, "
            f"aggregate={self.aggregate!r}, dropout={self.dropout}, bias={self.bias is not None}, "
            f"chunk_size={self.chunk_size}"
        )


class FeatureAttention(CompleteGraphAttention):
    """Feature-oriented layer: ``x [B, W, F]`` -> ``[B, W, F]``; nodes are the F features (``D = W``).

    ``return_attention=True`` also returns ``[B, F, F]``: row ``i`` says how much feature ``i``
    draws on each feature ``j``.
    """

    def __init__(self, n_features: int, window: int, **kwargs) -> None:
        super().__init__(num_nodes=n_features, node_dim=window, **kwargs)
        if self.out_dim != window:
            raise ValueError("FeatureAttention must return [B, W, F]: embed_dim must equal window with 'projected'")

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if x.dim() != 3:
            raise ValueError(f"x must be [B, W, F] (batch, window, features), got {list(x.shape)}")
        out = super().forward(x.transpose(1, 2), return_attention=return_attention)
        if return_attention:
            return out[0].transpose(1, 2), out[1]
        return out.transpose(1, 2)


class TimeAttention(CompleteGraphAttention):
    """Time-oriented layer: ``x [B, W, F]`` -> ``[B, W, F]``; nodes are the W steps (``D = F``).

    ``return_attention=True`` also returns ``[B, W, W]``: row ``t`` weighs the steps step ``t`` draws on.
    """

    def __init__(self, n_features: int, window: int, **kwargs) -> None:
        super().__init__(num_nodes=window, node_dim=n_features, **kwargs)
        if self.out_dim != n_features:
            raise ValueError("TimeAttention must return [B, W, F]: embed_dim must equal n_features with 'projected'")
