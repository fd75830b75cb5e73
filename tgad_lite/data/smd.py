"""Server Machine Dataset (SMD) from OmniAnomaly (Su et al., KDD 2019).

28 machines, each a 38-metric time series with a train half (unlabelled, mostly normal) and a
test half with 0/1 point labels and "interpretation" labels naming the metrics behind each
anomaly. Values are already min-max scaled by the publishers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tgad_lite.data.errors import DataFormatError
from tgad_lite.data.fetch import RemoteFile, Transport, resolve

SMD_URL = "https://raw.githubusercontent.com/NetManAIOps/OmniAnomaly/master/ServerMachineDataset"
SMD_MACHINES = tuple(
    [f"machine-1-{i}" for i in range(1, 9)]
    + [f"machine-2-{i}" for i in range(1, 10)]
    + [f"machine-3-{i}" for i in range(1, 12)]
)
SMD_PARTS = ("train", "test", "test_label", "interpretation_label")
SMD_FEATURES = 38
_INTERPRETATION = re.compile(r"^(\d+)-(\d+):(\d+(?:,\d+)*)$")


@dataclass(frozen=True)
class SMDInterpretation:
    """One anomaly event: rows ``start..end`` of the test series (inclusive, 0-based) and the
    0-based indices of the metrics held responsible (the file writes them 1-based)."""

    start: int
    end: int
    features: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class SMDMachine:
    """One SMD machine.

    ``train [T_train, 38] float32``, ``test [T_test, 38] float32``,
    ``test_labels [T_test] int64`` (1 = anomalous), ``interpretation`` (events with 0-based
    feature indices), ``machine`` (e.g. ``"machine-1-1"``).
    """

    machine: str
    train: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray
    interpretation: list[SMDInterpretation]


def smd_files(machine: str) -> tuple[RemoteFile, ...]:
    """The four raw files of one machine, relative to the ``SMD`` folder."""
    _check_machine(machine)
    return tuple(RemoteFile(f"{part}/{machine}.txt", f"{SMD_URL}/{part}/{machine}.txt") for part in SMD_PARTS)


def _check_machine(machine: str) -> None:
    if machine not in SMD_MACHINES:
        raise ValueError(f"unknown SMD machine {machine!r}; valid names: {', '.join(SMD_MACHINES)}")


def _lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():  # tolerate trailing blank lines only
        lines.pop()
    if not lines:
        raise DataFormatError(f"{path}: file is empty")
    return lines


def _read_matrix(path: Path) -> np.ndarray:
    """``[T, 38]`` float32 from comma-separated rows, checking every line."""
    lines = _lines(path)
    for i, line in enumerate(lines, start=1):
        n = line.count(",") + 1
        if n != SMD_FEATURES:
            raise DataFormatError(f"{path}: expected {SMD_FEATURES} comma-separated columns, line {i} has {n}")
    try:
        values = np.array(",".join(lines).split(","), dtype=np.float64)
    except ValueError:
        values = None
    if values is None or not np.isfinite(values).all():
        # Slow path only to name the offending line.
        for i, line in enumerate(lines, start=1):
            try:
                row = np.array(line.split(","), dtype=np.float64)
            except ValueError:
                raise DataFormatError(f"{path}: line {i} has a non-numeric value: {line[:80]!r}") from None
            if not np.isfinite(row).all():
                raise DataFormatError(f"{path}: line {i} has a NaN or infinite value")
        raise DataFormatError(f"{path}: could not parse the values as numbers")
    with np.errstate(over="ignore"):  # checked just below, with the file and position named
        matrix = values.reshape(len(lines), SMD_FEATURES).astype(np.float32)
    overflow = np.argwhere(~np.isfinite(matrix))
    if overflow.size:
        # Finite in float64 but beyond float32's range (|x| > 3.4e38): inf after the cast.
        row, col = (int(v) for v in overflow[0])
        raise DataFormatError(
            f"{path}: line {row + 1}, column {col + 1} holds {float(values[row * SMD_FEATURES + col])!r}, which "
            f"overflows float32 (largest finite {float(np.finfo(np.float32).max):.3g}); SMD values are min-max "
            "scaled to [0, 1]"
        )
    return matrix


def _read_labels(path: Path, length: int) -> np.ndarray:
    lines = _lines(path)
    if len(lines) != length:
        raise DataFormatError(f"{path}: has {len(lines)} labels but the test series has {length} rows")
    for i, line in enumerate(lines, start=1):
        if line.strip() not in ("0", "1"):
            raise DataFormatError(f"{path}: line {i} must be 0 or 1, got {line[:80]!r}")
    return np.array([int(v) for v in lines], dtype=np.int64)


def _read_interpretation(path: Path, length: int) -> list[SMDInterpretation]:
    events = []
    for i, line in enumerate(_lines(path), start=1):
        m = _INTERPRETATION.match(line.strip())
        if m is None:
            raise DataFormatError(f"{path}: line {i} is not 'start-end:f1,f2,...': {line[:80]!r}")
        start, end = int(m[1]), int(m[2])
        numbers = [int(v) for v in m[3].split(",")]
        if not 0 <= start <= end < length:
            raise DataFormatError(f"{path}: line {i} range {start}-{end} is outside the test series (0..{length - 1})")
        if not all(1 <= v <= SMD_FEATURES for v in numbers):
            raise DataFormatError(f"{path}: line {i} has a feature number outside 1..{SMD_FEATURES}")
        events.append(SMDInterpretation(start, end, tuple(v - 1 for v in numbers)))
    return events


def load_smd(
    machine: str = "machine-1-1",
    root: Path | None = None,
    *,
    transport: Transport | None = None,
) -> SMDMachine:
    """Load one SMD machine (see :class:`SMDMachine` for shapes).

    Files ``SMD/{train,test,test_label,interpretation_label}/<machine>.txt`` come from ``root``
    (a folder laid out like ``data/``; default ``data_dir()``), the mirror, or OmniAnomaly's
    GitHub repository. Interpretation ranges are inclusive and index the test rows from 0;
    their feature numbers are converted from the file's 1-based to 0-based.

    Raises ValueError for an unknown machine and DataFormatError (naming file and line) when a
    row lacks 38 numeric columns, a value is NaN, infinite or beyond float32's range, the label
    count differs from the test length, a label is not 0/1, or an interpretation range falls
    outside the test series.
    """
    folder = resolve("SMD", smd_files(machine), root=root, transport=transport)
    train = _read_matrix(folder / "train" / f"{machine}.txt")
    test = _read_matrix(folder / "test" / f"{machine}.txt")
    labels = _read_labels(folder / "test_label" / f"{machine}.txt", len(test))
    interpretation = _read_interpretation(folder / "interpretation_label" / f"{machine}.txt", len(test))
    return SMDMachine(machine, train, test, labels, interpretation)
