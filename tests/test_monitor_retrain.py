"""Retraining after drift (issue 11, item 4): the keep/reject rule on constructed cases, the forgetting
check against PR-AUC computed directly, and a tiny real fine-tune with replay on the generator's
new-failure-mode drift."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tgad_lite.data.microservices import DriftConfig, fit_service_normaliser, make_windows, shop_graph, simulate
from tgad_lite.metrics.detection import pr_auc
from tgad_lite.monitor.retrain import _time_split, forgetting_check, retrain_decision, retrain_with_replay
from tgad_lite.temporal import TemporalGAT, predict_risk, train_risk_model

WINDOW = 6
DRIFT_AT = 900


# Tiny models run fastest on one torch thread (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- the decision rule


def test_kept_when_better_on_the_new_regime_and_within_the_margin_on_the_old():
    d = retrain_decision(0.8, 0.78, 0.4, 0.7, margin=0.05)
    assert d.keep and d.reason.startswith("kept")
    assert d.new_change == pytest.approx(0.3) and d.old_change == pytest.approx(-0.02)
    assert d.as_dict()["keep"] is True and d.as_dict()["new_change"] == pytest.approx(0.3)


def test_the_margin_is_inclusive():
    # binary fractions, so 0.75 - 0.25 is exactly 0.5: a loss of exactly the margin is accepted
    assert retrain_decision(0.75, 0.5, 0.25, 0.5, margin=0.25).keep
    assert not retrain_decision(0.75, 0.5 - 2**-20, 0.25, 0.5, margin=0.25).keep


def test_rejected_when_it_forgets_the_old_regime():
    d = retrain_decision(0.9, 0.6, 0.4, 0.95, margin=0.05)
    assert not d.keep and "forgetting" in d.reason and "did not improve" not in d.reason


def test_rejected_when_not_better_on_the_new_regime():
    same = retrain_decision(0.9, 0.9, 0.5, 0.5, margin=0.05)
    assert not same.keep and "did not improve" in same.reason
    small = retrain_decision(0.9, 0.9, 0.5, 0.55, margin=0.05, min_gain=0.1)
    assert not small.keep and "by more than 0.1" in small.reason
    both = retrain_decision(0.9, 0.5, 0.5, 0.4, margin=0.05)
    assert not both.keep and "did not improve" in both.reason and "forgetting" in both.reason


@pytest.mark.parametrize(
    "args", [(float("nan"), 0.5, 0.5, 0.5, 0.1), (1.2, 0.5, 0.5, 0.5, 0.1), (0.5, 0.5, 0.5, 0.5, -0.1)]
)
def test_decision_refuses_scores_outside_zero_one(args):
    *scores, margin = args
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        retrain_decision(*scores, margin=margin)


# ----------------------------------------------------------------------------- a real drift and retrain


@pytest.fixture(scope="module")
def regimes():
    """One series: incidents of the training kinds before DRIFT_AT, only memory leaks (never seen) after.

    Spans: old train [0, 500), old validation [500, 700), old test [700, 900); recent new-regime
    windows for retraining [900, 1500), new test [1500, 1800). Normalised with old-training statistics,
    as a deployed model's inputs are.
    """
    drift = DriftConfig(start=DRIFT_AT, new_failure_mode="memory_leak", new_failure_share=1.0)
    tel = simulate(shop_graph(), steps=1800, seed=3, num_incidents=36, drift=drift)
    norm = fit_service_normaliser(tel.x[:500], tel.mask[:500])
    series = SimpleNamespace(x=norm.transform(tel.x), mask=tel.mask, labels=tel.labels)

    def windows(a, b):
        return make_windows(series, WINDOW, start=a, stop=b)

    return {
        "edge_index": tel.graph.edge_index,
        "train": windows(0, 500),
        "val": windows(500, 700),
        "old_test": windows(700, 900),
        "recent": windows(900, 1500),
        "new_test": windows(1500, 1800),
    }


@pytest.fixture(scope="module")
def base(regimes):
    torch.manual_seed(0)
    model = TemporalGAT(4, hidden=16, heads=2)
    train_risk_model(
        model, regimes["train"], regimes["val"], regimes["edge_index"], epochs=6, device="cpu", progress=False
    )
    return model


@pytest.fixture(scope="module")
def retrained(regimes, base):
    before = {k: v.clone() for k, v in base.state_dict().items()}
    new = retrain_with_replay(
        base, regimes["recent"], regimes["train"], regimes["edge_index"], replay_fraction=0.5, epochs=6, device="cpu"
    )
    return new, before


def test_retrain_returns_a_tuned_copy_and_leaves_the_model_alone(base, retrained):
    new, before = retrained
    assert new is not base and new.config == base.config
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(v, base.state_dict()[k]) for k, v in new.state_dict().items())
    result = new.train_result
    assert 0.0 <= result.threshold <= 1.0 and result.history.records


def test_retrain_is_reproducible(regimes, base, retrained):
    new, _ = retrained
    again = retrain_with_replay(
        base, regimes["recent"], regimes["train"], regimes["edge_index"], replay_fraction=0.5, epochs=6, device="cpu"
    )
    for k, v in new.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_forgetting_check_measures_pr_auc_and_applies_the_rule(regimes, base, retrained):
    new, _ = retrained
    ei = regimes["edge_index"]
    decision = forgetting_check(base, new, regimes["old_test"], regimes["new_test"], ei, margin=0.05)

    def auc(model, w):
        return pr_auc(predict_risk(model, w, ei).ravel(), w.labels.ravel())

    assert decision.old_before == auc(base, regimes["old_test"])
    assert decision.old_after == auc(new, regimes["old_test"])
    assert decision.new_before == auc(base, regimes["new_test"])
    assert decision.new_after == auc(new, regimes["new_test"])
    expected = retrain_decision(
        decision.old_before, decision.old_after, decision.new_before, decision.new_after, margin=0.05
    )
    assert decision == expected
    # memory leaks were never in training: the old model does worse on them than on the old regime,
    # and fine-tuning on them with replay helps there
    assert decision.new_before < decision.old_before
    assert decision.new_after > decision.new_before


def test_forgetting_check_refuses_windows_without_incidents(regimes, base):
    w = regimes["old_test"]
    quiet = w.take(np.flatnonzero(w.labels.sum(axis=1) == 0))
    with pytest.raises(ValueError, match="PR-AUC is undefined"):
        forgetting_check(base, base, quiet, regimes["new_test"], regimes["edge_index"], margin=0.05)


def test_retrain_refuses_bad_arguments(regimes, base):
    ei = regimes["edge_index"]
    other = make_windows(
        SimpleNamespace(x=np.zeros((50, 8, 4), np.float32), mask=np.ones((50, 8, 4), bool), labels=np.zeros((50, 8))),
        WINDOW + 1,
    )
    with pytest.raises(ValueError, match="same window"):
        retrain_with_replay(base, regimes["recent"], other, ei)
    with pytest.raises(ValueError, match="replay_fraction"):
        retrain_with_replay(base, regimes["recent"], regimes["train"], ei, replay_fraction=1.0)
    with pytest.raises(ValueError, match="TemporalGAT"):
        retrain_with_replay(torch.nn.Linear(2, 2), regimes["recent"], regimes["train"], ei)
    with pytest.raises(ValueError, match="too few"):
        retrain_with_replay(base, regimes["recent"].take([0, 1, 2]), regimes["train"], ei)


def test_the_retraining_split_shares_no_step_between_training_and_validation(regimes):
    w = regimes["recent"]
    train, val = _time_split(w, 0.25, "recent")
    assert len(train) + len(val) == len(w) - (WINDOW - 1)  # the gap drops window - 1 windows
    last_train_step = w.t_end[train].max()
    first_val_step = w.t_end[val].min() - WINDOW + 1
    assert last_train_step < first_val_step
