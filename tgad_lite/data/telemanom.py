"""NASA spacecraft telemetry with labelled anomalies: MSL (Mars Science Laboratory) and SMAP
(Soil Moisture Active Passive), in the layout of Hundman et al., KDD 2018 ("telemanom").

On disk, ``<data>/<SPACECRAFT>/`` holds ``train/<chan>.npy`` and ``test/<chan>.npy`` (float64
``[T, F]``: column 0 is the telemetry value, the others one-hot commands; F = 55 for MSL, 25 for
SMAP) and ``labeled_anomalies.csv`` (``chan_id, spacecraft, anomaly_sequences, class,
num_values``; ``anomaly_sequences`` such as ``"[[1850, 2030]]"`` are inclusive index ranges into
the channel's test array).
"""

from __future__ import annotations

import ast
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tgad_lite.data.errors import DataFormatError
from tgad_lite.data.fetch import RemoteFile, Transport, in_mirror, repair_advice, resolve

TELEMANOM_ZIP_URL = "https://s3-us-west-2.amazonaws.com/telemanom/data.zip"
TELEMANOM_LABELS_URL = "https://raw.githubusercontent.com/khundman/telemanom/master/labeled_anomalies.csv"
SPACECRAFTS = ("MSL", "SMAP")
# Columns per channel: telemetry value + one-hot commands, as published (Hundman et al. 2018).
SPACECRAFT_FEATURES = {"MSL": 55, "SMAP": 25}
# Left out of the concatenated series by the OmniAnomaly / MTAD-GAT preprocessing.
EXCLUDED_CHANNELS = ("P-2",)
LABELS_FILE = RemoteFile("labeled_anomalies.csv", TELEMANOM_LABELS_URL)
_COLUMNS = ("chan_id", "spacecraft", "anomaly_sequences", "num_values")


@dataclass(frozen=True)
class TelemanomChannel:
    """One row of ``labeled_anomalies.csv``: inclusive ``(start, end)`` test-index ranges;
    ``line`` is the row's line number in the file, for error messages."""

    chan_id: str
    anomaly_sequences: tuple[tuple[int, int], ...]
    num_values: int
    line: int = 0


@dataclass(frozen=True, eq=False)
class TelemanomData:
    """Channels of one spacecraft, concatenated along time.

    ``train [T_train, F] float32``, ``test [T_test, F] float32``,
    ``test_labels [T_test] int64`` (1 inside a labelled anomaly), ``channels`` (ids in
    concatenation order), ``train_boundaries`` / ``test_boundaries`` ``[C] int64`` (row where
    each channel starts), ``spacecraft`` (``"MSL"`` or ``"SMAP"``).
    """

    spacecraft: str
    channels: list[str]
    train: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray
    train_boundaries: np.ndarray
    test_boundaries: np.ndarray


def channel_files(chan_id: str) -> tuple[RemoteFile, RemoteFile]:
    """The train and test arrays of one channel, as members of the telemanom ``data.zip``."""
    return tuple(
        RemoteFile(f"{part}/{chan_id}.npy", TELEMANOM_ZIP_URL, member=f"{part}/{chan_id}.npy")
        for part in ("train", "test")
    )


