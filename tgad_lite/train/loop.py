"""A model-agnostic training loop: early stopping, best-on-validation restore, history, progress."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from tgad_lite.progress import Progress


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
) -> History:
    """Train until no monitored validation metric has improved for ``patience`` epochs.

    ``train_step()`` runs one epoch and returns its metrics (e.g. ``{"train_loss": ...}``);
    ``evaluate()`` returns validation metrics containing every key of ``monitor``
    (``"min"`` or ``"max"`` each). The stopping rule is the GAT paper's: the patience counter
    resets when *any* monitored metric improves. Which epoch's weights are restored at the end
    (never simply the last epoch's) is ``restore``:

    - ``"all"`` (the paper's code): the last epoch at which *all* monitored metrics were at least
      as good as their best so far. Once the best loss and the best accuracy fall on different
      epochs, a later epoch qualifies only by matching or beating both at once, so this can
      keep an early, under-trained snapshot.
    - a monitored key, e.g. ``"val_acc"``: the epoch with the best value of that metric, ties
      broken by the other monitored metrics in order (lexicographic).

    Progress: one :class:`tgad_lite.progress.Progress` display per call, with the monitored
    metrics as postfix (``progress=False``: none). ``every``: in ``lines`` mode (papermill runs),
    a line every this many epochs (default: a tenth of ``max_epochs``, at most 100).

    Raises ``FloatingPointError`` (after restoring the best weights seen) if a loss turns NaN/inf.
    """
    if max_epochs < 1 or patience < 1:
        raise ValueError(f"max_epochs and patience must be >= 1, got {max_epochs} and {patience}")
    for key, mode in monitor.items():
        if mode not in ("min", "max"):
            raise ValueError(f"monitor[{key!r}] must be 'min' or 'max', got {mode!r}")
    if restore != "all" and restore not in monitor:
        raise ValueError(f"restore must be 'all' or one of the monitored metrics {list(monitor)}, got {restore!r}")
    sign = {k: (1.0 if m == "max" else -1.0) for k, m in monitor.items()}
    best_seen = {k: -math.inf for k in monitor}  # in "higher is better" units
    order = [] if restore == "all" else [restore, *(k for k in monitor if k != restore)]
    best_key: tuple[float, ...] = tuple(-math.inf for _ in order)
    best_state = copy.deepcopy(model.state_dict())
    history = History()
    waited = 0
    with Progress(max_epochs, desc, every=every, enabled=progress) as bar:
        for epoch in range(1, max_epochs + 1):
            model.train()
            record = {"epoch": epoch, **{k: float(v) for k, v in train_step().items()}}
            model.eval()
            with torch.no_grad():
                record.update({k: float(v) for k, v in evaluate().items()})
            history.records.append(record)
            bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
            if bad:
                model.load_state_dict(best_state)
                restored = (
                    f"epoch {history.best_epoch}"
                    if history.best_epoch >= 1
                    else "no best epoch yet: the weights before training"
                )
                raise FloatingPointError(
                    f"{', '.join(bad)} became non-finite at epoch {epoch}; the best weights so far "
                    f"({restored}) were restored. Lower the learning rate or check the inputs."
                )
            missing = [k for k in monitor if k not in record]
            if missing:
                raise KeyError(
                    f"evaluate() did not return the monitored metric(s) {missing}; it returned {sorted(record)}"
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
            # As in the paper's code, matching a best value (>=) also resets the patience counter.
            if any(scores[k] >= best_seen[k] for k in monitor):
                best_seen = {k: max(best_seen[k], scores[k]) for k in monitor}
                waited = 0
            else:
                waited += 1
            bar.update(**{k: record[k] for k in monitor})
            if waited >= patience:
                break
    history.stopped_epoch = epoch
    model.load_state_dict(best_state)
    return history
