"""What the tests need from the real data mirror ``$TGAD_DATA_MIRROR``, and the check that a set
variable really points at it.

The variable is the one switch for tests on real data. Unset: those tests skip with a reason.
Set: the folder must hold every file below, or the whole run fails at start-up, naming the
variable, the folder and the missing files, so a CI run with a misspelt or absent mirror cannot
pass by skipping. Kept free of tgad_lite imports so the check costs nothing at start-up.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

MIRROR_ENV = "TGAD_DATA_MIRROR"
CORA_RAW = tuple(f"Cora/raw/ind.cora.{ext}" for ext in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index"))
MSL_LABELS = "MSL/labeled_anomalies.csv"


def _msl_channels(csv_path: Path) -> list[str]:
    with open(csv_path, newline="", encoding="utf-8") as f:
        return [row["chan_id"] for row in csv.DictReader(f) if row.get("spacecraft") == "MSL" and row.get("chan_id")]


def missing_files(mirror: Path) -> list[str]:
    """Paths (relative to ``mirror``) the tests need but the folder lacks: Cora's 8 raw files,
    MSL's ``labeled_anomalies.csv`` and ``train/`` and ``test/`` arrays of every MSL channel it
    lists."""
    missing = [p for p in CORA_RAW if not (mirror / p).is_file()]
    labels = mirror / MSL_LABELS
    if not labels.is_file():
        return [*missing, MSL_LABELS, "MSL/train/<chan>.npy", "MSL/test/<chan>.npy"]
    try:
        channels = _msl_channels(labels)
    except (OSError, UnicodeDecodeError, csv.Error, KeyError):
        channels = []
    if not channels:
        return [*missing, f"{MSL_LABELS} (readable, with MSL rows)"]
    for part in ("train", "test"):
        missing += [f"MSL/{part}/{c}.npy" for c in channels if not (mirror / "MSL" / part / f"{c}.npy").is_file()]
    return missing


class MirrorError(Exception):
    """``$TGAD_DATA_MIRROR`` is set but does not hold what the tests need."""


def check_mirror(environ: Mapping[str, str]) -> Path | None:
    """The mirror folder when ``$TGAD_DATA_MIRROR`` is set and complete, None when it is unset
    or empty; raises MirrorError (naming the variable, the folder and the missing files)
    otherwise. A relative value is taken from the current directory, as the loaders do."""
    value = environ.get(MIRROR_ENV, "").strip()
    if not value:
        return None
    folder = Path(value).expanduser().resolve()
    if not folder.is_dir():
        raise MirrorError(
            f"{MIRROR_ENV}={value!r} is set but {folder} is not a folder. Point it at the read-only data "
            f"mirror (CI: ../shared/data from the project root), or unset it to skip the tests on real data."
        )
    missing = missing_files(folder)
    if missing:
        shown = "\n".join(f"  {p}" for p in missing[:40]) + (
            f"\n  ... {len(missing) - 40} more" if len(missing) > 40 else ""
        )
        raise MirrorError(
            f"{MIRROR_ENV}={value!r} is set but {folder} lacks {len(missing)} file(s) the tests need:\n{shown}\n"
            f"Point {MIRROR_ENV} at a complete mirror (layout: data/README.md), or unset it to skip the tests "
            "on real data."
        )
    return folder


def needs_mirror_marker():
    """``(mirror or None, skipif marker)`` for test modules that read the real files directly.

    ``$TGAD_DATA_MIRROR`` is the one switch: unset, such tests skip; set, ``conftest`` has already
    failed the run unless the folder holds every file they need.
    """
    import os

    import pytest

    mirror = check_mirror(os.environ)
    reason = "TGAD_DATA_MIRROR is unset (CI: ../shared/data, a folder with Cora/raw and MSL/)"
    return mirror, pytest.mark.skipif(mirror is None, reason=reason)
