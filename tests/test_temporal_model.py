"""TemporalGAT: the batched model against the loop reference, topologies, masks, attention, bad inputs, CUDA.

The loop reference (``tests/_temporal_loop_reference.py``) runs the model's own layers once per window
and step (graph) and once per window and service (recurrent layer); with the same weights the two
must agree to rounding in every output and every gradient.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _temporal_loop_reference import loop_forward

from tgad_lite.data.microservices import random_service_dag, shop_graph
from tgad_lite.temporal import TemporalGAT
from tgad_lite.temporal.model import _edge_softmax, _keep_mask, _SumMessages

F_METRICS = 4


def shop_edges() -> torch.Tensor:
    return torch.tensor(shop_graph().edge_index)  # a copy: the graph's array is read-only


def random_edges(n: int, seed: int) -> torch.Tensor:
    return torch.tensor(random_service_dag(n, edge_prob=0.3, seed=seed).edge_index)


GRAPHS = {"shop": shop_edges, "random": lambda: random_edges(11, seed=3)}


def make_model(seed: int = 0, dtype=torch.float64, **kwargs) -> TemporalGAT:
    kwargs = {"hidden": 8, "heads": 2, "dropout": 0.0, **kwargs}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TemporalGAT(F_METRICS, **kwargs).to(dtype)


def windows(bsz: int, steps: int, n: int, *, seed: int, missing: float = 0.0, dtype=torch.float64):
    """``x [B, S, N, F]`` with NaN wherever ``mask`` (returned, or None when ``missing == 0``) is False."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, steps, n, F_METRICS, generator=g, dtype=dtype)
    if not missing:
        return x, None
    mask = torch.rand(bsz, steps, n, F_METRICS, generator=g) >= missing
    mask[0, -1, 0] = False  # service 0 of window 0 has no observed metric at the last step: still a node
    return x.masked_fill(~mask, float("nan")), mask


