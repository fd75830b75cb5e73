"""Root-cause rules (anomaly.rootcause) and their metrics AC@k / Avg@k (metrics.rootcause), issue 10 item 6."""

from __future__ import annotations

import numpy as np
import pytest

from tgad_lite.anomaly.rootcause import (
    RULES,
    RootCauseRanking,
    incident_starts_roots,
    rank_changepoint_z,
    rank_earliest_onset,
    rank_incidents,
    rank_largest_z,
    rank_most_downstream,
    rank_random,
    window_z,
)
from tgad_lite.data.microservices import random_service_dag, simulate
from tgad_lite.metrics.rootcause import (
    ac_at_k,
    avg_at_k,
    avg_at_k_per_incident,
    hits_at_k,
    rank_of_truth,
    rootcause_report,
)

# ----------------------------------------------------------------------------- metrics

# true roots at ranks 1, 2, 3 and 3
RANKINGS = np.array([[2, 0, 1], [0, 1, 2], [1, 2, 0], [0, 2, 1]])
TRUTHS = [2, 1, 0, 1]


def test_ac_and_avg_at_k_on_hand_rankings():
    np.testing.assert_array_equal(rank_of_truth(RANKINGS, TRUTHS), [1, 2, 3, 3])
    assert ac_at_k(RANKINGS, TRUTHS, 1) == 0.25
    assert ac_at_k(RANKINGS, TRUTHS, 2) == 0.5
    assert ac_at_k(RANKINGS, TRUTHS, 3) == 1.0
    assert ac_at_k(RANKINGS, TRUTHS, 10) == 1.0  # k beyond N: everything is in the top k
    assert avg_at_k(RANKINGS, TRUTHS, 3) == pytest.approx((0.25 + 0.5 + 1.0) / 3)
    # per incident: rank 1 -> 1, rank 2 -> 2/3, rank 3 -> 1/3 at k = 3; their mean is Avg@3
    np.testing.assert_allclose(avg_at_k_per_incident(RANKINGS, TRUTHS, 3), [1, 2 / 3, 1 / 3, 1 / 3])
    assert avg_at_k(RANKINGS, TRUTHS, 1) == ac_at_k(RANKINGS, TRUTHS, 1)
    np.testing.assert_array_equal(hits_at_k(RANKINGS, TRUTHS, 2), [1, 1, 0, 0])


def test_partial_rankings_and_ranking_objects():
    partial = [[4, 1], [0], [3, 2, 7]]  # top-m lists; the truth 9 of the last one is missing
    np.testing.assert_array_equal(rank_of_truth(partial, [1, 0, 9]), [2, 1, np.inf])
    assert ac_at_k(partial, [1, 0, 9], 5) == pytest.approx(2 / 3)
    objs = [RootCauseRanking(np.array(r), np.zeros(3), np.zeros(3, bool)) for r in RANKINGS]
    assert avg_at_k(objs, TRUTHS, 3) == avg_at_k(RANKINGS, TRUTHS, 3)


def test_rootcause_report_gives_each_metric_with_an_interval():
    report = rootcause_report(RANKINGS, TRUTHS, ks=(1, 3), avg_k=3, n_resamples=500)
    assert list(report) == ["AC@1", "AC@3", "Avg@3"]
    assert report["AC@1"].estimate == 0.25 and report["Avg@3"].estimate == pytest.approx(avg_at_k(RANKINGS, TRUTHS, 3))
    assert report["AC@3"] == (1.0, 1.0, 1.0)  # every incident a hit: no variation to resample
    assert 0.0 <= report["AC@1"].low <= 0.25 <= report["AC@1"].high <= 1.0


@pytest.mark.parametrize(
    ("rankings", "truths", "match"),
    [
        ([], [], "empty"),
        (RANKINGS, [2, 1, 0], "4 rankings but 3 truths"),
        ([[0, 1, 1]], [0], "more than once"),
        ([[0.0, 1.0]], [0], "int service ids"),
        ([[0, -1]], [0], "negative"),
        (RANKINGS, [2, 1, 0, -1], "negative"),
        (np.array([2, 0, 1]), [2], "wrap a single"),
        ("abc", [0], "sequence of rankings"),
    ],
)
def test_metrics_refuse_bad_input(rankings, truths, match):
    with pytest.raises(ValueError, match=match):
        ac_at_k(rankings, truths, 1)


def test_k_must_be_a_positive_int():
    for k in (0, 1.5, True):
        with pytest.raises(ValueError, match="k must be"):
            ac_at_k(RANKINGS, TRUTHS, k)


# ----------------------------------------------------------------------------- rules on a hand case