def read_labeled_anomalies(path: Path, spacecraft: str) -> list[TelemanomChannel]:
    """Rows of ``labeled_anomalies.csv`` for ``spacecraft``, in file order.

    Raises DataFormatError naming the file and line for a missing column, a malformed or
    reversed range (``start > end``), a negative start, a repeated channel, or no rows at all.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        absent = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise DataFormatError(f"{path}: missing columns {absent} (header: {reader.fieldnames})")
        rows, seen = [], set()
        for row in reader:
            line = reader.line_num
            if row["spacecraft"] != spacecraft:
                continue
            try:
                sequences = tuple((int(s), int(e)) for s, e in ast.literal_eval(row["anomaly_sequences"]))
                num_values = int(row["num_values"])
            except (ValueError, TypeError, SyntaxError):
                raise DataFormatError(
                    f"{path}: line {line} has a malformed anomaly_sequences or num_values: "
                    f'{row["anomaly_sequences"]!r}, {row["num_values"]!r} (expected e.g. "[[1850, 2030]]", 2049)'
                ) from None
            for start, end in sequences:
                if start > end:
                    raise DataFormatError(
                        f"{path}: line {line}, channel {row['chan_id']}: anomaly range [{start}, {end}] has "
                        "start > end; ranges are inclusive [start, end] with start <= end"
                    )
                if start < 0:
                    raise DataFormatError(
                        f"{path}: line {line}, channel {row['chan_id']}: anomaly range [{start}, {end}] starts "
                        "below 0; ranges index the channel's test array from 0"
                    )
            if row["chan_id"] in seen:
                raise DataFormatError(f"{path}: line {line} repeats channel {row['chan_id']}")
            seen.add(row["chan_id"])
            rows.append(TelemanomChannel(row["chan_id"], sequences, num_values, line))
    if not rows:
        raise DataFormatError(f"{path}: no rows for spacecraft {spacecraft}")
    return rows


def _first_bad(mask: np.ndarray) -> tuple[int, int]:
    r, c = np.argwhere(mask)[0]
    return int(r), int(c)


def _load_array(path: Path, spacecraft: str) -> np.ndarray:
    """One channel file as ``[T, F] float32``, F the spacecraft's feature count, every value
    finite before and after the cast; DataFormatError naming the file otherwise."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(
            f"{path}: not a readable .npy array of numbers ({exc}); it is truncated, damaged or holds "
            f"Python objects. {repair_advice(path, TELEMANOM_ZIP_URL)}"
        ) from None
    expected = SPACECRAFT_FEATURES[spacecraft]
    # The published arrays are float64; integer, boolean or complex ones mean another file, so
    # they are refused rather than cast by a guessed rule.
    if array.dtype.kind != "f":
        raise DataFormatError(
            f"{path}: dtype {array.dtype}, expected real floating point (the published files are float64). "
            + repair_advice(path, TELEMANOM_ZIP_URL)
        )
    if array.ndim != 2 or array.shape[1] != expected or array.shape[0] == 0:
        raise DataFormatError(
            f"{path}: shape {list(array.shape)}, expected [T, {expected}] with T > 0 ({spacecraft} channels "
            f"have {expected} features: the telemetry value and one-hot commands). "
            + repair_advice(path, TELEMANOM_ZIP_URL)
        )
    if not np.isfinite(array).all():
        r, c = _first_bad(~np.isfinite(array))
        raise DataFormatError(
            f"{path}: value {float(array[r, c])!r} at row {r}, column {c} is not finite. "
            + repair_advice(path, TELEMANOM_ZIP_URL)
        )
    with np.errstate(over="ignore"):  # checked just below, with the file and position named
        cast = array.astype(np.float32)
    if not np.isfinite(cast).all():
        r, c = _first_bad(~np.isfinite(cast))
        raise DataFormatError(
            f"{path}: value {float(array[r, c])!r} at row {r}, column {c} overflows float32 (largest finite "
            f"{float(np.finfo(np.float32).max):.3g}); such a value is not telemetry. "
            + repair_advice(path, TELEMANOM_ZIP_URL)
        )
    return cast


def _labels(channel: TelemanomChannel, length: int, csv_path: Path) -> np.ndarray:
    if channel.num_values != length:
        raise DataFormatError(
            f"{csv_path}: line {channel.line}: channel {channel.chan_id} has num_values {channel.num_values} "
            f"but test/{channel.chan_id}.npy has {length} rows"
        )
    labels = np.zeros(length, dtype=np.int64)
    for start, end in channel.anomaly_sequences:
        if end >= length:
            raise DataFormatError(
                f"{csv_path}: line {channel.line}: channel {channel.chan_id} range [{start}, {end}] is outside "
                f"its test series (0..{length - 1})"
            )
        labels[start : end + 1] = 1  # inclusive end
    return labels


def _unlisted_channels(folder: Path, listed: set[str]) -> dict[str, list[str]]:
    """Channel files in ``train/`` or ``test/`` without a row in the csv, by part."""
    out = {}
    for part in ("train", "test"):
        stray = sorted(p.stem for p in (folder / part).glob("*.npy") if p.stem not in listed)
        if stray:
            out[part] = stray
    return out


