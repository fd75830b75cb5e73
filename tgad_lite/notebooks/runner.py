"""Run the collection's notebooks with papermill and collect their ``metrics.json``.

Every notebook has a cell tagged ``parameters`` holding at least ``profile``, ``seed`` and
``output_dir`` plus its own knobs, each with a trailing ``# help`` comment. The runner reads that
cell, checks ``-p name=value`` overrides against it *before* anything runs (papermill itself only
logs unknown names), executes each notebook into ``runs/<timestamp>/<name>/<name>.ipynb`` with
``output_dir`` set to that folder, and reports one line per notebook.

The runner trains nothing and imports no model code: papermill and a Jupyter kernel do the work.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as _dt
import difflib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

PROFILES = ("smoke", "full")
DEFAULT_KERNEL = "tgad-lite"
MIRROR_ENV = "TGAD_DATA_MIRROR"
# Set by the runner itself, never through -p: profile has --profile, output_dir is the run folder.
RESERVED = ("profile", "output_dir")
_INSTALL_HINT = (
    "install it with `make install`, or directly with "
    "`python -m ipykernel install --sys-prefix --name {kernel}`"
)


class RunnerError(ValueError):
    """Bad input to the runner (unknown notebook, parameter, kernel, folder); nothing has run."""


class ParameterError(RunnerError):
    """One or more ``-p`` overrides do not fit the notebooks' parameters cells."""


@dataclass(frozen=True)
class ParameterSpec:
    """One assignment of a notebook's ``parameters`` cell.

    ``type_name`` is inferred from the default: ``int``, ``float``, ``str``, ``bool``, ``list``,
    ``dict``, ``tuple``, or ``any`` (default ``None`` or not a plain literal: accepts anything).
    ``default`` is the parsed literal (or the source text when it is not a literal);
    ``default_source`` is the text as written in the cell.
    """

    name: str
    type_name: str
    default: Any
    default_source: str
    help: str


@dataclass(frozen=True)
class NotebookResult:
    """Outcome of one executed notebook.

    ``metrics`` is the loaded ``metrics.json`` (``None`` when the notebook failed or wrote none);
    ``error`` is a one-line reason when ``ok`` is false.
    """

    name: str
    ok: bool
    seconds: float
    output_notebook: Path
    metrics: dict[str, Any] | None
    error: str | None


# --------------------------------------------------------------------------- parameters


def _escape_format(path: Path) -> str:
    # papermill runs str.format on paths (for templated names); keep literal braces literal.
    return str(path).replace("{", "{{").replace("}", "}}")


def _type_name(value: Any) -> str:
    if value is None:
        return "any"
    for kind in (bool, int, float, str, list, dict, tuple):  # bool before int: bool is an int
        if isinstance(value, kind):
            return kind.__name__
    return "any"


def notebook_parameters(path: str | os.PathLike) -> dict[str, ParameterSpec]:
    """Parameters declared in the notebook's cell tagged ``parameters``, in cell order.

    Returns an empty dict when the notebook has no such cell.
    """
    import papermill

    path = Path(path)
    if not path.is_file():
        raise RunnerError(f"notebook not found: {path}")
    try:
        raw = papermill.inspect_notebook(_escape_format(path.resolve()))
    except Exception as exc:  # a broken file: say which one
        raise RunnerError(f"cannot read the parameters of {path}: {exc}") from exc
    specs: dict[str, ParameterSpec] = {}
    for name, info in raw.items():
        source = str(info["default"])
        try:
            default = ast.literal_eval(source)
            type_name = _type_name(default)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            # An expression such as `2 ** 10` or `np.pi`: we cannot know its type, accept anything.
            default, type_name = source, "any"
        specs[name] = ParameterSpec(name, type_name, default, source, str(info["help"]))
    return specs


def parse_cli_parameters(pairs: Sequence[str]) -> dict[str, Any]:
    """Turn ``["epochs=5", "dataset=cora"]`` into ``{"epochs": 5, "dataset": "cora"}``.

    Values are Python literals (``5``, ``0.1``, ``True``, ``None``, ``"01"``, ``[1, 2]``); text that
    is not a literal, such as a bare word, is kept as a string.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError(f"-p expects name=value, got {pair!r} (example: -p epochs=5)")
        if not key.isidentifier():
            raise ParameterError(f"-p {pair!r}: {key!r} is not a valid parameter name")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = text.strip()
        if key in out and out[key] != value:
            raise ParameterError(
                f"parameter {key!r} given twice ({out[key]!r} and {value!r}); give it once"
            )
        out[key] = value
    return out


def _passable(value: Any) -> Any:
    """``value`` in a form papermill writes back faithfully (it turns a tuple into a string)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_passable(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _passable(v) for k, v in value.items()}
    raise TypeError(type(value).__name__)


