"""Parameter sweeps of one notebook on Dask: ``python -m tgad_lite.notebooks sweep NOTEBOOK -p k=a,b``.

A sweep expands a grid (``-p key=v1,v2,...`` per parameter, ``--seeds N``) into combinations,
validates every one against the notebook's declared parameters before anything exists, and runs
each as a task on Dask distributed: a ``LocalCluster`` of ``K`` worker processes (one thread
each) by default, or the workers of a running scheduler (``--scheduler tcp://host:8786``).

Each task runs the notebook with the runner's single-run code (``runner._run_one``: its own
kernel, kernel environment and working directory; nothing calls ``os.chdir``), so the traps of
running papermill in parallel are avoided: worker processes, not threads of one process, hold
the kernels; a run whose kernel fails to start (a ZMQ port taken by a kernel started at the same
moment, a start timeout: papermill #511, #239, #776) is retried once with a fresh kernel. The
kernels are ``subprocess`` children of the worker, so the workers may stay daemonic (distributed
#2479 concerns ``multiprocessing`` children, which only the kernels themselves start).

Folders, under ``--out DIR`` (default ``runs/sweep-<notebook>``, a stable name so a rerun
resumes)::

    DIR/sweep.json                         the last sweep: notebook, grid, combinations -> folders
    DIR/<notebook>-<k>=<v>-...-<hash>/     one run: the executed notebook, metrics.json, run.json
    DIR/runs.csv, DIR/summary.csv          one row per run; mean ± std per setting and metric
    DIR/.attempts/                         runs in progress (removed at the end)

A run executes in its own fresh folder under ``.attempts/`` and is moved into place with one
``rename`` once it has ended and ``run.json`` (its status, parameters, error, attempts) is
written: a run folder is complete or absent, never half there. A worker process killed
mid-run leaves only its attempt folder, and Dask reruns the task in a fresh one; a task that
finds its combination already done by this sweep returns that record, so nothing is lost or
duplicated. A run that did not finish never keeps a ``metrics.json`` (it is renamed
``metrics.incomplete.json``). Rerunning a sweep skips every combination whose folder holds
``run.json`` with status ok, the same parameter values and a readable ``metrics.json``;
``force=True`` (``--force``) reruns them.

Each kernel gets the caller's environment, not its worker's: Dask sets variables in every worker
process it spawns (``distributed.nanny.pre-spawn-environ``), which a kernel would inherit.
``MALLOC_TRIM_THRESHOLD_=65536`` tunes a worker's own memory; in a kernel it makes glibc hand
freed memory back to the system at once, so torch's allocations fault pages in again and again
(notebook 02's training steps ran 1.5 to 2.5 times slower with it). ``worker_kernel_env`` undoes
those variables for the kernels; the thread counts (``OMP_NUM_THREADS``...) of local workers are
the CPUs shared out over the workers (1 each for 2 workers on 2 cores).

Ctrl-C interrupts the running kernels (SIGINT, then SIGKILL after a grace period), saves their
partial notebooks marked ``interrupted``, writes the tables of what finished and raises
``SweepInterrupted`` (exit code 130 on the command line).

``tgad_lite.notebooks.sweep`` (the package attribute) is the function ``sweep``; import this
module's other names with ``from tgad_lite.notebooks.sweep import ...``. Aggregation and the
tables: ``tgad_lite.notebooks.aggregate``; a plot: ``tgad_lite.viz.sweep.plot_sweep``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as _dt
import errno
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tgad_lite.notebooks.errors import ParameterError, RunnerError
from tgad_lite.notebooks.parameters import (
    PROFILES,
    effective_parameters,
    notebook_parameters,
    parameters_digest,
    validate_jobs,
)
from tgad_lite.notebooks.runner import (
    DATA_DIR_ENV,
    DEFAULT_KERNEL,
    INTERRUPT_GRACE_S,
    KILL_WAIT_S,
    MIRROR_ENV,
    _Control,
    _Plan,
    _run_one,
    check_kernel,
    kernel_environment,
)

RECORD = "run.json"  # written last into a run folder, before the folder is moved into place
METRICS = "metrics.json"
INCOMPLETE_METRICS = "metrics.incomplete.json"
SWEEP_FILE = "sweep.json"
RUNS_CSV = "runs.csv"
SUMMARY_CSV = "summary.csv"
ATTEMPTS = ".attempts"
LOCK = ".sweep.lock"
DEFAULT_WORKERS = 2
# Dask's settings for the worker processes it spawns; a kernel must not inherit them (module doc).
DASK_WORKER_ENVIRON = ("distributed.nanny.pre-spawn-environ", "distributed.nanny.environ")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# A kernel that fails to start gets one more try, after this pause (its ports or files are freed).
RETRY_PAUSE_S = 1.0
_NAME_VALUE_MAX = 24  # characters of one value in a folder name (the hash keeps names distinct)
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep: kernels stopped, partial notebooks saved and marked, tables written.

    ``table`` is the aggregate of the runs that finished (``sweep``'s return value), ``out`` the
    sweep folder. A ``KeyboardInterrupt``, so code that does not know the sweep still stops.
    """

    def __init__(self, table: Any, out: Path) -> None:
        self.table, self.out = table, out
        super().__init__(f"sweep interrupted; finished runs are in {out}")


