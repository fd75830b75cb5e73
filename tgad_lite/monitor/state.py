"""Saving what the monitor needs to continue: its state, the fingerprints that tie it to one model
and one graph, and the saved-model format the command line replays.

**State files** (:func:`save_state` / :func:`load_state`): one ``.npz`` written atomically (a
temporary file beside the target, then ``os.replace``: a crash never leaves a half-written state
that looks complete). Arrays are stored as arrays; everything else (numbers, strings, ``None``,
lists and dicts of them) as one JSON document (``__meta__``) in which each array is a reference.
Read with ``allow_pickle=False``: no object in the file can run code. Floats go through JSON as
their shortest round-tripping ``repr``, so every value comes back bit for bit.

**Fingerprints** (:func:`model_fingerprint`, :func:`graph_fingerprint`): the model's config and a
SHA-256 of its weights (names, dtypes, shapes and bytes, in ``state_dict`` order); the graph's
number of services and a SHA-256 of its ``edge_index`` as int64. A monitor state carries both and
``Monitor.load`` refuses a state saved for another model or graph.

**SPOT state** (:func:`spot_state` / :func:`spot_from_state`): :meth:`SPOT.state_dict
<tgad_lite.anomaly.threshold.SPOT.state_dict>` (settings, peaks, count and current tail fit), so a
restored SPOT refits exactly as the uninterrupted one.

**Saved models** (:func:`save_monitor_model` / :func:`load_monitor_model`): a package checkpoint
(:func:`tgad_lite.train.save_checkpoint`: weights, the config that builds the model, atomic,
loaded with ``weights_only=True`` and refused on a config mismatch) whose metrics record what a
monitor needs beside the weights: the window length ``S``, the metric names, the robust training
normaliser (``center``/``scale`` ``[N, F]``, as exact JSON floats) or ``None``, the validation
threshold and free-form metadata (what it was trained on).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from tgad_lite.anomaly.threshold import SPOT
from tgad_lite.data.microservices.windows import ServiceNormaliser

__all__ = [
    "MODEL_KIND",
    "STATE_FORMAT",
    "MonitorModel",
    "StateError",
    "graph_fingerprint",
    "load_monitor_model",
    "load_state",
    "model_fingerprint",
    "save_monitor_model",
    "save_state",
    "spot_from_state",
    "spot_state",
]

STATE_FORMAT = "tgad-lite-monitor-state/1"
MODEL_KIND = "tgad-lite-monitor-model/1"
_RESERVED = ("__array__",)


class StateError(ValueError):
    """A monitor state or saved model could not be written or read, or does not fit; the message says what to do."""


# ----------------------------------------------------------------------------- fingerprints


def model_fingerprint(model: nn.Module) -> dict[str, str]:
    """``{"config": canonical JSON of model.config, "weights_sha256": hex}`` of a model's current weights."""
    config = getattr(model, "config", None)
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        t = value.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return {
        "config": json.dumps(config, sort_keys=True, default=str),
        "weights_sha256": digest.hexdigest(),
    }


def graph_fingerprint(edge_index: np.ndarray, num_services: int) -> dict[str, Any]:
    """``{"num_services": N, "num_edges": E, "edges_sha256": hex}`` of ``edge_index [2, E]`` (int64, order kept)."""
    ei = np.ascontiguousarray(edge_index, dtype=np.int64)
    return {
        "num_services": int(num_services),
        "num_edges": int(ei.shape[1]),
        "edges_sha256": hashlib.sha256(ei.tobytes()).hexdigest(),
    }


# ----------------------------------------------------------------------------- SPOT


def spot_state(spot: SPOT) -> dict[str, Any]:
    """Everything a :class:`SPOT` holds, as plain values and arrays (its tail fit included)."""
    if type(spot) is not SPOT:
        raise TypeError(f"spot_state handles SPOT only, got {type(spot).__name__}")
    return spot.state_dict()


def spot_from_state(state: Mapping[str, Any]) -> SPOT:
    """The :class:`SPOT` that :func:`spot_state` described, ready to continue exactly."""
    spot = SPOT(state["q"], state["level"], min_peaks=int(state["min_peaks"]), min_shape=float(state["min_shape"]))
    spot.load_state_dict(dict(state))
    return spot


# ----------------------------------------------------------------------------- state files


