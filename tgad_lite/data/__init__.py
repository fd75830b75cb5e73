"""Data sets behind the notebooks: where files live, how they are fetched, and loaders.

Resolution order for every data set: ``data/`` (or ``$TGAD_DATA_DIR``), then the read-only
mirror ``$TGAD_DATA_MIRROR``, then an all-or-nothing fetch into ``data/``; see
:mod:`tgad_lite.data.fetch` and ``data/README.md``. Known SHA-256 digests are checked on every
load (:mod:`tgad_lite.data.checksums`), PyG's processed caches follow their raw files
(:mod:`tgad_lite.data.pyg_cache`), and a damaged or malformed file raises
:class:`DataFormatError` naming it and the fix. Generated stand-ins in the same formats are in
:mod:`tgad_lite.data.standins`.

``load_cora`` and ``load_ppi`` import torch_geometric (several seconds), so they are loaded on
first use; importing this package stays cheap and has no side effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tgad_lite.data.fetch import (
    DataFormatError,
    DataUnavailableError,
    RemoteFile,
    Transport,
    data_dir,
    download,
    mirror_dir,
    resolve,
)
from tgad_lite.data.smd import SMD_MACHINES, SMDInterpretation, SMDMachine, load_smd
from tgad_lite.data.standins import write_ppi_standin, write_smd_standin, write_telemanom_standin
from tgad_lite.data.telemanom import TelemanomData, load_telemanom

if TYPE_CHECKING:
    from tgad_lite.data.cora import load_cora
    from tgad_lite.data.ppi import load_ppi

_LAZY = {"load_cora": "tgad_lite.data.cora", "load_ppi": "tgad_lite.data.ppi"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DataFormatError",
    "DataUnavailableError",
    "RemoteFile",
    "SMD_MACHINES",
    "SMDInterpretation",
    "SMDMachine",
    "TelemanomData",
    "Transport",
    "data_dir",
    "download",
    "load_cora",
    "load_ppi",
    "load_smd",
    "load_telemanom",
    "mirror_dir",
    "resolve",
    "write_ppi_standin",
    "write_smd_standin",
    "write_telemanom_standin",
]
