"""Bad input to the loaders: damaged, edited or malformed raw files and caches.

Each test reproduces one case from issue 7 on a temporary copy (of the real mirror or of a
generated stand-in; /work/shared is never modified) and asserts the clear error, that the
message gives the right fix for where the file lives, and that nothing was left behind or
overwritten. No network: a transport that fails stands in for being offline.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _mirror import needs_mirror_marker

from tgad_lite.data import (
    DataFormatError,
    DataUnavailableError,
    load_cora,
    load_ppi,
    load_smd,
    load_telemanom,
    write_ppi_standin,
    write_smd_standin,
    write_telemanom_standin,
)
from tgad_lite.data.checksums import CACHE_NAME
from tgad_lite.data.cora import CORA_SHA256

REAL_MIRROR, needs_mirror = needs_mirror_marker()


def offline(url: str):
    raise DataUnavailableError(f"no network for {url}")
    yield  # pragma: no cover  (a generator, like a real transport)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with size and mtime, minus the digest cache (a record of what
    was checked, not data)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.name != CACHE_NAME
    }


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """An empty data folder ($TGAD_DATA_DIR) and no mirror."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("TGAD_DATA_DIR", str(folder))
    monkeypatch.delenv("TGAD_DATA_MIRROR", raising=False)
    return folder


def copy_cora(to: Path) -> Path:
    """The real raw Cora files copied to ``to/Cora/raw``; returns that folder."""
    raw = to / "Cora" / "raw"
    raw.mkdir(parents=True)
    for src in sorted((REAL_MIRROR / "Cora" / "raw").iterdir()):
        shutil.copyfile(src, raw / src.name)
    return raw


def same_size_edit(path: Path) -> bytes:
    """Swap the first two different bytes of a file (same size, different content); returns
    the original bytes."""
    original = path.read_bytes()
    i = next(k for k in range(1, len(original)) if original[k] != original[0])
    edited = bytearray(original)
    edited[0], edited[i] = original[i], original[0]
    path.write_bytes(bytes(edited))
    return original


def _test_nodes(graph) -> list[int]:
    return graph.test_mask.nonzero().view(-1).tolist()


# --- Cora: checksums on first use, the processed cache, the mirror's advice -------------------


@needs_mirror
def test_same_size_edit_of_cora_test_index_is_refused_and_restoring_it_loads_the_right_graph(data):
    raw = copy_cora(data)
    good = load_cora()[0]
    processed = snapshot(data / "Cora" / "processed")
    index = raw / "ind.cora.test.index"
    original = same_size_edit(index)
    assert index.stat().st_size == len(original)

    with pytest.raises(DataFormatError) as err:
        load_cora()
    msg = str(err.value)
    actual = hashlib.sha256(index.read_bytes()).hexdigest()
    assert str(index) in msg and CORA_SHA256["test.index"] in msg and actual in msg
    assert "restore the original file" in msg and f"delete {index}" in msg
    assert snapshot(data / "Cora" / "processed") == processed  # the cache was not touched

    index.write_bytes(original)  # restored: the right graph again, not a cached wrong one
    again = load_cora()[0]
    assert _test_nodes(again) == _test_nodes(good) and bool((again.x == good.x).all())


@needs_mirror
def test_a_processed_cache_not_built_from_these_raw_files_is_rebuilt(data, tmp_path):
    copy_cora(data)
    load_cora()
    processed = data / "Cora" / "processed"
    # A cache holding another graph and no fingerprint, as older versions (or PyG itself) leave:
    ppi = tmp_path / "ppi"
    write_ppi_standin(ppi, nodes_per_graph=5)
    load_ppi("train", root=ppi)
    shutil.copyfile(ppi / "PPI" / "processed" / "train.pt", processed / "data.pt")
    (processed / "raw_fingerprint.json").unlink()
    graph = load_cora()[0]
    assert graph.num_nodes == 2708 and graph.edge_index.shape == (2, 10556)
    assert (processed / "raw_fingerprint.json").is_file()
    assert sorted(p.name for p in (data / "Cora").iterdir()) == ["processed", "raw"]  # no staging left


@needs_mirror
def test_unreadable_processed_cache_names_the_file_and_the_fix(data):
    copy_cora(data)
    load_cora()
    target = data / "Cora" / "processed" / "data.pt"
    target.write_bytes(b"not a torch file")
    with pytest.raises(DataFormatError) as err:
        load_cora()
    assert str(target) in str(err.value) and f"delete {target.parent}" in str(err.value)


