"""A folder of model versions with their metrics: atomic saves, checked loads, a current pointer.

Layout of a :class:`ModelRegistry` folder::

    root/
      v0001/model.pt        weights + the config that builds the model (train.save_checkpoint)
      v0001/version.json    id, parent, metrics, created, note, config, sha256 of model.pt
      v0002/...
      CURRENT               the id of the version in use (one line)

Every write is atomic. A version is assembled in a hidden folder ``root/.v0002-<random>.partial``
and renamed to ``root/v0002`` in one step, so a reader sees a complete version or none; if another
process took the id meanwhile, the rename fails and the next id is tried. ``CURRENT`` is written to
a temporary file and ``os.replace`` d. A crash leaves at most a hidden ``.partial`` folder, which is
never listed or loaded.

Loading is checked: the version's record must be readable, its ``model.pt`` must still have the
SHA-256 recorded at save time (a damaged or swapped file is refused, naming the version), and the
weights must fit the recorded config (:func:`~tgad_lite.train.load_checkpoint` refuses a mismatch);
``load(version, expect_config=...)`` also refuses a version built with another config than the
caller's (e.g. the monitor's model).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tgad_lite.temporal import TemporalGAT
from tgad_lite.train import load_checkpoint, save_checkpoint
from tgad_lite.train.checkpoint import CheckpointError, CheckpointMismatchError

__all__ = ["FORMAT", "ModelRegistry", "ModelVersionError"]

FORMAT = "tgad-lite-model-version/1"
_ID = re.compile(r"^v(\d{4,})$")
_MODEL, _RECORD, _CURRENT = "model.pt", "version.json", "CURRENT"
_ATTEMPTS = 100  # ids tried when other processes keep taking the next one


class ModelVersionError(ValueError):
    """A version is missing, damaged or does not fit; the message names it and the fix."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _canonical(config: Mapping[str, Any]) -> dict:
    return json.loads(json.dumps(dict(config), sort_keys=True, default=str))


def _write_atomic(path: Path, text: str) -> None:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


