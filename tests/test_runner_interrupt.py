"""Ctrl-C during a run: kernels stopped (none left behind), partial notebooks saved and marked as
interrupted, the summary printed, exit code 130.

The runner runs in a subprocess that gets a real SIGINT, as from a terminal's Ctrl-C.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from _processes import alive, wait_for
from fixtures.runner_notebooks import PID_CELL, PROBE_CELL, SLEEP_CELL, STUBBORN_CELL, write_notebook

from tgad_lite.notebooks.runner import BANNER_TAG, STATUS_KEY

# The CLI with a 1 s grace before SIGKILL, so the stubborn kernel costs 1 s rather than 5.
RUNNER = (
    "import sys; import tgad_lite.notebooks.runner as r; r.INTERRUPT_GRACE_S = 1.0; "
    "from tgad_lite.notebooks.cli import main; raise SystemExit(main(sys.argv[1:]))"
)


@pytest.mark.notebook
def test_ctrl_c_stops_kernels_saves_marked_notebooks_and_exits_130(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    write_notebook(notebooks / "01_sleepy.ipynb", PID_CELL, SLEEP_CELL, PROBE_CELL)
    write_notebook(notebooks / "02_stubborn.ipynb", PID_CELL, STUBBORN_CELL, PROBE_CELL)
    write_notebook(notebooks / "03_queued.ipynb", PROBE_CELL)
    runs = tmp_path / "runs"
    argv = ["run", "--notebooks-dir", str(notebooks), "--runs-dir", str(runs), "--jobs", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, *argv], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_for(lambda: len(list(runs.glob("*/*/kernel.pid"))) == 2, timeout=120), "kernels did not start"
        time.sleep(1.0)  # both kernels are now inside their blocking cell
        pids = {p.parent.name.split("-")[0]: int(p.read_text()) for p in runs.glob("*/*/kernel.pid")}
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err

    assert all(wait_for(lambda pid=pid: not alive(pid), timeout=10) for pid in pids.values()), "kernel left behind"
    assert "Traceback" not in err  # no raw KeyboardInterrupt
    lines = out.splitlines()
    assert lines[-1].startswith("3 notebooks: 0 ok, 0 failed, 2 interrupted, 1 not run in ")
    for name in ("01_sleepy", "02_stubborn"):
        line = next(x for x in lines if x.strip().startswith(name) and "INTERRUPTED" in x)
        assert "interrupted (Ctrl-C) in cell In [" in line

    (run_dir,) = runs.iterdir()
    assert sorted(p.name.split("-")[0] for p in run_dir.iterdir()) == ["01_sleepy", "02_stubborn"]  # 03 never ran
    for name in ("01_sleepy", "02_stubborn"):
        (path,) = run_dir.glob(f"{name}-*/{name}.ipynb")
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata[STATUS_KEY]["status"] == "interrupted"
        banner = nb.cells[0]
        assert BANNER_TAG in banner.metadata["tags"] and "did not complete" in banner.source
        code = [c for c in nb.cells if c.cell_type == "code"]
        blocking, after = code[-2], code[-1]
        assert blocking.metadata.papermill["status"] == "failed"
        assert any(o.output_type == "error" and o.ename == "KeyboardInterrupt" for o in blocking.outputs)
        assert after.metadata.papermill["status"] == "pending" and not after.outputs  # never ran, not "completed"
        assert not (path.parent / "metrics.json").exists()
        assert not list(path.parent.glob(".*partial"))
