"""Per-service risk baselines behind ServiceRiskModel (issue 10, item 4)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tgad_lite.anomaly.service_baselines import (
    WINDOW_STATISTICS,
    GradientBoostingRisk,
    IsolationForestRisk,
    RandomRisk,
    RobustZRisk,
    ServiceRiskModel,
    default_service_baselines,
    window_feature_names,
    window_features,
)
from tgad_lite.data.microservices import METRICS, shop_graph, simulate, time_split
from tgad_lite.metrics.detection import pr_auc


def _models() -> list[ServiceRiskModel]:
    # a short single-threaded GBM keeps the file fast on a busy machine (OpenMP threads fight for the cores)
    gbm = GradientBoostingRisk(max_iter=30, n_threads=1)
    return [RandomRisk(seed=1), RobustZRisk(), IsolationForestRisk(n_estimators=50, seed=1), gbm]


@pytest.fixture(scope="module")
def easy():
    tel = simulate(shop_graph(), steps=900, seed=21, num_incidents=18, regime="easy")
    return time_split(tel, window=8)


@pytest.fixture(scope="module")
def hard():
    tel = simulate(shop_graph(), steps=700, seed=22, num_incidents=14, regime="hard", unobserved_services=[2])
    return time_split(tel, window=8)


@pytest.fixture(scope="module")
def easy_fitted(easy):
    """Every model fitted on the easy training windows once, by name."""
    return {m.name: m.fit(easy.train) for m in _models()}


@pytest.fixture(scope="module")
def easy_risk(easy, easy_fitted):
    """``{name: risk [B, N] on the easy test windows}``."""
    return {name: m.predict_risk(easy.test) for name, m in easy_fitted.items()}


def test_every_baseline_gives_finite_risk_in_range_for_every_service(easy, easy_risk, hard):
    assert [m.name for m in default_service_baselines()] == ["random", "robust-z", "iforest", "gbm"]
    risks = dict(easy_risk)
    for model in _models():
        assert model.fit(hard.train) is model
        risks[f"hard {model.name}"] = model.predict_risk(hard.test)
    for name, risk in risks.items():
        shape = (hard if name.startswith("hard") else easy).test.labels.shape
        assert risk.shape == shape and risk.dtype == np.float64, name
        assert np.isfinite(risk).all() and (risk >= 0).all() and (risk <= 1).all(), name
    # a service with no telemetry gives the z-score rule no evidence: risk 0
    assert (risks["hard robust-z"][:, 2] == 0).all()


def test_gbm_beats_random_pr_auc_on_easy_data(easy, easy_risk):
    labels = easy.test.labels.ravel()
    assert 0 < labels.mean() < 0.5
    scores = {name: pr_auc(risk.ravel(), labels) for name, risk in easy_risk.items()}
    assert scores["random"] < 0.3  # about the positive rate
    assert scores["gbm"] > 0.8 and scores["gbm"] > scores["random"] + 0.5
    assert scores["robust-z"] > scores["random"] + 0.3


def test_windows_or_arrays_give_the_same_risk_and_seeds_fix_it(easy):
    a = IsolationForestRisk(n_estimators=30, seed=3).fit(easy.train).predict_risk(easy.test)
    model = IsolationForestRisk(n_estimators=30, seed=3).fit(easy.train.x, easy.train.mask, easy.train.labels)
    np.testing.assert_array_equal(a, model.predict_risk(easy.test.x, easy.test.mask))
    b = IsolationForestRisk(n_estimators=30, seed=4).fit(easy.train).predict_risk(easy.test)
    assert not np.array_equal(a, b)


def test_window_features_on_a_hand_case():
    # one window, 4 steps, one service, two metrics; metric 0 misses step 2, metric 1 is never observed
    x = np.array([1.0, 2.0, np.nan, 4.0])[None, :, None, None].repeat(2, axis=3)
    mask = np.zeros(x.shape, dtype=bool)
    mask[0, [0, 1, 3], 0, 0] = True
    x[..., 1] = np.nan
    feats = window_features(x, mask)[0, 0]
    names = window_feature_names(METRICS[:2], 2)
    assert len(names) == feats.size == 2 * len(WINDOW_STATISTICS) and names[0] == "cpu:last"
    got = dict(zip(names, feats, strict=True))
    obs = np.array([1.0, 2.0, 4.0])
    assert got["cpu:last"] == 4.0 and got["cpu:mean"] == pytest.approx(7 / 3)
    assert got["cpu:std"] == pytest.approx(obs.std()) and (got["cpu:min"], got["cpu:max"]) == (1.0, 4.0)
    assert got["cpu:slope"] == pytest.approx(np.polyfit([0, 1, 3], obs, 1)[0])
    assert got["cpu:last_minus_mean"] == pytest.approx(4 - 7 / 3) and got["cpu:observed"] == 0.75
    assert np.isnan([got[f"memory:{s}"] for s in WINDOW_STATISTICS[:-1]]).all() and got["memory:observed"] == 0.0


def test_robust_z_rule_on_a_hand_case():
    # training last steps of one service, one metric: 10, 11, 12, 13, 14 -> median 12, MAD 1
    train = np.array([10.0, 11, 12, 13, 14]).reshape(5, 1, 1, 1)
    model = RobustZRisk(z_half=2.0).fit(train, labels=np.zeros((5, 1)))
    test = np.array([12.0 + 1.482602218505602 * 4, 12.0]).reshape(2, 1, 1, 1)  # z = 4, then 0
    np.testing.assert_allclose(model.z_scores(test)[:, 0], [4.0, 0.0])
    np.testing.assert_allclose(model.predict_risk(test)[:, 0], [4 / 6, 0.0])


def test_refused_inputs_say_what_to_do(easy):
    with pytest.raises(RuntimeError, match="not fitted"):
        RobustZRisk().predict_risk(easy.test)
    with pytest.raises(ValueError, match="make_windows"):
        RandomRisk().fit(np.zeros((10, 8, 4)))
    with pytest.raises(ValueError, match="mask must be"):
        RobustZRisk().fit(easy.train.x, np.ones(easy.train.x.shape, dtype=np.int8), easy.train.labels)
    bad = np.array(easy.train.x)
    bad[0, -1, 0, 0] = np.nan  # the rule reads the last step
    with pytest.raises(ValueError, match="where mask says observed"):
        RobustZRisk().fit(bad, np.ones(bad.shape, dtype=bool), easy.train.labels)
    with pytest.raises(ValueError, match="both classes"):
        GradientBoostingRisk(max_iter=5, n_threads=1).fit(
            easy.train.x, easy.train.mask, np.zeros_like(easy.train.labels)
        )
    with pytest.raises(ValueError, match="0/1"):
        GradientBoostingRisk(max_iter=5, n_threads=1).fit(easy.train.x, easy.train.mask, easy.train.labels * 2)
    with pytest.raises(ValueError, match="labels"):
        GradientBoostingRisk(max_iter=5, n_threads=1).fit(easy.train.x, easy.train.mask)
    fitted = RobustZRisk().fit(easy.train)
    with pytest.raises(ValueError, match="3 metrics"):
        fitted.predict_risk(easy.test.x[..., :3])
    with pytest.raises(ValueError, match="same services"):
        fitted.predict_risk(easy.test.x[:, :, :5])
    with pytest.raises(ValueError, match="not both"):
        fitted.predict_risk(easy.test, easy.test.mask)
    for make in (
        lambda: RobustZRisk(z_half=0),
        lambda: GradientBoostingRisk(max_iter=0),
        lambda: GradientBoostingRisk(n_threads=0),
        lambda: RandomRisk(seed=-1),
    ):
        with pytest.raises(ValueError):
            make()


def test_a_refused_refit_keeps_the_previous_model(easy, easy_fitted, easy_risk):
    model = copy.deepcopy(easy_fitted["gbm"])
    before = easy_risk["gbm"]
    with pytest.raises(ValueError, match="both classes"):
        model.fit(easy.train.x, easy.train.mask, np.zeros_like(easy.train.labels))
    np.testing.assert_array_equal(model.predict_risk(easy.test), before)
