"""A short GAT training on real Cora, shared by the CPU test and its CUDA twin."""

from __future__ import annotations

import torch

from tgad_lite.data import load_cora
from tgad_lite.gat import GAT, SparseFeatures, receptive_field
from tgad_lite.repro import seed_everything
from tgad_lite.train import train_node_classifier


def train_cora_briefly(device: torch.device, epochs: int = 60):
    """``(data, x, model, result)`` after ``epochs`` epochs of the paper's GAT on ``device`` (seed 0).

    Reads Cora through the data layer (``TGAD_DATA_DIR`` / ``TGAD_DATA_MIRROR`` as the caller set them).
    Chance is 1/7 (14 %) and the majority class 32 %; 60 epochs reach about 75-80 % test accuracy.
    """
    data = load_cora()[0]
    seed_everything(0)
    data = data.to(device)
    x = SparseFeatures(data.x)
    rf = receptive_field(data.edge_index, data.train_mask, 2, data.num_nodes)
    model = GAT(data.num_features, 7, impl="sparse").to(device)
    result = train_node_classifier(
        model,
        x,
        data.edge_index,
        data.y,
        data.train_mask,
        data.val_mask,
        data.test_mask,
        max_epochs=epochs,
        patience=epochs,
        train_graph=rf,
        progress=False,
    )
    return data, x, model, result
