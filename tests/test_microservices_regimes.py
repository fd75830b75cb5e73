"""Tests for the generator's regime options (issue 10 item 1): each option does what the package
docstring promises, changes nothing else, and is refused with a clear error when out of range."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import replace

import numpy as np
import pytest

from tgad_lite.data.microservices import (
    METRICS,
    REGIMES,
    Incident,
    LoadSurge,
    ServiceGraph,
    Telemetry,
    cascade,
    random_service_dag,
    regime_config,
    shop_graph,
    simulate,
)

CPU, MEM, LAT, ERR = (METRICS.index(m) for m in ("cpu", "memory", "latency_ms", "error_rate"))
OFF = dict(
    hop_delay=1,
    amplification=(1.0, 1.0),
    noise_spread=0.0,
    unobserved_services=0,
    missing_metric_fraction=0.0,
    uninstrumented_roots=0.0,
    load_surges=0,
)


def _assert_same(a: Telemetry, b: Telemetry) -> None:
    for name in ("x", "labels", "root_cause", "load", "mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)  # NaN == NaN here
    assert a.incidents == b.incidents and a.surges == b.surges


def _earliest_onset(tel: Telemetry, inc: Incident, history: int = 12, threshold: float = 4.0) -> int:
    """The "earliest onset" rule: the service whose log latency or log error rate first leaves
    its recent range (robust z-score over the ``history`` steps before the incident), ties broken
    by the larger z-score; -1 when nothing is detected. Unobserved values (NaN) never fire."""
    cfg = tel.config
    cas = cascade(
        tel.graph, inc, hop_delay=cfg.hop_delay, hop_decay=cfg.hop_decay, severity_threshold=cfg.severity_threshold
    )
    end = max(onset for _, _, onset, _ in cas) + inc.duration
    logx = np.log(tel.x[:, :, [LAT, ERR]].astype(np.float64))
    past = logx[inc.start - history : inc.start]
    centre = np.median(past, axis=0)
    spread = 1.4826 * np.median(np.abs(past - centre), axis=0) + 1e-3
    z = np.abs((logx[inc.start : end] - centre) / spread)
    z = np.where(np.isnan(z), -np.inf, z).max(axis=2)  # [steps, N]
    fired = z > threshold
    if not fired.any():
        return -1
    first = np.where(fired.any(axis=0), fired.argmax(axis=0), np.iinfo(np.int64).max)
    ties = np.flatnonzero(first == first.min())
    return int(ties[np.argmax(z[first.min(), ties])])


# --------------------------------------------------------------------------- presets


def test_easy_regime_is_the_default_and_every_option_off():
    g = shop_graph()
    base = simulate(g, steps=500, seed=4, num_incidents=4)
    _assert_same(base, simulate(g, steps=500, seed=4, num_incidents=4, regime="easy"))
    _assert_same(base, simulate(g, steps=500, seed=4, num_incidents=4, regime="hard", **OFF))
    assert base.mask.all() and base.mask.shape == base.x.shape and base.mask.dtype == np.bool_
    assert np.isfinite(base.x).all() and base.surges == ()
    np.testing.assert_array_equal(base.amplification, 1.0)
    np.testing.assert_array_equal(base.noise_scale, 1.0)
    assert base.config.regime == "easy" and base.config.hop_delay == 1
    assert {k: regime_config("easy")[k] for k in OFF} == OFF


def test_hard_regime_turns_every_option_on_and_explicit_arguments_win():
    hard = regime_config("hard")
    assert all(hard[k] != v for k, v in OFF.items()), "the hard preset must turn every option on"
    hard["hop_delay"] = 99  # a copy: editing it leaves the preset alone
    assert REGIMES["hard"]["hop_delay"] == 0

    g = random_service_dag(40, edge_prob=0.08, seed=2)
    tel = simulate(g, steps=1200, seed=5, num_incidents=8, regime="hard")
    cfg = tel.config
    assert (cfg.regime, cfg.hop_delay, cfg.load_surges, cfg.amplification) == ("hard", 0, 4, (1.0, 2.0))
    assert len(tel.surges) == 4 and not tel.mask.all() and np.isnan(tel.x).any()
    assert (tel.amplification > 1).any() and np.ptp(tel.noise_scale) > 0
    json.dumps(tel.metadata())  # still writable as run metadata

    mine = simulate(g, steps=1200, seed=5, num_incidents=8, regime="hard", hop_delay=2, load_surges=0)
    assert mine.config.hop_delay == 2 and mine.surges == () and mine.config.noise_spread == 0.7


def test_same_seed_same_arrays_in_the_hard_regime():
    g = random_service_dag(25, edge_prob=0.1, seed=0)
    a = simulate(g, steps=800, seed=7, num_incidents=5, regime="hard")
    _assert_same(a, simulate(g, steps=800, seed=7, num_incidents=5, regime="hard"))
    b = simulate(g, steps=800, seed=8, num_incidents=5, regime="hard")
    assert not np.array_equal(a.mask, b.mask) or not np.array_equal(a.x, b.x, equal_nan=True)


def test_hard_regime_breaks_the_earliest_onset_rule_that_the_easy_regime_rewards():
    g = random_service_dag(30, edge_prob=0.1, seed=1)
    accuracy = {}
    for regime in ("easy", "hard"):
        tel = simulate(g, steps=2400, seed=3, num_incidents=40, min_gap=12, regime=regime)
        scored = [inc for inc in tel.incidents if inc.start >= 12]  # the rule needs 12 steps of history
        assert len(scored) >= 35
        accuracy[regime] = np.mean([_earliest_onset(tel, inc) == inc.root for inc in scored])
    assert accuracy["easy"] >= 0.95  # with hop_delay=1 the first symptom is the root's
    assert accuracy["hard"] <= accuracy["easy"] - 0.3


# --------------------------------------------------------------------------- simultaneous onset


def test_hop_delay_zero_starts_every_hit_service_with_its_root():
    g = random_service_dag(20, edge_prob=0.15, seed=3)
    tel = simulate(g, steps=600, seed=1, num_incidents=10, hop_delay=0, hop_decay=0.8)
    assert sum(len(cascade(g, i, hop_delay=0, hop_decay=0.8)) > 1 for i in tel.incidents) >= 5  # real cascades
    for inc in tel.incidents:
        window = slice(inc.start, inc.start + inc.duration)
        hit = np.flatnonzero(tel.labels[window].any(axis=0))
        expected = sorted(v for v, *_ in cascade(g, inc, hop_delay=0, hop_decay=0.8))
        assert hit.tolist() == expected
        assert (tel.labels[window][:, hit] == 1).all()  # all hit from the root's first step to its last
        assert (tel.root_cause[window] == inc.root).all()
        if inc.start > 0:
            assert (tel.labels[inc.start - 1, hit] == 0).all()


# --------------------------------------------------------------------------- amplification


def test_amplification_compounds_up_the_chain_and_callers_exceed_the_root():
    g = shop_graph()
    fraud = g.index("Fraud")
    inc = Incident(fraud, 40, 6, "latency_spike", 1.0)
    kw = dict(steps=100, seed=2, incidents=[inc], hop_decay=0.6)
    clean = simulate(g, steps=100, seed=2, incidents=[])
    plain = simulate(g, **kw)
    amped = simulate(g, amplification=(2.0, 2.0), **kw)
    np.testing.assert_array_equal(amped.amplification, 2.0)
    # Ground truth and everything but the callers' latency and errors are unchanged.
    np.testing.assert_array_equal(amped.labels, plain.labels)
    np.testing.assert_array_equal(amped.root_cause, plain.root_cause)
    np.testing.assert_array_equal(amped.x[:, fraud], plain.x[:, fraud])
    np.testing.assert_array_equal(amped.x[..., [CPU, MEM]], plain.x[..., [CPU, MEM]])
    np.testing.assert_array_equal(amped.x[amped.labels == 0], plain.x[plain.labels == 0])
    # Hand-computed: Fraud <- Payment <- Order <- Frontend; gain A = 1, 2, 4, 8 on hops 0..3.
    rise = {}
    for hop, name in enumerate(("Fraud", "Payment", "Order", "Frontend")):
        v = g.index(name)
        on = slice(40 + hop, 46 + hop)
        rise[name] = amped.x[on, v, LAT] / clean.x[on, v, LAT] - 1
        np.testing.assert_allclose(rise[name], 3.0 * 0.6**hop * 2.0**hop, rtol=1e-5)
    assert rise["Payment"].min() > rise["Fraud"].max()  # the caller's latency rises more than the root's


def test_amplification_takes_the_loudest_callee_one_hop_closer():
    # r <- b, r <- c, b <- t, c <- t: t waits for the slower of b and c.
    g = ServiceGraph(["r", "b", "c", "t"], np.array([[1, 2, 3, 3], [0, 0, 1, 2]]))
    inc = Incident(0, 10, 4, "error_burst", 1.0)
    tel = simulate(g, steps=40, seed=0, incidents=[inc], amplification=(1.0, 3.0), hop_decay=0.7)
    a = tel.amplification
    assert ((a >= 1.0) & (a <= 3.0)).all() and len(set(a.tolist())) == 4
    sev = {v: s for v, _, _, s in cascade(g, inc, hop_decay=0.7, amplification=a)}
    assert sev[0] == 1.0
    np.testing.assert_allclose([sev[1], sev[2]], [0.7 * a[1], 0.7 * a[2]])
    np.testing.assert_allclose(sev[3], 0.49 * a[3] * max(a[1], a[2]))


# --------------------------------------------------------------------------- heterogeneous noise


def test_noise_spread_scales_each_services_noise_by_its_own_factor():
    g = random_service_dag(12, edge_prob=0.2, seed=4)
    kw = dict(steps=3000, seed=6, num_incidents=0, noise=0.05)
    base = simulate(g, **kw)
    spread = simulate(g, noise_spread=1.0, **kw)
    m = spread.noise_scale
    assert ((m >= np.exp(-1.0)) & (m <= np.exp(1.0))).all() and m.max() / m.min() > 2
    np.testing.assert_array_equal(spread.load, base.load)  # traffic is untouched
    # Same draws, so log(cpu) differs only by noise * (m - 1) * z with z standard normal.
    diff = np.log(spread.x[..., CPU].astype(np.float64)) - np.log(base.x[..., CPU].astype(np.float64))
    np.testing.assert_allclose(diff.std(axis=0), 0.05 * np.abs(m - 1), rtol=0.1, atol=1e-4)


# --------------------------------------------------------------------------- partial observability


def test_unobserved_services_and_missing_metrics_are_nan_and_masked_not_zero():
    g = random_service_dag(30, edge_prob=0.1, seed=5)
    kw = dict(steps=300, seed=2, num_incidents=3)
    base = simulate(g, **kw)
    tel = simulate(g, unobserved_services=3, missing_metric_fraction=0.25, **kw)
    hidden = ~simulate(g, unobserved_services=3, **kw).observed_services
    assert hidden.sum() == 3
    mask = tel.mask
    assert mask.shape == tel.x.shape and mask.dtype == np.bool_
    assert (mask == mask[0]).all()  # instrumentation does not change over time
    assert np.isnan(tel.x[~mask]).all() and np.isfinite(tel.x[mask]).all()
    np.testing.assert_array_equal(tel.x[mask], base.x[mask])  # observed values are the unmasked ones
    np.testing.assert_array_equal(tel.labels, base.labels)
    np.testing.assert_array_equal(tel.load, base.load)
    assert not mask[:, hidden].any()  # the same services are hidden, whatever else is missing
    remaining = mask[0][~hidden]
    assert (~remaining).sum() == 27  # 0.25 of the other 27 services x 4 metrics
    assert set(tel.metadata()["unobserved_services"]) >= set(np.array(g.names)[hidden].tolist())

    by_name = simulate(g, unobserved_services=["svc-04", 7], **kw)
    assert np.flatnonzero(~by_name.observed_services).tolist() == [4, 7]
    by_share = simulate(g, unobserved_services=0.2, **kw)
    assert (~by_share.observed_services).sum() == 6


def test_uninstrumented_roots_hide_the_root_but_keep_the_ground_truth():
    g = random_service_dag(25, edge_prob=0.1, seed=6)
    kw = dict(steps=3000, seed=3, num_incidents=40, hop_decay=0.8)
    base = simulate(g, **kw)
    tel = simulate(g, uninstrumented_roots=True, **kw)
    np.testing.assert_array_equal(tel.labels, base.labels)
    np.testing.assert_array_equal(tel.root_cause, base.root_cause)
    assert tel.incidents == base.incidents
    seen = tel.observed_services
    for inc in tel.incidents:
        cas = cascade(g, inc, hop_decay=0.8)
        assert tel.labels[inc.start, inc.root] == 1
        if len(cas) > 1:  # a caller notices: the root reports nothing, its callers do
            assert not seen[inc.root] and np.isnan(tel.x[:, inc.root]).all()
            assert any(seen[v] for v, *_ in cas[1:])
        else:  # nobody calls it: hiding it would make the incident invisible
            assert seen[inc.root]

    half = simulate(g, uninstrumented_roots=0.5, **kw)
    eligible = {i.root for i in tel.incidents} - set(np.flatnonzero(tel.observed_services).tolist())
    hidden = set(np.flatnonzero(~half.observed_services).tolist())
    assert hidden < eligible and len(hidden) >= 2  # some, not all


# --------------------------------------------------------------------------- load surges


def test_load_surges_raise_every_services_load_without_labels():
    g = random_service_dag(15, edge_prob=0.15, seed=7)
    kw = dict(steps=400, seed=9, incidents=[])
    base = simulate(g, **kw)
    tel = simulate(g, load_surges=3, surge_duration=(10, 30), surge_height=(2.0, 3.0), **kw)
    assert len(tel.surges) == 3 and [s.start for s in tel.surges] == sorted(s.start for s in tel.surges)
    assert (tel.labels == 0).all() and (tel.root_cause == -1).all()
    factor = np.ones(400)
    for s in tel.surges:
        assert 10 <= s.duration <= 30 and 2.0 <= s.height <= 3.0
        factor[s.start : s.start + s.duration] *= s.factors()
        assert s.factors().max() == pytest.approx(s.height)
    np.testing.assert_allclose(tel.load / base.load, np.broadcast_to(factor[:, None], base.load.shape), rtol=1e-5)
    np.testing.assert_array_equal(tel.x[~tel.surge_steps], base.x[~tel.surge_steps])
    peak = factor >= 2.0
    assert peak.any()
    for f in (CPU, LAT, ERR):  # every service runs hotter at the peak
        assert (tel.x[peak][..., f].mean(axis=0) > 1.5 * base.x[peak][..., f].mean(axis=0)).all()


def test_load_surge_shape_rises_holds_and_falls():
    np.testing.assert_allclose(LoadSurge(0, 8, 3.0).factors(), [2, 3, 3, 3, 3, 3, 3, 2])
    np.testing.assert_allclose(LoadSurge(5, 1, 2.0).factors(), [2.0])
    with pytest.raises(ValueError, match="must be >= 1"):
        LoadSurge(0, 4, 0.5)


# --------------------------------------------------------------------------- streaming


def test_steps_replays_the_series_one_read_only_step_at_a_time():
    tel = simulate(shop_graph(), steps=50, seed=0, num_incidents=1, unobserved_services=1)
    steps = list(tel.steps())
    assert [s.t for s in steps] == list(range(50))
    np.testing.assert_array_equal(np.stack([s.x for s in steps]), tel.x)
    np.testing.assert_array_equal(np.stack([s.mask for s in steps]), tel.mask)
    np.testing.assert_array_equal(np.stack([s.labels for s in steps]), tel.labels)
    np.testing.assert_array_equal(np.stack([s.load for s in steps]), tel.load)
    assert [s.root_cause for s in steps] == tel.root_cause.tolist()
    assert steps[0].x.shape == (8, 4) and steps[0].mask.shape == (8, 4) and steps[0].labels.shape == (8,)
    with pytest.raises(ValueError, match="read-only"):
        steps[3].x[0, 0] = 1.0  # a monitor cannot alter the series it is fed
    assert [s.t for s in tel.steps(start=45)] == [45, 46, 47, 48, 49]
    assert [s.t for s in tel.steps(10, 12)] == [10, 11]
    with pytest.raises(ValueError, match="0 <= start <= stop <= 50"):
        next(tel.steps(start=51))
    with pytest.raises(TypeError, match="start must be an int"):
        next(tel.steps(start=1.5))


# --------------------------------------------------------------------------- Telemetry compatibility


def test_telemetry_built_without_the_new_fields_is_fully_observed():
    tel = simulate(shop_graph(), steps=30, seed=0, num_incidents=0)
    old_style = Telemetry(tel.x, tel.labels, tel.root_cause, tel.load, tel.incidents, tel.graph, tel.config)
    assert old_style.mask.all() and old_style.surges == ()
    np.testing.assert_array_equal(old_style.amplification, 1.0)
    with pytest.raises(ValueError, match="mask must be a bool array shaped like x"):
        replace(tel, mask=np.ones((30, 8), dtype=bool))


# --------------------------------------------------------------------------- graph traversals


def _brute_hops(g: ServiceGraph, root: int) -> dict[int, int]:
    hops, queue = {root: 0}, deque([root])
    while queue:
        v = queue.popleft()
        for e in np.flatnonzero(g.edge_index[1] == v):
            u = int(g.edge_index[0, e])
            if u not in hops:
                hops[u] = hops[v] + 1
                queue.append(u)
    return hops


@pytest.mark.parametrize("seed", range(4))
def test_fast_traversals_match_a_plain_breadth_first_search(seed):
    rng = np.random.default_rng(seed)
    g0 = random_service_dag(30, edge_prob=0.12, seed=seed)
    perm = rng.permutation(30)  # relabel and shuffle, so indices are not a topological order
    g = ServiceGraph(g0.names, perm[g0.edge_index][:, rng.permutation(g0.num_edges)])
    brute = [_brute_hops(g, r) for r in range(30)]
    assert [g.upstream_hops(r) for r in range(30)] == brute
    longest = max(max(h.values()) for h in brute)
    assert g.max_upstream_hops() == longest
    assert g.max_upstream_hops(limit=2) == min(2, longest)
    assert g.upstream_hops(0, max_hops=1) == {v: h for v, h in brute[0].items() if h <= 1}
    chain = ServiceGraph(list("abcde"), np.array([[1, 2, 3, 4], [0, 1, 2, 3]]))
    assert chain.max_upstream_hops() == 4 and chain.max_upstream_hops(limit=3) == 3


def test_neighbour_lists_cannot_be_edited_through_their_copies():
    g = shop_graph()
    callers = g.callers_of(g.index("Fraud"))
    callers[0] = 0
    assert g.callers_of(g.index("Fraud")).tolist() == [g.index("Payment")]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(regime="medium"), ValueError, r"regime must be one of easy\|hard"),
        (dict(amplification=(0.5, 2.0)), ValueError, r"1 <= low <= high <= 10; \(1, 1\) turns it off"),
        (dict(amplification=(1.0, 20.0)), ValueError, "amplification"),
        (dict(amplification=2.0), TypeError, r"amplification must be a \(low, high\) pair"),
        (dict(noise_spread=-0.1), ValueError, r"noise_spread=-0.1 must lie in \[0, 3\]"),
        (dict(noise=0.5, noise_spread=1.0), ValueError, "lower noise or noise_spread"),
        (dict(unobserved_services=8), ValueError, "must lie in 0..7"),
        (dict(unobserved_services=1.0), ValueError, r"fraction must lie in \[0, 1\)"),
        (dict(unobserved_services=0.95), ValueError, "leaving none observed"),
        (dict(unobserved_services=True), TypeError, "must not be a bool"),
        (dict(unobserved_services="Cart"), TypeError, "list of service indices or names"),
        (dict(unobserved_services=["Cart", "Cart"]), ValueError, "twice"),
        (dict(unobserved_services=["Billing"]), KeyError, "no service named"),
        (dict(unobserved_services=[9]), ValueError, "not a service index 0..7"),
        (dict(missing_metric_fraction=1.0), ValueError, r"missing_metric_fraction=1.0 .* \[0, 1\)"),
        (dict(uninstrumented_roots=1.5), ValueError, r"probability .* \[0, 1\] \(True = 1"),
        (dict(load_surges=-1), ValueError, "load_surges .* must be >= 0"),
        (dict(load_surges=2, surge_duration=(10, 400)), ValueError, "high end <= 300, or load_surges=0"),
        (dict(load_surges=2, surge_height=(0.5, 2.0)), ValueError, "surge_height=.* 1 <= low <= high <= 10"),
        (dict(regime="hard", steps=20), ValueError, r"surge_duration=\(6, 24\) .* high end <= 20, or load_surges=0"),
    ],
)
def test_bad_regime_arguments_raise_helpful_errors(kwargs, error, match):
    args = dict(steps=300, seed=0, num_incidents=3) | kwargs
    with pytest.raises(error, match=match):
        simulate(shop_graph(), **args)


def test_everything_unobserved_is_refused():
    g = ServiceGraph(["db", "api"], np.array([[1], [0]]))
    inc = Incident(0, 5, 3, "error_burst", 1.0)
    with pytest.raises(ValueError, match="no .* pair is left observed"):
        simulate(g, steps=20, seed=0, incidents=[inc], unobserved_services=["api"], uninstrumented_roots=True)


def test_easy_regime_surge_defaults_do_not_constrain_short_series():
    tel = simulate(shop_graph(), steps=10, seed=0, num_incidents=0)  # surge_duration (6, 24) unused
    assert tel.num_steps == 10 and tel.surges == ()


def test_a_graph_too_dense_for_its_size_is_refused_before_any_work():
    dense = random_service_dag(200, edge_prob=0.9, seed=0)
    with pytest.raises(ValueError, match=r"load adds up over every call path.*edge_prob=2 / n"):
        simulate(dense, steps=100, seed=0, num_incidents=0)
