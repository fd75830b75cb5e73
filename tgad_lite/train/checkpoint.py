"""Checkpoints that remember the configuration they were trained with, and refuse any other.

A checkpoint holds the model's weights (as CPU tensors, so any machine can read it), the config
dict that built it, the metrics it reached and the package versions. It is written to a temporary
file and renamed, so a crash mid-write never leaves a half-written checkpoint that looks complete.
Loading is all-or-nothing: the file is read with ``weights_only=True`` (no code in it can run),
checked against the model (config, parameter names and shapes), and only then copied into the
model; any failure leaves the model exactly as it was.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tgad_lite.device import resolve_device
from tgad_lite.repro import versions

FORMAT = "tgad-lite-checkpoint/1"


class CheckpointError(Exception):
    """A checkpoint could not be written or read; the message names the path and the fix."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """The checkpoint was trained with a different configuration than the model it is loaded into."""


def _canonical(config: Mapping[str, Any]) -> dict:
    # JSON round trip: tuples and lists compare equal, and the stored config stays readable.
    return json.loads(json.dumps(dict(config), sort_keys=True, default=str))


def _model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without either)."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def save_checkpoint(
    path: str | os.PathLike, model: nn.Module, config: Mapping[str, Any], metrics: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model``'s weights with the ``config`` that built it (atomically); return the path.

    Raises :class:`CheckpointError` naming ``path`` when it cannot be written (a folder in the
    way, no permission, a full disk); no partial file is left behind then.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"cannot write the checkpoint {path}: it is a folder; give a file path inside it, e.g. {path / 'model.pt'}"
        )
    payload = {
        "format": FORMAT,
        "config": _canonical(config),
        "metrics": _canonical(metrics or {}),
        "versions": versions(),
        # CPU copies: a checkpoint written on a GPU loads on a machine without one.
        "state_dict": {
            k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in model.state_dict().items()
        },
    }
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A unique temporary name beside the target: the rename is atomic on one file system, and
        # two runs saving at once do not write into each other's temporary file.
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        tmp = Path(name)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        tmp.replace(path)
        tmp = None
    except (OSError, RuntimeError) as exc:  # torch.save reports some write failures as RuntimeError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CheckpointError(
            f"cannot write the checkpoint {path}: {reason}. Choose a folder you can write to "
            f"(e.g. the run's output_dir), or fix the permissions or free space of {path.parent}"
        ) from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path


def _read_failure(path: Path, exc: BaseException) -> CheckpointError:
    """A :class:`CheckpointError` for a file ``torch.load`` could not read: what is wrong, and the fix."""
    # torch's own message suggests weights_only=False, which would let the file run code: keep
    # only the lines that describe what was found.
    detail = " ".join(
        line.strip()
        for line in str(exc).splitlines()
        if line.strip()
        and not any(w in line for w in ("weights_only", "Weights only", "documentation of torch.load", "file an issue"))
    )
    if "GLOBAL" in detail:
        return CheckpointError(
            f"{path} holds Python objects that safe loading refuses ({detail}): it was not written by "
            "save_checkpoint, and loading it could run code from the file. Use a checkpoint written by "
            "save_checkpoint, or retrain."
        )
    if len(detail) > 160 and ". " in detail:  # torch's zip errors go on with general advice: keep the finding
        detail = detail[: detail.index(". ") + 1]
    what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return CheckpointError(
        f"{path} is not a readable checkpoint ({what}); the file is corrupt or truncated (an interrupted "
        "copy or download?) or not a tgad-lite checkpoint. Copy it again from its source, or retrain and "
        "save it again with save_checkpoint."
    )


def _mismatched_weights(stored: Mapping[str, Any], model: nn.Module) -> list[str]:
    """What keeps ``stored`` from loading into ``model``: missing and unexpected names, other shapes."""
    wanted = model.state_dict()
    problems = []
    missing = [k for k in wanted if k not in stored]
    unexpected = [k for k in stored if k not in wanted]
    if missing:
        problems.append(f"missing from the checkpoint: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"not in the model: {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
    for k, v in wanted.items():
        s = stored.get(k)
        if isinstance(v, torch.Tensor) and k in stored:
            if not isinstance(s, torch.Tensor):
                problems.append(f"{k} is a {type(s).__name__} in the checkpoint, a tensor in the model")
            elif s.shape != v.shape:
                problems.append(f"{k} has shape {list(s.shape)} in the checkpoint but {list(v.shape)} in the model")
    return problems


def load_checkpoint(
    path: str | os.PathLike, model: nn.Module, config: Mapping[str, Any], map_location: str | torch.device | None = None
) -> dict:
    """Load weights into ``model`` if the checkpoint's config equals ``config``; return its metadata.

    ``map_location``: where the stored tensors are read to (default: the model's device, so a
    checkpoint written on a GPU loads into a CPU model and the other way round).
    Raises :class:`CheckpointMismatchError` naming every differing config key, missing or unexpected
    weight or other shape (and the fix); :class:`CheckpointError` for a file that is corrupt,
    truncated or unsafe; ``FileNotFoundError`` if there is no file. On any error ``model`` is left
    untouched: the weights are checked first and copied into the model only when all of them fit.
    """
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "missing"
        raise FileNotFoundError(f"no checkpoint at {path} ({what}); train the model first (or check the path)")
    device = resolve_device(map_location) if map_location is not None else _model_device(model)
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"{path} is empty (0 bytes): an interrupted copy or save? Copy it again from its "
            "source, or retrain and save it again with save_checkpoint."
        )
    try:
        with warnings.catch_warnings():
            # A plain pickle file draws torch's "please file an issue" protocol warning before the
            # refusal below says what is wrong; the warning adds nothing for the reader.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location=device, weights_only=True)
    except (
        RuntimeError,
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        KeyError,
        IndexError,
        AttributeError,
        TypeError,
    ) as exc:  # what a damaged zip or pickle stream raises, varying with where it breaks
        raise _read_failure(path, exc) from None
    except PermissionError as exc:
        raise CheckpointError(
            f"cannot read the checkpoint {path}: {exc.strerror or exc}. "
            "Check its permissions, or copy it somewhere readable"
        ) from exc
    except OSError as exc:  # e.g. EINVAL from a zip whose directory points past the end of the file
        raise _read_failure(path, exc) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointMismatchError(
            f"{path} is not a tgad-lite checkpoint (expected format {FORMAT}); "
            "load it with the code that wrote it, or retrain and save_checkpoint"
        )
    absent = [k for k in ("config", "state_dict") if not isinstance(payload.get(k), dict)]
    if absent:
        raise CheckpointError(
            f"{path} is a damaged checkpoint: it lacks {' and '.join(absent)}. "
            "Copy it again from its source, or retrain."
        )
    stored, wanted = payload["config"], _canonical(config)
    if stored != wanted:
        keys = sorted(set(stored) | set(wanted))
        diffs = [
            f"{k}: checkpoint {stored.get(k, '<absent>')!r} vs now {wanted.get(k, '<absent>')!r}"
            for k in keys
            if stored.get(k, "<absent>") != wanted.get(k, "<absent>")
        ]
        raise CheckpointMismatchError(
            f"{path} was trained with a different configuration ({'; '.join(diffs)}). "
            "Build the model with the checkpoint's config, or retrain."
        )
    state = payload["state_dict"]
    problems = _mismatched_weights(state, model)
    if problems:
        raise CheckpointMismatchError(
            f"{path} does not fit this model although the configs match ({'; '.join(problems)}). The model "
            "class changed since the checkpoint was written: retrain, or load it with the code that wrote it."
        )
    # Fill a copy of the model's state first: a value that cannot be cast (a complex tensor into a
    # float parameter, say) fails here, before the model is touched.
    filled = {}
    for k, v in model.state_dict().items():
        if isinstance(v, torch.Tensor):
            try:
                filled[k] = torch.empty_like(v).copy_(state[k])
            except (RuntimeError, TypeError) as exc:
                raise CheckpointMismatchError(
                    f"{path}: {k} cannot be copied into the model ({exc}); the model was left as it was. "
                    "Retrain, or build the model with the checkpoint's config."
                ) from exc
        else:
            filled[k] = state[k]
    # Same names, shapes, dtypes and devices: this swap cannot stop halfway.
    model.load_state_dict(filled, strict=True)
    return {k: payload.get(k, {}) for k in ("config", "metrics", "versions")}
