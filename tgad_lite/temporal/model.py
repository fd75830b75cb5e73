"""Temporal GAT: per-service risk from windows of service telemetry on a dependency graph.

One batch of windows ``x [B, S, N, F]`` (B windows, S steps, N services, F metrics) on one service
graph ``edge_index [2, E]`` goes through:

1. **Inputs with their mask.** ``mask [B, S, N, F]`` (True = observed) is recorded first, unobserved
   values (NaN allowed there) are replaced by 0, and the mask joins the values as ``F`` extra input
   channels (``2F`` per node): a missing metric never looks like a metric that read 0. A service with
   no observed metric at a step is still a node (its input is all zeros, its mask channels say so).
   Without a mask every value must be finite and the mask channels are all ones.
2. **Input projection** ``2F -> D`` (``D = hidden``), one linear map per node and step.
3. **Graph encoder**: ``num_layers`` (default 2) GATv2 layers (``torch_geometric.nn.GATv2Conv``,
   ``heads`` heads of ``D / heads`` features, concatenated), each as
   ``h <- LayerNorm(h + Dropout(ELU(GATv2(h))))``. All ``B x S`` snapshots go through each layer in
   ONE call: mathematically one disjoint-union graph of ``B * S * N`` nodes (:meth:`TemporalGAT.union_edges`),
   computed on the one snapshot graph they share (see "Batched GATv2" below).
4. **Recurrent layer** (``recurrent="lstm"``, ``"gru"`` or ``"mingru"``, hidden ``D``) over the ``S``
   steps, every service of every window in ONE call: a ``[B * N, S, D]`` batch. ``"mingru"``
   (:class:`~tgad_lite.temporal.mingru.MinGRU`) gates on the input only, so the streaming monitor
   needs no matrix product per window step (the fast choice there, with ``num_layers=1``).
5. **Risk head** on the last step's state: ``Linear(D, D) -> ELU -> Dropout -> Linear(D, 1)`` gives
   ``logits [B, N]``; ``risk = sigmoid(logits)``, the probability that each service is in an incident
   at the LAST step of its window. Train on ``logits`` (``binary_cross_entropy_with_logits``).

Node-first layout. Node states are ``[B, N, S, D]``: node ``n`` of window ``b`` at step ``s`` is row
``(b * N + n) * S + s``, so the encoder's output *is* the recurrent layer's ``[B * N, S, D]`` input
(a view, no copy); only the ``2F``-wide input is permuted, once.

Batched GATv2. Every snapshot has the same ``E'`` message edges (:meth:`TemporalGAT.message_edges`),
so the graph layers index the service axis (dim 1 of ``[B, N, S, D]``) with those ``E'`` edges
instead of a ``B * S * E'`` union edge list: gathers and sums move whole ``[S, D]`` blocks, and
nothing is built per batch shape. :meth:`TemporalGAT._gatv2` runs a layer's own weights with
``GATv2Conv``'s arithmetic (same score, PyG's ``softmax``, attention dropout, sum of messages, bias)
in fewer, larger operations (why each, in its comments). On this CPU-bound, memory-bound step
(4096 nodes, 14336 message edges at B=64, S=8 on the shop) every ``[B, E', S, D]`` temporary
costs about as much as an arithmetic pass, so the layer makes as few as it can. The tests check
outputs, attention and every gradient against the loop reference that calls ``GATv2Conv`` itself.
Where autograd's own backward pass was wasteful, two small autograd Functions give the same
gradients in fewer passes (:class:`_EdgeSoftmax`, :class:`_SumMessages`), and dropout draws its
masks more cheaply than ``F.dropout`` (:func:`_keep_mask`; same distribution).

Message direction. ``GATv2Conv`` sends messages from ``edge_index[0]`` to ``edge_index[1]``. In a
:class:`~tgad_lite.data.microservices.ServiceGraph` row 0 is the caller and row 1 the callee, while
incidents propagate the other way (a sick callee makes its callers slow). ``direction="both"``
(default) therefore passes messages along the given edges AND their reverses; ``"forward"`` uses
the given edges only, ``"reverse"`` only their reverses.

Nothing depends on the topology: a model trained on some graphs runs on any other (any N, any E).

No-graph model. ``TemporalGAT(F, graph=False)`` is the same model without step 3: input projection
-> recurrent layer -> risk head, with the same widths and dropout (its initial weights are not those
of a graph model built from the same seed: the graph layers draw in between). It never reads
``edge_index`` (``None`` is accepted), so its output is the same on any graph: the difference
between the two models trained alike is what the graph encoder adds, everything else equal. It
has no attention.

Mixed precision: no dtype is hard-coded, so the forward pass runs under ``torch.autocast``.
"""

