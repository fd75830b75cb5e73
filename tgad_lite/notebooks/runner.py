"""Execute notebooks with papermill, one kernel per run, without touching the caller's process state.

Each run gets:

- a folder ``<output_root>/<notebook>-<hash of its parameter values>/`` (``-2``, ``-3``... when a
  run with the same values is already there), created atomically, holding the executed
  ``<notebook>.ipynb``, the notebook's ``metrics.json`` and figures. The kernel's working
  directory is that folder and its ``output_dir`` parameter points there;
- its own environment dict, handed to the kernel at start: a copy of the caller's environment
  (never modified) plus ``PYTHONHASHSEED=<seed>`` (hashing repeats in the kernel),
  ``TGAD_PROGRESS=lines`` (a saved notebook holds a few progress lines, not a redrawn bar),
  ``MPLBACKEND`` = matplotlib's inline backend (figures are saved into the notebook whatever GUI
  backend the caller's shell selects), and ``TGAD_DATA_MIRROR``/``TGAD_DATA_DIR`` made absolute;
- a verdict written into the executed notebook's metadata (``tgad_lite.status``: ``ok``,
  ``failed`` or ``interrupted``); a failed or interrupted notebook also gets a banner cell at the top.

Nothing here calls ``os.chdir`` or writes ``os.environ``, so runs may go in parallel
(``run_many(..., max_workers=N)``: threads, each driving its own kernel process). Ctrl-C
interrupts the running kernels (SIGINT, then SIGKILL after a grace period), saves each partial
notebook marked ``interrupted`` and raises ``RunInterrupted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tgad_lite.notebooks.errors import RunInterrupted, RunnerError
from tgad_lite.notebooks.parameters import (
    _escape_format,
    effective_parameters,
    notebook_parameters,
    parameters_digest,
    validate_jobs,
)

DEFAULT_KERNEL = "tgad-lite"
MIRROR_ENV = "TGAD_DATA_MIRROR"
DATA_DIR_ENV = "TGAD_DATA_DIR"
PROGRESS_ENV = "TGAD_PROGRESS"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
STATUS_KEY = "tgad_lite"  # notebook metadata key holding the runner's verdict
BANNER_TAG = "tgad-lite-status"
# After Ctrl-C: how long a kernel gets to stop on SIGINT before it is killed, then how long its
# run gets to save the partial notebook once the kernel is dead.
INTERRUPT_GRACE_S = 5.0
KILL_WAIT_S = 30.0
_INSTALL_HINT = (
    "install it with `make install`, or directly with `python -m ipykernel install --sys-prefix --name {kernel}`"
)


@dataclass(frozen=True)
class NotebookResult:
    """Outcome of one executed notebook.

    ``status`` is ``ok``, ``failed`` or ``interrupted``; ``error`` a one-line reason unless ok.
    ``metrics`` is the loaded ``metrics.json`` (``None`` unless ok). ``output_notebook`` is the
    executed copy (kept, and marked, when the run failed or was interrupted). ``parameters``
    holds every parameter value of the run (defaults and overrides; ``output_dir`` aside).
    """

    name: str
    status: str
    seconds: float
    output_notebook: Path
    metrics: dict[str, Any] | None
    error: str | None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"


@dataclass(frozen=True)
class NotebookJob:
    """One run for ``run_many``: a notebook and its own overrides (on top of the shared ones)."""

    path: Path
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    """A validated run: nothing about it can be refused any more."""

    source: Path
    injected: dict[str, Any]
    values: dict[str, Any]

    @property
    def name(self) -> str:
        return self.source.stem


# --------------------------------------------------------------------------- environment and folders


def kernel_environment(
    seed: int | None = 0,
    env: Mapping[str, str | None] | None = None,
    *,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment one run's kernel starts with; ``os.environ`` is read, never written.

    A copy of ``base`` (default ``os.environ``) with ``PYTHONHASHSEED=seed`` (``0`` when
    ``seed`` is None), ``TGAD_PROGRESS=lines`` and ``MPLBACKEND`` = the inline backend; then
    ``env``'s entries, which win (``None`` removes a variable). ``TGAD_DATA_MIRROR`` and
    ``TGAD_DATA_DIR`` are made absolute against the caller's working directory, because the
    kernel runs in its run folder. Raises ``RunnerError`` for a value that is not text.
    """
    out = dict(os.environ if base is None else base)
    out.update(
        {"PYTHONHASHSEED": str(0 if seed is None else seed), PROGRESS_ENV: "lines", "MPLBACKEND": INLINE_BACKEND}
    )
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not (value is None or isinstance(value, str)):
            raise RunnerError(f"env must map names to text (or None to unset), got {key!r}: {value!r}")
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    for key in (MIRROR_ENV, DATA_DIR_ENV):
        if out.get(key, "").strip():
            out[key] = os.path.abspath(os.path.expanduser(out[key].strip()))
    return out