@needs_mirror
@pytest.mark.parametrize("name", ["graph", "x"])
def test_cora_garbage_is_refused_before_it_is_unpickled_and_leaves_nothing(data, name):
    raw = copy_cora(data)
    bad = raw / f"ind.cora.{name}"
    bad.write_bytes(b"\x80\x04garbage, not a pickle")
    with pytest.raises(DataFormatError) as err:
        load_cora()
    assert str(bad) in str(err.value) and CORA_SHA256[name] in str(err.value)
    assert sorted(p.name for p in (data / "Cora").iterdir()) == ["raw"]  # no processed/ folder


@needs_mirror
def test_damaged_file_in_the_mirror_is_refused_without_advice_to_change_the_mirror(data, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    raw = copy_cora(mirror)
    same_size_edit(raw / "ind.cora.test.index")
    monkeypatch.setenv("TGAD_DATA_MIRROR", str(mirror))
    before = snapshot(mirror)
    with pytest.raises(DataFormatError) as err:
        load_cora(transport=offline)
    msg = str(err.value)
    assert str(raw / "ind.cora.test.index") in msg and "read-only mirror" in msg
    assert "point TGAD_DATA_MIRROR at an intact mirror" in msg and "delete" not in msg.lower()
    assert snapshot(mirror) == before and snapshot(data) == {}


@needs_mirror
def test_cora_needs_no_stderr_output(data, capfd, monkeypatch):
    """PyG prints "Processing..." / "Done!" unless it sees pytest; make it believe it does not."""
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.setenv("TGAD_DATA_MIRROR", str(REAL_MIRROR))
    capfd.readouterr()
    load_cora()
    assert capfd.readouterr().err == ""


@needs_mirror
def test_unwritable_data_folder_for_the_processed_cache_names_tgad_data_dir(data, monkeypatch):
    from tgad_lite.data import pyg_cache

    monkeypatch.setenv("TGAD_DATA_MIRROR", str(REAL_MIRROR))

    # Tests may run as root, for whom permission bits do not apply: simulate the kernel's refusal.
    def refuse(**kw):
        raise PermissionError(13, "Permission denied", kw["dir"])

    monkeypatch.setattr(pyg_cache.tempfile, "mkdtemp", refuse)
    with pytest.raises(DataUnavailableError) as err:
        load_cora()
    msg = str(err.value)
    assert "TGAD_DATA_DIR" in msg and str(data / "Cora") in msg and "Permission denied" in msg
    assert snapshot(data) == {}


# --- PPI: raw files validated before PyG parses them; the cache follows the raw files --------


@pytest.fixture
def ppi(tmp_path, data) -> Path:
    write_ppi_standin(tmp_path, nodes_per_graph=8)
    return tmp_path


def _ppi_left(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "PPI").iterdir())


@pytest.mark.parametrize(
    "name, damage, expected",
    [
        ("train_graph.json", lambda p: p.write_text('{"nodes": [1, 2'), "node-link JSON"),
        ("valid_graph.json", lambda p: p.write_text('{"nodes": [], "links": []}'), "has 0 nodes"),
        ("test_feats.npy", lambda p: p.write_bytes(b"\x93NUMPY garbage"), "not a readable .npy array"),
        ("train_labels.npy", lambda p: np.save(p, np.zeros((160, 50), dtype=np.int64)), "[N, 121]"),
        ("train_labels.npy", lambda p: np.save(p, np.full((160, 121), 2)), "labels must be 0 or 1"),
        ("train_feats.npy", lambda p: np.save(p, np.full((160, 50), 1e39)), "not finite in float32"),
        ("valid_graph_id.npy", lambda p: np.save(p, np.zeros(3, dtype=np.int64)), "graph ids [N]"),
    ],
    ids=[
        "json-garbage",
        "json-nodes",
        "npy-garbage",
        "labels-width-50",
        "labels-not-binary",
        "feats-overflow",
        "graph-id-length",
    ],
)
def test_malformed_ppi_files_are_named_and_leave_no_cache(ppi, name, damage, expected):
    path = ppi / "PPI" / "raw" / name
    damage(path)
    with pytest.raises(DataFormatError) as err:
        load_ppi("train", root=ppi)
    assert str(path) in str(err.value) and expected in str(err.value)
    assert f"delete {path}" in str(err.value)
    assert _ppi_left(ppi) == ["raw"]  # no processed/, no half-built temporary folder


