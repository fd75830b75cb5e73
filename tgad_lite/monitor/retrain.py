"""Retraining after drift: fine-tune a copy on recent windows with replayed reference windows, then check forgetting.

When drift is confirmed the model was trained on a world that no longer exists. Fine-tuning on the
recent windows alone adapts it to the new regime and can make it forget the old one (catastrophic
forgetting: the incidents it used to catch stop looking like anything it was trained on). Two
guards:

1. **Replay** (:func:`retrain_with_replay`). A COPY of the model is fine-tuned with the package's
   training recipe (:func:`~tgad_lite.temporal.train_risk_model`: weighted BCE, AdamW, early stopping
   on validation PR-AUC) on the recent windows mixed with windows replayed from the reference
   regime, ``replay_fraction`` of the mix. Both sources are split by time into a training part and a
   later validation part (no window shares a step with the other part), and validation holds both
   regimes in the same proportion, so early stopping keeps the epoch that is good on both. The
   original model is never touched.
2. **Forgetting check** (:func:`forgetting_check`). Before and after, PR-AUC (average precision over
   all (window, service) pairs, :func:`~tgad_lite.metrics.detection.pr_auc`) on windows of the old
   regime and of the new one. The new model is kept only if it is better on the new regime
   (by more than ``min_gain``) AND at most ``margin`` worse on the old one
   (:func:`retrain_decision`); the :class:`RetrainDecision` carries the four numbers and the reason.
   Pass windows the retraining did not see (later spans), or the check measures memorisation.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tgad_lite.data.microservices import ServiceWindows
from tgad_lite.metrics.detection import pr_auc
from tgad_lite.temporal import TemporalGAT, predict_risk, train_risk_model

__all__ = ["RetrainDecision", "forgetting_check", "retrain_decision", "retrain_with_replay"]


@dataclass(frozen=True)
class RetrainDecision:
    """The forgetting check's verdict.

    ``keep``: use the new model. PR-AUCs: ``old_before`` (old model, old regime), ``old_after``
    (new model, old regime), ``new_before`` (old model, new regime), ``new_after`` (new model, new
    regime); ``margin``: the largest old-regime loss accepted; ``min_gain``: the new-regime gain
    required beyond 0; ``reason``: one line saying why.
    """

    keep: bool
    old_before: float
    old_after: float
    new_before: float
    new_after: float
    margin: float
    min_gain: float
    reason: str

    @property
    def old_change(self) -> float:
        return self.old_after - self.old_before

    @property
    def new_change(self) -> float:
        return self.new_after - self.new_before

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly, for ``metrics.json`` and a registry version's metrics."""
        return {**asdict(self), "old_change": self.old_change, "new_change": self.new_change}


def _unit(name: str, value: Any) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def retrain_decision(
    old_before: float, old_after: float, new_before: float, new_after: float, *, margin: float, min_gain: float = 0.0
) -> RetrainDecision:
    """Keep the new model iff ``new_after > new_before + min_gain`` and ``old_after >= old_before - margin``.

    All four scores are PR-AUCs in ``[0, 1]``; ``margin`` and ``min_gain`` in ``[0, 1]`` (PR-AUC points).
    """
    ob, oa = _unit("old_before", old_before), _unit("old_after", old_after)
    nb, na = _unit("new_before", new_before), _unit("new_after", new_after)
    margin, min_gain = _unit("margin", margin), _unit("min_gain", min_gain)
    better = na > nb + min_gain
    kept_old = oa >= ob - margin
    new_text = f"new-regime PR-AUC {nb:.3f} -> {na:.3f} ({na - nb:+.3f})"
    old_text = f"old-regime PR-AUC {ob:.3f} -> {oa:.3f} ({oa - ob:+.3f})"
    gain = f" by more than {min_gain:g}" if min_gain > 0 else ""
    if better and kept_old:
        reason = f"kept: {new_text} improved{gain}; {old_text} within the margin {margin:g}"
    else:
        problems = []
        if not better:
            problems.append(f"{new_text} did not improve{gain}")
        if not kept_old:
            problems.append(f"{old_text} lost more than the margin {margin:g} (forgetting)")
        reason = "rejected, keep the old model: " + "; ".join(problems)
    return RetrainDecision(better and kept_old, ob, oa, nb, na, margin, min_gain, reason)


def _check_windows(w: Any, name: str) -> ServiceWindows:
    if not isinstance(w, ServiceWindows):
        raise ValueError(
            f"{name} must be a ServiceWindows (e.g. make_windows(...) or time_split(...).test), got {type(w).__name__}"
        )
    if len(w) == 0:
        raise ValueError(f"{name} holds no windows")
    return w


def _scores(model: nn.Module, w: ServiceWindows, edge_index: Any, name: str, batch_size: int) -> float:
    risk = predict_risk(model, w, edge_index, batch_size=batch_size)
    value = pr_auc(risk.reshape(-1), np.asarray(w.labels).reshape(-1))
    if value is None:
        has = "no incident" if not np.asarray(w.labels).any() else "only incident"
        raise ValueError(
            f"{name} windows hold {has} labels, so PR-AUC is undefined and the forgetting check cannot judge; "
            "pass windows with incidents and normal steps (a longer span, or more incidents)"
        )
    return value


