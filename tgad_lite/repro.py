"""Reproducibility: one seeding function and the run metadata written beside every result."""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np

_VERSIONED = ("tgad-lite", "torch", "torch-geometric", "numpy", "scipy", "scikit-learn", "pandas")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so a run repeats exactly on CPU.

    ``deterministic`` also asks PyTorch for deterministic kernels where they exist
    (``warn_only`` so a CUDA op without one still runs).
    """
    import torch

    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def versions() -> dict[str, str]:
    """Versions of Python and the packages whose changes can move a result."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "tolist") and hasattr(value, "dim"):  # torch.Tensor without importing torch
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value != value:
        raise ValueError("refusing to write NaN into metrics.json: a result came out undefined")
    return value


def write_metrics(
    output_dir: str | os.PathLike,
    notebook: str,
    metrics: Mapping[str, Any],
    params: Mapping[str, Any],
    seed: int,
    started: float,
) -> Path:
    """Write ``metrics.json`` (key results + run metadata) into ``output_dir``; return its path.

    ``started`` is the ``time.time()`` taken at the top of the notebook, so the file records the
    notebook's own run time. The file is written to a temporary name and renamed, so a reader never
    sees half a file.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "notebook": notebook,
        "metrics": _jsonable(dict(metrics)),
        "params": _jsonable(dict(params)),
        "seed": seed,
        "runtime_s": round(time.time() - started, 2),
        "versions": versions(),
        "python_executable": sys.executable,
    }
    path = out / "metrics.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, allow_nan=False))
    tmp.replace(path)
    return path
