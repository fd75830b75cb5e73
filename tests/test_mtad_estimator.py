"""MTADGAT, the estimator: fit/score/save/load, normalisation on training data, robust training.

Small CPU models (window 16, hidden 16) on a toy multivariate sine, so the file runs in seconds.
Training faults are injected with subclasses of the real model (a scripted validation loss, a NaN
loss term, an infinite gradient) swapped in through ``estimator._model_class``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tgad_lite.anomaly.baselines import Detector
from tgad_lite.mtad import estimator as est_module
from tgad_lite.mtad.estimator import MTADGAT, TrainingDivergedError, sliding_windows
from tgad_lite.mtad.model import MTADGATModel
from tgad_lite.train.checkpoint import CheckpointError, CheckpointMismatchError, save_checkpoint

SMALL = dict(window=16, gru_hidden=16, forecast_hidden=16, recon_hidden=16, latent_dim=8, dropout=0.1)
# device="cpu": these tests compare weights and scores exactly, and "auto" would train on a GPU where one exists.
FIT = dict(epochs=2, batch_size=64, lr=5e-3, progress=False, device="cpu")
F = 3
ANOMALY = slice(300, 340)  # test steps where feature 1 is shifted


def sine(t: int, offset: int = 0, seed: int = 0) -> np.ndarray:
    """``[t, F]`` sines of periods 20, 31 and 47 with a little noise: each feature has its own rhythm."""
    steps = np.arange(offset, offset + t)[:, None]
    clean = np.sin(2 * np.pi * steps / np.array([20.0, 31.0, 47.0]))
    return clean + 0.05 * np.random.default_rng(seed).standard_normal((t, F))


# Tiny models run fastest on one torch thread (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fitted(one_thread):
    """One fitted detector, its training series and a test series with an anomalous segment."""
    train = sine(800)
    test = sine(500, offset=800, seed=1)
    test[ANOMALY, 1] += 2.0  # feature 1's whole training range
    est = MTADGAT(F, **SMALL)
    assert est.fit(train, epochs=6, batch_size=64, lr=5e-3, progress=False, seed=0, device="cpu") is est  # fit -> self
    return est, est.history_, train, test


def test_is_a_detector_with_the_model_defaults():
    est = MTADGAT(55)
    assert isinstance(est, Detector) and est.name == "mtad-gat"
    assert est.window == 100 and est.config["gat"] == "gat" and est.config["gamma"] == 1.0
    assert MTADGAT(4, mode="forecasting", window=8).name == "mtad-gat-forecasting"


def test_anomalous_segment_scores_above_normal_steps_and_names_the_feature(fitted):
    est, _, _, test = fitted
    total, per_feature = est.score_with_features(test)
    assert total.shape == (500,) and per_feature.shape == (500, F) and total.dtype == np.float64
    np.testing.assert_allclose(total, per_feature.sum(axis=1))
    normal = np.ones(500, dtype=bool)
    normal[ANOMALY] = False
    normal[: est.window] = False  # the padded start is not a real score
    # A calibrated decoder gives 1 - p uniform on [0, 1) on normal data, so every feature carries a
    # floor of about gamma * 0.5 / (1 + gamma) = 0.25: margins, not ratios, of the total.
    assert total[ANOMALY].mean() > total[normal].mean() + 0.2
    # Attribution: inside the segment, the shifted feature carries the largest score on average.
    assert per_feature[ANOMALY].mean(axis=0).argmax() == 1
    assert per_feature[ANOMALY, 1].mean() > 1.5 * per_feature[normal, 1].mean()
    np.testing.assert_array_equal(est.score(test), total)
    np.testing.assert_array_equal(est.score_features(test), per_feature)


def test_history_records_finite_train_and_val_losses(fitted):
    _, history, _, _ = fitted
    assert [r["epoch"] for r in history.records] == list(range(1, len(history.records) + 1))
    for r in history.records:
        for key in ("train_loss", "val_loss", "train_forecast_rmse", "val_recon_nll", "val_kl", "lr", "grad_norm_max"):
            assert math.isfinite(r[key]), (r["epoch"], key)
    assert history.column("train_loss")[-1] < history.column("train_loss")[0]  # it learnt something
    assert 1 <= history.best_epoch <= history.stopped_epoch
    assert history.best["val_loss"] == min(history.column("val_loss"))


def _pooled_buffers(model: MTADGATModel) -> int:
    """How many scratch tensors the model's GRUs hold for their next call."""
    pools = {id(gru.workspace): gru.workspace for gru in (model.gru, model.decoder)}  # one, shared
    return sum(len(free) for pool in pools.values() for free in pool._free.values())


