"""Root cause from the temporal model (issue 10, item 6): risk, attention flow, their rank average."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tgad_lite.anomaly.rootcause import RootCauseRanking, incident_starts_roots, rank_incidents
from tgad_lite.data.microservices import ServiceNormaliser, shop_graph, simulate, time_split
from tgad_lite.metrics.bootstrap import paired_bootstrap
from tgad_lite.metrics.rootcause import ac_at_k, hits_at_k, rootcause_report
from tgad_lite.temporal import (
    TemporalGAT,
    TemporalGATOutput,
    attention_flow,
    incident_evidence,
    model_rootcause,
    rank_average,
    rank_by_score,
    rank_downstream,
)

# Three services; message edges (source -> target): 0->1, 0->2, 1->2, then the self loops.
MSG = np.array([[0, 0, 1, 0, 1, 2], [1, 2, 2, 0, 1, 2]])
# Attention per message edge; over the edges into each target it sums to 1 (1: 0.6 + 0.4; 2: 0.3 + 0.5 + 0.2).
ATT = np.array([0.6, 0.3, 0.5, 1.0, 0.4, 0.2])


# Tiny models run fastest on one torch thread (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def test_attention_flow_by_hand():
    risk = np.array([0.1, 0.9, 0.8])
    # flow[0] = a(0->1) r1 + a(0->2) r2 = 0.6*0.9 + 0.3*0.8; flow[1] = a(1->2) r2 = 0.5*0.8; 2 sends nothing
    np.testing.assert_allclose(attention_flow(ATT, MSG, risk), [0.78, 0.40, 0.0])
    # [steps, E', heads] is averaged over steps and heads first
    stacked = np.stack([np.stack([0.5 * ATT, 1.5 * ATT], axis=-1), np.stack([1.5 * ATT, 0.5 * ATT], axis=-1)])
    np.testing.assert_allclose(attention_flow(stacked, MSG, risk), [0.78, 0.40, 0.0])
    # self loops never count, however much attention they get
    np.testing.assert_allclose(attention_flow(np.where(MSG[0] == MSG[1], 50.0, ATT), MSG, risk), [0.78, 0.40, 0.0])


def test_rank_by_score_and_rank_average_by_hand():
    ranking = rank_by_score([0.2, 0.7, 0.7, 0.1])
    assert isinstance(ranking, RootCauseRanking)
    assert ranking.order.tolist() == [1, 2, 0, 3]  # tie between 1 and 2: lower id first
    assert not ranking.unobserved.any() and ranking.note == ""
    # risk ranks s1, s2, s0 (1, 2, 3); flow ranks s0, s1, s2 (1, 2, 3): averages 2, 1.5, 2.5
    np.testing.assert_allclose(rank_average([0.1, 0.9, 0.8], [0.78, 0.40, 0.0]), [-2.0, -1.5, -2.5])
    # tied scores share their average rank: a ranks (1.5, 1.5, 3), b ranks (3, 1.5, 1.5)
    np.testing.assert_allclose(rank_average([1, 1, 0], [0, 2, 2]), [-2.25, -1.5, -2.25])
    assert rank_by_score(rank_average([1, 1, 0], [0, 2, 2])).order.tolist() == [1, 0, 2]


def test_rank_downstream_by_hand():
    edges = np.array([[0, 1, 0], [1, 2, 3]])  # caller -> callee: 0 calls 1 and 3, 1 calls 2
    risk = [0.9, 0.8, 0.3, 0.95]
    # at risk (> 0.5): 0, 1, 3; 0 has callees at risk, 1 and 3 do not -> 3, 1 (by risk), then 0, then 2
    assert rank_downstream(risk, edges, threshold=0.5).order.tolist() == [3, 1, 0, 2]
    # with a higher bar only 0 and 3 are at risk: 3 first, then 0; the rest by risk
    assert rank_downstream(risk, edges, threshold=0.85).order.tolist() == [3, 0, 1, 2]
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        rank_downstream(risk, edges, threshold=None)


class StubModel(nn.Module):
    """risk[b, v] = the window's last value of metric 0; attention[b, s, :, h] = x[b, s, 0, 1] * W[h]."""

    graph = True

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # a device for the caller to find
        self.weights = torch.tensor(np.stack([0.5 * ATT, 1.5 * ATT], axis=-1), dtype=torch.float32)  # [E', H]
        self.seen: list[torch.Tensor] = []

    def forward(self, x, edge_index, mask=None, return_attention=False):
        self.seen.append(x.clone())
        risk = x[:, -1, :, 0]
        att = x[:, :, 0, 1][:, :, None, None] * self.weights  # [B, S, E', H]
        return TemporalGATOutput(risk, torch.logit(risk), att, torch.as_tensor(MSG), (att,))


def _series() -> np.ndarray:
    """``[10, 3, 2]``: metric 0 is the risk the stub reports, metric 1 its attention scale."""
    x = np.full((10, 3, 2), 0.5, dtype=np.float32)
    x[5, :, 0] = [0.1, 0.9, 0.8]
    x[6, :, 0] = [0.1, 0.7, 0.4]  # mean over the two analysis steps: [0.1, 0.8, 0.6]
    x[:, 0, 1] = 7.0  # steps that are not an analysis window's last snapshot must not count ...
    x[5:7, 0, 1] = 1.0  # ... only steps 5 and 6 do
    return x


