"""A sweep on local Dask workers against the same runs one after another, timed in one run.

Run from the repository root::

    TGAD_DATA_MIRROR=../shared/data .venv/bin/python benchmarks/sweep.py \\
        [--notebook notebooks/02_cora.ipynb] [-p restore=val_acc,all] [--seeds 2] [--workers 2] [--json PATH]

Default: notebook 02 (Cora) in the smoke profile, ``restore`` val_acc and all (which weights early
stopping keeps: ours or the paper's rule) x 2 seeds: four runs of the same size.
``-p impl=sparse,gatv2`` times the README's GAT/GATv2 example (GATv2 runs take a little longer);
``-p impl=sparse,dense`` a grid dominated by the dense layer's memory-bound runs. They execute

* **sequentially**: ``run_many(jobs, max_workers=1)``, one kernel after another, as a loop of
  ``python -m tgad_lite.notebooks run`` would; the kernels get the caller's environment;
* **as a sweep**: ``sweep(..., workers=K, force=True)`` on a fresh ``LocalCluster`` of K worker
  processes, the cluster's start and the tables included in the time. Each kernel computes on
  the CPUs shared out over the workers (``OMP_NUM_THREADS`` = CPUs // K: one thread each for 2
  workers on 2 cores).

``--threads N`` gives every kernel of both ``OMP_NUM_THREADS=N`` instead. One untimed run of the
first combination comes first (``--no-warmup`` skips it), so neither timing pays for cold file
caches. The ratio is sweep time / sequential time, both measured in this run (target < 0.7 for
2 x 2 on 2 workers); every run must succeed or the script exits 1. See ``benchmarks/README.md``
for how to read timings on a shared machine.

Then it prints where each way's wall time went, read from the executed notebooks' papermill
timestamps (and each sweep run's ``run.json``, which names its worker process): the time before
the first run starts (for the sweep: the cluster and its workers starting, papermill imported in
each worker), per run the kernel's start, its first cell after the parameters (imports and
set-up), the notebook's other cells and papermill's own time, the time workers sit idle or
between runs, and the time after the last run (tables, the cluster closing). The per-run parts
are sums over runs divided by the runs that go in parallel (1, or K), so each column adds up to
its wall time. The largest cells follow, summed over runs both ways: a cell that takes longer in
the sweep than in the sequential runs slowed down from running beside another kernel or on fewer
threads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NOTEBOOK = REPO / "notebooks" / "02_cora.ipynb"
TARGET_RATIO = 0.7


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--notebook", type=Path, default=DEFAULT_NOTEBOOK, help="the notebook (default: 02_cora)")
    p.add_argument(
        "-p",
        dest="grid",
        action="append",
        default=None,
        metavar="KEY=V1,V2",
        help="grid, as for `sweep -p` (default: restore=val_acc,all)",
    )
    p.add_argument("--seeds", type=int, default=2, help="seeds per setting (default 2)")
    p.add_argument("--workers", type=int, default=2, help="local Dask worker processes (default 2)")
    p.add_argument("--profile", default="smoke", choices=("smoke", "full"), help="notebook profile (default smoke)")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for every kernel (default: as is)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed first run")
    p.add_argument("--out", type=Path, default=None, help="keep the run folders here (default: a temporary folder)")
    p.add_argument("--json", type=Path, default=None, help="also write the timings and machine here")
    return p.parse_args(argv)


def machine() -> dict[str, Any]:
    """What the timings depend on: CPUs, their load from other processes, versions."""
    import dask
    import distributed
    import papermill

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpus": os.cpu_count(),
        "cpu_model": platform.processor() or platform.machine(),
        "load_average_1_5_15": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "papermill": papermill.__version__,
        "caller_OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def _when(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp).timestamp()


def run_timeline(notebook: Path) -> dict[str, Any]:
    """One executed notebook's timeline from papermill's timestamps (seconds; start/end: epoch).

    ``kernel_start``: papermill's start to the first cell's; ``first_cell``: the first cell after
    the parameters (imports and set-up); ``cells``: the other cells; ``papermill``: the rest of
    papermill's time (between cells, saving, after the last cell); ``per_cell``: index -> (first
    source line, seconds); ``worker``: the pid of the process that ran it (a sweep's run.json).
    """
    nb = json.loads(notebook.read_text())
    meta = nb["metadata"]["papermill"]
    start, end = _when(meta["start_time"]), _when(meta["end_time"])
    ran = [
        (i, c)
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("metadata", {}).get("papermill", {}).get("start_time"))
    ]
    per_cell = {}
    for i, c in ran:
        info = c["metadata"]["papermill"]
        first_line = "".join(c["source"]).strip().splitlines()[0] if "".join(c["source"]).strip() else ""
        per_cell[i] = (first_line, _when(info["end_time"]) - _when(info["start_time"]))
    parameter_cells = {"parameters", "injected-parameters"}
    first = next((i for i, c in ran if not parameter_cells & set(c.get("metadata", {}).get("tags", []))), None)
    kernel_start = _when(ran[0][1]["metadata"]["papermill"]["start_time"]) - start if ran else end - start
    first_cell = per_cell[first][1] if first is not None else 0.0
    all_cells = sum(seconds for _, seconds in per_cell.values())
    record = notebook.parent / "run.json"
    worker = json.loads(record.read_text()).get("pid") if record.is_file() else None
    return {
        "start": start,
        "end": end,
        "kernel_start": kernel_start,
        "first_cell": first_cell,
        "cells": all_cells - first_cell,
        "papermill": (end - start) - kernel_start - all_cells,
        "per_cell": per_cell,
        "worker": worker,
    }


PARTS = (
    ("before", "before the first run starts"),
    ("kernel_start", "kernel start"),
    ("first_cell", "first cell (imports, set-up)"),
    ("cells", "the other cells (the notebook's work)"),
    ("papermill", "papermill between and after cells"),
    ("idle", "between runs, or a worker idle"),
    ("after", "after the last run ends"),
)


def breakdown(timelines: Sequence[dict[str, Any]], began: float, ended: float, lanes: int) -> dict[str, float]:
    """Wall seconds of one way (``began``..``ended``, epoch) split into ``PARTS``; the per-run
    parts are sums over runs divided by ``lanes`` (the runs that go in parallel)."""
    first, last = min(t["start"] for t in timelines), max(t["end"] for t in timelines)
    busy = sum(t["end"] - t["start"] for t in timelines)
    out = {"before": first - began}
    for key in ("kernel_start", "first_cell", "cells", "papermill"):
        out[key] = sum(t[key] for t in timelines) / lanes
    out["idle"] = (lanes * (last - first) - busy) / lanes
    out["after"] = ended - last
    out["wall"] = ended - began
    return {key: round(value, 2) for key, value in out.items()}


def largest_cells(seq: Sequence[dict[str, Any]], swp: Sequence[dict[str, Any]], top: int = 6) -> list[dict[str, Any]]:
    """The ``top`` cells by sequential time: seconds summed over runs, both ways."""
    total: dict[int, list[Any]] = {}
    for which, timelines in ((1, seq), (2, swp)):
        for t in timelines:
            for index, (line, seconds) in t["per_cell"].items():
                row = total.setdefault(index, [line, 0.0, 0.0])
                row[which] += seconds
    rows = sorted(total.items(), key=lambda item: -item[1][1])[:top]
    return [
        {"cell": i, "source": line[:48], "sequential_s": round(a, 2), "sweep_s": round(b, 2)}
        for i, (line, a, b) in rows
    ]


def print_breakdown(parts: dict[str, dict[str, float]], cells: list[dict[str, Any]], lanes: int, sweep_timings) -> None:
    print(f"\nwhere the wall time goes (s; per-run parts summed over runs / runs in parallel: 1 and {lanes}):")
    print(f"  {'':<40} {'sequential':>10} {'sweep':>8}")
    for key, label in (*PARTS, ("wall", "wall time")):
        print(f"  {label:<40} {parts['sequential'][key]:>10.1f} {parts['sweep'][key]:>8.1f}")
    inside = ", ".join(f"{key.replace('_', ' ')} {value:.1f}" for key, value in sweep_timings.items())
    print(f"  the sweep's own clock (s): {inside}")
    print("largest cells, seconds summed over the runs (sweep / sequential > 1: slower beside another kernel):")
    for c in cells:
        ratio = c["sweep_s"] / c["sequential_s"] if c["sequential_s"] > 0 else float("nan")
        print(f"  [{c['cell']:>2}] {c['source']:<48} {c['sequential_s']:>7.1f} {c['sweep_s']:>7.1f}  x{ratio:.2f}")


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from tgad_lite.notebooks import NotebookJob, run_many
    from tgad_lite.notebooks.sweep import parse_grid, plan_sweep, sweep

    grid = parse_grid(args.grid or ["restore=val_acc,all"])
    plan = plan_sweep(args.notebook, grid, seeds=args.seeds, profile=args.profile)
    jobs = [NotebookJob(args.notebook, c.swept) for c in plan.combinations]
    env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)} if args.threads else None
    print(
        f"{len(jobs)} runs of {args.notebook.name} ({args.profile}): "
        + "; ".join(str(c.swept) for c in plan.combinations)
    )

    if not args.no_warmup:
        t0 = time.perf_counter()
        (warm,) = run_many(jobs[:1], root / "warmup", profile=args.profile, env=env)
        print(f"warm-up (untimed): 1 run, {time.perf_counter() - t0:.1f} s, {warm.status}", flush=True)

    t0, began = time.perf_counter(), time.time()
    sequential = run_many(jobs, root / "sequential", profile=args.profile, env=env, max_workers=1)
    seq_s, seq_span = time.perf_counter() - t0, (began, time.time())
    bad = [f"{r.name} {r.parameters.get('seed')}: {r.error}" for r in sequential if not r.ok]
    print(f"sequential, one run after another:   {len(sequential)} runs in {seq_s:7.1f} s", flush=True)

    t0, began = time.perf_counter(), time.time()
    table = sweep(
        args.notebook, grid, seeds=args.seeds, out=root / "sweep", profile=args.profile, workers=args.workers,
        force=True, env=env, progress=False, verbose=False, dashboard=False,
    )  # fmt: skip
    sweep_s, sweep_span = time.perf_counter() - t0, (began, time.time())
    runs = table.attrs["runs"]
    bad += [f"{r.folder}: {r.error}" for r in runs.itertuples() if r.status != "ok"]
    print(f"sweep, LocalCluster of {args.workers} workers:     {len(runs)} runs in {sweep_s:7.1f} s", flush=True)
    ratio = sweep_s / seq_s
    verdict = "meets" if ratio < TARGET_RATIO else "misses"
    print(f"ratio sweep / sequential: {ratio:.2f} ({verdict} the target < {TARGET_RATIO})")
    threads = args.threads or "default (torch: one per core)"
    sweep_threads = args.threads or f"CPUs // workers = {max(1, (os.cpu_count() or 1) // args.workers)}"
    print(f"kernel threads: sequential {threads}; sweep {sweep_threads}")
    parts, cells = {}, []
    if not bad:  # every run finished, so every executed notebook has its timestamps
        seq_lines = [run_timeline(r.output_notebook) for r in sequential]
        swp_lines = [
            run_timeline(p.parent / f"{args.notebook.stem}.ipynb") for p in (root / "sweep").glob("*/run.json")
        ]
        parts = {
            "sequential": breakdown(seq_lines, *seq_span, lanes=1),
            "sweep": breakdown(swp_lines, *sweep_span, lanes=args.workers),
        }
        cells = largest_cells(seq_lines, swp_lines)
        print_breakdown(parts, cells, args.workers, table.attrs.get("timings", {}))
    return {
        "notebook": args.notebook.name,
        "profile": args.profile,
        "runs": len(jobs),
        "workers": args.workers,
        "threads": args.threads,
        "sequential_s": round(seq_s, 2),
        "sweep_s": round(sweep_s, 2),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "breakdown_s": parts,
        "largest_cells": cells,
        "sweep_timings_s": table.attrs.get("timings"),
        "failures": bad,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    system = machine()
    print(
        f"{system['cpus']} CPUs ({system['cpu_model']}), load average {system['load_average_1_5_15']} "
        f"(other processes' load), dask {system['dask']}, python {system['python']}"
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        result = run(args, args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="tgad-sweep-bench-") as tmp:
            result = run(args, Path(tmp))
    result["machine"] = system
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    if result["failures"]:
        print("runs failed, the timing means nothing:\n  " + "\n  ".join(result["failures"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
