"""The temporal risk recipe (issue 10, item 3): train_risk_model, predict_risk, the ServiceRiskModel
adapter, and the unseen-topology data (simulate_topologies, graph_windows)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tgad_lite.anomaly.service_baselines import RandomRisk, ServiceRiskModel
from tgad_lite.data.microservices import make_windows, shop_graph, simulate, time_split
from tgad_lite.metrics.detection import best_f1, pr_auc
from tgad_lite.temporal import (
    GraphWindows,
    TemporalGAT,
    TemporalRiskModel,
    graph_windows,
    predict_risk,
    simulate_topologies,
    train_risk_model,
)
from tgad_lite.temporal.train import _split_by_time
from tgad_lite.train import load_checkpoint

WINDOW = 6
FAST = {"epochs": 5, "patience": 5, "batch_size": 64, "device": "cpu", "progress": False}


# Tiny models run fastest on one torch thread (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed: int = 0, **kwargs) -> TemporalGAT:
    torch.manual_seed(seed)
    return TemporalGAT(4, hidden=16, heads=2, **kwargs)


def _steps(w) -> tuple[int, int]:
    """First and last series step any window of ``w`` reads."""
    return int(w.t_end.min()) - w.window + 1, int(w.t_end.max())


@pytest.fixture(scope="module")
def easy():
    tel = simulate(shop_graph(), steps=800, seed=41, num_incidents=16, regime="easy")
    return tel, time_split(tel, window=WINDOW)


@pytest.fixture(scope="module")
def trained(easy, tmp_path_factory):
    tel, split = easy
    model = _model()
    ckpt = tmp_path_factory.mktemp("ckpt") / "risk.pt"
    result = train_risk_model(model, split.train, split.val, tel.graph.edge_index, checkpoint=ckpt, **FAST)
    return model, result, ckpt


def test_trains_to_a_validation_pr_auc_well_above_random(easy, trained):
    tel, split = easy
    model, result, _ = trained
    positive_rate = float(split.val.labels.mean())  # what a random ranking's PR-AUC is on average
    assert result.val_pr_auc > max(0.5, 3 * positive_rate)
    test_risk = predict_risk(model, split.test, tel.graph.edge_index)
    random = RandomRisk(seed=0).fit(split.train).predict_risk(split.test)
    labels = split.test.labels.ravel()
    assert pr_auc(test_risk.ravel(), labels) > pr_auc(random.ravel(), labels) + 0.3
    assert result.positive_weight == pytest.approx((split.train.labels == 0).sum() / split.train.labels.sum())


def test_the_split_it_trains_on_has_no_window_straddling_a_cut(easy):
    _, split = easy
    (_, c1), (_, c2), _ = split.spans
    first_train, last_train = _steps(split.train)
    first_val, last_val = _steps(split.val)
    first_test, _ = _steps(split.test)
    assert first_train == 0 and last_train < c1 <= first_val and last_val < c2 <= first_test


def test_history_has_warmup_then_cosine_and_one_record_per_epoch(trained):
    _, result, _ = trained
    frame = result.history.to_frame()
    assert list(frame["epoch"]) == list(range(1, len(frame) + 1))
    assert {"train_loss", "val_loss", "val_pr_auc", "grad_norm", "skipped_steps", "lr"} <= set(frame.columns)
    lr = frame["lr"].to_numpy()  # at each epoch's start
    peak = int(np.argmax(lr))
    assert lr[0] < lr[peak] and peak < len(lr) - 1 and lr[-1] < lr[peak]  # rose, then fell
    assert lr[peak] <= 3e-3
    assert (frame["skipped_steps"] == 0).all()  # float32 on the CPU never skips a finite step


def test_threshold_is_the_best_f1_threshold_on_validation_not_test(easy, trained):
    tel, split = easy
    model, result, _ = trained
    val_risk = predict_risk(model, split.val, tel.graph.edge_index)
    chosen = best_f1(val_risk.ravel(), split.val.labels.ravel())
    assert result.threshold == chosen.threshold and result.val_f1 == chosen.f1
    assert result.val_precision == chosen.precision and result.val_recall == chosen.recall


def test_best_epoch_weights_are_restored_and_checkpointed(easy, trained):
    tel, split = easy
    model, result, ckpt = trained
    # The restored weights reproduce the best epoch's validation PR-AUC (not the last epoch's).
    assert result.val_pr_auc == pytest.approx(result.history.best["val_pr_auc"], abs=1e-12)
    best = max(result.history.column("val_pr_auc"))
    assert result.val_pr_auc == pytest.approx(best, abs=1e-12)
    twin = TemporalGAT(**model.config)
    meta = load_checkpoint(ckpt, twin, model.config)
    assert meta["metrics"]["complete"] is True
    assert meta["metrics"]["best_epoch"] == result.best_epoch
    assert meta["metrics"]["threshold"] == result.threshold
    ei = tel.graph.edge_index
    np.testing.assert_array_equal(predict_risk(twin, split.val, ei), predict_risk(model, split.val, ei))


def test_same_seed_same_training(easy):
    tel, split = easy
    runs = []
    for _ in range(2):
        model = _model(seed=3)
        res = train_risk_model(model, split.train, split.val, tel.graph.edge_index, seed=5, **{**FAST, "epochs": 2})
        runs.append((res.history.column("train_loss"), model.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(v, runs[1][1][k]) for k, v in runs[0][1].items())


def test_bad_inputs_are_refused_before_training(easy):
    tel, split = easy
    ei = tel.graph.edge_index
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    no_positives = split.val.take(np.flatnonzero(split.val.labels.sum(axis=1) == 0))
    cases = [
        ((split.train, no_positives, ei), {}, r"validation windows hold no positive.*PR-AUC"),
        ((split.train, split.val, None), {}, r"no edge_index.*graph layers.*graph=False"),
        ((split.train, split.val, np.array([[0, 1], [2, 9]])), {}, r"edge_index.*service 9.*0\.\.7"),
        ((split.train, split.val, ei), {"warmup_fraction": 1.0}, r"warmup_fraction must be a number in \[0.0, 1.0\)"),
        ((split.train, split.val, ei), {"epochs": 0}, "epochs must be an int >= 1"),
        (([GraphWindows(split.train, ei)], split.val, ei), {}, "edge_index must be None"),
        (("windows", split.val, ei), {}, "train must be a ServiceWindows"),
    ]
    for args, kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            train_risk_model(model, *args, **{**FAST, **kwargs})
    wrong_metrics = make_windows(_Series(tel.x[..., :3], tel.mask[..., :3], tel.labels), WINDOW)
    with pytest.raises(ValueError, match="3 metrics per service but the model was built with num_features=4"):
        train_risk_model(model, wrong_metrics, split.val, ei, **FAST)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing trained


class _Series:
    def __init__(self, x, mask, labels):
        self.x, self.mask, self.labels = x, mask, labels


# ----------------------------------------------------------------------------- the adapter


def test_adapter_is_a_service_risk_model_for_the_baselines_table(easy):
    tel, split = easy
    graph = TemporalRiskModel(tel.graph.edge_index, val=split.val, model_options={"hidden": 16, "heads": 2}, **FAST)
    nograph = TemporalRiskModel(None, graph=False, val=split.val, model_options={"hidden": 16, "heads": 2}, **FAST)
    labels = split.test.labels.ravel()
    for model, name in ((graph, "temporal-gat"), (nograph, "no-graph")):
        assert isinstance(model, ServiceRiskModel) and model.name == name
        risk = model.fit(split.train).predict_risk(split.test)
        assert risk.shape == split.test.labels.shape and risk.dtype == np.float64
        assert np.all((risk >= 0) & (risk <= 1))
        assert pr_auc(risk.ravel(), labels) > 3 * labels.mean()
        assert model.threshold_ == model.result_.threshold
    # arrays work as well as ServiceWindows (what the baselines accept)
    np.testing.assert_array_equal(graph.predict_risk(split.test.x, split.test.mask), graph.predict_risk(split.test))


def test_adapter_failed_fit_leaves_it_unfitted(easy):
    _, split = easy
    no_positives = split.val.take(np.flatnonzero(split.val.labels.sum(axis=1) == 0))
    model = TemporalRiskModel(shop_graph().edge_index, val=no_positives, **FAST)
    with pytest.raises(ValueError, match="validation windows hold no positive"):
        model.fit(split.train)
    assert model.model_ is None and model.result_ is None
    with pytest.raises(RuntimeError, match="not fitted"):
        model.predict_risk(split.test)
    with pytest.raises(ValueError, match="unknown training option"):
        TemporalRiskModel(shop_graph().edge_index, epoch=3)
    with pytest.raises(ValueError, match="needs edge_index"):
        TemporalRiskModel(None)


def test_adapter_holds_out_later_windows_without_shared_steps(easy):
    _, split = easy
    train, val = _split_by_time(split.train, 0.25)
    assert _steps(train)[1] < _steps(val)[0]
    assert len(val) == pytest.approx(0.25 * len(split.train), abs=WINDOW)


# ----------------------------------------------------------------------------- unseen topologies


def test_simulate_topologies_is_seeded_and_draws_different_graphs():
    a = simulate_topologies(3, (6, 10), regime="hard", seed=4, steps=300)
    b = simulate_topologies(3, (6, 10), regime="hard", seed=4, steps=300)
    assert len(a) == 3
    for (ga, ta), (gb, tb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ga.edge_index, gb.edge_index)
        np.testing.assert_array_equal(ta.x, tb.x)
        assert 6 <= ga.num_nodes <= 10 and ta.x.shape[:2] == (300, ga.num_nodes) and len(ta.incidents) == 6
    assert len({(g.num_nodes, g.edge_index.tobytes()) for g, _ in a}) == 3
    with pytest.raises(ValueError, match=r"lo <= hi"):
        simulate_topologies(2, (9, 6))


def test_graph_windows_normalise_on_the_calibration_span_only():
    ((graph, tel),) = simulate_topologies(1, 8, seed=5, steps=400)
    part = graph_windows(tel, WINDOW, calibration=0.25)
    assert isinstance(part, GraphWindows) and np.array_equal(part.edge_index, graph.edge_index)
    np.testing.assert_array_equal(part.windows.x[5, -1], part.normaliser.transform(tel.x[105]))
    assert int(part.windows.t_end.min()) == 100 and int(part.windows.t_end.max()) == 399  # no target before step 100
    # Changing the series from step 100 on changes no statistic: the first window (steps 95..100)
    # only moves at its last step.
    later = np.arange(400)[:, None, None] >= 100
    changed = SimpleNamespace(x=np.where(later, tel.x * 3, tel.x), mask=tel.mask, labels=tel.labels, graph=graph)
    other = graph_windows(changed, WINDOW, calibration=0.25)
    np.testing.assert_array_equal(other.windows.x[0, :-1], part.windows.x[0, :-1])
    assert not np.allclose(other.windows.x[0, -1], part.windows.x[0, -1], equal_nan=True)


def test_one_model_trains_on_several_graphs_and_runs_on_the_shop(easy):
    pairs = simulate_topologies(3, (6, 10), regime="easy", seed=6, steps=500)
    parts = [graph_windows(tel, WINDOW) for _, tel in pairs]
    calls: list[tuple[int, bytes]] = []
    model = _model()
    model.register_forward_pre_hook(lambda _, args: calls.append((args[0].shape[2], args[1].numpy().tobytes())))
    result = train_risk_model(model, parts[:3], parts[2:], None, **{**FAST, "epochs": 2})
    assert np.isfinite(result.val_pr_auc)
    graphs = {(g.num_nodes, np.asarray(g.edge_index, dtype=np.int64).tobytes()) for g, _ in pairs}
    # Every batch ran with the graph its windows came from, and every graph was used.
    assert set(calls) == graphs
    tel, split = easy
    shop_risk = predict_risk(model, split.test, tel.graph.edge_index)  # a graph never seen in training
    assert shop_risk.shape == split.test.labels.shape