def test_ppi_cache_follows_the_raw_files(ppi):
    raw = ppi / "PPI" / "raw"
    first = load_ppi("train", root=ppi)[0].x.clone()
    originals = {p.name: p.read_bytes() for p in raw.iterdir()}
    write_ppi_standin(ppi, nodes_per_graph=8, seed=1)  # other raw files, same shapes
    changed = load_ppi("train", root=ppi)[0].x
    np.testing.assert_allclose(changed.numpy(), np.load(raw / "train_feats.npy")[:8], rtol=1e-6)
    assert not bool((changed == first).all())
    for name, content in originals.items():  # restored: the first graph again
        (raw / name).write_bytes(content)
    assert bool((load_ppi("train", root=ppi)[0].x == first).all())


def test_ppi_processing_prints_nothing_where_plain_pyg_would(ppi, tmp_path, capfd, monkeypatch):
    from torch_geometric.datasets import PPI

    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # PyG stays quiet under pytest otherwise
    capfd.readouterr()
    load_ppi("val", root=ppi)
    assert capfd.readouterr().err == ""
    plain = tmp_path / "plain"
    shutil.copytree(ppi / "PPI" / "raw", plain / "raw")
    PPI(str(plain), split="val")
    assert "Processing..." in capfd.readouterr().err  # what the loader silences


# --- NASA telemetry: csv and files in both directions, shapes, dtypes, finiteness -------------


@pytest.fixture
def msl(tmp_path, data) -> Path:
    """A stand-in MSL folder with four channels (55 features), as the root of a data folder."""
    write_telemanom_standin(tmp_path, "MSL", ("M-2", "C-1", "M-1", "T-3"))
    return tmp_path


def _drop_csv_row(csv_path: Path, chan: str) -> None:
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows(r for r in rows if r[0] != chan)


def test_channel_without_a_csv_row_is_refused_not_dropped(msl):
    _drop_csv_row(msl / "MSL" / "labeled_anomalies.csv", "M-1")
    with pytest.raises(DataFormatError) as err:
        load_telemanom("MSL", root=msl)
    msg = str(err.value)
    assert "M-1" in msg and str(msl / "MSL" / "labeled_anomalies.csv") in msg and "restore the missing rows" in msg
    with pytest.raises(ValueError, match="M-1.npy exists but has no row"):
        load_telemanom("MSL", channel="M-1", root=msl)


def _listed(message: str) -> list[str]:
    """The missing files a DataUnavailableError lists (lines ``  path <- source``)."""
    return [line.split(" <- ")[0].strip() for line in message.splitlines() if line.startswith("  ") and " <- " in line]


def test_csv_row_without_its_files_is_reported_missing(msl):
    (msl / "MSL" / "test" / "T-3.npy").unlink()
    with pytest.raises(DataUnavailableError) as err:
        load_telemanom("MSL", root=msl, transport=offline)
    assert _listed(str(err.value)) == ["test/T-3.npy"]
    assert not (msl / "MSL" / "test" / "T-3.npy").exists()


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.zeros((50, 2)), "shape [50, 2], expected [T, 55]"),
        (np.zeros((50, 55), dtype=np.complex128), "dtype complex128, expected real floating point"),
        (np.zeros((50, 55), dtype=np.int8), "dtype int8, expected real floating point"),
        (np.zeros(55), "shape [55], expected [T, 55]"),
    ],
    ids=["two-features", "complex", "int8", "one-dimensional"],
)
def test_bad_first_channel_is_blamed_itself(msl, array, expected):
    bad = msl / "MSL" / "train" / "C-1.npy"  # C-1 sorts first
    np.save(bad, array)
    with pytest.raises(DataFormatError) as err:
        load_telemanom("MSL", root=msl)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: ") and expected in msg
    assert "M-1.npy" not in msg and "M-2.npy" not in msg and f"delete {bad}" in msg


