"""The no-graph model, TemporalGAT(graph=False) (issue 10, item 4): the graph model minus its graph encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tgad_lite.data.microservices import random_service_dag, shop_graph, simulate, time_split
from tgad_lite.temporal import TemporalGAT, predict_risk, train_risk_model

F_METRICS = 4


# Tiny models run fastest on one torch thread (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def _model(graph: bool, seed: int = 0, **kwargs) -> TemporalGAT:
    torch.manual_seed(seed)
    return TemporalGAT(F_METRICS, hidden=8, heads=2, dropout=0.0, graph=graph, **kwargs).double().eval()


def _windows(seed: int = 0, missing: float = 0.2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, 8, F_METRICS, generator=g, dtype=torch.float64)
    mask = torch.rand(x.shape, generator=g) > missing
    return x.masked_fill(~mask, float("nan")), mask


def test_output_is_the_same_on_any_graph():
    model = _model(graph=False)
    x, mask = _windows()
    shop = torch.tensor(shop_graph().edge_index)
    graphs = [
        shop,
        shop.flip(0),  # every dependency reversed
        torch.tensor(random_service_dag(8, edge_prob=0.6, seed=3).edge_index),
        torch.zeros((2, 0), dtype=torch.long),  # no edges at all
        None,  # no graph given
    ]
    with torch.no_grad():
        outs = [model(x, ei, mask).logits for ei in graphs]
    for out in outs[1:]:
        assert torch.equal(out, outs[0])
    # The graph model on the same input does read the graph: otherwise the check above says nothing.
    graph_model = _model(graph=True)
    with torch.no_grad():
        assert not torch.allclose(graph_model(x, shop, mask).logits, graph_model(x, graphs[2], mask).logits)


def test_it_is_the_graph_model_without_the_encoder():
    with_graph, without = _model(graph=True), _model(graph=False)
    names = set(without.state_dict())
    assert names == {k for k in with_graph.state_dict() if not k.startswith(("convs.", "norms."))}
    assert not any(k.startswith(("convs.", "norms.")) for k in names)
    assert without.config["graph"] is False and without.config["num_layers"] == 0
    # Same widths everywhere else: the graph model's shared weights load into the no-graph model
    # and give the function input projection -> recurrent layer -> risk head, checked by hand here.
    shared = {k: v for k, v in with_graph.state_dict().items() if k in names}
    without.load_state_dict(shared)
    x, mask = _windows(seed=1)
    inp = torch.cat([torch.where(mask, x, 0.0), mask.double()], dim=-1)  # [B, S, N, 2F]
    h = without.input_proj(inp).permute(0, 2, 1, 3).reshape(3 * 8, 5, 8)
    seq, _ = without.rnn(h)
    expected = without.head(seq[:, -1]).view(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(without(x, None, mask).logits, expected)


def test_config_rebuilds_it():
    model = _model(graph=False, recurrent="gru")
    twin = TemporalGAT(**model.config).double().eval()
    twin.load_state_dict(model.state_dict())
    x, mask = _windows(seed=2)
    with torch.no_grad():
        assert torch.equal(twin(x, None, mask).risk, model(x, None, mask).risk)
    assert "graph=False" in repr(model)


def test_attention_is_refused_with_the_fix():
    model = _model(graph=False)
    x, mask = _windows()
    with pytest.raises(ValueError, match=r"no-graph model.*return_attention=False"):
        model(x, None, mask, return_attention=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"graph": False, "num_layers": 2}, r"graph=False .*num_layers=2.*leave num_layers unset"),
        ({"graph": "no"}, "graph must be True"),
        ({"graph": True, "num_layers": 0}, r"num_layers must be a positive int.*graph=False"),
    ],
)
def test_contradictory_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TemporalGAT(F_METRICS, **kwargs)


def test_default_layers_unchanged_and_zero_layers_allowed_without_graph():
    assert TemporalGAT(F_METRICS).num_layers == 2
    assert TemporalGAT(F_METRICS, graph=False, num_layers=0).num_layers == 0


def test_it_trains_with_the_recipe_without_a_graph():
    tel = simulate(shop_graph(), steps=700, seed=31, num_incidents=14, regime="easy")
    split = time_split(tel, window=6)
    torch.manual_seed(0)
    model = TemporalGAT(F_METRICS, hidden=16, heads=2, graph=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_risk_model(model, split.train, split.val, None, epochs=6, patience=6, device="cpu", progress=False)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    positive_rate = float(split.val.labels.mean())  # a random ranking's expected PR-AUC
    assert result.val_pr_auc > max(0.5, 3 * positive_rate)
    risk = predict_risk(model, split.test)
    assert risk.shape == split.test.labels.shape and np.all((risk >= 0) & (risk <= 1))
