"""Sweeps on Dask with real kernels: a 2 x 2 grid on a LocalCluster of 2 worker processes with one
combination failing on purpose and one kernel start failing once; resume; a worker process killed
mid-run; Ctrl-C in a terminal; a bad value refused before anything exists.

The fixture notebooks (tests/fixtures/sweep_notebooks.py) run in a second or two. One cluster
serves the module (reached through its address, as ``--scheduler`` does); the Ctrl-C test starts
the command line, which starts its own. Pure functions (grid, folders, aggregation, plot): see
test_sweep_aggregate.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from _processes import alive, wait_for
from fixtures.runner_notebooks import write_notebook
from fixtures.sweep_notebooks import flaky_kernel, sweep_notebook

from tgad_lite.notebooks import ParameterError, main, sweep
from tgad_lite.notebooks.runner import STATUS_KEY
from tgad_lite.notebooks.sweep import (
    ATTEMPTS,
    INCOMPLETE_METRICS,
    RECORD,
    plan_sweep,
    read_record,
    worker_kernel_env,
)

# Writes the variables Dask sets in its worker processes, as the kernel sees them.
ENV_PROBE_CELL = """\
import json, os
names = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "TGAD_TEST_EXTRA")
with open(os.path.join(output_dir, "metrics.json"), "w") as f:
    json.dump({"lr": lr, "env": {k: os.environ.get(k) for k in names}}, f)
