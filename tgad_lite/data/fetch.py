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

Whatever folder is chosen, every file with a known SHA-256 is verified before it is used (the
digest is cached by path, size, mtime and ctime; see :mod:`tgad_lite.data.checksums`), so a
file edited in place is refused at its next use, not only right after a download.

Fetching is all-or-nothing: the missing files are staged in a temporary folder inside the data
set folder, each checked (SHA-256 and/or archive integrity), and renamed into place only once
all of them arrived. A failure at any point, Ctrl-C included, leaves nothing behind: no partial
file, no half-copied set, no new empty folder. Offline or missing data raises
:class:`DataUnavailableError`, whose message lists exactly the files that could not be
obtained, where they come from and where to put them by hand.
"""

from __future__ import annotations

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
from tgad_lite.data.checksums import cached_sha256, sha256_of
from tgad_lite.data.errors import DataFormatError, DataUnavailableError

Transport = Callable[[str], Iterable[bytes]]
"""Fetches a URL and yields its bytes in chunks. Tests pass a fake one; see :func:`url_transport`."""

DATA_DIR_ENV = "TGAD_DATA_DIR"
MIRROR_ENV = "TGAD_DATA_MIRROR"
_CHUNK = 1 << 20
_TIMEOUT_S = 60.0

__all__ = [
    "DATA_DIR_ENV",
    "MIRROR_ENV",
    "DataFormatError",
    "DataUnavailableError",
    "RemoteFile",
    "Transport",
    "data_dir",
    "download",
    "in_mirror",
    "mirror_dir",
    "repair_advice",
    "resolve",
    "sha256_of",
    "unwritable_error",
    "url_transport",
]


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


def in_mirror(path: Path) -> bool:
    """Whether ``path`` lies inside the read-only mirror ``$TGAD_DATA_MIRROR``."""
    mirror = mirror_dir()
    return mirror is not None and Path(path).resolve().is_relative_to(mirror)


def repair_advice(path: Path, source: str | None = None) -> str:
    """How to recover from a bad raw file, depending on where it lives.

    A file in the read-only mirror is never to be deleted or edited from here: the advice is to
    point ``$TGAD_DATA_MIRROR`` elsewhere. A file in the data folder can be restored, or deleted
    so the next load fetches it again. ``source`` (a URL) is named when known.
    """
    origin = f" from {source}" if source else ""
    if in_mirror(path):
        return (
            f"This is the read-only mirror's copy (${MIRROR_ENV} = {mirror_dir()}); tgad_lite never writes "
            f"there. Fix: point {MIRROR_ENV} at an intact mirror, or unset it so the file is downloaded"
            f"{origin} into the data folder {data_dir()}; and tell whoever maintains the mirror."
        )
    return (
        f"Fix: restore the original file, or delete {path} and load again to fetch it anew "
        f"(from ${MIRROR_ENV} when it holds the file, else{origin or ' from its URL'})."
    )


def unwritable_error(folder: Path, exc: OSError, what: str) -> DataUnavailableError:
    """The error for a data folder that cannot be written (read-only, wrong owner, full disk)."""
    return DataUnavailableError(
        f"cannot write {what} into {folder}: {exc.strerror or exc} ({type(exc).__name__}). That folder "
        f"is under the data folder: ${DATA_DIR_ENV} (now {os.environ.get(DATA_DIR_ENV, '') or 'unset'}), "
        "the repository's data/ when unset, or the root= you passed. Fix: set "
        f"{DATA_DIR_ENV} to a writable folder (or pass a writable root=), or make {folder} writable. "
        "Nothing was written."
    )


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


def _check_sha256(path: Path, expected: str | None, name: str, advice: str) -> None:
    if expected is None:
        return
    actual = sha256_of(path)
    if actual != expected.lower():
        raise DataFormatError(
            f"checksum mismatch for {name}: expected sha256 {expected.lower()}, got {actual}; "
            f"the file is truncated, corrupt or a different version. Nothing was kept. {advice}"
        )


def _fetch_file(
    src: str,
    dest: Path,
    fetch: Transport,
    *,
    sha256: str | None,
    validate: Callable[[Path], None] | None,
    name: str,
    advice: str,
) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in fetch(src):
                out.write(chunk)
        _check_sha256(tmp, sha256, name, advice)
        if validate is not None:
            validate(tmp)
        os.replace(tmp, dest)
    except BaseException:  # KeyboardInterrupt too: never leave a partial file
        tmp.unlink(missing_ok=True)
        raise
    return dest


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
    return _fetch_file(
        url,
        dest,
        transport or url_transport,
        sha256=sha256,
        validate=validate,
        name=f"{dest} (from {url})",
        advice="Try again; if it persists, the file at that URL has changed.",
    )


def _complete(folder: Path | None, files: Sequence[RemoteFile]) -> bool:
    return folder is not None and all((folder / f.path).is_file() for f in files)


def _verify(folder: Path, files: Sequence[RemoteFile], cache_dir: Path) -> None:
    """Check every file with a known digest; the first mismatch raises DataFormatError."""
    for f in files:
        if f.sha256 is None:
            continue
        path = folder / f.path
        actual = cached_sha256(path, cache_dir)
        if actual != f.sha256.lower():
            raise DataFormatError(
                f"{path}: SHA-256 mismatch: expected {f.sha256.lower()}, got {actual}. The file is "
                "damaged, truncated, edited or a different version, so it was not loaded. " + repair_advice(path, f.url)
            )


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


def _fetch_archive(url: str, files: Sequence[RemoteFile], staging: Path, shown: Path, fetch: Transport) -> None:
    """Download one zip archive and extract the listed members to ``staging/<path>``.

    ``shown`` is the data set folder the members are headed for, named in error messages.
    """
    archive = _fetch_file(
        url,
        staging / ".archive.zip",
        fetch,
        sha256=None,
        validate=_zip_validator([f.member for f in files if f.member]),
        name=url,
        advice="",
    )
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for f in files:
                entry = _find_member(names, f.member or "")
                dest = staging / f.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(entry) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
                _check_sha256(dest, f.sha256, f"{shown / f.path} (member {entry} of {url})", "Try again later.")
    finally:
        archive.unlink(missing_ok=True)


def _stage_missing(
    missing: Sequence[RemoteFile], staging: Path, folder: Path, mirror: Path | None, fetch: Transport
) -> None:
    """Bring every missing file into ``staging``: mirror copies first (local and cheap), then
    downloads. Raises on the first failure; the caller discards ``staging``."""
    from_mirror = [f for f in missing if mirror is not None and (mirror / f.path).is_file()]
    for f in from_mirror:
        # A partial mirror still saves a download; copy through the same checked path.
        _fetch_file(
            str(mirror / f.path),
            staging / f.path,
            _local_transport,
            sha256=f.sha256,
            validate=None,
            name=f"{mirror / f.path} (copying it to {folder / f.path})",
            advice=repair_advice(mirror / f.path, f.url),
        )
    by_archive: dict[str, list[RemoteFile]] = {}
    for f in missing:
        if f in from_mirror:
            continue
        if f.member is None:
            _fetch_file(
                f.url,
                staging / f.path,
                fetch,
                sha256=f.sha256,
                validate=None,
                name=f"{folder / f.path} (from {f.url})",
                advice="Try again; if it persists, the file at that URL has changed.",
            )
        else:
            by_archive.setdefault(f.url, []).append(f)
    for url, members in by_archive.items():
        _fetch_archive(url, members, staging, folder, fetch)


def _move_into_place(missing: Sequence[RemoteFile], staging: Path, folder: Path) -> None:
    """Rename staged files to their final names; undo the renames if one fails."""
    moved: list[Path] = []
    made: list[Path] = []
    try:
        for f in missing:
            dest = folder / f.path
            made += [d for d in (*reversed(dest.parent.parents), dest.parent) if not d.exists()]
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / f.path, dest)
            moved.append(dest)
    except BaseException:
        for dest in moved:  # these did not exist before this call
            dest.unlink(missing_ok=True)
        _remove_empty(made)
        raise


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
        "Missing files, in neither place (path in the data set folder <- where it comes from):",
        *(f"  {f.path} <- {f.source}" for f in missing),
        "To fix, do one of:",
        f"  - place the files by hand under {folder}/ keeping those relative paths (e.g. {folder / missing[0].path});",
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
    """Return the folder that holds every file in ``files`` for data set ``name``, verified.

    Order: ``<root or data_dir()>/name`` if complete there, else ``mirror_dir()/name`` if
    complete there, else the missing files are fetched into ``<root or data_dir()>/name``
    (files already there are kept). ``root`` replaces :func:`data_dir` for this call (a folder
    laid out like ``data/``, e.g. one holding generated stand-ins). Files with a known SHA-256
    are checked in whichever folder is returned (cached in ``<root>/.sha256-cache.json``).

    Raises :class:`DataUnavailableError` when files are missing and ``download_missing`` is
    False or a download fails (listing exactly the files that are in neither the data folder
    nor the mirror), or when the data folder cannot be written (naming ``$TGAD_DATA_DIR``); and
    :class:`DataFormatError` when a file fails its checksum or archive check. A failed fetch
    leaves nothing behind: no partial file, no partial set of files, no new empty folder.
    """
    base = Path(root).expanduser().resolve() if root is not None else data_dir()
    folder = base / name
    if _complete(folder, files):
        _verify(folder, files, base)
        return folder
    mirror = mirror_dir()
    mirror_folder = mirror / name if mirror is not None else None
    if _complete(mirror_folder, files):
        _verify(mirror_folder, files, base)
        return mirror_folder

    present = [f for f in files if (folder / f.path).is_file()]
    _verify(folder, present, base)  # a bad file already here is reported before fetching the rest
    missing = [f for f in files if f not in present]
    unobtainable = [f for f in missing if mirror_folder is None or not (mirror_folder / f.path).is_file()]
    if not download_missing and unobtainable:  # copying what the mirror holds is not a download
        raise DataUnavailableError(_unavailable_message(name, folder, mirror, unobtainable, "downloads disabled"))
    created = [d for d in (*reversed(folder.parents), folder) if not d.exists()]
    try:
        for d in created:
            d.mkdir(exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging.", dir=folder))
    except OSError as exc:
        _remove_empty(created)
        raise unwritable_error(folder, exc, f"the {name} files") from exc
    try:
        _stage_missing(missing, staging, folder, mirror_folder, transport or url_transport)
        _move_into_place(missing, staging, folder)
    except DataUnavailableError as exc:
        copied = len(missing) - len(unobtainable)
        note = f"; the {copied} file(s) the mirror holds are copied once the rest can be fetched" if copied else ""
        raise DataUnavailableError(
            _unavailable_message(name, folder, mirror, unobtainable, f"{exc}; nothing was kept{note}")
        ) from exc
    except OSError as exc:
        if exc.filename and Path(exc.filename).resolve().is_relative_to(folder):
            raise unwritable_error(folder, exc, f"the {name} files") from exc
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
    _verify(folder, files, base)  # primes the digest cache for the next load
    return folder


def _remove_empty(created: Sequence[Path]) -> None:
    """Remove folders this call created, deepest first, where a failure left them empty."""
    for d in reversed(created):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