# --------------------------------------------------------------------------- the grid


def split_values(text: str) -> list[str]:
    """``"a,[1, 2],'x,y'"`` -> ``["a", "[1, 2]", "'x,y'"]``: commas inside brackets or quotes stay."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items]


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text  # a bare word is text, as for `run -p`


def parse_grid(pairs: Sequence[str]) -> dict[str, list[Any]]:
    """``["impl=sparse,dense", "lr=0.01"]`` -> ``{"impl": ["sparse", "dense"], "lr": [0.01]}``.

    Each value is a Python literal (``5``, ``0.1``, ``True``, ``None``, ``"01"``, ``["M-1"]``),
    else text; commas inside brackets and quotes do not split (``entities=["M-1"],["M-2"]``).
    Raises ``ParameterError`` for a malformed pair, an empty value or a parameter given twice.
    """
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError(f"-p expects name=value[,value...], got {pair!r} (example: -p impl=sparse,dense)")
        if not key.isidentifier():
            raise ParameterError(f"-p {pair!r}: {key!r} is not a valid parameter name")
        if key in grid:
            raise ParameterError(f"parameter {key!r} given twice; list its values once: -p {key}=a,b,c")
        texts = split_values(text)
        if any(t == "" for t in texts):
            raise ParameterError(
                f"-p {pair!r} has an empty value; write -p {key}=a,b (no empty item, no trailing comma)"
            )
        grid[key] = [_literal(t) for t in texts]
    return grid


def expand_grid(grid: Mapping[str, Sequence[Any]], seeds: int | None = None, first_seed: int = 0) -> list[dict]:
    """Every combination of ``grid``'s values (in its key order), with ``seed`` last when ``seeds``.

    ``seeds=N`` adds ``seed = first_seed, first_seed + 1, ..., first_seed + N - 1``; ``grid`` must
    then not also list seeds. Raises ``ParameterError`` for an empty value list or a bad ``seeds``.
    """
    axes = {key: list(values) for key, values in grid.items()}
    for key, values in axes.items():
        if not values:
            raise ParameterError(f"parameter {key!r} has no values in the grid; give at least one")
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ParameterError(f"seeds must be a whole number >= 1, got {seeds!r}")
        if len(axes.get("seed", [])) > 1:
            raise ParameterError(
                "give the seeds once: either --seeds N (seed, seed + 1, ...) or -p seed=a,b,c, not both"
            )
        axes.pop("seed", None)
        axes["seed"] = [first_seed + i for i in range(seeds)]
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(axes[k] for k in keys))]


def _name_part(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=repr)
    text = _UNSAFE.sub("_", text).strip("_.") or "_"
    return text if len(text) <= _NAME_VALUE_MAX else text[: _NAME_VALUE_MAX - 1] + "~"


def sweep_folder_name(notebook: str, values: Mapping[str, Any], keys: Sequence[str]) -> str:
    """``<notebook>-<key>=<value>-...-<8 hex>``: readable ``keys``, and the hash of all ``values``.

    The hash (``parameters_digest``, as in ``run_folder_name``) makes names of different value
    sets distinct however values are shortened; the same values always give the same name.
    """
    parts = [notebook, *(f"{k}={_name_part(values.get(k))}" for k in keys), parameters_digest(values)]
    return "-".join(parts)


@dataclass(frozen=True)
class Combination:
    """One validated run of a sweep: its swept values, the runner's plan and its folder name."""

    swept: dict[str, Any]
    plan: _Plan
    folder: str

    @property
    def values(self) -> dict[str, Any]:
        return self.plan.values


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: nothing about it can be refused any more; nothing exists yet."""

    source: Path
    profile: str
    grid: dict[str, list[Any]]
    combinations: list[Combination]
    source_sha256: str
    keys: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.source.stem


def plan_sweep(
    notebook: str | os.PathLike,
    grid: Mapping[str, Sequence[Any] | Any] | None = None,
    *,
    seeds: int | None = None,
    profile: str = "smoke",
    env: Mapping[str, str | None] | None = None,
) -> SweepPlan:
    """Expand and validate a sweep before anything runs (no folder, no cluster, no kernel).

    ``grid`` maps a parameter to its values (a single non-list value is one value; a list-typed
    parameter's values are lists: ``{"entities": [["M-1"], ["M-2"]]}``). Every combination is
    checked against the notebook's declarations (type, choices, range); ``ParameterError`` lists
    every problem, and names a combination that the grid holds twice.
    """
    source = Path(notebook)
    specs = notebook_parameters(source)  # RunnerError for a missing or unreadable notebook
    kernel_environment(0, env, base={})  # refuse a malformed env now, not in a worker
    axes: dict[str, list[Any]] = {}
    for key, values in (grid or {}).items():
        axes[key] = list(values) if isinstance(values, (list, tuple)) else [values]
    if seeds is not None and "seed" not in specs:
        raise ParameterError(f"{source.name} declares no 'seed' parameter, so --seeds cannot vary it")
    first = axes.get("seed", [specs["seed"].default if "seed" in specs else 0])
    first_seed = first[0] if len(first) == 1 and isinstance(first[0], int) and not isinstance(first[0], bool) else 0
    combos = expand_grid(axes, seeds, first_seed)
    injected = validate_jobs([(source.stem, specs, combo) for combo in combos], None, profile)
    resolved = source.resolve()
    order = [name for name in specs if name in combos[0] and name != "seed"]
    order += ["seed"] if "seed" in combos[0] else []  # names read <notebook>-<setting>-seed=N-<hash>
    plans = []
    seen: dict[str, dict[str, Any]] = {}
    for combo, own in zip(combos, injected, strict=True):
        plan = _Plan(resolved, own, effective_parameters(specs, own))
        digest = parameters_digest(plan.values)
        if digest in seen:
            raise ParameterError(
                f"the grid holds the same run twice: {seen[digest]} and {combo} give equal values; list each value once"
            )
        seen[digest] = combo
        swept = {k: own.get(k, combo[k]) for k in order}
        plans.append(Combination(swept, plan, sweep_folder_name(source.stem, plan.values, order)))
    sha = hashlib.sha256(resolved.read_bytes()).hexdigest()
    return SweepPlan(resolved, profile, axes, plans, sha, order)


# --------------------------------------------------------------------------- records on disk


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def _same_values(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return json.dumps(_jsonable(a), sort_keys=True) == json.dumps(_jsonable(b), sort_keys=True)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=True))
        os.replace(tmp, path)  # a reader never sees half a file
    finally:
        tmp.unlink(missing_ok=True)


def read_record(folder: Path) -> dict[str, Any] | None:
    """The ``run.json`` of a run folder, or ``None`` when absent or unreadable."""
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def completed(folder: Path, values: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record of a finished run of ``values`` in ``folder``: status ok, the same parameter
    values, and a readable ``metrics.json``; ``None`` otherwise (the run must be done again)."""
    record = read_record(folder)
    if record is None or record.get("status") != "ok" or not _same_values(record.get("parameters", {}), values):
        return None
    try:
        json.loads((folder / METRICS).read_text())
    except (OSError, ValueError):
        return None
    return record


# --------------------------------------------------------------------------- one task (in a worker)


class _TaskControl(_Control):
    """The runner's control, which also notes whether any cell started: a run that failed before
    its first cell failed to start its kernel (the kernel died or timed out before replying)."""

    def __init__(self) -> None:
        self.cell_started = False
        super().__init__()

    @property
    def running(self) -> tuple[int, str | None] | None:
        return self._running

    @running.setter
    def running(self, value: tuple[int, str | None] | None) -> None:
        self._running = value
        if value is not None:
            self.cell_started = True


# The runs in progress in this worker process, per sweep, so that Ctrl-C on the client can stop
# their kernels (``_stop_sweep``, sent with ``Client.run``); sweeps stopped here start no new run.
_ACTIVE: dict[str, set[_TaskControl]] = {}
_STOPPED: set[str] = set()
_REGISTRY = threading.Lock()


def _register(sweep_id: str, control: _TaskControl) -> bool:
    with _REGISTRY:
        if sweep_id in _STOPPED:
            return False
        _ACTIVE.setdefault(sweep_id, set()).add(control)
        return True


def _unregister(sweep_id: str, control: _TaskControl) -> None:
    with _REGISTRY:
        _ACTIVE.get(sweep_id, set()).discard(control)


def _stop_sweep(sweep_id: str, kill: bool = False) -> int:
    """(Runs in each worker.) No new run of ``sweep_id`` starts here; SIGINT (or SIGKILL) the
    kernels of its running ones. Returns how many were running."""
    with _REGISTRY:
        _STOPPED.add(sweep_id)
        controls = list(_ACTIVE.get(sweep_id, ()))
    for control in controls:
        control.kill() if kill else control.interrupt()
    return len(controls)


def dask_setup(worker: Any) -> None:
    """Dask preload hook of our ``LocalCluster``'s workers: ignore SIGINT. A Ctrl-C in the
    terminal reaches every process of its group, workers included; the client handles it and
    stops the kernels through ``_stop_sweep``, which a worker killed by the same Ctrl-C could not."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _quiet_shutdown_logs() -> None:
    """Run on each of our local workers just before the cluster closes: Dask's own loggers report
    nothing below CRITICAL from then on (see ``_execute``)."""
    import logging

    names = {"distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def kernel_start_failed(result: Any, control: _TaskControl) -> bool:
    """Whether a failed run failed while starting its kernel: no cell ever started, it was not
    cancelled, and its folder could be created (``_run_one`` reports that before any kernel)."""
    return (
        result is not None
        and result.status == "failed"
        and not control.cell_started
        and not control.cancelled.is_set()
        and not str(result.error).startswith("cannot create its run folder")
    )


def _place(run_dir: Path, final: Path, attempts: Path) -> None:
    """Move a finished run folder to ``final`` in one rename, replacing a previous run there."""
    for _ in range(20):
        try:
            os.rename(run_dir, final)  # atomic; refused while ``final`` exists and is not empty
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        aside = attempts / f"replaced-{uuid.uuid4().hex[:12]}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(final, aside)
        shutil.rmtree(aside, ignore_errors=True)
    raise OSError(f"could not move {run_dir} to {final}: another process keeps writing there")


def _not_run(combo_folder: str, values: Mapping[str, Any], reason: str) -> dict[str, Any]:
    return {"folder": combo_folder, "status": "not run", "error": reason, "parameters": dict(values)}


def run_task(
    plan: _Plan,
    out: str,
    folder: str,
    swept: Mapping[str, Any],
    *,
    kernel: str = DEFAULT_KERNEL,
    env: Mapping[str, str | None] | None = None,
    sweep_id: str = "",
    source_sha256: str = "",
    force: bool = False,
) -> dict[str, Any]:
    """Run one combination into ``out/folder`` (a Dask task; also callable directly). Idempotent.

    Returns the run's record (what ``run.json`` holds). A combination already done (by this
    sweep, when Dask reruns a task whose worker died after it finished; or earlier, unless
    ``force``) is not run again. The run executes in a fresh folder under ``out/.attempts/``,
    is retried once with a fresh kernel when its kernel failed to start, and is moved to
    ``out/folder`` once it has ended. Never raises for a failure inside the notebook.
    """
    root = Path(out)
    final = root / folder
    record = read_record(final)
    if record is not None and completed(final, plan.values) is not None:
        if (sweep_id and record.get("sweep_id") == sweep_id) or not force:
            return {**record, "skipped": record.get("sweep_id") != sweep_id}
    if not plan.source.is_file() or not root.is_dir():
        missing = plan.source if not plan.source.is_file() else root
        return _not_run(
            folder,
            plan.values,
            f"{missing} does not exist on worker {socket.gethostname()}: on a cluster, the notebook and --out "
            "must be on a filesystem every worker mounts at the same path",
        )
    attempts_dir = root / ATTEMPTS
    first_error: str | None = None
    attempts = 0
    while True:
        attempts += 1
        attempt_root = attempts_dir / f"{folder}.{uuid.uuid4().hex[:8]}"
        control = _TaskControl()
        if not _register(sweep_id, control):
            return _not_run(folder, plan.values, "interrupted (Ctrl-C) before it started")
        try:
            result = _run_one(plan, attempt_root, kernel, env, control, None)
        finally:
            _unregister(sweep_id, control)
        if result is None:  # Ctrl-C came before the kernel started
            shutil.rmtree(attempt_root, ignore_errors=True)
            return _not_run(folder, plan.values, "interrupted (Ctrl-C) before it started")
        if attempts == 1 and kernel_start_failed(result, control):
            first_error = result.error
            shutil.rmtree(attempt_root, ignore_errors=True)
            time.sleep(RETRY_PAUSE_S)
            continue
        break
    run_dir = result.output_notebook.parent
    if result.status != "ok" and (run_dir / METRICS).exists():
        # whatever the notebook wrote before it stopped must not pass for a finished run's metrics
        os.replace(run_dir / METRICS, run_dir / INCOMPLETE_METRICS)
    record = {
        "notebook": plan.name,
        "source": str(plan.source),
        "source_sha256": source_sha256,
        "executed_notebook": result.output_notebook.name,
        "status": result.status,
        "error": result.error,
        "parameters": plan.values,
        "swept": dict(swept),
        "profile": plan.values.get("profile"),
        "seconds": round(result.seconds, 3),
        "attempts": attempts,
        "first_attempt_error": first_error,
        "ran_in": str(run_dir),
        "sweep_id": sweep_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "finished": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    try:
        _write_json(run_dir / RECORD, record)
        _place(run_dir, final, attempts_dir)
    except OSError as exc:  # disk full, folder removed meanwhile: say so (the sweep lists it as not ok)
        problem = f"{result.error or 'ok'}; could not be saved: {exc.strerror or exc}"
        return {**record, "status": "failed", "error": problem, "folder": folder, "skipped": False}
    shutil.rmtree(attempt_root, ignore_errors=True)  # now empty
    return {**record, "folder": folder, "skipped": False}


# --------------------------------------------------------------------------- the sweep (client side)


@contextlib.contextmanager
def _sweep_lock(root: Path):
    """One sweep at a time per folder: its ``.attempts/`` are then all this sweep's or stale."""
    path = root / LOCK
    handle = open(path, "a+")  # noqa: SIM115 (held for the whole sweep)
    try:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no lock, as documented
            pass
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunnerError(
                f"another sweep ({holder}) is running into {root}; wait for it, or pass --out with another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield
    finally:
        handle.close()


def _start_client(workers: int, scheduler: str | None, dashboard: bool) -> tuple[Any, Any, str]:
    """A Dask client on ``scheduler``, or on a new ``LocalCluster`` of ``workers`` processes."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise RunnerError(
                f"cannot reach the Dask scheduler at {scheduler}: {exc}; start one with `dask scheduler` "
                "and workers with `dask worker <address>`, or drop --scheduler to use local workers"
            ) from None
        n = len(client.scheduler_info().get("workers", {}))
        return client, None, f"scheduler {scheduler} ({n} worker(s) now)"
    cluster = LocalCluster(
        n_workers=workers,
        processes=True,
        threads_per_worker=1,
        dashboard_address=":8787" if dashboard else ":0",  # taken: distributed picks a free port
        preload=["tgad_lite.notebooks.sweep"],  # dask_setup: workers leave Ctrl-C to the client
        silence_logs=logging.ERROR,
    )
    return Client(cluster), cluster, f"LocalCluster of {workers} worker process(es), 1 thread each"


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def dashboard_line(client: Any) -> str:
    """Where the Dask dashboard is, or why there is none. The scheduler serves a page at the
    dashboard address even without bokeh (saying to install it), so ask the scheduler's process
    whether bokeh is there: a missing bokeh is a note, not a failure."""
    try:
        link = client.dashboard_link if "dashboard" in client.scheduler_info().get("services", {}) else ""
        has_bokeh = client.run_on_scheduler(_has_bokeh)
    except Exception:  # noqa: BLE001 (a scheduler that cannot say: no dashboard to offer)
        link, has_bokeh = "", False
    if link and has_bokeh:
        return f"dashboard: {link}"
    if not has_bokeh:
        return "dashboard: not available (bokeh is not installed where the scheduler runs; `pip install bokeh` there)"
    return "dashboard: not available (the scheduler serves none)"


def _check_remote_kernel(client: Any, kernel: str) -> None:
    def has_kernel(name: str) -> bool:
        from jupyter_client.kernelspec import KernelSpecManager

        return name in KernelSpecManager().find_kernel_specs()

    found = client.run(has_kernel, kernel)
    missing = [address for address, ok in found.items() if not ok]
    if missing:
        raise RunnerError(
            f"Jupyter kernel {kernel!r} is not installed on worker(s) {', '.join(missing)}; install it there with "
            f"`python -m ipykernel install --sys-prefix --name {kernel}`"
        )


def _wait(futures: Sequence[Any], timeout: float) -> None:
    from distributed import wait

    with contextlib.suppress(TimeoutError):
        wait(list(futures), timeout=timeout)


def _stop(client: Any, futures: Sequence[Any], sweep_id: str) -> None:
    """After Ctrl-C: no new run starts; SIGINT the running kernels, SIGKILL them after the grace
    period (or at a second Ctrl-C); wait for the runs to save their partial notebooks."""
    with contextlib.suppress(Exception):
        client.run(_stop_sweep, sweep_id)
    try:
        _wait(futures, INTERRUPT_GRACE_S)
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: kill now
    with contextlib.suppress(Exception):
        client.run(_stop_sweep, sweep_id, kill=True)
    for _ in range(3):  # a third Ctrl-C must not leave a notebook half saved
        try:
            _wait(futures, KILL_WAIT_S)
            break
        except KeyboardInterrupt:
            continue
    client.cancel([f for f in futures if not f.done()])


def _task_record(future: Any, combo: Combination) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 (KilledWorker, a lost worker, a bug: a failed run, not a crash)
        name = type(exc).__name__
        if name == "KilledWorker":
            reason = "KilledWorker: its worker process died each time it ran it; rerun the sweep to retry it"
        else:
            reason = f"{name}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        return _not_run(combo.folder, combo.values, reason) | {"status": "failed"}


def _execute(
    plan: SweepPlan,
    todo: Sequence[Combination],
    root: Path,
    *,
    workers: int,
    scheduler: str | None,
    kernel: str,
    env: Mapping[str, str | None] | None,
    force: bool,
    progress: bool,
    dashboard: bool,
    say: Any,
    timings: dict[str, float],
) -> tuple[dict[str, dict[str, Any]], bool]:
    """Submit ``todo`` as Dask tasks; return ``({folder: record}, interrupted)``. Adds to ``timings``
    the seconds spent starting (or reaching) the cluster, running the tasks and closing it."""
    from distributed import as_completed

    from tgad_lite.progress import Progress

    sweep_id = uuid.uuid4().hex
    records: dict[str, dict[str, Any]] = {}
    client, cluster = None, None
    interrupted = False
    clock = time.perf_counter()
    try:
        client, cluster, where = _start_client(workers, scheduler, dashboard)
        if scheduler:
            _check_remote_kernel(client, kernel)
        say(f"dask: {where}")
        say(dashboard_line(client))
        timings["cluster_start"], clock = time.perf_counter() - clock, time.perf_counter()
        futures = {}
        for i, combo in enumerate(todo):
            future = client.submit(
                run_task,
                combo.plan,
                str(root),
                combo.folder,
                combo.swept,
                kernel=kernel,
                env=env,
                sweep_id=sweep_id,
                source_sha256=plan.source_sha256,
                force=force,
                key=f"sweep-{plan.name}-{sweep_id[:8]}-{i}",
                priority=len(todo) - i,  # in grid order
                pure=False,
            )
            futures[future] = combo
        bar = Progress(len(todo), f"sweep {plan.name}", enabled=progress, every=1)
        counts = {"ok": 0, "failed": 0}
        try:
            for future in as_completed(list(futures)):
                record = _task_record(future, futures[future])
                records[futures[future].folder] = record
                counts["ok" if record.get("status") == "ok" else "failed"] += 1
                bar.update(**counts)
        except KeyboardInterrupt:
            interrupted = True
            say("interrupted: stopping the running kernels and saving their notebooks...")
            _stop(client, list(futures), sweep_id)
            for future, combo in futures.items():
                if combo.folder not in records and future.done() and future.status == "finished":
                    records[combo.folder] = _task_record(future, combo)
        finally:
            bar.close()
            timings["runs"], clock = time.perf_counter() - clock, time.perf_counter()
    finally:
        if client is not None and cluster is not None:
            # Our own cluster is going away on purpose: a worker may still send its heartbeat to the
            # scheduler that just closed and log that as an ERROR with a traceback (a race seen after
            # Ctrl-C). Nothing is lost then, so the workers say nothing more while they shut down.
            with contextlib.suppress(Exception):
                client.run(_quiet_shutdown_logs)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=10)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=10)
        timings["cluster_close"] = time.perf_counter() - clock
    return records, interrupted


def _local_env(env: Mapping[str, str | None] | None) -> dict[str, str | None]:
    """Local workers: the data folders made absolute here, whatever a worker's directory."""
    out = dict(env or {})
    for key in (MIRROR_ENV, DATA_DIR_ENV):
        if key not in out and os.environ.get(key, "").strip():
            out[key] = os.path.abspath(os.path.expanduser(os.environ[key].strip()))
    return out


def _cpus() -> int:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))  # the CPUs this process may use (a container's share)
    return os.cpu_count() or 1


