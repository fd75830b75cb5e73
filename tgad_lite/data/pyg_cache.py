"""PyTorch Geometric datasets on resolved raw folders, with a processed cache that follows them.

PyG keeps a ``processed/`` cache beside its ``raw/`` folder and rebuilds it only when the cache
files are missing: restoring or replacing a raw file would leave the old graph in use.
:class:`ReadOnlyRawMixin` fixes that and the rest of what the loaders need from PyG:

- ``raw_dir`` is the folder :func:`~tgad_lite.data.fetch.resolve` returned (possibly the
  read-only mirror); ``processed_dir`` stays under the writable data folder; PyG's own
  downloader never runs.
- The cache is stamped with a fingerprint of the raw files' SHA-256 digests (cached by path,
  size, mtime and ctime, so cheap) and the PyG version, in ``processed/raw_fingerprint.json``.
  A missing or different stamp (raw files changed, restored, or a cache from an older version)
  rebuilds it.
- The cache is built in a temporary folder beside ``processed/`` and renamed into place only
  when complete, so a failure (bad raw file, Ctrl-C, full disk) leaves nothing behind, not even
  an empty ``processed/``. Errors while parsing raw files become
  :class:`~tgad_lite.data.errors.DataFormatError` naming the folder and the fix.
- PyG's "Processing..." / "Done!" lines on stderr are switched off.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tgad_lite.data.checksums import cached_sha256
from tgad_lite.data.errors import DataFormatError, DataUnavailableError
from tgad_lite.data.fetch import repair_advice, unwritable_error

STAMP_NAME = "raw_fingerprint.json"


def raw_fingerprint(raw_paths: list[str], cache_dir: Path | None) -> dict:
    """What the processed cache was built from: each raw file's digest, and the PyG version
    (whose processed format may change between releases)."""
    pyg = sys.modules.get("torch_geometric")
    return {
        "raw": {Path(p).name: cached_sha256(Path(p), cache_dir) for p in sorted(raw_paths)},
        "torch_geometric": getattr(pyg, "__version__", "unknown"),
    }


def _read_stamp(processed: Path) -> dict | None:
    try:
        return json.loads((processed / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _remove_empty(created: list[Path]) -> None:
    for d in reversed(created):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()


class ReadOnlyRawMixin:
    """For PyG datasets whose raw folder may be the read-only mirror.

    Put it before the PyG class (``class X(ReadOnlyRawMixin, Planetoid)``) and set
    ``self._raw_folder`` (and ``self._cache_root``, the writable data folder that keeps the
    digest cache) before calling the PyG ``__init__``. Subclasses may override
    :meth:`validate_raw` to check raw files before PyG parses them.
    """

    _raw_folder: str
    _cache_root: Path | None = None
    _building_in: str | None = None  # set while the cache is built in a temporary folder

    @property
    def raw_dir(self) -> str:
        return self._raw_folder

    @property
    def processed_dir(self) -> str:
        return self._building_in or super().processed_dir

    # PyG prints "Processing..." / "Done!" to stderr when ``log`` is true, and Planetoid and PPI
    # pass no way to turn it off; pinning it here keeps notebook outputs clean.
    @property
    def log(self) -> bool:
        return False

    @log.setter
    def log(self, value: bool) -> None:
        pass

    def download(self) -> None:
        raise DataUnavailableError(
            f"raw files missing in {self._raw_folder} although tgad_lite.data.fetch.resolve "
            "reported them complete; were they deleted while loading?"
        )

    def validate_raw(self) -> None:
        """Raise DataFormatError for a raw file PyG would misread; runs only before a rebuild."""

    def _process(self) -> None:
        final = Path(super().processed_dir)
        fingerprint = raw_fingerprint(self.raw_paths, self._cache_root)
        complete = all(Path(path).is_file() for path in self.processed_paths)  # under final: not building
        if complete and _read_stamp(final) == fingerprint:
            return
        self.validate_raw()
        created = [d for d in (*reversed(final.parent.parents), final.parent) if not d.exists()]
        try:
            for d in created:
                d.mkdir(exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".building", dir=final.parent))
            staging.chmod(0o755)  # mkdtemp's 0700 would make the renamed processed/ private
        except OSError as exc:
            _remove_empty(created)
            raise unwritable_error(final.parent, exc, "the processed cache") from exc
        try:
            self._building_in = str(staging)
            try:
                super()._process()
            except (DataFormatError, DataUnavailableError):
                raise
            except OSError as exc:
                if exc.filename and Path(exc.filename).resolve().is_relative_to(staging):
                    raise unwritable_error(final.parent, exc, "the processed cache") from exc
                raise self._format_error(exc) from exc
            except Exception as exc:  # pickle, JSON, networkx, shape errors from PyG's parser
                raise self._format_error(exc) from exc
            finally:
                self._building_in = None
            (staging / STAMP_NAME).write_text(json.dumps(fingerprint, indent=1), encoding="utf-8")
            self._swap_in(staging, final, fingerprint)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            _remove_empty(created)

    def load(self, path: str, *args, **kwargs) -> None:
        """PyG's loader for a processed file, with an unreadable file named and the fix given
        (the cache lives in the writable data folder and is rebuilt from the raw files)."""
        try:
            super().load(path, *args, **kwargs)
        except Exception as exc:
            raise DataFormatError(
                f"{path}: the processed cache cannot be read ({type(exc).__name__}: {exc}). Fix: delete "
                f"{Path(path).parent} and load again; it is rebuilt from the raw files in {self._raw_folder}."
            ) from exc

    def _format_error(self, exc: BaseException) -> DataFormatError:
        return DataFormatError(
            f"{self._raw_folder}: PyTorch Geometric could not build {type(self).__name__.removeprefix('Local')}'s "
            f"processed cache from these raw files ({type(exc).__name__}: {exc}); one of them is damaged or "
            f"in another format. Nothing was cached. {repair_advice(Path(self._raw_folder))}"
        )

    @staticmethod
    def _swap_in(staging: Path, final: Path, fingerprint: dict) -> None:
        """Replace ``final`` by the freshly built ``staging`` (two renames on one filesystem)."""
        if _read_stamp(final) == fingerprint:
            # A parallel load (e.g. notebooks run side by side) built the same cache meanwhile:
            # keep it rather than pull it away from under a reader.
            return
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / final.name)
        try:
            os.rename(staging, final)
        except OSError:
            # Another process put a cache in place meanwhile: keep it if it was built from the same files.
            if _read_stamp(final) != fingerprint:
                raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
