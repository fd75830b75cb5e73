"""The MTAD-GAT GRU: ``nn.GRU``'s outputs and gradients, its parameters, a hand-written backward pass."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from tgad_lite.mtad.gru import GRU, _BufferPool, _GRULayer


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
    b, h, i, steps = 3, 4, 2, 5
    x = torch.randn(steps, b, i, dtype=torch.double, requires_grad=True)
    x_constant = torch.randn(b, i, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(b, h, dtype=torch.double, requires_grad=True)
    weights = [
        torch.randn(shape, dtype=torch.double, requires_grad=True)
        for shape in ((3 * h, i), (3 * h,), (3 * h, h), (3 * h,))
    ]

    def layer(*args):
        return _GRULayer.apply(*args, steps, _BufferPool(), True)

    assert torch.autograd.gradcheck(layer, (x, h0, *weights))
    assert torch.autograd.gradcheck(layer, (x_constant, h0, *weights))
    # A batch-first input seen time-major (not contiguous): copied into a pooled buffer first.
    x_batch_first = torch.randn(b, steps, i, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda xb, *rest: layer(xb.transpose(0, 1), *rest), (x_batch_first, h0, *weights))


def _train_step(module, x, seed=1):
    out, h_n = module(x)
    return out, h_n, _grads(module, out, h_n, [x], seed)  # the graph's saved buffers are freed here


def test_pooled_buffers_are_reused_and_never_change_a_result():
    ref, mine = _pair(5, 7)
    x = torch.randn(3, 11, 5, dtype=torch.double, requires_grad=True)
    first = _train_step(mine, x)
    pool = mine.workspace
    kept = {key: [t.data_ptr() for t in free] for key, free in pool._free.items()}
    assert kept, "the backward pass gives its buffers back"
    second = _train_step(mine, x)
    assert {key: sorted(t.data_ptr() for t in free) for key, free in pool._free.items()} == {
        key: sorted(ptrs) for key, ptrs in kept.items()
    }, "the second step reuses the first step's buffers instead of allocating new ones"
    out_ref, h_ref = ref(x)
    expected = (out_ref, h_ref, _grads(ref, out_ref, h_ref, [x]))
    for got in (first, second):
        torch.testing.assert_close(got[:2], expected[:2], atol=1e-12, rtol=0)
        for a, b in zip(got[2], expected[2], strict=True):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_two_graphs_alive_at_once_keep_their_own_buffers():
    # The second forward must not write into buffers the first graph still needs (retain_graph too).
    ref, mine = _pair(5, 7, layers=2)
    x1 = torch.randn(3, 11, 5, dtype=torch.double, requires_grad=True)
    x2 = torch.randn(3, 11, 5, dtype=torch.double, requires_grad=True)
    out1, h1 = mine(x1)
    out2, h2 = mine(x2)
    g1_again = torch.autograd.grad((out1 * 2).sum() + h1.sum(), [x1], retain_graph=True)
    out3, h3 = mine(x2)  # a third graph while the first is retained
    g1 = _grads(mine, out1, h1, [x1])
    g2 = _grads(mine, out2, h2, [x2])
    del out3, h3
    for x, got in ((x1, g1), (x2, g2)):
        out_ref, h_ref = ref(x)
        for a, b in zip(got, _grads(ref, out_ref, h_ref, [x]), strict=True):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    out_ref, h_ref = ref(x1)
    expected = torch.autograd.grad((out_ref * 2).sum() + h_ref.sum(), [x1])
    torch.testing.assert_close(g1_again, expected, atol=1e-12, rtol=0)


def test_only_the_used_output_gets_a_gradient():
    # The encoder uses h_n only, the decoder the outputs only: the unused one arrives as None.
    ref, mine = _pair(4, 6)
    x = torch.randn(2, 9, 4, dtype=torch.double, requires_grad=True)
    for pick in (lambda out, h_n: out.square().sum(), lambda out, h_n: h_n.square().sum()):
        got = torch.autograd.grad(pick(*mine(x)), [x, *mine.parameters()])
        expected = torch.autograd.grad(pick(*ref(x)), [x, *ref.parameters()])
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_no_grad_and_inference_mode_keep_nothing_and_agree():
    ref, mine = _pair(5, 7)
    x = torch.randn(3, 11, 5, dtype=torch.double)
    with torch.no_grad():
        out, h_n = mine(x)
    assert out.grad_fn is None
    with torch.inference_mode():
        out_inf, _ = mine(x)
    torch.testing.assert_close(out, ref(x)[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(out_inf, out, atol=0, rtol=0)
    # Buffers made under inference mode are kept apart: training afterwards still works.
    xg = x.clone().requires_grad_()
    out, h_n = mine(xg)
    out_ref, h_ref = ref(xg)
    for a, b in zip(_grads(mine, out, h_n, [xg]), _grads(ref, out_ref, h_ref, [xg]), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_workspace_is_not_copied_saved_or_kept_across_dtypes():
    _, mine = _pair(5, 7)
    x = torch.randn(3, 11, 5, dtype=torch.double, requires_grad=True)
    _train_step(mine, x)
    assert mine.workspace._free
    assert "workspace" not in "".join(mine.state_dict())
    clone = copy.deepcopy(mine)
    assert clone.workspace is not mine.workspace and not clone.workspace._free
    restored = pickle.loads(pickle.dumps(mine))
    assert not restored.workspace._free
    torch.testing.assert_close(restored(x)[0], mine(x)[0], atol=0, rtol=0)
    mine.float()
    assert not mine.workspace._free, "moving the module empties the pool"


def test_double_backward_is_refused():
    _, mine = _pair(3, 4)
    x = torch.randn(2, 5, 3, dtype=torch.double, requires_grad=True)
    (g,) = torch.autograd.grad(mine(x)[1].sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


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