def worker_kernel_env(env: Mapping[str, str | None] | None, workers: int | None = None) -> dict[str, str | None]:
    """``env`` for each kernel of a sweep, with Dask's worker-process variables undone.

    A kernel inherits its worker's environment, which Dask extends with its own settings
    (``distributed.nanny.pre-spawn-environ``: ``MALLOC_TRIM_THRESHOLD_``, ``OMP_NUM_THREADS``...).
    For every such variable that ``env`` does not name: on local workers (``workers`` given), the
    caller's value, else unset, except the thread counts, which share the CPUs out over the
    workers (``cpus // workers``, at least 1); on a cluster (``workers=None``), the thread counts
    stay the worker's and the others are unset.
    """
    import dask

    out = dict(env or {})
    names: set[str] = set()
    for key in DASK_WORKER_ENVIRON:
        names |= {str(name) for name in (dask.config.get(key, None) or {})}
    for name in sorted(names - set(out)):
        if name in THREAD_VARIABLES:
            if workers is not None:
                out[name] = os.environ.get(name) or str(max(1, _cpus() // workers))
        else:
            out[name] = os.environ.get(name) if workers is not None else None
    return out


def default_out(notebook: str | os.PathLike) -> Path:
    """``runs/sweep-<notebook>``: a stable folder, so running the same sweep again resumes it."""
    return Path("runs") / f"sweep-{Path(notebook).stem}"


def sweep(
    notebook: str | os.PathLike,
    grid: Mapping[str, Sequence[Any] | Any] | None = None,
    *,
    seeds: int | None = None,
    out: str | os.PathLike | None = None,
    profile: str = "smoke",
    workers: int = DEFAULT_WORKERS,
    scheduler: str | None = None,
    force: bool = False,
    kernel: str = DEFAULT_KERNEL,
    env: Mapping[str, str | None] | None = None,
    metrics: Sequence[str] | None = None,
    over: Sequence[str] | None = None,
    progress: bool = True,
    verbose: bool = True,
    dashboard: bool = True,
) -> Any:
    """Run ``notebook`` for every combination of ``grid`` (x ``seeds``) on Dask; return the table.

    ``grid``: ``{parameter: [values]}``; ``seeds=N`` adds ``seed = s, s + 1, ...`` (``s``: the
    grid's single seed or the notebook's default). Every combination is validated before any
    folder, cluster or kernel exists (``ParameterError``). Runs go to ``out`` (default
    ``runs/sweep-<notebook>``, see the module doc) on a ``LocalCluster`` of ``workers`` processes,
    or on the workers of ``scheduler`` (``"tcp://host:8786"``; the notebook and ``out`` must then
    be on a filesystem all workers share, at the same path). Combinations already done there are
    skipped unless ``force``. ``env`` is added to each kernel's environment (``None`` removes a
    variable). ``metrics`` selects metrics (flattened names, ``*`` wildcards; default all numeric
    ones); ``over`` the parameters averaged over (default seed and entity parameters).

    Returns the aggregate (``aggregate_runs``: a row per setting and metric with n, mean, std),
    with ``attrs["runs"]`` (one row per run), ``attrs["out"]`` and ``attrs["timings"]`` (seconds
    spent validating, starting the cluster, running, closing it, writing the tables); writes ``runs.csv`` and
    ``summary.csv`` into ``out``. A failing run is a row with its error, not an exception.
    Ctrl-C raises ``SweepInterrupted`` after stopping the kernels and writing the tables.
    """
    from tgad_lite.notebooks.aggregate import DEFAULT_OVER

    entered = time.perf_counter()
    if scheduler is None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise RunnerError(f"workers must be a whole number >= 1, got {workers!r}")
    if profile not in PROFILES:
        raise ParameterError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    plan = plan_sweep(notebook, grid, seeds=seeds, profile=profile, env=env)
    if not scheduler:
        check_kernel(kernel)
    timings = {"validate": time.perf_counter() - entered}
    root = Path(out) if out is not None else default_out(plan.source)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunnerError(
            f"cannot create the sweep folder {root}: {exc.strerror or exc}; "
            "pass --out DIR with a folder you can write to"
        ) from None
    say = (lambda text: print(text, flush=True)) if verbose else (lambda text: None)
    with _sweep_lock(root):
        shutil.rmtree(root / ATTEMPTS, ignore_errors=True)  # left by a killed sweep: this lock's holder is gone
        done = {} if force else {c.folder: completed(root / c.folder, c.values) for c in plan.combinations}
        todo = [c for c in plan.combinations if not done.get(c.folder)]
        _write_sweep_file(root, plan, started=True)
        say(
            f"sweep {plan.source.name}: {len(plan.combinations)} run(s), profile {plan.profile}, "
            f"{len(plan.combinations) - len(todo)} already done, {len(todo)} to run -> {root}"
        )
        older = sum(1 for r in done.values() if r and r.get("source_sha256") not in (None, plan.source_sha256))
        if older:
            say(f"note: {older} finished run(s) were made with another version of the notebook; --force reruns them")
        records: dict[str, dict[str, Any]] = {}
        interrupted = False
        started = time.perf_counter()
        if todo:
            records, interrupted = _execute(
                plan,
                todo,
                root,
                workers=workers,
                scheduler=scheduler,
                kernel=kernel,
                env=worker_kernel_env(env) if scheduler else worker_kernel_env(_local_env(env), workers),
                force=force,
                progress=progress,
                dashboard=dashboard,
                say=say,
                timings=timings,
            )
        clock = time.perf_counter()
        shutil.rmtree(root / ATTEMPTS, ignore_errors=True)  # attempts of killed workers
        _write_sweep_file(root, plan, started=False)
        table = _tables(plan, root, records, over=DEFAULT_OVER if over is None else over, metrics=metrics)
        say(_report(table, records, time.perf_counter() - started, interrupted))
        timings["tables"] = time.perf_counter() - clock
    table.attrs["timings"] = {key: round(value, 3) for key, value in timings.items()}
    if interrupted:
        raise SweepInterrupted(table, root)
    return table


def _write_sweep_file(root: Path, plan: SweepPlan, *, started: bool) -> None:
    previous = {}
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads((root / SWEEP_FILE).read_text())
    now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    _write_json(
        root / SWEEP_FILE,
        {
            "notebook": plan.name,
            "source": str(plan.source),
            "source_sha256": plan.source_sha256,
            "profile": plan.profile,
            "grid": plan.grid,
            "keys": plan.keys,
            "runs": [{"folder": c.folder, "swept": c.swept} for c in plan.combinations],
            "started": now if started else previous.get("started"),
            "finished": None if started else now,
        },
    )


def _tables(
    plan: SweepPlan,
    root: Path,
    records: Mapping[str, Mapping[str, Any]],
    *,
    over: Sequence[str],
    metrics: Sequence[str] | None,
) -> Any:
    from tgad_lite.notebooks.aggregate import aggregate_runs, load_runs, write_csv

    runs = load_runs(root, [c.folder for c in plan.combinations], swept={c.folder: c.swept for c in plan.combinations})
    for folder, record in records.items():  # a run that never reached its folder: say why
        row = runs.index[runs["folder"] == folder]
        if len(row) and runs.loc[row[0], "status"] == "not run":
            runs.loc[row[0], ["status", "error"]] = [record.get("status", "failed"), record.get("error")]
    note = None
    try:
        table = aggregate_runs(runs, over=over, metrics=metrics)
    except RunnerError as exc:  # found only now that runs finished: keep every metric, say why
        note = f"{exc}; showing every metric"
        table = aggregate_runs(runs, over=over)
    write_csv(runs, root / RUNS_CSV)
    write_csv(table, root / SUMMARY_CSV)
    table.attrs["runs"] = runs
    table.attrs["out"] = str(root)
    table.attrs["note"] = note
    return table


def _report(table: Any, records: Mapping[str, Mapping[str, Any]], seconds: float, interrupted: bool) -> str:
    from tgad_lite.notebooks.aggregate import format_summary

    runs = table.attrs["runs"]
    counts = runs["status"].value_counts()
    known = ("ok", "failed", "interrupted", "not run")
    parts = [f"{int(counts.get(s, 0))} {s}" for s in known if s == "ok" or s in counts]
    parts += [f"{int(n)} {s}" for s, n in counts.items() if s not in known]
    head = f"{len(runs)} run(s): {', '.join(parts)}"
    ran = [r for r in records.values() if not r.get("skipped") and r.get("status") != "not run"]
    extra = [f"{len(ran)} ran in {seconds:.1f} s"]
    retried = sum(1 for r in ran if (r.get("attempts") or 1) > 1)
    if retried:
        extra.append(f"{retried} retried after a kernel start failure")
    lines = [f"{head} ({', '.join(extra)})", format_summary(table, runs)]
    if table.attrs.get("note"):
        lines.append(f"note: {table.attrs['note']}")
    root = Path(table.attrs["out"])
    lines.append(f"tables: {root / SUMMARY_CSV} (mean ± std per setting), {root / RUNS_CSV} (one row per run)")
    if interrupted:
        lines.append("interrupted: partial notebooks are saved and marked; run the same sweep again to resume")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sweep`` subcommand's options (``python -m tgad_lite.notebooks sweep --help``)."""
    parser.add_argument("notebook", help="notebook path, or its name or number prefix in --notebooks-dir (02)")
    parser.add_argument(
        "-p",
        "--parameter",
        dest="parameters",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="values of a parameter, comma-separated Python literals, e.g. -p impl=sparse,dense (all checked first)",
    )
    parser.add_argument(
        "--seeds", type=int, default=None, metavar="N", help="also vary seed: seed, seed+1, ..., N of them"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        metavar="K",
        help=f"local Dask worker processes, one run each at a time (default {DEFAULT_WORKERS})",
    )
    where.add_argument("--scheduler", default=None, metavar="ADDRESS", help="a running Dask scheduler, tcp://host:8786")
    parser.add_argument(
        "--out", type=Path, default=None, help="sweep folder (default runs/sweep-<notebook>; reruns resume)"
    )
    parser.add_argument("--profile", default="smoke", choices=PROFILES, help="smoke or full (default: smoke)")
    parser.add_argument("--force", action="store_true", help="rerun combinations already done in --out")
    parser.add_argument(
        "--metric",
        dest="metrics",
        action="append",
        default=None,
        metavar="NAME",
        help="aggregate only these metrics (flattened names, * wildcards; repeatable; default: all numeric)",
    )
    parser.add_argument(
        "--over",
        nargs="+",
        default=None,
        metavar="KEY",
        help="parameters averaged over (default: seed, entity, entities); the other swept ones make the settings",
    )
    parser.add_argument("--kernel", default=DEFAULT_KERNEL, help=f"Jupyter kernel (default: {DEFAULT_KERNEL})")
    parser.add_argument(
        "--notebooks-dir", type=Path, default=None, help="where a notebook given by name is looked up (./notebooks)"
    )


def _resolve_notebook(token: str, notebooks_dir: Path | None) -> Path:
    from tgad_lite.notebooks.cli import _default_notebooks_dir, find_notebooks, select_notebooks

    path = Path(token)
    if path.is_file():
        return path
    if path.suffix == ".ipynb" and (path.parent != Path(".") or notebooks_dir is None):
        raise RunnerError(f"notebook not found: {path}")
    found = select_notebooks(find_notebooks(notebooks_dir or _default_notebooks_dir()), [token])
    if len(found) != 1:
        names = ", ".join(p.stem for p in found)
        raise RunnerError(f"{token!r} names {len(found)} notebooks ({names}); give one name")
    return found[0]


def sweep_command(args: argparse.Namespace) -> int:
    """``python -m tgad_lite.notebooks sweep``: exit 0 all ok, 1 a run failed, 2 bad input (nothing
    ran, no folder created), 130 interrupted."""
    from tgad_lite.notebooks.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK

    try:
        notebook = _resolve_notebook(args.notebook, args.notebooks_dir)
        grid = parse_grid(args.parameters)
        if args.workers < 1:
            raise RunnerError(f"--workers must be 1 or more, got {args.workers}")
        table = sweep(
            notebook,
            grid,
            seeds=args.seeds,
            out=args.out,
            profile=args.profile,
            workers=args.workers,
            scheduler=args.scheduler,
            force=args.force,
            kernel=args.kernel,
            metrics=args.metrics,
            over=args.over,
            progress=True,
        )
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SweepInterrupted:
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted before any run started", file=sys.stderr)
        return EXIT_INTERRUPTED
    runs = table.attrs["runs"]
    return EXIT_OK if bool((runs["status"] == "ok").all()) else EXIT_FAILED


__all__ = [
    "Combination",
    "SweepInterrupted",
    "SweepPlan",
    "add_sweep_arguments",
    "completed",
    "dashboard_line",
    "default_out",
    "expand_grid",
    "kernel_start_failed",
    "parse_grid",
    "plan_sweep",
    "read_record",
    "run_task",
    "split_values",
    "sweep",
    "sweep_command",
    "sweep_folder_name",
    "worker_kernel_env",
]
