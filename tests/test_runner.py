"""The notebook runner: inspection, validation before anything runs, selection, and real papermill runs.

Kernel starts cost a few seconds each, so few notebooks are executed: one through the API and
three (two failing) through the CLI. Parallel runs: test_runner_parallel.py; Ctrl-C:
test_runner_interrupt.py; the declaration syntax: test_runner_declarations.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from fixtures.runner_notebooks import PROBE_CELL, write_notebook

from tgad_lite.notebooks import (
    ParameterError,
    RunnerError,
    find_notebooks,
    main,
    new_run_dir,
    notebook_parameters,
    parse_cli_parameters,
    run_folder_name,
    run_notebook,
    select_notebooks,
    validate_parameters,
)
from tgad_lite.notebooks.runner import INLINE_BACKEND, STATUS_KEY


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fixture_notebooks(root: Path) -> Path:
    folder = root / "notebooks"
    write_notebook(folder / "01_fails.ipynb", "raise ValueError('boom from the fixture')", PROBE_CELL)
    write_notebook(folder / "02_tiny.ipynb", PROBE_CELL)
    write_notebook(folder / "03_silent.ipynb", "x = epochs + 1")
    write_notebook(folder / "04_crashes.ipynb", "import os\nos._exit(3)", PROBE_CELL)  # the kernel dies
    return folder


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    """A notebooks folder: 01 fails in its second cell, 02 writes metrics.json, 03 writes none, 04's
    kernel dies."""
    return _fixture_notebooks(tmp_path)


def _specs(notebooks: Path) -> dict:
    return {"02_tiny": notebook_parameters(notebooks / "02_tiny.ipynb")}


# --------------------------------------------------------------------------- no kernel needed


def test_parameter_inspection_reads_names_types_declarations_and_help(notebooks: Path) -> None:
    specs = notebook_parameters(notebooks / "02_tiny.ipynb")
    assert list(specs) == [
        "profile", "seed", "device", "output_dir", "epochs", "lr", "dataset", "use_cache", "max_nodes",
        "dropout", "impl", "sizes",
    ]  # fmt: skip
    got = {name: (s.type_name, s.default) for name, s in specs.items()}
    assert got == {
        "profile": ("str", "smoke"),
        "seed": ("int", 0),
        "device": ("str", "auto"),
        "output_dir": ("str | None", None),
        "epochs": ("int", 3),
        "lr": ("float", 0.01),
        "dataset": ("str", "cora"),
        "use_cache": ("bool", True),
        "max_nodes": ("int | None", None),
        "dropout": ("float", 0.6),
        "impl": ("str", "sparse"),
        "sizes": ("list[int] | None", None),
    }
    assert specs["epochs"].help == "number of training epochs"
    assert specs["profile"].help == '"smoke" (small, CI) or "full" (paper-scale)'
    assert specs["profile"].choices == ("smoke", "full")
    assert specs["dataset"].default_source == '"cora"' and specs["dataset"].choices is None
    assert str(specs["dropout"].range) == "[0, 1)" and str(specs["lr"].range) == "(0, 1]"
    assert specs["max_nodes"].declared and not specs["epochs"].declared


def test_inspection_keeps_braces_in_paths_literal(tmp_path: Path) -> None:
    # papermill str.format()s paths; a folder named like a template must not break inspection
    path = write_notebook(tmp_path / "{profile}" / "nb.ipynb", PROBE_CELL)
    assert notebook_parameters(path)["epochs"].default == 3


def test_non_literal_default_accepts_anything(tmp_path: Path) -> None:
    cell = 'profile = "smoke"\noutput_dir = None\nsize = 2 ** 10  # nodes\n'
    path = write_notebook(tmp_path / "x.ipynb", params=cell)
    spec = notebook_parameters(path)["size"]
    assert (spec.type_name, spec.default_source, spec.help) == ("any", "2 ** 10", "nodes")
    assert validate_parameters({"x": notebook_parameters(path)}, {"size": "big"})["x"]["size"] == "big"


def test_unreadable_declaration_names_notebook_parameter_and_fix(tmp_path: Path) -> None:
    cell = 'profile = "smoke"\noutput_dir = None  # str | None: out\ndropout = 0.6  # range: [0, 1: dropout\n'
    path = write_notebook(tmp_path / "bad.ipynb", params=cell)
    with pytest.raises(RunnerError) as info:
        notebook_parameters(path)
    message = str(info.value)
    assert "bad.ipynb" in message and "'dropout'" in message and "range: [0, 1)" in message


def test_cli_values_are_python_literals_with_bare_words_as_text() -> None:
    parsed = parse_cli_parameters(
        ["epochs=5", "lr=1e-3", "dataset=cora", 'name="01"', "use_cache=False", "max_nodes=None",
         "sizes=[1, 2]", "path=a/b=c", "word=01"]
    )  # fmt: skip
    assert parsed == {
        "epochs": 5, "lr": 1e-3, "dataset": "cora", "name": "01", "use_cache": False,
        "max_nodes": None, "sizes": [1, 2], "path": "a/b=c", "word": "01",
    }  # fmt: skip
    assert type(parsed["epochs"]) is int and type(parsed["lr"]) is float
    for bad in ("noequals", "=5", "2x=1"):
        with pytest.raises(ParameterError, match="-p"):
            parse_cli_parameters([bad])
    with pytest.raises(ParameterError, match="given twice"):
        parse_cli_parameters(["epochs=1", "epochs=2"])


def test_unknown_parameter_names_the_notebook_and_lists_valid_ones(notebooks: Path) -> None:
    with pytest.raises(ParameterError) as info:
        validate_parameters(_specs(notebooks), {"epoch": 5})
    message = str(info.value)
    assert "unknown parameter 'epoch'" in message and "did you mean 'epochs'" in message
    assert "02_tiny.ipynb" in message
    for valid in ("seed", "epochs", "lr", "dataset", "use_cache", "max_nodes"):
        assert valid in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [("epochs", 1.5, "int"), ("epochs", True, "int"), ("lr", "fast", "float"), ("dataset", 42, "str"),
     ("use_cache", 1, "bool"), ("use_cache", "true", "bool"), ("max_nodes", "abc", "int | None"),
     ("max_nodes", 2.5, "int | None"), ("sizes", [1, "x"], "list[int] | None"), ("sizes", 3, "list[int] | None")],
)  # fmt: skip
def test_wrong_type_names_parameter_expected_type_and_value(notebooks: Path, name, value, expected) -> None:
    with pytest.raises(ParameterError) as info:
        validate_parameters(_specs(notebooks), {name: value})
    message = str(info.value)
    assert f"parameter {name!r}" in message and f"expects {expected} (" in message
    assert repr(value) in message and "02_tiny.ipynb" in message


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [("dropout", 1.5, "[0, 1)"), ("dropout", 1, "[0, 1)"), ("dropout", -0.1, "[0, 1)"), ("lr", 0, "(0, 1]"),
     ("epochs", 0, "[1, 1000]"), ("max_nodes", 0, "[1, inf)"), ("sizes", [4, 0], "[1, inf)"),
     ("impl", "bogus", "sparse|dense|naive"), ("device", "gpu", "auto|cpu|cuda"),
     ("device", "cuda:x", "auto|cpu|cuda")],
)  # fmt: skip
def test_out_of_range_or_choice_names_notebook_parameter_allowed_and_value(
    notebooks: Path, name, value, allowed
) -> None:
    with pytest.raises(ParameterError) as info:
        validate_parameters(_specs(notebooks), {name: value})
    message = str(info.value)
    assert f"parameter {name!r} of 02_tiny.ipynb" in message and allowed in message
    shown = value[-1] if isinstance(value, list) else value
    assert f"got {shown!r}" in message


def test_every_problem_is_listed_at_once(notebooks: Path) -> None:
    with pytest.raises(ParameterError) as info:
        validate_parameters(_specs(notebooks), {"dropout": 1.5, "impl": "bogus", "max_nodes": "abc", "epoch": 1})
    message = str(info.value)
    for name in ("'dropout'", "'impl'", "'max_nodes'", "'epoch'"):
        assert name in message


def test_accepted_values_are_converted_and_profile_injected(notebooks: Path) -> None:
    out = validate_parameters(
        _specs(notebooks),
        {"lr": 1, "max_nodes": 5, "use_cache": False, "sizes": (2, 3), "device": " CUDA:1 ", "dropout": 0},
        profile="full",
    )
    assert out == {
        "02_tiny": {
            "profile": "full", "lr": 1.0, "max_nodes": 5, "use_cache": False, "sizes": [2, 3], "device": "cuda:1",
            "dropout": 0.0,
        }
    }  # fmt: skip
    assert type(out["02_tiny"]["lr"]) is float and type(out["02_tiny"]["dropout"]) is float
    assert validate_parameters(_specs(notebooks), {"max_nodes": None, "sizes": None})["02_tiny"]["sizes"] is None
    with pytest.raises(ParameterError, match="profile must be one of smoke, full"):
        validate_parameters(_specs(notebooks), {}, profile="medium")
    with pytest.raises(ParameterError, match="--profile"):
        validate_parameters(_specs(notebooks), {"profile": "full"})
    with pytest.raises(ParameterError, match="set by the runner"):
        validate_parameters(_specs(notebooks), {"output_dir": "/tmp/x"})


@pytest.mark.parametrize("seed", [-1, 2**32, 1.0, "7"])
def test_seed_must_be_a_valid_hash_seed(notebooks: Path, seed) -> None:
    with pytest.raises(ParameterError) as info:
        validate_parameters(_specs(notebooks), {"seed": seed})
    assert "'seed'" in str(info.value) and repr(seed) in str(info.value)


def test_parameter_declared_by_some_notebooks_goes_only_to_those(tmp_path: Path) -> None:
    cell = 'profile = "smoke"\noutput_dir = None\nhidden = 8  # width\n'
    other = write_notebook(tmp_path / "03_other.ipynb", params=cell)
    tiny = write_notebook(tmp_path / "02_tiny.ipynb", PROBE_CELL)
    specs = {p.stem: notebook_parameters(p) for p in (tiny, other)}
    out = validate_parameters(specs, {"hidden": 16, "epochs": 4})
    assert out == {
        "02_tiny": {"profile": "smoke", "epochs": 4},
        "03_other": {"profile": "smoke", "hidden": 16},
    }


def test_notebook_without_runner_parameters_is_rejected(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "bare.ipynb", params="seed = 0  # seed\n")
    with pytest.raises(ParameterError, match="bare.ipynb has no 'output_dir'"):
        validate_parameters({"bare": notebook_parameters(path)}, {})


def test_only_accepts_name_suffix_or_numeric_prefix(notebooks: Path) -> None:
    available = find_notebooks(notebooks)
    assert [p.name for p in available] == ["01_fails.ipynb", "02_tiny.ipynb", "03_silent.ipynb", "04_crashes.ipynb"]
    for token in ("02_tiny", "02_tiny.ipynb", "02"):
        assert [p.stem for p in select_notebooks(available, [token])] == ["02_tiny"]
    assert [p.stem for p in select_notebooks(available, ["02", "01"])] == ["01_fails", "02_tiny"]
    assert select_notebooks(available, None) == available
    with pytest.raises(RunnerError) as info:
        select_notebooks(available, ["05"])
    assert "'05'" in str(info.value) and "01_fails" in str(info.value) and "02_tiny" in str(info.value)


def test_run_folders_never_collide(tmp_path: Path) -> None:
    now = dt.datetime(2024, 5, 6, 7, 8, 9)
    first, second = new_run_dir(tmp_path, now), new_run_dir(tmp_path, now)
    assert first.name == "20240506-070809" and second.name == "20240506-070809-2"
    assert first.is_dir() and second.is_dir()


def test_run_folder_name_is_notebook_and_hash_of_parameter_values() -> None:
    a = run_folder_name("02_cora", {"seed": 0, "lr": 0.005})
    assert a.startswith("02_cora-") and len(a) == len("02_cora-") + 8
    assert run_folder_name("02_cora", {"lr": 0.005, "seed": 0}) == a  # order does not matter
    assert run_folder_name("02_cora", {"seed": 1, "lr": 0.005}) != a
    assert run_folder_name("01_gat", {"seed": 0, "lr": 0.005}) != a


def test_missing_kernel_says_how_to_install(notebooks: Path, tmp_path: Path) -> None:
    with pytest.raises(RunnerError) as info:
        run_notebook(notebooks / "02_tiny.ipynb", tmp_path / "out", kernel="no-such-kernel-tgad")
    message = str(info.value)
    assert "make install" in message
    assert "ipykernel install --sys-prefix --name no-such-kernel-tgad" in message
    assert not (tmp_path / "out").exists()


def test_refused_api_run_creates_no_folder(notebooks: Path, tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="'max_nodes'"):
        run_notebook(notebooks / "02_tiny.ipynb", tmp_path / "out", parameters={"max_nodes": "abc"})
    with pytest.raises(RunnerError, match="env must map names to text"):
        run_notebook(notebooks / "02_tiny.ipynb", tmp_path / "out", env={"TGAD_DATA_DIR": 3})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("override", "expected"),
    [("max_nodes=abc", "expects int | None (default None), got str 'abc'"),
     ("dropout=1.5", "must be a number in [0, 1), got 1.5"),
     ("impl=bogus", "must be one of sparse|dense|naive, got 'bogus'"),
     ("epochs=1.5", "expects int (default 3), got float 1.5")],
)  # fmt: skip
def test_bad_parameter_on_cli_fails_before_anything_runs(notebooks: Path, tmp_path: Path, capsys, override, expected):
    runs = tmp_path / "runs"
    code = main(["run", "--notebooks-dir", str(notebooks), "--runs-dir", str(runs), "-p", override])
    assert code == 2
    err = capsys.readouterr().err
    assert f"parameter {override.split('=')[0]!r} of 02_tiny.ipynb" in err and expected in err
    assert not runs.exists()  # refused: no run folder at all


def test_unknown_notebook_on_cli_exits_2(notebooks: Path, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    code = main(["run", "--notebooks-dir", str(notebooks), "--runs-dir", str(runs), "--only", "07"])
    assert code == 2 and "available notebooks" in capsys.readouterr().err
    assert not runs.exists()


@pytest.mark.parametrize("argv", [["list"], ["run", "--list"]])
def test_list_shows_type_default_allowed_values_and_help(notebooks: Path, capsys, argv) -> None:
    assert main([*argv, "--notebooks-dir", str(notebooks), "--only", "02"]) == 0
    out = capsys.readouterr().out
    assert "02_tiny.ipynb" in out and "01_fails" not in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert rows["epochs"].split()[:4] == ["epochs", "int", "3", "[1,"] and "number of training epochs" in rows["epochs"]
    assert rows["max_nodes"].split()[:6] == ["max_nodes", "int", "|", "None", "None", "[1,"]
    assert "sparse|dense|naive" in rows["impl"] and "layer implementation" in rows["impl"]
    assert "[0, 1)" in rows["dropout"] and "auto|cpu|cuda" in rows["device"]
    assert "which graph to load" in rows["dataset"] and "reuse files already downloaded" in rows["use_cache"]


# --------------------------------------------------------------------------- real executions


@pytest.mark.notebook
def test_api_run_applies_overrides_in_its_own_folder_and_environment(
    notebooks: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TGAD_DATA_MIRROR", "mirror/data")
    monkeypatch.setenv("MPLBACKEND", "TkAgg")  # a GUI backend in the caller's shell must not reach the kernel
    environ_before, cwd_before = dict(os.environ), os.getcwd()
    source = notebooks / "02_tiny.ipynb"
    before = _digest(source)
    overrides = parse_cli_parameters(["epochs=7", "dataset=msl", "lr=1", "use_cache=False", "seed=11"])
    result = run_notebook(source, tmp_path / "out", profile="full", parameters=overrides, env={"TGAD_DATA_DIR": "d"})

    assert result.ok, result.error
    assert result.status == "ok" and result.error is None and result.seconds > 0
    folder = result.output_notebook.parent
    assert folder.parent == (tmp_path / "out").resolve()
    assert folder.name == run_folder_name("02_tiny", result.parameters)
    assert result.output_notebook.name == "02_tiny.ipynb" and result.output_notebook.is_file()
    assert result.parameters["epochs"] == 7 and result.parameters["impl"] == "sparse"  # defaults included
    probe = json.loads((folder / "metrics.json").read_text())
    assert result.metrics == probe
    assert {k: probe[k] for k in ("epochs_times_two", "lr", "dataset", "use_cache", "max_nodes", "profile")} == {
        "epochs_times_two": 14, "lr": 1.0, "dataset": "msl", "use_cache": False, "max_nodes": None, "profile": "full"
    }  # fmt: skip
    assert probe["cwd"] == str(folder)  # the kernel works in its own run folder
    assert probe["env"] == {
        "PYTHONHASHSEED": "11",
        "TGAD_PROGRESS": "lines",
        "MPLBACKEND": INLINE_BACKEND,
        "TGAD_DATA_MIRROR": str(Path.cwd() / "mirror" / "data"),  # made absolute against the caller's cwd
        "TGAD_DATA_DIR": str(Path.cwd() / "d"),
        "TGAD_TEST_EXTRA": None,
    }
    executed = nbformat.read(result.output_notebook, as_version=4)
    assert executed.metadata[STATUS_KEY]["status"] == "ok"
    assert executed.metadata[STATUS_KEY]["parameters"] == result.parameters
    assert dict(os.environ) == environ_before and os.getcwd() == cwd_before  # no global state touched
    assert _digest(source) == before


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One CLI run of the three fixture notebooks, shared by the tests below (kernels are slow)."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("cli-run")
    notebooks = _fixture_notebooks(tmp)
    digests = {p: _digest(p) for p in notebooks.glob("*.ipynb")}
    runs = tmp / "runs"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["run", "--notebooks-dir", str(notebooks), "--runs-dir", str(runs), "-p", "epochs=5"])
    return code, out.getvalue(), runs, digests


def _one(run_dir: Path, name: str) -> Path:
    (folder,) = run_dir.glob(f"{name}-*")
    return folder


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
    crashed = next(line for line in lines if line.strip().startswith("04_crashes"))
    # The cell is named by its count, or by its position when the kernel died before counting it.
    assert "FAILED" in crashed and "DeadKernelError" in crashed
    assert re.search(r"in cell (In \[\d+\]|code cell \d+)", crashed), crashed
    assert lines[-1].startswith("4 notebooks: 1 ok, 3 failed in ") and lines[-1].endswith(run_dir.name)

    metrics = json.loads((_one(run_dir, "02_tiny") / "metrics.json").read_text())
    assert metrics["epochs_times_two"] == 10 and metrics["profile"] == "smoke"
    assert not (_one(run_dir, "01_fails") / "metrics.json").exists()
    for path, digest in digests.items():
        assert _digest(path) == digest, f"{path} was modified"


@pytest.mark.notebook
def test_failed_runs_keep_their_notebook_clearly_marked_failed(cli_run) -> None:
    _, _, runs, _ = cli_run
    (run_dir,) = list(runs.iterdir())
    for name, reason in (("01_fails", "boom from the fixture"), ("03_silent", "wrote no metrics.json")):
        executed = nbformat.read(_one(run_dir, name) / f"{name}.ipynb", as_version=4)
        verdict = executed.metadata[STATUS_KEY]
        assert verdict["status"] == "failed" and reason in verdict["error"]
        first = executed.cells[0]
        assert first.cell_type == "markdown" and first.source.startswith("**Run failed.**") and reason in first.source
    executed = nbformat.read(_one(run_dir, "04_crashes") / "04_crashes.ipynb", as_version=4)
    assert executed.metadata[STATUS_KEY]["status"] == "failed"
    crashing, after = [c for c in executed.cells if c.cell_type == "code"][-2:]
    assert crashing.metadata.papermill["status"] == "failed"  # not "completed", as papermill left it
    assert [o.ename for o in crashing.outputs if o.output_type == "error"] == ["DeadKernelError"]
    assert after.metadata.papermill["status"] == "pending" and not after.outputs
    executed = nbformat.read(_one(run_dir, "02_tiny") / "02_tiny.ipynb", as_version=4)
    assert executed.metadata[STATUS_KEY]["status"] == "ok" and executed.cells[0].cell_type == "code"
