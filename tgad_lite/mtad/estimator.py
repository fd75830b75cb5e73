"""MTAD-GAT as a detector: fit on a training series, score any series, save and load, train robustly.

:class:`MTADGAT` wraps :class:`tgad_lite.mtad.model.MTADGATModel` behind the
:class:`tgad_lite.anomaly.baselines.Detector` interface, so it goes into the same tables, threshold
rules and ``evaluate(...)`` calls as the baselines:

- ``fit(train [T, F], ...) -> self``, as every Detector, so ``make().fit(train).score(test)`` loops
  (notebook 04's) take it unchanged; the training history the issue asks for is ``est.history_``;
- ``score(x [T, F]) -> [T]`` (the Detector contract: one number per step, higher = more anomalous);
- ``score_features(x [T, F]) -> [T, F]`` per-feature scores, for attribution (HitRate);
- ``score_with_features(x) -> (total [T], per_feature [T, F])``: both from one pass over the windows.
  This is the issue's ``score(x) -> (total, per_feature)``; it has another name so that ``score``
  keeps returning ``[T]`` like every other Detector.

**Windows.** Step ``t >= window`` is scored by the window of steps ``[t - window, t - 1]`` predicting
(and, with a reconstruction model, reconstructing) step ``t``, so a score uses no value after ``t``.
The first ``window`` steps have no full window before them and get the first available score (that
of step ``window``), as the KNN baseline does; a series must therefore have at least ``window + 1``
steps. Windows are views made with ``torch.Tensor.unfold``: batches are gathered from them, no Python
loop runs over samples.

**Per-feature and total scores.** ``per_feature[t, f]`` is the model's score
``(err_forecast + gamma * (1 - p_reconstruction)) / (1 + gamma)`` (or the one term the ``mode`` has);
``total[t]`` is its sum over features, as in Zhao et al. (2020). With ``target_features`` (see
:mod:`tgad_lite.mtad.model`) only those columns are forecast, reconstructed and scored:
``per_feature`` is ``[T, F_t]`` and ``total`` their sum.

**Normalisation.** Min-max per feature, fitted on ``train`` only
(:func:`tgad_lite.anomaly.protocol.fit_normaliser`) and applied unchanged to every scored series;
test values outside the training range are kept (not clipped), since how far they leave it is what
the detector should see. The validation part of ``train`` is part of the training data, so it is
included in the fit of the normaliser.

**Robust training.** Adam; gradient clipping (``grad_clip``, the max L2 norm of all gradients
together); a learning-rate schedule (``lr_schedule="plateau"``, the default: halve the learning rate
when the validation loss has not improved for more than ``patience // 2`` epochs, so it acts before
early stopping does; ``"cosine"``: cosine decay over ``epochs``; ``"none"``); early stopping on the
validation loss, restoring the best epoch's weights. Every step checks each loss term, the gradient
norm and the updated weights: the first non-finite one stops training, the weights from before that
step (the last good ones) are put back and :class:`TrainingDivergedError` (a ``FloatingPointError``)
names the epoch, the step, the term and the gradient norm. The detector then holds those last good
weights and can score; this is the one case where a failed ``fit`` leaves a fitted detector, because
throwing away the training done so far helps no one (the error says so; refit to start over).
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import torch
from torch import nn

from tgad_lite.anomaly.baselines import Detector
from tgad_lite.anomaly.protocol import Normaliser, fit_normaliser
from tgad_lite.device import resolve_device
from tgad_lite.train.checkpoint import CheckpointError, CheckpointMismatchError, load_checkpoint, save_checkpoint
from tgad_lite.train.gradients import clip_gradients
from tgad_lite.train.loop import History, fit

__all__ = ["MTADGAT", "TrainingDivergedError", "sliding_windows"]

# Written into every saved config: a checkpoint of another model is refused by name, and a later
# change of what is stored bumps the number.
FORMAT = "tgad-lite-mtadgat/1"
LR_SCHEDULES = ("plateau", "cosine", "none")
ESTIMATOR_KEYS = ("gamma",)  # config keys the estimator uses itself; the rest build the model


def _model_class() -> type[nn.Module]:
    from tgad_lite.mtad.model import MTADGATModel

    return MTADGATModel


class TrainingDivergedError(FloatingPointError):
    """A loss term, the gradient norm or the weights became NaN or infinite during ``fit``.

    Attributes: ``epoch`` and ``step`` (1-based; ``step`` counts optimiser steps within the epoch, 0
    for the validation pass), ``terms`` (the loss terms at that step, ``{name: value}``), ``cause``
    (which of them, or ``"gradient norm"`` / ``"weights"``), ``grad_norm`` (the gradient norm at
    that step, or the last finite one when the loss itself was already non-finite) and ``history``
    (the epochs completed before).
    """

    def __init__(
        self,
        message: str,
        *,
        epoch: int,
        step: int,
        cause: str,
        terms: Mapping[str, float],
        grad_norm: float | None,
        history: History,
    ) -> None:
        super().__init__(message)
        self.epoch, self.step, self.cause = epoch, step, cause
        self.terms, self.grad_norm, self.history = dict(terms), grad_norm, history


def sliding_windows(z: torch.Tensor, window: int) -> torch.Tensor:
    """All windows of ``window`` consecutive steps of ``z [T, F]``: a view ``[T - window + 1, window, F]``.

    Window ``i`` holds steps ``i .. i + window - 1``. No data is copied until windows are indexed.
    """
    return z.unfold(0, window, 1).transpose(1, 2)


def _check_number(name: str, value: Any, low: float, high: float, *, integer: bool, open_high: bool = False) -> Any:
    ok = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and low <= value and (value < high if open_high else value <= high)
    if not ok:
        kind = "an int" if integer else "a number"
        hi = f"< {high}" if open_high else f"<= {high}"
        raise ValueError(f"{name} must be {kind} >= {low} and {hi}, got {value!r}")
    return int(value) if integer else float(value)


def _model_defaults(cls: type[nn.Module]) -> dict[str, Any]:
    """The model's constructor keywords with their defaults (``n_features`` excluded)."""
    params = inspect.signature(cls.__init__).parameters
    return {
        k: p.default
        for k, p in params.items()
        if k not in ("self", "n_features") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


class _Packed(nn.Module):
    """The model and the normaliser's statistics in one state dict, so they are saved and loaded together."""

    def __init__(self, model: nn.Module, n_features: int) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("normaliser_offset", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("normaliser_scale", torch.ones(n_features, dtype=torch.float64))


class MTADGAT(Detector):
    """MTAD-GAT (Zhao et al. 2020, arXiv 2009.02040) as a :class:`~tgad_lite.anomaly.baselines.Detector`.

    ``MTADGAT(n_features, **config)``: ``config`` holds the keyword arguments of
    :class:`tgad_lite.mtad.model.MTADGATModel` (``window``, ``kernel_size``, ``gat``, ``mode``, hidden
    sizes, ``dropout``, ...; their defaults are the paper's) and ``gamma`` (default 1.0), the weight
    of the reconstruction term in the score. An unknown key or a bad value is refused here, before
    any training. Attributes after ``fit``: ``model_`` (the torch module, in eval mode),
    ``normaliser_``, ``history_``, ``device_``, ``n_features_``.
    """

    def __init__(self, n_features: int, **config: Any) -> None:
        self.n_features = _check_number("n_features", n_features, 1, math.inf, integer=True)
        cls = _model_class()
        defaults = _model_defaults(cls)
        unknown = sorted(set(config) - set(defaults) - set(ESTIMATOR_KEYS))
        if unknown:
            raise ValueError(
                f"unknown MTADGAT config key(s) {unknown}; valid keys: {', '.join([*ESTIMATOR_KEYS, *defaults])}. "
                "Training settings (epochs, lr, batch_size, ...) are arguments of fit()"
            )
        gamma = _check_number("gamma", config.pop("gamma", 1.0), 0.0, math.inf, integer=False)
        self.model_config: dict[str, Any] = {**defaults, **config}
        self.gamma = gamma
        # Build one model now so a bad value (a negative window, an unknown mode) fails at construction,
        # not after the data is loaded; fork_rng keeps the caller's random stream untouched.
        with torch.random.fork_rng(devices=[]):
            built = cls(self.n_features, **self.model_config)
        # The model's own reading of each key (target_features (0,) is stored as [0]), so a saved config
        # compares equal to the same detector built again.
        self.model_config = {k: built.config.get(k, v) for k, v in self.model_config.items()}
        self.n_targets = built.n_targets
        self.window = int(self.model_config.get("window", 100))
        mode = self.model_config.get("mode", "both")
        self.name = "mtad-gat" if mode == "both" else f"mtad-gat-{mode}"
        self.model_: nn.Module | None = None
        self.normaliser_: Normaliser | None = None
        self.history_: History | None = None
        self.device_: torch.device | None = None

    @property
    def config(self) -> dict[str, Any]:
        """Everything that defines the detector (saved with it): model keywords and ``gamma``."""
        return {**self.model_config, "gamma": self.gamma}

    def _stored_config(self) -> dict[str, Any]:
        return {"format": FORMAT, "n_features": self.n_features, "normaliser": "minmax", **self.config}

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.config.items() if k == "gamma" or v != _model_defaults(_model_class())[k]}
        args = "".join(f", {k}={v!r}" for k, v in changed.items())
        return f"MTADGAT({self.n_features}{args})"

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        train: Any,
        val_fraction: float = 0.1,
        epochs: int = 30,
        batch_size: int = 256,
        lr: float = 1e-3,
        patience: int = 5,
        grad_clip: float | None = 1.0,
        lr_schedule: Literal["plateau", "cosine", "none"] = "plateau",
        device: str | torch.device = "auto",
        progress: bool = True,
        seed: int = 0,
    ) -> Self:
        """Train on ``train [T, F]`` (assumed normal); return ``self``, the history in ``history_``.

        The last ``val_fraction`` of the steps (by time, not shuffled) are the validation part: its
        windows predict steps in that part, reading up to ``window`` steps before it as context.
        With ``val_fraction=0`` early stopping and the plateau schedule watch the training loss.
        ``epochs``: at most this many passes; ``epochs=0`` fits the normaliser only and keeps the seeded
        initial weights: the untrained model, the baseline that shows what training adds.
        ``patience``: stop after this many epochs without a validation loss at least as good as the
        best so far (the first best epoch's weights are restored). ``grad_clip``: max norm of
        the gradient (``None``: no clipping, the norm is still checked). ``seed`` fixes the initial
        weights, the batch order and dropout (the caller's random state is left as it was); on CPU
        the same seed gives the same weights.

        ``history_`` (a :class:`~tgad_lite.train.loop.History`) records, one per epoch: ``epoch``,
        ``train_loss`` (mean total loss over the epoch's windows), ``train_<term>`` for every loss
        term, ``val_loss`` and ``val_<term>`` (eval mode), ``lr``, ``grad_norm_max`` (before
        clipping), ``seconds``. ``best_epoch``, ``best`` and
        ``stopped_epoch`` as in :class:`~tgad_lite.train.loop.History`.

        Raises ``ValueError`` for bad arguments or a series too short for one training and one
        validation window; :class:`TrainingDivergedError` as described in the module docstring.
        """
        val_fraction = _check_number("val_fraction", val_fraction, 0.0, 1.0, integer=False, open_high=True)
        epochs = _check_number("epochs", epochs, 0, math.inf, integer=True)
        batch_size = _check_number("batch_size", batch_size, 1, math.inf, integer=True)
        lr = _check_number("lr", lr, 0.0, math.inf, integer=False)
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        patience = _check_number("patience", patience, 1, math.inf, integer=True)
        if grad_clip is not None:
            grad_clip = _check_number("grad_clip", grad_clip, 0.0, math.inf, integer=False)
            if grad_clip <= 0:
                raise ValueError(
                    f"grad_clip must be > 0 (a max gradient norm) or None for no clipping, got {grad_clip}"
                )
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {'|'.join(LR_SCHEDULES)}, got {lr_schedule!r}")
        seed = _check_number("seed", seed, 0, 2**63 - 1, integer=True)
        dev = resolve_device(device)

        x = self._check_train(train, min_length=self.window + 1)
        t_total, w = x.shape[0], self.window
        if x.shape[1] != self.n_features:
            raise ValueError(
                f"train has {x.shape[1]} features but this MTADGAT was built for n_features={self.n_features}; "
                "pass the matching columns or build MTADGAT(n_features=train.shape[1], ...)"
            )
        cut = t_total - int(round(val_fraction * t_total))
        n_train, n_val = cut - w, t_total - max(cut, w)
        if n_train < 1 or (val_fraction > 0 and n_val < 1):
            raise ValueError(
                f"train has {t_total} steps: with window={w} and val_fraction={val_fraction} that leaves "
                f"{max(n_train, 0)} training and {max(n_val, 0)} validation windows, and each part needs at least "
                "one; pass a longer series, a smaller window or another val_fraction"
            )

        normaliser = fit_normaliser(x, "minmax")
        z = torch.as_tensor(normaliser.transform(x), dtype=torch.float32, device=dev)
        windows = sliding_windows(z, w)
        train_targets = torch.arange(w, cut, device=dev)
        val_targets = torch.arange(max(cut, w), t_total, device=dev) if val_fraction > 0 else None

        cls = _model_class()
        devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            model = cls(self.n_features, **self.model_config).to(dev)
            history, diverged = (
                (History(stopped_epoch=0), None)
                if epochs == 0
                else _train(
                    model,
                    windows,
                    z,
                    train_targets,
                    val_targets,
                    epochs=epochs,
                    batch_size=batch_size,
                    lr=lr,
                    patience=patience,
                    grad_clip=grad_clip,
                    lr_schedule=lr_schedule,
                    progress=progress,
                    desc=f"{self.name} fit",
                    generator=torch.Generator().manual_seed(seed),
                )
            )
        model.release_workspace()
        model.eval()
        self.model_, self.normaliser_, self.history_, self.device_ = model, normaliser, history, dev
        self.n_features_ = self.n_features
        if diverged is not None:
            raise diverged
        return self

    # ------------------------------------------------------------------ scoring

    def _fitted_model(self) -> nn.Module:
        if self.model_ is None or self.n_features_ is None:
            raise RuntimeError(f"{self.name} is not fitted; call fit(train) or MTADGAT.load(path) before scoring")
        return self.model_

    def score_with_features(
        self, x: Any, gamma: float | None = None, batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(total [T], per_feature [T, F_t])`` float64 for ``x [T, F]`` (``T >= window + 1``).

        ``F_t = F`` unless the config's ``target_features`` picks columns; then column ``j`` of
        ``per_feature`` scores feature ``target_features[j]`` and ``total`` sums those columns only.

        ``gamma`` overrides the configured weight of the reconstruction term for this call (no
        retraining needed: it only enters the score). ``batch_size`` windows are scored at a time.
        See the module docstring for which window scores which step.
        """
        model = self._fitted_model()
        x = self._check_input(x, min_length=self.window + 1)
        gamma = self.gamma if gamma is None else _check_number("gamma", gamma, 0.0, math.inf, integer=False)
        batch_size = _check_number("batch_size", batch_size, 1, math.inf, integer=True)
        w = self.window
        z = torch.as_tensor(self.normaliser_.transform(x), dtype=torch.float32, device=self.device_)
        windows = sliding_windows(z, w)
        n = z.shape[0] - w
        out = np.empty((z.shape[0], self.n_targets), dtype=np.float64)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, n, batch_size):
                    stop = min(start + batch_size, n)
                    # windows[k] predicts step w + k; windows[k + 1], ending at that step, reconstructs it.
                    s = model.score_consecutive(windows[start : stop + 1].contiguous(), gamma=gamma)
                    out[w + start : w + stop] = s.double().cpu().numpy()
        finally:
            model.train(was_training)
            model.release_workspace()
        out[:w] = out[w]
        return out.sum(axis=1), out

    def score(self, x: Any) -> np.ndarray:
        """Anomaly score ``[T]`` of every step of ``x [T, F]``: the per-feature scores summed over features."""
        return self.score_with_features(x)[0]

    def score_features(self, x: Any) -> np.ndarray:
        """Per-feature anomaly scores ``[T, F_t]`` (higher = that feature is more anomalous at that step).

        ``F_t = F`` unless ``target_features`` is set (see :meth:`score_with_features`)."""
        return self.score_with_features(x)[1]

    # ------------------------------------------------------------------ save / load

    def save(self, path: str | os.PathLike) -> Path:
        """Write config, feature count, normaliser statistics and weights to ``path`` (atomically); return it.

        The training history goes in the checkpoint's metrics. Raises ``RuntimeError`` before fit,
        :class:`~tgad_lite.train.checkpoint.CheckpointError` when the file cannot be written.
        """
        model = self._fitted_model()
        packed = _Packed(model, self.n_features).to(self.device_)
        packed.normaliser_offset.copy_(torch.as_tensor(self.normaliser_.offset))
        packed.normaliser_scale.copy_(torch.as_tensor(self.normaliser_.scale))
        history = self.history_ or History()
        metrics = {
            "best_epoch": history.best_epoch,
            "stopped_epoch": history.stopped_epoch,
            "best": history.best,
            "records": history.records,
        }
        return save_checkpoint(path, packed, self._stored_config(), metrics)

    @classmethod
    def load(
        cls, path: str | os.PathLike, n_features: int | None = None, device: str | torch.device = "auto", **config: Any
    ) -> MTADGAT:
        """A fitted detector from a file written by :meth:`save`, on ``device``.

        ``n_features`` and any ``config`` keys given are what the caller expects: a checkpoint
        trained with another feature count or another value of a given key is refused with
        :class:`~tgad_lite.train.checkpoint.CheckpointMismatchError` naming each difference.
        Missing, corrupt or foreign files raise ``FileNotFoundError`` /
        :class:`~tgad_lite.train.checkpoint.CheckpointError`. Nothing half-loaded is ever returned.
        """
        path = Path(path)
        stored = _peek_config(path)
        if stored.get("format") != FORMAT:
            raise CheckpointMismatchError(
                f"{path} is a tgad-lite checkpoint but not of an MTADGAT detector (format "
                f"{stored.get('format', '<absent>')!r}, expected {FORMAT!r}); load it with the code that saved it"
            )
        stored_f = stored.get("n_features")
        if n_features is not None and n_features != stored_f:
            raise CheckpointMismatchError(
                f"{path} was trained on {stored_f} features, but n_features={n_features} was asked for; "
                "score data with the training columns, or train a new detector on these features"
            )
        dev = resolve_device(device)
        model_config = {k: v for k, v in stored.items() if k not in ("format", "n_features", "normaliser")}
        try:
            est = cls(stored_f, **model_config)
        except (TypeError, ValueError) as exc:
            raise CheckpointMismatchError(
                f"{path} holds a config this version of MTADGAT cannot build ({exc}); "
                "load it with the code that saved it, or retrain"
            ) from exc
        expected = {**stored, **config}  # keys the caller names must match; load_checkpoint lists every difference
        with torch.random.fork_rng(devices=[]):
            packed = _Packed(_model_class()(stored_f, **est.model_config), stored_f).to(dev)
        meta = load_checkpoint(path, packed, expected, map_location=dev)
        packed.model.eval()
        est.model_ = packed.model
        est.normaliser_ = Normaliser(
            method="minmax",
            offset=packed.normaliser_offset.cpu().numpy().copy(),
            scale=packed.normaliser_scale.cpu().numpy().copy(),
        )
        m = meta.get("metrics", {})
        est.history_ = History(
            records=list(m.get("records", [])),
            best_epoch=int(m.get("best_epoch", -1)),
            best=dict(m.get("best", {})),
            stopped_epoch=int(m.get("stopped_epoch", -1)),
        )
        est.device_ = dev
        est.n_features_ = est.n_features
        return est


def _peek_config(path: Path) -> dict[str, Any]:
    """The config stored in ``path``, read before a model exists to load the weights into."""
    payload = None
    if path.is_file() and path.stat().st_size > 0:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - any failure is reported by load_checkpoint just below
            payload = None
    if isinstance(payload, dict) and isinstance(payload.get("config"), dict):
        return payload["config"]
    # Unreadable, missing or foreign: let the checkpoint module raise its own clear error
    # (missing file, corrupt, unsafe, not a tgad-lite checkpoint).
    load_checkpoint(path, nn.Module(), {})
    raise CheckpointError(f"{path} holds no config; it was not written by MTADGAT.save. Retrain and save it again.")


# ---------------------------------------------------------------------- training loop


class _Diverged(Exception):
    """Raised inside ``fit``'s train step or evaluation; ``_train`` turns it into :class:`TrainingDivergedError`
    once ``fit`` has attached the history (whose best epoch the message names)."""

    def __init__(
        self, epoch: int, step: int, cause: str, terms: Mapping[str, float], norm: float | None, where: str, event=None
    ) -> None:
        super().__init__(cause)
        self.epoch, self.step, self.cause, self.terms, self.norm, self.where = epoch, step, cause, terms, norm, where
        self.event = event
        self.history: History | None = None


def _train(
    model: nn.Module,
    windows: torch.Tensor,
    z: torch.Tensor,
    train_targets: torch.Tensor,
    val_targets: torch.Tensor | None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    grad_clip: float | None,
    lr_schedule: str,
    progress: bool,
    desc: str,
    generator: torch.Generator,
) -> tuple[History, TrainingDivergedError | None]:
    """Adam with clipping, schedule, early stopping and divergence checks; returns (history, error or None).

    ``windows [T - W + 1, W, F]`` (a view of ``z [T, F]``); a target ``t`` is predicted from window
    ``t - W``. The epochs run on the package loop :func:`tgad_lite.train.fit`: this function gives
    it the epoch (``train_step``: per-step checks, clipping, Adam) and the validation pass
    (``evaluate``); ``fit`` steps the schedule, stops early on ``val_loss`` (``train_loss`` without
    validation) and restores the best epoch. Its tie rule applies: a loss equal to the best so far
    resets the patience counter, while the kept weights are those of the first epoch reaching
    the best (``restore`` on that one metric: strict improvement). On divergence the model
    holds the last good weights and the error is returned, not raised, so the caller can keep the
    model first.
    """
    w = windows.shape[1]
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr)
    if lr_schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimiser, mode="min", factor=0.5, patience=patience // 2
        )
    elif lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs)
    else:
        scheduler = None
    last_good = [p.detach().clone() for p in params]  # the weights before the current step
    state: dict[str, Any] = {"epoch": 0, "last_norm": None}  # shared by the two callables below
    n_batches = math.ceil(len(train_targets) / batch_size)

    def failure(d: _Diverged) -> TrainingDivergedError:
        # A non-finite loss is caught before backward, so its own gradient norm does not exist: report
        # the last finite one, which shows whether gradients were growing before the blow-up.
        last_norm = state["last_norm"]
        history = d.history if d.history is not None else History()
        if d.norm is not None:
            norm_text = f"gradient norm {d.norm:.4g}"
        elif last_norm is not None:
            norm_text = f"gradient norm not computed (the loss was already non-finite), last finite {last_norm:.4g}"
        else:
            norm_text = "no gradient computed yet"
        values = ", ".join(f"{k}={v:.4g}" for k, v in d.terms.items())
        best = f"; the best validation loss so far was at epoch {history.best_epoch}" if history.best_epoch > 0 else ""
        event = d.event or f"{d.cause} became non-finite"
        return TrainingDivergedError(
            f"training diverged at epoch {d.epoch}, {d.where}: {event} ({values}; {norm_text}). "
            f"Training stopped and the detector keeps the last good weights (from before this step){best}. "
            f"Lower lr (it was {optimiser.param_groups[0]['lr']:.3g}), keep grad_clip on, or check the training "
            "data; fit() again starts over.",
            epoch=d.epoch,
            step=d.step,
            cause=d.cause,
            terms=d.terms,
            grad_norm=d.norm if d.norm is not None else last_norm,
            history=history,
        )

    def run_loss(targets: torch.Tensor) -> dict[str, torch.Tensor]:
        x = windows[targets - w]  # gathers [B, F, W] rows of the unfold view, then [B, W, F]
        return model.loss(x.contiguous(), z[targets])

    def put_back_last_good() -> None:
        with torch.no_grad():
            for saved, p in zip(last_good, params, strict=True):
                p.copy_(saved)

    def train_step() -> dict[str, float]:
        """One epoch over the shuffled training windows; every step checked (see the module docstring)."""
        state["epoch"] += 1
        epoch = state["epoch"]
        order = train_targets[torch.randperm(len(train_targets), generator=generator).to(train_targets.device)]
        sums: dict[str, float] = {}
        norm_max = 0.0
        for step in range(1, n_batches + 1):
            batch = order[(step - 1) * batch_size : step * batch_size]
            optimiser.zero_grad(set_to_none=True)
            terms = run_loss(batch)
            # One device sync for all terms: the check has to read them anyway.
            values = dict(zip(terms, torch.stack([v.detach().float() for v in terms.values()]).tolist(), strict=True))
            bad = [k for k, v in values.items() if not math.isfinite(v)]
            if bad:
                cause = f"loss term{'s' * (len(bad) > 1)} {', '.join(bad)}"
                raise _Diverged(epoch, step, cause, values, None, f"step {step}")
            terms["total"].backward()
            norm = clip_gradients(params, grad_clip)  # left unclipped when non-finite
            if not math.isfinite(norm):
                optimiser.zero_grad(set_to_none=True)
                raise _Diverged(epoch, step, "the gradient norm", values, norm, f"step {step}")
            with torch.no_grad():
                for saved, p in zip(last_good, params, strict=True):
                    saved.copy_(p)
            try:
                optimiser.step()
            except RuntimeError as exc:  # e.g. an lr that overflows float32 inside Adam's update
                # The step may have updated some parameters before failing: put all of them back.
                put_back_last_good()
                event = f"the optimiser step failed ({exc})"
                raise _Diverged(epoch, step, "the optimiser step", values, norm, f"step {step}", event) from None
            if not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):  # one sync
                put_back_last_good()
                raise _Diverged(epoch, step, "the weights (after the update)", values, norm, f"step {step}")
            state["last_norm"], norm_max = norm, max(norm_max, norm)
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v * len(batch)
        record = {"train_loss": sums["total"] / len(train_targets)}
        record.update({f"train_{k}": v / len(train_targets) for k, v in sums.items() if k != "total"})
        record["grad_norm_max"] = norm_max
        return record

    def evaluate() -> dict[str, float]:
        """Mean loss terms over the validation windows (eval mode, no gradients; fit sets both)."""
        if val_targets is None:
            return {}
        sums: dict[str, float] = {}
        for start in range(0, len(val_targets), batch_size):
            batch = val_targets[start : start + batch_size]
            terms = run_loss(batch)
            values = torch.stack([v.detach().float() for v in terms.values()]).tolist()
            for k, v in zip(terms, values, strict=True):
                sums[k] = sums.get(k, 0.0) + v * len(batch)
        val = {k: v / len(val_targets) for k, v in sums.items()}
        bad = [k for k, v in val.items() if not math.isfinite(v)]
        if bad:
            cause = f"validation loss term{'s' * (len(bad) > 1)} {', '.join(bad)}"
            raise _Diverged(state["epoch"], 0, cause, val, None, "validation")
        return {"val_loss": val["total"], **{f"val_{k}": v for k, v in val.items() if k != "total"}}

    monitored = "val_loss" if val_targets is not None else "train_loss"
    try:
        history = fit(
            model,
            train_step,
            evaluate,
            max_epochs=epochs,
            patience=patience,
            monitor={monitored: "min"},
            restore=monitored,
            optimizer=optimiser,
            scheduler=scheduler,
            progress=progress,
            desc=desc,
            display=[k for k in ("train_loss", "val_loss") if k == "train_loss" or val_targets is not None],
        )
    except _Diverged as d:
        err = failure(d)
        return err.history, err
    return history, None