def _check_value(spec: ParameterSpec, value: Any) -> Any:
    """``value`` converted for ``spec`` (int -> float for a float knob); TypeError if it does not fit."""
    kind = spec.type_name
    fits = {
        "any": True,
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "list": isinstance(value, (list, tuple)),
        "tuple": isinstance(value, (list, tuple)),
        "dict": isinstance(value, dict),
    }[kind]
    if not fits:
        raise TypeError(kind)
    if kind == "float":
        value = float(value)
    return _passable(value)


def _type_hint(spec: ParameterSpec, value: Any) -> str:
    if spec.type_name == "bool" and isinstance(value, (str, int)):
        return " (write True or False)"
    if spec.type_name == "str":
        return f" (to pass text that looks like a literal, quote it: -p {spec.name}='\"{value}\"')"
    return ""


def validate_parameters(
    specs_by_notebook: Mapping[str, Mapping[str, ParameterSpec]],
    parameters: Mapping[str, Any] | None = None,
    profile: str = "smoke",
) -> dict[str, dict[str, Any]]:
    """Check overrides against every selected notebook; return what to inject into each.

    ``specs_by_notebook`` maps a notebook name to ``notebook_parameters(...)``. A parameter is
    applied only to the notebooks that declare it, but must be declared by at least one. Raises
    ``ParameterError`` listing every problem at once; returns ``{name: {param: value}}`` (with
    ``profile``; ``output_dir`` is added per run).
    """
    parameters = dict(parameters or {})
    problems: list[str] = []
    if profile not in PROFILES:
        problems.append(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    if "profile" in parameters:
        problems.append("set the profile with --profile smoke|full, not -p profile=...")
    if "output_dir" in parameters:
        problems.append("output_dir is set by the runner (the run folder); drop -p output_dir=...")
    for name, specs in specs_by_notebook.items():
        for needed in RESERVED:
            if needed not in specs:
                problems.append(
                    f"{name}.ipynb has no {needed!r} in a cell tagged 'parameters'; add "
                    f"`{needed} = {'None' if needed == 'output_dir' else repr('smoke')}` there"
                )

    injected: dict[str, dict[str, Any]] = {name: {"profile": profile} for name in specs_by_notebook}
    for key, value in parameters.items():
        if key in RESERVED:
            continue
        owners = [name for name, specs in specs_by_notebook.items() if key in specs]
        if not owners:
            problems.append(_unknown_message(key, specs_by_notebook))
            continue
        for name in owners:
            spec = specs_by_notebook[name][key]
            try:
                injected[name][key] = _check_value(spec, value)
            except TypeError:
                if spec.type_name == "any":  # value itself cannot be passed to a kernel
                    problems.append(
                        f"parameter {key!r} of {name}.ipynb: papermill cannot pass a "
                        f"{type(value).__name__} ({value!r}); use a list, dict, str or number"
                    )
                else:
                    problems.append(
                        f"parameter {key!r} of {name}.ipynb expects {spec.type_name} (default "
                        f"{spec.default_source}), got {type(value).__name__} {value!r}"
                        + _type_hint(spec, value)
                    )
    if problems:
        raise ParameterError("\n".join(problems))
    return injected


def _unknown_message(key: str, specs_by_notebook: Mapping[str, Mapping[str, ParameterSpec]]) -> str:
    every = sorted({p for specs in specs_by_notebook.values() for p in specs if p not in RESERVED})
    close = difflib.get_close_matches(key, every, n=1)
    lines = [f"unknown parameter {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")]
    for name, specs in specs_by_notebook.items():
        valid = ", ".join(p for p in specs if p not in RESERVED) or "(none)"
        lines.append(f"  valid parameters of {name}.ipynb: {valid}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- notebooks


def find_notebooks(notebooks_dir: str | os.PathLike) -> list[Path]:
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
        raise RunnerError(
            f"unknown notebook {', '.join(map(repr, unknown))}; available notebooks:\n{names}"
        )
    return [p for p in available if p in chosen]


def check_kernel(kernel: str) -> None:
    """Raise ``RunnerError`` with the install command when Jupyter kernel ``kernel`` is missing."""
    from jupyter_client.kernelspec import KernelSpecManager

    installed = KernelSpecManager().find_kernel_specs()
    if kernel not in installed:
        have = ", ".join(sorted(installed)) or "none"
        raise RunnerError(
            f"Jupyter kernel {kernel!r} is not installed (installed: {have}); "
            + _INSTALL_HINT.format(kernel=kernel)
        )


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


@contextlib.contextmanager
def _kernel_environment() -> Iterator[None]:
    """Make ``TGAD_DATA_MIRROR`` absolute while kernels start: they run with cwd = notebooks/."""
    original = os.environ.get(MIRROR_ENV)
    if original:
        os.environ[MIRROR_ENV] = os.path.abspath(os.path.expanduser(original))
    try:
        yield
    finally:
        if original is not None:
            os.environ[MIRROR_ENV] = original


def _output_paths(source: Path, output_root: Path, protected: Sequence[Path]) -> tuple[Path, Path]:
    name = source.stem
    out_dir = output_root.resolve() / name
    out_nb = out_dir / f"{name}.ipynb"
    sources = {p.resolve() for p in (source, *protected)}
    if out_nb.resolve() in sources:
        raise RunnerError(
            f"refusing to run {source.name}: its output {out_nb} is a source notebook; "
            "choose a different --runs-dir"
        )
    if out_dir.exists() and any(out_dir.iterdir()):
        raise RunnerError(
            f"refusing to run {source.name}: {out_dir} already holds a run; use a fresh output folder"
        )
    return out_dir, out_nb


def _short(text: str, limit: int = 160) -> str:
    lines = str(text).strip().splitlines()
    first = lines[0] if lines else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _engine_options() -> dict[str, Any]:
    """Encrypt the kernel's local channels where pyzmq can (the kernel then stops warning, once per
    notebook, that its TCP traffic is plain text); a kernelspec without support runs as before."""
    import zmq
    from traitlets.config import Config

    if not zmq.has("curve"):
        return {}
    return {"config": Config({"KernelManager": {"transport_encryption": "auto"}})}


def _execute(
    source: Path,
    output_root: Path,
    injected: Mapping[str, Any],
    kernel: str,
    protected: Sequence[Path] = (),
) -> NotebookResult:
    """Execute one already-validated notebook; never raises for a failure inside the notebook."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = source.resolve()
    out_dir, out_nb = _output_paths(source, output_root, protected)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {**injected, "output_dir": str(out_dir)}
    error: str | None = None
    started = time.perf_counter()
    try:
        with _kernel_environment():
            papermill.execute_notebook(
                _escape_format(source),
                _escape_format(out_nb),
                parameters=params,
                kernel_name=kernel,
                cwd=str(source.parent),
                log_output=False,
                progress_bar=False,
                **_engine_options(),
            )
    except PapermillExecutionError as exc:
        error = f"cell In [{exc.exec_count}]: {exc.ename}: {_short(exc.evalue)}"
    except Exception as exc:  # kernel died, timed out, ...: report it, keep running the others
        error = f"{type(exc).__name__}: {_short(str(exc))}"
    seconds = time.perf_counter() - started

    metrics: dict[str, Any] | None = None
    metrics_path = out_dir / "metrics.json"
    if error is None:
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
    return NotebookResult(source.stem, error is None, seconds, out_nb, metrics, error)


def run_notebook(
    path: str | os.PathLike,
    output_root: str | os.PathLike,
    *,
    profile: str = "smoke",
    parameters: Mapping[str, Any] | None = None,
    kernel: str = DEFAULT_KERNEL,
) -> NotebookResult:
    """Execute one notebook into ``output_root/<name>/<name>.ipynb`` and load its metrics.

    ``parameters`` are overrides (already parsed values); they are checked against the
    notebook's parameters cell first and ``ParameterError`` is raised before anything runs.
    A failure inside the notebook is returned as ``ok=False`` with ``error`` set.
    """
    source = Path(path)
    check_kernel(kernel)
    specs = notebook_parameters(source)
    injected = validate_parameters({source.stem: specs}, parameters, profile)[source.stem]
    return _execute(source, Path(output_root), injected, kernel)


# --------------------------------------------------------------------------- command line


def format_parameter_table(name: str, specs: Mapping[str, ParameterSpec]) -> str:
    """A plain-text table of one notebook's parameters: name, type, default, help."""
    if not specs:
        return f"{name}\n  (no cell tagged 'parameters')"
    rows = [("parameter", "type", "default", "help")]
    for spec in specs.values():
        help_text = spec.help or "-"
        if spec.name == "output_dir":
            help_text += " [set by the runner]"
        elif spec.name == "profile":
            help_text += " [use --profile]"
        rows.append((spec.name, spec.type_name, spec.default_source, help_text))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [name]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3])
    return "\n".join(lines)


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
        p.add_argument("--notebooks-dir", type=Path, default=None,
                       help="folder holding the *.ipynb files (default: ./notebooks)")
        p.add_argument("--only", nargs="+", action="extend", metavar="NAME", default=[],
                       help="run only these notebooks: name, name.ipynb or numeric prefix (01)")

    run = sub.add_parser("run", help="execute notebooks into runs/<timestamp>/")
    common(run)
    run.add_argument("--profile", default="smoke", choices=PROFILES,
                     help="smoke: small and fast (CI); full: paper-scale (default: smoke)")
    run.add_argument("-p", "--parameter", dest="parameters", action="append", default=[],
                     metavar="KEY=VALUE", help="override a notebook parameter, e.g. -p epochs=50")
    run.add_argument("--runs-dir", type=Path, default=Path("runs"),
                     help="where run folders are created (default: runs)")
    run.add_argument("--kernel", default=DEFAULT_KERNEL,
                     help=f"Jupyter kernel to run in (default: {DEFAULT_KERNEL})")
    run.add_argument("--list", action="store_true",
                     help="list the selected notebooks' parameters instead of running them")

    listing = sub.add_parser("list", help="show each notebook's parameters and their help")
    common(listing)
    return parser