"""


def _run_folders(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.fixture(scope="module")
def flaky(tmp_path_factory) -> tuple[str, Path]:
    return flaky_kernel(tmp_path_factory.mktemp("jupyter"))


@pytest.fixture(scope="module")
def cluster(flaky):
    """A LocalCluster of 2 worker processes, 1 thread each, as ``sweep`` starts one; its workers
    see the flaky kernel (``JUPYTER_PATH`` is inherited when they start)."""
    from distributed import LocalCluster

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(flaky[1].parent))
        with LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=":0",
            preload=["tgad_lite.notebooks.sweep"],
        ) as local:
            yield local


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    return sweep_notebook(tmp_path / "nb" / "tiny.ipynb")


@pytest.mark.notebook
def test_grid_on_two_workers_one_failure_one_kernel_retry_aggregate_and_resume(
    notebook: Path, tmp_path: Path, cluster, flaky, capsys
) -> None:
    kernel, marker = flaky
    out = tmp_path / "out"
    table = sweep(
        notebook, {"lr": [0.1, 0.9]}, seeds=2, out=out, scheduler=cluster.scheduler_address, kernel=kernel,
        progress=False,
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert marker.exists()  # the flaky kernel's first start did fail

    folders = _run_folders(out)
    assert [f.name.rsplit("-", 1)[0] for f in folders] == [
        "tiny-lr=0.1-seed=0", "tiny-lr=0.1-seed=1", "tiny-lr=0.9-seed=0", "tiny-lr=0.9-seed=1",
    ]  # fmt: skip
    records = {f.name.rsplit("-", 1)[0]: read_record(f) for f in folders}
    assert {k: r["status"] for k, r in records.items()} == {
        "tiny-lr=0.1-seed=0": "ok",
        "tiny-lr=0.1-seed=1": "ok",
        "tiny-lr=0.9-seed=0": "ok",
        "tiny-lr=0.9-seed=1": "failed",
    }
    failed = records["tiny-lr=0.9-seed=1"]
    assert "ValueError: boom" in failed["error"]
    failed_dir = out / next(f.name for f in folders if f.name.startswith("tiny-lr=0.9-seed=1"))
    assert not (failed_dir / "metrics.json").exists()
    executed = nbformat.read(failed_dir / "tiny.ipynb", as_version=4)  # kept, with the error, marked
    assert executed.metadata[STATUS_KEY]["status"] == "failed"
    assert any(o.get("ename") == "ValueError" for c in executed.cells if c.cell_type == "code" for o in c.outputs)

    # exactly one run lost its first kernel start and was retried once, in a fresh kernel
    retried = [r for r in records.values() if r["attempts"] == 2]
    assert len(retried) == 1 and "Kernel died before replying" in retried[0]["first_attempt_error"]
    assert all(r["attempts"] == 1 and r["first_attempt_error"] is None for r in records.values() if r not in retried)

    # each kernel ran in its own folder, seeded, on one of two worker processes; forking worked
    probes = [json.loads((f / "probe.json").read_text()) for f in folders if (f / "probe.json").exists()]
    assert len({p["cwd"] for p in probes}) == len(probes) == 3
    assert all(Path(p["cwd"]).parent.parent == out.resolve() / ATTEMPTS for p in probes)
    assert len({r["pid"] for r in records.values()}) == 2 and os.getpid() not in {r["pid"] for r in records.values()}
    assert sorted(p["hash_seed"] for p in probes) == ["0", "0", "1"]
    assert all(p["child_exitcode"] == 0 for p in probes)

    # the aggregate matches the individual metrics.json files
    scores: dict[float, list[float]] = {0.1: [], 0.9: []}
    for f in folders:
        if (f / "metrics.json").exists():
            scores[read_record(f)["parameters"]["lr"]].append(json.loads((f / "metrics.json").read_text())["score"])
    rows = table[table["metric"] == "score"].set_index("lr")
    for lr, values in scores.items():
        assert rows.loc[lr, "n"] == len(values) and rows.loc[lr, "mean"] == pytest.approx(statistics.mean(values))
        expected_std = statistics.stdev(values) if len(values) > 1 else math.nan
        assert rows.loc[lr, "std"] == pytest.approx(expected_std, nan_ok=True)
    assert (rows.loc[0.1, "runs"], rows.loc[0.1, "failed"], rows.loc[0.9, "failed"]) == (2, 0, 1)
    assert set(table["metric"]) == {"score", "nested.twice_seed"}  # numbers only: no text, bool or list
    assert pd.read_csv(out / "summary.csv")["mean"].tolist() == pytest.approx(table["mean"].tolist(), nan_ok=True)
    assert len(pd.read_csv(out / "runs.csv")) == 4
    assert "ValueError: boom" in printed and "1 retried after a kernel start failure" in printed
    assert not (out / ATTEMPTS).exists()

    # resume: the finished runs are skipped untouched, the failed one runs again (and fails again)
    before = {f.name: (f / RECORD).read_text() for f in folders}
    again = sweep(notebook, {"lr": [0.1, 0.9]}, seeds=2, out=out, scheduler=cluster.scheduler_address, progress=False)
    assert "3 already done, 1 to run" in capsys.readouterr().out
    after = {f.name: (f / RECORD).read_text() for f in _run_folders(out)}
    assert after.keys() == before.keys()
    changed = [name for name in before if before[name] != after[name]]
    assert len(changed) == 1 and changed[0].startswith("tiny-lr=0.9-seed=1")
    assert again[["metric", "n", "mean"]].equals(table[["metric", "n", "mean"]])


@pytest.mark.notebook
def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(notebook: Path, tmp_path: Path, cluster) -> None:
    hold, out = tmp_path / "hold", tmp_path / "out"
    hold.mkdir()
    killed: dict = {}

    def kill_the_worker() -> None:  # waits for seed 1's first run to be inside its blocking cell
        if wait_for(lambda: (hold / "pids.json").exists(), timeout=90):
            killed.update(json.loads((hold / "pids.json").read_text()))
            os.kill(killed["worker"], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_worker, daemon=True)
    killer.start()
    hold_env = {"SWEEP_TEST_HOLD": str(hold)}
    table = sweep(
        notebook, {"lr": 0.2}, seeds=2, out=out, scheduler=cluster.scheduler_address, env=hold_env,
        progress=False, verbose=False,
    )  # fmt: skip
    killer.join(timeout=5)
    assert killed, "the blocking run never started"

    folders = _run_folders(out)
    assert [f.name.rsplit("-", 1)[0] for f in folders] == ["tiny-lr=0.2-seed=0", "tiny-lr=0.2-seed=1"]
    records = [read_record(f) for f in folders]
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert records[1]["pid"] != killed["worker"]  # Dask ran it again on a live worker
    assert sorted(p.name for p in out.rglob("metrics.json")) == ["metrics.json"] * 2  # once per run, nowhere else
    assert not Path(killed["cwd"]).exists() and not (out / ATTEMPTS).exists()  # the dead attempt is gone
    assert wait_for(lambda: not alive(killed["kernel"]), timeout=15), "the orphaned kernel kept running"
    assert table.set_index("metric").loc["score", "n"] == 2


@pytest.mark.notebook
def test_ctrl_c_in_a_terminal_leaves_no_metrics_json_and_the_sweep_resumes(
    notebook: Path, tmp_path: Path, cluster
) -> None:
    block, out = tmp_path / "block", tmp_path / "out"
    block.mkdir()
    argv = ["sweep", str(notebook), "-p", "lr=0.3", "--seeds", "2", "--out", str(out), "--workers", "2"]
    env = {**os.environ, "SWEEP_TEST_BLOCK": str(block), "TGAD_PROGRESS": "off"}
    code = "import sys; from tgad_lite.notebooks.cli import main; raise SystemExit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv], cwd=tmp_path, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = wait_for(lambda: len(list(block.glob("ready-?"))) == 2, timeout=120)
        assert ready, "the runs never reached their blocking cell"
        kernels = [int(p.read_text()) for p in block.glob("ready-?")]
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group, workers too
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr[-4000:]
    assert "interrupted: partial notebooks are saved and marked" in stdout
    assert all(wait_for(lambda pid=pid: not alive(pid), timeout=10) for pid in kernels), "kernel left behind"

    folders = _run_folders(out)
    assert len(folders) == 2 and not list(out.rglob("metrics.json"))  # no half file passes for metrics
    for folder in folders:
        assert read_record(folder)["status"] == "interrupted"
        assert (folder / INCOMPLETE_METRICS).read_text() == '{"score": '
        assert nbformat.read(folder / "tiny.ipynb", as_version=4).metadata[STATUS_KEY]["status"] == "interrupted"

    shutil.rmtree(block)  # and the kernels of the module's cluster do not see SWEEP_TEST_BLOCK anyway
    table = sweep(notebook, {"lr": 0.3}, seeds=2, out=out, scheduler=cluster.scheduler_address, progress=False)
    assert [f.name for f in _run_folders(out)] == [f.name for f in folders]
    for folder in folders:
        assert read_record(folder)["status"] == "ok" and not (folder / INCOMPLETE_METRICS).exists()
        assert json.loads((folder / "metrics.json").read_text())["score"] == pytest.approx(
            3.0 + read_record(folder)["swept"]["seed"]
        )
    assert table.set_index("metric").loc["score", "n"] == 2


def test_a_bad_value_anywhere_in_the_grid_is_refused_before_anything_exists(
    notebook: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    with pytest.raises(ParameterError) as info:
        sweep(notebook, {"lr": [0.1, 2.0], "model": ["gat", "gatv3"]}, seeds=2, out=out)
    message = str(info.value)
    assert "'lr'" in message and "(0, 1]" in message and "2.0" in message
    assert "gatv3" in message and "did you mean 'gatv2'" in message
    assert message.count("'lr'") == 1  # one problem, once, however many combinations hold it
    assert not out.exists()

    cases = [
        ["-p", "lr=0.1,0.5", "-p", "modle=gat"],  # unknown parameter
        ["-p", "lr=0.1,0.10"],  # the same run twice
        ["-p", "seed=1,2", "--seeds", "2"],  # seeds given twice
        ["-p", "lr=0.1,", "--seeds", "2"],  # an empty value
        ["-p", "profile=full"],  # the profile has its own option
    ]
    expected = ["did you mean 'model'", "same run twice", "give the seeds once", "empty value", "--profile"]
    for args, needle in zip(cases, expected, strict=True):
        assert main(["sweep", str(notebook), *args, "--out", str(out)]) == 2
        assert needle in capsys.readouterr().err
    assert not out.exists()
    assert len(plan_sweep(notebook, {"lr": [0.1, 0.5]}, seeds=3).combinations) == 6  # the same grid, valid


def test_kernels_do_not_inherit_the_dask_worker_environment(monkeypatch) -> None:
    import importlib

    import dask

    sweep_module = importlib.import_module("tgad_lite.notebooks.sweep")  # the package's .sweep is the function

    spawn = {"MALLOC_TRIM_THRESHOLD_": 65536, "OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1}
    for name in (*spawn, "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sweep_module, "_cpus", lambda: 5)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn, "distributed.nanny.environ": {}}):
        # local workers: Dask's malloc setting unset, the CPUs shared out (5 // 2), the caller's env kept
        assert worker_kernel_env({"TGAD_TEST_EXTRA": "x"}, workers=2) == {
            "TGAD_TEST_EXTRA": "x",
            "MALLOC_TRIM_THRESHOLD_": None,
            "MKL_NUM_THREADS": "2",
            "OMP_NUM_THREADS": "2",
        }
        assert worker_kernel_env(None, workers=8)["OMP_NUM_THREADS"] == "1"  # never 0 threads
        # what the caller set, in env or in its own environment, wins
        monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        local = worker_kernel_env({"MKL_NUM_THREADS": "4"}, workers=2)
        assert local == {"MKL_NUM_THREADS": "4", "MALLOC_TRIM_THRESHOLD_": "131072", "OMP_NUM_THREADS": "3"}
        # a cluster: the workers' thread counts stay (their machines, not ours), malloc is unset
        assert worker_kernel_env(None) == {"MALLOC_TRIM_THRESHOLD_": None}
        assert worker_kernel_env({"MALLOC_TRIM_THRESHOLD_": "0"}) == {"MALLOC_TRIM_THRESHOLD_": "0"}


@pytest.mark.notebook
def test_a_kernel_on_a_dask_worker_gets_no_malloc_trim_threshold(tmp_path: Path, cluster) -> None:
    from distributed import Client

    notebook = write_notebook(tmp_path / "nb" / "envprobe.ipynb", ENV_PROBE_CELL)
    with Client(cluster.scheduler_address) as client:  # the setting is there, in every worker process
        assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {"65536"}
    out = tmp_path / "out"
    table = sweep(
        notebook, {"lr": [0.1]}, out=out, scheduler=cluster.scheduler_address, env={"TGAD_TEST_EXTRA": "kept"},
        progress=False, verbose=False,
    )  # fmt: skip
    assert (table.attrs["runs"]["status"] == "ok").all()
    (folder,) = _run_folders(out)
    seen = json.loads((folder / "metrics.json").read_text())["env"]
    assert seen == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1", "TGAD_TEST_EXTRA": "kept"}
    assert set(table.attrs["timings"]) == {"validate", "cluster_start", "runs", "cluster_close", "tables"}
