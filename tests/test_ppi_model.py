"""The paper's PPI model (``tgad_lite.gat.ppi``), the multi-label step (``tgad_lite.train.multilabel``)
and the inductive split they are trained on.

The forward pass is checked against a hand-built dense computation and against PyG's ``GATConv``
with copied weights; the loss and micro-F1 against values worked out by hand; the split on the
PPI-format stand-in (no graph, and no node, of a validation or test graph reaches training).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GATConv

from tgad_lite.data import load_ppi, write_ppi_standin
from tgad_lite.gat import PPIGAT, SparseGATLayer
from tgad_lite.gat.ppi import SKIPS
from tgad_lite.repro import seed_everything
from tgad_lite.train import (
    evaluate_multilabel,
    micro_f1,
    multilabel_loss,
    predict_multilabel,
    train_multilabel,
)
from tgad_lite.train.multilabel import f1_counts, f1_from_counts

F_IN, LABELS = 7, 5


# Tiny models run fastest on one torch thread (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def small_graph(n: int, e: int, seed: int) -> Data:
    """A random undirected graph without self loops: ``x [n, F_IN]``, 0/1 ``y [n, LABELS]``."""
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randint(0, n, (2, e), generator=g)
    pairs = pairs[:, pairs[0] != pairs[1]]
    ei = torch.unique(torch.cat([pairs, pairs.flip(0)], dim=1), dim=1)
    x = torch.randn(n, F_IN, generator=g)
    y = (torch.rand(n, LABELS, generator=g) < 0.4).to(torch.get_default_dtype())
    return Data(x=x, edge_index=ei, y=y)


@pytest.fixture
def batch(float64) -> Batch:
    """Two graphs in one PyG batch, as the DataLoader builds them (node ids of graph 2 shifted)."""
    return Batch.from_data_list([small_graph(9, 20, 0), small_graph(12, 30, 1)])


def small_model(skip: str = "intermediate", seed: int = 0) -> PPIGAT:
    torch.manual_seed(seed)
    model = PPIGAT(F_IN, LABELS, hidden=4, heads=(3, 2, 4), skip=skip)
    # Non-zero biases, so a bias added in the wrong place shows.
    with torch.no_grad():
        for layer in model.layers:
            layer.bias.normal_()
    return model


def dense_layer(layer: SparseGATLayer, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    """One GAT layer by hand on the dense adjacency: scores, masked softmax, weighted sum per head."""
    n, heads, c = x.size(0), layer.heads, layer.out_channels
    adj = torch.zeros(n, n, dtype=torch.bool)
    adj[edge_index[1], edge_index[0]] = True  # adj[i, j]: j sends to i
    adj |= torch.eye(n, dtype=torch.bool)  # one self loop per node
    wh = (x @ layer.lin.weight.T).view(n, heads, c)  # [N, H, C]
    s_src = (wh * layer.att_src).sum(-1)  # [N, H]
    s_dst = (wh * layer.att_dst).sum(-1)
    e = F.leaky_relu(s_dst[:, None, :] + s_src[None, :, :], 0.2)  # [i, j, H]
    alpha = torch.softmax(e.masked_fill(~adj[:, :, None], float("-inf")), dim=1)
    out = torch.einsum("ijh,jhc->ihc", alpha, wh)  # [N, H, C]
    out = out.reshape(n, heads * c) if layer.concat else out.mean(dim=1)  # concat, or average the heads
    if layer.res is not None:
        out = out + x @ layer.res.weight.T  # the skip connection: a projection of the layer's input
    return out + layer.bias


def dense_model(model: PPIGAT, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    h = x
    for layer in model.layers[:-1]:
        h = F.elu(dense_layer(layer, h, edge_index))
    return dense_layer(model.layers[-1], h, edge_index)


# --- the model ----------------------------------------------------------------------------------


@pytest.mark.parametrize("skip", SKIPS)
def test_forward_matches_a_hand_built_dense_computation(batch, skip):
    model = small_model(skip)
    out = model(batch.x, batch.edge_index)
    assert out.shape == (batch.num_nodes, LABELS)
    torch.testing.assert_close(out, dense_model(model, batch.x, batch.edge_index), rtol=0, atol=1e-10)


def test_forward_matches_pyg_gatconv_with_copied_weights(batch):
    model = small_model("intermediate")
    h = batch.x
    for i, layer in enumerate(model.layers):
        conv = GATConv(
            layer.in_channels,
            layer.out_channels,
            heads=layer.heads,
            concat=layer.concat,
            residual=layer.res is not None,
        )
        conv.load_state_dict(layer.state_dict())  # same parameter names: lin, att_src, att_dst, res, bias
        h = conv(h, batch.edge_index)
        if i < len(model.layers) - 1:
            h = F.elu(h)
    torch.testing.assert_close(model(batch.x, batch.edge_index), h, rtol=0, atol=1e-10)


def test_output_heads_are_averaged_not_concatenated(batch):
    model = small_model()
    last = model.layers[-1]
    assert (last.heads, last.concat, last.total_out) == (4, False, LABELS)
    # The same layer with its heads concatenated gives [N, 4 * LABELS]; its per-head blocks averaged
    # (plus the bias, which the averaging layer adds once) are the model's logits.
    concat = SparseGATLayer(last.in_channels, LABELS, heads=4, concat=True, bias=False)
    concat.load_state_dict({k: v for k, v in last.state_dict().items() if k != "bias"})
    with torch.no_grad():
        h = batch.x
        for layer in model.layers[:-1]:
            h = F.elu(layer(h, batch.edge_index))
        per_head = concat(h, batch.edge_index).view(-1, 4, LABELS)
        out = model(batch.x, batch.edge_index)
    torch.testing.assert_close(out, per_head.mean(dim=1) + last.bias, rtol=0, atol=1e-12)
    assert not torch.allclose(out, per_head.sum(dim=1) + last.bias)


def test_skip_connection_sits_on_the_intermediate_layer_and_is_used(batch):
    assert [layer.res is not None for layer in small_model("intermediate").layers] == [False, True, False]
    assert [layer.res is not None for layer in small_model("all").layers] == [True, True, True]
    assert [layer.res is not None for layer in small_model("none").layers] == [False, False, False]
    model = small_model("intermediate")
    before = model(batch.x, batch.edge_index)
    with torch.no_grad():
        model.layers[1].res.weight.zero_()
    assert not torch.allclose(before, model(batch.x, batch.edge_index))


def test_graphs_in_one_batch_do_not_attend_to_each_other(batch):
    model = small_model()
    together = model(batch.x, batch.edge_index)
    for g in range(batch.num_graphs):
        alone = batch.get_example(g)
        rows = slice(int(batch.ptr[g]), int(batch.ptr[g + 1]))
        torch.testing.assert_close(together[rows], model(alone.x, alone.edge_index), rtol=0, atol=1e-12)


def test_forward_with_attention_returns_the_logits_and_each_layers_edges(batch):
    model = small_model()
    logits, hiddens, attention = model.forward_with_attention(batch.x, batch.edge_index)
    torch.testing.assert_close(logits, model(batch.x, batch.edge_index), rtol=0, atol=0)
    assert [h.shape[1] for h in hiddens] == [3 * 4, 2 * 4]
    n, e = batch.num_nodes, batch.edge_index.size(1)
    for (ei, alpha), heads in zip(attention, (3, 2, 4), strict=True):
        assert ei.shape == (2, e + n) and alpha.shape == (e + n, heads)  # one self loop per node appended
        torch.testing.assert_close(ei[:, :e], batch.edge_index, rtol=0, atol=0)
        sums = torch.zeros(n, heads).index_add_(0, ei[1], alpha)
        torch.testing.assert_close(sums, torch.ones(n, heads))


def test_paper_sizes_give_the_parameter_count_worked_out_by_hand():
    model = PPIGAT()  # 50 features, 121 labels, 256 per head, heads 4-4-6, skip on the middle layer
    layer1 = 50 * 1024 + 2 * 4 * 256 + 1024  # W, a_src and a_dst, bias
    layer2 = 1024 * 1024 + 2 * 4 * 256 + 1024 + 1024 * 1024  # ... and the skip projection
    layer3 = 1024 * 6 * 121 + 2 * 6 * 121 + 121  # 6 heads of 121, averaged: one bias of 121
    assert sum(p.numel() for p in model.parameters()) == layer1 + layer2 + layer3 == 2_899_493


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(heads=(4,)), "at least two layers"),
        (dict(heads=(4, 0, 6)), "positive ints"),
        (dict(heads=(4, 2.5, 6)), "positive ints"),
        (dict(skip="paper"), "intermediate|all|none"),
    ],
)
def test_bad_settings_are_refused_with_the_allowed_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PPIGAT(**kwargs)


# --- loss and micro-F1 --------------------------------------------------------------------------

Z = [[2.0, -1.0, 0.5], [-3.0, 1.0, -0.2]]
Y = [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]


def test_micro_f1_on_a_hand_worked_example():
    # Predictions (logit > 0): [[1, 0, 1], [0, 1, 0]]. TP: (0,0), (1,1); FP: (0,2); FN: (1,2).
    assert micro_f1(torch.tensor(Z), torch.tensor(Y)) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    counts = f1_counts(torch.tensor(Z), torch.tensor(Y))
    assert counts.tolist() == [2, 1, 1] and f1_from_counts(counts) == pytest.approx(2 / 3)
    # A logit of exactly 0 (probability 0.5) is not a positive prediction.
    assert micro_f1(np.array([[0.0, 1.0]]), np.array([[1, 1]])) == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))


def test_micro_f1_pools_counts_and_agrees_with_the_torch_counts():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(300, 20)), (rng.random((300, 20)) < 0.3).astype(np.int64)
    pred = z > 0
    tp, fp, fn = (pred & (y == 1)).sum(), (pred & (y == 0)).sum(), (~pred & (y == 1)).sum()
    assert micro_f1(z, y) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    # Pooled over two halves, the counts give the score of the whole, not the mean of the halves' scores.
    halves = f1_counts(torch.tensor(z[:100]), torch.tensor(y[:100])) + f1_counts(
        torch.tensor(z[100:]), torch.tensor(y[100:])
    )
    assert f1_from_counts(halves) == pytest.approx(micro_f1(z, y))
    # Every label predicted present: F1 = 2p / (1 + p), p the positive rate.
    p = y.mean()
    assert micro_f1(np.ones_like(z), y) == pytest.approx(2 * p / (1 + p))
    assert micro_f1(-np.ones((3, 2)), np.zeros((3, 2))) == 0.0  # nothing to score: 0, not a crash


def test_loss_on_a_hand_worked_example():
    # Per entry: log(1 + e^-z) for a positive label, log(1 + e^z) for a negative one; the mean of six.
    terms = [
        math.log1p(math.exp(-z)) if y else math.log1p(math.exp(z))
        for zr, yr in zip(Z, Y, strict=True)
        for z, y in zip(zr, yr, strict=True)
    ]
    assert multilabel_loss(torch.tensor(Z), torch.tensor(Y)).item() == pytest.approx(sum(terms) / 6, rel=1e-6)
    # Huge logits stay finite (no overflow in the sigmoid): a confident mistake costs about |z|.
    assert multilabel_loss(torch.tensor([[1000.0]]), torch.tensor([[0.0]])).item() == pytest.approx(1000.0)


@pytest.mark.parametrize(
    "logits, y, message",
    [
        ([[float("nan"), 1.0]], [[1, 0]], "NaN or inf"),
        ([[1.0, 1.0]], [[1, 2]], "0/1 labels"),
        ([[1.0, 1.0]], [[1, 0, 1]], "same shape"),
        ([1.0, 1.0], [1, 0], "same shape"),
    ],
)
def test_micro_f1_refuses_bad_input(logits, y, message):
    with pytest.raises(ValueError, match=message):
        micro_f1(np.array(logits), np.array(y))


# --- the inductive split and the training step ------------------------------------------------------


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("ppi")
    write_ppi_standin(root, nodes_per_graph=12, seed=3)
    return root, {split: load_ppi(split, root=root) for split in ("train", "val", "test")}


def test_no_graph_or_node_of_validation_or_test_reaches_training(standin):
    root, ds = standin
    raw = root / "PPI" / "raw"
    ids = {name: set(np.load(raw / f"{name}_graph_id.npy").tolist()) for name in ("train", "valid", "test")}
    assert ids["train"] and not (ids["train"] & ids["valid"]) and not (ids["train"] & ids["test"])
    assert not (ids["valid"] & ids["test"])
    held_out = {
        row.tobytes() for name in ("valid", "test") for row in np.load(raw / f"{name}_feats.npy").astype(np.float32)
    }
    train_rows = {row.tobytes() for row in np.load(raw / "train_feats.npy").astype(np.float32)}
    seen = 0
    for batch in DataLoader(ds["train"], batch_size=2, shuffle=True):
        rows = {row.tobytes() for row in batch.x.numpy().astype(np.float32)}
        assert rows <= train_rows and not (rows & held_out)
        seen += batch.num_nodes
    assert seen == len(train_rows) == sum(g.num_nodes for g in ds["train"])


def tiny_gat() -> PPIGAT:
    return PPIGAT(50, 121, hidden=8, heads=(2, 2, 2))


def test_training_never_reads_validation_labels_for_its_updates(standin):
    _, ds = standin
    scrambled = [g.clone() for g in ds["val"]]
    for g in scrambled:
        g.y = g.y[torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(0))].flip(1)
    histories = []
    for val in (list(ds["val"]), scrambled):
        seed_everything(0)
        result = train_multilabel(
            tiny_gat(),
            DataLoader(ds["train"], batch_size=2, shuffle=True),
            DataLoader(val, batch_size=2),
            max_epochs=4,
            patience=100,
            progress=False,
        )
        histories.append(result.history)
        # The restored weights are those of the best validation epoch, and score what was recorded for it.
        assert result.val_f1 == pytest.approx(max(result.history.column("val_f1")))
        assert result.history.best["val_f1"] == pytest.approx(result.val_f1)
    # Validation labels change only the validation scores (and so the kept epoch), never the updates.
    assert histories[0].column("train_loss") == histories[1].column("train_loss")
    assert histories[0].column("train_f1") == histories[1].column("train_f1")
    assert histories[0].column("val_f1") != histories[1].column("val_f1")


def test_evaluation_pools_every_node_whatever_the_batch_size(standin):
    _, ds = standin
    model = tiny_gat()
    logits, y = predict_multilabel(model, DataLoader(ds["test"], batch_size=1))
    assert logits.shape == y.shape == (sum(g.num_nodes for g in ds["test"]), 121)
    one = evaluate_multilabel(model, DataLoader(ds["test"], batch_size=1))
    two = evaluate_multilabel(model, DataLoader(ds["test"], batch_size=2))
    assert one["micro_f1"] == pytest.approx(two["micro_f1"]) == pytest.approx(micro_f1(logits, y))
    assert one["loss"] == pytest.approx(multilabel_loss(logits, y).item())
    with pytest.raises(ValueError, match="no batch"):
        predict_multilabel(model, [])


def test_training_learns_the_standin(standin):
    _, ds = standin
    seed_everything(0)
    model = tiny_gat()
    loader = DataLoader(ds["train"], batch_size=2, shuffle=True)
    before = evaluate_multilabel(model, DataLoader(ds["train"], batch_size=2))
    result = train_multilabel(model, loader, DataLoader(ds["val"], batch_size=2), max_epochs=8, progress=False)
    after = evaluate_multilabel(model, DataLoader(ds["train"], batch_size=2))
    assert after["loss"] < before["loss"] - 0.05
    assert result.history.best_epoch >= 1 and len(result.history.records) == 8
    assert {"train_loss", "train_f1", "val_loss", "val_f1", "lr", "seconds"} <= set(result.history.records[0])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: torch sees none")
def test_cuda_forward_matches_cpu(batch):
    model = small_model()
    cpu = model(batch.x, batch.edge_index)
    gpu = model.to("cuda")(batch.x.cuda(), batch.edge_index.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-10)
