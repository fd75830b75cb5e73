"""Run the notebooks in ``notebooks/`` with papermill: ``python -m tgad_lite.notebooks run``;
sweep one over a grid of parameters on Dask: ``python -m tgad_lite.notebooks sweep``.

``run_notebook`` and ``run_many`` are the Python entry points; they change neither
``os.environ`` nor the working directory, so several may run at once. Importing this package
starts no kernel and imports neither papermill nor any model code.
"""

from tgad_lite.notebooks.aggregate import aggregate_runs, flatten_metrics, format_summary, load_runs
from tgad_lite.notebooks.cli import find_notebooks, main, select_notebooks
from tgad_lite.notebooks.errors import ParameterError, RunInterrupted, RunnerError
from tgad_lite.notebooks.parameters import (
    ParameterSpec,
    Range,
    format_parameter_table,
    notebook_parameters,
    parameter_problems,
    parse_cli_parameters,
    validate_jobs,
    validate_parameters,
)
from tgad_lite.notebooks.runner import (
    NotebookJob,
    NotebookResult,
    check_kernel,
    kernel_environment,
    new_run_dir,
    run_folder_name,
    run_many,
    run_notebook,
)
from tgad_lite.notebooks.sweep import SweepInterrupted, parse_grid, plan_sweep, sweep

__all__ = [
    "NotebookJob",
    "NotebookResult",
    "ParameterError",
    "ParameterSpec",
    "Range",
    "RunInterrupted",
    "RunnerError",
    "SweepInterrupted",
    "aggregate_runs",
    "check_kernel",
    "find_notebooks",
    "flatten_metrics",
    "format_parameter_table",
    "format_summary",
    "kernel_environment",
    "load_runs",
    "main",
    "new_run_dir",
    "notebook_parameters",
    "parameter_problems",
    "parse_cli_parameters",
    "parse_grid",
    "plan_sweep",
    "run_folder_name",
    "run_many",
    "run_notebook",
    "select_notebooks",
    "sweep",
    "validate_jobs",
    "validate_parameters",
]
