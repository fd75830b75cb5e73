"""Protein-protein interaction graphs for inductive multi-label node classification
(Zitnik & Leskovec 2017, as used by GraphSAGE and GAT)."""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import numpy as np
from torch_geometric.datasets import PPI

from tgad_lite.data.errors import DataFormatError
from tgad_lite.data.fetch import RemoteFile, Transport, data_dir, repair_advice, resolve
from tgad_lite.data.pyg_cache import ReadOnlyRawMixin

PPI_URL = "https://data.dgl.ai/dataset/ppi.zip"
PPI_SPLITS = ("train", "val", "test")
PPI_FEATURES = 50
PPI_LABELS = 121
# PyG's raw names (torch_geometric.datasets.PPI.raw_file_names); the archive holds them at its
# top level. No published checksum exists, so the archive is checked for zip integrity and
# for these members, and the files' contents by validate_ppi_raw before PyG parses them.
PPI_RAW_NAMES = tuple(
    f"{split}_{kind}"
    for split, kind in product(("train", "valid", "test"), ("feats.npy", "graph_id.npy", "graph.json", "labels.npy"))
)
PPI_FILES = tuple(RemoteFile(f"raw/{n}", PPI_URL, member=n) for n in PPI_RAW_NAMES)


def _bad(path: Path, problem: str) -> DataFormatError:
    return DataFormatError(f"{path}: {problem}. Nothing was cached. {repair_advice(path, PPI_URL)}")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _bad(path, f"not a readable .npy array of numbers ({exc}); truncated, damaged or not an array") from None


def _check_split(raw: Path, split: str) -> None:
    feats_path = raw / f"{split}_feats.npy"
    feats = _load_npy(feats_path)
    if feats.ndim != 2 or feats.shape[1] != PPI_FEATURES or feats.dtype.kind != "f":
        raise _bad(feats_path, f"expected float features [N, {PPI_FEATURES}], got {feats.dtype} {list(feats.shape)}")
    n = feats.shape[0]
    # PyG casts to float32: a float64 value beyond 3.4e38 would become inf there.
    with np.errstate(over="ignore"):  # an overflow is what is being looked for
        bad = np.argwhere(~np.isfinite(feats.astype(np.float32)))
    if bad.size:
        r, c = (int(v) for v in bad[0])
        raise _bad(feats_path, f"value {float(feats[r, c])!r} at row {r}, column {c} is not finite in float32")

    labels_path = raw / f"{split}_labels.npy"
    labels = _load_npy(labels_path)
    if labels.shape != (n, PPI_LABELS) or labels.dtype.kind not in "biuf":
        raise _bad(
            labels_path,
            f"expected 0/1 labels [N, {PPI_LABELS}] with N = {n} (the rows of {feats_path.name}), "
            f"got {labels.dtype} {list(labels.shape)}",
        )
    if not np.isin(labels, (0, 1)).all():
        raise _bad(labels_path, f"labels must be 0 or 1, found {np.setdiff1d(labels, (0, 1))[:5].tolist()}")

    ids_path = raw / f"{split}_graph_id.npy"
    ids = _load_npy(ids_path)
    if ids.shape != (n,) or ids.dtype.kind not in "iu":
        raise _bad(ids_path, f"expected integer graph ids [N] with N = {n}, got {ids.dtype} {list(ids.shape)}")

    graph_path = raw / f"{split}_graph.json"
    try:
        with open(graph_path, encoding="utf-8") as f:
            graph = json.load(f)
        nodes, links = graph["nodes"], graph["links"]
        ends = np.array([(link["source"], link["target"]) for link in links], dtype=np.int64).reshape(-1, 2)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise _bad(
            graph_path,
            f"expected a networkx node-link JSON object with 'nodes' and 'links' (source, target) ({exc!r})",
        ) from None
    if len(nodes) != n:
        raise _bad(graph_path, f"has {len(nodes)} nodes but {feats_path.name} has {n} rows")
    if ends.size and (ends.min() < 0 or ends.max() >= n):
        node = ends.max() if ends.max() >= n else ends.min()
        raise _bad(graph_path, f"a link refers to node {node}, outside 0..{n - 1}")


def validate_ppi_raw(raw: Path) -> None:
    """Check the 12 raw PPI files in ``raw`` before PyG parses them: readable arrays, features
    ``[N, 50]`` float and finite in float32, labels ``[N, 121]`` of 0/1, graph ids ``[N]``
    integer, node-link JSON with N nodes and links inside 0..N-1. Raises DataFormatError naming
    the file, what was expected and the fix."""
    for split in ("train", "valid", "test"):
        _check_split(Path(raw), split)


class LocalPPI(ReadOnlyRawMixin, PPI):
    """``PPI`` reading raw files from a resolved (possibly read-only) folder and writing its
    processed cache under ``<root>/processed`` (rebuilt when the raw files change)."""

    def __init__(self, root: Path, raw_folder: Path, cache_root: Path, **kwargs) -> None:
        self._raw_folder = str(raw_folder)
        self._cache_root = Path(cache_root)
        super().__init__(str(root), **kwargs)

    def validate_raw(self) -> None:
        validate_ppi_raw(Path(self.raw_dir))


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
    cache is written to ``<root>/PPI/processed`` and rebuilt whenever the raw files change;
    before a build the raw files are checked (:func:`validate_ppi_raw`), so a damaged or
    malformed one raises ``DataFormatError`` naming it, and leaves no cache behind. Pass the
    folder that :func:`~tgad_lite.data.standins.write_ppi_standin` wrote into to use the small
    stand-in.
    """
    if split not in PPI_SPLITS:
        raise ValueError(f"split must be one of {PPI_SPLITS}, got {split!r}")
    base = Path(root).expanduser().resolve() if root is not None else data_dir()
    folder = resolve("PPI", PPI_FILES, root=base, transport=transport)
    return LocalPPI(base / "PPI", folder / "raw", base, split=split)
