"""Loaders for Cora, PPI, SMD and NASA telemetry, on generated stand-ins and the real mirror.

No network: downloads go through fake transports serving stand-in or mirror bytes.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _mirror import needs_mirror_marker

from tgad_lite.data import (
    SMD_MACHINES,
    DataFormatError,
    load_cora,
    load_ppi,
    load_smd,
    load_telemanom,
    write_ppi_standin,
    write_smd_standin,
    write_telemanom_standin,
)
from tgad_lite.data.cora import CORA_FILES
from tgad_lite.data.ppi import PPI_URL
from tgad_lite.data.smd import smd_files
from tgad_lite.data.telemanom import TELEMANOM_LABELS_URL, TELEMANOM_ZIP_URL

REAL_MIRROR, needs_mirror = needs_mirror_marker()


def serve(blobs: dict[str, bytes], calls: list[str] | None = None):
    """A fake transport: serves ``blobs`` by URL, records the URLs asked for."""

    def transport(url: str):
        if calls is not None:
            calls.append(url)
        if url not in blobs:
            raise AssertionError(f"unexpected download of {url}")
        yield blobs[url]

    return transport


def zip_files(members: dict[str, Path]) -> bytes:
    """A zip archive holding each file under its member name."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, path in members.items():
            zf.write(path, name)
    return buf.getvalue()


