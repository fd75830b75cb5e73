"""The issue's reference sketch of the temporal GAT, in loops, running a :class:`TemporalGAT`'s own layers.

Structure as the sketch describes it: the graph layers run once per window per time step, on that
snapshot's ``N`` nodes alone, and the recurrent layer once per window per service, on that
service's ``S`` steps alone. Every weight is the model's (``model.input_proj``, ``model.convs``,
``model.norms``, ``model.rnn``, ``model.head``), so the two compute the same function and must
agree to rounding, in outputs and gradients; what differs is only how the work is batched. The
per-snapshot graph (direction and self loops) is rebuilt here with PyG's own utilities rather than
taken from the model, so the model's edge order is checked too.

Used by ``tests/test_temporal_model.py`` and ``benchmarks/temporal_gat.py`` only: the package has
no use for a slow copy of its model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import add_self_loops, remove_self_loops

from tgad_lite.temporal import TemporalGAT, TemporalGATOutput


def snapshot_edges(edge_index: Tensor, num_nodes: int, direction: str) -> Tensor:
    """``[2, E']``: the edges (self loops removed), their reverses for ``"both"``, then PyG's self loops."""
    ei, _ = remove_self_loops(edge_index.long())
    parts = {"forward": [ei], "reverse": [ei.flip(0)], "both": [ei, ei.flip(0)]}[direction]
    ei, _ = add_self_loops(torch.cat(parts, dim=1), num_nodes=num_nodes)
    return ei


def loop_forward(
    model: TemporalGAT, x: Tensor, edge_index: Tensor, mask: Tensor | None = None, return_attention: bool = False
) -> TemporalGATOutput:
    """Same contract as ``model(x, edge_index, mask, return_attention)``: ``x [B, S, N, F]`` -> risk ``[B, N]``."""
    bsz, steps, n, _ = x.shape
    ei = snapshot_edges(edge_index, n, model.direction)
    if mask is None:
        mask = torch.ones_like(x, dtype=torch.bool)
    states = [[None] * steps for _ in range(bsz)]  # states[b][s]: [N, D]
    alphas = [[[None] * steps for _ in range(bsz)] for _ in model.convs]  # [layer][b][s]: [E', H]
    for b in range(bsz):
        for s in range(steps):
            inp = torch.cat([torch.where(mask[b, s], x[b, s], 0.0), mask[b, s].to(x.dtype)], dim=-1)
            h = model.input_proj(inp)
            for i, (conv, norm) in enumerate(zip(model.convs, model.norms, strict=True)):
                out, (_, alpha) = conv(h, ei, return_attention_weights=True)
                alphas[i][b][s] = alpha
                h = norm(h + model.dropout(F.elu(out)))
            states[b][s] = h
    rows = []
    for b in range(bsz):
        for v in range(n):
            seq = torch.stack([states[b][s][v] for s in range(steps)]).unsqueeze(0)  # [1, S, D]
            out, _ = model.rnn(seq)
            rows.append(model.head(out[0, -1]))
    logits = torch.cat(rows).view(bsz, n)
    risk = torch.sigmoid(logits)
    if not return_attention:
        return TemporalGATOutput(risk, logits)
    layers = tuple(torch.stack([torch.stack(per_b) for per_b in layer]) for layer in alphas)  # [B, S, E', H]
    return TemporalGATOutput(risk, logits, layers[-1], ei, layers)
