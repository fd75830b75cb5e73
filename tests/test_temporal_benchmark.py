"""benchmarks/temporal_gat.py: the structure of a --quick run, speed-ups from known timings, target checks.

Nothing here asserts a speed: only that the benchmark measures what it says and reports it in order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from _benchmarks import loaded_benchmark

from tgad_lite.data.microservices import shop_graph
from tgad_lite.profiling import Timing

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    with loaded_benchmark("temporal_gat.py", "temporal_gat_bench") as module:
        yield module


def test_quick_run_prints_and_writes_every_table(bench, tmp_path, capsys):
    out = tmp_path / "temporal.json"
    threads = torch.get_num_threads()
    code = bench.main(["--quick", "--device", "cpu", "--loop-max-nodes", "20", "--json", str(out), "--strict"])
    assert code == 1  # --strict: the speed target is skipped in a --quick run, which counts as failing
    assert torch.get_num_threads() == threads  # no --threads: the process keeps its own
    record = json.loads(out.read_text())
    train = [r for r in record["rows"] if r["table"] == "train"]
    infer = [r for r in record["rows"] if r["table"] == "inference"]
    # Training: per graph the loop reference (speed-up 1 by definition), then the batched model twice.
    assert [(r["graph"], r["nodes"]) for r in train] == [("shop", 8)] * 3 + [("random DAG", 20)] * 3
    for block in (train[:3], train[3:]):
        assert [r["impl"] for r in block] == ["loop reference", "batched", "batched"]
        assert block[0]["speedup"] == 1.0 and block[0]["optimizer"] == "Adam default"
        assert block[2]["optimizer"] in ("Adam fused", "Adam foreach")
        for r in block:
            assert r["ms"] > 0 and r["n"] >= 1
            assert r["speedup"] == pytest.approx(block[0]["ms"] / r["ms"])
    e = shop_graph().num_edges
    assert (train[0]["edges"], train[0]["message_edges"]) == (e, 2 * e + 8)  # both directions plus 8 self loops
    # Identical weights: the batched model and the loop reference agree (float32).
    assert set(record["differences"]) == {"shop N=8", "random DAG N=20"}
    for d in record["differences"].values():
        assert set(d) == {"risk", "logits", "attention", "gradients"}
        assert max(d.values()) <= 1e-5
    # Inference: N = 8, 20, 40; the loop reference only up to --loop-max-nodes 20, skipped with the reason.
    assert [(r["nodes"], r["impl"]) for r in infer] == [
        (8, "loop reference"),
        (8, "batched"),
        (20, "loop reference"),
        (20, "batched"),
        (40, "loop reference"),
        (40, "batched"),
    ]
    skipped = infer[4]
    assert skipped["ms"] is None and skipped["speedup"] is None and "--loop-max-nodes 20" in skipped["note"]
    assert infer[5]["ms"] > 0 and infer[5]["speedup"] is None
    # The speed target is for B=64, S=8: a --quick run cannot pass or fail it.
    assert [c["status"] for c in record["checks"]] == ["SKIPPED", "PASS"]
    printed = capsys.readouterr().out
    assert "TRAINING STEP" in printed and "INFERENCE" in printed and "torch threads" in printed
    assert "max |batched - loop|" in printed and "skipped: N > --loop-max-nodes 20" in printed


def test_speedups_from_known_timings(bench, monkeypatch):
    # Loop reference 100 ms, batched 4 ms and 2 ms: speed-ups 1, 25 and 50 (hand computed).
    known = iter([100.0, 4.0, 2.0])
    monkeypatch.setattr(
        bench, "time_interleaved", lambda fns, **kw: {k: Timing.from_samples([next(known)]) for k in fns}
    )
    args = bench.parse_args(["--quick", "--device", "cpu"])
    rows, diffs = bench.measure_training("shop", 8, args, torch.device("cpu"))
    assert [(r.impl, r.ms, r.speedup) for r in rows] == [
        ("loop reference", 100.0, 1.0),
        ("batched", 4.0, 25.0),
        ("batched", 2.0, 50.0),
    ]
    # Inference is per window: 40 ms for a batch of 4 windows is 10 ms a window.
    known = iter([40.0, 8.0])
    rows = bench.measure_inference("shop", 8, args, torch.device("cpu"))
    assert [(r.impl, r.ms, r.speedup) for r in rows] == [("loop reference", 10.0, 1.0), ("batched", 2.0, 5.0)]
    table = bench.format_table(rows)
    e = shop_graph().num_edges
    assert f"shop: N=8 services, E={e} dependencies, E'={2 * e + 8} message edges" in table


def test_target_checks(bench):
    def row(impl, speedup, graph="shop"):
        return bench.Row("train", graph, 8, 10, 28, impl, "Adam fused", 1.0, 0.0, 1, speedup)

    rows = [row("loop reference", 1.0), row("batched", 30.0), row("batched", 36.0), row("batched", 99.0, "other")]
    good, bad = {"shop N=8": {"risk": 2e-6}}, {"shop N=8": {"risk": 2e-5}}
    assert [c["status"] for c in bench.check_targets(rows, good, target_shape=True)] == ["PASS", "PASS"]
    assert [c["status"] for c in bench.check_targets(rows[:2], bad, target_shape=True)] == ["FAIL", "FAIL"]
    assert [c["status"] for c in bench.check_targets(rows, {}, target_shape=False)] == ["SKIPPED", "SKIPPED"]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--hidden", "10", "--heads", "4"], r"--hidden \(10\) must be a multiple of --heads \(4\)"),
        (["--batch", "0"], "must be >= 1"),
        (["--sizes", "1"], "--sizes and --infer-sizes must be >= 2"),
        (["--max-time-s", "0"], "--max-time-s > 0"),
    ],
)
def test_bad_arguments_are_refused(bench, argv, match, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert re.search(match, capsys.readouterr().err)