def zip_folder(folder: Path) -> bytes:
    return zip_files({p.name: p for p in sorted(folder.iterdir())})


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """An empty data folder and no mirror: anything missing must be downloaded."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("TGAD_DATA_DIR", str(folder))
    monkeypatch.delenv("TGAD_DATA_MIRROR", raising=False)
    return folder


# --- PPI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ppi_standin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ppi_standin")
    write_ppi_standin(root)
    return root


def test_ppi_standin_loads_with_the_real_shapes(ppi_standin, data):
    sizes = {split: len(load_ppi(split, root=ppi_standin)) for split in ("train", "val", "test")}
    assert sizes == {"train": 20, "val": 2, "test": 2}
    train = load_ppi("train", root=ppi_standin)
    assert train.num_features == 50 and train.num_classes == 121
    g = train[3]
    assert g.x.shape == (40, 50) and g.y.shape == (40, 121)
    # Graph 3's rows of the raw files, and an undirected graph (both directions present).
    raw = ppi_standin / "PPI" / "raw"
    np.testing.assert_allclose(g.x.numpy(), np.load(raw / "train_feats.npy")[120:160], rtol=1e-6)
    assert np.array_equal(g.y.numpy(), np.load(raw / "train_labels.npy")[120:160])
    edges = set(map(tuple, g.edge_index.t().tolist()))
    assert all((b, a) in edges for a, b in edges)
    assert (ppi_standin / "PPI" / "processed" / "train.pt").is_file()
    assert list(data.iterdir()) == []  # root= bypasses data/ entirely


def test_ppi_downloads_through_the_archive_once(ppi_standin, data):
    calls = []
    transport = serve({PPI_URL: zip_folder(ppi_standin / "PPI" / "raw")}, calls)
    val = load_ppi("val", transport=transport)
    test = load_ppi("test", transport=transport)
    assert (len(val), len(test)) == (2, 2) and calls == [PPI_URL]
    assert sorted(p.name for p in (data / "PPI" / "raw").iterdir()) == sorted(
        p.name for p in (ppi_standin / "PPI" / "raw").iterdir()
    )


def test_ppi_corrupt_archive_leaves_nothing(ppi_standin, data):
    good = zip_folder(ppi_standin / "PPI" / "raw")
    corrupt = bytearray(good)
    corrupt[len(good) // 2 : len(good) // 2 + 64] = bytes(64)  # damage a member's data: CRC fails
    with pytest.raises(DataFormatError):
        load_ppi("train", transport=serve({PPI_URL: bytes(corrupt)}))
    assert list(data.iterdir()) == []


def test_ppi_rejects_unknown_split(ppi_standin):
    with pytest.raises(ValueError, match="train"):
        load_ppi("validation", root=ppi_standin)


# --- SMD -------------------------------------------------------------------------------------


@pytest.fixture
def smd_root(tmp_path) -> Path:
    write_smd_standin(tmp_path, "machine-2-3", t_train=300, t_test=400, seed=1)
    return tmp_path


def test_smd_standin_shapes_labels_and_zero_based_interpretation(smd_root):
    m = load_smd("machine-2-3", root=smd_root)
    assert m.machine == "machine-2-3"
    assert m.train.shape == (300, 38) and m.test.shape == (400, 38)
    assert m.train.dtype == m.test.dtype == np.float32 and m.test_labels.dtype == np.int64
    assert set(np.unique(m.test_labels)) == {0, 1}
    lines = (smd_root / "SMD" / "interpretation_label" / "machine-2-3.txt").read_text().split()
    assert len(m.interpretation) == len(lines) == 3
    covered = np.zeros(400, dtype=np.int64)
    for event, line in zip(m.interpretation, lines, strict=True):
        span, numbers = line.split(":")
        assert (event.start, event.end) == tuple(int(v) for v in span.split("-"))
        assert event.features == tuple(int(v) - 1 for v in numbers.split(","))  # 1-based -> 0-based
        covered[event.start : event.end + 1] = 1  # inclusive end
        # The culprit metrics really moved inside the event.
        inside = m.test[event.start : event.end + 1, list(event.features)].mean()
        outside = m.test[covered == 0][:, list(event.features)].mean()
        assert inside > outside + 0.2
    assert np.array_equal(covered, m.test_labels)


def test_smd_through_fake_transport_uses_canonical_urls(smd_root, data):
    folder = smd_root / "SMD"
    blobs = {f.url: (folder / f.path).read_bytes() for f in smd_files("machine-2-3")}
    assert all(u.startswith("https://raw.githubusercontent.com/NetManAIOps/OmniAnomaly/master/") for u in blobs)
    m = load_smd("machine-2-3", transport=serve(blobs))
    assert m.test.shape == (400, 38) and (data / "SMD" / "test_label" / "machine-2-3.txt").is_file()


def _edit_line(path: Path, number: int, text: str | None) -> None:
    lines = path.read_text().splitlines()
    if text is None:
        del lines[number - 1]
    else:
        lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "part, line, text, message",
    [
        ("test", 17, ",".join(["0.5"] * 12), "expected 38 comma-separated columns, line 17 has 12"),
        ("train", 5, ",".join(["0.5"] * 37 + ["abc"]), "line 5 has a non-numeric value"),
        ("train", 9, ",".join(["0.5"] * 37 + ["nan"]), "line 9 has a NaN"),
        ("test_label", 400, None, "has 399 labels but the test series has 400 rows"),
        ("test_label", 3, "2", "line 3 must be 0 or 1"),
        ("interpretation_label", 2, "390-401:1,2", "line 2 range 390-401 is outside"),
        ("interpretation_label", 1, "10-20:0,3", "line 1 has a feature number outside 1..38"),
    ],
    ids=["columns", "non-numeric", "nan", "label-length", "label-value", "range", "feature-number"],
)
def test_smd_malformed_files_name_file_and_line(smd_root, part, line, text, message):
    path = smd_root / "SMD" / part / "machine-2-3.txt"
    _edit_line(path, line, text)
    with pytest.raises(DataFormatError) as err:
        load_smd("machine-2-3", root=smd_root)
    assert str(path) in str(err.value) and message in str(err.value)


def test_smd_unknown_machine_lists_valid_names(smd_root):
    assert len(SMD_MACHINES) == 28
    with pytest.raises(ValueError, match="machine-3-11"):
        load_smd("machine-4-1", root=smd_root)


# --- NASA telemetry (telemanom layout) --------------------------------------------------------


@pytest.fixture
def smap_root(tmp_path) -> Path:
    write_telemanom_standin(tmp_path, "SMAP", ("P-1", "A-1", "P-2", "E-1"))
    return tmp_path


def test_telemanom_concatenates_sorted_channels_without_p2(smap_root):
    d = load_telemanom("SMAP", root=smap_root)
    assert d.spacecraft == "SMAP" and d.channels == ["A-1", "E-1", "P-1"]  # csv order was P-1, A-1, P-2, E-1
    folder = smap_root / "SMAP"
    tests = [np.load(folder / "test" / f"{c}.npy") for c in d.channels]
    trains = [np.load(folder / "train" / f"{c}.npy") for c in d.channels]
    np.testing.assert_array_equal(d.test, np.concatenate(tests).astype(np.float32))
    np.testing.assert_array_equal(d.train, np.concatenate(trains).astype(np.float32))
    assert d.test_boundaries.tolist() == [0, len(tests[0]), len(tests[0]) + len(tests[1])]
    assert d.train_boundaries.tolist() == [0, len(trains[0]), len(trains[0]) + len(trains[1])]
    assert d.test.shape[1] == 25 and d.test_labels.shape == (len(d.test),)
    # Labels rebuilt from the csv: inclusive ranges, shifted to concatenated coordinates.
    with open(folder / "labeled_anomalies.csv", newline="") as f:
        ranges = {r["chan_id"]: json.loads(r["anomaly_sequences"]) for r in csv.DictReader(f)}
    expected = np.zeros(len(d.test), dtype=np.int64)
    for chan, offset in zip(d.channels, d.test_boundaries, strict=True):
        for start, end in ranges[chan]:
            expected[offset + start : offset + end + 1] = 1
    assert ranges["P-1"][0][1] - ranges["P-1"][0][0] == 4  # a 5-row range, both ends labelled
    np.testing.assert_array_equal(d.test_labels, expected)


def test_telemanom_single_channel_includes_p2_on_request(smap_root):
    d = load_telemanom("SMAP", channel="P-2", root=smap_root)
    assert d.channels == ["P-2"] and d.test_boundaries.tolist() == [0]
    with pytest.raises(ValueError, match="A-1, E-1, P-1, P-2"):
        load_telemanom("SMAP", channel="Z-9", root=smap_root)


@pytest.mark.parametrize("fault", ["truncated-npy", "num-values", "feature-count"])
def test_telemanom_bad_files_raise_format_errors(smap_root, fault):
    folder = smap_root / "SMAP"
    if fault == "truncated-npy":
        bad = folder / "test" / "E-1.npy"
        bad.write_bytes(bad.read_bytes()[:-100])
        expected = str(bad)
    elif fault == "num-values":
        table = folder / "labeled_anomalies.csv"
        table.write_text(table.read_text().replace(",122\n", ",999\n"))  # P-1 has 100 rows, A-1 111, P-2 122
        d = load_telemanom("SMAP", root=smap_root)  # P-2 is not loaded: still fine
        assert "P-2" not in d.channels
        table.write_text(table.read_text().replace(",100\n", ",101\n"))
        expected = "channel P-1 has num_values 101 but test/P-1.npy has 100 rows"
    else:
        np.save(folder / "train" / "P-1.npy", np.zeros((80, 5)))
        expected = f"{folder / 'train' / 'P-1.npy'}: shape [80, 5], expected [T, 25]"
    with pytest.raises(DataFormatError) as err:
        load_telemanom("SMAP", root=smap_root)
    assert expected in str(err.value)


def test_telemanom_download_extracts_only_the_requested_spacecraft(tmp_path, data):
    src = tmp_path / "src"
    write_telemanom_standin(src, "MSL", ("M-1", "C-1"))
    write_telemanom_standin(src, "SMAP", ("P-1",))
    # The real archive: data/{train,test}/<chan>.npy for every channel of both spacecraft.
    archive = zip_files(
        {"data/" + p.relative_to(src / sc).as_posix(): p for sc in ("MSL", "SMAP") for p in (src / sc).rglob("*.npy")}
    )
    labels = (src / "MSL" / "labeled_anomalies.csv").read_text() + "".join(
        (src / "SMAP" / "labeled_anomalies.csv").read_text().splitlines(keepends=True)[1:]
    )
    calls = []
    transport = serve({TELEMANOM_ZIP_URL: archive, TELEMANOM_LABELS_URL: labels.encode()}, calls)
    d = load_telemanom("MSL", transport=transport)
    assert d.channels == ["C-1", "M-1"] and d.test.shape[1] == 55
    assert calls == [TELEMANOM_LABELS_URL, TELEMANOM_ZIP_URL]
    assert sorted(p.name for p in (data / "MSL" / "test").iterdir()) == ["C-1.npy", "M-1.npy"]
    assert not (data / "SMAP").exists()


@needs_mirror
def test_msl_from_the_real_mirror(monkeypatch, data):
    monkeypatch.setenv("TGAD_DATA_MIRROR", str(REAL_MIRROR))
    d = load_telemanom("MSL", transport=serve({}))
    assert len(d.channels) == 27 and d.train.shape[1] == d.test.shape[1] == 55
    assert "P-2" not in d.channels and d.channels == sorted(d.channels)
    assert len(d.test_labels) == len(d.test) and 0 < d.test_labels.mean() < 0.5
    assert list(data.iterdir()) == []  # read straight from the mirror


# --- Cora ------------------------------------------------------------------------------------


def _check_cora(dataset) -> None:
    g = dataset[0]
    assert (g.num_nodes, dataset.num_features, dataset.num_classes) == (2708, 1433, 7)
    assert g.edge_index.shape == (2, 10556)
    assert [int(g.train_mask.sum()), int(g.val_mask.sum()), int(g.test_mask.sum())] == [140, 500, 1000]


@needs_mirror
def test_cora_from_the_real_mirror_caches_outside_it(monkeypatch, data):
    monkeypatch.setenv("TGAD_DATA_MIRROR", str(REAL_MIRROR))
    dataset = load_cora(transport=serve({}))
    _check_cora(dataset)
    assert Path(dataset.raw_dir) == REAL_MIRROR.resolve() / "Cora" / "raw"
    assert Path(dataset.processed_dir) == data / "Cora" / "processed"
    assert np.allclose(dataset[0].x.sum(1).numpy(), 1.0)  # normalised features
    assert load_cora(normalize_features=False)[0].x.max() == 1.0
    from tgad_lite.data.cora import CORA_CLASS_SIZES, CORA_CLASSES

    # The label-id -> topic table is pinned by the class sizes of the original cora.content.
    assert tuple(np.bincount(dataset[0].y.numpy()).tolist()) == CORA_CLASS_SIZES
    assert CORA_CLASSES[CORA_CLASS_SIZES.index(818)] == "Neural_Networks"


@needs_mirror
def test_cora_download_checks_every_digest(data):
    blobs = {f.url: (REAL_MIRROR / "Cora" / f.path).read_bytes() for f in CORA_FILES}
    assert all(u.startswith("https://github.com/kimiyoung/planetoid/raw/master/data/ind.cora.") for u in blobs)
    broken = dict(blobs)
    url = CORA_FILES[0].url
    broken[url] = broken[url][:-10]  # truncated download
    with pytest.raises(DataFormatError, match=CORA_FILES[0].sha256):
        load_cora(transport=serve(broken))
    assert not (data / "Cora" / CORA_FILES[0].path).exists()
    _check_cora(load_cora(transport=serve(blobs)))
    assert sorted(p.name for p in (data / "Cora" / "raw").iterdir()) == sorted(Path(f.path).name for f in CORA_FILES)