def _hand_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chain 0 -> 1 -> 2 -> 3 (caller -> callee). The root 3 fails at step 20 (+20); its caller 2
    follows at 21 (+15); 1, amplified by retries, at 22 (+40, the loudest); 0 is not instrumented."""
    rng = np.random.default_rng(0)
    x = 100 + rng.normal(size=(40, 4, 1))
    x[20:, 3] += 20
    x[21:, 2] += 15
    x[22:, 1] += 40
    mask = np.ones(x.shape, dtype=bool)
    mask[:, 0] = False
    x[~mask] = np.nan
    return x, mask, np.array([[0, 1, 2], [1, 2, 3]])


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (rank_earliest_onset, [3, 2, 1, 0]),  # first to leave its range
        (rank_largest_z, [1, 3, 2, 0]),  # loudest
        (rank_most_downstream, [3, 1, 2, 0]),  # 3 has no anomalous callee; then the others by z
        (rank_changepoint_z, [1, 3, 2, 0]),
    ],
)
def test_rules_on_a_hand_made_cascade(rule, expected):
    x, mask, edges = _hand_case()
    ranking = rule(x, mask, edges, 20, lookback=12, horizon=4)
    assert ranking.order.tolist() == expected
    assert ranking.unobserved.tolist() == [True, False, False, False] and np.isnan(ranking.z[0])
    assert "1 of 4 services unobserved" in ranking.note
    assert ranking.z[1] == pytest.approx(40, rel=0.2)  # z ~ the shift in noise sigmas


def test_window_z_reads_only_the_lookback_and_the_horizon():
    x, mask, _ = _hand_case()
    z, unobserved = window_z(x, mask, 20, lookback=12, horizon=4)
    assert z.shape == (4, 4) and unobserved.tolist() == [True, False, False, False]
    changed = x.copy()
    changed[:8] = changed[24:] = 1e6  # outside [20 - 12, 20 + 4): must not matter
    np.testing.assert_array_equal(window_z(changed, mask, 20, lookback=12, horizon=4)[0], z)
    # without a mask, NaN means unobserved
    np.testing.assert_array_equal(window_z(x, None, 20, lookback=12, horizon=4)[0], z)


def test_random_rule_is_a_seeded_permutation():
    x, mask, edges = _hand_case()
    a = rank_random(x, mask, edges, 20, seed=1)
    assert sorted(a.order.tolist()) == [0, 1, 2, 3]
    np.testing.assert_array_equal(a.order, rank_random(x, mask, edges, 20, seed=1).order)
    orders = {tuple(rank_random(x, mask, edges, 20, seed=s).order) for s in range(20)}
    assert len(orders) > 5  # it really shuffles


def test_rules_refuse_bad_arguments():
    x, mask, edges = _hand_case()
    with pytest.raises(ValueError, match="reference steps"):
        rank_largest_z(x, mask, edges, 2)
    with pytest.raises(ValueError, match="past the series"):
        rank_largest_z(x, mask, edges, 40)
    with pytest.raises(ValueError, match="lookback"):
        rank_largest_z(x, mask, edges, 20, lookback=2)
    with pytest.raises(ValueError, match="threshold"):
        rank_earliest_onset(x, mask, edges, 20, threshold=0)
    with pytest.raises(ValueError, match="outside"):
        rank_most_downstream(x, mask, np.array([[0], [7]]), 20)
    with pytest.raises(ValueError, match="mask says observed"):
        rank_largest_z(x, np.ones(x.shape, dtype=bool), edges, 20)  # NaN where the mask says observed
    with pytest.raises(ValueError, match=r"\[T, N, F\]"):
        rank_largest_z(x[:, :, 0], None, edges, 20)
    with pytest.raises(ValueError, match="unknown rule"):
        rank_incidents("pagerank", x, mask, edges, [20])
    with pytest.raises(ValueError, match="starts"):
        rank_incidents("random", x, mask, edges, [])


# ----------------------------------------------------------------------------- rules on the generator


def test_earliest_onset_finds_the_root_in_the_easy_regime_and_fails_in_the_hard_one():
    g = random_service_dag(25, edge_prob=0.12, seed=4)
    scores = {}
    for regime in ("easy", "hard"):
        tel = simulate(g, steps=2000, seed=7, num_incidents=35, min_gap=12, regime=regime)
        starts, roots = incident_starts_roots(tel, min_start=12)  # the rules' default lookback
        assert len(starts) >= 30 and (starts >= 12).all()
        scores[regime] = {
            name: avg_at_k(rank_incidents(name, tel.x, tel.mask, g.edge_index, starts), roots, 1) for name in RULES
        }
    assert scores["easy"]["earliest_onset"] >= 0.9  # hop_delay=1: the root's symptoms come first
    assert scores["hard"]["earliest_onset"] <= scores["easy"]["earliest_onset"] - 0.3
    for name in ("largest_z", "earliest_onset", "most_downstream", "changepoint_z"):
        assert scores["easy"][name] > scores["easy"]["random"] + 0.3, name
