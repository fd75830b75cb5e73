"""The browsable book (``tgad_lite.site``): collecting a run, page headers, the build, the browser check.

Fast tests build nothing or only a one-page book from fake executed notebooks (no API reference).
The tests marked ``notebook`` build the real book from the smoke executions the notebook tests
already did in this session (``run_notebook_once``: nothing runs twice) and open every page in
headless Chromium. In CI (``CI=true``) a missing Chromium fails them; elsewhere they skip.
"""

from __future__ import annotations

import html
import importlib
import inspect
import json
import os
import pkgutil
import re
import shutil
from pathlib import Path

import nbformat
import pytest

import tgad_lite
from tgad_lite.site import (
    SiteError,
    build_site,
    check_site,
    collect_notebooks,
    find_chromium,
    headed_notebook,
    newest_run_dir,
    page_header,
    resolve_run_dir,
    search_word,
)
from tgad_lite.site.check import INSTALL_HINT
from tgad_lite.site.collect import RUNS_ENV
from tgad_lite.site.header import format_seconds

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
PARAMETERS = (
    'profile = "smoke"  # choice: smoke|full: "smoke" tiny, "full" paper settings\n'
    "seed = 0  # range: [0, 4294967295]: random seed\n"
    'device = "auto"  # choice: auto|cpu|cuda: where it runs\n'
    "epochs = 5  # range: [1, 1000]: passes over the data\n"
    'impl = "sparse"  # choice: sparse|dense: which layer'
)
DEFAULTS = {"profile": "smoke", "seed": 0, "device": "auto", "epochs": 5, "impl": "sparse"}


# --------------------------------------------------------------------------- fake executed notebooks


