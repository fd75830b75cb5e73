"""Run the notebooks in ``notebooks/`` with papermill: ``python -m tgad_lite.notebooks run``.

``run_notebook`` and ``run_many`` are the Python entry points; they change neither
``os.environ`` nor the working directory, so several may run at once. Importing this package
starts no kernel and imports neither papermill nor any model code.
"""

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

__all__ = [
    "NotebookJob",
    "NotebookResult",
    "ParameterError",
    "ParameterSpec",
    "Range",
    "RunInterrupted",
    "RunnerError",
    "check_kernel",
    "find_notebooks",
    "format_parameter_table",
    "kernel_environment",
    "main",
    "new_run_dir",
    "notebook_parameters",
    "parameter_problems",
    "parse_cli_parameters",
    "run_folder_name",
    "run_many",
    "run_notebook",
    "select_notebooks",
    "validate_jobs",
    "validate_parameters",
]