def new_run_dir(runs_dir: str | os.PathLike, now: _dt.datetime | None = None) -> Path:
    """Create and return a fresh ``runs_dir/<YYYYmmdd-HHMMSS>`` folder (``-2``, ``-3``... if taken)."""
    root = Path(runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        candidate = root / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()  # atomic: two runners started in the same second get two folders
            return candidate
        except FileExistsError:
            continue
    raise RunnerError(f"could not create a fresh run folder under {root}")


def run_folder_name(name: str, values: Mapping[str, Any]) -> str:
    """``<notebook>-<8 hex digits>``: the folder of a run of ``name`` with parameter ``values``."""
    return f"{name}-{parameters_digest(values)}"


def _claim_folder(root: Path, plan: _Plan) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    base = run_folder_name(plan.name, plan.values)
    for attempt in range(1, 1000):
        candidate = root / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            candidate.mkdir()  # atomic: concurrent runs with equal values get distinct folders
            return candidate
        except FileExistsError:
            continue
    raise RunnerError(f"could not create a fresh run folder for {plan.name} under {root}")


def check_kernel(kernel: str) -> None:
    """Raise ``RunnerError`` with the install command when Jupyter kernel ``kernel`` is missing."""
    from jupyter_client.kernelspec import KernelSpecManager

    installed = KernelSpecManager().find_kernel_specs()
    if kernel not in installed:
        have = ", ".join(sorted(installed)) or "none"
        raise RunnerError(
            f"Jupyter kernel {kernel!r} is not installed (installed: {have}); " + _INSTALL_HINT.format(kernel=kernel)
        )


# --------------------------------------------------------------------------- validation (nothing runs)


def _as_job(item: str | os.PathLike | NotebookJob | tuple) -> NotebookJob:
    if isinstance(item, NotebookJob):
        return NotebookJob(Path(item.path), dict(item.parameters or {}))
    if isinstance(item, tuple):
        if len(item) != 2 or not isinstance(item[1], Mapping | None):
            raise RunnerError(f"a job is a path, a (path, {{name: value}}) pair or a NotebookJob; got {item!r}")
        return NotebookJob(Path(item[0]), dict(item[1] or {}))
    return NotebookJob(Path(item))


def _plan(
    jobs: Sequence[NotebookJob],
    *,
    profile: str,
    parameters: Mapping[str, Any] | None,
    env: Mapping[str, str | None] | None = None,
) -> list[_Plan]:
    """Validate every job before anything runs (``ParameterError`` lists every problem)."""
    kernel_environment(0, env, base={})  # refuse a malformed env= now, not in a worker
    specs = {job.path: notebook_parameters(job.path) for job in jobs}
    injected = validate_jobs([(job.path.stem, specs[job.path], job.parameters) for job in jobs], parameters, profile)
    return [
        _Plan(job.path.resolve(), own, effective_parameters(specs[job.path], own))
        for job, own in zip(jobs, injected, strict=True)
    ]


# --------------------------------------------------------------------------- one kernel, one run


class _Control:
    """The link between a run's worker thread and the thread that handles Ctrl-C."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._process: Any = None  # the kernel's subprocess.Popen
        self._pgid: int | None = None
        # (index, id) of the cell the kernel is executing, None between cells: after a kill or a
        # crash it names the cell that never finished (papermill marks it "completed").
        self.running: tuple[int, str | None] | None = None

    def attach(self, manager: Any) -> None:
        provisioner = getattr(manager, "provisioner", None)
        with self._lock:
            self._process = getattr(provisioner, "process", None)
            self._pgid = getattr(provisioner, "pgid", None)
        if self.cancelled.is_set():  # Ctrl-C came while the kernel was starting
            self.kill()

    def send(self, signum: int) -> None:
        with self._lock:
            process, pgid = self._process, self._pgid
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # the whole group: the kernel runs in its own session, with any workers it started
            if pgid and hasattr(os, "killpg"):
                os.killpg(pgid, signum)
            else:
                process.send_signal(signum)

    def interrupt(self) -> None:
        self.cancelled.set()
        self.send(signal.SIGINT)

    def kill(self) -> None:
        self.send(getattr(signal, "SIGKILL", signal.SIGTERM))

    def ensure_dead(self, timeout: float = 10.0) -> None:
        """No orphan: kill the kernel if papermill's own shutdown did not, and reap it."""
        with self._lock:
            process = self._process
        if process is None:
            return
        if process.poll() is None:
            self.kill()
        with contextlib.suppress(Exception):
            process.wait(timeout)


class _Cancelled(Exception):
    """Raised between cells once Ctrl-C was pressed, so no further cell starts."""


def _manager_class(env: Mapping[str, str], control: _Control) -> type:
    """A kernel manager that starts its kernel with ``env`` and reports it to ``control``."""
    from jupyter_client import AsyncKernelManager

    class RunKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            if control.cancelled.is_set():
                raise _Cancelled("interrupted before the kernel started")
            kw["env"] = dict(env)  # replaces os.environ for this kernel only
            await super().start_kernel(**kw)
            control.attach(self)

    return RunKernelManager


def _engine_options(workdir: Path, env: Mapping[str, str], control: _Control) -> dict[str, Any]:
    """nbclient options for one run: kernel env, kernel working directory, cancellation between
    cells, and encrypted local channels where pyzmq can (the kernel then stops warning, once per
    notebook, that its TCP traffic is plain text)."""
    import zmq
    from traitlets.config import Config

    def before_cell(cell: Any, cell_index: int, **_: Any) -> None:
        if control.cancelled.is_set():
            cell.setdefault("metadata", {}).setdefault("papermill", {})["start_time"] = None  # it never ran
            raise _Cancelled("interrupted before this cell started")
        control.running = (cell_index, cell.get("id"))

    def after_cell(**_: Any) -> None:
        control.running = None

    options: dict[str, Any] = {
        "kernel_manager_class": _manager_class(env, control),
        # nbclient starts the kernel in resources' metadata.path: papermill's cwd= would chdir
        # the whole process instead.
        "resources": {"metadata": {"path": str(workdir)}},
        "on_cell_start": before_cell,
        "on_cell_executed": after_cell,
    }
    if zmq.has("curve"):
        options["config"] = Config({"KernelManager": {"transport_encryption": "auto"}})
    return options


def _close_thread_loop() -> None:
    """Close the event loop nbclient left on this worker thread (a reused thread gets a new one)."""
    from jupyter_core.utils import ensure_event_loop

    with contextlib.suppress(Exception):
        loop = ensure_event_loop()
        if loop.is_running():
            return
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    asyncio.set_event_loop(None)


def _short(text: str, limit: int = 160) -> str:
    lines = str(text).strip().splitlines()
    first = lines[0] if lines else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _run_one(
    plan: _Plan,
    output_root: Path,
    kernel: str,
    env: Mapping[str, str | None] | None,
    control: _Control,
    on_start: Callable[[str], None] | None,
    on_result: Callable[[NotebookResult], None] | None = None,
) -> NotebookResult | None:
    """Execute one validated run (worker thread). ``None`` when Ctrl-C came before it started;
    never raises for a failure inside the notebook."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    if control.cancelled.is_set():
        return None
    try:
        out_dir = _claim_folder(output_root.resolve(), plan)
    except OSError as exc:  # read-only or missing parent: nothing ran, nothing to keep
        problem = f"cannot create its run folder under {output_root}: {exc.strerror or exc}; choose a writable folder"
        return NotebookResult(plan.name, "failed", 0.0, output_root / plan.name, None, problem, plan.values)
    out_nb = out_dir / f"{plan.name}.ipynb"
    seed = plan.values.get("seed")
    kernel_env = kernel_environment(seed if isinstance(seed, int) else None, env)
    if on_start is not None:
        on_start(plan.name)
    error: str | None = None
    cancelled_during = False
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            _escape_format(plan.source),
            _escape_format(out_nb),
            parameters={**plan.injected, "output_dir": str(out_dir)},
            kernel_name=kernel,
            log_output=False,
            progress_bar=False,
            **_engine_options(out_dir, kernel_env, control),
        )
    except PapermillExecutionError as exc:
        error = f"cell In [{exc.exec_count}]: {exc.ename}: {_short(exc.evalue)}"
    except Exception as exc:  # kernel died or was killed, bad notebook file...: report, keep going
        error = f"{type(exc).__name__}: {_short(str(exc))}"
    finally:
        cancelled_during = control.cancelled.is_set()
        control.ensure_dead()
        _close_thread_loop()
    seconds = time.perf_counter() - started

    metrics: dict[str, Any] | None = None
    if cancelled_during and error is not None:
        status = "interrupted"
        # the kernel stopped on SIGINT in a cell ("cell In [n]"), was killed, or had not started a cell
        cell = re.match(r"cell In \[\w*\]", error)
        error = "interrupted (Ctrl-C)" + (f" in {cell.group(0)}" if cell else "")
    elif error is None:
        metrics_path = out_dir / "metrics.json"
        if not metrics_path.is_file():
            error = (
                "finished but wrote no metrics.json (its last cell should call "
                "tgad_lite.repro.write_metrics(output_dir, ...))"
            )
        else:
            try:
                metrics = json.loads(metrics_path.read_text())
            except (OSError, ValueError) as exc:
                error = f"metrics.json is unreadable: {_short(str(exc))}"
        status = "ok" if error is None else "failed"
    else:
        status = "failed"
    try:
        status, error = _mark_notebook(out_nb, plan, status, error, seconds, control.running)
    except OSError as exc:  # disk full, folder removed meanwhile: the verdict still reaches the caller
        error = f"{error or 'ok'}; the executed notebook could not be marked: {exc.strerror or exc}"
    result = NotebookResult(plan.name, status, seconds, out_nb, metrics if status == "ok" else None, error, plan.values)
    if on_result is not None:  # here, not in the waiting thread: before this worker starts its next run
        on_result(result)
    return result


# --------------------------------------------------------------------------- the saved notebook's verdict


def _banner(status: str, error: str | None, name: str) -> str:
    if status == "interrupted":
        return (
            f"**Run interrupted: this notebook did not complete.** {error}. The cell that was running "
            "when it stopped is marked with a KeyboardInterrupt; the cells after it did not run, so "
            "their outputs are missing and any figures or metrics.json may be partial. Rerun with "
            f"`python -m tgad_lite.notebooks run --only {name}`."
        )
    return (
        f"**Run failed.** {error}. Outputs up to the failing cell are kept for diagnosis; the cells "
        "after it did not run."
    )


def _mark_cells(nb: Any, status: str, running: tuple[int, str | None] | None) -> str | None:
    """Undo papermill's "completed" on cells that never finished or never started.

    ``running`` is the cell the kernel was executing when it was killed or died (``None`` if
    none). Returns the label of the cell where the run stopped (``In [n]``, or ``code cell k`` when
    the kernel died before numbering it).
    """
    import nbformat

    stopped_at = None
    cell = None
    if running is not None:
        index, cell_id = running
        by_id = [c for c in nb.cells if cell_id is not None and c.get("id") == cell_id]
        cell = by_id[0] if by_id else (nb.cells[index] if index < len(nb.cells) else None)
    if cell is not None and cell.cell_type == "code":
        info = cell.setdefault("metadata", {}).setdefault("papermill", {})
        if info.get("status") != "failed":  # the kernel was killed or died, so no error reached the cell
            info["status"], info["exception"] = "failed", True
            if status == "interrupted":
                ename = "KeyboardInterrupt"
                evalue = (
                    "the run was interrupted (Ctrl-C) while this cell was executing; "
                    "the kernel did not stop on SIGINT and was killed"
                )
            else:
                ename, evalue = "DeadKernelError", "the kernel died while this cell was executing"
            cell.outputs.append(nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[]))
        count = cell.get("execution_count")
        # A kernel that dies at once may never send the cell's execution count: name its position.
        position = [c for c in nb.cells if c.cell_type == "code"].index(cell) + 1
        stopped_at = f"In [{count}]" if count is not None else f"code cell {position}"
    for other in nb.cells:
        info = other.get("metadata", {}).get("papermill")
        if info is not None and not info.get("start_time") and info.get("status") == "completed":
            info["status"] = "pending"  # it never started
    return stopped_at


def _mark_notebook(
    out_nb: Path,
    plan: _Plan,
    status: str,
    error: str | None,
    seconds: float,
    running: tuple[int, str | None] | None = None,
) -> tuple[str, str | None]:
    """Write the run's verdict into ``out_nb`` (atomically); rebuild it from the source when
    papermill saved nothing readable (the kernel never started, or the file was cut short).
    Returns the final ``(status, error)``: the error names the interrupted cell where it could
    not be known before."""
    import nbformat

    try:
        nb = nbformat.read(out_nb, as_version=4)
    except Exception:
        nb = nbformat.read(plan.source, as_version=4)
        if status == "ok":  # cannot happen (papermill wrote it), but never claim a run we cannot show
            status, error = "failed", "the executed notebook could not be saved"
        error = f"{error}; no executed copy was saved, this is the source notebook"
    if status != "ok":
        stopped_at = _mark_cells(nb, status, running)
        if stopped_at is not None and "in cell " not in str(error):
            error = f"{error} in cell {stopped_at}"
        nb.cells = [c for c in nb.cells if BANNER_TAG not in c.get("metadata", {}).get("tags", [])]
        nb.cells.insert(
            0, nbformat.v4.new_markdown_cell(_banner(status, error, plan.name), metadata={"tags": [BANNER_TAG]})
        )
        nb.metadata.setdefault("papermill", {})["exception"] = True
    nb.metadata[STATUS_KEY] = {
        "status": status,
        "error": error,
        "seconds": round(seconds, 3),
        "parameters": plan.values,
        "finished": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    partial = out_nb.with_name(f".{out_nb.name}.partial")
    try:
        nbformat.write(nb, partial)
        os.replace(partial, out_nb)  # a reader never sees half a notebook
    finally:
        partial.unlink(missing_ok=True)
    return status, error


# --------------------------------------------------------------------------- several runs


def _stop(controls: Sequence[_Control], futures: Iterable[Future]) -> None:
    """After Ctrl-C: stop queued runs, SIGINT the running kernels, SIGKILL them after the grace
    period (or at a second Ctrl-C), then wait for the runs to save their partial notebooks."""
    futures = list(futures)
    for future in futures:
        future.cancel()
    for control in controls:
        control.interrupt()
    try:
        wait(futures, timeout=INTERRUPT_GRACE_S)
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: kill now
    for control in controls:
        control.kill()
    for _ in range(3):  # a third Ctrl-C must not leave a notebook half saved
        try:
            wait(futures, timeout=KILL_WAIT_S)
            return
        except KeyboardInterrupt:
            continue


def _execute(
    plans: Sequence[_Plan],
    output_root: Path,
    *,
    kernel: str,
    env: Mapping[str, str | None] | None,
    max_workers: int,
    on_start: Callable[[str], None] | None = None,
    on_result: Callable[[NotebookResult], None] | None = None,
) -> list[NotebookResult]:
    """Run validated plans on ``max_workers`` threads; results in plan order (see ``run_many``)."""
    controls = [_Control() for _ in plans]
    results: list[NotebookResult | None] = [None] * len(plans)
    executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tgad-run")
    futures: dict[Future, int] = {}
    interrupted = False
    try:
        for i, (plan, control) in enumerate(zip(plans, controls, strict=True)):
            futures[executor.submit(_run_one, plan, output_root, kernel, env, control, on_start, on_result)] = i
        pending = set(futures)
        # The calling thread only waits, so Ctrl-C always lands here and never inside papermill.
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                results[futures[future]] = future.result()
    except KeyboardInterrupt:
        interrupted = True
        _stop(controls, futures)
        for future, i in futures.items():
            if results[i] is None and future.done() and not future.cancelled() and future.exception() is None:
                results[i] = future.result()
        started = [r for r in results if r is not None]
        not_run = [p.name for p, r in zip(plans, results, strict=True) if r is None]
        raise RunInterrupted(started, not_run) from None
    finally:
        # After Ctrl-C the runs were given their time in _stop: do not hang on one that is stuck.
        executor.shutdown(wait=not interrupted, cancel_futures=True)
    return [r for r in results if r is not None]


def run_many(
    jobs: Iterable[str | os.PathLike | NotebookJob | tuple[str | os.PathLike, Mapping[str, Any]]],
    output_root: str | os.PathLike,
    *,
    profile: str = "smoke",
    parameters: Mapping[str, Any] | None = None,
    kernel: str = DEFAULT_KERNEL,
    env: Mapping[str, str | None] | None = None,
    max_workers: int = 1,
    on_start: Callable[[str], None] | None = None,
    on_result: Callable[[NotebookResult], None] | None = None,
) -> list[NotebookResult]:
    """Execute several notebooks, or one notebook with several parameter sets; results in job order.

    ``jobs``: notebook paths, ``(path, overrides)`` pairs or ``NotebookJob``s. ``parameters`` are
    shared overrides, applied to the notebooks that declare them; a job's own overrides win.
    Every job is validated before any folder or kernel exists (``ParameterError`` lists every
    problem). Runs go to ``output_root/<notebook>-<hash>/``, one thread per run up to
    ``max_workers`` (default 1: one after another), each with its own kernel, environment
    (``kernel_environment(seed, env)``) and working directory. ``on_start(name)`` and
    ``on_result(result)`` are called from the run's worker thread. A failure inside a notebook
    is a result with status ``failed``; Ctrl-C raises ``RunInterrupted`` once every kernel is
    stopped and every partial notebook saved.
    """
    jobs = [_as_job(job) for job in jobs]
    if not jobs:
        raise RunnerError("run_many needs at least one notebook")
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise RunnerError(f"max_workers must be a whole number >= 1, got {max_workers!r}")
    check_kernel(kernel)
    plans = _plan(jobs, profile=profile, parameters=parameters, env=env)
    return _execute(
        plans,
        Path(output_root),
        kernel=kernel,
        env=env,
        max_workers=max_workers,
        on_start=on_start,
        on_result=on_result,
    )


def run_notebook(
    path: str | os.PathLike,
    output_root: str | os.PathLike,
    *,
    profile: str = "smoke",
    parameters: Mapping[str, Any] | None = None,
    kernel: str = DEFAULT_KERNEL,
    env: Mapping[str, str | None] | None = None,
) -> NotebookResult:
    """Execute one notebook into ``output_root/<name>-<hash>/<name>.ipynb`` and load its metrics.

    ``parameters`` are overrides (already parsed values), checked against the notebook's
    parameters cell first: ``ParameterError`` is raised before any folder or kernel exists.
    ``env`` adds to (or, with ``None`` values, removes from) the kernel's copy of the caller's
    environment. A failure inside the notebook is returned as status ``failed`` with ``error``
    set; Ctrl-C raises ``RunInterrupted`` (a ``KeyboardInterrupt``) after saving the partial
    notebook. The caller's ``os.environ`` and working directory are left untouched.
    """
    (result,) = run_many([Path(path)], output_root, profile=profile, parameters=parameters, kernel=kernel, env=env)
    return result
