"""Tests for the synthetic microservice telemetry generator."""

from __future__ import annotations

import json
from collections import deque
from itertools import pairwise

import numpy as np
import pytest

from tgad_lite.data.microservices import (
    INCIDENT_KINDS,
    METRICS,
    DriftConfig,
    Incident,
    ServiceGraph,
    random_service_dag,
    shop_graph,
    simulate,
)

LAT = METRICS.index("latency_ms")
CPU = METRICS.index("cpu")
MEM = METRICS.index("memory")
ERR = METRICS.index("error_rate")


def _reachable_from(graph: ServiceGraph, source: int) -> set[int]:
    seen, queue = {source}, deque([source])
    while queue:
        for v in graph.callees_of(queue.popleft()):
            if int(v) not in seen:
                seen.add(int(v))
                queue.append(int(v))
    return seen


def _assert_same(a, b):
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.root_cause, b.root_cause)
    np.testing.assert_array_equal(a.load, b.load)
    assert a.incidents == b.incidents


# --------------------------------------------------------------------------- graphs


def test_shop_graph_has_the_eight_services_and_is_a_dag():
    g = shop_graph()
    assert g.names == ["Frontend", "Auth", "Cart", "Order", "Payment", "Inventory", "Fraud", "Notification"]
    assert g.edge_index.dtype == np.int64 and g.edge_index.shape == (2, g.num_edges)
    assert g.is_acyclic() and g.to_igraph().is_dag()
    name = g.names.__getitem__
    assert [name(i) for i in g.callers_of(g.index("Fraud"))] == ["Payment"]
    assert {name(i) for i in g.callees_of(g.index("Order"))} == {"Auth", "Payment", "Inventory", "Notification"}
    # Frontend is the only entry service and reaches everything
    entries = [i for i in range(g.num_nodes) if g.callers_of(i).size == 0]
    assert entries == [g.index("Frontend")]
    assert _reachable_from(g, 0) == set(range(8))
    with pytest.raises(ValueError):  # read-only: nobody can rewire a shared graph in place
        g.edge_index[0, 0] = 5


@pytest.mark.parametrize("n", [1, 2, 7, 25, 60])
@pytest.mark.parametrize("seed", [0, 3])
def test_random_dag_is_acyclic_and_reachable(n, seed):
    g = random_service_dag(n, edge_prob=0.2, seed=seed)
    assert g.num_nodes == n and len(g.names) == n and g.names[0] == "svc-00"
    assert g.is_acyclic() and g.to_igraph().is_dag()
    assert _reachable_from(g, 0) == set(range(n))
    assert np.all(g.edge_index[0] < g.edge_index[1])  # indices are a topological order
    again = random_service_dag(n, edge_prob=0.2, seed=seed)
    np.testing.assert_array_equal(g.edge_index, again.edge_index)


def test_random_dag_edge_prob_controls_density():
    tree = random_service_dag(30, edge_prob=0.0, seed=1)
    assert tree.num_edges == 29  # just the spanning caller of each service
    full = random_service_dag(30, edge_prob=1.0, seed=1)
    assert full.num_edges == 30 * 29 // 2
    a, b = random_service_dag(30, seed=1), random_service_dag(30, seed=2)
    assert a.edge_index.shape != b.edge_index.shape or not np.array_equal(a.edge_index, b.edge_index)


def test_cyclic_graph_is_rejected_by_simulate():
    g = ServiceGraph(["a", "b", "c"], np.array([[0, 1, 2], [1, 2, 1]]))
    assert not g.is_acyclic()
    with pytest.raises(ValueError, match=r"cycle through \['b', 'c'\].*remove one dependency"):
        simulate(g, steps=50, seed=0, num_incidents=0)


# --------------------------------------------------------------------------- telemetry basics