def run_with_grads(fn, model: TemporalGAT, x: torch.Tensor, y: torch.Tensor):
    """Output of ``fn`` (model or loop reference) and the gradient of a BCE loss for every parameter and x."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    out = fn(x)
    F.binary_cross_entropy_with_logits(out.logits, y).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return out, grads, x.grad


def assert_same(batched, loop, atol: float) -> None:
    out_b, grads_b, xg_b = batched
    out_l, grads_l, xg_l = loop
    torch.testing.assert_close(out_b.risk, out_l.risk, rtol=0, atol=atol)
    torch.testing.assert_close(out_b.logits, out_l.logits, rtol=0, atol=atol)
    assert torch.equal(out_b.attention_edge_index, out_l.attention_edge_index)
    assert len(out_b.layer_attention) == len(out_l.layer_attention) == 2
    assert out_b.attention is out_b.layer_attention[-1]
    for a_b, a_l in zip(out_b.layer_attention, out_l.layer_attention, strict=True):
        torch.testing.assert_close(a_b, a_l, rtol=0, atol=atol)
    assert grads_b.keys() == grads_l.keys() and len(grads_b) > 10
    for name in grads_b:
        assert grads_b[name].abs().sum() > 0, f"{name} got no gradient"
        torch.testing.assert_close(grads_b[name], grads_l[name], rtol=0, atol=atol, msg=name)
    torch.testing.assert_close(xg_b, xg_l, rtol=0, atol=atol)
    assert torch.isfinite(xg_b).all()


@pytest.mark.parametrize(
    "graph, missing, recurrent, direction",
    [
        ("shop", 0.0, "lstm", "both"),
        ("shop", 0.3, "lstm", "both"),
        ("random", 0.3, "gru", "forward"),
        ("random", 0.0, "lstm", "reverse"),
        ("shop", 0.3, "mingru", "both"),
    ],
)
def test_batched_model_equals_loop_reference_outputs_and_gradients(graph, missing, recurrent, direction):
    ei = GRAPHS[graph]()
    n = int(ei.max()) + 1
    model = make_model(recurrent=recurrent, direction=direction)
    x, mask = windows(3, 4, n, seed=1, missing=missing)
    y = (torch.rand(3, n, generator=torch.Generator().manual_seed(2)) < 0.3).double()
    batched = run_with_grads(lambda x: model(x, ei, mask, return_attention=True), model, x, y)
    loop = run_with_grads(lambda x: loop_forward(model, x, ei, mask, return_attention=True), model, x, y)
    assert batched[0].risk.shape == (3, n)
    assert batched[0].attention.shape == (3, 4, batched[0].attention_edge_index.size(1), 2)
    assert_same(batched, loop, atol=1e-10)
    if mask is not None:  # unobserved values get no gradient: they never reach the model
        assert (batched[2][~mask] == 0).all()


def test_float32_and_eval_mode_dropout_match_the_loop_reference():
    # Eval mode: dropout (0.5 here) off in both; float32 agrees to 1e-5.
    ei = shop_edges()
    model = make_model(dtype=torch.float32, dropout=0.5, hidden=16, heads=4).eval()
    x, mask = windows(4, 5, 8, seed=4, missing=0.2, dtype=torch.float32)
    y = (torch.rand(4, 8, generator=torch.Generator().manual_seed(5)) < 0.3).float()
    batched = run_with_grads(lambda x: model(x, ei, mask, return_attention=True), model, x, y)
    loop = run_with_grads(lambda x: loop_forward(model, x, ei, mask, return_attention=True), model, x, y)
    assert_same(batched, loop, atol=1e-5)


def test_one_model_runs_on_other_topologies_and_sees_an_edited_graph():
    model = make_model()
    graphs = [shop_edges(), random_edges(13, seed=0), random_edges(5, seed=1), shop_edges()]
    assert graphs[1].size(1) != graphs[0].size(1)
    for i, ei in enumerate(graphs):
        n = int(ei.max()) + 1
        for bsz in (2, 3):
            x, mask = windows(bsz, 3, n, seed=10 + i, missing=0.2)
            out = model(x, ei, mask, return_attention=True)
            ref = loop_forward(model, x, ei, mask, return_attention=True)
            assert out.risk.shape == (bsz, n) and out.attention.shape[:3] == (bsz, 3, ref.attention.size(2))
            torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=1e-10)
            torch.testing.assert_close(out.attention, ref.attention, rtol=0, atol=1e-10)

    # An in-place edit of edge_index is seen: nothing about the graph is kept between calls.
    ei = random_edges(13, seed=0)
    x, _ = windows(2, 3, 13, seed=20)
    before = model(x, ei).logits
    ei[1, 0] = (ei[1, 0] + 1) % 13 if (ei[1, 0] + 1) % 13 != ei[0, 0] else (ei[1, 0] + 2) % 13
    after = model(x, ei).logits
    torch.testing.assert_close(after, loop_forward(model, x, ei).logits, rtol=0, atol=1e-10)
    assert not torch.allclose(before, after)


def test_missing_is_not_zero_and_unobserved_values_do_not_matter():
    model = make_model(seed=1)
    ei = shop_edges()
    x, _ = windows(2, 4, 8, seed=6)
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[:, :, 3, 1:] = False  # three of service 3's metrics unobserved throughout
    mask[1, -1, 5] = False  # service 5 of window 1 silent at the last step
    zeros = x.masked_fill(~mask, 0.0)
    as_observed_zero = model(zeros, ei).risk
    as_missing = model(zeros, ei, mask).risk
    assert not torch.allclose(as_observed_zero, as_missing)  # 0 read as a reading is not "missing"
    with_nan = model(x.masked_fill(~mask, float("nan")), ei, mask).risk
    with_junk = model(x.masked_fill(~mask, 1e6), ei, mask).risk
    torch.testing.assert_close(with_nan, as_missing, rtol=0, atol=0)
    torch.testing.assert_close(with_junk, as_missing, rtol=0, atol=0)
    assert torch.isfinite(with_nan).all()
    all_true = torch.ones_like(mask)
    torch.testing.assert_close(model(x, ei, all_true).risk, model(x, ei).risk, rtol=0, atol=0)


def test_attention_edge_order_and_normalisation():
    model = make_model(direction="both")
    ei = torch.tensor([[0, 0, 1, 2, 3], [1, 2, 3, 2, 0]])  # (2, 2) is a self loop: dropped, then re-added once
    x, _ = windows(2, 3, 4, seed=7)
    out = model(x, ei, return_attention=True)
    given = ei[:, ei[0] != ei[1]]
    loops = torch.arange(4).repeat(2, 1)
    assert torch.equal(out.attention_edge_index, torch.cat([given, given.flip(0), loops], dim=1))
    assert out.attention.shape == (2, 3, 2 * 4 + 4, 2)
    # Softmax over the edges into each target: per window, step and head the weights into a node sum to 1.
    dst = out.attention_edge_index[1]
    for alpha in out.layer_attention:
        sums = torch.zeros(2, 3, 4, 2, dtype=alpha.dtype).index_add_(2, dst, alpha)
        torch.testing.assert_close(sums, torch.ones_like(sums))
    forward_only = make_model(direction="forward")(x, ei, return_attention=True)
    assert torch.equal(forward_only.attention_edge_index, torch.cat([given, loops], dim=1))


def test_runs_under_cpu_autocast():
    model = make_model(dtype=torch.float32)
    x, mask = windows(2, 3, 8, seed=8, missing=0.2, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, shop_edges(), mask, return_attention=True)
    assert out.risk.shape == (2, 8) and torch.isfinite(out.risk).all() and torch.isfinite(out.attention).all()


def _bad_call(case: str):
    """``(x, edge_index, mask)`` for one kind of bad input to a model with F=4."""
    x, mask = windows(2, 3, 8, seed=9, missing=0.2)
    ei = shop_edges()
    one_inf = x.nan_to_num()
    one_inf[1, 2, 3, 0] = float("inf")
    return {
        "3-d x": (x[0], ei, None),
        "wrong F": (x[..., :3], ei, None),
        "empty x": (x[:, :0], ei, None),
        "integer x": (x.nan_to_num().long(), ei, None),
        "float32 x": (x.float(), ei, mask),
        "NaN without mask": (x, ei, None),
        "NaN where observed": (x, ei, torch.ones_like(mask)),
        "inf where observed": (one_inf, ei, torch.ones_like(mask)),
        "inf without mask": (one_inf, ei, None),
        "mask shape": (x, ei, mask[:, :2]),
        "mask dtype": (x, ei, mask.double()),
        "edge_index [E, 2]": (x, ei.t().contiguous(), mask),
        "edge_index float": (x, ei.double(), mask),
        "edge_index too large": (x, torch.tensor([[0, 8], [1, 2]]), mask),
        "edge_index negative": (x, torch.tensor([[0, -1], [1, 2]]), mask),
        "edge_index numpy": (x, shop_graph().edge_index, mask),
    }[case]


@pytest.mark.parametrize(
    "case, match",
    [
        ("3-d x", r"\[B, S, N, F\].*unsqueeze\(0\)"),
        ("wrong F", r"3 metrics.*num_features=4"),
        ("empty x", "at least one window"),
        ("integer x", r"floating-point.*x\.float\(\)"),
        ("float32 x", r"float32 but the model's weights are torch\.float64.*autocast"),
        ("NaN without mask", r"no mask was given; pass mask=torch\.isfinite\(x\)"),
        ("NaN where observed", r"where mask says observed.*set mask False there"),
        ("inf where observed", r"1 NaN or infinite values where mask says observed \(first at index \[1, 2, 3, 0\]\)"),
        ("inf without mask", r"0 NaN and 1 infinite values and no mask"),
        ("mask shape", r"mask must have x's shape"),
        ("mask dtype", r"mask must be bool.*mask\.bool\(\)"),
        ("edge_index [E, 2]", r"\[2, E\].*\.t\(\)"),
        ("edge_index float", r"integer service ids.*\.long\(\)"),
        ("edge_index too large", r"refers to service 8, but x has N=8 services"),
        ("edge_index negative", r"refers to service -1"),
        ("edge_index numpy", r"\[2, E\] tensor.*torch\.as_tensor"),
    ],
)
def test_bad_inputs_are_refused_with_the_fix_and_change_nothing(case, match):
    model = make_model()
    x, ei, mask = _bad_call(case)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(2):  # refused again on a second call: no bad graph was cached by the first
        with pytest.raises(ValueError, match=match):
            model(x, ei, mask)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    good_x, good_mask = windows(2, 3, 8, seed=9, missing=0.2)
    assert model(good_x, shop_edges(), good_mask).risk.shape == (2, 8)  # still usable


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_features": 0}, "num_features must be a positive int"),
        ({"hidden": 10, "heads": 4}, r"multiple of heads.*hidden=8"),
        ({"heads": 1.5}, "heads must be a positive int"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"recurrent": "rnn"}, "recurrent must be one of lstm|gru|mingru"),
        ({"direction": "up"}, "direction must be one of both|forward|reverse"),
        ({"num_layers": 0}, "num_layers must be a positive int"),
        ({"negative_slope": -0.1}, "negative_slope must be a number >= 0"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    kwargs = {"num_features": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        TemporalGAT(**kwargs)


def test_refuses_edge_index_on_another_device():
    model = make_model()
    x, _ = windows(1, 2, 8, seed=0)
    with pytest.raises(ValueError, match=r"edge_index on meta.*edge_index\.to\(x\.device\)"):
        model(x, shop_edges().to("meta"))


@pytest.mark.cuda
@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason=f"needs a CUDA GPU: torch {torch.__version__} sees none "
    f"(CUDA build: {torch.version.cuda or 'none, a CPU-only build'})",
)
def test_cuda_matches_the_cpu_loop_reference():
    # float64, where GPU and CPU kernels agree to ~1e-12; train mode (cuDNN's RNN backward needs it).
    ei = random_edges(11, seed=3)
    model = make_model(recurrent="lstm")
    x, mask = windows(3, 4, 11, seed=1, missing=0.3)
    y = (torch.rand(3, 11, generator=torch.Generator().manual_seed(2)) < 0.3).double()
    loop = run_with_grads(lambda x: loop_forward(model, x, ei, mask, return_attention=True), model, x, y)
    model.cuda()
    dev = torch.device("cuda")
    batched = run_with_grads(
        lambda x: model(x, ei.to(dev), mask.to(dev), return_attention=True), model, x.to(dev), y.to(dev)
    )
    out, grads, xg = batched
    assert out.risk.device.type == "cuda"
    layers = tuple(a.cpu() for a in out.layer_attention)
    on_cpu = out._replace(
        risk=out.risk.cpu(),
        logits=out.logits.cpu(),
        attention=layers[-1],
        attention_edge_index=out.attention_edge_index.cpu(),
        layer_attention=layers,
    )
    assert_same((on_cpu, {k: v.cpu() for k, v in grads.items()}, xg.cpu()), loop, atol=1e-10)
    with pytest.raises(ValueError, match=r"x is on cpu but the model on cuda"):
        model(x, ei.to(dev))
    with torch.autocast("cuda", dtype=torch.float16):
        half = model.float()(x.float().to(dev), ei.to(dev), mask.to(dev))
    assert torch.isfinite(half.risk).all()


def test_config_rebuilds_the_same_architecture_for_a_checkpoint():
    model = make_model(recurrent="gru", direction="reverse", hidden=12, heads=3, dropout=0.2, negative_slope=0.1)
    twin = TemporalGAT(**model.config).double()
    twin.load_state_dict(model.state_dict())  # strict: same parameter names and shapes
    x, mask = windows(2, 3, 8, seed=11, missing=0.1)
    torch.testing.assert_close(twin.eval()(x, shop_edges(), mask).risk, model.eval()(x, shop_edges(), mask).risk)
    assert twin.config == model.config and model.config["negative_slope"] == 0.1


def test_a_graph_without_edges_and_int32_ids():
    model = make_model()
    x, _ = windows(2, 3, 1, seed=12)  # one service, no dependencies: it attends to itself only
    out = model(x, torch.zeros(2, 0, dtype=torch.long), return_attention=True)
    assert out.risk.shape == (2, 1) and torch.equal(out.attention, torch.ones(2, 3, 1, 2, dtype=torch.float64))
    x, _ = windows(2, 3, 8, seed=13)
    ei = shop_edges()
    torch.testing.assert_close(model(x, ei.int()).logits, model(x, ei).logits, rtol=0, atol=0)


def test_edge_softmax_equals_pygs_softmax_with_its_gradient():
    # The batched layer's softmax along the service axis against torch_geometric.utils.softmax on
    # the same edges; duplicate edges, a node with one in-edge, and scores far apart (the max shift).
    from torch_geometric.utils import softmax

    dst = torch.tensor([0, 2, 2, 1, 0, 2, 3, 0])
    g = torch.Generator().manual_seed(3)
    score = (torch.randn(3, 8, 5, 2, generator=g, dtype=torch.float64) * 30).requires_grad_()
    weights = torch.randn(3, 8, 5, 2, generator=g, dtype=torch.float64)
    ours = _edge_softmax(score, dst, 4)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), score)
    theirs = softmax(score, dst, num_nodes=4, dim=1)
    (grad_theirs,) = torch.autograd.grad((theirs * weights).sum(), score)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-14)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=0, atol=1e-12)
    sums = torch.zeros(3, 4, 5, 2, dtype=torch.float64).index_add_(1, dst, ours.detach())
    torch.testing.assert_close(sums, torch.ones_like(sums))


def test_sum_messages_gradients_by_gradcheck():
    # The hand-written backward of the attention-weighted sum (alpha's gradient as a matrix product,
    # x_j's in place) against finite differences; duplicate edges and a target with no edges.
    dst = torch.tensor([0, 2, 2, 1, 0, 2])
    g = torch.Generator().manual_seed(4)
    alpha = torch.rand(2, 6, 3, 2, generator=g, dtype=torch.float64).requires_grad_()
    x_j = torch.randn(2, 6, 3, 6, generator=g, dtype=torch.float64).requires_grad_()  # 2 heads of 3
    assert torch.autograd.gradcheck(lambda a, x: _SumMessages.apply(a, x, dst, 4), (alpha, x_j))
    out = _SumMessages.apply(alpha, x_j, dst, 4)
    expected = torch.zeros(2, 4, 3, 2, 3, dtype=torch.float64)
    for k, i in enumerate(dst.tolist()):
        expected[:, i] += alpha[:, k, :, :, None] * x_j[:, k].view(2, 3, 2, 3)
    torch.testing.assert_close(out, expected.view(2, 4, 3, 6), rtol=0, atol=1e-14)
    assert (out[:, 3] == 0).all()


def test_edge_softmax_gradient_by_gradcheck():
    dst = torch.tensor([0, 2, 2, 1, 0, 2, 3, 0])
    score = torch.randn(2, 8, 3, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: _edge_softmax(s, dst, 4), (score.requires_grad_(),))


def test_keep_mask_is_dropouts_mask_and_seeded():
    # 0 with probability p, else 1, like F.dropout's mask before its 1 / (1 - p); reproducible from torch's seed.
    like = torch.empty(400, 1000, dtype=torch.float64)
    torch.manual_seed(0)
    mask = _keep_mask(like, 0.1)
    assert mask.shape == like.shape and mask.dtype == like.dtype
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    dropped = float((mask == 0).double().mean())
    assert abs(dropped - 0.1) < 4 * (0.1 * 0.9 / mask.numel()) ** 0.5  # within 4 standard errors
    torch.manual_seed(0)
    assert torch.equal(_keep_mask(like, 0.1), mask)
    assert not torch.equal(_keep_mask(like, 0.1), mask)
    assert float((_keep_mask(like, 0.5) == 0).double().mean()) == pytest.approx(0.5, abs=0.005)


def test_train_mode_dropout_is_seeded_and_off_in_eval():
    model = make_model(dropout=0.3)
    x, _ = windows(3, 4, 8, seed=6)
    ei = shop_edges()
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(model.train()(x, ei, return_attention=True))
    torch.testing.assert_close(outs[0].logits, outs[1].logits, rtol=0, atol=0)
    evaluated = model.eval()(x, ei, return_attention=True)
    assert not torch.allclose(outs[0].logits, evaluated.logits)
    # attention dropout: train-mode attention has zeros and 1/(1-p)-scaled weights; eval's sums to 1
    assert (outs[0].attention == 0).any() and outs[0].attention.max() > 1.0
    sums = torch.zeros(3, 4, 8, 2, dtype=torch.float64).index_add_(
        2, evaluated.attention_edge_index[1], evaluated.attention
    )
    torch.testing.assert_close(sums, torch.ones_like(sums))