def _notebook(title: str, prose: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\n{prose}"), params, nbformat.v4.new_code_cell("x = 1")]
    nb.metadata["kernelspec"] = {"name": "tgad-lite", "display_name": "Python (tgad-lite)", "language": "python"}
    return nb


def _fake_run(
    run_dir: Path,
    notebooks_dir: Path,
    name: str,
    *,
    prose: str = "Some text.",
    status: str = "ok",
    values: dict | None = None,
    folder: str = "0123abcd",
    metrics: bool = True,
) -> Path:
    """Write ``notebooks_dir/<name>.ipynb`` and an executed copy as the runner leaves it in ``run_dir``."""
    notebooks_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(_notebook(name, prose), notebooks_dir / f"{name}.ipynb")
    values = {**DEFAULTS, **(values or {})}
    executed = _notebook(name, prose)
    executed.metadata["tgad_lite"] = {
        "status": status,
        "error": None if status == "ok" else "cell In [3]: ValueError: boom",
        "seconds": 14.2,
        "parameters": values,
        "finished": "2026-01-02T03:04:05+00:00",
    }
    out = run_dir / f"{name}-{folder}"
    out.mkdir(parents=True)
    nbformat.write(executed, out / f"{name}.ipynb")
    if metrics:
        record = {
            "notebook": name,
            "metrics": {"device": "cpu"},
            "params": values,
            "seed": values["seed"],
            "runtime_s": 12.34,
            "versions": {"python": "3.11.7", "torch": "2.13.0+cpu", "numpy": "2.4.6", "platform": "Linux-x"},
        }
        (out / "metrics.json").write_text(json.dumps(record))
    return out / f"{name}.ipynb"


# --------------------------------------------------------------------------- which run, which notebooks


def test_newest_run_dir_takes_the_latest_timestamp_then_the_highest_suffix(tmp_path):
    with pytest.raises(SiteError, match="make run"):
        newest_run_dir(tmp_path)  # nothing executed yet: the message says what to do
    for name in ("20260101-120000", "20260101-120000-2", "20251231-235959", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "20990101-000000").write_text("a file, not a run folder")
    assert newest_run_dir(tmp_path).name == "20260101-120000-2"


def test_resolve_run_dir_prefers_the_argument_then_site_runs(tmp_path):
    for name in ("20260101-000000", "20250101-000000"):
        (tmp_path / name).mkdir()
    assert resolve_run_dir(runs_dir=tmp_path, env={}).name == "20260101-000000"
    chosen = tmp_path / "20250101-000000"
    assert resolve_run_dir(runs_dir=tmp_path, env={RUNS_ENV: str(chosen)}) == chosen
    assert resolve_run_dir(chosen, runs_dir=tmp_path, env={RUNS_ENV: "elsewhere"}) == chosen
    with pytest.raises(SiteError, match=RUNS_ENV):
        resolve_run_dir(runs_dir=tmp_path, env={RUNS_ENV: str(tmp_path / "missing")})


def test_collect_names_every_notebook_that_is_missing_failed_duplicated_or_without_metrics(tmp_path):
    run, books = tmp_path / "run", tmp_path / "notebooks"
    _fake_run(run, books, "00_fine")
    _fake_run(run, books, "02_failed", status="failed")
    _fake_run(run, books, "03_twice", folder="0123abcd")
    (run / "03_twice-89abcdef").mkdir()
    shutil.copy(run / "03_twice-0123abcd" / "03_twice.ipynb", run / "03_twice-89abcdef")
    _fake_run(run, books, "04_no_metrics", metrics=False)
    nbformat.write(_notebook("01_missing", "x"), books / "01_missing.ipynb")  # never executed

    with pytest.raises(SiteError) as caught:
        collect_notebooks(run, sorted(books.glob("*.ipynb")))
    message = str(caught.value)
    assert "cannot publish 4 notebook(s)" in message
    assert "01_missing: no executed copy" in message
    assert "02_failed did not execute: failed: cell In [3]: ValueError: boom" in message
    assert "03_twice: 2 executed copies" in message
    assert "04_no_metrics: its metrics.json is missing" in message
    assert "00_fine" not in message
    assert "make run" in message

    (fine,) = collect_notebooks(run, [books / "00_fine.ipynb"])
    assert (fine.name, fine.profile, fine.device, fine.seed, fine.runtime_s) == ("00_fine", "smoke", "cpu", 0, 12.34)
    assert fine.executed == run / "00_fine-0123abcd" / "00_fine.ipynb"
    assert list(fine.specs) == list(DEFAULTS)


def test_the_header_shows_how_the_notebook_ran_and_every_parameter(tmp_path):
    run, books = tmp_path / "run", tmp_path / "notebooks"
    _fake_run(run, books, "00_a", values={"epochs": 50})
    _fake_run(run, books, "01_b", values={"profile": "full"})
    smoke, full = collect_notebooks(run, sorted(books.glob("*.ipynb")))

    header = page_header(smoke)
    assert "| smoke | cpu | 0 | 12.3 s | 2026-01-02 03:04:05+00:00 |" in header
    assert "Python 3.11.7, torch 2.13.0+cpu, numpy 2.4.6 (Linux-x)" in header  # leading packages first
    assert "Smoke profile:" in header and "not results" in header
    assert "Parameters of this run (5, changed: epochs)" in header
    assert "| `epochs` | **`50`** (default `5`) | int; [1, 1000] | passes over the data |" in header
    assert '| `impl` | `"sparse"` | str; sparse\\|dense | which layer |' in header  # the pipe escaped
    assert "--only 00_a -p NAME=VALUE" in header
    full_header = page_header(full)
    assert "Smoke profile:" not in full_header
    assert "| full | cpu |" in full_header


def test_the_header_goes_right_under_the_title_and_a_notebook_without_title_is_refused(tmp_path):
    run, books = tmp_path / "run", tmp_path / "notebooks"
    path = _fake_run(run, books, "00_a", prose="What you will learn.")
    (published,) = collect_notebooks(run, [books / "00_a.ipynb"])
    cells = headed_notebook(published).cells
    assert cells[0].source == "# 00_a"
    assert cells[1].source.startswith(":::{admonition} How this page was executed")
    assert cells[2].source == "What you will learn."
    assert len(cells) == 5  # title, header, rest of the first cell, the two code cells

    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source = "No title here."
    nbformat.write(nb, path)
    with pytest.raises(SiteError, match="00_a: its first Markdown cell must start with the title"):
        headed_notebook(published)


def test_search_word_comes_from_the_notebook_and_no_other(tmp_path):
    one, two = tmp_path / "one.ipynb", tmp_path / "two.ipynb"
    nbformat.write(_notebook("One", "attention attention softmax softmax `ignored` $\\mathrm{latex}$"), one)
    nbformat.write(_notebook("Two", "attention everywhere"), two)
    assert search_word(one, [two]) == "softmax"  # "attention" is in both; code and math are not prose
    with pytest.raises(SiteError, match="no word"):
        search_word(two, [two])


def test_a_broken_reference_or_missing_figure_stops_the_build_naming_the_notebook(tmp_path):
    run, books, out = tmp_path / "runs" / "20260101-000000", tmp_path / "notebooks", tmp_path / "site"
    _fake_run(run, books, "00_fine")
    _fake_run(run, books, "01_broken", prose="See [the missing part](#no-such-section).\n\n![a figure](missing.png)")
    previous = out / "html" / "index.html"
    previous.parent.mkdir(parents=True)
    previous.write_text("the last good build")

    with pytest.raises(SiteError) as caught:
        build_site(runs_dir=tmp_path / "runs", out=out, notebooks_dir=books, api=False)
    message = str(caught.value)
    assert "warnings are errors" in message
    broken = [line for line in message.splitlines() if "notebook 01_broken" in line]
    assert any("no-such-section" in line for line in broken), message
    assert any("missing.png" in line for line in broken), message
    assert "00_fine" not in message
    assert previous.read_text() == "the last good build"  # a failed build replaces nothing
    assert not (out / ".html-partial").exists()


# --------------------------------------------------------------------------- the real book


@pytest.fixture(scope="module")
def chromium() -> Path:
    found = find_chromium()
    if found is None:
        if IN_CI:
            pytest.fail(f"the browser check needs Chromium in CI; {INSTALL_HINT} (.ci/run does it as root)")
        pytest.skip(f"Chromium not found; {INSTALL_HINT}")
    return found


def _png(width: int, height: int) -> bytes:
    """A valid grey RGB PNG, written by hand (signature, IHDR, IDAT, IEND)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80\x80\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_the_browser_check_reports_each_kind_of_breakage(tmp_path, chromium):
    """A hand-made two-page site with one of each fault: each is reported once, on its page."""
    icon = "<link rel='icon' href='data:,'>"  # else Chromium asks each page for /favicon.ico, a 404
    site = tmp_path / "html"
    (site / "sub").mkdir(parents=True)
    (site / "fine.png").write_bytes(_png(3, 2))
    (site / "index.html").write_text(
        f"<html><head><title>Home</title>{icon}</head><body><h1 id='top'>Home</h1>"
        "<img src='fine.png'><img src='missing.png'>"
        "<a href='sub/page.html#here'>ok</a><a href='sub/page.html#nowhere'>bad anchor</a>"
        "<a href='gone.html'>bad file</a><a href='#top'>ok</a><a href='https://example.org/'>external</a>"
        "<script>console.error('boom from the page')</script><script>notDefinedAnywhere()</script>"
        "</body></html>"
    )
    (site / "sub" / "page.html").write_text(
        f"<html><head><title>Page</title>{icon}</head><body>"
        "<h2 id='here'>Here</h2><a href='../index.html'>home</a></body></html>"
    )
    result = check_site(site, screenshots=["sub/page.html"], screenshot_dir=tmp_path / "shots", chromium=chromium)

    assert [p.path for p in result.pages] == ["index.html", "sub/page.html"]
    home, page = result.pages
    assert (home.title, home.images, page.images) == ("Home", 2, 0)
    assert home.broken_images == ["missing.png"]
    assert any("boom from the page" in e for e in home.console_errors)
    assert any("notDefinedAnywhere" in e for e in home.console_errors)
    assert any("404" in e and "missing.png" in e for e in home.console_errors)
    assert page.console_errors == []
    assert result.broken_links == [
        "index.html: link to a missing anchor: sub/page.html#nowhere",
        f"index.html: link to a missing file: gone.html ({home.links[2]})",
    ]
    assert result.external_links == 1
    assert all(p.startswith("index.html:") for p in result.problems) and not result.ok
    assert (tmp_path / "shots" / "page.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def book(run_notebook_once, data_mirror, tmp_path_factory):
    """The book built from this session's smoke executions, gathered into one run folder."""
    if data_mirror is None:
        pytest.skip("needs $TGAD_DATA_MIRROR: the smoke notebooks read real Cora and MSL")
    run = tmp_path_factory.mktemp("site-runs") / "20260101-000000"
    for source in sorted(NOTEBOOKS.glob("*.ipynb")):
        executed = run_notebook_once(source.stem).output_notebook
        shutil.copytree(executed.parent, run / executed.parent.name)
    return build_site(run, out=tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def checked(book, chromium):
    names = [nb.name for nb in book.notebooks]
    word = search_word(NOTEBOOKS / f"{names[1]}.ipynb", [NOTEBOOKS / f"{n}.ipynb" for n in names if n != names[1]])
    result = check_site(
        book.html_dir,
        search_word=word,
        search_expected=f"notebooks/{names[1]}.html",
        screenshots=["index.html", f"notebooks/{names[1]}.html"],
        screenshot_dir=book.html_dir.parent / "screenshots",
        chromium=chromium,
    )
    print(f"\nbook: built in {book.seconds:.1f} s, checked {len(result.pages)} pages in {result.seconds:.1f} s")
    for path in result.screenshots.values():
        print(f"  screenshot: {path}")
    return result


def _text(page: Path) -> str:
    """A page's visible text, tags removed and whitespace collapsed."""
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", page.read_text(), flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", raw)).split())


