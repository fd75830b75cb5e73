"""The three GAT implementations, GATv2 and the model against torch_geometric, and each other."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import GATConv, GATv2Conv
from torch_geometric.utils import softmax as pyg_softmax

from tgad_lite.gat import (
    GAT,
    LAYERS,
    DenseGATLayer,
    GATv2Layer,
    NaiveGATLayer,
    SparseFeatures,
    SparseGATLayer,
    bernoulli_free_dropout,
    dense,
    gatv2,
    naive,
    neighbourhood_softmax,
    receptive_field,
    sparse,
)

IMPLS = {"naive": naive, "dense": dense, "sparse": sparse}


def random_graph(n: int, e: int, seed: int, *, self_loops: int = 0, isolated: int = 0):
    """Coalesced random directed graph on nodes ``isolated..n-1`` (the first ``isolated`` have no edges)."""
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(isolated, n, (2, e), generator=g)
    if self_loops:
        loops = torch.arange(isolated, isolated + self_loops).repeat(2, 1)
        ei = torch.cat([ei, loops], dim=1)
    return torch.unique(ei, dim=1)


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("concat", [True, False])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_implementations_match_gatconv_outputs_attention_and_gradients(concat, residual, seed):
    torch.manual_seed(seed)
    n, f = 25, 6
    ei = random_graph(n, 70, seed, self_loops=4, isolated=3)  # self loops in the input, isolated nodes
    x = torch.randn(n, f)
    conv = GATConv(f, 5, heads=3, concat=concat, residual=residual)
    x_ref = x.clone().requires_grad_()
    ref, (ref_ei, ref_alpha) = conv(x_ref, ei, return_attention_weights=True)
    ref_grads = torch.autograd.grad((ref**2).sum(), [x_ref, *conv.parameters()])
    for name, module in IMPLS.items():
        layer = module.from_pyg(conv)
        x_ours = x.clone().requires_grad_()
        out, (our_ei, alpha) = layer(x_ours, ei, return_attention=True)
        assert out.shape == ref.shape == (n, 15 if concat else 5)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-10, msg=f"{name} output")
        assert torch.equal(our_ei, ref_ei), name
        torch.testing.assert_close(alpha, ref_alpha, rtol=0, atol=1e-10, msg=f"{name} attention")
        grads = torch.autograd.grad((out**2).sum(), [x_ours, *layer.parameters()])
        assert len(grads) == len(ref_grads)
        for g_ours, g_ref in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-9, msg=f"{name} gradient")


def test_isolated_nodes_get_only_their_self_loop():
    n = 10
    ei = random_graph(n, 20, 3, isolated=2)
    layer = SparseGATLayer(4, 3, heads=2)
    x = torch.randn(n, 4)
    out, (att_ei, alpha) = layer(x, ei, return_attention=True)
    for node in (0, 1):
        into = att_ei[1] == node
        assert att_ei[0, into].tolist() == [node]
        torch.testing.assert_close(alpha[into], torch.ones(1, 2))
    # An isolated node's output is its own projection (+ zero bias): W h_i averaged over nothing else.
    torch.testing.assert_close(out[0], layer.lin(x[0]))


@pytest.mark.parametrize("name", ["naive", "dense", "sparse"])
def test_without_self_loops_isolated_nodes_are_zero_and_finite(name):
    n = 8
    ei = random_graph(n, 15, 5, isolated=2)
    layer = IMPLS[name].from_pyg(GATConv(3, 2, heads=2, add_self_loops=False, bias=False))
    x = torch.randn(n, 3, requires_grad=True)
    out = layer(x, ei)
    assert torch.equal(out[:2], torch.zeros(2, 4))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ["naive", "dense", "sparse"])
def test_attention_sums_to_one_over_each_neighbourhood(name):
    n = 30
    ei = random_graph(n, 90, 7)
    layer = IMPLS[name].from_pyg(GATConv(4, 3, heads=4))
    _, (att_ei, alpha) = layer(torch.randn(n, 4), ei, return_attention=True)
    assert alpha.shape == (att_ei.size(1), 4)
    assert (alpha >= 0).all()
    sums = torch.zeros(n, 4).index_add_(0, att_ei[1], alpha)
    torch.testing.assert_close(sums, torch.ones(n, 4))


def test_neighbourhood_softmax_matches_pyg_and_survives_huge_scores():
    ei = random_graph(40, 150, 11)
    scores = torch.randn(ei.size(1), 3) * 5
    torch.testing.assert_close(neighbourhood_softmax(scores, ei[1], 40), pyg_softmax(scores, ei[1], num_nodes=40))
    huge = neighbourhood_softmax(scores + 1e4, ei[1], 40)  # exp(1e4) overflows without the max shift
    assert torch.isfinite(huge).all()
    torch.testing.assert_close(huge, pyg_softmax(scores, ei[1], num_nodes=40))


def test_gatv2_matches_pyg_outputs_attention_and_parameter_names():
    n = 20
    ei = random_graph(n, 60, 2)
    x = torch.randn(n, 5)
    for share in (False, True):
        conv = GATv2Conv(5, 4, heads=2, share_weights=share)
        layer = gatv2.from_pyg(conv)
        torch.testing.assert_close(layer(x, ei), conv(x, ei), rtol=0, atol=1e-10)
        _, (att_ei, alpha) = layer(x, ei, return_attention=True)
        _, (ref_ei, ref_alpha) = conv(x, ei, return_attention_weights=True)
        assert torch.equal(att_ei, ref_ei)
        torch.testing.assert_close(alpha, ref_alpha, rtol=0, atol=1e-10)
        assert list(layer.state_dict()) == list(conv.state_dict())  # GATv2Conv's names, so weights copy


def test_gatv2_shares_the_base_settings_validation_and_sparse_input():
    for bad, match in (
        (dict(dropout=1.0), "dropout must be in"),
        (dict(input_dropout=-0.1), "input_dropout"),
        (dict(heads=0), "heads must be a positive int"),
        (dict(negative_slope=-1.0), "negative_slope"),
    ):
        with pytest.raises(ValueError, match=match):
            GATv2Layer(5, 4, **bad)
        with pytest.raises(ValueError, match=match):
            SparseGATLayer(5, 4, **bad)
    torch.manual_seed(0)
    x = (torch.rand(30, 12) < 0.2).double() * torch.rand(30, 12)
    ei = random_graph(30, 80, 6)
    layer = GATv2Layer(12, 3, heads=2).eval()
    torch.testing.assert_close(layer(SparseFeatures(x), ei), layer(x, ei))
    # Shared input dropout: in training mode the layer's input is dropped (outputs change with the draw).
    layer = GATv2Layer(12, 3, heads=2, input_dropout=0.5).train()
    assert not torch.equal(layer(x, ei), layer(x, ei))
    layer.eval()
    assert torch.equal(layer(x, ei), layer(x, ei))


def test_sparse_features_give_the_same_outputs_and_weight_gradients():
    torch.manual_seed(0)
    x = (torch.rand(50, 30) < 0.1).double() * torch.rand(50, 30)
    ei = random_graph(50, 200, 4)
    layer = SparseGATLayer(30, 4, heads=2, residual=True)
    sf = SparseFeatures(x)
    assert sf.nnz == int((x != 0).sum())
    torch.testing.assert_close(sf.to_dense(), x)
    dense_out = layer(x, ei)
    g_dense = torch.autograd.grad(dense_out.square().sum(), list(layer.parameters()))
    for x_sparse in (sf, x.to_sparse_coo(), x.to_sparse_csr()):
        out = layer(x_sparse, ei)
        torch.testing.assert_close(out, dense_out)
        for a, b in zip(torch.autograd.grad(out.square().sum(), list(layer.parameters())), g_dense, strict=True):
            torch.testing.assert_close(a, b)
    rows = torch.tensor([4, 0, 17])
    torch.testing.assert_close(sf.index_select(0, rows).to_dense(), x[rows])


def test_dropout_variants_keep_expectation_and_rate():
    torch.manual_seed(0)
    v = torch.ones(200_000)
    dropped = bernoulli_free_dropout(v, 0.6, True)
    assert abs((dropped == 0).double().mean().item() - 0.6) < 0.01
    assert abs(dropped.mean().item() - 1.0) < 0.02
    assert torch.equal(bernoulli_free_dropout(v, 0.6, False), v)
    sf = SparseFeatures(torch.eye(1000))
    kept = sf.dropout(0.6, True).values
    assert abs((kept == 0).double().mean().item() - 0.6) < 0.05
    assert set(kept.unique().tolist()) <= {0.0, 2.5}


def test_receptive_field_training_forward_is_exact():
    torch.manual_seed(0)
    n = 120
    ei = torch.unique(torch.cat([random_graph(n, 300, 9), random_graph(n, 300, 9).flip(0)], 1), dim=1)
    x = torch.randn(n, 10)
    targets = torch.tensor([3, 50, 7, 99])
    model = GAT(10, 3, hidden=4, heads=2, impl="sparse").eval()
    full = model(x, ei)[targets]
    rf = receptive_field(ei, targets, 2, n)
    assert torch.equal(rf.nodes[rf.targets], targets)
    assert rf.nodes.numel() < n and rf.num_edges[1] < rf.num_edges[0] < ei.size(1)
    assert rf.layer_targets[1] == targets.numel() < rf.layer_targets[0] < rf.nodes.numel()
    g_full = torch.autograd.grad(full.square().sum(), list(model.parameters()))
    for impl in ("sparse", "dense", "naive"):
        twin = GAT(10, 3, hidden=4, heads=2, impl=impl).eval()
        twin.load_state_dict(model.state_dict())
        for sizes in (None, rf.layer_targets):  # whole subgraph, or only the rows each layer needs
            pruned = twin(rf.select(x), rf.layer_edges, sizes)
            assert pruned.shape[0] == (rf.nodes.numel() if sizes is None else targets.numel())
            pruned = pruned[rf.targets]
            torch.testing.assert_close(pruned, full)
            g_pruned = torch.autograd.grad(pruned.square().sum(), list(twin.parameters()))
            for a, b in zip(g_pruned, g_full, strict=True):
                torch.testing.assert_close(a, b)
    v2 = GAT(10, 3, hidden=4, heads=2, impl="gatv2").eval()  # the other edge-list layer prunes rows too
    torch.testing.assert_close(v2(rf.select(x), rf.layer_edges, rf.layer_targets)[rf.targets], v2(x, ei)[targets])


def test_receptive_field_keeps_repeated_targets_once_in_first_occurrence_order():
    n = 60
    ei = random_graph(n, 200, 13)
    once = receptive_field(ei, torch.tensor([9, 4, 30]), 2, n)
    repeated = receptive_field(ei, torch.tensor([9, 4, 9, 30, 4, 4]), 2, n)
    assert repeated.nodes[repeated.targets].tolist() == [9, 4, 30]
    assert torch.equal(repeated.nodes, once.nodes) and repeated.layer_targets == once.layer_targets
    assert all(torch.equal(a, b) for a, b in zip(repeated.layer_edges, once.layer_edges, strict=True))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[[30, 4, 9]] = True
    assert receptive_field(ei, mask, 2, n).nodes[:3].tolist() == [4, 9, 30]  # a mask: ascending ids


def test_receptive_field_rejects_bad_targets_and_edges_clearly():
    n = 10
    ei = random_graph(n, 30, 14)
    with pytest.raises(ValueError, match=r"target ids must lie in 0\.\.9 .*got \[10\]"):
        receptive_field(ei, torch.tensor([1, 10]), 2, n)
    with pytest.raises(ValueError, match=r"got \[-1\]"):
        receptive_field(ei, torch.tensor([-1, 2]), 2, n)
    with pytest.raises(ValueError, match="one entry per node"):
        receptive_field(ei, torch.ones(n + 1, dtype=torch.bool), 2, n)
    with pytest.raises(ValueError, match="integers"):
        receptive_field(ei, torch.tensor([1.0, 2.0]), 2, n)
    with pytest.raises(ValueError, match="outside 0..7"):
        receptive_field(ei, torch.tensor([1]), 2, 8)
    with pytest.raises(ValueError, match="num_layers"):
        receptive_field(ei, torch.tensor([1]), 0, n)


def test_sparse_features_device_surface_and_bad_input():
    x = torch.eye(6, 4)
    sf = SparseFeatures(x)
    assert sf.device == torch.device("cpu") and sf.dtype == x.dtype
    assert sf.to("cpu") is sf and sf.cpu() is sf
    assert sf.index_select(0, torch.tensor([3, 0])).device == sf.device
    with pytest.raises(ValueError, match="SparseFeatures are on cpu but the weights are on meta"):
        sf.matmul(torch.empty(4, 2, device="meta"))
    with pytest.raises(ValueError, match="needs 4 rows"):
        sf.matmul(torch.ones(5, 2))
    with pytest.raises(ValueError, match=r"row ids must lie in 0\.\.5"):
        sf.index_select(0, torch.tensor([6]))
    with pytest.raises(ValueError, match=r"\[N, F\]"):
        SparseFeatures(torch.ones(3))


@pytest.mark.parametrize("impl", ["naive", "dense", "sparse", "gatv2", "pyg"])
def test_model_shapes_and_attention(impl):
    n = 15
    ei = random_graph(n, 40, 1)
    model = GAT(7, 4, hidden=3, heads=2, impl=impl).eval()
    assert model(torch.randn(n, 7), ei).shape == (n, 4)
    if impl != "pyg":
        out, hidden, atts = model.forward_with_attention(torch.randn(n, 7), ei)
        assert out.shape == (n, 4) and hidden.shape == (n, 6)
        assert [a[1].shape[1] for a in atts] == [2, 1]


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="unknown GAT implementation"):
        GAT(3, 2, impl="fast")
    with pytest.raises(ValueError, match="dropout must be in"):
        SparseGATLayer(3, 2, dropout=1.0)
    with pytest.raises(ValueError, match="only 5 rows"):
        SparseGATLayer(3, 2)(torch.randn(5, 3), torch.tensor([[0, 9], [1, 2]]))
    with pytest.raises(ValueError, match="bipartite"):
        NaiveGATLayer.from_pyg(GATConv((3, 4), 2))
    with pytest.raises(ValueError, match="beyond the first 2"):
        SparseGATLayer(3, 2)(torch.randn(5, 3), torch.tensor([[0, 1], [1, 4]]), num_targets=2)
    with pytest.raises(ValueError, match=r"\[2, E\] tensor"):
        DenseGATLayer(3, 2)(torch.randn(5, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer node ids"):
        NaiveGATLayer(3, 2)(torch.randn(5, 3), torch.tensor([[0.0, 1.0], [1.0, 2.0]]))
    # A device mismatch is named before any kernel runs (the meta device stands in for a GPU here).
    with pytest.raises(ValueError, match="x is on cpu but edge_index on meta"):
        SparseGATLayer(3, 2)(torch.randn(5, 3), torch.zeros(2, 4, dtype=torch.long, device="meta"))
    with pytest.raises(ValueError, match="dropout must be in"):
        GAT(3, 2, impl="pyg", dropout=1.0)


@pytest.mark.parametrize("name", ["naive", "dense", "sparse"])
def test_every_layer_accepts_sparse_features(name):
    torch.manual_seed(0)
    x = (torch.rand(40, 20) < 0.15).double() * torch.rand(40, 20)
    ei = random_graph(40, 120, 8)
    layer = IMPLS[name].from_pyg(GATConv(20, 3, heads=2, residual=True))
    out, (att_ei, alpha) = layer(SparseFeatures(x), ei, return_attention=True)
    ref, (ref_ei, ref_alpha) = layer(x, ei, return_attention=True)
    torch.testing.assert_close(out, ref)
    assert torch.equal(att_ei, ref_ei)
    torch.testing.assert_close(alpha, ref_alpha)
    grads = torch.autograd.grad(out.square().sum(), list(layer.parameters()))
    ref_grads = torch.autograd.grad(layer(x, ei).square().sum(), list(layer.parameters()))
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("impl", ["naive", "dense", "sparse", "gatv2", "pyg"])
def test_num_targets_gives_the_targets_rows_and_attention_in_every_layer(impl):
    torch.manual_seed(0)
    n, t = 20, 6
    ei = random_graph(n, 60, 12)
    ei = ei[:, ei[1] < t]  # every edge points into the first t nodes, as in a receptive field's layer
    layer = LAYERS[impl](5, 3, heads=2).eval()
    x = torch.randn(n, 5)
    full, (full_ei, full_alpha) = layer(x, ei, return_attention=True)
    out, (att_ei, alpha) = layer(x, ei, return_attention=True, num_targets=t)
    assert out.shape == (t, 6)
    torch.testing.assert_close(out, full[:t])
    torch.testing.assert_close(layer(x, ei, num_targets=t), full[:t])
    into = full_ei[1] < t  # the full run also has self loops of the other n - t nodes
    assert att_ei[1].max() < t and int(into.sum()) == att_ei.size(1) < full_ei.size(1)
    order = torch.argsort(att_ei[0] * n + att_ei[1])
    ref_order = torch.argsort(full_ei[0, into] * n + full_ei[1, into])
    assert torch.equal(att_ei[:, order], full_ei[:, into][:, ref_order])
    torch.testing.assert_close(alpha[order], full_alpha[into][ref_order])
