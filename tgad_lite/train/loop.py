"""A model-agnostic training loop: early stopping, best-on-validation restore, history, progress.

:func:`fit` is the package's one epoch loop (Cora's node classification and MTAD-GAT run on it):
the caller supplies ``train_step()`` (one epoch) and ``evaluate()`` (validation metrics); ``fit``
decides when to stop, which epoch's weights to keep, steps a per-epoch learning-rate scheduler,
records each epoch and, on request, keeps a best-on-validation checkpoint on disk.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tgad_lite.progress import Progress
from tgad_lite.train.checkpoint import CheckpointError, save_checkpoint


@dataclass
class History:
    """One record per epoch (``{"epoch", "train_loss", "val_loss", "val_acc", ...}``) plus the outcome."""

    records: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best: dict = field(default_factory=dict)
    stopped_epoch: int = -1

    def column(self, key: str) -> list[float]:
        return [r[key] for r in self.records if key in r]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame.from_records(self.records)


def _annotate(exc: BaseException, history: History, epoch: int, where: str, checkpoint: Path | None) -> None:
    """Attach the history so far to an exception raised by the caller's code, and say where it came from."""
    if getattr(exc, "history", None) is None:
        try:
            exc.history = history  # type: ignore[attr-defined]
        except (AttributeError, TypeError):  # an exception class with __slots__: the note still says where
            pass
    kept = f"; {checkpoint} holds the best weights so far, marked complete: False" if checkpoint is not None else ""
    exc.add_note(
        f"fit: raised by {where}() at epoch {epoch}; {len(history.records)} completed epoch(s) are in "
        f"exc.history; fit left the weights as {where}() left them (no best epoch restored){kept}"
    )


def _scheduler_value(scheduler: Any, monitor: Mapping[str, str]) -> str | None:
    """The monitored key a ``ReduceLROnPlateau`` watches (the first one), checked against its mode; else None."""
    if not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return None
    key, mode = next(iter(monitor.items()))
    if scheduler.mode != mode:
        raise ValueError(
            f"the ReduceLROnPlateau scheduler has mode={scheduler.mode!r} but fit steps it with the first "
            f"monitored metric {key!r}, which is {mode!r}-is-better; build it with mode={mode!r}"
        )
    return key