def test_fit_and_score_leave_no_scratch_buffers_behind(fitted):
    # A kept model (notebook 05 keeps one per channel) must not hold the GRUs' training buffers: 27 of
    # them held 19 GB before fit and score released them.
    est, _, train, test = fitted
    assert _pooled_buffers(est.model_) == 0
    windows = sliding_windows(torch.as_tensor(est.normaliser_.transform(train[:40]), dtype=torch.float32), 16)
    est.model_.train()
    est.model_.loss(windows[:8].contiguous(), torch.zeros(8, F))["total"].backward()
    est.model_.eval()
    est.model_.zero_grad(set_to_none=True)
    assert _pooled_buffers(est.model_) > 0  # a training step does pool its buffers ...
    est.score_with_features(test)
    assert _pooled_buffers(est.model_) == 0  # ... and a scoring pass hands them all back


def test_scores_use_no_future_values_and_pad_the_first_window(fitted):
    est, _, _, test = fitted
    w = est.window
    total = est.score(test)
    np.testing.assert_array_equal(total[:w], np.full(w, total[w]))  # the first window steps: first real score
    changed = test.copy()
    changed[200:] += 3.0
    other = est.score(changed)
    np.testing.assert_allclose(other[:200], total[:200], rtol=1e-6)
    assert not np.allclose(other[200:], total[200:])


def test_sliding_windows_are_views_of_consecutive_steps():
    z = torch.arange(12.0).view(6, 2)
    win = sliding_windows(z, 4)
    assert win.shape == (3, 4, 2) and win.data_ptr() == z.data_ptr()
    torch.testing.assert_close(win[2], z[2:6])


def test_normalisation_is_fitted_on_training_data_only(fitted):
    est, _, train, test = fitted
    norm = est.normaliser_
    np.testing.assert_array_equal(norm.offset, train.min(axis=0))
    np.testing.assert_array_equal(norm.scale, train.max(axis=0) - train.min(axis=0))
    before = (norm.offset.copy(), norm.scale.copy())
    shifted = test + 5.0
    assert est.score(shifted).mean() > est.score(test).mean()  # the shift is seen, not normalised away
    np.testing.assert_array_equal(est.normaliser_.offset, before[0])
    np.testing.assert_array_equal(est.normaliser_.scale, before[1])


