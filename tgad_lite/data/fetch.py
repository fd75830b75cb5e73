"""Where data sets live, and how missing files get there.

Every loader asks :func:`resolve` for a folder that holds all of its raw files. The folder is
looked up in this order:

1. ``data_dir()/<name>``: the writable download cache (``$TGAD_DATA_DIR`` or the repository's
   ``data/`` folder);
2. ``mirror_dir()/<name>``: a read-only copy of the raw files (``$TGAD_DATA_MIRROR``), never
   written to;
3. otherwise the missing files are fetched into ``data_dir()/<name>``: copied from the mirror
   when it holds some of them, else downloaded from their canonical URL (single files, or
   members of a zip archive).

Every write is atomic: a file is streamed to a temporary name in its target folder, checked
(SHA-256 and/or a validation function), then renamed into place. A failure at any point,
Ctrl-C included, leaves no partial file behind. Offline or missing data raises
:class:`DataUnavailableError`, whose message says which files are missing, where they come
from and exactly where to put them by hand.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import tgad_lite

Transport = Callable[[str], Iterable[bytes]]
"""Fetches a URL and yields its bytes in chunks. Tests pass a fake one; see :func:`url_transport`."""

DATA_DIR_ENV = "TGAD_DATA_DIR"
MIRROR_ENV = "TGAD_DATA_MIRROR"
_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


class DataUnavailableError(RuntimeError):
    """A data set's files are neither on disk nor downloadable (offline, URL gone, disabled)."""


class DataFormatError(ValueError):
    """A data file exists but is truncated or malformed; the message names the file and the fault."""


@dataclass(frozen=True)
class RemoteFile:
    """One raw file of a data set and where it comes from.

    ``path`` is relative to the data set folder (``"raw/ind.cora.x"``). ``url`` is the file's
    canonical URL or, when ``member`` is set, the URL of a zip archive and ``member`` the file's
    path inside it (an extra leading folder in the archive is tolerated: ``"train/C-1.npy"``
    also matches ``"data/train/C-1.npy"``). ``sha256`` is checked when given.
    """

    path: str
    url: str
    sha256: str | None = None
    member: str | None = None

    @property
    def source(self) -> str:
        """Human-readable origin, for error messages."""
        return f"{self.url} (zip member {self.member})" if self.member else self.url


class ReadOnlyRawMixin:
    """For PyG datasets whose raw folder may be the read-only mirror.

    Put it before the PyG class (``class X(ReadOnlyRawMixin, Planetoid)``) and set
    ``self._raw_folder`` before calling the PyG ``__init__``. ``raw_dir`` then points at the
    folder :func:`resolve` returned, while ``processed_dir`` stays under the writable root. PyG's
    own downloader must never run: files arrive only through :func:`resolve`.
    """

    _raw_folder: str

    @property
    def raw_dir(self) -> str:
        return self._raw_folder

    def download(self) -> None:
        raise DataUnavailableError(
            f"raw files missing in {self._raw_folder} although tgad_lite.data.fetch.resolve "
            "reported them complete; were they deleted while loading?"
        )


def data_dir() -> Path:
    """The writable download cache: ``$TGAD_DATA_DIR`` if set, else ``<repo>/data``."""
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return Path(tgad_lite.__file__).resolve().parents[1] / "data"


def mirror_dir() -> Path | None:
    """The read-only mirror ``$TGAD_DATA_MIRROR`` (absolute, against the cwd), or None if unset."""
    env = os.environ.get(MIRROR_ENV, "").strip()
    return Path(env).expanduser().resolve() if env else None