class ModelRegistry:
    """Model versions ``v0001``, ``v0002``, ... in the folder ``root`` (created when missing).

    ``save(model, metrics=..., parent=..., note=...) -> "v0003"``; ``load(id) -> TemporalGAT``;
    ``versions()`` lists them oldest first; ``current()`` / ``set_current(id)`` read and move the
    pointer to the version in use.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ModelVersionError(f"registry root {self.root} is a file; give a folder path")
        self.root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ reading

    def _ids(self) -> list[str]:
        found = [p.name for p in self.root.iterdir() if p.is_dir() and _ID.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def _check_id(self, version: Any) -> str:
        if not isinstance(version, str) or not _ID.match(version):
            raise ModelVersionError(f"a version id looks like 'v0001', got {version!r}")
        if not (self.root / version).is_dir():
            have = ", ".join(self._ids()) or "none yet"
            raise ModelVersionError(f"no version {version} in {self.root} (versions: {have})")
        return version

    def _record(self, version: str) -> dict[str, Any]:
        """The version's record, checked: readable, complete, and its model file unchanged."""
        folder = self.root / self._check_id(version)
        path = folder / _RECORD
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelVersionError(
                f"version {version} in {self.root} has no {_RECORD}: it is damaged (files removed by hand?); "
                "delete the folder or restore it from a backup"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelVersionError(
                f"version {version}'s record {path} is unreadable ({exc}); it is damaged: delete the folder or restore "
                "it from a backup"
            ) from None
        need = ("format", "id", "parent", "metrics", "created", "note", "config", "sha256")
        if not isinstance(record, dict) or record.get("format") != FORMAT or any(k not in record for k in need):
            raise ModelVersionError(
                f"{path} is not a {FORMAT} record (missing {[k for k in need if k not in record]}); it was not "
                "written by ModelRegistry.save or is damaged"
            )
        if record["id"] != version:
            raise ModelVersionError(f"{path} says it is version {record['id']!r}, but sits in folder {version}")
        model_path = folder / _MODEL
        if not model_path.is_file():
            raise ModelVersionError(f"version {version} has no {_MODEL}; it is damaged: delete it or restore it")
        if _sha256(model_path) != record["sha256"]:
            raise ModelVersionError(
                f"version {version}'s {_MODEL} changed since it was saved (SHA-256 differs from its record): damaged "
                "or replaced; refusing to load it. Restore it from a backup or delete the version"
            )
        return record

    def versions(self) -> list[dict[str, Any]]:
        """Every version, oldest first: ``{"id", "parent", "metrics", "created", "note"}``; a damaged
        one is listed as ``{"id", "error"}`` (loading it raises with the same message)."""
        out = []
        for version in self._ids():
            try:
                record = self._record(version)
            except ModelVersionError as exc:
                out.append({"id": version, "error": str(exc)})
                continue
            out.append({k: record[k] for k in ("id", "parent", "metrics", "created", "note")})
        return out

    def load(self, version: str, *, expect_config: Mapping[str, Any] | None = None) -> TemporalGAT:
        """The model of ``version`` (on the CPU, in eval mode), after the checks of the module docstring.

        ``expect_config``: refuse the version unless its model was built with this config (e.g.
        ``monitor_model.config``), naming the keys that differ.
        """
        record = self._record(version)
        config = record["config"]
        if expect_config is not None and _canonical(expect_config) != config:
            wanted = _canonical(expect_config)
            diffs = [
                f"{k}: version {config.get(k, '<absent>')!r} vs expected {wanted.get(k, '<absent>')!r}"
                for k in sorted(set(config) | set(wanted))
                if config.get(k, "<absent>") != wanted.get(k, "<absent>")
            ]
            raise CheckpointMismatchError(
                f"version {version} was built with another config ({'; '.join(diffs)}); pick a version of this "
                "model, or build the monitor's model with the version's config"
            )
        try:
            model = TemporalGAT(**config)
        except (TypeError, ValueError) as exc:
            raise ModelVersionError(
                f"version {version}'s config {config} does not build a TemporalGAT ({exc}); it was saved by another "
                "version of the package: load it with that version, or retrain"
            ) from None
        try:
            load_checkpoint(self.root / version / _MODEL, model, config)
        except CheckpointError as exc:
            raise ModelVersionError(f"version {version}: {exc}") from None
        return model.eval()

    def current(self) -> str | None:
        """The version in use, or None when none was set."""
        path = self.root / _CURRENT
        if not path.is_file():
            return None
        version = path.read_text().strip()
        if not _ID.match(version) or not (self.root / version).is_dir():
            raise ModelVersionError(
                f"{path} names {version!r}, which is not a version in {self.root}; call set_current with one of "
                f"{', '.join(self._ids()) or 'the saved versions'}"
            )
        return version

    # ------------------------------------------------------------------ writing

    def set_current(self, version: str) -> None:
        """Point ``CURRENT`` at ``version`` (checked like a load first), atomically."""
        self._record(version)
        _write_atomic(self.root / _CURRENT, version + "\n")

    def save(self, model: TemporalGAT, *, metrics: Mapping[str, float], parent: str | None, note: str = "") -> str:
        """Store ``model`` as the next version; returns its id (``"v0001"`` for the first).

        ``metrics``: name -> finite number (e.g. the forgetting check's PR-AUCs); ``parent``: the
        version it was fine-tuned from (an existing id) or None; ``note``: free text. Atomic: a
        failure leaves no version behind. Does not move ``CURRENT`` (see :meth:`set_current`).
        """
        if not isinstance(model, TemporalGAT):
            raise ModelVersionError(f"model must be a TemporalGAT, got {type(model).__name__}")
        if not isinstance(metrics, Mapping):
            raise ModelVersionError(f"metrics must be a mapping name -> number, got {type(metrics).__name__}")
        clean = {}
        for k, v in metrics.items():
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
            if not isinstance(k, str) or not ok:
                raise ModelVersionError(f"metrics must map names to finite numbers; {k!r}: {v!r} is not")
            clean[k] = float(v)
        if parent is not None:
            self._check_id(parent)
        if not isinstance(note, str):
            raise ModelVersionError(f"note must be a string, got {type(note).__name__}")
        config = _canonical(model.config)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".v-", suffix=".partial"))
        try:
            save_checkpoint(staging / _MODEL, model, config, clean)
            record = {
                "format": FORMAT,
                "parent": parent,
                "metrics": clean,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "note": note,
                "config": config,
                "sha256": _sha256(staging / _MODEL),
            }
            ids = self._ids()
            number = int(ids[-1][1:]) + 1 if ids else 1
            for _ in range(_ATTEMPTS):
                version = f"v{number:04d}"
                record["id"] = version
                (staging / _RECORD).write_text(json.dumps(record, indent=2, sort_keys=True))
                try:
                    os.rename(staging, self.root / version)  # fails if the id was taken meanwhile
                except OSError:
                    if not (self.root / version).exists():
                        raise
                    number += 1
                    continue
                staging = None
                return version
            raise ModelVersionError(f"could not claim a version id in {self.root} after {_ATTEMPTS} tries")
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
