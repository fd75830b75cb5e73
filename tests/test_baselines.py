"""MLP and GCN baselines: shapes, sparse input, that they learn, and that only GCN reads the graph."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tgad_lite.gat import SparseFeatures
from tgad_lite.gat.baselines import GCN, MLP
from tgad_lite.train import train_node_classifier

MODELS = {"mlp": MLP, "gcn": GCN}


def path_graph(n: int) -> torch.Tensor:
    """Undirected path 0 - 1 - ... - n-1 as ``[2, 2(n-1)]`` (both directions)."""
    a = torch.arange(n - 1)
    return torch.cat([torch.stack([a, a + 1]), torch.stack([a + 1, a])], dim=1)


def bag_of_words(n: int, f: int, seed: int) -> torch.Tensor:
    """``[n, f]`` non-negative features, about 80% zeros, like Cora's."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, f, generator=g) < 0.2).float() * torch.rand(n, f, generator=g)


def two_communities(n_per: int = 40, f: int = 12, seed: int = 0):
    """Two classes; each node linked to 4 random nodes of its own class; features weakly tell the class."""
    g = torch.Generator().manual_seed(seed)
    n = 2 * n_per
    y = torch.arange(n) // n_per
    src = torch.arange(n).repeat_interleave(4)
    dst = (y[src] * n_per + torch.randint(0, n_per, (src.numel(),), generator=g)) % n
    edge_index = torch.unique(torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1), dim=1)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    x = torch.randn(n, f, generator=g)
    x[:, 0] += 0.8 * (2 * y.float() - 1)  # a weak class signal in one feature
    perm = torch.randperm(n, generator=g)
    train, val, test = (torch.zeros(n, dtype=torch.bool) for _ in range(3))
    train[perm[:20]], val[perm[20:40]], test[perm[40:]] = True, True, True
    return x, edge_index, y, train, val, test


@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_have_one_row_per_node_and_one_column_per_class(name):
    torch.manual_seed(0)
    model = MODELS[name](9, 4)
    out = model(bag_of_words(7, 9, 0), path_graph(7))
    assert out.shape == (7, 4) and out.dtype == torch.float32


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sparse_input_gives_the_dense_result(name):
    torch.manual_seed(0)
    model = MODELS[name](9, 4).eval()
    x, ei = bag_of_words(11, 9, 1), path_graph(11)
    dense = model(x, ei)
    torch.testing.assert_close(model(SparseFeatures(x), ei), dense, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(x.to_sparse_coo(), ei), dense, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dropout_acts_in_training_only(name):
    torch.manual_seed(0)
    model = MODELS[name](9, 4, dropout=0.5)
    x, ei = SparseFeatures(bag_of_words(10, 9, 2)), path_graph(10)
    model.train()
    assert not torch.equal(model(x, ei), model(x, ei))  # fresh masks each call
    model.eval()
    assert torch.equal(model(x, ei), model(x, ei))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_lowers_the_loss_on_a_toy_graph(name):
    torch.manual_seed(0)
    x, ei, y, train, *_ = two_communities()
    model = MODELS[name](x.size(1), 2, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(model(x, ei)[train], y[train])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_gcn_output_depends_on_the_edges_and_mlp_does_not():
    torch.manual_seed(0)
    x, ei = bag_of_words(8, 5, 3), path_graph(8)
    cut = ei[:, ~(((ei[0] == 0) & (ei[1] == 1)) | ((ei[0] == 1) & (ei[1] == 0)))]  # remove the edge 0 - 1
    gcn, mlp = GCN(5, 3).eval(), MLP(5, 3).eval()
    with torch.no_grad():
        g_full, g_cut = gcn(x, ei), gcn(x, cut)
        assert not torch.allclose(g_full[0], g_cut[0])  # node 0 lost its only neighbour
        # Two layers see two hops: nodes 4.. are more than two hops from the changed degrees of 0 and 1.
        torch.testing.assert_close(g_full[4:], g_cut[4:])
        torch.testing.assert_close(mlp(x, ei), mlp(x, cut))
        torch.testing.assert_close(mlp(x, ei), mlp(x))  # the MLP needs no graph at all


def test_gcn_uses_neighbours_to_beat_the_mlp_on_a_homophilous_graph():
    # Features only weakly tell the class; same-class neighbours average the noise away.
    x, ei, y, train, val, test = two_communities()
    acc = {}
    for name, cls in MODELS.items():
        torch.manual_seed(0)
        res = train_node_classifier(
            cls(x.size(1), 2), x, ei, y, train, val, test, lr=0.01, max_epochs=200, patience=50, progress=False
        )
        acc[name] = res.test_acc
    assert acc["gcn"] >= 0.9
    assert acc["gcn"] > acc["mlp"] + 0.1


def test_bad_settings_and_inputs_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        MLP(4, 2, dropout=1.0)
    with pytest.raises(ValueError, match="hidden must be a positive int"):
        GCN(4, 2, hidden=0)
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        MLP(0, 2)
    with pytest.raises(ValueError, match=r"x must be \[N, 4\].*got shape \(3, 5\)"):
        MLP(4, 2)(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="GCN needs the graph.*use MLP"):
        GCN(4, 2)(torch.zeros(3, 4), None)
    with pytest.raises(TypeError, match="tensor"):
        MLP(4, 2)([[0.0] * 4])


@pytest.mark.cuda
@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason=f"needs a CUDA GPU: torch {torch.__version__} sees none (CUDA build: {torch.version.cuda or 'none'})",
)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_baselines_on_cuda_match_the_cpu_and_train(name):
    torch.manual_seed(0)
    cpu_model = MODELS[name](9, 4).double().eval()
    gpu_model = MODELS[name](9, 4).double().eval()
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.cuda()
    x, ei = bag_of_words(30, 9, 4).double(), path_graph(30)
    expected = cpu_model(SparseFeatures(x), ei)
    got = gpu_model(SparseFeatures(x).to("cuda"), ei.cuda())
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-10, atol=1e-12)
    # It learns there too: the toy problem of test_training_lowers_the_loss_on_a_toy_graph, on the GPU.
    x, ei, y, train, *_ = (t.cuda() for t in two_communities())
    model = MODELS[name](x.size(1), 2, dropout=0.0).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(model(SparseFeatures(x), ei)[train], y[train])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