def url_transport(url: str, *, timeout: float = _TIMEOUT_S) -> Iterator[bytes]:
    """Default :data:`Transport`: stream ``url`` with urllib; network errors become
    :class:`DataUnavailableError`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                yield chunk
    except (urllib.error.URLError, OSError) as exc:  # URLError, HTTPError, timeouts, resets
        raise DataUnavailableError(f"could not download {url}: {exc}") from exc


def _local_transport(path: str) -> Iterator[bytes]:
    """Reads a local file (the mirror) through the same atomic write path as downloads."""
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def sha256_of(path: Path) -> str:
    """Hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(path: Path, expected: str | None, name: str) -> None:
    if expected is None:
        return
    actual = sha256_of(path)
    if actual != expected.lower():
        raise DataFormatError(
            f"checksum mismatch for {name}: expected sha256 {expected.lower()}, got {actual}; "
            "the file is truncated, corrupt or a different version. Nothing was kept."
        )


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    validate: Callable[[Path], None] | None = None,
    transport: Transport | None = None,
) -> Path:
    """Fetch ``url`` to ``dest`` atomically and return ``dest``.

    The bytes go to a temporary file in ``dest``'s folder; it is checked against ``sha256``
    (when given) and passed to ``validate`` (which raises on bad content), then renamed onto
    ``dest``. On any failure (network error mid-stream, checksum mismatch, validation error,
    KeyboardInterrupt) the temporary file is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fetch = transport or url_transport
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in fetch(url):
                out.write(chunk)
        _check_sha256(tmp, sha256, f"{dest} (from {url})")
        if validate is not None:
            validate(tmp)
        os.replace(tmp, dest)
    except BaseException:  # KeyboardInterrupt too: never leave a partial file
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _complete(folder: Path | None, files: Sequence[RemoteFile]) -> bool:
    return folder is not None and all((folder / f.path).is_file() for f in files)


def _find_member(names: Sequence[str], member: str) -> str | None:
    """The archive entry for ``member``: an exact match, or one ending in ``/member``."""
    if member in names:
        return member
    hits = [n for n in names if n.endswith("/" + member)]
    if len(hits) > 1:
        raise DataFormatError(f"zip member {member!r} is ambiguous: {hits}")
    return hits[0] if hits else None


def _zip_validator(members: Sequence[str]) -> Callable[[Path], None]:
    def validate(path: Path) -> None:
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataFormatError(f"downloaded archive is not a readable zip file: {exc}") from exc
        if bad is not None:
            raise DataFormatError(f"downloaded archive is corrupt: CRC error in member {bad!r}")
        absent = [m for m in members if _find_member(names, m) is None]
        if absent:
            raise DataFormatError(f"downloaded archive lacks expected members {absent}")

    return validate


def _fetch_archive(
    url: str, files: Sequence[RemoteFile], folder: Path, fetch: Transport
) -> None:
    """Download one zip archive and move the listed members into ``folder``.

    Everything is staged in a temporary directory inside ``folder`` (same filesystem, so the
    final renames are atomic); the archive and anything not yet moved vanish with it.
    """
    with tempfile.TemporaryDirectory(prefix=".staging.", dir=folder) as staging_name:
        staging = Path(staging_name)
        archive = download(
            url,
            staging / "archive.zip",
            validate=_zip_validator([f.member for f in files if f.member]),
            transport=fetch,
        )
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            staged = []
            for i, f in enumerate(files):
                entry = _find_member(names, f.member or "")
                tmp = staging / f"member{i}"
                with zf.open(entry) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
                _check_sha256(tmp, f.sha256, f"{folder / f.path} (member {entry} of {url})")
                staged.append((tmp, folder / f.path))
        for tmp, dest in staged:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)


def _fetch_missing(
    missing: Sequence[RemoteFile], folder: Path, mirror: Path | None, fetch: Transport
) -> None:
    by_archive: dict[str, list[RemoteFile]] = {}
    for f in missing:
        if mirror is not None and (mirror / f.path).is_file():
            # A partial mirror still saves a download; copy through the same atomic path.
            download(str(mirror / f.path), folder / f.path, sha256=f.sha256, transport=_local_transport)
        elif f.member is None:
            download(f.url, folder / f.path, sha256=f.sha256, transport=fetch)
        else:
            by_archive.setdefault(f.url, []).append(f)
    for url, members in by_archive.items():
        _fetch_archive(url, members, folder, fetch)


def _unavailable_message(
    name: str, folder: Path, mirror: Path | None, missing: Sequence[RemoteFile], reason: str
) -> str:
    mirror_line = (
        f"  2. mirror      {mirror / name}  (${MIRROR_ENV})"
        if mirror is not None
        else f"  2. mirror      (not set: ${MIRROR_ENV} is empty)"
    )
    lines = [
        f"Data set {name!r} is not available: {len(missing)} file(s) missing ({reason}).",
        "Looked in:",
        f"  1. data folder {folder}  (${DATA_DIR_ENV} or the repository's data/)",
        mirror_line,
        "Missing files (path in the data set folder <- where it comes from):",
        *(f"  {f.path} <- {f.source}" for f in missing),
        "To fix, do one of:",
        f"  - place the files by hand under {folder}/ keeping those relative paths "
        f"(e.g. {folder / missing[0].path});",
        f"  - set {MIRROR_ENV} to a folder that holds {name}/<those paths>;",
        "  - run again where the URLs above are reachable.",
        "See data/README.md for every data set's layout.",
    ]
    return "\n".join(lines)


def resolve(
    name: str,
    files: Sequence[RemoteFile],
    *,
    root: Path | None = None,
    transport: Transport | None = None,
    download_missing: bool = True,
) -> Path:
    """Return the folder that holds every file in ``files`` for data set ``name``.

    Order: ``<root or data_dir()>/name`` if complete there, else ``mirror_dir()/name`` if
    complete there, else the missing files are fetched into ``<root or data_dir()>/name``
    (files already there are kept). ``root`` replaces :func:`data_dir` for this call (a folder
    laid out like ``data/``, e.g. one holding generated stand-ins).

    Raises :class:`DataUnavailableError` when files are missing and ``download_missing`` is
    False or a download fails, and :class:`DataFormatError` when fetched bytes fail their
    checksum or archive check. A failed fetch leaves no partial file and no new empty folder.
    """
    base = Path(root).expanduser().resolve() if root is not None else data_dir()
    folder = base / name
    if _complete(folder, files):
        return folder
    mirror = mirror_dir()
    if mirror is not None and _complete(mirror / name, files):
        return mirror / name

    missing = [f for f in files if not (folder / f.path).is_file()]
    if not download_missing:
        raise DataUnavailableError(
            _unavailable_message(name, folder, mirror, missing, "downloads disabled")
        )
    # Folders this call creates are removed again if a failure leaves them empty.
    needed = {folder, *((folder / f.path).parent for f in missing)}
    created = sorted(
        {d for p in needed for d in (p, *p.parents) if not d.exists()},
        key=lambda d: len(d.parts),
    )
    for d in created:
        d.mkdir(exist_ok=True)
    try:
        _fetch_missing(missing, folder, mirror / name if mirror else None, transport or url_transport)
    except DataUnavailableError as exc:
        still = [f for f in missing if not (folder / f.path).is_file()]  # some may have arrived
        raise DataUnavailableError(
            _unavailable_message(name, folder, mirror, still, f"download failed: {exc}")
        ) from exc
    finally:
        for d in reversed(created):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    return folder
