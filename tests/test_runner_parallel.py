"""``run_many``: several runs at once, each with its own folder, kernel environment and working
directory, and the caller's ``os.environ`` and working directory untouched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fixtures.runner_notebooks import PROBE_CELL, write_notebook

from tgad_lite.notebooks import NotebookJob, ParameterError, run_folder_name, run_many


@pytest.mark.notebook
def test_concurrent_runs_get_distinct_folders_and_their_own_hash_seed(tmp_path: Path, monkeypatch) -> None:
    source = write_notebook(tmp_path / "nb" / "02_tiny.ipynb", PROBE_CELL)
    monkeypatch.chdir(tmp_path)
    environ_before, cwd_before = dict(os.environ), os.getcwd()
    started: list[str] = []
    jobs = [(source, {"seed": 1}), NotebookJob(source, {"seed": 2}), (source, {"seed": 1})]
    results = run_many(jobs, "out", max_workers=2, env={"TGAD_TEST_EXTRA": "x"}, on_start=started.append)

    assert [r.status for r in results] == ["ok", "ok", "ok"], [r.error for r in results]
    assert started == ["02_tiny"] * 3
    folders = [r.output_notebook.parent for r in results]
    assert len(set(folders)) == 3 and all(f.parent == (tmp_path / "out").resolve() for f in folders)
    base = run_folder_name("02_tiny", results[0].parameters)
    # equal parameters share the hash and get a suffix; other parameters get another hash
    assert sorted([folders[0].name, folders[2].name]) == [base, f"{base}-2"]
    assert folders[1].name == run_folder_name("02_tiny", results[1].parameters) != base

    probes = [json.loads((f / "metrics.json").read_text()) for f in folders]
    assert [p["env"]["PYTHONHASHSEED"] for p in probes] == ["1", "2", "1"]
    assert [p["cwd"] for p in probes] == [str(f) for f in folders]
    assert all(p["env"]["TGAD_TEST_EXTRA"] == "x" for p in probes)
    assert probes[0]["hash"] == probes[2]["hash"] != probes[1]["hash"]  # PYTHONHASHSEED took effect
    assert dict(os.environ) == environ_before and os.getcwd() == cwd_before
    assert "TGAD_TEST_EXTRA" not in os.environ


def test_run_many_validates_every_job_before_anything_runs(tmp_path: Path) -> None:
    source = write_notebook(tmp_path / "02_tiny.ipynb", PROBE_CELL)
    jobs = [(source, {"dropout": 1.5}), (source, {"impl": "bogus"}), (source, {"epoch": 2})]
    with pytest.raises(ParameterError) as info:
        run_many(jobs, tmp_path / "out", parameters={"max_nodes": "abc"})
    message = str(info.value)
    assert "'dropout'" in message and "'impl'" in message and "unknown parameter 'epoch'" in message
    assert message.count("'max_nodes'") == 1  # a shared problem is reported once, not once per job
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="max_workers"):
        run_many([source], tmp_path / "out", max_workers=0)
