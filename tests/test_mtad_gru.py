"""The MTAD-GAT GRU: ``nn.GRU``'s outputs and gradients, its parameters, a hand-written backward pass."""

from __future__ import annotations

import pytest
import torch

from tgad_lite.mtad.gru import GRU, _GRULayer


def _pair(input_size: int, hidden: int, layers: int = 1, batch_first: bool = True, dropout: float = 0.0):
    torch.manual_seed(0)
    ref = torch.nn.GRU(input_size, hidden, layers, batch_first=batch_first, dropout=dropout).double()
    torch.manual_seed(0)
    mine = GRU(input_size, hidden, layers, batch_first=batch_first, dropout=dropout).double()
    return ref, mine


def _grads(module, out: torch.Tensor, h_n: torch.Tensor, inputs: list[torch.Tensor], seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    w_out = torch.randn(out.shape, generator=g, dtype=out.dtype)
    w_h = torch.randn(h_n.shape, generator=g, dtype=h_n.dtype)
    loss = (out * w_out).sum() + (h_n * w_h).sum()
    return torch.autograd.grad(loss, [*inputs, *module.parameters()])


def test_same_parameters_names_and_seeded_initialisation_as_nn_gru():
    ref, mine = _pair(5, 7, layers=2)
    assert [n for n, _ in ref.named_parameters()] == [n for n, _ in mine.named_parameters()]
    for (name, a), b in zip(ref.state_dict().items(), mine.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    fresh = torch.nn.GRU(5, 7, 2)
    fresh.load_state_dict(mine.float().state_dict())  # the state dicts move both ways


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("batch_first", [True, False])
def test_outputs_and_every_gradient_equal_nn_gru(layers, batch_first):
    ref, mine = _pair(5, 7, layers, batch_first)
    shape = (3, 11, 5) if batch_first else (11, 3, 5)
    x = torch.randn(shape, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(layers, 3, 7, dtype=torch.double, requires_grad=True)
    out_ref, h_ref = ref(x, h0)
    out, h_n = mine(x, h0)
    torch.testing.assert_close(out, out_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(h_n, h_ref, atol=1e-12, rtol=0)
    for a, b in zip(_grads(mine, out, h_n, [x, h0]), _grads(ref, out_ref, h_ref, [x, h0]), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_only_the_last_state_used_as_the_encoder_does():
    ref, mine = _pair(4, 6)
    x = torch.randn(2, 9, 4, dtype=torch.double, requires_grad=True)
    g_ref = torch.autograd.grad(ref(x)[1][-1].square().sum(), [x, *ref.parameters()])
    g = torch.autograd.grad(mine(x)[1][-1].square().sum(), [x, *mine.parameters()])
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_repeated_input_equals_feeding_the_expanded_sequence():
    ref, mine = _pair(5, 7, layers=2)
    z = torch.randn(4, 5, dtype=torch.double, requires_grad=True)
    out_ref, h_ref = ref(z.unsqueeze(1).expand(-1, 13, -1))
    out, h_n = mine.forward_repeated(z, 13)
    assert out.shape == (4, 13, 7)
    torch.testing.assert_close(out, out_ref, atol=1e-12, rtol=0)
    for a, b in zip(_grads(mine, out, h_n, [z]), _grads(ref, out_ref, h_ref, [z]), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_layer_backward_passes_gradcheck():
    torch.manual_seed(2)
    b, h, steps = 3, 4, 5
    gi = torch.randn(steps, b, 3 * h, dtype=torch.double, requires_grad=True)
    gi_constant = torch.randn(b, 3 * h, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(b, h, dtype=torch.double, requires_grad=True)
    w = torch.randn(3 * h, h, dtype=torch.double, requires_grad=True)
    bias = torch.randn(3 * h, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: _GRULayer.apply(*a, steps), (gi, h0, w, bias))
    assert torch.autograd.gradcheck(lambda *a: _GRULayer.apply(*a, steps), (gi_constant, h0, w, bias))


def test_dropout_between_layers_acts_in_training_only():
    _, mine = _pair(3, 5, layers=2, dropout=0.5)
    x = torch.randn(4, 6, 3, dtype=torch.double)
    mine.eval()
    first, second = mine(x)[0], mine(x)[0]
    assert torch.equal(first, second)
    mine.train()
    torch.manual_seed(0)
    dropped = mine(x)[0]
    assert torch.isfinite(dropped).all() and not torch.allclose(dropped, first)


def test_unbatched_input_and_bad_repeated_input():
    ref, mine = _pair(3, 5)
    x = torch.randn(6, 3, dtype=torch.double)  # unbatched [W, I]: nn.GRU's own path
    torch.testing.assert_close(mine(x)[0], ref(x)[0])
    with pytest.raises(ValueError, match=r"x must be \[B, I\]"):
        mine.forward_repeated(torch.randn(2, 6, 3, dtype=torch.double), 4)
