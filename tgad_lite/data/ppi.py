"""Protein-protein interaction graphs for inductive multi-label node classification
(Zitnik & Leskovec 2017, as used by GraphSAGE and GAT)."""

from __future__ import annotations

from itertools import product
from pathlib import Path

from torch_geometric.datasets import PPI

from tgad_lite.data.fetch import ReadOnlyRawMixin, RemoteFile, Transport, data_dir, resolve

PPI_URL = "https://data.dgl.ai/dataset/ppi.zip"
PPI_SPLITS = ("train", "val", "test")
# PyG's raw names (torch_geometric.datasets.PPI.raw_file_names); the archive holds them at its
# top level. No published checksum exists, so the archive is checked for zip integrity and
# for these members instead.
PPI_RAW_NAMES = tuple(
    f"{split}_{kind}"
    for split, kind in product(("train", "valid", "test"), ("feats.npy", "graph_id.npy", "graph.json", "labels.npy"))
)
PPI_FILES = tuple(RemoteFile(f"raw/{n}", PPI_URL, member=n) for n in PPI_RAW_NAMES)


class LocalPPI(ReadOnlyRawMixin, PPI):
    """``PPI`` reading raw files from a resolved (possibly read-only) folder and writing its
    processed cache under ``<root>/processed``."""

    def __init__(self, root: Path, raw_folder: Path, **kwargs) -> None:
        self._raw_folder = str(raw_folder)
        super().__init__(str(root), **kwargs)


def load_ppi(
    split: str = "train",
    root: Path | None = None,
    *,
    transport: Transport | None = None,
) -> PPI:
    """Load one split of PPI: 20 train, 2 validation, 2 test graphs (inductive: test graphs
    are never seen in training).

    Each graph ``data`` has ``x [N, 50]`` float features, ``y [N, 121]`` float 0/1 labels
    (multi-label) and ``edge_index [2, E]`` (both directions, no self loops); ``N`` is about
    2,245 nodes per graph on average. ``split`` is ``"train"``, ``"val"`` or ``"test"``.

    ``root`` is a folder laid out like ``data/`` (default :func:`~tgad_lite.data.fetch.data_dir`);
    raw files ``PPI/raw/*`` come from there, the mirror, or the DGL archive. The processed
    cache is written to ``<root>/PPI/processed``. Pass the folder that
    :func:`~tgad_lite.data.standins.write_ppi_standin` wrote into to use the small stand-in.
    """
    if split not in PPI_SPLITS:
        raise ValueError(f"split must be one of {PPI_SPLITS}, got {split!r}")
    base = Path(root).expanduser().resolve() if root is not None else data_dir()
    folder = resolve("PPI", PPI_FILES, root=base, transport=transport)
    return LocalPPI(base / "PPI", folder / "raw", split=split)