def fit(
    model: nn.Module,
    train_step: Callable[[], Mapping[str, float]],
    evaluate: Callable[[], Mapping[str, float]],
    *,
    max_epochs: int,
    patience: int,
    monitor: Mapping[str, str] = {"val_loss": "min", "val_acc": "max"},
    restore: str = "all",
    progress: bool = True,
    desc: str = "train",
    every: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_config: Mapping[str, Any] | None = None,
    display: Sequence[str] | None = None,
) -> History:
    """Train until no monitored metric has improved for ``patience`` epochs; return the :class:`History`.

    ``train_step()`` runs one epoch and returns its metrics (e.g. ``{"train_loss": ...}``);
    ``evaluate()`` (run in eval mode under ``torch.no_grad``) returns validation metrics. Every key
    of ``monitor`` (``"min"`` or ``"max"`` each) must be in what one of them returns. The stopping
    rule is the GAT paper's: the patience counter resets when *any* monitored metric matches or
    beats its best so far (``>=``: a tie resets it too). Which epoch's weights are restored at the
    end (never simply the last epoch's) is ``restore``:

    - ``"all"`` (the paper's code): the last epoch at which *all* monitored metrics were at least
      as good as their best so far. Once the best loss and the best accuracy fall on different
      epochs, a later epoch qualifies only by matching or beating both at once, so this can
      keep an early, under-trained snapshot.
    - a monitored key, e.g. ``"val_acc"``: the first epoch with the best value of that metric,
      ties broken by the other monitored metrics in order (lexicographic).

    Each record is ``{"epoch", **train_step(), **evaluate(), "lr", "seconds"}``: ``seconds`` is the
    epoch's wall time (train step and evaluation); ``lr`` (only when ``optimizer`` is given) is
    the learning rate of its first parameter group at the epoch's start.

    ``scheduler``: a per-epoch learning-rate scheduler, stepped once after each evaluation; a
    ``ReduceLROnPlateau`` is given the value of the first monitored metric (and must have that
    metric's mode). A per-step schedule (:func:`tgad_lite.train.warmup_cosine`) is stepped by
    ``train_step`` after each optimiser step instead, not passed here.

    ``checkpoint`` (a file path, with ``checkpoint_config``, the dict that builds the model):
    the best weights are written there with :func:`tgad_lite.train.save_checkpoint` (atomically)
    at the start (the initial weights, ``best_epoch: -1``) and at every new best epoch, with
    metrics ``{"complete": False, "epoch", "best_epoch", "best", "monitor"}``; at the end the
    restored weights are written again with ``"complete": True`` and ``"stopped_epoch"``. A
    training that is interrupted (an exception, a killed process) therefore leaves a file
    that says ``complete: False``, never one claiming to be finished.

    Progress: one :class:`tgad_lite.progress.Progress` display per call, with the ``display`` keys
    of each record as postfix (default: the monitored metrics; ``progress=False``: no display).
    ``every``: in ``lines`` mode (papermill runs), a line every this many epochs (default: a
    tenth of ``max_epochs``, at most 100).

    Errors: an exception raised by ``train_step`` or ``evaluate`` propagates unchanged, with the
    history so far as ``exc.history`` and a note naming the epoch; the weights are left as the
    caller's code left them (its own divergence handling decides what they are). A metric that
    ``fit`` finds NaN/inf in a completed epoch raises ``FloatingPointError`` after restoring the
    best weights seen (``exc.history`` too). ``ValueError`` for bad arguments, before training.
    """
    if max_epochs < 1 or patience < 1:
        raise ValueError(f"max_epochs and patience must be >= 1, got {max_epochs} and {patience}")
    if not monitor:
        raise ValueError('monitor must name at least one metric, e.g. {"val_loss": "min"}')
    for key, mode in monitor.items():
        if mode not in ("min", "max"):
            raise ValueError(f"monitor[{key!r}] must be 'min' or 'max', got {mode!r}")
    if restore != "all" and restore not in monitor:
        raise ValueError(f"restore must be 'all' or one of the monitored metrics {list(monitor)}, got {restore!r}")
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise ValueError(f"scheduler must be a torch learning-rate scheduler (with .step()), got {scheduler!r}")
    plateau_key = _scheduler_value(scheduler, monitor)
    ckpt: Path | None = None
    if checkpoint is not None:
        if checkpoint_config is None:
            raise ValueError(
                "checkpoint needs checkpoint_config, the dict that builds the model (load_checkpoint refuses "
                "a model built otherwise); pass checkpoint_config={...}, or checkpoint=None"
            )
        ckpt = Path(checkpoint)
        if ckpt.is_dir():
            raise CheckpointError(
                f"cannot write the checkpoint {ckpt}: it is a folder; give a file path inside it, "
                f"e.g. {ckpt / 'model.pt'}"
            )
    display = list(monitor) if display is None else list(display)
    sign = {k: (1.0 if m == "max" else -1.0) for k, m in monitor.items()}
    best_seen = {k: -math.inf for k in monitor}  # in "higher is better" units
    order = [] if restore == "all" else [restore, *(k for k in monitor if k != restore)]
    best_key: tuple[float, ...] = tuple(-math.inf for _ in order)
    best_state = copy.deepcopy(model.state_dict())
    history = History()

    def save(complete: bool, epoch: int) -> None:
        if ckpt is None:
            return
        metrics = {
            "complete": complete,
            "epoch": epoch,
            "best_epoch": history.best_epoch,
            "best": history.best,
            "monitor": dict(monitor),
        }
        if complete:
            metrics["stopped_epoch"] = history.stopped_epoch
        save_checkpoint(ckpt, model, checkpoint_config, metrics)

    # Written before training: a file left by an earlier run at this path no longer claims this
    # run finished, and an unwritable path fails now rather than after the first epoch.
    save(False, 0)
    waited = 0
    epoch = 0
    with Progress(max_epochs, desc, every=every, enabled=progress) as bar:
        for epoch in range(1, max_epochs + 1):
            started = time.perf_counter()
            lr = float(optimizer.param_groups[0]["lr"]) if optimizer is not None else None
            model.train()
            try:
                trained = train_step()
            except BaseException as exc:
                _annotate(exc, history, epoch, "train_step", ckpt)
                raise
            record = {"epoch": epoch, **{k: float(v) for k, v in trained.items()}}
            model.eval()
            try:
                with torch.no_grad():
                    validated = evaluate()
            except BaseException as exc:
                _annotate(exc, history, epoch, "evaluate", ckpt)
                raise
            record.update({k: float(v) for k, v in validated.items()})
            if lr is not None:
                record["lr"] = lr
            record["seconds"] = time.perf_counter() - started
            history.records.append(record)
            bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
            if bad:
                model.load_state_dict(best_state)
                restored = (
                    f"epoch {history.best_epoch}"
                    if history.best_epoch >= 1
                    else "no best epoch yet: the weights before training"
                )
                err = FloatingPointError(
                    f"{', '.join(bad)} became non-finite at epoch {epoch}; the best weights so far "
                    f"({restored}) were restored. Lower the learning rate or check the inputs."
                )
                err.history = history  # type: ignore[attr-defined]
                raise err
            missing = [k for k in monitor if k not in record]
            if missing:
                raise KeyError(
                    f"neither evaluate() nor train_step() returned the monitored metric(s) {missing}; the epoch's "
                    f"record has {sorted(record)}. Return them, or monitor one of these"
                )
            scores = {k: sign[k] * record[k] for k in monitor}
            if order:
                key = tuple(scores[k] for k in order)
                snapshot = key > best_key or history.best_epoch < 0
                best_key = max(best_key, key)
            else:
                snapshot = all(scores[k] >= best_seen[k] for k in monitor) or history.best_epoch < 0
            if snapshot:
                best_state = copy.deepcopy(model.state_dict())
                history.best_epoch, history.best = epoch, dict(record)
                save(False, epoch)
            # As in the paper's code, matching a best value (>=) also resets the patience counter.
            if any(scores[k] >= best_seen[k] for k in monitor):
                best_seen = {k: max(best_seen[k], scores[k]) for k in monitor}
                waited = 0
            else:
                waited += 1
            if plateau_key is not None:
                scheduler.step(record[plateau_key])
            elif scheduler is not None:
                scheduler.step()
            bar.update(**{k: record[k] for k in display if k in record})
            if waited >= patience:
                break
    history.stopped_epoch = epoch
    model.load_state_dict(best_state)
    save(True, epoch)
    return history
