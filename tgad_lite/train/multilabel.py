"""Multi-label node classification over many graphs (PPI-style, inductive), on the package loop.

Each node has ``L`` independent yes/no labels. The model outputs one logit per label; the loss
is binary cross-entropy on the logits (the sigmoid inside, numerically stable), averaged over
every node and label; a label is predicted present when its logit is > 0 (probability > 0.5).
The score is micro-averaged F1: true positives, false positives and false negatives are pooled
over *all* nodes and labels of all graphs of a split, then ``F1 = 2 TP / (2 TP + FP + FN)``
(scikit-learn's ``f1_score(average="micro")``). Training iterates over mini-batches of whole
graphs (a PyG ``DataLoader``); validation and test graphs are only ever evaluated, never trained
on, so a model is scored on graphs (and nodes) it has never seen.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tgad_lite.train.loop import History, fit


@dataclass
class MultiLabelResult:
    """What :func:`train_multilabel` returns: the history and the restored model's validation scores."""

    history: History
    val_f1: float
    val_loss: float


def _numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)


def micro_f1(logits: Any, y: Any) -> float:
    """Micro-averaged F1 of the predictions ``logits > 0`` against 0/1 labels ``y``, both ``[N, L]``.

    Pools every (node, label) pair: ``2 TP / (2 TP + FP + FN)``, with scikit-learn's
    ``f1_score(average="micro")``. 0.0 when there is nothing to score (no positive label and no
    positive prediction). Raises ValueError for mismatched shapes, non-finite logits or labels
    other than 0/1.
    """
    from sklearn.metrics import f1_score

    z, t = _numpy(logits), _numpy(y)
    if z.ndim != 2 or z.shape != t.shape:
        raise ValueError(f"logits and y must both be [N, L] with the same shape, got {z.shape} and {t.shape}")
    if not np.isfinite(z).all():
        raise ValueError("logits hold NaN or inf: the model diverged or its input is broken; nothing was scored")
    if not np.isin(t, (0, 1)).all():
        raise ValueError("y must hold 0/1 labels (one column per label), found other values")
    return float(f1_score(t.astype(np.int8), (z > 0).astype(np.int8), average="micro", zero_division=0.0))


def multilabel_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Mean binary cross-entropy over every node and label: ``logits [N, L]``, 0/1 ``y [N, L]``.

    ``-mean(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z)))``, computed from the logits
    (``binary_cross_entropy_with_logits``) so a large ``|z|`` cannot overflow.
    """
    return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))


def f1_counts(logits: Tensor, y: Tensor) -> Tensor:
    """``[TP, FP, FN]`` (int64, on ``logits``' device) of the predictions ``logits > 0`` against ``y``.

    Summed over batches, they give the micro-F1 of the whole set, ``2 TP / (2 TP + FP + FN)``,
    without moving the predictions off the GPU: how the training F1 is pooled over an epoch.
    """
    pred, truth = logits > 0, y > 0.5
    return torch.stack([(pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()])


def f1_from_counts(counts: Tensor) -> float:
    """``2 TP / (2 TP + FP + FN)`` from :func:`f1_counts` ``[TP, FP, FN]``; 0.0 when the denominator is 0."""
    tp, fp, fn = (int(v) for v in counts)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def _device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def predict_multilabel(model: nn.Module, loader: Iterable) -> tuple[Tensor, Tensor]:
    """Logits and labels of every node of every graph in ``loader``, on the CPU: ``[N, L]`` each.

    ``loader`` yields batches with ``x [n, F]``, ``edge_index [2, e]`` and ``y [n, L]`` (PyG
    ``Batch``), moved to the model's device; the model runs in evaluation mode.
    """
    model.eval()
    device = _device(model)
    logits, labels = [], []
    for batch in loader:
        batch = batch.to(device)
        logits.append(model(batch.x, batch.edge_index).cpu())
        labels.append(batch.y.cpu())
    if not logits:
        raise ValueError("the loader yielded no batch: nothing to evaluate (an empty split?)")
    return torch.cat(logits), torch.cat(labels)


def evaluate_multilabel(model: nn.Module, loader: Iterable) -> dict[str, float]:
    """``{"loss", "micro_f1"}`` of ``model`` over all nodes and labels of the graphs in ``loader``."""
    logits, y = predict_multilabel(model, loader)
    return {"loss": multilabel_loss(logits, y).item(), "micro_f1": micro_f1(logits, y)}


def train_multilabel(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    *,
    lr: float = 0.005,
    weight_decay: float = 0.0,
    max_epochs: int = 100_000,
    patience: int = 100,
    progress: bool = True,
    every: int | None = None,
    desc: str = "train",
    checkpoint: str | os.PathLike | None = None,
    checkpoint_config: Mapping[str, Any] | None = None,
) -> MultiLabelResult:
    """Train ``model(x, edge_index) -> logits [N, L]`` with Adam on the graphs of ``train_loader``.

    One epoch is one pass over ``train_loader`` (an Adam step per batch, e.g. 2 graphs), then one
    evaluation of ``val_loader``. Early stopping and the restored weights are
    :func:`tgad_lite.train.fit`'s with ``monitor={"val_f1": "max"}``: training stops after
    ``patience`` epochs without a validation micro-F1 at least as good as the best so far, and
    the weights of the first epoch with the best validation micro-F1 are restored. Defaults are
    the GAT paper's PPI settings (lr 0.005, no weight decay, patience 100).

    Each epoch's record: ``train_loss`` (mean over the epoch's nodes and labels, weights changing
    during the epoch), ``train_f1`` (micro-F1 of those same predictions, pooled with
    :func:`f1_counts`),
    ``val_loss``, ``val_f1``, ``lr`` and ``seconds``. The test split is not an argument: it
    cannot influence training or the choice of weights. Batches are moved to the model's device.
    ``checkpoint``/``checkpoint_config``: a best-on-validation checkpoint file (see ``fit``).
    """
    device = _device(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    def train_step() -> dict[str, float]:
        total, count, counts = 0.0, 0, torch.zeros(3, dtype=torch.long, device=device)
        for batch in train_loader:
            batch = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            logits = model(batch.x, batch.edge_index)
            loss = multilabel_loss(logits, batch.y)
            loss.backward()
            optimizer.step()
            total += loss.item() * batch.y.numel()
            count += batch.y.numel()
            counts += f1_counts(logits.detach(), batch.y)
        if count == 0:
            raise ValueError("train_loader yielded no batch: there is nothing to train on")
        return {"train_loss": total / count, "train_f1": f1_from_counts(counts)}

    def evaluate() -> dict[str, float]:
        scores = evaluate_multilabel(model, val_loader)
        return {"val_loss": scores["loss"], "val_f1": scores["micro_f1"]}

    history = fit(
        model,
        train_step,
        evaluate,
        max_epochs=max_epochs,
        patience=patience,
        monitor={"val_f1": "max"},
        restore="val_f1",
        progress=progress,
        every=every,
        desc=desc,
        optimizer=optimizer,
        checkpoint=checkpoint,
        checkpoint_config=checkpoint_config,
        display=["train_loss", "val_f1"],
    )
    final = evaluate_multilabel(model, val_loader)
    return MultiLabelResult(history=history, val_f1=final["micro_f1"], val_loss=final["loss"])


__all__ = [
    "MultiLabelResult",
    "evaluate_multilabel",
    "f1_counts",
    "f1_from_counts",
    "micro_f1",
    "multilabel_loss",
    "predict_multilabel",
    "train_multilabel",
]
