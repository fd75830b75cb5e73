"""MTADGAT trains on the package's one loop (tgad_lite.train.fit): history keys, schedules, the tie
rule, divergence errors with their history, one progress display per fit.

Same small CPU models and toy sine as tests/test_mtad_estimator.py; validation losses are scripted
with subclasses of the real model swapped in through ``estimator._model_class``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tgad_lite.mtad import estimator as est_module
from tgad_lite.mtad.estimator import MTADGAT, TrainingDivergedError
from tgad_lite.mtad.model import MTADGATModel

SMALL = dict(window=16, gru_hidden=16, forecast_hidden=16, recon_hidden=16, latent_dim=8, dropout=0.1)
F = 3
TERMS = ("forecast_rmse", "recon_nll", "kl")


def sine(t: int, seed: int = 0) -> np.ndarray:
    steps = np.arange(t)[:, None]
    clean = np.sin(2 * np.pi * steps / np.array([20.0, 31.0, 47.0]))
    return clean + 0.05 * np.random.default_rng(seed).standard_normal((t, F))


# Tiny models run fastest on one torch thread (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def scripted_validation(monkeypatch, totals: list[float]) -> list[dict]:
    """Swap in a model whose validation ``total`` at epoch ``e`` is ``totals[e - 1]`` exactly (one
    validation batch per epoch); returns the list that collects each epoch's weights at validation."""
    snapshots: list[dict] = []

    class Scripted(MTADGATModel):
        def loss(self, x, y_next):
            terms = super().loss(x, y_next)
            if not self.training:
                snapshots.append({k: v.clone() for k, v in self.state_dict().items()})
                terms["total"] = torch.full_like(terms["total"], totals[len(snapshots) - 1])
            return terms

    monkeypatch.setattr(est_module, "_model_class", lambda: Scripted)
    return snapshots


def test_training_runs_on_the_shared_fit_with_the_documented_monitor(monkeypatch):
    calls = []
    real_fit = est_module.fit

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(est_module, "fit", spy)
    fit_args = dict(epochs=2, batch_size=64, lr=5e-3, progress=False)
    MTADGAT(F, **SMALL).fit(sine(200), **fit_args)
    MTADGAT(F, **SMALL).fit(sine(200), val_fraction=0.0, **fit_args)
    assert [(c["monitor"], c["restore"]) for c in calls] == [
        ({"val_loss": "min"}, "val_loss"),
        ({"train_loss": "min"}, "train_loss"),
    ]
    assert all(isinstance(c["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau) for c in calls)


def test_history_records_hold_exactly_the_documented_keys():
    est = MTADGAT(F, **SMALL).fit(sine(300), epochs=2, batch_size=64, lr=5e-3, progress=False)
    expected = {
        "epoch",
        "train_loss",
        *(f"train_{t}" for t in TERMS),
        "val_loss",
        *(f"val_{t}" for t in TERMS),
        "lr",
        "grad_norm_max",
        "seconds",
    }
    for r in est.history_.records:
        assert set(r) == expected
        assert r["seconds"] > 0 and r["grad_norm_max"] > 0 and r["lr"] == 5e-3


def test_plateau_halves_the_rate_after_patience_half_bad_epochs(monkeypatch):
    # Best at epoch 1, then worse: with patience 4 the plateau schedule waits patience // 2 = 2 bad
    # epochs and cuts after the third (epoch 4); early stopping ends the run after 4 bad epochs.
    scripted_validation(monkeypatch, [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    fit_args = dict(epochs=7, patience=4, batch_size=256, lr=1e-2, progress=False)
    history = MTADGAT(F, **SMALL).fit(sine(300), **fit_args).history_
    assert history.column("lr") == [1e-2, 1e-2, 1e-2, 1e-2, 5e-3]
    assert (history.best_epoch, history.stopped_epoch) == (1, 5)


def test_cosine_schedule_decays_per_epoch():
    est = MTADGAT(F, **SMALL).fit(sine(300), epochs=4, patience=10, lr=1e-2, lr_schedule="cosine", progress=False)
    # lr at epoch e: 1e-2 * (1 + cos(pi (e - 1) / 4)) / 2
    expected = [1e-2 * (1 + math.cos(math.pi * (e - 1) / 4)) / 2 for e in range(1, 5)]
    assert est.history_.column("lr") == pytest.approx(expected, rel=1e-9)


def test_a_tie_with_the_best_loss_resets_patience_but_keeps_the_first_best_epoch(monkeypatch):
    # The package loop's rule (the GAT paper's): epoch 3 ties epoch 2's best 0.5, which resets
    # patience (the old MTAD loop counted it as a bad epoch and stopped at 4), while the kept
    # weights stay those of epoch 2, the first to reach the best.
    snapshots = scripted_validation(monkeypatch, [1.0, 0.5, 0.5, 0.7, 0.7, 0.7, 0.7])
    fit_args = dict(epochs=7, patience=2, batch_size=256, lr=1e-2, lr_schedule="none", progress=False)
    est = MTADGAT(F, **SMALL).fit(sine(300), **fit_args)
    assert (est.history_.best_epoch, est.history_.stopped_epoch) == (2, 5)
    for k, v in est.model_.state_dict().items():
        assert torch.equal(v, snapshots[1][k]), k


def test_a_non_finite_validation_loss_is_a_divergence_with_the_history_so_far(monkeypatch):
    snapshots = scripted_validation(monkeypatch, [1.0, 0.5, math.nan])
    est = MTADGAT(F, **SMALL)
    fit_args = dict(epochs=5, patience=3, batch_size=256, lr=1e-2, lr_schedule="none", progress=False)
    with pytest.raises(TrainingDivergedError, match=r"epoch 3, validation: validation loss term total") as info:
        est.fit(sine(300), **fit_args)
    err = info.value
    assert (err.epoch, err.step) == (3, 0) and err.history is est.history_
    assert [r["epoch"] for r in err.history.records] == [1, 2] and err.history.best_epoch == 2
    assert "the best validation loss so far was at epoch 2" in str(err)
    for k, v in est.model_.state_dict().items():
        assert torch.equal(v, snapshots[2][k]), k  # epoch 3's training was fine: its weights are the last good


def test_one_progress_display_per_fit(monkeypatch, capsys):
    monkeypatch.setenv("TGAD_PROGRESS", "lines")
    MTADGAT(F, **SMALL).fit(sine(300), epochs=3, patience=10, batch_size=64, lr=5e-3)
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("mtad-gat fit: ") for line in lines)
    assert lines[-1].startswith("mtad-gat fit: 3/3 done") and "train_loss=" in lines[-1] and "val_loss=" in lines[-1]
