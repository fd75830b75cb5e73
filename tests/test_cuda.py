"""The GPU path end to end: layers against GATConv, SparseFeatures, receptive field, checkpoints, Cora.

Every test here needs CUDA and is skipped, with the reason, where ``torch.cuda.is_available()`` is
False (a CPU-only torch build, no driver, or no GPU). Run them with ``pytest -m cuda``; together
they take seconds on a GPU. Comparisons run in float64, where GPU and CPU kernels agree to ~1e-12.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.nn import GATConv, GATv2Conv

from tgad_lite.gat import (
    GAT,
    DenseGATLayer,
    GATv2Layer,
    NaiveGATLayer,
    SparseFeatures,
    SparseGATLayer,
    dense,
    gatv2,
    naive,
    receptive_field,
    sparse,
)
from tgad_lite.profiling import peak_memory, time_call
from tgad_lite.repro import determinism_state, restore_determinism
from tgad_lite.train import load_checkpoint, save_checkpoint

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason=f"needs a CUDA GPU: torch {torch.__version__} sees none "
        f"(CUDA build: {torch.version.cuda or 'none, a CPU-only build'})",
    ),
]

DEVICE = torch.device("cuda")
IMPLS = {"naive": naive, "dense": dense, "sparse": sparse}
LAYER_CLASSES = {"naive": NaiveGATLayer, "dense": DenseGATLayer, "sparse": SparseGATLayer, "gatv2": GATv2Layer}


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def random_graph(n: int, e: int, seed: int, *, isolated: int = 0, device=DEVICE) -> torch.Tensor:
    """Coalesced random directed graph on nodes ``isolated..n-1``, on ``device``."""
    g = torch.Generator().manual_seed(seed)
    return torch.unique(torch.randint(isolated, n, (2, e), generator=g), dim=1).to(device)


def sparse_x(n: int, f: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, f, generator=g) < 0.15).double() * torch.rand(n, f, generator=g)).to(DEVICE)


@pytest.mark.parametrize("concat", [True, False])
def test_layers_match_gatconv_on_cuda(concat):
    torch.manual_seed(0)
    n, f = 25, 6  # small: the naive layer loops over nodes in Python
    ei = random_graph(n, 70, 0, isolated=3)
    x = torch.randn(n, f, device=DEVICE)
    conv = GATConv(f, 5, heads=3, concat=concat, residual=True).to(DEVICE)
    x_ref = x.clone().requires_grad_()
    ref, (ref_ei, ref_alpha) = conv(x_ref, ei, return_attention_weights=True)
    ref_grads = torch.autograd.grad(ref.square().sum(), [x_ref, *conv.parameters()])
    for name, module in IMPLS.items():
        layer = module.from_pyg(conv)
        assert {p.device.type for p in layer.parameters()} == {"cuda"}
        x_ours = x.clone().requires_grad_()
        out, (our_ei, alpha) = layer(x_ours, ei, return_attention=True)
        assert out.device.type == alpha.device.type == our_ei.device.type == "cuda"
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-10, msg=f"{name} output")
        assert torch.equal(our_ei, ref_ei), name
        torch.testing.assert_close(alpha, ref_alpha, rtol=0, atol=1e-10, msg=f"{name} attention")
        grads = torch.autograd.grad(out.square().sum(), [x_ours, *layer.parameters()])
        for g_ours, g_ref in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-9, msg=f"{name} gradient")


def test_gatv2_matches_gatv2conv_on_cuda():
    n = 40
    ei = random_graph(n, 150, 1)
    x = torch.randn(n, 5, device=DEVICE)
    conv = GATv2Conv(5, 4, heads=2).to(DEVICE)
    layer = gatv2.from_pyg(conv)
    out, (att_ei, alpha) = layer(x, ei, return_attention=True)
    ref, (ref_ei, ref_alpha) = conv(x, ei, return_attention_weights=True)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    assert torch.equal(att_ei, ref_ei)
    torch.testing.assert_close(alpha, ref_alpha, rtol=0, atol=1e-10)


def test_sparse_features_stay_on_cuda_and_match_dense_input():
    n, f = 60, 40
    x = sparse_x(n, f, 2)
    sf_cpu = SparseFeatures(x.cpu())
    sf = sf_cpu.to(DEVICE)
    assert sf.device.type == "cuda" and sf.to(DEVICE) is sf and sf.to("cpu").device.type == "cpu"
    assert SparseFeatures(x).device.type == "cuda"  # built from a CUDA tensor directly
    torch.testing.assert_close(sf.to_dense(), x)
    dropped = sf.dropout(0.5, True)
    assert dropped.device.type == "cuda" and dropped.values.device.type == "cuda"
    for rows in (torch.tensor([5, 0, 33]), torch.tensor([5, 0, 33], device=DEVICE)):  # rows on either device
        picked = sf.index_select(0, rows)
        assert picked.device.type == "cuda"
        torch.testing.assert_close(picked.to_dense(), x[rows.cpu()])
    ei = random_graph(n, 200, 3)
    for name, cls in LAYER_CLASSES.items():
        layer = cls(f, 4, heads=2, residual=True) if name != "gatv2" else cls(f, 4, heads=2)
        layer = layer.to(DEVICE).eval()
        out = layer(sf, ei)
        assert out.device.type == "cuda", name
        torch.testing.assert_close(out, layer(x, ei), msg=name)
        g_sparse = torch.autograd.grad(layer(sf, ei).square().sum(), list(layer.parameters()))
        g_dense = torch.autograd.grad(layer(x, ei).square().sum(), list(layer.parameters()))
        for a, b in zip(g_sparse, g_dense, strict=True):
            torch.testing.assert_close(a, b, msg=name)
    with pytest.raises(ValueError, match="SparseFeatures are on cpu but the weights are on cuda"):
        SparseGATLayer(f, 4).to(DEVICE)(sf_cpu, ei.cpu())


def test_receptive_field_on_cuda_equals_the_full_computation():
    torch.manual_seed(0)
    n = 150
    ei = random_graph(n, 400, 4)
    ei = torch.unique(torch.cat([ei, ei.flip(0)], dim=1), dim=1)
    x = torch.randn(n, 10, device=DEVICE)
    targets = torch.tensor([3, 50, 7, 99, 3])  # on the CPU, with a repeat: kept once
    rf = receptive_field(ei, targets, 2, n)
    assert {t.device.type for t in (rf.nodes, rf.targets, *rf.layer_edges)} == {"cuda"}
    assert rf.nodes[rf.targets].tolist() == [3, 50, 7, 99]
    assert torch.equal(receptive_field(ei, targets.to(DEVICE), 2, n).nodes, rf.nodes)
    mask = torch.zeros(n, dtype=torch.bool, device=DEVICE)
    mask[[3, 7, 50, 99]] = True
    assert sorted(receptive_field(ei, mask, 2, n).nodes.tolist()) == sorted(rf.nodes.tolist())
    for impl in ("sparse", "dense", "naive"):
        model = GAT(10, 3, hidden=4, heads=2, impl=impl).to(DEVICE).eval()
        full = model(x, ei)[rf.nodes[rf.targets]]
        pruned = model(rf.select(x), rf.layer_edges, rf.layer_targets)[rf.targets]
        assert pruned.device.type == "cuda"
        torch.testing.assert_close(pruned, full, msg=impl)
        g_full = torch.autograd.grad(full.square().sum(), list(model.parameters()))
        pruned = model(rf.select(x), rf.layer_edges, rf.layer_targets)[rf.targets]
        g_pruned = torch.autograd.grad(pruned.square().sum(), list(model.parameters()))
        for a, b in zip(g_pruned, g_full, strict=True):
            torch.testing.assert_close(a, b, msg=impl)


def test_checkpoint_saved_on_cuda_loads_on_cpu_and_back(tmp_path):
    config = {"in_channels": 6, "num_classes": 3, "hidden": 4, "heads": 2, "impl": "sparse"}

    def build():
        return GAT(6, 3, hidden=4, heads=2, impl="sparse")

    torch.manual_seed(0)
    on_gpu = build().to(DEVICE)
    path = save_checkpoint(tmp_path / "gpu.pt", on_gpu, config)
    on_cpu = build()
    load_checkpoint(path, on_cpu, config)  # default map_location: the CPU model's device
    for (k, a), b in zip(on_cpu.state_dict().items(), on_gpu.state_dict().values(), strict=True):
        assert a.device.type == "cpu" and torch.equal(a, b.cpu()), k
    torch.manual_seed(1)
    back = build().to(DEVICE)
    path = save_checkpoint(tmp_path / "cpu.pt", on_cpu, config)
    load_checkpoint(path, back, config)
    assert {p.device.type for p in back.parameters()} == {"cuda"}
    x, ei = torch.randn(9, 6, device=DEVICE), random_graph(9, 20, 5)
    torch.testing.assert_close(back.eval()(x, ei), on_gpu.eval()(x, ei))
    other = build().eval()
    load_checkpoint(tmp_path / "gpu.pt", other, config, map_location="cuda")  # read onto the GPU, copied in
    assert {p.device.type for p in other.parameters()} == {"cpu"}
    torch.testing.assert_close(other(x.cpu(), ei.cpu()), on_gpu(x, ei).cpu())


def test_seed_everything_makes_cublas_deterministic_in_a_fresh_process():
    # cuBLAS reads CUBLAS_WORKSPACE_CONFIG when CUDA starts: seed_everything must set it first, or
    # deterministic mode warns (here: raises) on the first matmul.
    code = (
        "import warnings, torch\n"
        "from tgad_lite.repro import seed_everything\n"
        "seed_everything(0)\n"
        "warnings.simplefilter('error')\n"
        "a = torch.randn(256, 256, device='cuda')\n"
        "print(float((a @ a).sum()) == float((a @ a).sum()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_profiling_helpers_synchronise_and_measure_cuda_memory():
    four_mb = 1_000_000  # float32 values
    peak = peak_memory(lambda: torch.ones(four_mb, device=DEVICE, dtype=torch.float32), device=DEVICE)
    assert peak == pytest.approx(4_000_000, rel=0.1)
    a = torch.randn(2048, 2048, device=DEVICE, dtype=torch.float32)
    t = time_call(lambda: a @ a, warmup=1, repeats=3, device=DEVICE)  # no .item(): the sync is the helper's
    assert t.n == 3 and t.median_ms > 0


@pytest.fixture
def keep_determinism():
    """seed_everything switches deterministic mode on for the process: switch it back afterwards."""
    state = determinism_state()
    yield
    restore_determinism(state)


def test_a_few_cora_epochs_on_cuda(data_mirror, monkeypatch, tmp_path, keep_determinism):
    data_dir = os.environ.get("TGAD_DATA_DIR")
    if data_mirror is not None:
        monkeypatch.setenv("TGAD_DATA_MIRROR", str(data_mirror))
        monkeypatch.setenv("TGAD_DATA_DIR", str(tmp_path))
    elif not (data_dir and (Path(data_dir) / "Cora" / "raw").is_dir()):
        pytest.skip("needs the real Cora raw files: set TGAD_DATA_MIRROR, or TGAD_DATA_DIR to a folder with Cora/raw")
    torch.set_default_dtype(torch.float32)  # the notebooks' precision
    from _cora import train_cora_briefly

    data, x, model, result = train_cora_briefly(DEVICE)
    # Chance is 1/7 (14%) and the majority class 32%; 60 epochs reach ~75-80% on the CPU too.
    assert result.test_acc > 0.65
    assert len(result.history.records) == 60 and result.history.best_epoch >= 1
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    # The dense layer on the same weights and SparseFeatures input gives the same logits.
    model.eval()
    twin = GAT(data.num_features, 7, impl="dense").to(DEVICE).eval()
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(twin(x, data.edge_index), model(x, data.edge_index), rtol=1e-4, atol=1e-4)
