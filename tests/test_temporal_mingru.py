"""minGRU (gates from the input only): a hand-computed sequence, the defining recurrence, gradients,
the nn.GRU-like interface, and TemporalGAT built with it."""

from __future__ import annotations

import pytest
import torch

from tgad_lite.temporal import TemporalGAT
from tgad_lite.temporal.mingru import MinGRU


def test_hand_computed_one_unit_sequence():
    cell = MinGRU(1, 1).double()
    with torch.no_grad():
        cell.linear.weight.copy_(torch.tensor([[0.0], [2.0]]))  # gate pre-activation 0 -> z = 1/2; candidate 2 x
        cell.linear.bias.zero_()
    x = torch.tensor([[[1.0], [3.0], [-1.0]]], dtype=torch.float64)  # [B=1, S=3, I=1]
    out, h_n = cell(x)
    # h1 = 1/2 * 2 = 1; h2 = 1/2 * 1 + 1/2 * 6 = 3.5; h3 = 1/2 * 3.5 + 1/2 * (-2) = 0.75
    assert out.shape == (1, 3, 1) and h_n.shape == (1, 1, 1)
    assert out[0, :, 0].tolist() == [1.0, 3.5, 0.75]
    assert h_n[0, 0, 0].item() == 0.75


def test_forward_is_the_defining_recurrence_and_h_n_is_the_last_output():
    torch.manual_seed(0)
    cell = MinGRU(5, 7).double()
    x = torch.randn(4, 6, 5, dtype=torch.float64)
    out, h_n = cell(x)
    w, b = cell.linear.weight, cell.linear.bias
    h = torch.zeros(4, 7, dtype=torch.float64)
    for t in range(6):
        g = x[:, t] @ w.t() + b
        z, cand = torch.sigmoid(g[:, :7]), g[:, 7:]
        h = (1 - z) * h + z * cand
        assert torch.allclose(out[:, t], h, atol=1e-12)
    assert torch.equal(h_n[0], out[:, -1])


def test_gradients_match_finite_differences():
    torch.manual_seed(1)
    cell = MinGRU(3, 2).double()
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: cell(inp)[0], (x,))


@pytest.mark.parametrize(
    ("shape", "match"), [((2, 3), r"\[B, S, 4\]"), ((2, 3, 5), r"\[B, S, 4\]"), ((2, 0, 4), "no steps")]
)
def test_bad_input_is_refused(shape, match):
    with pytest.raises(ValueError, match=match):
        MinGRU(4, 3)(torch.zeros(shape))


def test_temporal_gat_with_mingru_runs_trains_and_keeps_its_config():
    torch.manual_seed(0)
    model = TemporalGAT(3, hidden=8, heads=2, num_layers=1, recurrent="mingru")
    assert isinstance(model.rnn, MinGRU) and model.config["recurrent"] == "mingru"
    assert TemporalGAT(**model.config).config == model.config
    ei = torch.tensor([[0, 1, 2], [1, 2, 3]])
    x = torch.randn(2, 5, 4, 3)
    out = model(x, ei)
    assert out.risk.shape == (2, 4) and torch.isfinite(out.logits).all()
    out.logits.sum().backward()
    assert model.rnn.linear.weight.grad is not None and model.rnn.linear.weight.grad.abs().sum() > 0