def _pack(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    """``value`` as JSON with arrays moved to ``arrays`` (``{"__array__": key}`` in their place)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OV":
            raise StateError(f"{where} is an array of Python objects ({value.dtype}); a state holds numbers and text")
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or k in _RESERVED:
                raise StateError(f"{where} has the key {k!r}; state dict keys must be strings other than {_RESERVED}")
            out[k] = _pack(v, arrays, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [_pack(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if value is None or isinstance(value, str):
        return value
    raise StateError(
        f"{where} is a {type(value).__name__}; a monitor state holds numpy arrays, numbers, strings, None "
        "and lists/dicts of them (convert tensors with .cpu().numpy())"
    )


def _unpack(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        return {k: _unpack(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v, arrays) for v in value]
    return value


def save_state(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` (a monitor's ``state_dict()``) to ``path`` (``.npz``) atomically; return the path.

    No partial file is left behind on failure; an existing file at ``path`` is replaced only by a
    complete new one.
    """
    path = Path(path)
    if path.is_dir():
        raise StateError(
            f"cannot write the monitor state {path}: it is a folder; give a file, e.g. {path / 'monitor.npz'}"
        )
    arrays: dict[str, np.ndarray] = {}
    meta = _pack(dict(state), arrays, "state")
    payload = {**{k: np.ascontiguousarray(v) for k, v in arrays.items()}, "__meta__": np.array(json.dumps(meta))}
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        tmp = Path(name)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise StateError(
            f"cannot write the monitor state {path}: {exc.strerror or exc}; choose a folder you can write to"
        ) from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a state written by :func:`save_state` (arrays read without pickle). Refuses anything else clearly."""
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "missing"
        raise FileNotFoundError(f"no monitor state at {path} ({what}); save one with Monitor.save(path) first")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "__meta__" not in data.files:
                raise StateError(f"{path} is an .npz file but not a monitor state (no __meta__); use Monitor.save")
            meta = json.loads(str(data["__meta__"]))
            arrays = {k: data[k] for k in data.files if k != "__meta__"}
    except StateError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as exc:
        raise StateError(
            f"{path} is not a readable monitor state ({type(exc).__name__}: {exc}); the file is damaged or not "
            "written by Monitor.save. Use another saved state, or start a new monitor"
        ) from None
    state = _unpack(meta, arrays)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise StateError(f"{path} holds format {found!r}, not {STATE_FORMAT!r}: not a monitor state this code reads")
    return state


# ----------------------------------------------------------------------------- saved models


class MonitorModel(NamedTuple):
    """What :func:`load_monitor_model` returns: the model (eval mode) and what the monitor needs with it.

    ``normaliser``: the robust training normaliser ``[N, F]`` (``None`` if none was saved);
    ``threshold``: the validation-chosen risk threshold (or None); ``metadata``: as saved.
    """

    model: nn.Module
    window: int
    metric_names: tuple[str, ...]
    normaliser: ServiceNormaliser | None
    threshold: float | None
    metadata: dict[str, Any]
    path: Path


def save_monitor_model(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    window: int,
    metric_names: Sequence[str],
    normaliser: ServiceNormaliser | None = None,
    threshold: float | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save a :class:`~tgad_lite.temporal.TemporalGAT` for monitoring (a package checkpoint; module docstring)."""
    from tgad_lite.train import save_checkpoint

    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise StateError(f"model must be a TemporalGAT (a model with .config), got {type(model).__name__}")
    names = [str(m) for m in metric_names]
    if len(names) != config.get("num_features"):
        raise StateError(f"metric_names has {len(names)} names, the model reads {config.get('num_features')} metrics")
    norm = None
    if normaliser is not None:
        center, scale = np.asarray(normaliser.center, np.float64), np.asarray(normaliser.scale, np.float64)
        if center.ndim != 2 or center.shape[1] != len(names):
            raise StateError(f"normaliser must be [N, F] with F = {len(names)} metrics, got {center.shape}")
        norm = {"center": center.tolist(), "scale": scale.tolist()}
    if threshold is not None and not math.isfinite(float(threshold)):
        raise StateError(f"threshold must be a finite number or None, got {threshold!r}")
    info = {
        "kind": MODEL_KIND,
        "window": int(window),
        "metric_names": names,
        "normaliser": norm,
        "threshold": None if threshold is None else float(threshold),
        "metadata": dict(metadata or {}),
    }
    return save_checkpoint(path, model, config, info)


def load_monitor_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> MonitorModel:
    """Read a model saved by :func:`save_monitor_model`; raises :class:`StateError` (or
    ``FileNotFoundError``) with the fix for anything else."""
    from tgad_lite.temporal import TemporalGAT
    from tgad_lite.train import CheckpointError, load_checkpoint

    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "missing"
        raise FileNotFoundError(
            f"no saved model at {path} ({what}); save one with save_monitor_model or the CLI's train"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        config = payload["config"]
        info = payload["metrics"]
    except Exception as exc:  # noqa: BLE001 - any failure to read means "not a saved model"; load_checkpoint explains
        try:
            load_checkpoint(path, nn.Linear(1, 1), {})
        except CheckpointError as detail:
            raise StateError(str(detail)) from None
        raise StateError(f"{path} is not a saved monitor model ({type(exc).__name__}: {exc})") from None
    if not isinstance(info, dict) or info.get("kind") != MODEL_KIND:
        raise StateError(
            f"{path} is a checkpoint but not a monitor model (no {MODEL_KIND!r} record): save the model with "
            "tgad_lite.monitor.save_monitor_model (window, metric names and normaliser beside the weights)"
        )
    try:
        model = TemporalGAT(**config)
        load_checkpoint(path, model, config, map_location=device)
    except (CheckpointError, TypeError, ValueError) as exc:
        raise StateError(f"{path}: the model could not be rebuilt ({exc})") from None
    model.to(device).eval()
    norm = info.get("normaliser")
    normaliser = None
    if norm is not None:
        normaliser = ServiceNormaliser(
            center=np.asarray(norm["center"], dtype=np.float64), scale=np.asarray(norm["scale"], dtype=np.float64)
        )
    return MonitorModel(
        model=model,
        window=int(info["window"]),
        metric_names=tuple(info["metric_names"]),
        normaliser=normaliser,
        threshold=info.get("threshold"),
        metadata=dict(info.get("metadata") or {}),
        path=path,
    )