def load_telemanom(
    spacecraft: str = "MSL",
    channel: str | None = None,
    root: Path | None = None,
    *,
    transport: Transport | None = None,
) -> TelemanomData:
    """Load one channel, or all channels of a spacecraft concatenated along time.

    With ``channel=None`` the channels are those of ``spacecraft`` in ``labeled_anomalies.csv``
    minus P-2, sorted by channel id and concatenated, exactly as the published OmniAnomaly and
    MTAD-GAT preprocessing does (their ``data_preprocess.py`` sorts the csv rows by ``chan_id``
    before concatenating), so results stay comparable with those papers. MSL gives 27 channels
    with 55 features. A named ``channel`` (P-2 included) loads just that one.

    Files come from ``root`` (a folder laid out like ``data/``; default ``data_dir()``), the
    mirror, or the telemanom ``data.zip`` plus ``labeled_anomalies.csv`` (only the requested
    channels are extracted).

    Checked on every load, each failure a DataFormatError naming the file (and csv line): every
    array is readable, real floating point (float64 as published; integer, boolean and complex
    arrays are refused, not cast), ``[T, 55]`` for MSL or ``[T, 25]`` for SMAP, finite, and
    still finite after the cast to float32; ``num_values`` equals the test length; ranges have
    start <= end inside the test series; and with ``channel=None`` the csv and the channel files
    agree in both directions (a listed channel whose files are missing is fetched or reported
    missing; a file without a row is refused instead of silently left out).
    """
    if spacecraft not in SPACECRAFTS:
        raise ValueError(f"spacecraft must be one of {SPACECRAFTS}, got {spacecraft!r}")
    csv_folder = resolve(spacecraft, (LABELS_FILE,), root=root, transport=transport)
    rows = read_labeled_anomalies(csv_folder / LABELS_FILE.path, spacecraft)
    listed = {r.chan_id for r in rows}
    if channel is None:
        chosen = sorted((r for r in rows if r.chan_id not in EXCLUDED_CHANNELS), key=lambda r: r.chan_id)
    else:
        chosen = [r for r in rows if r.chan_id == channel]
        if not chosen:
            has_files = any((csv_folder / part / f"{channel}.npy").is_file() for part in ("train", "test"))
            hint = f" ({channel}.npy exists but has no row in {csv_folder / LABELS_FILE.path})" if has_files else ""
            raise ValueError(f"unknown {spacecraft} channel {channel!r}{hint}; valid: {', '.join(sorted(listed))}")
    files = (LABELS_FILE, *(f for r in chosen for f in channel_files(r.chan_id)))
    folder = resolve(spacecraft, files, root=root, transport=transport)
    csv_path = folder / LABELS_FILE.path
    if folder != csv_folder and read_labeled_anomalies(csv_path, spacecraft) != rows:
        # Only the data folder's copy can be the odd one out: resolve prefers it, and copies
        # fetched into it come from the mirror or the canonical URL.
        raise DataFormatError(
            f"{csv_folder / LABELS_FILE.path} differs from {csv_path}, which sits beside the channel files "
            f"that were found. Fix: delete {csv_folder / LABELS_FILE.path} so that the data folder takes "
            "its copy again, or place the matching channel files beside it."
        )
    if channel is None:
        # Both directions: every listed channel was resolved above (or its files reported
        # missing); here, a file without a row would otherwise be dropped without a word.
        stray = _unlisted_channels(folder, listed)
        if stray:
            where = "; ".join(f"{folder / part}: {', '.join(ids)}" for part, ids in stray.items())
            fix = (
                repair_advice(csv_path, TELEMANOM_LABELS_URL)
                if in_mirror(folder)
                else f"Fix: restore the missing rows in {csv_path} (the published file lists every channel), "
                "or remove the stray files."
            )
            raise DataFormatError(
                f"channel files without a {spacecraft} row in {csv_path}: {where}. Every channel must be "
                f"listed there (its anomaly ranges and num_values), or it would be silently left out. {fix}"
            )

    trains, tests, labels = [], [], []
    for row in chosen:
        train = _load_array(folder / "train" / f"{row.chan_id}.npy", spacecraft)
        test = _load_array(folder / "test" / f"{row.chan_id}.npy", spacecraft)
        labels.append(_labels(row, len(test), csv_path))
        trains.append(train)
        tests.append(test)

    def starts(parts: list[np.ndarray]) -> np.ndarray:
        return np.cumsum([0] + [len(p) for p in parts[:-1]]).astype(np.int64)

    return TelemanomData(
        spacecraft=spacecraft,
        channels=[r.chan_id for r in chosen],
        train=np.concatenate(trains),
        test=np.concatenate(tests),
        test_labels=np.concatenate(labels),
        train_boundaries=starts(trains),
        test_boundaries=starts(tests),
    )