pytest_notebook = pytest.mark.notebook


@pytest_notebook
def test_the_book_has_every_notebook_in_order_each_headed_by_its_run(book):
    names = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert [nb.name for nb in book.notebooks] == names  # whatever notebooks exist, in name order
    landing = (book.html_dir / "index.html").read_text()
    linked = list(dict.fromkeys(re.findall(r'href="notebooks/([^"#]+)\.html"', landing)))
    assert linked == names
    assert "Quick start" in _text(book.html_dir / "index.html")  # the README is the landing page
    for nb in book.notebooks:
        page = book.page(nb.name)
        text, source = _text(page), page.read_text()
        assert "How this page was executed" in text and "tgad-run-info" in source, nb.name
        row = f"{nb.profile} {nb.device} {nb.seed} {format_seconds(nb.runtime_s)}"
        assert row in text, (nb.name, row)
        assert f"torch {nb.metrics['versions']['torch']}" in text, nb.name
        assert nb.profile == "smoke" and "Smoke profile:" in text, nb.name
        for name in set(nb.specs) - {"output_dir"}:  # the runner's, not a reader's knob
            assert f'<span class="pre">{name}</span>' in source, (nb.name, name)
        assert "<img" in source, f"{nb.name}: no figure on the page"


@pytest_notebook
def test_the_api_reference_documents_every_public_module_and_object(book):
    modules = [
        m.name
        for m in pkgutil.walk_packages(tgad_lite.__path__, "tgad_lite.")
        if not any(part.startswith("_") for part in m.name.split("."))
    ]
    assert len(modules) > 40
    missing = []
    for name in ["tgad_lite", *modules]:
        page = book.html_dir / "generated" / f"{name}.html"
        if not page.is_file():
            missing.append(f"{name}: no page")
            continue
        source, text = page.read_text(), _text(page)
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if attr.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if getattr(obj, "__module__", None) == name and f'id="{name}.{attr}"' not in source:
                missing.append(f"{name}.{attr}: not documented")
        # the shapes the module docstring gives ([T, N, F], ...) reach the page
        for literal in re.findall(r"``(.+?)``", inspect.getdoc(module) or ""):
            for shape in re.findall(r"\[[A-Z0-9][\w*]*(?:, [A-Z0-9][\w*]*)+\]", literal):
                if shape not in text:
                    missing.append(f"{name}: shape {shape} not shown")
    assert not missing, "\n".join(missing)


