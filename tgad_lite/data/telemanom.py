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

from tgad_lite.data.fetch import DataFormatError, RemoteFile, Transport, resolve

TELEMANOM_ZIP_URL = "https://s3-us-west-2.amazonaws.com/telemanom/data.zip"
TELEMANOM_LABELS_URL = "https://raw.githubusercontent.com/khundman/telemanom/master/labeled_anomalies.csv"
SPACECRAFTS = ("MSL", "SMAP")
# Left out of the concatenated series by the OmniAnomaly / MTAD-GAT preprocessing.
EXCLUDED_CHANNELS = ("P-2",)
LABELS_FILE = RemoteFile("labeled_anomalies.csv", TELEMANOM_LABELS_URL)
_COLUMNS = ("chan_id", "spacecraft", "anomaly_sequences", "num_values")


@dataclass(frozen=True)
class TelemanomChannel:
    """One row of ``labeled_anomalies.csv``: inclusive ``(start, end)`` test-index ranges."""

    chan_id: str
    anomaly_sequences: tuple[tuple[int, int], ...]
    num_values: int


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
    """Rows of ``labeled_anomalies.csv`` for ``spacecraft``, in file order."""
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
                    f"{row['anomaly_sequences']!r}, {row['num_values']!r}"
                ) from None
            if row["chan_id"] in seen:
                raise DataFormatError(f"{path}: line {line} repeats channel {row['chan_id']}")
            seen.add(row["chan_id"])
            rows.append(TelemanomChannel(row["chan_id"], sequences, num_values))
    if not rows:
        raise DataFormatError(f"{path}: no rows for spacecraft {spacecraft}")
    return rows


def _load_array(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(
            f"{path}: not a readable .npy array ({exc}); it is probably truncated. "
            "Delete it and load again to re-fetch it."
        ) from None
    if array.ndim != 2 or not np.isfinite(array).all():
        raise DataFormatError(f"{path}: expected a finite [T, F] array, got shape {array.shape}")
    return array


def _labels(channel: TelemanomChannel, length: int, csv_path: Path) -> np.ndarray:
    if channel.num_values != length:
        raise DataFormatError(
            f"{csv_path}: channel {channel.chan_id} has num_values {channel.num_values} "
            f"but test/{channel.chan_id}.npy has {length} rows"
        )
    labels = np.zeros(length, dtype=np.int64)
    for start, end in channel.anomaly_sequences:
        if not 0 <= start <= end < length:
            raise DataFormatError(
                f"{csv_path}: channel {channel.chan_id} range [{start}, {end}] is outside its "
                f"test series (0..{length - 1})"
            )
        labels[start : end + 1] = 1  # inclusive end
    return labels


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
    channels are extracted). Raises DataFormatError (naming the file) when an array is
    truncated, ``num_values`` differs from the test length, a range falls outside its series, or
    channels disagree on the feature count.
    """
    if spacecraft not in SPACECRAFTS:
        raise ValueError(f"spacecraft must be one of {SPACECRAFTS}, got {spacecraft!r}")
    csv_folder = resolve(spacecraft, (LABELS_FILE,), root=root, transport=transport)
    csv_path = csv_folder / LABELS_FILE.path
    rows = read_labeled_anomalies(csv_path, spacecraft)
    if channel is None:
        chosen = sorted((r for r in rows if r.chan_id not in EXCLUDED_CHANNELS), key=lambda r: r.chan_id)
    else:
        chosen = [r for r in rows if r.chan_id == channel]
        if not chosen:
            raise ValueError(
                f"unknown {spacecraft} channel {channel!r}; valid: {', '.join(sorted(r.chan_id for r in rows))}"
            )
    files = (LABELS_FILE, *(f for r in chosen for f in channel_files(r.chan_id)))
    folder = resolve(spacecraft, files, root=root, transport=transport)

    trains, tests, labels = [], [], []
    for row in chosen:
        train = _load_array(folder / "train" / f"{row.chan_id}.npy")
        test = _load_array(folder / "test" / f"{row.chan_id}.npy")
        n_features = trains[0].shape[1] if trains else train.shape[1]
        for path, array in ((f"train/{row.chan_id}.npy", train), (f"test/{row.chan_id}.npy", test)):
            if array.shape[1] != n_features:
                raise DataFormatError(
                    f"{folder / path}: has {array.shape[1]} features, expected {n_features} "
                    f"like {chosen[0].chan_id}"
                )
        labels.append(_labels(row, len(test), csv_path))
        trains.append(train)
        tests.append(test)

    def starts(parts: list[np.ndarray]) -> np.ndarray:
        return np.cumsum([0] + [len(p) for p in parts[:-1]]).astype(np.int64)

    return TelemanomData(
        spacecraft=spacecraft,
        channels=[r.chan_id for r in chosen],
        train=np.concatenate(trains).astype(np.float32),
        test=np.concatenate(tests).astype(np.float32),
        test_labels=np.concatenate(labels),
        train_boundaries=starts(trains),
        test_boundaries=starts(tests),
    )
