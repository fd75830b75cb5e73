"""Profiling helpers on known workloads, and the benchmark's measurement logic on a tiny graph.

No absolute speed is asserted anywhere: timings depend on the machine and its load.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch
from _benchmarks import loaded_benchmark

from tgad_lite.gat import DenseGATLayer
from tgad_lite.profiling import (
    Timing,
    dense_attention_bytes,
    peak_memory,
    random_graph,
    time_call,
    time_interleaved,
    train_step_fn,
)

REPO = Path(__file__).resolve().parents[1]
MB = 1_000_000
FLOATS_PER_MB = MB // 4


def _floats(mb: int) -> torch.Tensor:
    return torch.ones(mb * FLOATS_PER_MB)  # ones, not empty: the pages are really written


# -- peak_memory ---------------------------------------------------------------------------
def test_peak_memory_counts_tensors_alive_together():
    def keep_both():
        a = _floats(4)
        b = _floats(8)
        return a, b

    assert peak_memory(keep_both) == pytest.approx(12 * MB, rel=0.1)


def test_peak_memory_does_not_count_freed_tensors():
    def free_then_allocate():
        a = _floats(4)
        del a
        b = _floats(8)
        return b

    assert peak_memory(free_then_allocate) == pytest.approx(8 * MB, rel=0.1)


def test_peak_memory_ignores_frees_of_older_tensors():
    # Freeing memory that existed before the call must not offset the call's own allocations,
    # including blocks allocated during an *earlier* peak_memory call (the CPU allocator still
    # reports those frees; a plain running sum would go down by 4 MB here).
    held = {}

    def allocate_and_keep():
        held["old"] = _floats(4)

    peak_memory(allocate_and_keep, warmup=0)

    def release_old_then_allocate():
        held["old"] = None
        a = _floats(4)
        b = _floats(8)
        return a, b

    assert peak_memory(release_old_then_allocate, warmup=0) == pytest.approx(12 * MB, rel=0.1)


def test_peak_memory_includes_backward_and_kept_gradients():
    # leaf (4 MB) + leaf * 2 (4 MB) + the gradient written into leaf.grad (4 MB) alive at the end.
    def forward_backward():
        leaf = torch.ones(4 * FLOATS_PER_MB, requires_grad=True)
        out = leaf * 2
        out.sum().backward()
        return leaf, out

    assert peak_memory(forward_backward) == pytest.approx(12 * MB, rel=0.1)


def test_peak_memory_warmup_keeps_one_off_allocations_out():
    cache: list[torch.Tensor] = []

    def first_call_fills_a_cache():
        if not cache:
            cache.append(_floats(8))
        return _floats(2)

    assert peak_memory(first_call_fills_a_cache, warmup=0) == pytest.approx(10 * MB, rel=0.1)
    assert peak_memory(first_call_fills_a_cache, warmup=1) == pytest.approx(2 * MB, rel=0.1)


def test_peak_memory_rejects_unknown_device():
    with pytest.raises(ValueError, match="cpu' or 'cuda"):
        peak_memory(lambda: None, device="meta", warmup=0)


# -- timing --------------------------------------------------------------------------------
def test_time_call_reports_positive_median_iqr_and_n():
    calls = []

    def sleep_2ms():
        calls.append(1)
        time.sleep(0.002)

    t = time_call(sleep_2ms, warmup=2, repeats=5)
    assert t.n == 5 and len(t.samples_ms) == 5 and len(calls) == 7  # warm-up calls are not timed
    assert t.median_ms >= 2.0  # sleep never returns early
    assert 0.0 <= t.iqr_ms and t.q1_ms <= t.median_ms <= t.q3_ms
    assert "ms" in str(t) and "n=5" in str(t)


def test_time_call_min_time_adds_samples():
    t = time_call(lambda: time.sleep(0.001), warmup=0, repeats=2, min_time_s=0.03)
    assert t.n > 2 and sum(t.samples_ms) >= 30.0


def test_timing_quartiles_from_known_samples():
    t = Timing.from_samples([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (t.median_ms, t.q1_ms, t.q3_ms, t.iqr_ms, t.n) == (3.0, 2.0, 4.0, 2.0, 5)
    with pytest.raises(ValueError):
        Timing.from_samples([])


def test_time_interleaved_alternates_and_lets_slow_calls_stop_early():
    order = []
    fns = {"fast": lambda: order.append("fast"), "slow": lambda: (order.append("slow"), time.sleep(0.02))}
    timings = time_interleaved(fns, warmup=1, repeats=4, max_time_s=0.03)
    assert order[:2] == ["fast", "slow"]  # warm-up round
    assert order[2:6] == ["fast", "slow", "fast", "slow"]  # A B A B while both run
    assert timings["fast"].n == 4
    assert 1 <= timings["slow"].n < 4  # stopped by max_time_s
    assert timings["slow"].median_ms > timings["fast"].median_ms


def test_time_interleaved_rejects_bad_arguments():
    with pytest.raises(ValueError):
        time_interleaved({}, repeats=1)
    with pytest.raises(ValueError):
        time_call(lambda: None, repeats=0)


# -- random_graph --------------------------------------------------------------------------
def test_random_graph_is_simple_undirected_coalesced_and_seeded():
    x, ei = random_graph(300, 4, 16, seed=3)
    n = 300
    assert x.shape == (n, 16) and ei.dtype == torch.long
    assert ei.size(1) == 1200  # 300 nodes x average degree 4, both directions counted
    assert bool((ei[0] != ei[1]).all())  # no self loops
    keys = ei[0] * n + ei[1]
    assert bool((keys[1:] > keys[:-1]).all())  # sorted, no duplicates
    reverse = torch.sort(ei[1] * n + ei[0]).values
    assert torch.equal(keys, reverse)  # every edge also runs the other way
    x2, ei2 = random_graph(300, 4, 16, seed=3)
    assert torch.equal(x, x2) and torch.equal(ei, ei2)
    x3, ei3 = random_graph(300, 4, 16, seed=4)
    assert not torch.equal(ei, ei3) and not torch.equal(x, x3)


def test_random_graph_leaves_global_rng_alone_and_checks_input():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    random_graph(50, 3, 4, seed=1)
    assert torch.equal(torch.rand(3), expected)
    with pytest.raises(ValueError, match="more edges"):
        random_graph(5, 10, 4, seed=0)


# -- dense_attention_bytes -----------------------------------------------------------------
def test_dense_attention_bytes_hand_computed_values():
    # N = 100, H = 1: six float32 [1, 100, 100] tensors (6 x 40,000 B) + two bool [100, 100] masks (2 x 10,000 B).
    assert dense_attention_bytes(100, 1) == 260_000
    # Cora with the paper's 8 heads: 1.42 GB, which is why the dense layer is only for small graphs.
    assert dense_attention_bytes(2708, 8) == 1_422_653_216
    assert dense_attention_bytes(200, 8) == 4 * dense_attention_bytes(100, 8)  # quadratic in N
    assert dense_attention_bytes(0, 8) == 0
    with pytest.raises(ValueError):
        dense_attention_bytes(10, 0)


@pytest.mark.parametrize("heads", [1, 8])
def test_dense_attention_bytes_predicts_a_dense_layers_peak(heads):
    n = 400
    x, ei = random_graph(n, 4, 16, seed=0)
    layer = DenseGATLayer(16, 8, heads=heads, dropout=0.6, input_dropout=0.6)

    def step():
        layer.zero_grad(set_to_none=True)
        layer(x, ei).sum().backward()

    measured = peak_memory(step)
    assert measured == pytest.approx(dense_attention_bytes(n, heads), rel=0.1)


# -- train_step_fn -------------------------------------------------------------------------
class _IgnoresGraph(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(5, 3)

    def forward(self, x, edge_index):
        return self.lin(x)


def test_train_step_fn_trains_on_the_targets_only():
    torch.manual_seed(0)
    n = 40
    x = torch.randn(n, 5)
    y = torch.randint(3, (n,))
    targets = torch.arange(10)
    model = _IgnoresGraph()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    step = train_step_fn(model, x, torch.empty(2, 0, dtype=torch.long), targets, y, opt)
    losses = [step() for _ in range(30)]
    assert all(isinstance(v, float) for v in losses)
    assert losses[-1] < losses[0]
    with torch.no_grad():  # the loss is the targets' cross-entropy (one step behind the weights)
        now = torch.nn.functional.cross_entropy(model(x[targets], None), y[targets]).item()
        everyone = torch.nn.functional.cross_entropy(model(x, None), y).item()
    assert now <= losses[-1] + 1e-6
    assert now < everyone  # fitted to the 10 targets, not to the other 30 random labels
    with pytest.raises(ValueError, match="rows"):
        train_step_fn(model, x, None, torch.tensor([n]), y, opt)
    with pytest.raises(ValueError, match="mask"):
        train_step_fn(model, x, None, torch.ones(n + 1, dtype=torch.bool), y, opt)


# -- the benchmark's logic -----------------------------------------------------------------
@pytest.fixture(scope="module")
def bench():
    with loaded_benchmark("gat_layers.py", "gat_layers_bench") as module:
        yield module


def test_benchmark_measures_rows_on_a_small_graph(bench):
    x, ei = random_graph(200, 4, 32, seed=0)
    budget = dense_attention_bytes(200, 8)  # just enough: dense runs
    cases = bench.random_cases(x, ei, dense_budget_bytes=budget)
    rows = bench.measure("tiny", 200, ei.size(1), cases, warmup=0, repeats=1)
    assert [r.impl for r in rows] == ["pyg", "dense", "sparse"]
    assert rows[0].ms_ratio == 1.0 and rows[0].mem_ratio == 1.0
    for r in rows:
        assert r.ms > 0 and r.n == 1 and r.peak_mb > 0
    by = {r.impl: r for r in rows}
    assert by["dense"].mem_ratio > 5  # O(H N^2) scores against O(E)
    table = bench.format_table(rows)
    assert "tiny: 200 nodes" in table and all(r.impl in table for r in rows)


def test_benchmark_ratios_from_known_timings_and_peaks(bench, monkeypatch):
    # Fixed measurements in, hand-computed ratios out: 6 / 4 = 1.5, 1 / 4 = 0.25; 30 / 10 MB = 3, 5 / 10 = 0.5.
    ms = {"pyg": 4.0, "dense": 6.0, "sparse": 1.0}
    peaks = {"pyg": 10_000_000, "dense": 30_000_000, "sparse": 5_000_000}
    fns = {impl: (lambda impl=impl: impl) for impl in ms}
    monkeypatch.setattr(
        bench, "time_interleaved", lambda regular, **kw: {k: Timing.from_samples([ms[k]]) for k in regular}
    )
    monkeypatch.setattr(bench, "peak_memory", lambda step, warmup: peaks[step()])
    cases = [bench.Case(impl, fn) for impl, fn in fns.items()]
    rows = bench.measure("fixed", 10, 20, cases, warmup=0, repeats=1)
    assert [(r.impl, r.ms_ratio, r.mem_ratio, r.peak_mb) for r in rows] == [
        ("pyg", 1.0, 1.0, 10.0),
        ("dense", 1.5, 3.0, 30.0),
        ("sparse", 0.25, 0.5, 5.0),
    ]


def test_benchmark_skips_dense_over_budget_with_a_reason(bench):
    x, ei = random_graph(200, 4, 32, seed=0)
    cases = bench.random_cases(x, ei, dense_budget_bytes=dense_attention_bytes(200, 8) - 1)
    rows = bench.measure("tiny", 200, ei.size(1), cases, warmup=0, repeats=1, memory=False)
    dense = next(r for r in rows if r.impl == "dense")
    assert dense.ms is None and dense.ms_ratio is None and dense.n == 0
    assert "would need" in dense.note and "budget" in dense.note
    assert "would need" in bench.format_table(rows)


def test_benchmark_target_checks(bench):
    def row(impl, ratio):
        return bench.Row("Cora", 1, 1, impl, 1.0, 0.0, 1, 1.0, ratio, 1.0)

    checks = bench.check_targets(
        [row("pyg", 1.0), row("sparse+sparse-input", 0.15), row("sparse+sparse-input+receptive-field", 0.3)]
    )
    assert [c["status"] for c in checks] == ["PASS", "FAIL"]
    assert [c["status"] for c in bench.check_targets([])] == ["SKIPPED", "SKIPPED"]


def test_benchmark_main_prints_and_writes_json(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench.main(
        [
            "--no-cora",
            "--sizes",
            "120",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--min-time-s",
            "0",
            "--features",
            "8",
            "--json",
            str(out),
            "--strict",
        ]
    )
    assert code == 1  # --strict: the Cora targets were skipped, which counts as failing
    record = json.loads(out.read_text())
    assert {r["impl"] for r in record["rows"]} == {"pyg", "dense", "sparse"}
    assert record["system"]["torch_threads"] == torch.get_num_threads()
    assert [c["status"] for c in record["checks"]] == ["SKIPPED", "SKIPPED"]
    printed = capsys.readouterr().out
    assert "torch threads" in printed and "random N=120" in printed and "SKIPPED" in printed


def _stderr_of(code: str) -> str:
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stderr


def test_native_stderr_filter_drops_profiler_noise_and_keeps_everything_else():
    code = (
        "import os\n"
        "from tgad_lite.profiling import _native_stderr_filtered\n"
        "with _native_stderr_filtered():\n"
        "    os.write(2, b'[W] Memory block of unknown size was allocated before the profiling started\\n')\n"
        "    os.write(2, b'USDT:2026 profiler_start\\n')\n"
        "    os.write(2, b'a real error\\n')\n"
        "os.write(2, b'after\\n')\n"
    )
    assert _stderr_of(code) == "a real error\nafter\n"


def test_stderr_is_restored_after_a_profiled_call_that_raises_and_nothing_is_lost():
    # fd 2 must point at the real stderr again (same file) after peak_memory, also when the call
    # raises; what the call wrote before raising and what other code writes afterwards both arrive.
    # A nested filter neither stacks a second redirection nor restores early. (One subprocess:
    # the real descriptor 2 is checked, not pytest's capture of it.)
    code = (
        "import os, sys\n"
        "from tgad_lite.profiling import _native_stderr_filtered, peak_memory\n"
        "before = os.fstat(2)\n"
        "def boom():\n"
        "    os.write(2, b'written by the call\\n')\n"
        "    raise RuntimeError('boom')\n"
        "try:\n"
        "    peak_memory(boom, warmup=0)\n"
        "except RuntimeError:\n"
        "    pass\n"
        "after = os.fstat(2)\n"
        "assert (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino), 'fd 2 not restored'\n"
        "os.write(2, b'native write after\\n')\n"
        "print('python write after', file=sys.stderr)\n"
        "with _native_stderr_filtered():\n"
        "    with _native_stderr_filtered():\n"
        "        os.write(2, b'inner\\n')\n"
        "    os.write(2, b'outer USDT: noise\\n')\n"
        "    os.write(2, b'outer\\n')\n"
        "assert os.fstat(2).st_ino == before.st_ino, 'fd 2 not restored after nesting'\n"
        "print('end', file=sys.stderr)\n"
    )
    assert _stderr_of(code) == ("written by the call\nnative write after\npython write after\ninner\nouter\nend\n")


def test_time_call_device_argument():
    t = time_call(lambda: None, warmup=0, repeats=2, device="cpu")  # the CPU needs no synchronising
    assert t.n == 2
    with pytest.raises(ValueError, match="a CUDA device"):
        time_call(lambda: None, repeats=1, device="meta")
