"""Shared fixtures: the real data mirror, checked at start-up, and notebook runs once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:  # tests/_mirror.py, whatever pytest's import mode
    sys.path.insert(0, str(TESTS))
from _mirror import MirrorError, check_mirror  # noqa: E402

REPO = TESTS.parent
NOTEBOOKS = REPO / "notebooks"


def pytest_sessionstart(session: pytest.Session) -> None:
    """A set but missing or incomplete ``$TGAD_DATA_MIRROR`` fails the run before any test: the
    tests on real data would otherwise skip and the run pass without touching real data."""
    try:
        check_mirror(os.environ)
    except MirrorError as exc:
        pytest.exit(str(exc), returncode=1)


@pytest.fixture(scope="session")
def data_mirror() -> Path | None:
    """The read-only data mirror: ``$TGAD_DATA_MIRROR`` as an absolute Path (complete, since the
    session start checked it), or None when the variable is unset (tests on real data skip)."""
    return check_mirror(os.environ)


@pytest.fixture(scope="session")
def run_notebook_once(tmp_path_factory, data_mirror):
    """``run(name, **params) -> NotebookResult``: papermill-executes ``notebooks/<name>.ipynb``
    in the smoke profile (once per distinct call in a session) and returns the runner's result."""
    from tgad_lite.notebooks import run_notebook

    cache: dict[tuple, object] = {}
    out_root = tmp_path_factory.mktemp("notebook-runs")

    def run(name: str, **params):
        key = (name, repr(sorted(params.items())))  # repr: parameter values may be lists
        if key not in cache:
            result = run_notebook(
                NOTEBOOKS / f"{name}.ipynb",
                out_root / f"{name}-{len(cache)}",
                profile="smoke",
                parameters=params or None,
            )
            assert result.ok, f"{name} failed: {result.error} (executed copy: {result.output_notebook})"
            cache[key] = result
        return cache[key]

    return run


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny models: on a shared 2-core machine two OpenMP threads
    spinning against other processes made a one-second training take over half a minute."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
