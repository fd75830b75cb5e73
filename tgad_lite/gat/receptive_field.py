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
        """Rows of ``x [N, F]`` (dense, or :class:`SparseFeatures`) for the kept nodes: ``[n, F]``.

        The result stays on ``x``'s device (the node ids follow it).
        """
        return x.index_select(0, self.nodes.to(x.device))

    def to(self, device) -> ReceptiveField:
        """The same receptive field with every tensor on ``device``."""
        return ReceptiveField(
            nodes=self.nodes.to(device),
            targets=self.targets.to(device),
            layer_edges=[e.to(device) for e in self.layer_edges],
            layer_targets=list(self.layer_targets),
        )

    @property
    def num_edges(self) -> list[int]:
        return [int(e.size(1)) for e in self.layer_edges]


def unique_first(ids: Tensor) -> Tensor:
    """``ids [t]`` without repeats, each kept at its first occurrence: ``[3, 1, 3, 2] -> [3, 1, 2]``."""
    if ids.numel() == 0:
        return ids
    uniq, inverse = torch.unique(ids, return_inverse=True)
    position = torch.arange(ids.numel(), device=ids.device)
    first = torch.full((uniq.numel(),), ids.numel(), dtype=torch.long, device=ids.device)
    first = first.scatter_reduce(0, inverse, position, reduce="amin", include_self=True)
    return ids[first.sort().values]


def receptive_field(edge_index: Tensor, targets: Tensor, num_layers: int, num_nodes: int) -> ReceptiveField:
    """The layer-wise ``num_layers``-hop in-neighbourhood of ``targets [t]`` (ids or a bool mask ``[N]``).

    ``edge_index [2, E]`` holds messages ``source -> target``. Every tensor of the result lives on
    ``edge_index``'s device (``targets`` may be on the CPU). Repeated target ids are kept once, at
    their first occurrence: ``rf.nodes[rf.targets]`` lists the distinct targets in the order they
    first appear (for a mask: ascending ids).
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must be [2, E] (sources, targets), got shape {tuple(edge_index.shape)}")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(
            f"edge_index refers to node ids {int(edge_index.min())}..{int(edge_index.max())}, "
            f"outside 0..{num_nodes - 1}; pass num_nodes of the whole graph"
        )
    device = edge_index.device
    targets = targets.to(device)
    if targets.dtype == torch.bool:
        if targets.shape != (num_nodes,):
            raise ValueError(
                f"a boolean target mask needs one entry per node ({num_nodes}), got shape {tuple(targets.shape)}"
            )
        targets = targets.nonzero().view(-1)
    elif targets.is_floating_point() or targets.is_complex() or targets.dim() != 1:
        raise ValueError(
            f"targets must be node ids [t] (integers) or a bool mask [N], got "
            f"{targets.dtype} of shape {tuple(targets.shape)}"
        )
    else:
        targets = targets.long()
        if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_nodes):
            bad = targets[(targets < 0) | (targets >= num_nodes)]
            raise ValueError(
                f"target ids must lie in 0..{num_nodes - 1} (the graph's nodes), got "
                f"{bad[:5].tolist()}{' ...' if bad.numel() > 5 else ''}"
            )
        targets = unique_first(targets)
    src, dst = edge_index
    # hop[v] = distance from v to the nearest target along message direction (num_layers + 1: too far).
    hop = torch.full((num_nodes,), num_layers + 1, dtype=torch.long, device=device)
    hop[targets] = 0
    frontier = torch.zeros(num_nodes, dtype=torch.bool, device=device)
    frontier[targets] = True
    for k in range(1, num_layers + 1):
        reached = torch.zeros(num_nodes, dtype=torch.bool, device=device)
        reached[src[frontier[dst]]] = True
        frontier = reached & (hop > k)
        hop[frontier] = k
    kept = (hop <= num_layers).nonzero().view(-1)
    # Targets first (in the order given), then the other kept nodes by distance and id.
    others = kept[hop[kept] > 0]
    others = others[torch.argsort(hop[others], stable=True)]
    nodes = torch.cat([targets, others])
    relabel = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
    relabel[nodes] = torch.arange(nodes.numel(), device=device)
    layer_edges, layer_targets = [], []
    for layer in range(num_layers):
        into = hop[dst] <= num_layers - 1 - layer
        layer_edges.append(relabel[edge_index[:, into]])
        layer_targets.append(int((hop[nodes] <= num_layers - 1 - layer).sum()))
    return ReceptiveField(
        nodes=nodes,
        targets=torch.arange(targets.numel(), device=device),
        layer_edges=layer_edges,
        layer_targets=layer_targets,
    )