@pytest_notebook
def test_every_page_loads_in_chromium_without_errors_broken_images_or_broken_links(book, checked):
    assert checked.problems == [], "\n".join(checked.problems)
    paths = {page.path for page in checked.pages}
    assert {"index.html", "search.html", "genindex.html", "api.html"} <= paths
    assert {f"notebooks/{nb.name}.html" for nb in book.notebooks} <= paths
    by_path = {page.path: page for page in checked.pages}
    for nb in book.notebooks:  # the image and math checks were not vacuous
        assert by_path[f"notebooks/{nb.name}.html"].images > 0, nb.name
    second = by_path[f"notebooks/{book.notebooks[1].name}.html"]
    assert second.math > 0 and second.math_typeset >= second.math
    assert sum(len(page.links) for page in checked.pages) > 1000  # every page's links were resolved


@pytest_notebook
def test_the_search_page_finds_a_word_of_notebook_01(book, checked):
    assert checked.search_expected == f"notebooks/{book.notebooks[1].name}.html"
    assert checked.search_expected in checked.search_results, (checked.search_word, checked.search_results)


@pytest_notebook
def test_screenshots_of_the_landing_page_and_a_notebook_are_saved_under_the_build_folder(book, checked):
    shots = book.html_dir.parent / "screenshots"
    expected = {"index.png", f"{book.notebooks[1].name}.png", f"{book.notebooks[1].name}-figure.png"}
    assert {p.name for p in checked.screenshots.values()} == expected
    for path in checked.screenshots.values():
        assert path.parent == shots
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, path  # a rendered page, not a blank