@pytest.mark.parametrize(
    "value, expected",
    [(1e39, "1e+39 at row 7, column 3 overflows float32"), (np.nan, "nan at row 7, column 3 is not finite")],
    ids=["overflows-float32", "nan"],
)
def test_values_that_are_not_finite_in_float32_name_file_and_position(msl, value, expected):
    path = msl / "MSL" / "test" / "M-2.npy"
    array = np.load(path)
    array[7, 3] = value
    np.save(path, array)
    with pytest.raises(DataFormatError) as err:
        load_telemanom("MSL", root=msl)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_reversed_anomaly_range_says_start_after_end_with_the_line(msl):
    table = msl / "MSL" / "labeled_anomalies.csv"
    with open(table, newline="") as f:
        rows = list(csv.reader(f))
    line = next(i for i, r in enumerate(rows, start=1) if r[0] == "C-1")
    (start, end), *rest = json.loads(rows[line - 1][2])
    rows[line - 1][2] = json.dumps([[end, start], *rest])
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(DataFormatError) as err:
        load_telemanom("MSL", root=msl)
    assert f"{table}: line {line}, channel C-1: anomaly range [{end}, {start}] has start > end" in str(err.value)


@needs_mirror
def test_real_mirror_with_a_csv_row_removed_fails_instead_of_loading_26_channels(data, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror" / "MSL"
    for part in ("train", "test"):
        (mirror / part).mkdir(parents=True)
        for src in (REAL_MIRROR / "MSL" / part).iterdir():
            (mirror / part / src.name).symlink_to(src)  # read-only use: links, not 56 MB of copies
    shutil.copyfile(REAL_MIRROR / "MSL" / "labeled_anomalies.csv", mirror / "labeled_anomalies.csv")
    _drop_csv_row(mirror / "labeled_anomalies.csv", "T-4")
    monkeypatch.setenv("TGAD_DATA_MIRROR", str(mirror.parent))
    with pytest.raises(DataFormatError) as err:
        load_telemanom("MSL", transport=offline)
    msg = str(err.value)
    assert "T-4" in msg and "read-only mirror" in msg and "delete" not in msg.lower()
    assert snapshot(data) == {}


@needs_mirror
def test_real_mirror_missing_one_channel_copies_nothing_and_lists_exactly_it(data, tmp_path, monkeypatch):
    """The issue's offline case: 53 files were copied before the failure, the wrong ones listed."""
    mirror = tmp_path / "mirror" / "MSL"
    for part in ("train", "test"):
        (mirror / part).mkdir(parents=True)
        for src in (REAL_MIRROR / "MSL" / part).iterdir():
            if not (part == "test" and src.name == "P-11.npy"):
                (mirror / part / src.name).symlink_to(src)
    shutil.copyfile(REAL_MIRROR / "MSL" / "labeled_anomalies.csv", mirror / "labeled_anomalies.csv")
    monkeypatch.setenv("TGAD_DATA_MIRROR", str(mirror.parent))
    with pytest.raises(DataUnavailableError) as err:
        load_telemanom("MSL", transport=offline)
    assert _listed(str(err.value)) == ["test/P-11.npy"]
    assert "the 54 file(s) the mirror holds are copied once the rest can be fetched" in str(err.value)
    assert snapshot(data) == {}


# --- SMD --------------------------------------------------------------------------------------


def test_smd_value_beyond_float32_names_file_line_and_column(tmp_path):
    write_smd_standin(tmp_path, "machine-1-1", t_train=50, t_test=80)
    path = tmp_path / "SMD" / "train" / "machine-1-1.txt"
    lines = path.read_text().splitlines()
    cells = lines[11].split(",")
    cells[4] = "1e39"
    lines[11] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as err:
        load_smd("machine-1-1", root=tmp_path)
    assert f"{path}: line 12, column 5 holds 1e+39, which overflows float32" in str(err.value)


def test_a_stale_csv_in_the_data_folder_is_not_mixed_with_the_mirrors_channels(data, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    write_telemanom_standin(mirror, "MSL", ("M-1", "C-1"))
    stale = data / "MSL" / "labeled_anomalies.csv"
    stale.parent.mkdir()
    shutil.copyfile(mirror / "MSL" / "labeled_anomalies.csv", stale)
    _drop_csv_row(stale, "C-1")
    monkeypatch.setenv("TGAD_DATA_MIRROR", str(mirror))
    with pytest.raises(DataFormatError) as err:
        load_telemanom("MSL", transport=offline)
    assert f"{stale} differs from {mirror / 'MSL' / 'labeled_anomalies.csv'}" in str(err.value)
    assert f"Fix: delete {stale}" in str(err.value)