def test_shapes_dtypes_and_physical_ranges():
    g = shop_graph()
    tel = simulate(g, steps=600, seed=0, num_incidents=5)
    assert tel.x.shape == (600, 8, 4) and tel.x.dtype == np.float32
    assert tel.labels.shape == (600, 8) and tel.labels.dtype == np.int8
    assert tel.root_cause.shape == (600,) and tel.root_cause.dtype == np.int64
    assert tel.load.shape == (600, 8)
    assert tel.metric_names == ("cpu", "memory", "latency_ms", "error_rate") and tel.step_minutes == 5
    assert np.isfinite(tel.x).all()
    assert (tel.metric("cpu") >= 0).all() and (tel.metric("cpu") <= 100).all()
    assert (tel.metric("memory") >= 0).all() and (tel.metric("memory") <= 100).all()
    assert (tel.metric("latency_ms") > 0).all()
    assert (tel.metric("error_rate") >= 0).all() and (tel.metric("error_rate") <= 1).all()
    assert set(np.unique(tel.labels)) == {0, 1}
    assert len(tel.incidents) == 5 and tel.config.num_incidents == 5
    json.dumps(tel.metadata())  # run metadata must be writable as-is


def test_same_seed_same_data_different_seed_different_data():
    g = shop_graph()
    a = simulate(g, steps=400, seed=11, num_incidents=4)
    _assert_same(a, simulate(g, steps=400, seed=11, num_incidents=4))
    b = simulate(g, steps=400, seed=12, num_incidents=4)
    assert not np.array_equal(a.x, b.x)
    assert a.incidents != b.incidents


def test_simulate_leaves_global_rng_alone():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    simulate(shop_graph(), steps=100, seed=0, num_incidents=1)
    assert np.random.random() == expected


def test_daily_seasonality_and_load_flows_along_dependencies():
    g = shop_graph()
    tel = simulate(g, steps=288 * 3, seed=2, num_incidents=0)  # three days of 5-minute steps
    hour = (np.arange(tel.num_steps) * tel.step_minutes / 60) % 24
    front = tel.load[:, g.index("Frontend")]
    assert front[(hour >= 11) & (hour < 13)].mean() > 1.4 * front[(hour >= 23) | (hour < 1)].mean()
    # a callee's traffic follows its caller's
    corr = np.corrcoef(tel.load[:, g.index("Payment")], tel.load[:, g.index("Fraud")])[0, 1]
    assert corr > 0.9
    cpu_corr = np.corrcoef(tel.metric("cpu")[:, g.index("Order")], tel.metric("cpu")[:, g.index("Inventory")])[0, 1]
    assert cpu_corr > 0.5
    assert (tel.labels == 0).all() and (tel.root_cause == -1).all()


# --------------------------------------------------------------------------- incidents


def test_cascade_goes_upstream_with_delay_and_decay():
    g = shop_graph()
    delay, decay, start, dur = 2, 0.6, 100, 5
    kw = dict(steps=200, seed=4, hop_delay=delay, hop_decay=decay, severity_threshold=0.15)
    fraud = g.index("Fraud")
    inc = Incident(root=fraud, start=start, duration=dur, kind="latency_spike", severity=1.0)
    clean = simulate(g, incidents=[], **kw)
    hit = simulate(g, incidents=[inc], **kw)

    chain = [g.index(s) for s in ("Fraud", "Payment", "Order", "Frontend")]  # hop 0, 1, 2, 3
    rel_dev = []
    for hop, v in enumerate(chain):
        on = np.flatnonzero(hit.labels[:, v])
        np.testing.assert_array_equal(on, np.arange(start + hop * delay, start + hop * delay + dur))
        window = slice(on[0], on[-1] + 1)
        rel_dev.append(np.mean(hit.x[window, v, LAT] / clean.x[window, v, LAT] - 1))
    assert rel_dev[0] > 0
    assert all(later < earlier for earlier, later in pairwise(rel_dev))
    np.testing.assert_allclose(np.array(rel_dev[1:]) / np.array(rel_dev[:-1]), decay, rtol=1e-3)

    # services that do not (transitively) call Fraud are never touched
    for name in ("Auth", "Cart", "Inventory", "Notification"):
        v = g.index(name)
        assert hit.labels[:, v].sum() == 0
        np.testing.assert_array_equal(hit.x[:, v], clean.x[:, v])
    # outside the hit windows the series is the clean one
    np.testing.assert_array_equal(hit.x[hit.labels == 0], clean.x[hit.labels == 0])
    assert set(np.unique(hit.root_cause[start : start + 3 * delay + dur])) == {fraud}
    assert (np.delete(hit.root_cause, np.arange(start, start + 3 * delay + dur)) == -1).all()


