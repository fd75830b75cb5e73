"""Run the notebooks in ``notebooks/`` with papermill: ``python -m tgad_lite.notebooks run``.

Importing this package starts no kernel and imports neither papermill nor any model code.
"""

from tgad_lite.notebooks.runner import (
    NotebookResult,
    ParameterError,
    ParameterSpec,
    RunnerError,
    check_kernel,
    find_notebooks,
    main,
    new_run_dir,
    notebook_parameters,
    parse_cli_parameters,
    run_notebook,
    select_notebooks,
    validate_parameters,
)

__all__ = [
    "NotebookResult",
    "ParameterError",
    "ParameterSpec",
    "RunnerError",
    "check_kernel",
    "find_notebooks",
    "main",
    "new_run_dir",
    "notebook_parameters",
    "parse_cli_parameters",
    "run_notebook",
    "select_notebooks",
    "validate_parameters",
]
