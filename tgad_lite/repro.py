"""Reproducibility: one seeding function and the run metadata written beside every result."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

_VERSIONED = ("tgad-lite", "torch", "torch-geometric", "numpy", "scipy", "scikit-learn", "pandas")


# cuBLAS needs this before its first handle is made to give the same results run after run on
# CUDA >= 10.2; without it, deterministic mode makes cuBLAS calls raise. ":4096:8" is the setting
# PyTorch's reproducibility notes give (8 buffers of 4 MiB per stream).
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


@dataclass(frozen=True)
class DeterminismState:
    """PyTorch's deterministic-mode settings at one moment, for :func:`restore_determinism`."""

    enabled: bool
    warn_only: bool
    cudnn_benchmark: bool


def determinism_state() -> DeterminismState:
    """The current deterministic-mode settings (``torch.use_deterministic_algorithms`` and cuDNN's)."""
    import torch

    return DeterminismState(
        enabled=torch.are_deterministic_algorithms_enabled(),
        warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn_benchmark=torch.backends.cudnn.benchmark,
    )


def restore_determinism(state: DeterminismState) -> None:
    """Put back the settings ``state`` recorded (e.g. the value :func:`seed_everything` returned)."""
    import torch

    torch.use_deterministic_algorithms(state.enabled, warn_only=state.warn_only)
    torch.backends.cudnn.benchmark = state.cudnn_benchmark


def _set_determinism(enabled: bool) -> None:
    import torch

    if enabled:
        if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
            if torch.cuda.is_initialized():
                warnings.warn(
                    "CUDA was initialised before deterministic mode was asked for, so setting "
                    "CUBLAS_WORKSPACE_CONFIG now may come too late for cuBLAS; call seed_everything() "
                    f"before any CUDA work, or export CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACE_CONFIG}",
                    RuntimeWarning,
                    stacklevel=3,
                )
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE_CONFIG
        # warn_only: an op without a deterministic kernel (some CUDA scatters) warns instead of raising.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False  # benchmark mode picks kernels by timing: not repeatable
    else:
        torch.use_deterministic_algorithms(False)


def seed_everything(seed: int, deterministic: bool = True) -> DeterminismState:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so a run repeats exactly on CPU.

    ``deterministic=True`` also asks PyTorch for deterministic kernels where they exist
    (``warn_only``, so a CUDA op without one still runs), turns cuDNN's benchmark mode off, and
    sets ``CUBLAS_WORKSPACE_CONFIG`` (unless already set), which cuBLAS reads when CUDA starts:
    call this before any CUDA work. ``deterministic=False`` turns deterministic mode off.

    Returns the deterministic-mode settings from before the call; pass them to
    :func:`restore_determinism` to undo the switch (or use :func:`deterministic` as a context).

    ``PYTHONHASHSEED`` is not set here: Python reads it only at start-up, so setting it in a
    running process changes nothing. The notebook runner sets it (to the ``seed`` parameter) in
    the environment of each notebook's kernel.
    """
    import torch

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    previous = determinism_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    _set_determinism(deterministic)
    return previous


@contextlib.contextmanager
def deterministic(enabled: bool = True) -> Iterator[DeterminismState]:
    """Deterministic mode on (or off) inside the ``with`` block, the previous settings back after it."""
    previous = determinism_state()
    try:
        _set_determinism(enabled)
        yield previous
    finally:
        restore_determinism(previous)


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


def write_scores(output_dir: str | os.PathLike, arrays: Mapping[str, Any], name: str = "scores.npz") -> Path:
    """Write named score arrays (e.g. ``"test/mtad-gat/seed0/C-1"`` -> ``[T]``) into ``output_dir/name``.

    The arrays a notebook's tables are computed from, so a new metric or post-processing can be
    tried on them without training again (``np.load(path)[key]``). Every array must be numeric and
    finite: a NaN score would make every metric built on it meaningless, so it is refused here, with
    its key, rather than discovered later. Written to a temporary name and renamed: no half file.
    """
    if not arrays:
        raise ValueError("no arrays to write; pass {key: array}")
    checked = {}
    for key, value in arrays.items():
        if not isinstance(key, str) or not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"array keys must be non-empty relative names like 'test/pca/C-1', got {key!r}")
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{key!r} holds {arr.dtype} values; scores and labels must be numeric")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ValueError(f"{key!r} has {bad} NaN or infinite values; fix the scores before saving them")
        checked[key] = arr
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    tmp = out / f".{name}.tmp"
    try:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a bare tmp name
            np.savez_compressed(fh, **checked)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or an interrupt leaves no half file behind
        raise
    return path
