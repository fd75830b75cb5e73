"""MTAD-GAT (Zhao et al. 2020): complete-graph attention layers, the network and its estimator."""

from tgad_lite.mtad.estimator import MTADGAT, TrainingDivergedError, sliding_windows
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
    "MTADGAT",
    "TrainingDivergedError",
    "sliding_windows",
    "CompleteGraphAttention",
    "FeatureAttention",
    "MTADGATModel",
    "TimeAttention",
    "gaussian_nll",
    "reconstruction_probability",
]
