"""``python -m tgad_lite.site build|check``: build the book from a run folder, check it in Chromium.

``build`` publishes the newest ``runs/<timestamp>`` (or ``--runs DIR``, or ``$SITE_RUNS``) into
``build/site/html`` and then, when Chromium is installed, runs the browser check, which saves
screenshots into ``build/site/screenshots``. ``check`` runs the browser check alone on a built site.
Exit codes: 0 ok, 1 the build or the check failed (the message names the notebook or page).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tgad_lite.site.build import DEFAULT_OUT, REPO, build_site
from tgad_lite.site.check import INSTALL_HINT, SiteCheck, check_site, find_chromium, search_word
from tgad_lite.site.collect import RUNS_ENV, source_notebooks
from tgad_lite.site.errors import SiteError

EXIT_OK, EXIT_FAILED = 0, 1
LANDING_PAGE = "index.html"


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tgad_lite.site", description="Build the tgad-lite book from executed notebooks; check it."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="build folder (default: build/site)")
        p.add_argument(
            "--notebooks-dir",
            type=Path,
            default=REPO / "notebooks",
            help="the notebooks to publish (default: notebooks)",
        )

    build = sub.add_parser("build", help="build the book into <out>/html, then check it when Chromium is installed")
    common(build)
    build.add_argument(
        "--runs",
        type=Path,
        default=None,
        help=f"run folder to publish (default: ${RUNS_ENV}, else the newest runs/<timestamp>)",
    )
    build.add_argument("--runs-dir", type=Path, default=REPO / "runs", help="where run folders are (default: runs)")
    build.add_argument("--no-api", action="store_true", help="leave the API reference out (a quicker preview)")
    build.add_argument("--no-check", action="store_true", help="do not run the browser check")
    build.add_argument(
        "-j", "--jobs", default="auto", metavar="N", help="Sphinx processes: a number or auto, one per core (default)"
    )
    check = sub.add_parser("check", help="open every page of <out>/html in headless Chromium")
    common(check)
    return parser


def _check(out: Path, notebooks_dir: Path) -> SiteCheck:
    """The browser check with the search for a word of the second notebook (01), screenshots saved."""
    notebooks = source_notebooks(notebooks_dir)
    target = notebooks[1] if len(notebooks) > 1 else notebooks[0]
    word = search_word(target, [n for n in notebooks if n != target])
    page = f"notebooks/{target.stem}.html"
    result = check_site(
        out / "html",
        search_word=word,
        search_expected=page,
        screenshots=[LANDING_PAGE, page],
        screenshot_dir=out / "screenshots",
    )
    print(
        f"browser check: {len(result.pages)} pages, {sum(p.images for p in result.pages)} images, "
        f"{len(result.search_results)} search results for {word!r} in {result.seconds:.1f} s",
        flush=True,
    )
    for path in result.screenshots.values():
        print(f"  screenshot: {_display(path)}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 1 failed)."""
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "build":
            started = time.perf_counter()
            site = build_site(
                args.runs,
                out=args.out,
                notebooks_dir=args.notebooks_dir,
                runs_dir=args.runs_dir,
                api=not args.no_api,
                jobs=args.jobs,
            )
            print(
                f"built {len(site.notebooks)} notebook pages from {_display(site.run_dir)} in {site.seconds:.1f} s "
                f"-> {_display(site.html_dir / LANDING_PAGE)}",
                flush=True,
            )
            if args.no_check:
                return EXIT_OK
            if find_chromium() is None:
                print(f"browser check skipped: Chromium not found; {INSTALL_HINT}", file=sys.stderr)
                return EXIT_OK
            result = _check(args.out, args.notebooks_dir)
            print(f"build and check: {time.perf_counter() - started:.1f} s")
        else:
            result = _check(args.out, args.notebooks_dir)
    except SiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if result.problems:
        print(f"browser check FAILED: {len(result.problems)} problem(s):", file=sys.stderr)
        for problem in result.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_FAILED
    print("browser check: ok")
    return EXIT_OK
