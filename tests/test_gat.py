"""The three GAT implementations, GATv2 and the model against torch_geometric, and each other."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import GATConv, GATv2Conv
from torch_geometric.utils import softmax as pyg_softmax

from tgad_lite.gat import (
    GAT, DenseGATLayer, GATv2Layer, NaiveGATLayer, SparseFeatures, SparseGATLayer,
    bernoulli_free_dropout, neighbourhood_softmax, receptive_field,
)
from tgad_lite.gat import dense, gatv2, naive, sparse

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
    ref_grads = torch.autograd.grad((ref ** 2).sum(), [x_ref, *conv.parameters()])
    for name, module in IMPLS.items():
        layer = module.from_pyg(conv)
        x_ours = x.clone().requires_grad_()
        out, (our_ei, alpha) = layer(x_ours, ei, return_attention=True)
        assert out.shape == ref.shape == (n, 15 if concat else 5)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-10, msg=f"{name} output")
        assert torch.equal(our_ei, ref_ei), name
        torch.testing.assert_close(alpha, ref_alpha, rtol=0, atol=1e-10, msg=f"{name} attention")
        grads = torch.autograd.grad((out ** 2).sum(), [x_ours, *layer.parameters()])
        assert len(grads) == len(ref_grads)
        for g_ours, g_ref in zip(grads, ref_grads):
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


def test_gatv2_matches_pyg_and_differs_from_gat():
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
    assert isinstance(GATv2Layer(5, 4), torch.nn.Module)


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
        for a, b in zip(torch.autograd.grad(out.square().sum(), list(layer.parameters())), g_dense):
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
            for a, b in zip(g_pruned, g_full):
                torch.testing.assert_close(a, b)


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
    assert isinstance(DenseGATLayer(3, 2), torch.nn.Module)
    with pytest.raises(ValueError, match="beyond the first 2"):
        SparseGATLayer(3, 2)(torch.randn(5, 3), torch.tensor([[0, 1], [1, 4]]), num_targets=2)
