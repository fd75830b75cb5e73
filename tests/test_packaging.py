"""Project hygiene: environment.yml and pyproject.toml agree; importing the package has no side effects."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pip_section(text: str) -> list[str]:
    lines, inside = [], False
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if line.strip() == "- pip:":
            inside = True
            continue
        if inside and line.strip().startswith("- "):
            lines.append(line.strip()[2:].strip())
        elif inside and line.strip():
            break
    return lines


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    conda = [d for d in _pip_section((REPO / "environment.yml").read_text()) if d != "-e ."]
    assert sorted(conda) == sorted(declared)
    assert "torch==2.13.0" in declared


def test_importing_tgad_lite_has_no_side_effects(tmp_path):
    code = (
        "import os, sys, json, random\n"
        "state = random.getstate()\n"
        "import tgad_lite, tgad_lite.data, tgad_lite.gat, tgad_lite.train, tgad_lite.metrics, "
        "tgad_lite.viz, tgad_lite.notebooks, tgad_lite.repro\n"
        "import tgad_lite.data.microservices\n"
        "print(json.dumps({'files': sorted(os.listdir('.')), 'random_untouched': random.getstate() == state,"
        " 'mpl_backend_set': 'matplotlib.pyplot' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"files": [], "random_untouched": True, "mpl_backend_set": False}


def test_notebooks_are_committed_without_outputs_and_with_parameters():
    """Each notebook: no outputs, one cell tagged 'parameters' whose declarations parse, every
    parameter with help text, every None default with a declared type, every default inside its
    own choices and range, and the runner's four parameters with the agreed declarations."""
    import nbformat

    from tgad_lite.device import DEVICE_CHOICES
    from tgad_lite.notebooks import RunnerError, notebook_parameters, parameter_problems

    paths = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert paths, "no notebooks found"
    problems: list[str] = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        if not all(not c.outputs and c.execution_count is None for c in code):
            problems.append(f"{path.name} has outputs; clear them before committing")
        if nb.metadata.get("kernelspec", {}).get("name") != "tgad-lite":
            problems.append(f"{path.name}: kernelspec must be tgad-lite")
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        if len(tagged) != 1:
            problems.append(f"{path.name} needs exactly one cell tagged 'parameters', has {len(tagged)}")
            continue
        try:
            specs = notebook_parameters(path)
        except RunnerError as exc:  # a declaration that does not parse
            problems.append(str(exc))
            continue
        problems += parameter_problems(path.name, specs)
        required = {
            "profile": ("choice: smoke|full", lambda s: s.choices == ("smoke", "full")),
            "seed": ("an int default", lambda s: s.types == ("int",)),
            "device": (f"choice: {'|'.join(DEVICE_CHOICES)}", lambda s: s.choices == DEVICE_CHOICES),
            "output_dir": ("`output_dir = None  # str | None: ...`", lambda s: s.types == ("str", "None")),
        }
        for name, (wanted, ok) in required.items():
            if name not in specs:
                problems.append(f"{path.name}'s parameters cell lacks {name} ({wanted})")
            elif not ok(specs[name]):
                problems.append(
                    f"{path.name}: {name} should be declared with {wanted}, is {specs[name].type_name} "
                    f"{specs[name].allowed() or '(no choices or range)'}"
                )
    assert not problems, "\n".join(problems)


def test_every_parameter_line_is_seen_by_papermill():
    """papermill drops a parameter whose help comment contains '='; the runner would then reject it."""
    import re

    import nbformat

    from tgad_lite.notebooks import notebook_parameters

    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        written = re.findall(r"^([A-Za-z_]\w*)\s*=", cell.source, flags=re.M)
        specs = notebook_parameters(path)
        assert sorted(specs) == sorted(written), f"{path.name}: papermill sees {sorted(specs)}"
        assert all(spec.help for spec in specs.values()), f"{path.name}: every parameter needs a # help comment"