def test_cascade_stops_below_threshold():
    g = shop_graph()
    # 0.6 * 0.6**3 = 0.13 < 0.15: Frontend (3 hops above Fraud) is spared, Order (0.216) is not
    inc = Incident(g.index("Fraud"), 20, 4, "error_burst", 0.6)
    tel = simulate(g, steps=60, seed=0, incidents=[inc], hop_decay=0.6, severity_threshold=0.15)
    assert tel.labels[:, g.index("Order")].sum() == 4
    assert tel.labels[:, g.index("Frontend")].sum() == 0


def test_callers_see_latency_and_errors_but_not_root_cpu():
    g = shop_graph()
    inc = Incident(g.index("Fraud"), 30, 6, "cpu_saturation", 1.0)
    clean = simulate(g, steps=80, seed=1, incidents=[])
    hit = simulate(g, steps=80, seed=1, incidents=[inc])
    fraud, payment = g.index("Fraud"), g.index("Payment")
    assert (hit.x[30:36, fraud, CPU] > clean.x[30:36, fraud, CPU] + 20).all()
    np.testing.assert_array_equal(hit.x[:, payment, CPU], clean.x[:, payment, CPU])
    assert (hit.x[31:37, payment, LAT] > clean.x[31:37, payment, LAT]).all()


def test_root_cause_matches_incidents():
    g = random_service_dag(12, edge_prob=0.2, seed=5)
    tel = simulate(g, steps=1500, seed=8, num_incidents=12, min_gap=2)
    assert len(tel.incidents) == 12
    covered = np.zeros(tel.num_steps, dtype=bool)
    prev_end = -1
    for inc in tel.incidents:
        assert inc.start > prev_end  # sorted, footprints disjoint, gap respected
        assert tel.labels[inc.start, inc.root] == 1
        assert tel.root_cause[inc.start] == inc.root
        end = inc.start
        while end < tel.num_steps and tel.root_cause[end] == inc.root:
            end += 1
        labelled = tel.labels[inc.start : end]
        assert labelled[-1].any()  # the footprint ends with the last hit step
        hit_services = set(np.flatnonzero(labelled.any(axis=0)).tolist())
        assert hit_services <= set(g.upstream_hops(inc.root))
        covered[inc.start : end] = True
        prev_end = end
    assert (tel.root_cause[~covered] == -1).all()
    assert (tel.labels[~covered] == 0).all()


def test_incidents_fit_a_tight_series_with_min_gap_between():
    # one service: no cascade, so each footprint is exactly its duration and slack is zero
    g = ServiceGraph(["solo"], np.zeros((2, 0), dtype=np.int64))
    tel = simulate(g, steps=4 * 5 + 3 * 3, seed=0, num_incidents=4, duration=(5, 5), min_gap=3)
    assert [i.start for i in tel.incidents] == [0, 8, 16, 24]
    np.testing.assert_array_equal(tel.labels[:, 0], np.tile([1] * 5 + [0] * 3, 4)[:29])
    with pytest.raises(ValueError, match="raise steps"):
        simulate(g, steps=28, seed=0, num_incidents=4, duration=(5, 5), min_gap=3)


def test_random_incidents_use_requested_kinds_and_ranges():
    tel = simulate(
        shop_graph(),
        steps=3000,
        seed=3,
        num_incidents=30,
        incident_kinds=("error_burst", "memory_leak"),
        duration=(2, 4),
        severity=(0.7, 0.9),
    )
    assert {i.kind for i in tel.incidents} == {"error_burst", "memory_leak"}
    assert all(2 <= i.duration <= 4 and 0.7 <= i.severity <= 0.9 for i in tel.incidents)
    assert all(i.start + i.duration <= 3000 for i in tel.incidents)


# --------------------------------------------------------------------------- drift


def test_traffic_drift_shifts_post_drift_and_keeps_pre_drift():
    g = shop_graph()
    start, scale = 500, 1.3
    kw = dict(steps=1000, seed=6, num_incidents=6)
    base = simulate(g, **kw)
    drifted = simulate(g, drift=DriftConfig(start=start, traffic_scale=scale), **kw)
    for a, b in ((base.x, drifted.x), (base.labels, drifted.labels), (base.load, drifted.load)):
        np.testing.assert_array_equal(a[:start], b[:start])
    assert base.incidents == drifted.incidents
    np.testing.assert_allclose(drifted.load[start:] / base.load[start:], scale, rtol=1e-5)
    quiet = (base.labels[start:] == 0) & (drifted.labels[start:] == 0)
    cpu_ratio = drifted.x[start:, :, CPU][quiet].mean() / base.x[start:, :, CPU][quiet].mean()
    assert cpu_ratio == pytest.approx(scale, rel=0.01)
    assert drifted.x[start:, :, LAT][quiet].mean() > base.x[start:, :, LAT][quiet].mean()
    assert drifted.config.drift.traffic_scale == scale


