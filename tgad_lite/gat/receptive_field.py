"""Receptive-field pruning: an L-layer GNN's output at a node depends only on its L-hop neighbourhood.

To compute layer ``l`` (of ``L``) at the nodes within ``L - l`` hops of the targets, a layer needs
all edges *into* those nodes and nothing else. So the training forward pass can run on the
``L``-hop subgraph, with a smaller edge set per layer: on Cora, 140 training nodes reach 1664 of
2708 nodes in two hops, and the last layer needs only the edges into the 140 training nodes.
Every kept node keeps its whole in-neighbourhood, so attention softmaxes, outputs at the targets,
the loss and its gradients are the same as on the full graph (up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ReceptiveField:
    """What ``num_layers`` message-passing layers need to compute outputs at some target nodes.

    ``nodes [n]``: original ids of the kept nodes, targets first, then by hop distance;
    ``targets [t]``: positions of the targets in ``nodes`` (``0..t-1``); ``layer_edges``: per
    layer, ``[2, e_l]`` edges relabelled to ``0..n-1`` (layer ``l`` gets the edges into nodes
    within ``num_layers - 1 - l`` hops of the targets); ``layer_targets``: per layer, how many
    leading nodes it must output (those same nodes: the next layer reads nothing else).
    Use as ``model(rf.select(x), rf.layer_edges, rf.layer_targets)[rf.targets]``.
    """

    nodes: Tensor
    targets: Tensor
    layer_edges: list[Tensor]
    layer_targets: list[int]

    def select(self, x):
        """Rows of ``x [N, F]`` (dense, or :class:`SparseFeatures`) for the kept nodes: ``[n, F]``."""
        return x.index_select(0, self.nodes)

    @property
    def num_edges(self) -> list[int]:
        return [int(e.size(1)) for e in self.layer_edges]


def receptive_field(edge_index: Tensor, targets: Tensor, num_layers: int, num_nodes: int) -> ReceptiveField:
    """The layer-wise ``num_layers``-hop in-neighbourhood of ``targets [t]`` (ids or a bool mask ``[N]``).

    ``edge_index [2, E]`` holds messages ``source -> target``.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if targets.dtype == torch.bool:
        targets = targets.nonzero().view(-1)
    src, dst = edge_index
    # hop[v] = distance from v to the nearest target along message direction (inf if too far).
    hop = torch.full((num_nodes,), num_layers + 1, dtype=torch.long)
    hop[targets] = 0
    frontier = torch.zeros(num_nodes, dtype=torch.bool)
    frontier[targets] = True
    for k in range(1, num_layers + 1):
        reached = torch.zeros(num_nodes, dtype=torch.bool)
        reached[src[frontier[dst]]] = True
        frontier = reached & (hop > k)
        hop[frontier] = k
    kept = (hop <= num_layers).nonzero().view(-1)
    # Targets first (in the order given), then the other kept nodes by distance and id.
    others = kept[hop[kept] > 0]
    others = others[torch.argsort(hop[others], stable=True)]
    nodes = torch.cat([targets, others])
    relabel = torch.full((num_nodes,), -1, dtype=torch.long)
    relabel[nodes] = torch.arange(nodes.numel())
    layer_edges, layer_targets = [], []
    for layer in range(num_layers):
        into = hop[dst] <= num_layers - 1 - layer
        layer_edges.append(relabel[edge_index[:, into]])
        layer_targets.append(int((hop[nodes] <= num_layers - 1 - layer).sum()))
    return ReceptiveField(nodes=nodes, targets=torch.arange(targets.numel()), layer_edges=layer_edges,
                          layer_targets=layer_targets)
