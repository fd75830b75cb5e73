"""Build the book: the executed notebooks of one run, the README and the API reference, with Sphinx.

``build_site`` stages a Sphinx source folder (``<out>/source``): ``docs/book/`` (configuration,
landing page, API page, templates, static files), ``README.md`` with the figures it shows, and one
headed copy of each executed notebook (``notebooks/NN_name.ipynb``). Sphinx then builds
``<out>/html`` with warnings as errors (``-W --keep-going``) and MyST-NB's execution off: a broken
cross-reference, a missing figure, a notebook that is missing or failed stops the build with a
message naming it. The new site replaces the old one only when the build succeeded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tgad_lite.site.collect import PublishedNotebook, collect_notebooks, resolve_run_dir, source_notebooks
from tgad_lite.site.errors import SiteError
from tgad_lite.site.header import headed_notebook

REPO = Path(__file__).resolve().parents[2]  # editable install: <repo>/tgad_lite/site/
BOOK_DIR = REPO / "docs" / "book"
DEFAULT_OUT = REPO / "build" / "site"
# What the landing page needs besides docs/book/: the README and the figures it shows.
README = "README.md"
README_ASSETS = ("docs/figures",)
API_PAGE = "api.md"
_WARNING_RE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")


@dataclass(frozen=True)
class SiteBuild:
    """A built book: ``html_dir/index.html`` is the landing page; one page per notebook."""

    html_dir: Path
    source_dir: Path
    run_dir: Path
    notebooks: list[PublishedNotebook]
    seconds: float

    def page(self, name: str) -> Path:
        """The HTML page of notebook ``name`` (``01_gat_from_scratch``)."""
        return self.html_dir / "notebooks" / f"{name}.html"


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("_build", "__pycache__", ".ipynb_checkpoints"))


def stage_sources(
    published: Sequence[PublishedNotebook],
    source_dir: Path,
    *,
    api: bool = True,
    book_dir: Path = BOOK_DIR,
    repo: Path = REPO,
) -> None:
    """Fill ``source_dir`` (emptied first) with what Sphinx reads; see the module docstring.

    ``api=False`` replaces the API reference by a one-line page (a quick preview of the notebook
    pages: generating the reference imports the whole package and writes a page per module).
    """
    import nbformat

    if not (book_dir / "conf.py").is_file():
        raise SiteError(f"the book's Sphinx configuration is missing: {book_dir / 'conf.py'}")
    if source_dir.exists():
        shutil.rmtree(source_dir)
    _copy_tree(book_dir, source_dir)
    shutil.copy2(repo / README, source_dir / README)
    if not api:
        (source_dir / API_PAGE).write_text(
            "# API reference\n\nNot part of this preview build (`--no-api`); `make site` builds it.\n"
        )
    for asset in README_ASSETS:
        if (repo / asset).is_dir():
            _copy_tree(repo / asset, source_dir / asset)
    pages = source_dir / "notebooks"
    pages.mkdir()
    for nb in published:
        nbformat.write(headed_notebook(nb), pages / f"{nb.name}.ipynb")


def _sphinx_problems(output: str, source_dir: Path, published: Sequence[PublishedNotebook]) -> list[str]:
    """The warning and error lines of Sphinx's output, staged paths named as the reader knows them."""
    names = {f"{source_dir}/notebooks/{nb.name}.ipynb": f"notebook {nb.name} ({nb.executed})" for nb in published}
    lines = []
    for line in output.splitlines():
        if not _WARNING_RE.search(line):
            continue
        for staged, shown in names.items():
            line = line.replace(staged, shown)
        lines.append(line.replace(f"{source_dir}/", ""))
    return lines


def run_sphinx(source_dir: Path, html_dir: Path, doctree_dir: Path, *, jobs: int | str = "auto") -> tuple[int, str]:
    """``python -m sphinx -b html -W --keep-going``: (exit code, its output). Never executes a notebook."""
    command = [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        "html",
        "-W",
        "--keep-going",
        "-E",  # read every page again: a stale page of an older run must not survive
        "-j",
        str(jobs),
        "-d",
        str(doctree_dir),
        str(source_dir),
        str(html_dir),
    ]
    # Autodoc imports the package: its progress bars and plots must stay quiet and headless.
    env = {**os.environ, "TGAD_PROGRESS": "off", "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    return done.returncode, done.stdout + done.stderr


def build_site(
    runs: str | os.PathLike | None = None,
    *,
    out: str | os.PathLike = DEFAULT_OUT,
    notebooks_dir: str | os.PathLike = REPO / "notebooks",
    runs_dir: str | os.PathLike = REPO / "runs",
    api: bool = True,
    jobs: int | str = "auto",
) -> SiteBuild:
    """Build the book into ``out/html`` from run folder ``runs`` (default ``$SITE_RUNS``, else the
    newest ``runs_dir/<timestamp>``), publishing every notebook of ``notebooks_dir`` in name order.
    ``api=False`` leaves the API reference out (a quicker preview); ``jobs``: Sphinx's processes
    (``auto``: one per core).

    Raises ``SiteError`` naming each notebook that is missing or failed in the run folder, or
    listing Sphinx's warnings; the previous ``out/html`` is then left as it was.
    """
    started = time.perf_counter()
    out = Path(out)
    run_dir = resolve_run_dir(runs, runs_dir=runs_dir)
    published = collect_notebooks(run_dir, source_notebooks(notebooks_dir))
    source_dir, html_dir = out / "source", out / "html"
    fresh = out / ".html-partial"
    stage_sources(published, source_dir, api=api)
    if fresh.exists():
        shutil.rmtree(fresh)
    code, output = run_sphinx(source_dir, fresh, out / "doctrees", jobs=jobs)
    if code != 0:
        shutil.rmtree(fresh, ignore_errors=True)
        problems = _sphinx_problems(output, source_dir, published) or output.strip().splitlines()[-20:]
        listed = "\n".join(f"  {p}" for p in problems)
        raise SiteError(f"Sphinx stopped the build (warnings are errors), exit {code}:\n{listed}")
    if html_dir.exists():
        shutil.rmtree(html_dir)
    os.replace(fresh, html_dir)
    return SiteBuild(html_dir, source_dir, run_dir, published, time.perf_counter() - started)