def test_incident_evidence_and_rankings_by_hand():
    model, x = StubModel(), _series()
    ev = incident_evidence(model, x, None, MSG[:, :3], [5], window=3, horizon=2)
    # the windows read: ending at steps 5 and 6, three steps each
    assert len(model.seen) == 1 and model.seen[0].shape == (2, 3, 3, 2)
    np.testing.assert_array_equal(model.seen[0][0].numpy(), x[3:6])
    np.testing.assert_array_equal(model.seen[0][1].numpy(), x[4:7])
    np.testing.assert_allclose(ev.risk, [[0.1, 0.8, 0.6]], rtol=1e-6)
    np.testing.assert_allclose(ev.attention, [ATT], rtol=1e-6)
    np.testing.assert_array_equal(ev.message_edges, MSG)
    # flow[0] = 0.6*0.8 + 0.3*0.6, flow[1] = 0.5*0.6
    np.testing.assert_allclose(ev.flow, [[0.66, 0.30, 0.0]], rtol=1e-6)
    ranks = model_rootcause(model, x, None, MSG[:, :3], [5], window=3, horizon=2)
    assert ranks["risk"][0].order.tolist() == [1, 2, 0]
    assert ranks["attention"][0].order.tolist() == [0, 1, 2]
    assert ranks["combined"][0].order.tolist() == [1, 0, 2]  # mean ranks 2, 1.5, 2.5
    # at risk: 1 and 2; 1 calls 2, so 2 is the one with no callee at risk
    assert ranks["downstream"][0].order.tolist() == [2, 1, 0]
    assert ac_at_k(ranks["combined"], [1], 1) == 1.0 and ac_at_k(ranks["attention"], [1], 1) == 0.0


def test_horizon_is_clipped_at_the_series_end_and_the_normaliser_applied():
    model, x = StubModel(), _series()
    normaliser = ServiceNormaliser(center=np.zeros((3, 2)), scale=np.full((3, 2), 0.5))
    ev = incident_evidence(model, x / 2, None, MSG[:, :3], [9], window=3, horizon=3, normaliser=normaliser)
    assert model.seen[0].shape == (1, 3, 3, 2)  # one window: step 9 is the last
    np.testing.assert_allclose(model.seen[0][0].numpy(), x[7:10], rtol=1e-6)
    np.testing.assert_allclose(ev.risk, [x[9, :, 0]], rtol=1e-6)


def test_bad_inputs_are_refused_with_the_fix():
    model, x = StubModel(), _series()
    with pytest.raises(ValueError, match=r"start\(s\) \[1\].*min_start=2"):
        incident_evidence(model, x, None, MSG[:, :3], [1, 5], window=3)
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        incident_evidence(model, x, None, MSG[:, :3], [5], window=0)
    with pytest.raises(ValueError, match="x must be a numeric series"):
        incident_evidence(model, x[0], None, MSG[:, :3], [5], window=3)
    with pytest.raises(ValueError, match="attention has 5 edges but message_edges 6"):
        attention_flow(ATT[:5], MSG, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="one entry per service"):
        rank_average([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="non-finite"):
        rank_by_score([0.1, np.nan])


@pytest.fixture(scope="module")
def hard():
    tel = simulate(shop_graph(), steps=600, seed=51, num_incidents=12, regime="hard")
    return tel, time_split(tel, window=6)


@pytest.mark.parametrize("direction", ["both", "reverse"])
def test_a_real_model_gives_rankings_the_metrics_accept(hard, direction):
    tel, split = hard
    torch.manual_seed(0)
    model = TemporalGAT(4, hidden=8, heads=2, direction=direction).eval()
    starts, roots = incident_starts_roots(tel, min_start=12)
    ei = tel.graph.edge_index
    ev = incident_evidence(model, tel.x, tel.mask, ei, starts, window=6, normaliser=split.normaliser)
    assert ev.risk.shape == ev.flow.shape == (len(starts), 8)
    # Attention into each target sums to 1, so the flow sent out by all services together is what the
    # services at risk did NOT keep for themselves: sum_v flow[v] = sum_u risk[u] (1 - a(u -> u)).
    self_loop = ev.message_edges[0] == ev.message_edges[1]
    kept = np.zeros((len(starts), 8))
    kept[:, ev.message_edges[0, self_loop]] = ev.attention[:, self_loop]
    np.testing.assert_allclose(ev.flow.sum(axis=1), (ev.risk * (1 - kept)).sum(axis=1), rtol=1e-5)
    ranks = model_rootcause(model, tel.x, tel.mask, ei, starts, window=6, normaliser=split.normaliser)
    assert set(ranks) == {"risk", "attention", "combined", "downstream"}
    for rankings in ranks.values():
        assert all(sorted(r.order.tolist()) == list(range(8)) for r in rankings)
        report = rootcause_report(rankings, roots, n_resamples=200)
        assert set(report) == {"AC@1", "AC@3", "Avg@5"} and report["AC@1"].low <= report["AC@1"].high
    rule = rank_incidents("largest_z", tel.x, tel.mask, ei, starts)
    diff = paired_bootstrap(hits_at_k(ranks["combined"], roots, 1), hits_at_k(rule, roots, 1), n_resamples=200)
    assert diff.low <= diff.difference <= diff.high


def test_a_no_graph_model_ranks_by_risk_only(hard):
    tel, split = hard
    model = TemporalGAT(4, hidden=8, heads=2, graph=False).eval()
    starts, _ = incident_starts_roots(tel, min_start=12)
    ranks = model_rootcause(model, tel.x, tel.mask, None, starts, window=6, normaliser=split.normaliser)
    assert set(ranks) == {"risk"} and len(ranks["risk"]) == len(starts)
    with_graph = model_rootcause(model, tel.x, tel.mask, tel.graph.edge_index, starts, window=6, threshold=0.4)
    assert set(with_graph) == {"risk", "downstream"}  # the call graph read with the no-graph model's risk
    ev = incident_evidence(model, tel.x, tel.mask, None, starts, window=6, normaliser=split.normaliser)
    assert ev.flow is None and ev.attention is None and ev.message_edges is None
    assert model.training is False