from __future__ import annotations

import numbers
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from tgad_lite.temporal.mingru import MinGRU

RECURRENT_CHOICES = ("lstm", "gru", "mingru")
DIRECTION_CHOICES = ("both", "forward", "reverse")


class TemporalGATOutput(NamedTuple):
    """What :meth:`TemporalGAT.forward` returns.

    Attributes:
        risk: ``[B, N]`` probability that each service is in an incident at the window's last step.
        logits: ``[B, N]`` the same before the sigmoid (for ``binary_cross_entropy_with_logits``).
        attention: ``[B, S, E', H]`` attention of the LAST graph layer (``None`` unless
            ``return_attention=True``): ``attention[b, s, k, h]`` is head ``h``'s weight of message
            edge ``k`` in window ``b`` at step ``s``; over the edges into one node it sums to 1. In
            train mode it is what ``GATv2Conv`` returns, after attention dropout (zeros and ``1/(1-p)``
            scaling): read attention from a model in ``eval()`` mode.
        attention_edge_index: ``[2, E']`` the message edges ``(source, target)`` that ``k`` indexes,
            in service ids: the given edges (self loops dropped), then (``direction="both"``) their
            reverses, then one self loop per service ``0..N-1``. See :meth:`TemporalGAT.message_edges`.
        layer_attention: one ``[B, S, E', H]`` tensor per graph layer, first to last
            (``layer_attention[-1] is attention``).
    """

    risk: Tensor
    logits: Tensor
    attention: Tensor | None = None
    attention_edge_index: Tensor | None = None
    layer_attention: tuple[Tensor, ...] | None = None


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class TemporalGAT(nn.Module):
    """GATv2 encoder per snapshot, recurrent layer per service, risk per service (module docstring).

    Args:
        num_features: ``F``, metrics per service and step.
        hidden: ``D``, width of every node state (input projection, graph layers, recurrent layer);
            a multiple of ``heads``.
        heads: ``H``, attention heads per graph layer, each ``D / H`` wide, concatenated.
        num_layers: graph layers (the issue's encoder: 2; ``None``: 2, or 0 with ``graph=False``).
        dropout: on each graph layer's output before the residual sum, on the attention
            coefficients, and inside the risk head; in ``[0, 1)``.
        recurrent: ``"lstm"``, ``"gru"`` or ``"mingru"`` (gates from the input only: a streaming
            monitor's step then needs no product per window step; see :mod:`tgad_lite.temporal.mingru`).
        direction: which way messages flow along ``edge_index``: ``"both"`` (default), ``"forward"``
            (row 0 -> row 1, caller -> callee in a ``ServiceGraph``) or ``"reverse"``.
        negative_slope: LeakyReLU slope inside GATv2's score.
        graph: ``False`` builds the no-graph model (module docstring): no graph layers, ``edge_index``
            ignored, no attention; ``num_layers`` must then be left unset (or 0).

    ``forward(x [B, S, N, F], edge_index [2, E], mask=None, return_attention=False)`` ->
    :class:`TemporalGATOutput`.
    """

    def __init__(
        self,
        num_features: int,
        *,
        hidden: int = 32,
        heads: int = 4,
        num_layers: int | None = None,
        dropout: float = 0.1,
        recurrent: str = "lstm",
        direction: str = "both",
        negative_slope: float = 0.2,
        graph: bool = True,
    ) -> None:
        super().__init__()
        from torch_geometric.nn import GATv2Conv

        self.num_features = _positive_int("num_features", num_features)
        self.hidden = _positive_int("hidden", hidden)
        self.heads = _positive_int("heads", heads)
        if not isinstance(graph, bool):
            raise ValueError(f"graph must be True (the temporal GAT) or False (the no-graph model), got {graph!r}")
        self.graph = graph
        if not graph:
            if num_layers not in (None, 0) or isinstance(num_layers, bool):
                raise ValueError(
                    f"graph=False builds the model without graph layers, but num_layers={num_layers!r} was given; "
                    "leave num_layers unset (or 0), or use graph=True for a model with graph layers"
                )
            self.num_layers = 0
        elif num_layers is None:
            self.num_layers = 2
        else:
            try:
                self.num_layers = _positive_int("num_layers", num_layers)
            except ValueError as exc:
                raise ValueError(f"{exc} (for the model without graph layers pass graph=False)") from None
        if self.hidden % self.heads:
            raise ValueError(
                f"hidden ({hidden}) must be a multiple of heads ({heads}): each head gets hidden / heads "
                f"features; e.g. hidden={self.heads * max(1, round(self.hidden / self.heads))}"
            )
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r} (0 turns it off)")
        if recurrent not in RECURRENT_CHOICES:
            raise ValueError(f"recurrent must be one of {'|'.join(RECURRENT_CHOICES)}, got {recurrent!r}")
        if direction not in DIRECTION_CHOICES:
            raise ValueError(f"direction must be one of {'|'.join(DIRECTION_CHOICES)}, got {direction!r}")
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real) or negative_slope < 0:
            raise ValueError(f"negative_slope must be a number >= 0 (GATv2: 0.2), got {negative_slope!r}")
        self.dropout_p, self.recurrent, self.direction = float(dropout), recurrent, direction
        self.negative_slope = float(negative_slope)

        d = self.hidden
        # Values and mask channels side by side: 2F inputs per node and step.
        self.input_proj = nn.Linear(2 * self.num_features, d)
        # add_self_loops=False: the self loops are added once per graph in message_edges (and so
        # appear, in a documented place, in the returned attention), not again per call.
        self.convs = nn.ModuleList(
            GATv2Conv(
                d, d // self.heads, heads=self.heads, concat=True, dropout=dropout, add_self_loops=False,
                negative_slope=negative_slope,
            )
            for _ in range(self.num_layers)
        )  # fmt: skip
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(self.num_layers))
        # The dropout after each graph layer. forward applies it as one fused step with the residual
        # sum (_keep_mask); the module is the layer's dropout as the loop reference applies it.
        self.dropout = nn.Dropout(dropout)
        if recurrent == "mingru":
            self.rnn = MinGRU(d, d)
        else:
            self.rnn = (nn.LSTM if recurrent == "lstm" else nn.GRU)(d, d, batch_first=True)
        self.head = nn.Sequential(nn.Linear(d, d), nn.ELU(), nn.Dropout(dropout), nn.Linear(d, 1))

    @property
    def config(self) -> dict:
        """The constructor's arguments: ``TemporalGAT(**model.config)`` builds the same architecture
        (for checkpoints: save it beside the state dict)."""
        return {
            "num_features": self.num_features,
            "hidden": self.hidden,
            "heads": self.heads,
            "num_layers": self.num_layers,
            "dropout": self.dropout_p,
            "recurrent": self.recurrent,
            "direction": self.direction,
            "negative_slope": self.negative_slope,
            "graph": self.graph,
        }

    def extra_repr(self) -> str:
        if not self.graph:
            return f"num_features={self.num_features}, graph=False"
        return f"num_features={self.num_features}, direction={self.direction!r}"

    # -- graphs ------------------------------------------------------------------------------
    def message_edges(self, edge_index: Tensor, num_nodes: int) -> Tensor:
        """The edges messages flow along in one snapshot, self loops included: ``[2, E']``.

        Order: the given edges minus any self loops, in their given order (``direction`` ``"both"``
        or ``"forward"``); then the same edges reversed (``"both"`` or ``"reverse"``); then one self
        loop per node ``0..num_nodes-1``, as PyG's ``add_self_loops`` appends them. So
        ``E' = 2E + N`` for ``"both"`` on a graph without self loops, ``E + N`` otherwise. This is the
        order of the attention's edge axis. A pair listed twice gets two messages (GATConv does the same).
        """
        ei = _check_edge_index(edge_index, num_nodes)
        ei = ei[:, ei[0] != ei[1]]
        parts = []
        if self.direction in ("both", "forward"):
            parts.append(ei)
        if self.direction in ("both", "reverse"):
            parts.append(ei.flip(0))
        parts.append(torch.arange(num_nodes, device=ei.device).expand(2, num_nodes))
        return torch.cat(parts, dim=1)

    def union_edges(self, edge_index: Tensor, batch: int, steps: int, num_nodes: int) -> tuple[Tensor, Tensor]:
        """``(message_edges [2, E'], union edge_index [2, B * S * E'])``: the ``B x S`` snapshots as one graph.

        Node ``n`` of window ``b`` at step ``s`` is ``(b * N + n) * S + s`` (node-first layout); the
        union's edges are ordered window, step, edge, so an attention ``[B * S * E', H]`` from
        ``GATv2Conv`` on this graph reshapes to ``[B, S, E', H]``. ``forward`` computes exactly this
        graph's layers, without building it (module docstring, "Batched GATv2"); this method is for
        showing and checking that (``conv(h.reshape(-1, D), union)`` equals the batched layer).
        """
        msg = self.message_edges(edge_index, num_nodes)
        # [B, S] offsets of node 0 of each snapshot; a service n sits S rows after service n-1.
        b = torch.arange(batch, device=msg.device) * (num_nodes * steps)
        s = torch.arange(steps, device=msg.device)
        offsets = (b[:, None] + s[None, :]).reshape(1, batch * steps, 1)
        return msg, (msg.unsqueeze(1) * steps + offsets).reshape(2, -1)

    def _gatv2(self, conv: nn.Module, h: Tensor, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
        """``conv`` (a ``GATv2Conv``) on every snapshot at once: ``h [B, N, S, D]`` -> ``(out [B, N, S, D],
        alpha [B, E', S, H])``, message edge ``k`` from service ``src[k]`` to ``dst[k]`` in every snapshot.

        ``GATv2Conv``'s arithmetic with its weights: ``score = att . LeakyReLU(W_r h_i + W_l h_j)``,
        PyG's ``softmax`` over the edges into each node, attention dropout,
        ``out_i = sum_j alpha_ij W_l h_j + bias``.
        """
        bsz, n, steps, d = h.shape
        heads, c = conv.heads, conv.out_channels
        x_l, x_r = conv.lin_l(h), conv.lin_r(h)  # [B, N, S, D]: sources' and targets' projections
        x_j = x_l.index_select(1, src)  # [B, E', S, D]: each edge's source, kept for the messages
        # In place where autograd allows (add_ and leaky_relu_ keep what their backward needs):
        # each [B, E', S, D] temporary saved is a pass over memory, the cost that dominates here.
        t = F.leaky_relu(x_r.index_select(1, dst).add_(x_j), conv.negative_slope, inplace=True)
        # att . t for every head at once: one product with a block-diagonal [H, D] matrix (head h's
        # att in columns h*C..h*C+C-1 of row h) instead of a [B, E', S, D] product and a sum.
        # Multiplied by its transpose (a column-major view), so autograd forms att's gradient as
        # [H, B E' S] x [B E' S, D] (3x faster here than the [D, B E' S] x [B E' S, H] it forms
        # for a row-major [D, H] factor).
        att = conv.att.view(heads, 1, c) * torch.eye(heads, dtype=conv.att.dtype, device=h.device).view(heads, heads, 1)
        score = (t.view(-1, d) @ att.view(heads, d).t()).view(bsz, -1, steps, heads)  # [B, E', S, H]
        alpha = _edge_softmax(score, dst, n)  # over the edges into each node
        if conv.training and conv.dropout > 0:  # attention dropout, as GATv2Conv's F.dropout
            alpha = (alpha * _keep_mask(alpha, conv.dropout)).mul_(1.0 / (1.0 - conv.dropout))
        # out is a tensor of its own, not a view: an in-place operation on a view (the bias here, ELU in
        # forward) would make autograd copy the gradient twice on its way back.
        out = _SumMessages.apply(alpha, x_j, dst, n)  # [B, N, S, D]
        return out.add_(conv.bias), alpha

    # -- forward -----------------------------------------------------------------------------
    def inputs(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """``x [..., F]`` and ``mask [..., F]`` (or None) -> ``[..., 2F]`` (values with 0 where
        unobserved, then the mask as 0/1), after checking that every observed value is finite."""
        if mask is None:
            bad = ~torch.isfinite(x)
            if bad.any():
                raise ValueError(
                    f"x has {int(torch.isnan(x).sum())} NaN and {int(torch.isinf(x).sum())} infinite values "
                    "and no mask was given; pass mask=torch.isfinite(x) (True = observed) so missing "
                    "values are marked as missing rather than guessed"
                )
            return torch.cat([x, torch.ones_like(x)], dim=-1)
        bad = mask & ~torch.isfinite(x)
        if bad.any():
            first = [int(i) for i in bad.nonzero()[0]]
            raise ValueError(
                f"x has {int(bad.sum())} NaN or infinite values where mask says observed (first at index "
                f"{first}); set mask False there (missing) or replace them with real readings"
            )
        # where, not multiplication: 0 * NaN is NaN, and where's gradient is 0 at unobserved entries.
        return torch.cat([torch.where(mask, x, 0.0), mask.to(x.dtype)], dim=-1)

    def forward(
        self, x: Tensor, edge_index: Tensor, mask: Tensor | None = None, return_attention: bool = False
    ) -> TemporalGATOutput:
        """Risk per service at the last step of each window.

        Args:
            x: ``[B, S, N, F]`` float; NaN allowed only where ``mask`` is False.
            edge_index: ``[2, E]`` integer service ids in ``0..N-1`` on ``x``'s device; any graph.
                Not read by the no-graph model (``graph=False``; ``None`` allowed there).
            mask: ``[B, S, N, F]`` bool, True = observed; None: everything observed.
            return_attention: also return the attention (see :class:`TemporalGATOutput`).

        Returns:
            :class:`TemporalGATOutput` with ``risk``, ``logits`` ``[B, N]`` and, on request,
            ``attention [B, S, E', H]`` (last layer), ``attention_edge_index [2, E']``, ``layer_attention``.
        """
        self._check_x(x, mask)
        if not self.graph:
            if return_attention:
                raise ValueError(
                    "this is the no-graph model (graph=False): it has no graph layers and so no attention; "
                    "call it with return_attention=False, or use a model built with graph=True"
                )
        elif isinstance(edge_index, Tensor) and edge_index.device != x.device:
            raise ValueError(
                f"x is on {x.device} but edge_index on {edge_index.device}; move both to one device, "
                "e.g. edge_index.to(x.device)"
            )
        bsz, steps, n, f = x.shape
        if self.graph:
            msg = self.message_edges(edge_index, n)  # [2, E'], the same in every snapshot
            src, dst = msg[0], msg[1]
        inp = self.inputs(x, mask)  # [B, S, N, 2F]
        # Node-first: [B, N, S, 2F], so the encoder's output [B, N, S, D] is already [B * N, S, D].
        h = self.input_proj(inp.permute(0, 2, 1, 3))
        alphas = []
        dropping = self.training and self.dropout_p > 0  # self.dropout's condition
        for conv, norm in zip(self.convs, self.norms, strict=True):
            out, alpha = self._gatv2(conv, h, src, dst)
            if return_attention:
                alphas.append(alpha.permute(0, 2, 1, 3).contiguous())  # [B, S, E', H]
            out = F.elu(out, inplace=True)  # out is this layer's own tensor
            # Dropout, its 1 / (1 - p) scaling and the residual sum in one pass: h + out * keep / (1 - p).
            if dropping:
                h = norm(torch.addcmul(h, out, _keep_mask(out, self.dropout_p), value=1.0 / (1.0 - self.dropout_p)))
            else:
                h = norm(h + out)
        h = h.view(bsz * n, steps, self.hidden)
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # CPU autocast sends the LSTM to oneDNN in bfloat16, which fails outright ("could not
            # create a primitive descriptor") on CPUs without bf16 instructions: run it in float32.
            with torch.autocast("cpu", enabled=False):
                _, last = self.rnn(h.float())
        else:
            _, last = self.rnn(h)
        # The last step's state from the final state h_n ([1, B * N, D]; LSTM: (h_n, c_n)), equal to
        # the output's last step: the unused output then gets no gradient to zero-fill and copy back.
        last = (last[0] if self.recurrent == "lstm" else last)[0]
        logits = self.head(last).view(bsz, n)
        if not return_attention:
            return TemporalGATOutput(torch.sigmoid(logits), logits)
        return TemporalGATOutput(torch.sigmoid(logits), logits, alphas[-1], msg, tuple(alphas))

    def _check_x(self, x: Tensor, mask: Tensor | None) -> None:
        """Shapes, dtype and device of ``x`` and ``mask``, each refused with what to do instead."""
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"x must be [B, S, N, F] (windows, steps, services, metrics), got {shape}; "
                "a single window is x.unsqueeze(0)"
            )
        if min(x.shape) < 1:
            raise ValueError(f"x must have at least one window, step, service and metric, got shape {tuple(x.shape)}")
        if x.size(-1) != self.num_features:
            raise ValueError(
                f"x has {x.size(-1)} metrics per service (last dim) but the model was built with "
                f"num_features={self.num_features}; pass the same metrics in the same order, or build a new model"
            )
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor, got {x.dtype}; use x.float()")
        weight = self.input_proj.weight
        if x.device != weight.device:
            raise ValueError(
                f"x is on {x.device} but the model on {weight.device}; move one, e.g. x.to({str(weight.device)!r})"
            )
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(
                f"x is {x.dtype} but the model's weights are {weight.dtype}; convert one "
                f"(x.to({weight.dtype}) or model.to({x.dtype})) or run under torch.autocast"
            )
        if mask is None:
            return
        if not isinstance(mask, Tensor) or mask.shape != x.shape:
            shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask must have x's shape {tuple(x.shape)} (one flag per value), got {shape}")
        if mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be bool (True = observed), got {mask.dtype}; e.g. mask.bool() or torch.isfinite(x)"
            )
        if mask.device != x.device:
            raise ValueError(f"mask is on {mask.device} but x on {x.device}; use mask.to(x.device)")


