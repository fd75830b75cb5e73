"""The temporal risk recipe: train a :class:`~tgad_lite.temporal.TemporalGAT` on service windows, pick its threshold.

Two splits, one training function:

- **A later time span** (:func:`~tgad_lite.data.microservices.time_split`): train, validation and
  test windows from disjoint spans of one series on one graph, normalised with training-span
  statistics; ``train_risk_model(model, split.train, split.val, edge_index, ...)``.
- **Unseen topologies**: :func:`simulate_topologies` draws series on random service DAGs;
  :func:`graph_windows` turns each into a :class:`GraphWindows` (its windows with its graph).
  ``train_risk_model(model, [train graphs], [validation graphs], None, ...)`` trains ONE model on
  several graphs; test it on other random graphs and on the shop graph, none seen in training.

:func:`train_risk_model` runs the package loop (:func:`tgad_lite.train.fit`):

- **Loss**: ``binary_cross_entropy_with_logits`` on every (window, service) pair, positives
  weighted by :func:`~tgad_lite.train.positive_weight` of the training labels (incidents are a
  few percent of the pairs). Unobserved services' labels COUNT, in the loss and in every metric:
  the label is ground truth (the service is in the incident whether or not anyone measures it),
  and inferring an unmeasured service's state from its neighbours is exactly what a graph model
  may add; a model that cannot (the no-graph one) is scored on them too.
- **Optimiser**: AdamW; learning rate warmed up over the first ``warmup_fraction`` of all
  optimiser steps, then cosine to 0 (:func:`~tgad_lite.train.warmup_cosine`, stepped after each
  optimiser step that happened); gradients clipped to ``grad_clip``; float16 autocast with a
  gradient scaler on CUDA (:class:`~tgad_lite.train.AmpStep`), the plain float32 step on the CPU.
- **Early stopping** on validation PR-AUC (average precision over all validation (window,
  service) pairs): the weights of the epoch with the best PR-AUC are restored at the end (and
  written to ``checkpoint`` when given), ties broken by the lower validation loss (the same
  weighted BCE), since on easy data PR-AUC reaches 1.0 early and then ties. Training stops
  after ``patience`` epochs in which neither improved (or matched its best: ``fit``'s rule).
- **Threshold**: the risk level with the best F1 on the VALIDATION pairs (alarm = risk >
  threshold). It is chosen without the test labels, so applying it to test windows is what a
  deployment would do; report test F1 at it, not the test-optimal ("oracle") F1.

Batches: each batch holds windows of ONE graph (the model runs one ``edge_index`` per call); with
several graphs, each graph's windows are shuffled and cut into batches, and the batches of all
graphs are shuffled together, so consecutive optimiser steps see different topologies. Seeded:
the same data, model weights and ``seed`` give the same training on the CPU.

:class:`TemporalRiskModel` wraps the recipe in the
:class:`~tgad_lite.anomaly.service_baselines.ServiceRiskModel` interface, so the graph model and
the no-graph model (``graph=False``) sit in the same table as the baselines.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tgad_lite.anomaly.cascade import check_edge_index
from tgad_lite.anomaly.service_baselines import ServiceRiskModel, check_windows
from tgad_lite.checks import int_at_least as _int
from tgad_lite.checks import real_in
from tgad_lite.data.microservices import (
    ServiceGraph,
    ServiceNormaliser,
    ServiceWindows,
    Telemetry,
    fit_service_normaliser,
    make_windows,
    random_service_dag,
    simulate,
)
from tgad_lite.device import resolve_device
from tgad_lite.metrics.detection import best_f1, pr_auc
from tgad_lite.train import AmpStep, History, fit, positive_weight, save_checkpoint, warmup_cosine

# PR-AUC decides; the validation loss breaks its ties (a perfect PR-AUC of 1.0 is reached early
# on easy data and then ties every epoch) and keeps training going while it still improves.
_MONITOR = {"val_pr_auc": "max", "val_loss": "min"}

__all__ = [
    "GraphWindows",
    "TemporalRiskModel",
    "TrainResult",
    "graph_windows",
    "predict_risk",
    "simulate_topologies",
    "train_risk_model",
]


class GraphWindows(NamedTuple):
    """Windows of one series with the graph they were recorded on.

    ``windows``: a :class:`~tgad_lite.data.microservices.ServiceWindows` (``x [B, S, N, F]``,
    ``mask``, ``labels [B, N]``); ``edge_index``: ``[2, E]`` caller -> callee ids in ``0..N-1``
    (array or tensor; ``None`` only for the no-graph model); ``normaliser``: what normalised
    the windows (from :func:`graph_windows`), for the root-cause functions, which read the series.
    """

    windows: ServiceWindows
    edge_index: Any
    normaliser: ServiceNormaliser | None = None


@dataclass
class TrainResult:
    """What :func:`train_risk_model` returns; the model itself holds the best-validation weights.

    - ``history``: one record per epoch (``train_loss``, ``grad_norm``, ``skipped_steps``,
      ``val_loss``, ``val_pr_auc``, ``lr``, ``seconds``), ``best_epoch``, ``stopped_epoch``.
    - ``threshold``: alarm when risk > threshold; the best-F1 threshold on the validation pairs.
    - ``val_f1``, ``val_precision``, ``val_recall``: at that threshold, on validation.
    - ``val_pr_auc``: of the restored weights on validation.
    - ``positive_weight``: the loss weight of a positive pair (negatives / positives in training).
    - ``checkpoint``: where the best weights were written (with the threshold), or None.
    - ``seconds``: wall time of the whole call.
    """

    history: History
    threshold: float
    val_f1: float | None
    val_precision: float
    val_recall: float | None
    val_pr_auc: float
    positive_weight: float
    checkpoint: Path | None = None
    seconds: float = 0.0
    device: str = "cpu"
    settings: dict = field(default_factory=dict)

    @property
    def best_epoch(self) -> int:
        return self.history.best_epoch

    @property
    def stopped_epoch(self) -> int:
        return self.history.stopped_epoch


# ----------------------------------------------------------------------------- argument checks


def _real(name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = True) -> float:
    return real_in(name, value, low, high, low_open=low_open, high_open=high_open)


def _uses_graph(model: nn.Module) -> bool:
    return bool(getattr(model, "graph", True))


def _edge_tensor(edge_index: Any, num_nodes: int, device: torch.device, what: str) -> torch.Tensor:
    """``[2, E]`` int64 on ``device``, ids checked against ``num_nodes`` (a clear error otherwise)."""
    try:
        ei = check_edge_index(edge_index, num_nodes)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    # A copy: a ServiceGraph's array is read-only, which torch.from_numpy warns about.
    return torch.from_numpy(np.array(ei, dtype=np.int64)).to(device)


def _parts(data: Any, edge_index: Any, model: nn.Module, name: str) -> list[GraphWindows]:
    """``data`` (windows with ``edge_index``, or a sequence of :class:`GraphWindows`) as checked parts."""
    if hasattr(data, "x") and hasattr(data, "labels"):
        parts = [GraphWindows(data, edge_index)]
    elif isinstance(data, Sequence) and not isinstance(data, str | bytes) and data:
        if edge_index is not None:
            raise ValueError(
                f"{name} is a list of GraphWindows, each with its own graph, so edge_index must be None; "
                "pass edge_index only with a single ServiceWindows"
            )
        parts = []
        for i, p in enumerate(data):
            if not (isinstance(p, tuple) and len(p) in (2, 3) and hasattr(p[0], "x") and hasattr(p[0], "labels")):
                raise ValueError(
                    f"{name}[{i}] must be a GraphWindows(windows, edge_index) (see graph_windows), "
                    f"got {type(p).__name__}"
                )
            parts.append(GraphWindows(*p))
    else:
        raise ValueError(
            f"{name} must be a ServiceWindows (e.g. time_split(...).{name}) or a non-empty list of GraphWindows "
            f"(see graph_windows), got {type(data).__name__}"
        )
    want = getattr(model, "num_features", None)
    for i, (w, ei, _) in enumerate(parts):
        where = f"{name}[{i}]" if len(parts) > 1 else name
        arr, _ = check_windows(w.x, w.mask)
        if want is not None and arr.shape[3] != want:
            raise ValueError(
                f"{where} has {arr.shape[3]} metrics per service but the model was built with num_features={want}"
            )
        lab, shape = np.asarray(w.labels), (arr.shape[0], arr.shape[2])
        if lab.shape != shape or not np.isin(lab, (0, 1)).all():
            raise ValueError(f"{where}.labels must be 0/1 [B, N] = {shape}, got {lab.dtype} {lab.shape}")
        if ei is None and _uses_graph(model):
            raise ValueError(
                f"{where} has no edge_index, but the model has graph layers; pass the graph the telemetry was "
                "recorded on (e.g. tel.graph.edge_index), or build the model with graph=False"
            )
    return parts


def _labels(parts: list[GraphWindows]) -> np.ndarray:
    return np.concatenate([np.asarray(p.windows.labels).reshape(-1) for p in parts])


def _batch(w: ServiceWindows, idx: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windows ``idx`` as ``(x [b, S, N, F] float32, mask bool, labels [b, N] float32)`` on ``device``."""
    x = np.ascontiguousarray(w.x[idx], dtype=np.float32)
    mask = np.ascontiguousarray(w.mask[idx])
    labels = np.ascontiguousarray(w.labels[idx], dtype=np.float32)
    return (
        torch.from_numpy(x).to(device, non_blocking=True),
        torch.from_numpy(mask).to(device, non_blocking=True),
        torch.from_numpy(labels).to(device, non_blocking=True),
    )


