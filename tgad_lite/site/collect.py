"""Find the executed notebooks the book publishes: one run per notebook of ``notebooks/``, all ok.

The runner writes ``runs/<YYYYmmdd-HHMMSS>/<notebook>-<hash>/<notebook>.ipynb`` beside its
``metrics.json`` and marks the copy's metadata with its verdict (``tgad_lite.status``). The book
takes the newest run folder (or the one ``SITE_RUNS`` names) and needs, for every notebook in
``notebooks/``, exactly one executed copy there with status ``ok`` and a readable ``metrics.json``.
Anything else is a ``SiteError`` that names every notebook concerned and the fix; nothing is
re-executed here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tgad_lite.notebooks.cli import find_notebooks
from tgad_lite.notebooks.errors import RunnerError
from tgad_lite.notebooks.parameters import ParameterSpec, notebook_parameters
from tgad_lite.notebooks.runner import STATUS_KEY
from tgad_lite.site.errors import SiteError

RUNS_ENV = "SITE_RUNS"
# new_run_dir's names: a timestamp, "-2", "-3"... when two runners started in the same second
_RUN_DIR_RE = re.compile(r"(?P<stamp>\d{8}-\d{6})(?:-(?P<n>\d+))?")
_FIX = (
    "execute every notebook with `make run` (PROFILE=full for a full-profile book) and build again, "
    f"or choose a complete run folder with {RUNS_ENV}=runs/<timestamp>"
)


@dataclass(frozen=True)
class PublishedNotebook:
    """One executed notebook as the book shows it.

    ``source``: the notebook in ``notebooks/``; ``executed``: the runner's executed copy;
    ``status``: the runner's verdict in the copy's metadata (``status``, ``error``, ``seconds``,
    ``parameters``, ``finished``); ``metrics``: its ``metrics.json`` (results, ``params``,
    ``seed``, ``runtime_s``, ``versions``); ``specs``: the declarations of its parameters cell.
    """

    name: str
    source: Path
    executed: Path
    status: Mapping[str, Any]
    metrics: Mapping[str, Any]
    specs: Mapping[str, ParameterSpec] = field(default_factory=dict)

    @property
    def parameters(self) -> dict[str, Any]:
        """Every parameter value of the run (defaults and overrides; ``output_dir`` aside)."""
        return dict(self.status.get("parameters") or self.metrics.get("params") or {})

    @property
    def profile(self) -> str:
        return str(self.parameters.get("profile", "unknown"))

    @property
    def device(self) -> str:
        """The device the notebook resolved and recorded (``cpu``, ``cuda``), else the parameter."""
        recorded = (self.metrics.get("metrics") or {}).get("device")
        return str(recorded if recorded is not None else self.parameters.get("device", "unknown"))

    @property
    def seed(self) -> Any:
        return self.metrics.get("seed", self.parameters.get("seed"))

    @property
    def runtime_s(self) -> float | None:
        """The notebook's own run time (``metrics.json``), else the runner's wall time."""
        value = self.metrics.get("runtime_s", self.status.get("seconds"))
        return float(value) if isinstance(value, int | float) else None

    @property
    def versions(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.metrics.get("versions") or {}).items()}


def newest_run_dir(runs_dir: str | os.PathLike) -> Path:
    """The newest ``runs_dir/<timestamp>`` folder the runner created; ``SiteError`` when there is none."""
    root = Path(runs_dir)
    found = []
    if root.is_dir():
        for child in root.iterdir():
            match = _RUN_DIR_RE.fullmatch(child.name)
            if match and child.is_dir():
                found.append(((match["stamp"], int(match["n"] or 1)), child))
    if not found:
        raise SiteError(f"no run folder in {root}/: {_FIX}")
    return max(found)[1]


def resolve_run_dir(
    runs: str | os.PathLike | None = None,
    *,
    runs_dir: str | os.PathLike = "runs",
    env: Mapping[str, str] | None = None,
) -> Path:
    """The run folder to publish: ``runs``, else ``$SITE_RUNS``, else the newest under ``runs_dir``."""
    chosen = runs if runs is not None else (os.environ if env is None else env).get(RUNS_ENV, "").strip() or None
    if chosen is None:
        return newest_run_dir(runs_dir)
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise SiteError(f"run folder not found: {path} ({RUNS_ENV} or --runs); {_FIX}")
    return path


def _executed_copies(run_dir: Path, name: str) -> list[Path]:
    """``run_dir/<name>-<8 hex>[-k]/<name>.ipynb``: the runner's layout (see ``run_folder_name``)."""
    folder = re.compile(rf"{re.escape(name)}-[0-9a-f]{{8}}(?:-\d+)?")
    return sorted(
        child / f"{name}.ipynb"
        for child in run_dir.iterdir()
        if child.is_dir() and folder.fullmatch(child.name) and (child / f"{name}.ipynb").is_file()
    )