class _SumMessages(torch.autograd.Function):
    """``alpha [B, E', S, H]``, ``x_j [B, E', S, D]`` (``D = H C``, head-major) -> ``out [B, N, S, D]``, the
    attention-weighted sum of the messages into each target: head ``h``'s features of ``out[:, i]``
    are the sum over edges ``k`` with ``dst[k] = i`` of ``alpha[:, k, :, h]`` times those of ``x_j[:, k]``.

    The forward pass is what autograd would run (a product, then one block add per (window, edge)
    along the service axis). The backward pass differs in how, not what: autograd sums alpha's
    [B, E', S, H, C] gradient over C with a reduction along the last, 8-wide axis (the slowest pass
    of the layer); here that sum is a matrix product, and x_j's gradient is formed in place in the
    gathered output gradient instead of in a new tensor. The output is a tensor of its own (not a
    view), so the bias and ELU can be applied to it in place without autograd copying gradients.
    """

    @staticmethod
    def forward(ctx, alpha: Tensor, x_j: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
        bsz, edges, steps, heads = alpha.shape
        messages = x_j.view(bsz, edges, steps, heads, -1) * alpha.unsqueeze(-1)
        out = messages.new_zeros(bsz, num_nodes, steps, x_j.size(-1))
        out.view(bsz, num_nodes, steps, heads, -1).index_add_(1, dst, messages)
        ctx.save_for_backward(alpha, x_j, dst)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        alpha, x_j, dst = ctx.saved_tensors
        bsz, edges, steps, heads = alpha.shape
        # [B, E', S, H, C]: the gradient of each edge's message
        grad = grad_out.index_select(1, dst).view(bsz, edges, steps, heads, -1)
        grad_alpha = grad_x_j = None
        if ctx.needs_input_grad[0]:
            # sum_c grad * x_j: the product, then its sum over each head's C features as one matrix
            # product with a [D, H] block of ones (a sum over the last dim of [..., C] is 2x slower).
            product = grad * x_j.view(grad.shape)  # [B, E', S, H, C]
            ones = torch.eye(heads, dtype=product.dtype, device=grad.device).repeat_interleave(grad.size(-1), dim=0)
            grad_alpha = product.view(-1, x_j.size(-1)).mm(ones).view(alpha.shape)  # [D, H] ones: per-head sums
        if ctx.needs_input_grad[1]:
            grad_x_j = grad.mul_(alpha.unsqueeze(-1)).view(x_j.shape)
        return grad_alpha, grad_x_j, None, None


def _keep_mask(like: Tensor, p: float) -> Tensor:
    """Dropout's mask, shaped and typed like ``like``: 0 with probability ``p``, else 1.

    ``x * _keep_mask(x, p) / (1 - p)`` is ``F.dropout(x, p)`` in train mode (same distribution, other
    random numbers): ``F.dropout`` draws its mask with ``bernoulli_``, about 5.5 ns per element on
    the project's CPU, while uniform 31-bit integers compared with ``p * 2**31`` take about 2
    (``[64, 8, 8, 32]``, one thread); the keep probability is ``1 - p`` to within ``2**-31``.
    Drawn from torch's generator, so ``torch.manual_seed`` makes it reproducible.
    """
    draws = torch.empty(like.shape, dtype=torch.int32, device=like.device).random_()  # uniform on 0..2**31-1
    keep = draws >= round(p * 2**31)
    # Through uint8: torch converts bool to float element by element, uint8 vectorised (6x faster).
    return keep.view(torch.uint8).to(like.dtype)


def _edge_softmax(score: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
    """``score [B, E', S, H]`` -> softmax over the edges into each node (edge ``k`` into ``dst[k]``).

    ``torch_geometric.utils.softmax``'s arithmetic (each target's largest score, detached, is
    subtracted; ``+ 1e-16`` in the denominator; tested equal), along the service axis: PyG's
    ``softmax(score, dst, dim=1)`` broadcasts ``dst`` to every element and scatters element by
    element, while ``index_reduce_`` / ``index_add_`` move whole ``[S, H]`` blocks (7x faster here).
    """
    return _EdgeSoftmax.apply(score, dst, num_nodes)


class _EdgeSoftmax(torch.autograd.Function):
    """:func:`_edge_softmax` with its gradient written out.

    With ``alpha_k = e_k / (sum of e over the edges into the same target + 1e-16)``, the score's
    gradient is ``alpha_k * (g_k - sum over those edges of g * alpha)`` (the subtracted maximum
    cancels). Autograd would run the backward of each forward step instead (a division's two
    gradients, two gathers, two block sums, the exponential's): here it is five passes over
    ``[B, E', S, H]``, and the forward pass works in place in one tensor.
    """

    @staticmethod
    def forward(ctx, score: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
        bsz, _, steps, heads = score.shape
        top = score.new_full((bsz, num_nodes, steps, heads), float("-inf"))
        with warnings.catch_warnings():  # torch warns (once) that index_reduce is "in beta"; tested here
            warnings.filterwarnings("ignore", message=r"index_reduce\(\) is in beta")
            top.index_reduce_(1, dst, score, "amax")
        alpha = (score - top.index_select(1, dst)).exp_()
        total = alpha.new_zeros(bsz, num_nodes, steps, heads).index_add_(1, dst, alpha).add_(1e-16)
        alpha.div_(total.index_select(1, dst))
        ctx.save_for_backward(alpha, dst)
        ctx.num_nodes = num_nodes
        return alpha

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_alpha: Tensor) -> tuple[Tensor, None, None]:
        alpha, dst = ctx.saved_tensors
        weighted = grad_alpha * alpha
        per_target = weighted.new_zeros(alpha.size(0), ctx.num_nodes, *alpha.shape[2:]).index_add_(1, dst, weighted)
        return weighted.addcmul_(alpha, per_target.index_select(1, dst), value=-1), None, None


def _check_edge_index(edge_index: Tensor, num_nodes: int) -> Tensor:
    """``edge_index`` as ``[2, E]`` long ids in ``0..num_nodes-1``, or a ValueError saying what to fix."""
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
        shape = tuple(edge_index.shape) if isinstance(edge_index, Tensor) else type(edge_index).__name__
        raise ValueError(
            f"edge_index must be a [2, E] tensor (row 0 sources, row 1 targets), got {shape}; "
            "transpose an [E, 2] edge list with .t(), or use torch.as_tensor(graph.edge_index)"
        )
    if edge_index.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"edge_index must hold integer service ids, got {edge_index.dtype}; use .long()")
    if edge_index.numel():
        lo, hi = int(edge_index.min()), int(edge_index.max())
        if lo < 0 or hi >= num_nodes:
            raise ValueError(
                f"edge_index refers to service {lo if lo < 0 else hi}, but x has N={num_nodes} services "
                f"(x.shape[2]; valid ids 0..{num_nodes - 1}); pass the graph the telemetry was recorded on"
            )
    return edge_index.long()
