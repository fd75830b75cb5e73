"""benchmarks/mtad_gat.py and its port-style reference (benchmarks/_port_style_mtad.py).

The reference must be the same model as ``MTADGATModel(gat="gatv2")``, only computed the expensive way,
or the benchmark's ratios would compare different things: scores, forward outputs, loss and gradients
are checked equal in float64. The benchmark itself is run once, tiny (``--quick``), for the structure
of what it prints and writes; no timing is asserted anywhere.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tgad_lite.mtad import MTADGATModel

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "benchmarks"
ATOL = 1e-10
SMALL = dict(window=12, gru_hidden=8, forecast_hidden=8, recon_hidden=8, latent_dim=6, kernel_size=3)
N_FEATURES = 5


def _load(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # registered first: the benchmark imports the reference by this name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def port():
    return _load("_port_style_mtad")


@pytest.fixture(scope="module")
def bench(port):
    return _load("mtad_gat")


def _pair(port, dropout: float = 0.3, chunk_size: int | None = None, seed: int = 0):
    """Ours (GATv2) and the port-style reference, float64, with identical weights."""
    torch.manual_seed(seed)
    ours = MTADGATModel(N_FEATURES, gat="gatv2", chunk_size=chunk_size, dropout=dropout, **SMALL).double()
    ref = port.port_style_model(N_FEATURES, dropout=dropout, **SMALL).double()
    ref.load_state_dict(ours.state_dict())
    for p in ref.feature_attention.parameters():  # bias starts at zero: make it count in the comparison
        torch.nn.init.normal_(p)
    ours.feature_attention.load_state_dict(ref.feature_attention.state_dict())
    torch.nn.init.normal_(ref.time_attention.bias)
    ours.time_attention.bias.data.copy_(ref.time_attention.bias.data)
    return ours, ref


def _windows(batch: int = 6, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, SMALL["window"], N_FEATURES, generator=gen, dtype=torch.float64)
    y = torch.randn(batch, N_FEATURES, generator=gen, dtype=torch.float64)
    return x, y


# -- the reference is the same model ---------------------------------------------------------------


def test_attention_input_is_every_ordered_pair_concatenated(port):
    v = torch.arange(2 * 3 * 4, dtype=torch.float64).view(2, 3, 4)  # [B=2, K=3, D=4]
    pairs = port.make_attention_input(v)
    assert pairs.shape == (2, 3, 3, 8)  # the [B, K, K, 2D] tensor the port materialises
    for b in range(2):
        for i in range(3):
            for j in range(3):
                assert torch.equal(pairs[b, i, j], torch.cat([v[b, i], v[b, j]]))  # query i first, then j


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_port_style_scores_equal_ours_gatv2(port, chunk_size):
    ours, ref = _pair(port, chunk_size=chunk_size)
    gen = torch.Generator().manual_seed(2)
    for name, k, d in (
        ("feature_attention", N_FEATURES, SMALL["window"]),
        ("time_attention", SMALL["window"], N_FEATURES),
    ):
        v = torch.randn(9, k, d, generator=gen, dtype=torch.float64)
        e_ours, e_ref = getattr(ours, name).scores(v), getattr(ref, name).scores(v)
        assert e_ref.shape == (9, k, k)
        torch.testing.assert_close(e_ref, e_ours, atol=ATOL, rtol=0)


def test_port_style_forward_and_score_equal_ours_in_eval(port):
    ours, ref = _pair(port)
    ours.eval(), ref.eval()
    x, y = _windows()
    out_ours, out_ref = ours(x), ref(x)
    assert out_ref.keys() == out_ours.keys()
    for key in out_ours:
        torch.testing.assert_close(out_ref[key], out_ours[key], atol=ATOL, rtol=0, msg=key)
    torch.testing.assert_close(ref.score(x, y, gamma=1.0), ours.score(x, y, gamma=1.0), atol=ATOL, rtol=0)


def test_port_style_loss_and_gradients_equal_ours_in_training(port):
    # Train mode, dropout 0.3 on the attention: with the same seed both draw the same masks and the same z.
    ours, ref = _pair(port, dropout=0.3)
    ours.train(), ref.train()
    x, y = _windows()
    torch.manual_seed(5)
    loss_ours = ours.loss(x, y)
    torch.manual_seed(5)
    loss_ref = ref.loss(x, y)
    for key in loss_ours:
        torch.testing.assert_close(loss_ref[key], loss_ours[key], atol=ATOL, rtol=0, msg=key)
    loss_ours["total"].backward()
    loss_ref["total"].backward()
    grads_ours = dict(ours.named_parameters())
    for name, p in ref.named_parameters():
        torch.testing.assert_close(p.grad, grads_ours[name].grad, atol=ATOL, rtol=0, msg=name)


def test_port_style_model_materialises_the_pairs_in_both_layers(port, monkeypatch):
    shapes = []
    real = port.make_attention_input

    def spy(v):
        out = real(v)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(port, "make_attention_input", spy)
    _, ref = _pair(port)
    x, y = _windows(batch=3)
    ref.loss(x, y)
    w, f = SMALL["window"], N_FEATURES
    # Feature layer: K = F nodes of D = W; time layer: K = W nodes of D = F.
    assert sorted(shapes) == sorted([(3, f, f, 2 * w), (3, w, w, 2 * f)])


def test_port_style_keeps_parameters_and_seeded_weights(port):
    torch.manual_seed(3)
    ours = MTADGATModel(N_FEATURES, gat="gatv2", **SMALL)
    torch.manual_seed(3)
    ref = port.port_style_model(N_FEATURES, **SMALL)
    assert isinstance(ref.time_attention, port.PortStyleTimeAttention)
    assert ref.state_dict().keys() == ours.state_dict().keys()
    for key, value in ours.state_dict().items():
        assert torch.equal(ref.state_dict()[key], value), key
    assert "port-style" in repr(ref.feature_attention)


def test_port_style_refuses_what_the_port_is_not(port):
    with pytest.raises(ValueError, match="gat='gatv2'"):
        port.to_port_style(MTADGATModel(N_FEATURES, gat="gat", **SMALL))
    with pytest.raises(ValueError, match="chunk_size"):
        port.port_style_model(N_FEATURES, chunk_size=4, **SMALL)
    with pytest.raises(TypeError, match="MTADGATModel"):
        port.to_port_style(torch.nn.Linear(2, 2))


# -- the benchmark's driver ------------------------------------------------------------------------


def test_only_picks_datasets_hidden_sizes_and_variants(bench):
    assert bench.parse_only(None) == (["msl", "smd"], None, ["gat", "gatv2", "port-style"])
    assert bench.parse_only("port-style, 300,MSL,gat,300") == (["msl"], [300], ["gat", "port-style"])
    with pytest.raises(ValueError, match="unknown item 'gatv3'.*e.g. --only msl,150,gat"):
        bench.parse_only("msl,gatv3")
    with pytest.raises(ValueError, match="unknown item '0'"):
        bench.parse_only("0")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--only", "msl,foo"], "unknown item 'foo'"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_options_are_refused_before_any_worker_starts(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_ratios_are_taken_against_the_reference_of_the_same_block(bench):
    def row(dataset, hidden, variant, train, score, peak):
        return bench.Row(dataset, 55, hidden, variant, 100, 256, train_wps=train, score_wps=score, peak_gb=peak)

    rows = [
        row("msl", 150, "gat", 500.0, 900.0, 0.9),
        row("msl", 150, "port-style", 25.0, 30.0, 7.2),
        row("msl", 300, "gat", 200.0, 400.0, 1.5),  # no reference in its block: no ratios
    ]
    bench.add_ratios(rows)
    assert (rows[0].train_ratio, rows[0].score_ratio, rows[0].mem_ratio) == pytest.approx((20.0, 30.0, 0.125))
    assert (rows[1].train_ratio, rows[1].score_ratio, rows[1].mem_ratio) == (1.0, 1.0, 1.0)
    assert rows[2].train_ratio is None and rows[2].mem_ratio is None
    lines = bench.target_lines(rows, "cpu")
    assert lines[0].startswith("training windows/s at MSL hidden 150, gat: 500.0 (target >= 470")
    assert "x20.0" in lines[0] and "23.6" in lines[0]
    assert lines[1].startswith("peak RSS at MSL hidden 150, gat: 0.90 GB (target <= 1 GB")
    assert "not measured in this run" in bench.target_lines(rows[2:], "cpu")[0]


@pytest.mark.parametrize(
    "code, reason",
    [
        ("import sys; sys.exit('RuntimeError: boom')", "worker failed, exit 1: RuntimeError: boom"),
        (
            "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
            "worker failed, killed by signal 9 (out of memory?)",
        ),
        ("print('no json here')", "worker failed, exit 0 without a result line: no output"),
    ],
)
def test_a_failed_worker_leaves_its_row_with_the_reason(bench, monkeypatch, code, reason):
    monkeypatch.setattr(bench, "worker_command", lambda *a: [sys.executable, "-c", code])
    args = bench.parse_args(["--quick"])
    row, machine = bench.measure_variant(args, "smd", 16, "gat")
    assert row.error == reason and machine == {}
    assert (row.n_features, row.train_wps, row.peak_gb) == (38, None, None)
    bench.add_ratios([row])  # no reference, no numbers: nothing to divide, nothing raised
    assert reason in bench.format_table([row])


@pytest.mark.parametrize("variant", ["gat", "gatv2", "port-style"])
def test_each_variant_builds_the_model_it_names(bench, port, variant):
    model = bench.build_model(variant, N_FEATURES, hidden=8, window=12, gatv2_chunk=3)
    assert isinstance(model, MTADGATModel) and model.mode == "both"
    assert {model.config[k] for k in ("gru_hidden", "forecast_hidden", "recon_hidden", "latent_dim")} == {8}
    expected = {"gat": ("gat", None), "gatv2": ("gatv2", 3), "port-style": ("gatv2", None)}[variant]
    assert (model.gat, model.config["chunk_size"]) == expected
    assert isinstance(model.time_attention, port.PortStyleTimeAttention) == (variant == "port-style")


def test_quick_run_prints_every_requested_row_with_ratios(tmp_path):
    # Two variants, not three: each worker is a fresh Python that imports torch (seconds), and ours vs the
    # reference is what the ratio columns need; test_each_variant_builds_the_model_it_names covers gatv2.
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(BENCH_DIR / "mtad_gat.py"), "--quick", "--only", "msl,gat,port-style"]
    proc = subprocess.run(
        [*cmd, "--threads", "1", "--json", str(out)], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    assert text.startswith("torch ") and "CPU count" in text and "torch threads 1" in text
    header = next(line for line in text.splitlines() if line.startswith("variant"))
    for column in ("train w/s", "score w/s", "peak GB", "train x", "score x", "mem x"):
        assert column in header
    table = {cells[0]: cells for cells in map(str.split, text.splitlines()) if cells[:1] in (["gat"], ["port-style"])}
    assert set(table) == {"gat", "port-style"}
    assert table["port-style"][4:7] == ["1.00", "1.00", "1.000"]  # the reference against itself
    for cells in table.values():
        assert all(float(c) > 0 for c in cells[1:7])  # speeds, peak and ratios all measured
    assert "training windows/s at MSL hidden 150, gat" in text and "target >= 470" in text

    record = json.loads(out.read_text())
    assert [(r["dataset"], r["hidden"], r["variant"]) for r in record["rows"]] == [
        ("msl", 16, "gat"),
        ("msl", 16, "port-style"),
    ]
    for r in record["rows"]:
        assert r["error"] == "" and r["window"] == 20 and r["batch"] == 8 and r["peak_measure"] == "peak RSS"
        assert r["train_wps"] == pytest.approx(r["batch"] / r["train_step_s"])
    assert record["system"]["torch_threads"] == 1