def _load(name: str, source: Path, executed: Path) -> PublishedNotebook:
    """Read one executed copy; ``SiteError`` (one line naming the notebook) when it cannot be published."""
    import nbformat

    where = f"{name}: {executed}"
    try:
        nb = nbformat.read(executed, as_version=4)
    except Exception as exc:  # truncated or not a notebook: name it, whatever the reader raised
        raise SiteError(f"{where} is not a readable notebook ({type(exc).__name__}: {exc})") from None
    status = nb.metadata.get(STATUS_KEY)
    if not isinstance(status, Mapping) or "status" not in status:
        raise SiteError(f"{where} was not executed by the runner (no '{STATUS_KEY}' verdict in its metadata)")
    if status["status"] != "ok":
        raise SiteError(f"{name} did not execute: {status['status']}: {status.get('error')} (see {executed})")
    metrics_path = executed.with_name("metrics.json")
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError) as exc:
        raise SiteError(f"{name}: its metrics.json is missing or unreadable ({metrics_path}: {exc})") from None
    try:
        specs = notebook_parameters(executed)
    except RunnerError as exc:
        raise SiteError(f"{name}: its parameters cell cannot be read: {exc}") from None
    return PublishedNotebook(name, source, executed, dict(status), metrics, specs)


def collect_notebooks(run_dir: str | os.PathLike, notebooks: Sequence[str | os.PathLike]) -> list[PublishedNotebook]:
    """One ``PublishedNotebook`` per notebook of ``notebooks`` (in that order), from ``run_dir``.

    Raises ``SiteError`` listing every notebook that is missing from the run folder, has several
    executed copies there, failed or was interrupted, or lacks its ``metrics.json``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SiteError(f"run folder not found: {run_dir}; {_FIX}")
    published: list[PublishedNotebook] = []
    problems: list[str] = []
    for source in map(Path, notebooks):
        name = source.stem
        copies = _executed_copies(run_dir, name)
        if not copies:
            problems.append(f"{name}: no executed copy in {run_dir} (expected {run_dir}/{name}-<hash>/{name}.ipynb)")
            continue
        if len(copies) > 1:
            listed = ", ".join(str(c.parent.name) for c in copies)
            problems.append(f"{name}: {len(copies)} executed copies in {run_dir} ({listed}); the book shows one run")
            continue
        try:
            published.append(_load(name, source, copies[0]))
        except SiteError as exc:
            problems.append(str(exc))
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise SiteError(f"cannot publish {len(problems)} notebook(s) from {run_dir}:\n{lines}\nFix: {_FIX}")
    return published


def source_notebooks(notebooks_dir: str | os.PathLike) -> list[Path]:
    """The notebooks the book publishes: every ``*.ipynb`` in ``notebooks_dir``, by name."""
    try:
        return find_notebooks(notebooks_dir)
    except RunnerError as exc:
        raise SiteError(str(exc)) from None