def test_new_failure_mode_appears_only_after_drift():
    g = shop_graph()
    start = 1000
    kw = dict(steps=2000, seed=9, num_incidents=10)
    base = simulate(g, **kw)
    post = [i for i in base.incidents if i.start >= start]
    assert post and all(i.kind != "memory_leak" for i in base.incidents)

    drifted = simulate(g, drift=DriftConfig(start, new_failure_mode="memory_leak", new_failure_share=1.0), **kw)
    np.testing.assert_array_equal(base.x[:start], drifted.x[:start])
    np.testing.assert_array_equal(base.labels, drifted.labels)  # the cascade is unchanged
    assert [i.kind for i in drifted.incidents if i.start < start] == [i.kind for i in base.incidents if i.start < start]
    assert all(i.kind == "memory_leak" for i in drifted.incidents if i.start >= start)
    first = next(i for i in drifted.incidents if i.start >= start)
    last = first.start + first.duration - 1
    assert drifted.x[last, first.root, MEM] > base.x[last, first.root, MEM] + 10

    half = simulate(g, drift=DriftConfig(start, new_failure_mode="memory_leak"), **kw)
    kinds = [i.kind for i in half.incidents if i.start >= start]
    assert kinds[0] == "memory_leak" and kinds.count("memory_leak") == (len(kinds) + 1) // 2


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(steps=0), ValueError, "steps must be > 0"),
        (dict(steps=10.5), TypeError, "steps must be an int"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
        (dict(num_incidents=50), ValueError, "raise steps, or lower num_incidents"),
        (dict(severity=(0.1, 0.9)), ValueError, "raise severity"),
        (dict(duration=(5, 2)), ValueError, "low <= high"),
        (dict(incident_kinds=("latency_spike", "meltdown")), ValueError, "distinct kinds from"),
        (dict(hop_decay=1.5), ValueError, "hop_decay"),
        (dict(drift=DriftConfig(start=300)), ValueError, "use a start below 300"),
        (dict(drift=DriftConfig(start=10, new_failure_mode="latency_spike")), ValueError, "not new"),
        (
            dict(drift=DriftConfig(start=299, new_failure_mode="memory_leak")),
            ValueError,
            "lower drift.start or raise num_incidents",
        ),
        (dict(incidents=[Incident(0, 5, 3, "error_burst", 1.0)], num_incidents=2), ValueError, "not both"),
        (
            dict(incidents=[Incident(0, 298, 5, "error_burst", 1.0)], num_incidents=None),
            ValueError,
            "runs past the end",
        ),
        (
            dict(incidents=[Incident(9, 5, 3, "error_burst", 1.0)], num_incidents=None),
            ValueError,
            "graph has 8 services",
        ),
        (
            dict(
                incidents=[Incident(6, 10, 5, "error_burst", 1.0), Incident(1, 14, 3, "latency_spike", 1.0)],
                num_incidents=None,
            ),
            ValueError,
            "incidents overlap.*start at 18 or later",
        ),
    ],
)
def test_bad_simulate_arguments_raise_helpful_errors(kwargs, error, match):
    args = dict(steps=300, seed=0, num_incidents=3) | kwargs
    with pytest.raises(error, match=match):
        simulate(shop_graph(), **args)