def _model_device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def _risk_and_loss(
    model: nn.Module,
    w: ServiceWindows,
    edge: torch.Tensor | None,
    batch_size: int,
    device: torch.device,
    pos_weight: Any,
) -> tuple[np.ndarray, float]:
    """``risk [B, N]`` float64 and the summed weighted BCE over all pairs (0 when ``pos_weight`` is None)."""
    risks, total = [], 0.0
    for lo in range(0, len(w), batch_size):
        x, mask, y = _batch(w, np.arange(lo, min(lo + batch_size, len(w))), device)
        logits = model(x, edge, mask).logits.float()
        if pos_weight is not None:
            total += float(F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight, reduction="sum"))
        risks.append(torch.sigmoid(logits).double().cpu().numpy())
    return np.concatenate(risks), total


def predict_risk(
    model: nn.Module,
    windows: Any,
    edge_index: Any = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Risk ``[B, N]`` (float64 in ``[0, 1]``) of every service at every window's last step.

    ``windows``: a :class:`~tgad_lite.data.microservices.ServiceWindows` (normalised as the
    training windows were); ``edge_index [2, E]``: its graph (``None`` only for the no-graph
    model). Runs in eval mode without gradients and puts the model's mode back after.
    ``device``: ``None`` runs where the model is; otherwise the model is moved there first
    (``model.to(device)``, in place, as ``train_risk_model`` does).
    """
    batch_size = _int("batch_size", batch_size, 1)
    if not (hasattr(windows, "x") and hasattr(windows, "labels")):
        raise ValueError(
            f"windows must be one ServiceWindows, got {type(windows).__name__}; for several graphs call "
            "predict_risk once per GraphWindows: predict_risk(model, part.windows, part.edge_index)"
        )
    if device is not None:
        model.to(resolve_device(device))
    dev = _model_device(model)
    [(w, ei, _)] = _parts(windows, edge_index, model, "windows")
    edge = None if ei is None else _edge_tensor(ei, w.x.shape[2], dev, "edge_index")
    was_training = model.training
    model.eval()
    try:
        risk, _ = _risk_and_loss(model, w, edge, batch_size, dev, None)
    finally:
        model.train(was_training)
    return risk


def train_risk_model(
    model: nn.Module,
    train: ServiceWindows | Sequence[GraphWindows],
    val: ServiceWindows | Sequence[GraphWindows],
    edge_index: Any = None,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 3e-3,
    warmup_fraction: float = 0.1,
    weight_decay: float = 1e-4,
    grad_clip: float | None = 1.0,
    patience: int = 8,
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_config: Mapping[str, Any] | None = None,
    amp: bool = True,
    desc: str = "risk model",
) -> TrainResult:
    """Train ``model`` (``forward(x, edge_index, mask) -> .logits [B, N]``) on risk labels; see the module docstring.

    Args:
        model: a :class:`~tgad_lite.temporal.TemporalGAT` (graph or no-graph); moved to ``device``,
            trained in place, left with its best-validation weights.
        train, val: windows on the graph ``edge_index`` (``time_split(...).train`` / ``.val``), or
            lists of :class:`GraphWindows` with ``edge_index=None`` (several graphs). ``val`` must
            hold positive and negative pairs: early stopping watches its PR-AUC.
        edge_index: ``[2, E]`` caller -> callee (array or tensor) for single windows.
        epochs: at most this many passes over the training windows; ``patience``: stop after this
            many epochs in which neither validation PR-AUC nor validation loss matched its best.
        batch_size, lr, weight_decay: AdamW's batches (of windows) and settings.
        warmup_fraction: in ``[0, 1)``, the share of all ``epochs x batches`` optimiser steps over
            which the learning rate rises to ``lr`` before its cosine decay.
        grad_clip: max gradient norm (``None``: measured, not clipped).
        device: ``"auto"`` | ``"cpu"`` | ``"cuda"`` | ``"cuda:N"``; float16 autocast there when
            ``amp`` and the device is a GPU.
        seed: batch order and dropout (the model's initial weights are the caller's).
        checkpoint: a file for the best weights (``fit``'s protocol: marked complete only at the
            end), finally with ``threshold`` and ``positive_weight`` among its metrics;
            ``checkpoint_config`` defaults to ``model.config``.

    Raises ``ValueError`` before any training for bad settings, windows of the wrong shape, a
    graph model without a graph, or training or validation labels of one class only.
    """
    started = time.perf_counter()
    epochs, batch_size, patience = (
        _int("epochs", epochs, 1),
        _int("batch_size", batch_size, 1),
        _int("patience", patience, 1),
    )
    lr = _real("lr", lr, 0.0, math.inf, low_open=True)
    warmup_fraction = _real("warmup_fraction", warmup_fraction, 0.0, 1.0)
    weight_decay = _real("weight_decay", weight_decay, 0.0, math.inf)
    if grad_clip is not None:
        grad_clip = _real("grad_clip", grad_clip, 0.0, math.inf, low_open=True)
    seed = _int("seed", seed, 0)
    dev = resolve_device(device)
    train_parts = _parts(train, edge_index, model, "train")
    val_parts = _parts(val, edge_index, model, "val")
    try:
        weight = positive_weight(_labels(train_parts))
    except ValueError as exc:
        raise ValueError(f"training windows: {exc}") from None
    val_labels = _labels(val_parts)
    if not 0 < int(val_labels.sum()) < val_labels.size:
        raise ValueError(
            f"the validation windows hold {'no' if val_labels.sum() == 0 else 'only'} positive (window, service) "
            "pairs, so validation PR-AUC (what early stopping watches) is undefined; choose a validation span or "
            "graphs with incidents and normal steps (more steps, more incidents, or a larger val fraction)"
        )
    config = checkpoint_config if checkpoint_config is not None else getattr(model, "config", None)
    if checkpoint is not None and config is None:
        raise ValueError(
            "checkpoint needs checkpoint_config (the dict that builds the model): this model has no .config"
        )

    model.to(dev)
    edges = [None if ei is None else _edge_tensor(ei, w.x.shape[2], dev, "edge_index") for w, ei, _ in train_parts]
    val_edges = [None if ei is None else _edge_tensor(ei, w.x.shape[2], dev, "edge_index") for w, ei, _ in val_parts]
    pos_weight = torch.tensor(weight, dtype=torch.float32, device=dev)
    n_batches = sum(math.ceil(len(w) / batch_size) for w, _, _ in train_parts)
    total_steps = epochs * n_batches
    warmup_steps = min(int(warmup_fraction * total_steps), total_steps - 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = warmup_cosine(optimizer, warmup_steps, total_steps)
    amp_step = AmpStep(optimizer, dev, enabled=amp)
    rng = np.random.default_rng(seed)
    n_train = sum(len(w) for w, _, _ in train_parts)

    def train_step() -> dict[str, float]:
        """One epoch: shuffled batches of one graph each, every optimiser step followed by the schedule."""
        batches = [
            (p, order[lo : lo + batch_size])
            for p, (w, _, _) in enumerate(train_parts)
            for order in [rng.permutation(len(w))]
            for lo in range(0, len(w), batch_size)
        ]
        loss_sum, norm_max, skipped = 0.0, 0.0, 0
        for i in rng.permutation(len(batches)):
            p, idx = batches[i]
            x, mask, y = _batch(train_parts[p].windows, np.sort(idx), dev)
            optimizer.zero_grad(set_to_none=True)
            with amp_step.autocast():
                logits = model(x, edges[p], mask).logits
            # The loss in float32 whatever autocast did to the logits.
            loss = F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=pos_weight)
            norm, stepped = amp_step.step(loss, max_norm=grad_clip)
            if stepped:
                schedule.step()  # a skipped (overflowed) step does not advance the schedule
                norm_max = max(norm_max, norm)
            else:
                skipped += 1
            loss_sum += float(loss.detach()) * len(idx)
        if skipped == len(batches):
            raise FloatingPointError(
                f"every optimiser step of the epoch was skipped: the gradients were never finite (lr={lr}); "
                "lower lr, keep grad_clip on, or check the training windows"
            )
        return {"train_loss": loss_sum / n_train, "grad_norm": norm_max, "skipped_steps": float(skipped)}

    def evaluate() -> dict[str, float]:
        risks, total = [], 0.0
        for (w, _, _), edge in zip(val_parts, val_edges, strict=True):
            r, s = _risk_and_loss(model, w, edge, max(batch_size, 256), dev, pos_weight)
            risks.append(r.reshape(-1))
            total += s
        return {"val_loss": total / val_labels.size, "val_pr_auc": pr_auc(np.concatenate(risks), val_labels)}

    # Dropout draws from torch's global generator: seed it for this call only.
    fork_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        history = fit(
            model,
            train_step,
            evaluate,
            max_epochs=epochs,
            patience=patience,
            monitor=_MONITOR,
            restore="val_pr_auc",
            progress=progress,
            desc=desc,
            optimizer=optimizer,
            checkpoint=checkpoint,
            checkpoint_config=config if checkpoint is not None else None,
            display=["train_loss", "val_pr_auc"],
        )
    # The threshold from the restored (best-validation) weights' risk on validation only.
    model.eval()
    with torch.no_grad():
        val_risk = np.concatenate(
            [
                _risk_and_loss(model, w, e, max(batch_size, 256), dev, None)[0].reshape(-1)
                for (w, _, _), e in zip(val_parts, val_edges, strict=True)
            ]
        )
    chosen = best_f1(val_risk, val_labels)
    result = TrainResult(
        history=history,
        threshold=float(chosen.threshold),
        val_f1=chosen.f1,
        val_precision=float(chosen.precision),
        val_recall=chosen.recall,
        val_pr_auc=float(pr_auc(val_risk, val_labels)),
        positive_weight=float(weight),
        checkpoint=Path(checkpoint) if checkpoint is not None else None,
        seconds=0.0,
        device=str(dev),
        settings={
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "warmup_fraction": warmup_fraction,
            "weight_decay": weight_decay,
            "grad_clip": grad_clip,
            "patience": patience,
            "seed": seed,
            "amp": bool(amp_step.active),
        },
    )
    if checkpoint is not None:
        # fit wrote the restored weights marked complete; add what only the recipe knows.
        save_checkpoint(
            checkpoint,
            model,
            config,
            {
                "complete": True,
                "epoch": history.stopped_epoch,
                "best_epoch": history.best_epoch,
                "stopped_epoch": history.stopped_epoch,
                "best": history.best,
                "monitor": dict(_MONITOR),
                "threshold": result.threshold,
                "val_f1": result.val_f1,
                "val_pr_auc": result.val_pr_auc,
                "positive_weight": result.positive_weight,
            },
        )
    result.seconds = time.perf_counter() - started
    return result


# ----------------------------------------------------------------------------- the ServiceRiskModel adapter


def _windows_from(x: Any, mask: Any, labels: Any) -> ServiceWindows:
    """Arrays (or a ServiceWindows as ``x``) as a ServiceWindows; windows assumed consecutive at stride 1."""
    if hasattr(x, "x") and hasattr(x, "mask"):
        if mask is not None:
            raise ValueError("pass either a ServiceWindows or arrays (x, mask, labels), not both")
        if labels is None:
            return x
        x, mask = x.x, x.mask
    arr, m = check_windows(x, mask)
    m = np.isfinite(arr) if m is None else m
    b = arr.shape[0]
    lab = np.zeros((b, arr.shape[2]), dtype=np.int8) if labels is None else np.asarray(labels)
    return ServiceWindows(x=arr, mask=m, labels=lab, t_end=np.arange(b, dtype=np.int64))


def _split_by_time(w: ServiceWindows, fraction: float) -> tuple[ServiceWindows, ServiceWindows]:
    """The earlier windows for training, the later ones for validation, no step shared between them."""
    t = np.asarray(w.t_end)
    cut = np.sort(t)[len(t) - max(1, int(round(fraction * len(t))))]  # first validation target step
    first_val = cut + w.window - 1  # validation windows start at or after ``cut``: no shared step
    train_idx = np.flatnonzero(t < cut)
    val_idx = np.flatnonzero(t >= first_val)
    if not train_idx.size or not val_idx.size:
        raise ValueError(
            f"{len(t)} windows are too few to hold out a validation span of {fraction:.0%} with a gap of "
            f"{w.window - 1} steps; pass val= windows explicitly or train on more windows"
        )
    return w.take(train_idx), w.take(val_idx)


class TemporalRiskModel(ServiceRiskModel):
    """The temporal GAT (or, with ``graph=False``, the no-graph model) as a ``ServiceRiskModel``.

    ``fit(train windows)`` builds a fresh :class:`~tgad_lite.temporal.TemporalGAT` (seeded by
    ``seed``, options ``model_options``) and trains it with :func:`train_risk_model` on the graph
    ``edge_index``. Validation windows for early stopping and the threshold: ``val`` when given
    (e.g. ``time_split(...).val``, the same for every model in a table), otherwise the last
    ``val_fraction`` of the training windows by time (with a gap, so no step is in both).
    ``predict_risk(x, mask)`` returns the sigmoid risk ``[B, N]`` float64; ``threshold_`` is
    the validation-chosen threshold, ``result_`` the :class:`TrainResult`, ``model_`` the network.
    A failed ``fit`` leaves the adapter as it was.
    """

    def __init__(
        self,
        edge_index: Any,
        *,
        graph: bool = True,
        val: ServiceWindows | None = None,
        val_fraction: float = 0.25,
        model_options: Mapping[str, Any] | None = None,
        seed: int = 0,
        name: str | None = None,
        **train_options: Any,
    ) -> None:
        if not isinstance(graph, bool):
            raise ValueError(f"graph must be True (temporal GAT) or False (no-graph model), got {graph!r}")
        if graph and edge_index is None:
            raise ValueError("the graph model needs edge_index [2, E] (caller -> callee); or pass graph=False")
        self.edge_index, self.graph, self.val = edge_index, graph, val
        self.val_fraction = _real("val_fraction", val_fraction, 0.0, 1.0, low_open=True)
        self.model_options = dict(model_options or {})
        for key in ("graph", "num_features"):
            if key in self.model_options:
                raise ValueError(f"model_options must not set {key!r}: the adapter sets it")
        bad = set(train_options) - {
            "epochs", "batch_size", "lr", "warmup_fraction", "weight_decay", "grad_clip", "patience",
            "device", "progress", "checkpoint", "amp", "desc",
        }  # fmt: skip
        if bad:
            raise ValueError(f"unknown training option(s) {sorted(bad)}; see train_risk_model's arguments")
        self.train_options = dict(train_options)
        self.seed = _int("seed", seed, 0)
        self.name = name or ("temporal-gat" if graph else "no-graph")
        self.model_: nn.Module | None = None
        self.result_: TrainResult | None = None
        self.threshold_: float | None = None

    def fit(self, x: Any, mask: Any = None, labels: Any = None) -> Self:
        from tgad_lite.temporal.model import TemporalGAT

        if labels is None and not hasattr(x, "labels"):
            raise ValueError("labels [B, N] are required to fit this model; pass the windows' labels")
        train = _windows_from(x, mask, labels)
        val = self.val if self.val is not None else None
        if val is None:
            train, val = _split_by_time(train, self.val_fraction)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = TemporalGAT(train.num_metrics, graph=self.graph, **self.model_options)
        options = {"progress": False, "desc": self.name, **self.train_options}
        result = train_risk_model(model, train, val, self.edge_index, seed=self.seed, **options)
        self.model_, self.result_, self.threshold_ = model, result, result.threshold
        self.n_metrics_ = train.num_metrics
        return self

    def predict_risk(self, x: Any, mask: Any = None, edge_index: Any = None) -> np.ndarray:
        """Risk ``[B, N]``; ``edge_index``: another graph for these windows (default: the one fitted on)."""
        arr, m = self._inputs(x, mask)
        w = _windows_from(arr, m, None)
        return predict_risk(self.model_, w, self.edge_index if edge_index is None else edge_index)


# ----------------------------------------------------------------------------- unseen topologies


def simulate_topologies(
    num_graphs: int,
    num_services: int | tuple[int, int],
    regime: str = "easy",
    seed: int = 0,
    *,
    steps: int = 1500,
    edge_prob: float | None = None,
    num_incidents: int | None = None,
    **simulate_options: Any,
) -> list[tuple[ServiceGraph, Telemetry]]:
    """``num_graphs`` random service DAGs, each with its own simulated series: ``[(graph, telemetry)]``.

    Graph ``i`` is ``random_service_dag(n_i, edge_prob=...)`` with ``n_i = num_services`` or, for a
    ``(lo, hi)`` pair, drawn uniformly in ``[lo, hi]``; ``edge_prob`` defaults to ``1.5 / n_i``
    (about ``n_i - 1 + 0.75 n_i`` dependencies: the shop graph's 10 on 8 services is this density).
    Its series is ``simulate(graph, steps=steps, regime=regime, num_incidents=...)`` (default
    ``steps // 50`` incidents), every graph and series with its own seed derived from ``seed``, so
    the list is reproducible and graphs differ. ``simulate_options`` go to every ``simulate`` call.
    Use some for training, others (never seen) and the shop graph for testing.
    """
    num_graphs = _int("num_graphs", num_graphs, 1)
    if isinstance(num_services, tuple):
        if len(num_services) != 2:
            raise ValueError(f"num_services must be an int or a (lo, hi) pair, got {num_services!r}")
        lo, hi = _int("num_services[0]", num_services[0], 2), _int("num_services[1]", num_services[1], 2)
        if lo > hi:
            raise ValueError(f"num_services=(lo, hi) needs lo <= hi, got {num_services!r}")
    else:
        lo = hi = _int("num_services", num_services, 2)
    steps = _int("steps", steps, 1)
    seed = _int("seed", seed, 0)
    if edge_prob is not None:
        edge_prob = _real("edge_prob", edge_prob, 0.0, 1.0, high_open=False)
    incidents = max(1, steps // 50) if num_incidents is None else _int("num_incidents", num_incidents, 0)
    draws = np.random.default_rng([seed, 7919]).integers(0, 2**31 - 1, size=(num_graphs, 3))
    out = []
    for graph_seed, series_seed, size_draw in draws:
        n = lo + int(size_draw % (hi - lo + 1))
        p = min(1.0, 1.5 / n) if edge_prob is None else edge_prob
        graph = random_service_dag(n, edge_prob=p, seed=int(graph_seed))
        tel = simulate(
            graph, steps=steps, seed=int(series_seed), regime=regime, num_incidents=incidents, **simulate_options
        )
        out.append((graph, tel))
    return out


def graph_windows(telemetry: Telemetry, window: int, *, calibration: float = 0.25, stride: int = 1) -> GraphWindows:
    """A series' windows with its graph, normalised with statistics of its own first steps only.

    The first ``calibration`` fraction of the steps fits the per-service normaliser
    (:func:`~tgad_lite.data.microservices.fit_service_normaliser`) and serves as input context only;
    the windows are those ending after it (no target in the calibration span). On a graph never
    seen in training this is what a deployment does: watch the new system for a while to learn
    each service's normal levels, then score it. Use the same ``window`` as the model's training.
    Returns ``GraphWindows(windows, graph.edge_index, normaliser)``; pass ``normaliser`` to
    :func:`~tgad_lite.temporal.model_rootcause` with the raw series.
    """
    calibration = _real("calibration", calibration, 0.0, 1.0, low_open=True)
    window = _int("window", window, 1)
    x, mask = np.asarray(telemetry.x), np.asarray(telemetry.mask)
    steps = x.shape[0]
    cut = int(round(calibration * steps))
    if cut < 1 or steps - cut < 1:
        raise ValueError(f"calibration={calibration} of {steps} steps leaves no calibration or no scoring span")
    normaliser = fit_service_normaliser(x[:cut], mask[:cut])
    normalised = _Normalised(normaliser.transform(x), mask, np.asarray(telemetry.labels))
    # Windows end at or after ``cut``, so their targets are outside the calibration span; their
    # first steps may reach back into it as context.
    start = max(0, cut - window + 1)
    windows = make_windows(normalised, window, stride=stride, start=start)
    return GraphWindows(windows, telemetry.graph.edge_index, normaliser)


class _Normalised(NamedTuple):
    x: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
