"""Graph attention layers in three implementations, GATv2, the two-layer GAT model and the PPI model."""

from tgad_lite.gat.base import GATLayerBase, add_self_loops
from tgad_lite.gat.dense import DenseGATLayer
from tgad_lite.gat.gatv2 import GATv2Layer
from tgad_lite.gat.model import GAT, LAYERS, PyGGATLayer
from tgad_lite.gat.naive import NaiveGATLayer
from tgad_lite.gat.ppi import PPIGAT
from tgad_lite.gat.receptive_field import ReceptiveField, receptive_field
from tgad_lite.gat.sparse import SparseGATLayer, neighbourhood_softmax
from tgad_lite.gat.sparse_features import SparseFeatures, bernoulli_free_dropout

__all__ = [
    "GAT",
    "LAYERS",
    "DenseGATLayer",
    "GATLayerBase",
    "GATv2Layer",
    "NaiveGATLayer",
    "PPIGAT",
    "PyGGATLayer",
    "ReceptiveField",
    "SparseGATLayer",
    "add_self_loops",
    "neighbourhood_softmax",
    "receptive_field",
    "SparseFeatures",
    "bernoulli_free_dropout",
]
