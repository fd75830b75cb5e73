"""tgad_lite.data.fetch: resolution order, atomic downloads, archives and error messages.

No network: every download goes through a fake transport (a function url -> chunks).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import pytest

from tgad_lite.data import fetch
from tgad_lite.data.checksums import CACHE_NAME
from tgad_lite.data.fetch import (
    DataFormatError,
    DataUnavailableError,
    RemoteFile,
    data_dir,
    download,
    mirror_dir,
    resolve,
    url_transport,
)

A = RemoteFile("raw/a.bin", "https://example.org/a.bin")
B = RemoteFile("raw/b.bin", "https://example.org/b.bin")
BLOBS = {A.url: b"alpha" * 1000, B.url: b"bravo" * 1000}


class FakeNet:
    """Serves ``blobs`` by URL in small chunks and records every URL asked for."""

    def __init__(self, blobs: dict[str, bytes], fail_after: int | None = None, exc: BaseException | None = None):
        self.blobs, self.calls = blobs, []
        self.fail_after, self.exc = fail_after, exc

    def __call__(self, url: str):
        self.calls.append(url)
        if url not in self.blobs:
            raise DataUnavailableError(f"fake network: {url} unreachable")
        data = self.blobs[url]
        for i in range(0, len(data), 1000):
            if self.fail_after is not None and i >= self.fail_after:
                raise self.exc
            yield data[i : i + 1000]


def offline(url: str):
    raise DataUnavailableError(f"no network for {url}")
    yield  # pragma: no cover  (makes this a generator like a real transport)


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with size and mtime: a snapshot to prove nothing changed.
    The digest cache (a record of what was checked, not data) is left out."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.name != CACHE_NAME
    }


def put(folder: Path, f: RemoteFile, data: bytes) -> Path:
    path = folder / f.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    data, mirror = tmp_path / "data", tmp_path / "mirror"
    data.mkdir()
    mirror.mkdir()
    monkeypatch.setenv("TGAD_DATA_DIR", str(data))
    monkeypatch.setenv("TGAD_DATA_MIRROR", str(mirror))
    return data, mirror


def test_data_dir_and_mirror_resolve_relative_env_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TGAD_DATA_DIR", "cache")
    monkeypatch.setenv("TGAD_DATA_MIRROR", "../elsewhere")
    assert data_dir() == tmp_path.resolve() / "cache"
    assert mirror_dir() == tmp_path.resolve().parent / "elsewhere"
    monkeypatch.setenv("TGAD_DATA_MIRROR", "")
    assert mirror_dir() is None
    monkeypatch.delenv("TGAD_DATA_DIR")
    default = data_dir()
    assert default.name == "data" and (default.parent / "tgad_lite" / "__init__.py").is_file()


def test_data_folder_wins_over_mirror(dirs):
    data, mirror = dirs
    for f in (A, B):
        put(data / "Toy", f, b"from data")
        put(mirror / "Toy", f, b"from mirror")
    net = FakeNet(BLOBS)
    assert resolve("Toy", [A, B], transport=net) == data / "Toy"
    assert net.calls == []


def test_mirror_wins_over_download_and_is_not_copied(dirs):
    data, mirror = dirs
    for f in (A, B):
        put(mirror / "Toy", f, b"from mirror")
    net = FakeNet(BLOBS)
    assert resolve("Toy", [A, B], transport=net) == mirror / "Toy"
    assert net.calls == [] and list(data.iterdir()) == []


def test_download_lands_in_data_folder_and_keeps_present_files(dirs):
    data, _ = dirs
    kept = put(data / "Toy", A, b"already here")
    net = FakeNet(BLOBS)
    folder = resolve("Toy", [A, B], transport=net)
    assert folder == data / "Toy"
    assert net.calls == [B.url]  # only the missing file is fetched
    assert kept.read_bytes() == b"already here"
    assert (folder / B.path).read_bytes() == BLOBS[B.url]
    assert sorted(tree(folder)) == ["raw", "raw/a.bin", "raw/b.bin"]  # no temp files left


def test_partial_mirror_is_copied_before_downloading(dirs):
    data, mirror = dirs
    put(mirror / "Toy", A, b"mirror copy")
    net = FakeNet(BLOBS)
    folder = resolve("Toy", [A, B], transport=net)
    assert folder == data / "Toy" and net.calls == [B.url]
    assert (folder / A.path).read_bytes() == b"mirror copy"


def test_mirror_is_never_written(dirs, monkeypatch):
    data, mirror = dirs
    put(mirror / "Toy", A, b"mirror copy")
    for p in [mirror, *mirror.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = tree(mirror)
    # Running as root ignores permission bits, so also spy on every write fetch makes.
    written = []
    real_mkstemp, real_replace = tempfile.mkstemp, os.replace
    monkeypatch.setattr(fetch.tempfile, "mkstemp", lambda **kw: written.append(kw["dir"]) or real_mkstemp(**kw))
    monkeypatch.setattr(fetch.os, "replace", lambda src, dst: written.append(dst) or real_replace(src, dst))
    try:
        resolve("Toy", [A, B], transport=FakeNet(BLOBS))
    finally:
        for p in [mirror, *mirror.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    assert tree(mirror) == before
    assert written and all(Path(p).resolve().is_relative_to(data) for p in written)


def test_interrupted_download_leaves_nothing(tmp_path):
    dest = tmp_path / "out" / "file.bin"
    for exc in (ConnectionResetError("reset"), KeyboardInterrupt()):
        net = FakeNet(BLOBS, fail_after=2000, exc=exc)
        with pytest.raises(type(exc)):
            download(A.url, dest, transport=net)
        assert list(dest.parent.iterdir()) == []


def test_failed_download_keeps_the_previous_file(tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old")
    with pytest.raises(ConnectionResetError):
        download(A.url, dest, transport=FakeNet(BLOBS, fail_after=1000, exc=ConnectionResetError()))
    assert dest.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_checksum_mismatch_names_both_digests_and_leaves_nothing(dirs):
    data, _ = dirs
    expected = hashlib.sha256(b"the right bytes").hexdigest()
    actual = hashlib.sha256(BLOBS[A.url]).hexdigest()
    spec = RemoteFile(A.path, A.url, sha256=expected)
    with pytest.raises(DataFormatError) as err:
        resolve("Toy", [spec], transport=FakeNet(BLOBS))
    assert expected in str(err.value) and actual in str(err.value) and "a.bin" in str(err.value)
    assert list(data.iterdir()) == []  # not even an empty Toy/ folder


def test_matching_checksum_and_validator_pass(tmp_path):
    digest = hashlib.sha256(BLOBS[A.url]).hexdigest()
    seen = []
    out = download(A.url, tmp_path / "a.bin", sha256=digest, validate=seen.append, transport=FakeNet(BLOBS))
    assert out.read_bytes() == BLOBS[A.url]
    assert len(seen) == 1 and seen[0] != out  # validated before the rename


def test_validation_error_leaves_nothing(tmp_path):
    def reject(path: Path) -> None:
        raise DataFormatError(f"{path}: bad header")

    with pytest.raises(DataFormatError, match="bad header"):
        download(A.url, tmp_path / "a.bin", validate=reject, transport=FakeNet(BLOBS))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how", ["disabled", "offline"])
def test_unavailable_message_says_what_where_and_how(dirs, how):
    data, mirror = dirs
    put(data / "Toy", A, b"present")
    kwargs = {"download_missing": False} if how == "disabled" else {"transport": offline}
    with pytest.raises(DataUnavailableError) as err:
        resolve("Toy", [A, B], **kwargs)
    msg = str(err.value)
    assert B.path in msg and B.url in msg  # the missing file and where it comes from
    assert A.url not in msg  # present files are not reported missing
    assert str(data / "Toy") in msg and str(mirror / "Toy") in msg
    assert "TGAD_DATA_MIRROR" in msg and "by hand" in msg
    assert sorted(tree(data)) == ["Toy", "Toy/raw", "Toy/raw/a.bin"]


def test_offline_first_use_creates_no_folders(dirs):
    data, _ = dirs
    with pytest.raises(DataUnavailableError):
        resolve("Toy", [A, B], transport=offline)
    assert list(data.iterdir()) == []


def test_default_transport_streams_urls_and_wraps_errors(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 3_000_000)
    assert b"".join(url_transport(src.as_uri())) == src.read_bytes()
    with pytest.raises(DataUnavailableError, match="could not download"):
        list(url_transport((tmp_path / "missing.bin").as_uri()))


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


ZIP_URL = "https://example.org/archive.zip"
MEMBERS = [RemoteFile(f"train/{c}.npy", ZIP_URL, member=f"train/{c}.npy") for c in ("X-1", "X-2")]


def test_archive_members_land_in_place_with_one_download(dirs):
    data, _ = dirs
    archive = zip_bytes({"data/train/X-1.npy": b"one", "data/train/X-2.npy": b"two", "data/other/X-3.npy": b""})
    net = FakeNet({ZIP_URL: archive})
    folder = resolve("Arch", MEMBERS, transport=net)
    assert net.calls == [ZIP_URL]
    assert (folder / "train/X-1.npy").read_bytes() == b"one"
    assert sorted(tree(folder)) == ["train", "train/X-1.npy", "train/X-2.npy"]  # nothing extra


@pytest.mark.parametrize(
    "archive, error",
    [
        (zip_bytes({"train/X-1.npy": b"1" * 5000, "train/X-2.npy": b"2"})[:-300], "not a readable zip"),
        (zip_bytes({"train/X-1.npy": b"one"}), "lacks expected members"),
    ],
    ids=["truncated", "member-missing"],
)
def test_bad_archive_leaves_nothing(dirs, archive, error):
    data, _ = dirs
    with pytest.raises(DataFormatError, match=error):
        resolve("Arch", MEMBERS, transport=FakeNet({ZIP_URL: archive}))
    assert list(data.iterdir()) == []


def test_archive_member_checksum_is_checked(dirs):
    data, _ = dirs
    spec = [RemoteFile("train/X-1.npy", ZIP_URL, sha256="0" * 64, member="train/X-1.npy")]
    with pytest.raises(DataFormatError, match="0{64}"):
        resolve("Arch", spec, transport=FakeNet({ZIP_URL: zip_bytes({"train/X-1.npy": b"one"})}))
    assert list(data.iterdir()) == []


def test_download_failing_halfway_keeps_nothing_and_lists_every_file_still_needed(dirs):
    data, _ = dirs
    net = FakeNet({A.url: BLOBS[A.url]})  # B's URL is unreachable
    with pytest.raises(DataUnavailableError) as err:
        resolve("Toy", [A, B], transport=net)
    msg = str(err.value)
    assert net.calls == [A.url, B.url] and f"{B.url} unreachable" in msg
    # All or nothing: A arrived but a set without B is useless, so it was not kept; both are
    # reported, since neither is in the data folder or the mirror.
    assert f"{A.path} <- {A.url}" in msg and f"{B.path} <- {B.url}" in msg and "nothing was kept" in msg
    assert list(data.iterdir()) == []
    resolve("Toy", [A, B], transport=FakeNet(BLOBS))
    assert (data / "Toy" / B.path).read_bytes() == BLOBS[B.url]


MANY = [RemoteFile(f"train/c{i:02d}.npy", f"https://example.org/c{i:02d}.npy") for i in range(54)]


def test_copy_from_a_partial_mirror_is_all_or_nothing_with_an_exact_missing_list(dirs):
    """The issue's case: the mirror held 53 of 54 files, the copy stopped at the absent one and
    left 53 copies behind, and the error listed files that the mirror did hold."""
    data, mirror = dirs
    for f in MANY[:20] + MANY[21:]:
        put(mirror / "Big", f, f.path.encode())
    before = tree(mirror)
    with pytest.raises(DataUnavailableError) as err:
        resolve("Big", MANY, transport=offline)
    msg = str(err.value)
    listed = [line.split(" <- ")[0].strip() for line in msg.splitlines() if line.startswith("  ") and " <- " in line]
    assert listed == [MANY[20].path]  # exactly the one file in neither place
    assert "1 file(s) missing" in msg and "the 53 file(s) the mirror holds are copied once the rest" in msg
    assert tree(data) == {} and tree(mirror) == before
    # Once the missing file is reachable, the whole set lands at once.
    folder = resolve("Big", MANY, transport=FakeNet({MANY[20].url: b"late"}))
    assert folder == data / "Big" and len(list((folder / "train").iterdir())) == 54


def test_interrupted_copy_leaves_nothing(dirs):
    data, mirror = dirs
    put(mirror / "Toy", A, b"mirror copy")
    with pytest.raises(KeyboardInterrupt):
        resolve("Toy", [A, B], transport=FakeNet(BLOBS, fail_after=1000, exc=KeyboardInterrupt()))
    assert list(data.iterdir()) == []


DIGEST_A = hashlib.sha256(BLOBS[A.url]).hexdigest()
A_SUM = RemoteFile(A.path, A.url, sha256=DIGEST_A)


def _count_hashing(monkeypatch) -> list[Path]:
    from tgad_lite.data import checksums

    hashed: list[Path] = []
    real = checksums.sha256_of
    monkeypatch.setattr(checksums, "sha256_of", lambda p: hashed.append(Path(p)) or real(p))
    return hashed


def test_data_folder_files_are_verified_on_every_use_and_the_check_is_cached(dirs, monkeypatch):
    from tgad_lite.data import checksums

    data, _ = dirs
    path = put(data / "Toy", A_SUM, BLOBS[A.url])
    hashed = _count_hashing(monkeypatch)
    assert resolve("Toy", [A_SUM], transport=offline) == data / "Toy"
    assert resolve("Toy", [A_SUM], transport=offline) == data / "Toy"
    assert hashed == [path]  # hashed once, then recognised by path, size, mtime and ctime
    checksums.forget()  # a fresh process: the digest comes from data/.sha256-cache.json
    resolve("Toy", [A_SUM], transport=offline)
    assert hashed == [path] and (data / checksums.CACHE_NAME).is_file()

    # A same-size edit, with its mtime put back: the ctime still gives it away.
    st = path.stat()
    path.write_bytes(b"A" + BLOBS[A.url][1:])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(DataFormatError) as err:
        resolve("Toy", [A_SUM], transport=offline)
    msg = str(err.value)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    assert str(path) in msg and DIGEST_A in msg and actual in msg
    assert f"delete {path}" in msg and "restore the original" in msg
    assert path.read_bytes()[:1] == b"A"  # the file is reported, not replaced behind the user's back


def test_damaged_cache_file_is_ignored(dirs):
    from tgad_lite.data import checksums

    data, _ = dirs
    put(data / "Toy", A_SUM, BLOBS[A.url])
    (data / checksums.CACHE_NAME).write_text("{not json")
    checksums.forget()
    assert resolve("Toy", [A_SUM], transport=offline) == data / "Toy"
    assert json_files(data / checksums.CACHE_NAME) == [str((data / "Toy" / A.path).resolve())]


def json_files(path: Path) -> list[str]:
    import json

    return sorted(json.loads(path.read_text())["files"])


@pytest.mark.parametrize("complete", [True, False], ids=["complete-mirror", "partial-mirror"])
def test_damaged_mirror_file_is_refused_without_advice_to_touch_the_mirror(dirs, complete):
    data, mirror = dirs
    bad = put(mirror / "Toy", A_SUM, b"x" * len(BLOBS[A.url]))
    files = [A_SUM, B] if complete else [A_SUM]
    if complete:
        put(mirror / "Toy", B, b"fine")
    else:
        files = [A_SUM, RemoteFile("raw/c.bin", "https://example.org/c.bin")]  # forces a copy
    before = tree(mirror)
    with pytest.raises(DataFormatError) as err:
        resolve("Toy", files, transport=FakeNet({files[1].url: b"c"}))
    msg = str(err.value)
    assert str(bad) in msg and DIGEST_A in msg
    assert "read-only mirror" in msg and "point TGAD_DATA_MIRROR at an intact mirror" in msg
    assert "delete" not in msg.lower()  # never advise deleting from a read-only mirror
    assert tree(mirror) == before and tree(data) == {}


def test_bad_file_already_in_the_data_folder_is_reported_before_fetching(dirs):
    data, _ = dirs
    put(data / "Toy", A_SUM, b"y" * 10)
    net = FakeNet(BLOBS)
    with pytest.raises(DataFormatError, match="SHA-256 mismatch"):
        resolve("Toy", [A_SUM, B], transport=net)
    assert net.calls == [] and sorted(tree(data)) == ["Toy", "Toy/raw", "Toy/raw/a.bin"]


def test_unwritable_data_folder_names_the_variable_and_the_folder(dirs, monkeypatch):
    data, _ = dirs

    # Tests may run as root, for whom permission bits do not apply, so the refusal the kernel
    # gives a read-only folder is simulated where fetch asks for its staging folder.
    def refuse(**kw):
        raise PermissionError(13, "Permission denied", kw["dir"])

    monkeypatch.setattr(fetch.tempfile, "mkdtemp", refuse)
    with pytest.raises(DataUnavailableError) as err:
        resolve("Toy", [A, B], transport=FakeNet(BLOBS))
    msg = str(err.value)
    assert "TGAD_DATA_DIR" in msg and str(data / "Toy") in msg and "Permission denied" in msg
    assert "writable" in msg and not isinstance(err.value, PermissionError)
    assert list(data.iterdir()) == []  # the Toy/ folder it had created is gone again


def test_data_folder_under_a_file_is_reported_as_unwritable(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("TGAD_DATA_DIR", str(blocker / "data"))
    monkeypatch.delenv("TGAD_DATA_MIRROR", raising=False)
    with pytest.raises(DataUnavailableError, match="TGAD_DATA_DIR"):
        resolve("Toy", [A], transport=FakeNet(BLOBS))
    assert blocker.read_text() == ""
