"""SHA-256 digests of raw data files, cached so that checking them on every load stays cheap.

Loaders verify each raw file with a known digest every time they use it, from the data folder
or from the mirror, not only after a download: a file edited in place, even at the same size,
is caught at its next use. The digest of a file is cached under its resolved path together with
its size, ``st_mtime_ns`` and ``st_ctime_ns``. Any write changes the ctime, and only the kernel
sets it (unlike mtime, which ``touch -d`` or ``os.utime`` can put back), so a changed file is
always hashed again. The cache lives in memory and in ``<data folder>/.sha256-cache.json``
(:data:`CACHE_NAME`), so a fresh process re-checks Cora's 8 files with 8 ``stat`` calls.

The cache is an optimisation, never a source of errors: an unreadable, damaged or unwritable
cache file is ignored and the files are hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

CACHE_NAME = ".sha256-cache.json"
_FORMAT = 1
_CHUNK = 1 << 20

Stamp = tuple[int, int, int]
"""(size, mtime_ns, ctime_ns) of a file: a digest cached under a different stamp is stale."""

_memo: dict[str, tuple[Stamp, str]] = {}


def sha256_of(path: Path) -> str:
    """Hex SHA-256 digest of a file (always read in full; see :func:`cached_sha256`)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(path: Path) -> Stamp:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_cache(cache_dir: Path) -> dict[str, dict]:
    try:
        with open(cache_dir / CACHE_NAME, encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, ValueError):
        return {}  # absent or damaged: start afresh
    files = content.get("files") if isinstance(content, dict) and content.get("format") == _FORMAT else None
    return files if isinstance(files, dict) else {}


def _write_cache(cache_dir: Path, key: str, stamp: Stamp, digest: str) -> None:
    """Add one entry (dropping entries whose file is gone or changed) and replace the cache file
    atomically, so concurrent loaders never read half a file. Failures are ignored."""
    if not cache_dir.is_dir():
        return  # never create folders just for the cache
    files = _read_cache(cache_dir)
    files[key] = {"size": stamp[0], "mtime_ns": stamp[1], "ctime_ns": stamp[2], "sha256": digest}
    for other in list(files):
        entry = files[other]
        try:
            fresh = isinstance(entry, dict) and _stamp(Path(other)) == (
                entry.get("size"),
                entry.get("mtime_ns"),
                entry.get("ctime_ns"),
            )
        except OSError:
            fresh = False
        if not fresh:
            del files[other]
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{CACHE_NAME}.", suffix=".part", dir=cache_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"format": _FORMAT, "files": files}, f, indent=1, sort_keys=True)
        os.replace(tmp, cache_dir / CACHE_NAME)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def cached_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """SHA-256 of ``path``, hashed only when its (size, mtime, ctime) differ from the cached ones.

    ``cache_dir`` is the writable data folder whose :data:`CACHE_NAME` file keeps digests across
    processes (None: this process's memory only). The mirror's files are cached there too, by
    their resolved path, since the mirror itself is never written.
    """
    path = Path(path).resolve()
    key = str(path)
    stamp = _stamp(path)
    hit = _memo.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    if cache_dir is not None:
        entry = _read_cache(cache_dir).get(key)
        if (
            isinstance(entry, dict)
            and (entry.get("size"), entry.get("mtime_ns"), entry.get("ctime_ns")) == stamp
            and isinstance(entry.get("sha256"), str)
        ):
            _memo[key] = (stamp, entry["sha256"])
            return entry["sha256"]
    digest = sha256_of(path)
    if _stamp(path) == stamp:  # not cached when the file changed while it was being read
        _memo[key] = (stamp, digest)
        if cache_dir is not None:
            _write_cache(cache_dir, key, stamp, digest)
    return digest


def forget(path: Path | None = None) -> None:
    """Drop ``path`` (or everything) from the in-memory cache; for tests and long sessions."""
    if path is None:
        _memo.clear()
    else:
        _memo.pop(str(Path(path).resolve()), None)
