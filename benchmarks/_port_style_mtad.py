"""The benchmark's in-run reference: MTAD-GAT with its graph layers written the way the popular port writes them.

The popular PyTorch port of MTAD-GAT (ML4ITS/mtad-gat-pytorch, ``modules.py``) scores the complete graph
of ``K`` nodes ``v [B, K, D]`` by first materialising every ordered pair as one tensor,
``[B, K, K, 2D]`` with entry ``(i, j) = v_i || v_j`` (its ``_make_attention_input``: the nodes
``repeat_interleave``-d ``K`` times, beside the nodes ``repeat``-ed ``K`` times, concatenated), and then,
in its default GATv2 form, ``e_ij = a^T LeakyReLU(W [v_i || v_j] + b)`` with ``W`` of width
``embed_dim = 2D``; a learnt ``[K, K]`` bias is added, softmax over ``j``, dropout, and the layer
outputs ``sigmoid(attention @ v)``. For the time layer at window 100 and MSL's 55 features that is
256 x 100 x 100 x 110 floats for the pairs and as many again after ``W`` and after the LeakyReLU, each
kept for the backward pass: the issue measured the port at 23.6 training windows/s and 7.2 GB.

Why it is the reference. It is *the same model* as ``MTADGATModel(gat="gatv2")``: the same parameters
(``lin``, ``a``, ``bias``, with the same shapes and names, so weights copy over with
``load_state_dict``), the same mathematics, the same outputs to rounding
(``tests/test_mtad_benchmark.py`` checks this in float64); only the scores are computed the expensive
way. Measured in the same run, on the same machine, beside our variants, its speed and memory are the
fair denominator of the ratios the benchmark prints: whatever the machine and its load, they cancel.
GATv2 is used because it is the port's default (``use_gatv2=True``).

Written from the port's description, not copied. Use :func:`port_style_model` to build one, or
:func:`to_port_style` to convert an existing ``MTADGATModel(gat="gatv2")`` in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tgad_lite.mtad import FeatureAttention, MTADGATModel, TimeAttention


def make_attention_input(v: Tensor) -> Tensor:
    """All ordered pairs of nodes, concatenated as the port does: ``v [B, K, D]`` -> ``[B, K, K, 2D]``.

    Entry ``[b, i, j]`` is ``v[b, i] || v[b, j]``: node ``i`` (the query) first, node ``j`` second.
    """
    b, k, d = v.shape
    left = v.repeat_interleave(k, dim=1)  # [B, K*K, D]: v_1 K times, then v_2 K times, ...
    right = v.repeat(1, k, 1)  # [B, K*K, D]: v_1 .. v_K, then again, K times
    return torch.cat((left, right), dim=2).view(b, k, k, 2 * d)


class _PortStyleLayer:
    """Port-style ``scores`` and attention for a :class:`CompleteGraphAttention` in GATv2 form.

    A mixin placed before ``FeatureAttention`` / ``TimeAttention``: it adds no parameters, it only
    replaces how the existing ``lin``, ``a`` and ``bias`` are used.
    """

    def scores(self, v: Tensor) -> Tensor:
        """Raw scores ``e [B, K, K]`` (bias included) via the ``[B, K, K, 2D]`` concatenation."""
        pairs = make_attention_input(v)  # looked up at call time, so a test can spy on it
        e = torch.matmul(F.leaky_relu(self.lin(pairs), self.negative_slope), self.a).squeeze(3)  # [B, K, K]
        if self.bias is not None:
            e = e + self.bias
        return e

    def _attend(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """``v [B, K, D]`` -> ``(sigmoid(attention @ v) [B, K, D], attention [B, K, K])``, attention before dropout."""
        if v.dim() != 3 or v.shape[1] != self.num_nodes or v.shape[2] != self.node_dim:
            raise ValueError(
                f"nodes must be [B, {self.num_nodes}, {self.node_dim}] (batch, nodes, node_dim), got {list(v.shape)}"
            )
        attention = torch.softmax(self.scores(v), dim=2)
        weights = torch.dropout(attention, self.dropout, train=self.training)
        return torch.sigmoid(torch.matmul(weights, v)), attention

    def extra_repr(self) -> str:
        return super().extra_repr() + ", port-style scores ([B, K, K, 2D] concatenation)"


class PortStyleFeatureAttention(_PortStyleLayer, FeatureAttention):
    """Feature-oriented layer, port-style: ``x [B, W, F]`` -> ``[B, W, F]`` (nodes are the F features)."""

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        h, attention = self._attend(x.transpose(1, 2))  # the port permutes to [B, F, W]
        h = h.transpose(1, 2)
        return (h, attention) if return_attention else h


class PortStyleTimeAttention(_PortStyleLayer, TimeAttention):
    """Time-oriented layer, port-style: ``x [B, W, F]`` -> ``[B, W, F]`` (nodes are the W steps)."""

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        h, attention = self._attend(x)
        return (h, attention) if return_attention else h


_SWAPS = (
    ("feature_attention", FeatureAttention, PortStyleFeatureAttention),
    ("time_attention", TimeAttention, PortStyleTimeAttention),
)


def to_port_style(model: MTADGATModel) -> MTADGATModel:
    """Make both graph layers of ``model`` compute port-style, in place; returns ``model``.

    The layers keep their parameter objects (``lin``, ``a``, ``bias``) and state-dict keys; only their
    class changes, to a subclass that overrides ``scores`` and ``forward``. ``chunk_size`` is ignored
    by the port-style layers (the port has no chunking).
    """
    if not isinstance(model, MTADGATModel):
        raise TypeError(f"model must be an MTADGATModel, got {type(model).__name__}")
    if model.gat != "gatv2":
        raise ValueError(
            f"the port-style reference is the GATv2 form (the port's default); got a model with gat={model.gat!r}: "
            "build it with MTADGATModel(..., gat='gatv2') or use port_style_model(...)"
        )
    for name, expected, port_cls in _SWAPS:
        layer = getattr(model, name, None)
        if type(layer) is port_cls:
            continue  # already converted
        if type(layer) is not expected:
            raise TypeError(
                f"model.{name} is {type(layer).__name__}, expected {expected.__name__}: the model's structure "
                "changed; update benchmarks/_port_style_mtad.py to match"
            )
        if layer.aggregate != "input" or layer.embed_dim != 2 * layer.node_dim:
            raise ValueError(
                f"model.{name} has aggregate={layer.aggregate!r}, embed_dim={layer.embed_dim}; the port's GATv2 "
                f"layer aggregates the input and has embed_dim = 2 * node_dim = {2 * layer.node_dim}"
            )
        # Changing the class (not rebuilding the layer) keeps the very same Parameter objects, so an
        # optimizer built before or after, and weights copied in or out, see no difference.
        layer.__class__ = port_cls
    return model


def port_style_model(n_features: int, **kwargs) -> MTADGATModel:
    """``MTADGATModel(n_features, gat="gatv2", chunk_size=None, **kwargs)`` with port-style graph layers.

    With the same seed it draws the same initial weights as ``MTADGATModel(n_features, gat="gatv2", ...)``.
    """
    for key in ("gat", "chunk_size"):
        if key in kwargs:
            raise ValueError(f"port_style_model fixes {key} (gat='gatv2', chunk_size=None); do not pass {key}=")
    return to_port_style(MTADGATModel(n_features, gat="gatv2", chunk_size=None, **kwargs))
