"""Checkpoints that remember the configuration they were trained with, and refuse any other.

A checkpoint holds the model's weights, the config dict that built it, the metrics it reached
and the package versions. It is written to a temporary file and renamed, so a crash mid-write
never leaves a half-written checkpoint that looks complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from tgad_lite.repro import versions

FORMAT = "tgad-lite-checkpoint/1"


class CheckpointMismatchError(ValueError):
    """The checkpoint was trained with a different configuration than the model it is loaded into."""


def _canonical(config: Mapping[str, Any]) -> dict:
    # JSON round trip: tuples and lists compare equal, and the stored config stays readable.
    return json.loads(json.dumps(dict(config), sort_keys=True, default=str))


def save_checkpoint(path: str | os.PathLike, model: nn.Module, config: Mapping[str, Any],
                    metrics: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s weights with the ``config`` that built it (atomically); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": _canonical(config),
        "metrics": _canonical(metrics or {}),
        "versions": versions(),
        "state_dict": model.state_dict(),
    }
    tmp = path.with_name(path.name + ".partial")
    try:
        torch.save(payload, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, model: nn.Module, config: Mapping[str, Any]) -> dict:
    """Load weights into ``model`` if the checkpoint's config equals ``config``; return its metadata.

    Raises :class:`CheckpointMismatchError` naming every differing key (and the fix) otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train the model first (or check the path)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointMismatchError(f"{path} is not a tgad-lite checkpoint (expected format {FORMAT})")
    stored, wanted = payload["config"], _canonical(config)
    if stored != wanted:
        keys = sorted(set(stored) | set(wanted))
        diffs = [f"{k}: checkpoint {stored.get(k, '<absent>')!r} vs now {wanted.get(k, '<absent>')!r}"
                 for k in keys if stored.get(k, "<absent>") != wanted.get(k, "<absent>")]
        raise CheckpointMismatchError(
            f"{path} was trained with a different configuration ({'; '.join(diffs)}). "
            "Build the model with the checkpoint's config, or retrain."
        )
    model.load_state_dict(payload["state_dict"])
    return {k: payload[k] for k in ("config", "metrics", "versions")}
