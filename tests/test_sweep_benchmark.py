"""benchmarks/sweep.py at a tiny size: the fixture notebook, 2 x 2 runs, 2 workers. It checks what
the script prints and writes; no timing is asserted (the ratio on notebook 02 is measured by
running the script itself, see benchmarks/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _benchmarks import loaded_benchmark
from fixtures.sweep_notebooks import sweep_notebook


@pytest.mark.notebook
def test_benchmark_times_both_ways_and_prints_the_ratio(tmp_path: Path, capsys) -> None:
    notebook = sweep_notebook(tmp_path / "tiny.ipynb")
    argv = ["--notebook", str(notebook), "-p", "lr=0.1,0.2", "--seeds", "2", "--workers", "2", "--no-warmup"]
    argv += ["--out", str(tmp_path / "runs"), "--json", str(tmp_path / "bench.json")]
    with loaded_benchmark("sweep.py", "bench_sweep") as bench:
        assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "bench.json").read_text())
    assert (result["runs"], result["workers"], result["failures"]) == (4, 2, [])
    assert result["ratio"] == pytest.approx(result["sweep_s"] / result["sequential_s"], rel=0.01)
    assert f"ratio sweep / sequential: {result['ratio']:.2f}" in printed
    assert result["machine"]["cpus"] >= 1 and len(result["machine"]["load_average_1_5_15"]) == 3
    # both ways ran every combination: 4 folders each, each with its metrics
    assert len(list((tmp_path / "runs" / "sequential").glob("*/metrics.json"))) == 4
    assert len(list((tmp_path / "runs" / "sweep").glob("*/metrics.json"))) == 4
