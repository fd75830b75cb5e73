"""Import a script of ``benchmarks/`` as a module for a test, and forget it afterwards."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


@contextmanager
def loaded_benchmark(filename: str, module_name: str) -> Iterator[ModuleType]:
    """``benchmarks/<filename>`` imported as ``module_name`` while the block runs."""
    spec = importlib.util.spec_from_file_location(module_name, BENCH_DIR / filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(module_name, None)
