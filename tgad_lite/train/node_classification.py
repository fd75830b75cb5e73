"""Full-batch transductive node classification (Cora-style): one step, evaluation, training."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tgad_lite.train.loop import History, fit


@dataclass
class NodeClassificationResult:
    history: History
    val_acc: float
    test_acc: float


def masked_accuracy(logits: Tensor, y: Tensor, mask: Tensor) -> float:
    """Fraction of nodes in ``mask [N]`` whose argmax of ``logits [N, K]`` equals ``y [N]``."""
    return (logits[mask].argmax(-1) == y[mask]).float().mean().item()


def _check_same_device(model: nn.Module, **tensors) -> torch.device:
    """The model's device; a clear error if any input is elsewhere (before a kernel fails on it)."""
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    elsewhere = [f"{name} on {t.device}" for name, t in tensors.items() if t.device != device]
    if elsewhere:
        raise ValueError(
            f"the model is on {device} but {', '.join(elsewhere)}; move them with .to({str(device)!r}) "
            "(SparseFeatures too), or the model with model.to(device)"
        )
    return device


def train_node_classifier(
    model: nn.Module,
    x: Tensor,
    edge_index: Tensor,
    y: Tensor,
    train_mask: Tensor,
    val_mask: Tensor,
    test_mask: Tensor,
    *,
    lr: float = 0.005,
    weight_decay: float = 5e-4,
    max_epochs: int = 100_000,
    patience: int = 100,
    restore: str = "val_acc",
    train_graph=None,
    progress: bool = True,
    every: int | None = None,
    desc: str = "train",
) -> NodeClassificationResult:
    """Train ``model(x, edge_index) -> logits [N, K]`` on the nodes in ``train_mask`` with Adam.

    ``x [N, F]`` (dense or sparse), ``edge_index [2, E]``, ``y [N]``, masks ``[N]`` bool.
    ``train_graph``: an optional :class:`tgad_lite.gat.ReceptiveField` of the training nodes;
    the training forward pass then runs on its per-layer edge sets only (same loss and
    gradients, less work; ``model(x, layer_edges, layer_targets)`` must accept them, as
    :class:`tgad_lite.gat.GAT` does). Evaluation always runs on the full graph.
    ``restore`` picks the weights kept at the end (see :func:`tgad_lite.train.fit`): by default
    those of the epoch with the best validation accuracy, ties broken by lower validation loss;
    ``"all"`` is the GAT paper's rule. ``progress``, ``every``, ``desc``: the progress display
    (see :func:`tgad_lite.train.fit`).

    Every tensor must be on the model's device (``model.to(device)``, ``x.to(device)``, ...); a
    ``train_graph`` is moved there.
    """
    device = _check_same_device(
        model, x=x, edge_index=edge_index, y=y, train_mask=train_mask, val_mask=val_mask, test_mask=test_mask
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if train_graph is not None:
        train_graph = train_graph.to(device)
        x_train, ei_train, out_idx = train_graph.select(x), train_graph.layer_edges, train_graph.targets
        forward_args = (train_graph.layer_targets,)
        y_train = y[train_graph.nodes[train_graph.targets]]
    else:
        x_train, ei_train, out_idx, y_train = x, edge_index, train_mask.nonzero().view(-1), y[train_mask]
        forward_args = ()

    def train_step() -> dict:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x_train, ei_train, *forward_args)[out_idx], y_train)
        loss.backward()
        optimizer.step()
        return {"train_loss": loss.item()}

    def evaluate() -> dict:
        logits = model(x, edge_index)
        return {
            "val_loss": F.cross_entropy(logits[val_mask], y[val_mask]).item(),
            "val_acc": masked_accuracy(logits, y, val_mask),
            "train_acc": masked_accuracy(logits, y, train_mask),
        }

    history = fit(
        model,
        train_step,
        evaluate,
        max_epochs=max_epochs,
        patience=patience,
        restore=restore,
        progress=progress,
        every=every,
        desc=desc,
    )
    model.eval()
    with torch.no_grad():
        logits = model(x, edge_index)
    return NodeClassificationResult(
        history=history,
        val_acc=masked_accuracy(logits, y, val_mask),
        test_acc=masked_accuracy(logits, y, test_mask),
    )
