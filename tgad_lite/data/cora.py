"""Cora citation graph with the public Planetoid split (Yang et al. 2016)."""

from __future__ import annotations

from pathlib import Path

import torch_geometric.transforms as T
from torch_geometric.datasets import Planetoid

from tgad_lite.data.fetch import RemoteFile, Transport, data_dir, resolve
from tgad_lite.data.pyg_cache import ReadOnlyRawMixin

# Topic of each label id 0..6, in Planetoid's order (Yang et al. 2016): neither alphabetical nor
# the order in which topics first appear in cora.content. The class sizes pin it down.
CORA_CLASSES = (
    "Theory",
    "Reinforcement_Learning",
    "Genetic_Algorithms",
    "Neural_Networks",
    "Probabilistic_Methods",
    "Case_Based",
    "Rule_Learning",
)
CORA_CLASS_SIZES = (351, 217, 418, 818, 426, 298, 180)

CORA_URL = "https://github.com/kimiyoung/planetoid/raw/master/data"
CORA_SHA256 = {
    "allx": "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543",
    "ally": "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71",
    "graph": "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d",
    "test.index": "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875",
    "tx": "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a",
    "ty": "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad",
    "x": "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab",
    "y": "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1",
}
CORA_FILES = tuple(
    RemoteFile(f"raw/ind.cora.{ext}", f"{CORA_URL}/ind.cora.{ext}", digest) for ext, digest in CORA_SHA256.items()
)


class LocalPlanetoid(ReadOnlyRawMixin, Planetoid):
    """``Planetoid`` reading raw files from a resolved (possibly read-only) folder and writing
    its processed cache under ``<root>/<name>/processed`` (rebuilt when the raw files change)."""

    def __init__(self, root: Path, name: str, raw_folder: Path, **kwargs) -> None:
        self._raw_folder = str(raw_folder)
        self._cache_root = Path(root)
        super().__init__(str(root), name, **kwargs)


def load_cora(
    root: Path | None = None,
    *,
    normalize_features: bool = True,
    transport: Transport | None = None,
) -> Planetoid:
    """Load Cora: one graph, public split.

    ``dataset[0]`` has ``x [2708, 1433]`` (row-normalised bag of words when
    ``normalize_features``, else 0/1), ``y [2708]`` (7 classes), ``edge_index [2, 10556]``
    (both directions of every undirected citation) and boolean ``train_mask`` / ``val_mask`` /
    ``test_mask [2708]`` with 140 / 500 / 1000 nodes.

    ``root`` is a folder laid out like ``data/`` (default :func:`~tgad_lite.data.fetch.data_dir`).
    Raw files ``Cora/raw/ind.cora.*`` come from ``root``, the mirror or the Planetoid GitHub
    repository. Every file's SHA-256 is checked on every load (cached by path, size, mtime and
    ctime), wherever it lives: a damaged or edited file raises ``DataFormatError`` naming it,
    both digests and the fix, before PyG unpickles anything. The processed cache is always
    written to ``<root>/Cora/processed``, never into the mirror, and is rebuilt whenever the raw
    files differ from those it was built from.
    """
    base = Path(root).expanduser().resolve() if root is not None else data_dir()
    folder = resolve("Cora", CORA_FILES, root=base, transport=transport)
    transform = T.NormalizeFeatures() if normalize_features else None
    return LocalPlanetoid(base, "Cora", folder / "raw", split="public", transform=transform)