def forgetting_check(
    old_model: nn.Module,
    new_model: nn.Module,
    old_regime: ServiceWindows,
    new_regime: ServiceWindows,
    edge_index: Any,
    *,
    margin: float,
    min_gain: float = 0.0,
    batch_size: int = 256,
) -> RetrainDecision:
    """PR-AUC of both models on both regimes' windows (normalised as in training) and the decision.

    ``old_regime`` / ``new_regime``: windows of the regime before / after the drift, each with
    incidents and normal steps, NOT used in the retraining; ``edge_index [2, E]``: their graph.
    See :func:`retrain_decision` for the rule. Models run in eval mode, their mode restored after.
    """
    old_regime = _check_windows(old_regime, "old_regime")
    new_regime = _check_windows(new_regime, "new_regime")
    return retrain_decision(
        old_before=_scores(old_model, old_regime, edge_index, "old_regime", batch_size),
        old_after=_scores(new_model, old_regime, edge_index, "old_regime", batch_size),
        new_before=_scores(old_model, new_regime, edge_index, "new_regime", batch_size),
        new_after=_scores(new_model, new_regime, edge_index, "new_regime", batch_size),
        margin=margin,
        min_gain=min_gain,
    )


def _time_split(w: ServiceWindows, fraction: float, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the earlier windows (training) and the later ones (validation), no step shared."""
    t = np.asarray(w.t_end)
    order = np.argsort(t, kind="stable")
    n_val = max(1, int(round(fraction * len(t))))
    first_val_end = t[order[len(t) - n_val]]
    train = order[t[order] <= first_val_end - w.window]  # ends before the first validation window starts
    val = order[len(t) - n_val :]
    if train.size == 0:
        raise ValueError(
            f"{name}: {len(t)} windows are too few to hold out the last {fraction:.0%} for validation with a gap "
            f"of {w.window - 1} steps; pass more windows"
        )
    return train, val


def _concat(parts: list[ServiceWindows]) -> ServiceWindows:
    return ServiceWindows(
        x=np.concatenate([p.x for p in parts]),
        mask=np.concatenate([p.mask for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        t_end=np.concatenate([p.t_end for p in parts]),
    )


def retrain_with_replay(
    model: TemporalGAT,
    recent: ServiceWindows,
    reference: ServiceWindows,
    edge_index: Any,
    *,
    replay_fraction: float = 0.5,
    epochs: int = 10,
    seed: int = 0,
    val_fraction: float = 0.25,
    lr: float = 1e-3,
    batch_size: int = 64,
    patience: int = 3,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> TemporalGAT:
    """A fine-tuned COPY of ``model`` on ``recent`` windows mixed with replayed ``reference`` windows.

    ``recent``: windows of the new regime; ``reference``: windows of the regime the model was trained
    on (both ``[B, S, N, F]``, normalised like the model's training data, on the graph ``edge_index``).
    Each is split by time: the last ``val_fraction`` validates (after a gap of ``S - 1`` steps). The
    training mix is every recent training window plus ``k`` reference training windows drawn without
    replacement (seeded), ``k = replay_fraction / (1 - replay_fraction)`` times the recent count (all
    of them if fewer): ``replay_fraction`` is the replayed share of the mix (0: plain fine-tuning, no
    replay). Validation mixes the two validation parts in the same proportion. Then
    :func:`~tgad_lite.temporal.train_risk_model` with ``epochs``, ``lr`` (lower than training from
    scratch: it starts from trained weights), ``batch_size``, ``patience``, ``seed``, ``device``.

    Returns the copy with its best-validation weights; its ``train_result`` attribute holds the
    :class:`~tgad_lite.temporal.TrainResult` (threshold, validation PR-AUC, history). ``model`` is
    left exactly as it was.
    """
    if not isinstance(model, TemporalGAT):
        raise ValueError(f"model must be a TemporalGAT, got {type(model).__name__}")
    recent = _check_windows(recent, "recent")
    reference = _check_windows(reference, "reference")
    if recent.x.shape[1:] != reference.x.shape[1:]:
        raise ValueError(
            f"recent windows are [B, S, N, F] = [*, {', '.join(map(str, recent.x.shape[1:]))}] but reference windows "
            f"[*, {', '.join(map(str, reference.x.shape[1:]))}]: cut both with the same window on the same services"
        )
    ok = isinstance(replay_fraction, numbers.Real) and not isinstance(replay_fraction, bool)
    if not ok or not 0.0 <= replay_fraction < 1.0:
        raise ValueError(f"replay_fraction must be a number in [0, 1) (the replayed share), got {replay_fraction!r}")
    ok = isinstance(val_fraction, numbers.Real) and not isinstance(val_fraction, bool)
    if not ok or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    rec_train, rec_val = _time_split(recent, val_fraction, "recent")
    ref_train, ref_val = _time_split(reference, val_fraction, "reference")
    ratio = replay_fraction / (1.0 - replay_fraction)
    rng = np.random.default_rng([int(seed), 5])
    replay_train = rng.permutation(ref_train)[: min(ref_train.size, int(round(ratio * rec_train.size)))]
    replay_val = rng.permutation(ref_val)[: min(ref_val.size, int(round(ratio * rec_val.size)))]
    train = _concat([recent.take(np.sort(rec_train)), reference.take(np.sort(replay_train))])
    val = _concat([recent.take(np.sort(rec_val)), reference.take(np.sort(replay_val))])

    tuned = TemporalGAT(**model.config)
    tuned.load_state_dict(model.state_dict())
    first = next(model.parameters(), None)
    if first is not None:
        tuned.to(first.device)
    try:
        result = train_risk_model(
            tuned,
            train,
            val,
            edge_index,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            patience=patience,
            device=device,
            seed=int(seed),
            progress=progress,
            desc="retrain with replay",
        )
    except ValueError as exc:
        raise ValueError(
            f"retrain_with_replay: {exc} (training mix: {len(rec_train)} recent + {len(replay_train)} replayed "
            f"windows, validation: {len(rec_val)} + {len(replay_val)})"
        ) from None
    tuned.train_result = result
    return tuned