def test_bad_graph_and_config_arguments_raise_helpful_errors():
    with pytest.raises(ValueError, match=r"shape \[2, E\].*transpose"):
        ServiceGraph(["a", "b"], np.array([[0, 1]]))
    with pytest.raises(ValueError, match="only 2 services"):
        ServiceGraph(["a", "b"], np.array([[0], [2]]))
    with pytest.raises(ValueError, match="unique"):
        ServiceGraph(["a", "a"], np.zeros((2, 0), dtype=np.int64))
    with pytest.raises(ValueError, match="num_services must be >= 1"):
        random_service_dag(0, seed=0)
    with pytest.raises(ValueError, match=r"edge_prob .* \[0, 1\]"):
        random_service_dag(5, edge_prob=1.5, seed=0)
    with pytest.raises(ValueError, match="unknown incident kind"):
        Incident(0, 0, 3, "meltdown", 1.0)
    with pytest.raises(ValueError, match="traffic_scale .* must be > 0"):
        DriftConfig(start=5, traffic_scale=0.0)
    with pytest.raises(ValueError, match="choose one of"):
        DriftConfig(start=5, new_failure_mode="gremlins")
    with pytest.raises(KeyError, match="no service named"):
        shop_graph().index("Billing")


def test_settings_that_would_overflow_float32_are_refused_not_returned_as_inf():
    with pytest.raises(ValueError, match=r"noise is a log-scale standard deviation and must lie in \[0, 1.0\]"):
        simulate(shop_graph(), steps=300, seed=0, noise=60)  # used to return inf latencies
    with pytest.raises(ValueError, match="latency_ms of service 'Frontend' at step 10 beyond float32's range"):
        simulate(shop_graph(), steps=300, seed=0, drift=DriftConfig(start=10, traffic_scale=1e30))
    tel = simulate(shop_graph(), steps=300, seed=0, noise=1.0)  # the largest noise allowed stays finite
    assert np.isfinite(tel.x).all() and np.isfinite(tel.load).all()


# The module docstring's table: kind -> (cpu points, memory points, latency factor, error-rate
# points) at severity 1, applied to the root; callers see only the latency and error columns.
DOCUMENTED_EFFECTS = {
    "latency_spike": (0.0, 0.0, 3.0, 0.02),
    "error_burst": (0.0, 0.0, 0.5, 0.30),
    "cpu_saturation": (50.0, 0.0, 1.5, 0.03),
    "memory_leak": (5.0, 45.0, 1.0, 0.05),
    "dependency_timeout": (-10.0, 0.0, 6.0, 0.20),
}


@pytest.mark.parametrize("kind", sorted(DOCUMENTED_EFFECTS))
def test_each_incident_kind_changes_the_metrics_as_documented(kind):
    assert set(DOCUMENTED_EFFECTS) == set(INCIDENT_KINDS)  # a new kind needs a documented row
    d_cpu, d_mem, d_lat, d_err = DOCUMENTED_EFFECTS[kind]
    g = shop_graph()
    root, caller, start, dur, sev = g.index("Fraud"), g.index("Payment"), 40, 6, 0.8
    kw = dict(steps=100, seed=5, hop_decay=0.5, severity_threshold=0.15)
    clean = simulate(g, incidents=[], **kw)
    hit = simulate(g, incidents=[Incident(root, start, dur, kind, sev)], **kw)
    # memory_leak ramps linearly to full strength; every other kind is a step
    shape = np.arange(1, dur + 1) / dur if kind == "memory_leak" else np.ones(dur)
    s = sev * shape
    on = slice(start, start + dur)
    before, after = clean.x[on, root], hit.x[on, root]
    np.testing.assert_allclose(after[:, CPU], np.clip(before[:, CPU] + d_cpu * s, 0, 100), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(after[:, MEM], np.clip(before[:, MEM] + d_mem * s, 0, 100), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(after[:, LAT], before[:, LAT] * (1 + d_lat * s), rtol=1e-5)
    np.testing.assert_allclose(after[:, ERR], np.clip(before[:, ERR] + d_err * s, 0, 1), rtol=1e-5, atol=1e-6)
    # one hop up (a step later, half the severity): slower and failing calls, own cpu and memory untouched
    up = slice(start + 1, start + 1 + dur)
    c_before, c_after = clean.x[up, caller], hit.x[up, caller]
    np.testing.assert_array_equal(c_after[:, [CPU, MEM]], c_before[:, [CPU, MEM]])
    np.testing.assert_allclose(c_after[:, LAT], c_before[:, LAT] * (1 + d_lat * s / 2), rtol=1e-5)
    np.testing.assert_allclose(c_after[:, ERR], np.clip(c_before[:, ERR] + d_err * s / 2, 0, 1), rtol=1e-5, atol=1e-6)