def test_save_load_round_trip_gives_identical_scores(fitted, tmp_path):
    est, history, _, test = fitted
    path = est.save(tmp_path / "mtad.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["mtad.pt"]  # no temporary file left behind
    back = MTADGAT.load(path, n_features=F, device="cpu", window=16)
    np.testing.assert_array_equal(back.score(test), est.score(test))
    np.testing.assert_array_equal(back.normaliser_.offset, est.normaliser_.offset)
    assert back.config == est.config and back.history_.best_epoch == history.best_epoch
    assert back.history_.records == history.records  # JSON keeps every float exactly


def test_load_refuses_another_feature_count_or_config(fitted, tmp_path):
    est, _, _, _ = fitted
    path = est.save(tmp_path / "mtad.pt")
    with pytest.raises(CheckpointMismatchError, match=r"trained on 3 features, but n_features=5"):
        MTADGAT.load(path, n_features=5)
    with pytest.raises(CheckpointMismatchError, match=r"gamma: checkpoint 1.0 vs now 2.0.*mode: checkpoint 'both'"):
        MTADGAT.load(path, gamma=2.0, mode="forecasting")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        MTADGAT.load(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        MTADGAT.load(tmp_path / "junk.pt")
    other = save_checkpoint(tmp_path / "other.pt", torch.nn.Linear(2, 2), {"in": 2})
    with pytest.raises(CheckpointMismatchError, match="not of an MTADGAT detector"):
        MTADGAT.load(other)


def test_scoring_or_saving_before_fit_is_refused_clearly(tmp_path):
    est = MTADGAT(F, **SMALL)
    with pytest.raises(RuntimeError, match=r"not fitted; call fit\(train\) or MTADGAT.load"):
        est.score(sine(100))
    with pytest.raises(RuntimeError, match="not fitted"):
        est.save(tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_bad_config_and_arguments_are_refused_before_training(fitted):
    with pytest.raises(ValueError, match=r"unknown MTADGAT config key\(s\) \['epochs'\].*arguments of fit"):
        MTADGAT(F, epochs=3)
    with pytest.raises(ValueError, match="mode must be one of"):
        MTADGAT(F, mode="both-ways")
    with pytest.raises(ValueError, match="gamma must be"):
        MTADGAT(F, gamma=-1)
    est = MTADGAT(F, **SMALL)
    with pytest.raises(ValueError, match="4 features but this MTADGAT was built for n_features=3"):
        est.fit(np.zeros((200, 4)), **FIT)
    with pytest.raises(ValueError, match="leaves 0 training and 4 validation windows"):
        est.fit(sine(20), val_fraction=0.5, **FIT)
    with pytest.raises(ValueError, match="val_fraction must be"):
        est.fit(sine(200), val_fraction=1.0, **FIT)
    assert est.model_ is None  # nothing half-fitted
    fitted_est, _, _, test = fitted
    with pytest.raises(ValueError, match="has 2 features but the model was fitted on 3"):
        fitted_est.score(test[:, :2])
    with pytest.raises(ValueError, match="fewer than the 17 needed"):
        fitted_est.score(test[:16])


def test_same_seed_same_weights_on_cpu_and_the_global_rng_is_untouched():
    train = sine(300)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b, c = (MTADGAT(F, **SMALL) for _ in range(3))
    ha, hb = a.fit(train, seed=7, **FIT).history_, b.fit(train, seed=7, **FIT).history_
    c.fit(train, seed=8, **FIT)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert ha.column("val_loss") == hb.column("val_loss")
    for (k, pa), pb in zip(a.model_.state_dict().items(), b.model_.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), k
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.model_.parameters(), c.model_.parameters(), strict=True))


def test_epochs_zero_is_the_untrained_model_with_its_seeded_initial_weights(fitted):
    _, _, train, test = fitted
    untrained = MTADGAT(F, **SMALL).fit(train, epochs=0, seed=3, progress=False, device="cpu")
    assert untrained.history_.records == [] and untrained.history_.stopped_epoch == 0
    torch.manual_seed(3)
    initial = MTADGATModel(F, **SMALL)
    for (k, a), b in zip(untrained.model_.state_dict().items(), initial.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    trained = MTADGAT(F, **SMALL).fit(train, **{**FIT, "epochs": 1}, seed=3)
    assert any(not torch.equal(a, b) for a, b in zip(trained.model_.parameters(), initial.parameters(), strict=True))
    total, per_feature = untrained.score_with_features(test)
    assert total.shape == (len(test),) and per_feature.shape == (len(test), F) and np.isfinite(per_feature).all()
    with pytest.raises(ValueError, match="epochs must be"):
        MTADGAT(F, **SMALL).fit(train, epochs=-1, progress=False)


def test_val_fraction_zero_monitors_the_training_loss():
    est = MTADGAT(F, **SMALL)
    history = est.fit(sine(200), val_fraction=0.0, lr_schedule="cosine", **FIT).history_
    assert "val_loss" not in history.records[0]
    assert history.best["train_loss"] == min(history.column("train_loss"))


def _swap_model(monkeypatch, cls):
    monkeypatch.setattr(est_module, "_model_class", lambda: cls)


def test_early_stopping_restores_the_best_epochs_weights(monkeypatch):
    snapshots: list[dict] = []
    offsets = [0.0, -1.0, 5.0, 5.0, 5.0, 5.0]  # validation loss bumped per epoch: best at epoch 2

    class ScriptedValidation(MTADGATModel):
        def loss(self, x, y_next):
            terms = super().loss(x, y_next)
            if not self.training:  # one validation batch per epoch (batch_size >= validation windows)
                snapshots.append({k: v.clone() for k, v in self.state_dict().items()})
                terms["total"] = terms["total"] + offsets[len(snapshots) - 1]
            return terms

    _swap_model(monkeypatch, ScriptedValidation)
    est = MTADGAT(F, **SMALL)
    fit = dict(epochs=6, patience=2, batch_size=256, lr=1e-2, lr_schedule="none", progress=False, device="cpu")
    history = est.fit(sine(300), **fit).history_
    assert history.best_epoch == 2 and history.stopped_epoch == 4 and len(snapshots) == 4
    for k, v in est.model_.state_dict().items():
        assert torch.equal(v, snapshots[1][k]), k  # epoch 2's weights, not the last epoch's
    assert any(not torch.equal(v, snapshots[3][k]) for k, v in est.model_.state_dict().items())


def test_a_nan_loss_term_stops_training_and_keeps_the_last_good_weights(monkeypatch):
    seen: list[dict] = []

    class NaNAtStep5(MTADGATModel):
        def loss(self, x, y_next):
            terms = super().loss(x, y_next)
            if self.training:
                seen.append({k: v.detach().clone() for k, v in self.state_dict().items()})
                if len(seen) == 5:  # epoch 2, step 2: 189 training windows -> 3 batches of 64 an epoch
                    terms["recon_nll"] = terms["recon_nll"] * float("nan")
                    terms["total"] = terms["forecast_rmse"] + terms["recon_nll"] + terms["kl"]
            return terms

    _swap_model(monkeypatch, NaNAtStep5)
    est = MTADGAT(F, **SMALL)
    with pytest.raises(
        TrainingDivergedError, match=r"epoch 2, step 2: loss terms recon_nll, total became non-finite"
    ) as info:
        est.fit(sine(216), val_fraction=0.05, **{**FIT, "epochs": 3})
    for k, v in est.model_.state_dict().items():
        assert torch.equal(v, seen[4][k]), k  # the weights the failing step started from
    assert len(est.history_.records) == 1  # epoch 1 completed, epoch 2 did not
    err = info.value
    assert isinstance(err, FloatingPointError) and (err.epoch, err.step) == (2, 2) and "recon_nll" in err.cause
    assert math.isnan(err.terms["recon_nll"]) and math.isfinite(err.grad_norm)
    assert "last finite" in str(err) and "Lower lr" in str(err)
    assert np.isfinite(est.score(sine(100))).all()  # the kept weights still score


def test_an_infinite_gradient_is_reported_with_its_norm(monkeypatch):
    class InfiniteGradient(MTADGATModel):
        def loss(self, x, y_next):
            terms = super().loss(x, y_next)
            w = self.conv.bias
            # sqrt at 0: the value stays 0, its derivative is infinite, times 0 it is NaN.
            terms["total"] = terms["total"] + 0.0 * torch.sqrt(w.sum() - w.sum().detach())
            return terms

    _swap_model(monkeypatch, InfiniteGradient)
    est = MTADGAT(F, **SMALL)
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step 1: the gradient norm became non-finite") as info:
        est.fit(sine(200), **FIT)
    assert not math.isfinite(info.value.grad_norm) and "gradient norm nan" in str(info.value)


def test_a_huge_learning_rate_is_caught_and_the_finite_weights_kept():
    fit = {k: v for k, v in FIT.items() if k != "lr"}
    # 1e39 overflows float32 inside Adam's update, which raises midway through the parameters:
    # the ones already updated are put back.
    est = MTADGAT(F, **SMALL)
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step 1: the optimiser step failed.*overflow") as info:
        est.fit(sine(200), lr=1e39, grad_clip=None, seed=3, **fit)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        initial = MTADGATModel(F, **SMALL)
    for (k, v), v0 in zip(est.model_.state_dict().items(), initial.state_dict().values(), strict=True):
        assert torch.equal(v, v0), k  # the first step failed: the initial weights are the last good ones
    assert info.value.epoch == 1
    # 1e30 fits in float32: the weights jump to ~1e30 and the next loss is not finite.
    est = MTADGAT(F, **SMALL)
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step 2: .*non-finite") as info:
        est.fit(sine(200), lr=1e30, grad_clip=None, **fit)
    assert all(torch.isfinite(p).all() for p in est.model_.parameters())


@pytest.mark.cuda
@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason=f"needs a CUDA GPU: torch {torch.__version__} sees none "
    f"(CUDA build: {torch.version.cuda or 'none, a CPU-only build'})",
)
def test_fit_one_epoch_on_cuda_and_load_on_cpu(tmp_path):
    train, test = sine(400), sine(200, offset=400, seed=1)
    est = MTADGAT(F, **SMALL)
    history = est.fit(train, epochs=1, batch_size=64, device="cuda", progress=False).history_
    assert math.isfinite(history.records[0]["val_loss"]) and est.device_.type == "cuda"
    assert {p.device.type for p in est.model_.parameters()} == {"cuda"}
    total = est.score(test)
    back = MTADGAT.load(est.save(tmp_path / "gpu.pt"), device="cpu")
    np.testing.assert_allclose(back.score(test), total, rtol=1e-4, atol=1e-6)


def test_target_features_score_only_those_columns_and_round_trip(tmp_path):
    train, test = sine(400), sine(200, offset=400, seed=1)
    est = MTADGAT(F, **SMALL, target_features=(2, 0)).fit(train, **{**FIT, "epochs": 1}, seed=0)
    assert est.config["target_features"] == [2, 0]  # stored as the model reads it
    total, per_feature = est.score_with_features(test)
    assert per_feature.shape == (len(test), 2) and np.isfinite(per_feature).all()
    np.testing.assert_allclose(total, per_feature.sum(axis=1))
    path = est.save(tmp_path / "targets.pt")
    back = MTADGAT.load(path, target_features=[2, 0])
    np.testing.assert_array_equal(back.score_features(test), per_feature)
    with pytest.raises(CheckpointMismatchError, match=r"target_features: checkpoint \[2, 0\] vs now \[0\]"):
        MTADGAT.load(path, target_features=[0])
    with pytest.raises(ValueError, match=r"distinct indices in \[0, 2\]"):
        MTADGAT(F, **SMALL, target_features=[3])  # refused at construction, before any data
