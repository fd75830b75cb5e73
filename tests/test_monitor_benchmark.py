"""benchmarks/monitor.py: a tiny run has every row, consistent ratios and agreeing outputs.

Nothing here asserts a speed: only that the benchmark measures what it says and reports it in order.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _benchmarks import loaded_benchmark


@pytest.fixture(scope="module")
def bench():
    with loaded_benchmark("monitor.py", "monitor_bench") as module:
        yield module


def test_tiny_run_has_every_row_and_consistent_numbers(bench, tmp_path, capsys):
    out = tmp_path / "monitor.json"
    threads = torch.get_num_threads()
    code = bench.main(
        ["--sizes", "8,20", "--steps", "6", "--calibration", "12", "--window", "4", "--hidden", "8", "--heads", "2"]
        + ["--device", "cpu", "--json", str(out)]
    )
    assert code == 0
    assert torch.get_num_threads() == threads  # --threads 1 was undone at the end
    record = json.loads(out.read_text())
    rows = record["rows"]
    per_size = bench.IMPLS + bench.PARTS + (bench.FLOOR,)
    assert [(r["services"], r["impl"]) for r in rows] == [(n, impl) for n in (8, 20) for impl in per_size]
    for block in (rows[: len(per_size)], rows[len(per_size) :]):
        naive = block[0]
        assert naive["impl"] == "naive" and naive["speedup"] == 1.0
        for r in block:
            assert r["steps"] == 6 and r["device"] == "cpu"
            assert 0 < r["p50_ms"] <= r["p99_ms"] and r["cpu_p50_ms"] >= 0
            assert r["speedup"] == pytest.approx(naive["p50_ms"] / r["p50_ms"])
            # throughput: N x F values per step over the mean step time
            assert r["values_per_s"] == pytest.approx(r["services"] * 4 / (r["mean_ms"] / 1e3), rel=1e-9)
        assert block[3]["impl"] == "cached, after a naive step"
        assert block[3]["spot_refits"] == block[1]["spot_refits"]  # cached's twin: the same scores, the same refits
        # fixed thresholds never refit, the parts run no SPOT
        never = [r for r in block if r["impl"] == "cached, fixed thresholds" or ":" in r["impl"]]
        assert [r["spot_refits"] for r in never] == [0] * 5
    # the cached monitor and the naive full forward gave the same risks
    assert set(record["max_risk_difference"]) == {"cpu N=8", "cpu N=20"}
    assert all(0 <= d <= 1e-5 for d in record["max_risk_difference"].values())
    assert record["check"]["status"] == "SKIPPED"  # N=1000 was not measured
    printed = capsys.readouterr().out
    assert "cached, fixed thresholds" in printed and "target (issue 11" in printed
    assert "cached, after a naive step" in printed
    assert "part: recurrence over window" in printed and "part: rest of the step" in printed
    assert "floor: S - 1 products h W_hh" in printed


def test_mingru_model_has_no_floor_row_and_names_its_model(bench, tmp_path, capsys):
    out = tmp_path / "monitor.json"
    argv = ["--sizes", "8", "--steps", "4", "--calibration", "12", "--window", "4", "--hidden", "8", "--heads", "2"]
    code = bench.main(argv + ["--layers", "1", "--recurrent", "mingru", "--device", "cpu", "--json", str(out)])
    assert code == 0
    record = json.loads(out.read_text())
    assert [r["impl"] for r in record["rows"]] == [*bench.IMPLS, *bench.PARTS]  # a minGRU window has no product
    assert 0 <= record["max_risk_difference"]["cpu N=8"] <= 1e-5
    assert record["settings"]["recurrent"] == "mingru" and record["settings"]["layers"] == 1
    assert record["check"]["check"].endswith("1 GATv2 layer, mingru)")
    assert "1 GATv2 layer, mingru)" in capsys.readouterr().out


def test_timing_the_parts_leaves_the_monitor_exactly_where_it_was(bench):
    """_time_parts re-encodes the last snapshot into its ring slot: the monitor's next steps are unchanged."""
    args = bench.parse_args(["--sizes", "12", "--calibration", "10", "--window", "4", "--hidden", "8", "--heads", "2"])
    monitors, tel, _ = bench.build(12, args, "cpu")
    timed, untouched = monitors["cached, fixed thresholds"], monitors["cached"]
    untouched.risk_gate, untouched.cascade_gate = timed.risk_gate, timed.cascade_gate  # thresholds aside
    start = bench.REFERENCE_STEPS
    for t in range(start, start + 8):
        timed.step(tel.x[t], tel.mask[t])
        untouched.step(tel.x[t], tel.mask[t])
    replay = [(tel.x[t], tel.mask[t]) for t in range(start, start + 2)]
    wall, cpu = bench._time_parts(timed, 3, lambda: None, replay)
    assert set(wall) == set(cpu) == {*bench.PARTS, bench.FLOOR} and all(len(v) == 3 for v in wall.values())
    for t in range(start + 8, start + 12):
        a, b = timed.step(tel.x[t], tel.mask[t]), untouched.step(tel.x[t], tel.mask[t])
        assert np.array_equal(a.risk, b.risk)


def test_the_target_check_reads_the_cached_cpu_row_at_1000(bench):
    def row(impl, p50, device="cpu", n=1000):
        return bench.Row(device, n, 1780, impl, p50, p50, p50, p50, 1.0, 1.0, 10, 0)

    assert bench.check_target([row("naive", 0.5), row("cached", 2.0)])["status"] == "MISS"
    assert bench.check_target([row("cached", 0.9)])["status"] == "PASS"
    assert bench.check_target([row("cached", 0.9, device="cuda")])["status"] == "SKIPPED"
    assert bench.check_target([row("cached", 0.9, n=200)])["status"] == "SKIPPED"
    assert bench.check_target([row("cached", 0.9)], "a model")["check"].endswith(", a model")
