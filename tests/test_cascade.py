"""System-level cascade score, graph-free system detectors and incident labels (issue 10, item 5)."""

from __future__ import annotations

import numpy as np
import pytest

from tgad_lite.anomaly.cascade import MaxZScoreDetector, ServiceIForestDetector, cascade_score, incident_labels
from tgad_lite.data.microservices import shop_graph, simulate
from tgad_lite.intervals import label_ranges
from tgad_lite.metrics.detection import evaluate, pr_auc

# 0 -> 1 -> 2 -> 3 -> 4 (a call chain) and five services 5..9 with no dependency at all
CHAIN = np.array([[0, 1, 2, 3], [1, 2, 3, 4]])


def _lit(*services: int, n: int = 10, level: float = 1.0) -> np.ndarray:
    r = np.zeros((1, n))
    r[0, list(services)] = level
    return r


def _reference(risk: np.ndarray, edge_index: np.ndarray) -> np.ndarray:
    """The definition, one service at a time."""
    n = risk.shape[1]
    nbrs = [set() for _ in range(n)]
    for u, v in edge_index.T:
        if u != v:
            nbrs[u].add(v)
            nbrs[v].add(u)
    return np.array([sum(r[v] * max((r[w] for w in nbrs[v]), default=0.0) for v in range(n)) / n for r in risk])


def test_a_chain_lit_up_scores_above_the_same_number_of_scattered_services():
    chain = cascade_score(_lit(1, 2, 3), CHAIN)[0]
    scattered = cascade_score(_lit(0, 2, 4), CHAIN)[0]  # same count, no two adjacent
    isolated = cascade_score(_lit(5, 7, 9), CHAIN)[0]  # services with no dependency at all
    assert chain == pytest.approx(3 / 10)  # by hand: each of the 3 has a lit neighbour
    assert scattered == 0.0 and isolated == 0.0 and chain > scattered
    assert cascade_score(_lit(2), CHAIN)[0] == 0.0  # one sick service is not a cascade
    # soft risks: each chain service at risk 0.5 -> (5 * 0.5 * 0.5) / 10; the isolated ones add nothing
    assert cascade_score(np.full((1, 10), 0.5), CHAIN)[0] == pytest.approx(0.125)
    # it grows with the model's confidence, smoothly
    assert cascade_score(_lit(1, 2, 3, level=0.6), CHAIN)[0] == pytest.approx(3 * 0.36 / 10)


def test_direction_self_loops_and_duplicates_do_not_matter():
    r = np.random.default_rng(0).random((50, 10))
    base = cascade_score(r, CHAIN)
    np.testing.assert_allclose(cascade_score(r, CHAIN[::-1]), base)  # callee -> caller: same adjacency
    loops_and_dupes = np.concatenate([CHAIN, np.array([[6, 6, 0], [6, 6, 1]])], axis=1)
    np.testing.assert_allclose(cascade_score(r, loops_and_dupes), base)
    assert (cascade_score(r, np.zeros((2, 0), dtype=np.int64)) == 0).all()


def test_matches_the_definition_on_random_graphs_across_chunks(monkeypatch):
    import tgad_lite.anomaly.cascade as module

    monkeypatch.setattr(module, "_CHUNK_ELEMENTS", 100)  # force many chunks
    rng = np.random.default_rng(1)
    edges = rng.integers(0, 12, size=(2, 30))
    risk = rng.random((37, 12))
    np.testing.assert_allclose(cascade_score(risk, edges), _reference(risk, edges))


@pytest.mark.parametrize(
    ("risk", "edges", "match"),
    [
        (np.full((3, 10), 1.5), CHAIN, r"\[0, 1\]"),
        (np.full((3, 10), np.nan), CHAIN, r"\[0, 1\]"),
        (np.zeros(10), CHAIN, r"\[T, N\]"),
        (np.zeros((3, 4)), CHAIN, "outside"),
        (np.zeros((3, 10)), CHAIN.T, "transpose"),
        (np.zeros((3, 10)), CHAIN.astype(float), "integer"),
    ],
)
def test_cascade_score_refuses_bad_input(risk, edges, match):
    with pytest.raises(ValueError, match=match):
        cascade_score(risk, edges)


@pytest.fixture(scope="module")
def easy():
    return simulate(shop_graph(), steps=1200, seed=31, num_incidents=20, regime="easy")


def test_incident_labels_mark_every_incident_from_start_to_footprint_end(easy):
    lab = incident_labels(easy)
    assert lab.dtype == np.int8 and lab.shape == (easy.num_steps,)
    # with hop_delay=1 <= duration every footprint is one unbroken run of hit services
    np.testing.assert_array_equal(lab, easy.labels.any(axis=1))
    assert [s for s, _ in label_ranges(lab)] == [inc.start for inc in easy.incidents]
    with pytest.raises(TypeError, match="root_cause"):
        incident_labels(np.zeros(5))


def test_oracle_risk_cascades_only_during_incidents_and_detects_cascading_ones(easy):
    """With perfect per-service risk (the labels), the score is 0 outside incidents and fires in
    every incident that spread beyond its root: the definition asks the right question."""
    score = cascade_score(easy.labels.astype(float), easy.graph.edge_index)
    lab = incident_labels(easy)
    assert (score[lab == 0] == 0).all()
    spread = [(s, e) for s, e in label_ranges(lab) if easy.labels[s : e + 1].any(axis=0).sum() > 1]
    assert spread and all(score[s : e + 1].max() > 0 for s, e in spread)
    row = evaluate(score, lab, threshold=0.0, name="cascade(oracle)")
    assert row["precision"] == 1.0 and row["false_alarm_events"] == 0


def test_system_baselines_detect_easy_incidents(easy):
    split = easy.num_steps // 2
    lab = incident_labels(easy)[split:]
    for det in (MaxZScoreDetector(), ServiceIForestDetector(n_estimators=50, seed=0)):
        score = det.fit(easy.x[:split], easy.mask[:split]).score(easy.x[split:], easy.mask[split:])
        assert score.shape == lab.shape and np.isfinite(score).all()
        assert pr_auc(score, lab) > lab.mean() + 0.3, det.name


def test_max_z_detector_on_a_hand_case():
    # one service, two metrics; metric 0 trains on 10..14 (median 12, MAD 1), metric 1 on a constant 5
    train = np.stack([np.array([10.0, 11, 12, 13, 14]), np.full(5, 5.0)], axis=1)[:, None, :]
    det = MaxZScoreDetector().fit(train)
    sigma = 1.482602218505602
    test = np.array([[[12 + 3 * sigma, 5.0]], [[12.0, np.nan]]])
    np.testing.assert_allclose(det.score(test), [3.0, 0.0])
    # the constant metric's scale is floored at 1e-6 * |median|: any change in it is loud
    assert det.score(np.array([[[12.0, 5.001]]]))[0] == pytest.approx(0.001 / 5e-6)
    with pytest.raises(ValueError, match="refit"):
        det.score(np.zeros((3, 2, 2)))
    with pytest.raises(RuntimeError, match="not fitted"):
        MaxZScoreDetector().score(test)
    with pytest.raises(ValueError, match="mask says observed"):
        MaxZScoreDetector().fit(np.full((4, 1, 1), np.nan), mask=np.ones((4, 1, 1), dtype=bool))
