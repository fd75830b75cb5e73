"""Shared fixtures: execute a notebook of the collection once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
DEFAULT_MIRROR = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_mirror() -> Path | None:
    """The read-only data mirror ($TGAD_DATA_MIRROR, else ../shared/data when present)."""
    env = os.environ.get("TGAD_DATA_MIRROR")
    path = Path(env).resolve() if env else DEFAULT_MIRROR
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def run_notebook_once(tmp_path_factory, data_mirror):
    """``run(name, **params) -> NotebookResult``: papermill-executes ``notebooks/<name>.ipynb``
    in the smoke profile (once per distinct call in a session) and returns the runner's result."""
    from tgad_lite.notebooks import run_notebook

    cache: dict[tuple, object] = {}
    out_root = tmp_path_factory.mktemp("notebook-runs")

    def run(name: str, **params):
        key = (name, tuple(sorted(params.items())))
        if key not in cache:
            if data_mirror is not None:
                os.environ.setdefault("TGAD_DATA_MIRROR", str(data_mirror))
            result = run_notebook(NOTEBOOKS / f"{name}.ipynb", out_root / f"{name}-{len(cache)}",
                                  profile="smoke", parameters=params or None)
            assert result.ok, f"{name} failed: {result.error} (executed copy: {result.output_notebook})"
            cache[key] = result
        return cache[key]

    return run
