"""Small generated data sets in the exact raw on-disk formats of the real ones.

The notebooks' smoke profile and the tests use these where the real data is too large or not
reachable. Each writer fills ``root`` the way ``data/`` is laid out and returns the data set
folder, so the normal loaders read it unchanged::

    write_ppi_standin(tmp)            # tmp/PPI/raw/...
    load_ppi("train", root=tmp)       # 20 small graphs, 50 features, 121 labels
    write_smd_standin(tmp)            # tmp/SMD/{train,test,test_label,interpretation_label}/
    load_smd("machine-1-1", root=tmp)

The contents are random but structured, so a model has something to learn: PPI labels are a
fixed function of a node's and its neighbours' features; SMD test series carry injected
anomalies on a few named culprit metrics.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from tgad_lite.data.smd import SMD_FEATURES, smd_files
from tgad_lite.data.telemanom import SPACECRAFT_FEATURES

PPI_FEATURES = 50
PPI_LABELS = 121


def _ppi_split(
    rng: np.random.Generator, n_graphs: int, nodes: int, first_graph_id: int, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
    n = n_graphs * nodes
    x = rng.normal(size=(n, PPI_FEATURES))
    links = []
    neighbour_sum = np.zeros_like(x)
    degree = np.zeros(n)
    for g in range(n_graphs):
        ids = np.arange(g * nodes, (g + 1) * nodes)
        # A ring keeps every node connected (PyG's PPI reader shifts ids by the smallest one
        # that has an edge), plus random chords for varied degrees.
        pairs = {tuple(sorted((int(a), int(b)))) for a, b in zip(ids, np.roll(ids, 1), strict=True)}
        for a, b in rng.choice(ids, size=(2 * nodes, 2)):
            if a != b:
                pairs.add((int(min(a, b)), int(max(a, b))))
        for a, b in sorted(pairs):
            links.append({"source": a, "target": b})
            neighbour_sum[a] += x[b]
            neighbour_sum[b] += x[a]
            degree[a] += 1
            degree[b] += 1
    # Labels depend on the node and its neighbourhood, so a GNN beats an MLP on them.
    h = x + neighbour_sum / degree[:, None]
    y = (h @ w > 0).astype(np.int64)
    graph = {
        "directed": False,
        "multigraph": False,
        "graph": {},
        "nodes": [{"id": i} for i in range(n)],
        "links": links,
    }
    graph_id = np.repeat(np.arange(first_graph_id, first_graph_id + n_graphs), nodes).astype(np.int64)
    return x, y, graph, graph_id


def write_ppi_standin(
    root: Path,
    *,
    graphs: tuple[int, int, int] = (20, 2, 2),
    nodes_per_graph: int = 40,
    seed: int = 0,
) -> Path:
    """Write the 12 raw PPI files (``root/PPI/raw/{train,valid,test}_{feats.npy,graph_id.npy,
    graph.json,labels.npy}``) for ``graphs`` = (train, val, test) graph counts of
    ``nodes_per_graph`` nodes each: ``feats [N, 50] float64``, ``labels [N, 121] int64``,
    ``graph_id [N]`` numbered 1.. across splits like the real files. Returns ``root/PPI``."""
    if len(graphs) != 3 or min(graphs) < 1 or nodes_per_graph < 3:
        raise ValueError("graphs needs three positive counts and nodes_per_graph at least 3")
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(PPI_FEATURES, PPI_LABELS))
    raw = Path(root) / "PPI" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    first_id = 1
    for split, n_graphs in zip(("train", "valid", "test"), graphs, strict=True):
        x, y, graph, graph_id = _ppi_split(rng, n_graphs, nodes_per_graph, first_id, w)
        first_id += n_graphs
        np.save(raw / f"{split}_feats.npy", x)
        np.save(raw / f"{split}_labels.npy", y)
        np.save(raw / f"{split}_graph_id.npy", graph_id)
        (raw / f"{split}_graph.json").write_text(json.dumps(graph), encoding="utf-8")
    return raw.parent


def _smd_series(rng: np.random.Generator, length: int, offset: int) -> np.ndarray:
    """``[length, 38]`` in [0, 1]: per-metric sinusoids with noise, like scaled server metrics."""
    t = np.arange(offset, offset + length)[:, None]
    period = rng.uniform(50, 300, size=SMD_FEATURES)
    phase = rng.uniform(0, 2 * np.pi, size=SMD_FEATURES)
    level = rng.uniform(0.2, 0.6, size=SMD_FEATURES)
    amplitude = rng.uniform(0.05, 0.2, size=SMD_FEATURES)
    series = level + amplitude * np.sin(2 * np.pi * t / period + phase)
    series += rng.normal(scale=0.02, size=series.shape)
    return np.clip(series, 0.0, 1.0)


def write_smd_standin(
    root: Path,
    machine: str = "machine-1-1",
    *,
    t_train: int = 600,
    t_test: int = 600,
    seed: int = 0,
) -> Path:
    """Write the 4 SMD text files of ``machine`` under ``root/SMD/``: ``train [t_train, 38]``,
    ``test [t_test, 38]`` (comma-separated, values in [0, 1]), ``test_label`` (one 0/1 per
    line) and ``interpretation_label`` (``start-end:f1,f2`` with inclusive 0-based rows and
    1-based metric numbers). Three anomaly segments shift 2-5 culprit metrics each.
    Returns ``root/SMD``."""
    if t_train < 10 or t_test < 60:
        raise ValueError("t_train must be >= 10 and t_test >= 60 to hold the injected anomalies")
    rng = np.random.default_rng(seed)
    # Same generator parameters for train and test: the test series continues the train one.
    state = rng.bit_generator.state
    train = _smd_series(rng, t_train, 0)
    rng.bit_generator.state = state
    test = _smd_series(rng, t_test, t_train)
    labels = np.zeros(t_test, dtype=np.int64)
    events = []
    width = max(5, t_test // 30)
    starts = np.linspace(t_test // 5, t_test - 2 * width, 3).astype(int)
    for start in starts:
        end = int(start) + int(rng.integers(width // 2, width)) - 1
        culprits = np.sort(rng.choice(SMD_FEATURES, size=int(rng.integers(2, 6)), replace=False))
        test[start : end + 1, culprits] = np.clip(test[start : end + 1, culprits] + 0.4, 0.0, 1.0)
        labels[start : end + 1] = 1
        events.append(f"{start}-{end}:{','.join(str(c + 1) for c in culprits)}")

    folder = Path(root) / "SMD"
    paths = {f.path.split("/")[0]: folder / f.path for f in smd_files(machine)}
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(paths["train"], train, fmt="%.6f", delimiter=",")
    np.savetxt(paths["test"], test, fmt="%.6f", delimiter=",")
    np.savetxt(paths["test_label"], labels, fmt="%d")
    paths["interpretation_label"].write_text("\n".join(events) + "\n", encoding="utf-8")
    return folder


def write_telemanom_standin(
    root: Path,
    spacecraft: str = "SMAP",
    channels: tuple[str, ...] = ("P-1", "A-1", "P-2"),
    *,
    n_features: int | None = None,
    t_train: int = 80,
    t_test: int = 100,
    seed: int = 0,
) -> Path:
    """Write a tiny telemanom folder ``root/<spacecraft>/`` with ``train/<chan>.npy``,
    ``test/<chan>.npy`` (float64 ``[T, n_features]``, lengths varying per channel; ``n_features``
    defaults to the spacecraft's real count, 55 or 25, the only one the loader accepts) and
    ``labeled_anomalies.csv`` listing ``channels`` in the given order, each with one or two
    inclusive anomaly ranges. Column 0 carries an obvious shift inside each range.
    Returns the spacecraft folder."""
    if n_features is None:
        n_features = SPACECRAFT_FEATURES[spacecraft]
    rng = np.random.default_rng(seed)
    folder = Path(root) / spacecraft
    (folder / "train").mkdir(parents=True, exist_ok=True)
    (folder / "test").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, chan in enumerate(channels):
        n_train, n_test = t_train + 7 * i, t_test + 11 * i
        train = rng.normal(size=(n_train, n_features))
        test = rng.normal(size=(n_test, n_features))
        ranges = [[n_test // 4, n_test // 4 + 4]] + ([[n_test - 6, n_test - 1]] if i % 2 else [])
        for start, end in ranges:
            test[start : end + 1, 0] += 5.0
        np.save(folder / "train" / f"{chan}.npy", train)
        np.save(folder / "test" / f"{chan}.npy", test)
        rows.append([chan, spacecraft, json.dumps(ranges), "[" + ", ".join(["point"] * len(ranges)) + "]", n_test])
    with open(folder / "labeled_anomalies.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["chan_id", "spacecraft", "anomaly_sequences", "class", "num_values"])
        writer.writerows(rows)
    return folder
