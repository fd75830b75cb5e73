"""One progress display per long loop, chosen for where the code runs.

- ``widget``: a Jupyter widget bar (JupyterLab with ipywidgets), removed when the loop ends;
- ``text``: a tqdm bar on a terminal's stderr, removed when the loop ends;
- ``lines``: one plain line every ``every`` steps and one at the end. This is what papermill runs
  get (the runner sets ``TGAD_PROGRESS=lines``): a saved notebook has no frontend to redraw a bar,
  so every redraw would be kept as text, a thousand lines for a thousand epochs;
- ``off``: nothing.

``TGAD_PROGRESS`` (auto|widget|text|lines|off) overrides the automatic choice.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

ENV_VAR = "TGAD_PROGRESS"
MODES = ("auto", "widget", "text", "lines", "off")

T = TypeVar("T")


def _in_jupyter_kernel() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except AttributeError:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _have_widgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def progress_mode() -> str:
    """The display this process uses: ``TGAD_PROGRESS`` if set, else detected (see module doc)."""
    mode = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"{ENV_VAR}={mode!r} is not one of {'|'.join(MODES)}")
    if mode != "auto":
        return mode
    if _in_jupyter_kernel():
        return "widget" if _have_widgets() else "lines"
    return "text" if sys.stderr.isatty() else "lines"


class Progress:
    """Progress of ``total`` steps: ``update(n=1, **postfix)`` after each step, ``close()`` at the end.

    ``every``: in ``lines`` mode, print a line every this many steps (default: a tenth of ``total``,
    at least 1, at most 100, so an early-stopped run with a huge ``total`` still reports).
    ``enabled=False`` shows nothing (as ``mode="off"``). Usable as a context manager.
    """

    def __init__(
        self,
        total: int,
        desc: str = "",
        *,
        every: int | None = None,
        mode: str | None = None,
        enabled: bool = True,
        file=None,
    ) -> None:
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        self.total, self.desc, self.n = int(total), desc, 0
        self.mode = "off" if not enabled else (mode or progress_mode())
        if self.mode not in MODES[1:]:
            raise ValueError(f"progress mode must be one of {'|'.join(MODES[1:])}, got {self.mode!r}")
        self.every = every if every is not None else max(1, min(100, self.total // 10))
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        self._file = file if file is not None else sys.stdout
        self._postfix: dict[str, Any] = {}
        self._started = time.perf_counter()
        self._bar = None
        self._closed = False
        if self.mode == "widget":
            from tqdm.notebook import tqdm as bar

            self._bar = bar(total=self.total, desc=desc, leave=False)
        elif self.mode == "text":
            from tqdm.std import tqdm as bar

            self._bar = bar(total=self.total, desc=desc, leave=False, file=sys.stderr)

    def _line(self, final: bool) -> str:
        post = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self._postfix.items())
        elapsed = time.perf_counter() - self._started
        head = f"{self.desc}: " if self.desc else ""
        end = " done" if final else ""
        return f"{head}{self.n}/{self.total}{end} ({elapsed:.1f} s){' ' + post if post else ''}"

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.n += n
        if postfix:
            self._postfix = postfix
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(
                    {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in postfix.items()}, refresh=False
                )
            self._bar.update(n)
        elif self.mode == "lines" and self.n % self.every == 0 and self.n < self.total:
            print(self._line(final=False), file=self._file, flush=True)

    def close(self) -> None:
        """End the display: remove the bar, or (lines mode) print the closing line once."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "lines":
            print(self._line(final=True), file=self._file, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", **kwargs: Any) -> Iterator[T]:
    """Iterate ``iterable`` with a :class:`Progress` display (``total`` defaults to ``len(iterable)``)."""
    if total is None:
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.update()
