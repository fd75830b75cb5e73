"""The runner's exceptions: bad input (nothing has run) and an interrupted run (Ctrl-C)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotation: importing runner here would be circular
    from tgad_lite.notebooks.runner import NotebookResult


class RunnerError(ValueError):
    """Bad input to the runner (unknown notebook, parameter, kernel, folder); nothing has run."""


class ParameterError(RunnerError):
    """One or more ``-p`` overrides do not fit the notebooks' parameters cells."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run: the kernels are shut down and the partial notebooks saved, marked.

    A ``KeyboardInterrupt``, so code that does not know the runner still stops. ``results`` holds
    one ``NotebookResult`` per run that had started (status ``interrupted``, or ``ok``/``failed``
    for runs that ended before the interrupt); ``not_run`` names the notebooks never started.
    """

    def __init__(self, results: Sequence[NotebookResult], not_run: Sequence[str] = ()) -> None:
        self.results = list(results)
        self.not_run = list(not_run)
        super().__init__(f"interrupted: {len(self.results)} run(s) stopped or finished, {len(self.not_run)} not run")