def _list(selected: Sequence[Path]) -> None:
    tables = [format_parameter_table(p.name, notebook_parameters(p)) for p in selected]
    print("\n\n".join(tables))
    print(
        "\nChange a value with: python -m tgad_lite.notebooks run -p NAME=VALUE "
        "(or make run ARGS='-p NAME=VALUE')"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 1 a notebook failed, 2 bad input)."""
    args = _build_parser().parse_args(argv)
    try:
        notebooks_dir = args.notebooks_dir or _default_notebooks_dir()
        available = find_notebooks(notebooks_dir)
        selected = select_notebooks(available, args.only)
        if args.command == "list" or args.list:
            _list(selected)
            return 0
        overrides = parse_cli_parameters(args.parameters)
        specs = {p.stem: notebook_parameters(p) for p in selected}
        injected = validate_parameters(specs, overrides, args.profile)
        check_kernel(args.kernel)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    run_dir = new_run_dir(args.runs_dir)
    print(f"running {len(selected)} notebook(s), profile {args.profile} -> {_display(run_dir)}", flush=True)
    width = max(len(p.stem) for p in selected)
    started = time.perf_counter()
    results: list[NotebookResult] = []
    for p in selected:
        print(f"  {p.stem.ljust(width)}  ", end="", flush=True)
        try:
            result = _execute(p, run_dir, injected[p.stem], args.kernel, available)
        except RunnerError as exc:
            result = NotebookResult(p.stem, False, 0.0, run_dir / p.stem, None, str(exc))
        results.append(result)
        status = "ok" if result.ok else f"FAILED  {result.error}"
        print(f"{result.seconds:7.1f} s  {status}", flush=True)
        if not result.ok and result.output_notebook.is_file():
            print(f"  {' ' * width}  see {_display(result.output_notebook)}", flush=True)
    failed = sum(not r.ok for r in results)
    total = time.perf_counter() - started
    noun = "notebook" if len(results) == 1 else "notebooks"
    print(
        f"{len(results)} {noun}: {len(results) - failed} ok, {failed} failed "
        f"in {total:.1f} s -> {_display(run_dir)}"
    )
    return 1 if failed else 0
