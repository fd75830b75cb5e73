"""``python -m tgad_lite.notebooks run|list|sweep``: run the notebooks into ``runs/<timestamp>/``.

``sweep`` runs one notebook over a grid of parameters on Dask (see ``tgad_lite.notebooks.sweep``).

Exit codes: 0 every notebook ok, 1 a notebook failed, 2 bad input (nothing ran, no folder was
created), 130 interrupted with Ctrl-C (partial notebooks saved and marked).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from tgad_lite.notebooks.errors import RunInterrupted, RunnerError
from tgad_lite.notebooks.parameters import PROFILES, format_parameter_table, notebook_parameters, parse_cli_parameters
from tgad_lite.notebooks.runner import (
    DEFAULT_KERNEL,
    NotebookJob,
    NotebookResult,
    _execute,
    _plan,
    check_kernel,
    new_run_dir,
)
from tgad_lite.notebooks.sweep import add_sweep_arguments, sweep_command  # dask is imported when a sweep runs

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def find_notebooks(notebooks_dir: str | Path) -> list[Path]:
    """The ``*.ipynb`` files directly in ``notebooks_dir``, sorted by name."""
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise RunnerError(f"notebooks folder not found: {folder} (pass --notebooks-dir DIR)")
    found = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if not found:
        raise RunnerError(f"no notebooks (*.ipynb) in {folder}")
    return found


def select_notebooks(available: Sequence[Path], only: Sequence[str] | None) -> list[Path]:
    """Notebooks picked by ``--only``: a name with or without ``.ipynb``, or its prefix (``01``).

    No ``only`` selects everything. Keeps ``available``'s (sorted) order.
    """
    if not only:
        return list(available)
    chosen: set[Path] = set()
    unknown: list[str] = []
    for token in only:
        stem = Path(token).name.removesuffix(".ipynb")
        hits = [p for p in available if p.stem == stem]
        hits = hits or [p for p in available if p.stem.split("_", 1)[0] == stem]
        if hits:
            chosen.update(hits)
        else:
            unknown.append(token)
    if unknown:
        names = "\n".join(f"  {p.stem}" for p in available)
        raise RunnerError(f"unknown notebook {', '.join(map(repr, unknown))}; available notebooks:\n{names}")
    return [p for p in available if p in chosen]


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _default_notebooks_dir() -> Path:
    here = Path("notebooks")
    if here.is_dir():
        return here
    repo = Path(__file__).resolve().parents[2] / "notebooks"  # editable install: <repo>/tgad_lite/
    return repo if repo.is_dir() else here


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tgad_lite.notebooks",
        description="Run the tgad-lite notebooks with papermill, or list their parameters.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--notebooks-dir", type=Path, default=None, help="folder holding the *.ipynb files (default: ./notebooks)"
        )
        p.add_argument(
            "--only",
            nargs="+",
            action="extend",
            metavar="NAME",
            default=[],
            help="run only these notebooks: name, name.ipynb or numeric prefix (01)",
        )

    run = sub.add_parser("run", help="execute notebooks into runs/<timestamp>/<notebook>-<hash>/")
    common(run)
    run.add_argument(
        "--profile",
        default="smoke",
        choices=PROFILES,
        help="smoke: small and fast (CI); full: paper-scale (default: smoke)",
    )
    run.add_argument(
        "-p",
        "--parameter",
        dest="parameters",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a notebook parameter, e.g. -p epochs=50 (checked before anything runs)",
    )
    run.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="where run folders are created (default: runs)"
    )
    run.add_argument("--kernel", default=DEFAULT_KERNEL, help=f"Jupyter kernel to run in (default: {DEFAULT_KERNEL})")
    run.add_argument(
        "-j", "--jobs", type=int, default=1, metavar="N", help="run up to N notebooks at once (default: 1)"
    )
    run.add_argument(
        "--list", action="store_true", help="list the selected notebooks' parameters instead of running them"
    )

    listing = sub.add_parser("list", help="show each notebook's parameters: type, default, allowed values, help")
    common(listing)

    sweeping = sub.add_parser(
        "sweep",
        help="run one notebook over a grid of parameters and seeds on Dask; resumable; mean ± std table",
    )
    add_sweep_arguments(sweeping)
    return parser


def _list(selected: Sequence[Path]) -> None:
    tables = [format_parameter_table(p.name, notebook_parameters(p)) for p in selected]
    print("\n\n".join(tables))
    print("\nChange a value with: python -m tgad_lite.notebooks run -p NAME=VALUE (or make run ARGS='-p NAME=VALUE')")


class _Report:
    """One line per notebook on stdout, whether runs go one after another or side by side."""

    def __init__(self, width: int, parallel: bool) -> None:
        self.width, self.parallel = width, parallel
        self.open_line = False  # sequential: "  name  " printed, its outcome not yet
        self.printed: set[int] = set()
        self._lock = threading.Lock()

    def start(self, name: str) -> None:
        with self._lock:
            if self.parallel:
                print(f"  {name.ljust(self.width)}  started", flush=True)
            else:
                print(f"  {name.ljust(self.width)}  ", end="", flush=True)
                self.open_line = True

    def done(self, result: NotebookResult) -> None:
        with self._lock:
            if id(result) in self.printed:
                return
            self.printed.add(id(result))
            status = {"ok": "ok", "interrupted": "INTERRUPTED"}.get(result.status, "FAILED")
            if not result.ok:
                status += f"  {result.error}"
            prefix = "" if self.open_line else f"  {result.name.ljust(self.width)}  "
            self.open_line = False
            print(f"{prefix}{result.seconds:7.1f} s  {status}", flush=True)
            if not result.ok and result.output_notebook.is_file():
                print(f"  {' ' * self.width}  see {_display(result.output_notebook)}", flush=True)


def _summary(results: Sequence[NotebookResult], not_run: Sequence[str], seconds: float, run_dir: Path) -> str:
    total = len(results) + len(not_run)
    failed = sum(r.status == "failed" for r in results)
    interrupted = sum(r.interrupted for r in results)
    noun = "notebook" if total == 1 else "notebooks"
    parts = [f"{sum(r.ok for r in results)} ok", f"{failed} failed"]
    if interrupted:
        parts.append(f"{interrupted} interrupted")
    if not_run:
        parts.append(f"{len(not_run)} not run")
    return f"{total} {noun}: {', '.join(parts)} in {seconds:.1f} s -> {_display(run_dir)}"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 1 failed, 2 bad input, 130 Ctrl-C)."""
    args = _build_parser().parse_args(argv)
    if args.command == "sweep":
        return sweep_command(args)
    try:
        notebooks_dir = args.notebooks_dir or _default_notebooks_dir()
        selected = select_notebooks(find_notebooks(notebooks_dir), args.only)
        if args.command == "list" or args.list:
            _list(selected)
            return EXIT_OK
        if args.jobs < 1:
            raise RunnerError(f"--jobs must be 1 or more, got {args.jobs}")
        overrides = parse_cli_parameters(args.parameters)
        check_kernel(args.kernel)
        plans = _plan([NotebookJob(p) for p in selected], profile=args.profile, parameters=overrides)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted before any notebook ran", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        run_dir = new_run_dir(args.runs_dir)
    except OSError as exc:
        print(
            f"error: cannot create a run folder under {args.runs_dir}: {exc.strerror or exc}; "
            "pass --runs-dir DIR with a folder you can write to",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT

    print(f"running {len(plans)} notebook(s), profile {args.profile} -> {_display(run_dir)}", flush=True)
    report = _Report(max(len(p.name) for p in plans), parallel=args.jobs > 1)
    started = time.perf_counter()
    not_run: list[str] = []
    interrupted = False
    try:
        results = _execute(
            plans,
            run_dir,
            kernel=args.kernel,
            env=None,
            max_workers=args.jobs,
            on_start=report.start,
            on_result=report.done,
        )
    except RunInterrupted as exc:
        results, not_run, interrupted = exc.results, exc.not_run, True
        for result in results:
            report.done(result)
        if report.open_line:
            print("not started", flush=True)
    print(_summary(results, not_run, time.perf_counter() - started, run_dir), flush=True)
    if interrupted:
        print("interrupted: partial notebooks are saved and marked as interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if any(not r.ok for r in results) else EXIT_OK
