"""A sweep on local Dask workers against the same runs one after another, timed in one run.

Run from the repository root::

    TGAD_DATA_MIRROR=../shared/data .venv/bin/python benchmarks/sweep.py \\
        [--notebook notebooks/02_cora.ipynb] [-p restore=val_acc,all] [--seeds 2] [--workers 2] [--json PATH]

Default: notebook 02 (Cora) in the smoke profile, ``restore`` val_acc and all (which weights early
stopping keeps: ours or the paper's rule; 02 has no GAT/GATv2 choice) x 2 seeds: four runs of
the same size. ``-p impl=sparse,dense`` times a grid dominated by the dense layer's memory-bound
runs instead. They execute

* **sequentially**: ``run_many(jobs, max_workers=1)``, one kernel after another, as a loop of
  ``python -m tgad_lite.notebooks run`` would; the kernels get the caller's environment;
* **as a sweep**: ``sweep(..., workers=K, force=True)`` on a fresh ``LocalCluster`` of K worker
  processes, the cluster's start and the tables included in the time. Dask starts its workers
  with ``OMP_NUM_THREADS=1`` (``distributed.nanny.pre-spawn-environ``), so each kernel then
  computes on one thread.

``--threads N`` gives every kernel of both ``OMP_NUM_THREADS=N`` instead. One untimed run of the
first combination comes first (``--no-warmup`` skips it), so neither timing pays for cold file
caches. The ratio is sweep time / sequential time, both measured in this run (target < 0.7 for
2 x 2 on 2 workers); every run must succeed or the script exits 1. See ``benchmarks/README.md``
for how to read timings on a shared machine.
"""

from __future__ import annotations

import argparse
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

    t0 = time.perf_counter()
    sequential = run_many(jobs, root / "sequential", profile=args.profile, env=env, max_workers=1)
    seq_s = time.perf_counter() - t0
    bad = [f"{r.name} {r.parameters.get('seed')}: {r.error}" for r in sequential if not r.ok]
    print(f"sequential, one run after another:   {len(sequential)} runs in {seq_s:7.1f} s", flush=True)

    t0 = time.perf_counter()
    table = sweep(
        args.notebook, grid, seeds=args.seeds, out=root / "sweep", profile=args.profile, workers=args.workers,
        force=True, env=env, progress=False, verbose=False, dashboard=False,
    )  # fmt: skip
    sweep_s = time.perf_counter() - t0
    runs = table.attrs["runs"]
    bad += [f"{r.folder}: {r.error}" for r in runs.itertuples() if r.status != "ok"]
    print(f"sweep, LocalCluster of {args.workers} workers:     {len(runs)} runs in {sweep_s:7.1f} s", flush=True)
    ratio = sweep_s / seq_s
    verdict = "meets" if ratio < TARGET_RATIO else "misses"
    print(f"ratio sweep / sequential: {ratio:.2f} ({verdict} the target < {TARGET_RATIO})")
    threads = args.threads or "default (torch: one per core)"
    print(f"kernel threads: sequential {threads}; sweep {args.threads or '1 (Dask worker environment)'}")
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
