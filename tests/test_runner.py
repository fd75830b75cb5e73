"""The notebook runner: parameter inspection/validation, selection, and real papermill runs.

Kernel starts cost a few seconds each, so only three notebooks are executed: one through the API
and two (one failing) through the CLI, shared by several tests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import nbformat
import pytest

from tgad_lite.notebooks import runner
from tgad_lite.notebooks.runner import (
    ParameterError,
    RunnerError,
    main,
    new_run_dir,
    notebook_parameters,
    parse_cli_parameters,
    run_notebook,
    select_notebooks,
    validate_parameters,
)

PARAMETERS_CELL = '''\
profile = "smoke"      # "smoke" (small, CI) or "full" (paper-scale)
seed = 0               # random seed for everything
output_dir = None      # where metrics.json and figures go; the runner sets it
epochs = 3             # number of training epochs
lr = 0.01              # learning rate of the optimiser
dataset = "cora"       # which graph to load
use_cache = True       # reuse files already downloaded
max_nodes = None       # keep at most this many nodes (None keeps all)
'''

METRICS_CELL = '''\
import os, time
from tgad_lite.repro import write_metrics
write_metrics(
    output_dir,
    notebook="tiny",
    metrics={
        "epochs_times_two": epochs * 2,
        "lr": lr,
        "dataset": dataset,
        "use_cache": use_cache,
        "max_nodes": max_nodes,
        "profile": profile,
        "cwd": os.getcwd(),
        "mirror": os.environ.get("TGAD_DATA_MIRROR"),
    },
    params={"epochs": epochs},
    seed=seed,
    started=time.time(),
)
'''


def _write_notebook(path: Path, *cells: str, params: str = PARAMETERS_CELL) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}))
    nb.cells.extend(nbformat.v4.new_code_cell(src) for src in cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    """A notebooks folder: 01 fails in its second cell, 02 writes metrics.json, 03 writes none."""
    folder = tmp_path / "notebooks"
    _write_notebook(folder / "01_fails.ipynb", "raise ValueError('boom from the fixture')", METRICS_CELL)
    _write_notebook(folder / "02_tiny.ipynb", METRICS_CELL)
    _write_notebook(folder / "03_silent.ipynb", "x = epochs + 1")
    return folder


# --------------------------------------------------------------------------- no kernel needed


def test_parameter_inspection_reads_names_types_defaults_and_help(notebooks: Path) -> None:
    specs = notebook_parameters(notebooks / "02_tiny.ipynb")
    assert list(specs) == [
        "profile", "seed", "output_dir", "epochs", "lr", "dataset", "use_cache", "max_nodes"
    ]
    got = {name: (s.type_name, s.default) for name, s in specs.items()}
    assert got == {
        "profile": ("str", "smoke"),
        "seed": ("int", 0),
        "output_dir": ("any", None),
        "epochs": ("int", 3),
        "lr": ("float", 0.01),
        "dataset": ("str", "cora"),
        "use_cache": ("bool", True),
        "max_nodes": ("any", None),
    }
    assert specs["epochs"].help == "number of training epochs"
    assert specs["profile"].help == '"smoke" (small, CI) or "full" (paper-scale)'
    assert specs["dataset"].default_source == '"cora"'


def test_inspection_keeps_braces_in_paths_literal(tmp_path: Path) -> None:
    # papermill str.format()s paths; a folder named like a template must not break inspection
    path = _write_notebook(tmp_path / "{profile}" / "nb.ipynb", METRICS_CELL)
    assert notebook_parameters(path)["epochs"].default == 3


def test_non_literal_default_accepts_anything(tmp_path: Path) -> None:
    cell = 'profile = "smoke"\noutput_dir = None\nsize = 2 ** 10  # nodes\n'
    path = _write_notebook(tmp_path / "x.ipynb", params=cell)
    spec = notebook_parameters(path)["size"]
    assert (spec.type_name, spec.default_source, spec.help) == ("any", "2 ** 10", "nodes")
    assert validate_parameters({"x": notebook_parameters(path)}, {"size": "big"})["x"]["size"] == "big"


def test_cli_values_are_python_literals_with_bare_words_as_text() -> None:
    parsed = parse_cli_parameters(
        ["epochs=5", "lr=1e-3", "dataset=cora", 'name="01"', "use_cache=False", "max_nodes=None",
         "sizes=[1, 2]", "path=a/b=c", "word=01"]
    )
    assert parsed == {
        "epochs": 5, "lr": 1e-3, "dataset": "cora", "name": "01", "use_cache": False,
        "max_nodes": None, "sizes": [1, 2], "path": "a/b=c", "word": "01",
    }
    assert type(parsed["epochs"]) is int and type(parsed["lr"]) is float
    for bad in ("noequals", "=5", "2x=1"):
        with pytest.raises(ParameterError, match="-p"):
            parse_cli_parameters([bad])
    with pytest.raises(ParameterError, match="given twice"):
        parse_cli_parameters(["epochs=1", "epochs=2"])


def test_unknown_parameter_names_the_notebook_and_lists_valid_ones(notebooks: Path) -> None:
    specs = {"02_tiny": notebook_parameters(notebooks / "02_tiny.ipynb")}
    with pytest.raises(ParameterError) as info:
        validate_parameters(specs, {"epoch": 5})
    message = str(info.value)
    assert "unknown parameter 'epoch'" in message and "did you mean 'epochs'" in message
    assert "02_tiny.ipynb" in message
    for valid in ("seed", "epochs", "lr", "dataset", "use_cache", "max_nodes"):
        assert valid in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [("epochs", 1.5, "int"), ("epochs", True, "int"), ("lr", "fast", "float"),
     ("dataset", 42, "str"), ("use_cache", 1, "bool"), ("use_cache", "true", "bool")],
)
def test_wrong_type_names_parameter_expected_type_and_value(notebooks: Path, name, value, expected) -> None:
    specs = {"02_tiny": notebook_parameters(notebooks / "02_tiny.ipynb")}
    with pytest.raises(ParameterError) as info:
        validate_parameters(specs, {name: value})
    message = str(info.value)
    assert f"parameter {name!r}" in message and f"expects {expected}" in message
    assert repr(value) in message and "02_tiny.ipynb" in message


def test_accepted_values_are_converted_and_profile_injected(notebooks: Path) -> None:
    specs = {"02_tiny": notebook_parameters(notebooks / "02_tiny.ipynb")}
    out = validate_parameters(specs, {"lr": 1, "max_nodes": [1, 2], "use_cache": False}, profile="full")
    assert out == {"02_tiny": {"profile": "full", "lr": 1.0, "max_nodes": [1, 2], "use_cache": False}}
    assert type(out["02_tiny"]["lr"]) is float
    with pytest.raises(ParameterError, match="profile must be one of smoke, full"):
        validate_parameters(specs, {}, profile="medium")
    with pytest.raises(ParameterError, match="--profile"):
        validate_parameters(specs, {"profile": "full"})
    with pytest.raises(ParameterError, match="set by the runner"):
        validate_parameters(specs, {"output_dir": "/tmp/x"})


def test_parameter_declared_by_some_notebooks_goes_only_to_those(tmp_path: Path) -> None:
    cell = 'profile = "smoke"\noutput_dir = None\nhidden = 8  # width\n'
    other = _write_notebook(tmp_path / "03_other.ipynb", params=cell)
    tiny = _write_notebook(tmp_path / "02_tiny.ipynb", METRICS_CELL)
    specs = {p.stem: notebook_parameters(p) for p in (tiny, other)}
    out = validate_parameters(specs, {"hidden": 16, "epochs": 4})
    assert out == {
        "02_tiny": {"profile": "smoke", "epochs": 4},
        "03_other": {"profile": "smoke", "hidden": 16},
    }


def test_notebook_without_runner_parameters_is_rejected(tmp_path: Path) -> None:
    path = _write_notebook(tmp_path / "bare.ipynb", params="seed = 0  # seed\n")
    with pytest.raises(ParameterError, match="bare.ipynb has no 'output_dir'"):
        validate_parameters({"bare": notebook_parameters(path)}, {})


def test_only_accepts_name_suffix_or_numeric_prefix(notebooks: Path) -> None:
    available = runner.find_notebooks(notebooks)
    assert [p.name for p in available] == ["01_fails.ipynb", "02_tiny.ipynb", "03_silent.ipynb"]
    for token in ("02_tiny", "02_tiny.ipynb", "02"):
        assert [p.stem for p in select_notebooks(available, [token])] == ["02_tiny"]
    assert [p.stem for p in select_notebooks(available, ["02", "01"])] == ["01_fails", "02_tiny"]
    assert select_notebooks(available, None) == available
    with pytest.raises(RunnerError) as info:
        select_notebooks(available, ["04"])
    assert "'04'" in str(info.value) and "01_fails" in str(info.value) and "02_tiny" in str(info.value)


def test_run_folders_never_collide(tmp_path: Path) -> None:
    now = dt.datetime(2024, 5, 6, 7, 8, 9)
    first, second = new_run_dir(tmp_path, now), new_run_dir(tmp_path, now)
    assert first.name == "20240506-070809" and second.name == "20240506-070809-2"
    assert first.is_dir() and second.is_dir()


def test_missing_kernel_says_how_to_install(notebooks: Path, tmp_path: Path) -> None:
    with pytest.raises(RunnerError) as info:
        run_notebook(notebooks / "02_tiny.ipynb", tmp_path / "out", kernel="no-such-kernel-tgad")
    message = str(info.value)
    assert "make install" in message
    assert "ipykernel install --sys-prefix --name no-such-kernel-tgad" in message
    assert not (tmp_path / "out").exists()


def test_output_that_would_be_the_source_is_refused(tmp_path: Path) -> None:
    source = _write_notebook(tmp_path / "nb" / "nb.ipynb", METRICS_CELL)
    before = _digest(source)
    with pytest.raises(RunnerError, match="is a source notebook"):
        run_notebook(source, tmp_path)  # output would be tmp_path/nb/nb.ipynb == source
    assert _digest(source) == before


def test_bad_parameter_on_cli_fails_before_anything_runs(notebooks: Path, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    code = main(["run", "--notebooks-dir", str(notebooks), "--runs-dir", str(runs), "-p", "epochs=1.5"])
    assert code == 2
    err = capsys.readouterr().err
    assert "parameter 'epochs'" in err and "expects int" in err
    assert not runs.exists()
    code = main(["run", "--notebooks-dir", str(notebooks), "--runs-dir", str(runs), "--only", "07"])
    assert code == 2 and "available notebooks" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["list"], ["run", "--list"]])
def test_list_shows_parameter_table_with_help(notebooks: Path, capsys, argv) -> None:
    assert main([*argv, "--notebooks-dir", str(notebooks), "--only", "02"]) == 0
    out = capsys.readouterr().out
    assert "02_tiny.ipynb" in out and "01_fails" not in out
    epochs_line = next(line for line in out.splitlines() if line.strip().startswith("epochs"))
    assert epochs_line.split()[:3] == ["epochs", "int", "3"]
    assert "number of training epochs" in epochs_line
    assert "which graph to load" in out and "reuse files already downloaded" in out


# --------------------------------------------------------------------------- real executions


@pytest.mark.notebook
def test_api_run_applies_overrides_and_loads_metrics(notebooks: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TGAD_DATA_MIRROR", "mirror/data")
    source = notebooks / "02_tiny.ipynb"
    before = _digest(source)
    overrides = parse_cli_parameters(["epochs=7", "dataset=msl", "lr=1", "use_cache=False"])
    result = run_notebook(source, tmp_path / "out", profile="full", parameters=overrides)

    assert result.ok, result.error
    assert result.name == "02_tiny" and result.error is None and result.seconds > 0
    assert result.output_notebook == (tmp_path / "out" / "02_tiny" / "02_tiny.ipynb").resolve()
    assert result.output_notebook.is_file()
    on_disk = json.loads((result.output_notebook.parent / "metrics.json").read_text())
    assert result.metrics == on_disk
    assert on_disk["metrics"] == {
        "epochs_times_two": 14, "lr": 1.0, "dataset": "msl", "use_cache": False, "max_nodes": None,
        "profile": "full",
        "cwd": str(notebooks.resolve()),  # kernel runs beside the notebook
        "mirror": str(Path.cwd() / "mirror" / "data"),  # made absolute against the caller's cwd
    }
    assert os.environ["TGAD_DATA_MIRROR"] == "mirror/data"  # only the kernel saw the absolute path
    assert _digest(source) == before
    assert Path.cwd() == tmp_path  # papermill's chdir was undone


@pytest.fixture
def cli_run(notebooks: Path, tmp_path: Path, capsys):
    digests = {p: _digest(p) for p in notebooks.glob("*.ipynb")}
    runs = tmp_path / "runs"
    code = main(["run", "--notebooks-dir", str(notebooks), "--runs-dir", str(runs), "-p", "epochs=5"])
    out = capsys.readouterr().out
    return code, out, runs, digests


@pytest.mark.notebook
def test_cli_reports_failure_keeps_going_and_exits_1(cli_run) -> None:
    code, out, runs, digests = cli_run
    assert code == 1
    (run_dir,) = list(runs.iterdir())
    lines = out.splitlines()
    failed = next(line for line in lines if line.strip().startswith("01_fails"))
    assert "FAILED" in failed and "ValueError" in failed and "boom from the fixture" in failed
    assert "In [" in failed
    ok = next(line for line in lines if line.strip().startswith("02_tiny"))
    assert ok.rstrip().endswith("ok")
    silent = next(line for line in lines if line.strip().startswith("03_silent"))
    assert "FAILED" in silent and "wrote no metrics.json" in silent
    assert lines[-1].startswith("3 notebooks: 1 ok, 2 failed in ") and lines[-1].endswith(run_dir.name)

    # the failed runs' notebooks are kept for inspection, the others still ran with the override
    assert (run_dir / "01_fails" / "01_fails.ipynb").is_file()
    assert (run_dir / "03_silent" / "03_silent.ipynb").is_file()
    assert not (run_dir / "01_fails" / "metrics.json").exists()
    metrics = json.loads((run_dir / "02_tiny" / "metrics.json").read_text())
    assert metrics["metrics"]["epochs_times_two"] == 10 and metrics["metrics"]["profile"] == "smoke"
    for path, digest in digests.items():
        assert _digest(path) == digest, f"{path} was modified"
