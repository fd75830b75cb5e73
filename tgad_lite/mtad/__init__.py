"""MTAD-GAT (Zhao et al. 2020): complete-graph attention layers and the network."""

from tgad_lite.mtad.layers import (
    AGGREGATE_CHOICES,
    GAT_CHOICES,
    CompleteGraphAttention,
    FeatureAttention,
    TimeAttention,
)
from tgad_lite.mtad.model import MODE_CHOICES, MTADGATModel, gaussian_nll, reconstruction_probability

__all__ = [
    "AGGREGATE_CHOICES",
    "GAT_CHOICES",
    "MODE_CHOICES",
    "CompleteGraphAttention",
    "FeatureAttention",
    "MTADGATModel",
    "TimeAttention",
    "gaussian_nll",
    "reconstruction_probability",
]
