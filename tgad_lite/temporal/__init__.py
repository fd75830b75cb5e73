"""Temporal graph attention on service telemetry: per-service risk from windows on a dependency graph.

``model`` (:class:`TemporalGAT`; ``graph=False`` is the no-graph model), ``train`` (the training
recipe, the ``ServiceRiskModel`` adapter, unseen-topology data), ``rootcause`` (root-cause
rankings from the model's risk and attention).
"""

from tgad_lite.temporal.model import (
    DIRECTION_CHOICES,
    RECURRENT_CHOICES,
    TemporalGAT,
    TemporalGATOutput,
)
from tgad_lite.temporal.rootcause import (
    MODEL_RANKERS,
    RootCauseEvidence,
    attention_flow,
    incident_evidence,
    model_rootcause,
    rank_average,
    rank_by_score,
    rank_downstream,
)
from tgad_lite.temporal.train import (
    GraphWindows,
    TemporalRiskModel,
    TrainResult,
    graph_windows,
    predict_risk,
    simulate_topologies,
    train_risk_model,
)

__all__ = [
    "DIRECTION_CHOICES",
    "MODEL_RANKERS",
    "RECURRENT_CHOICES",
    "GraphWindows",
    "RootCauseEvidence",
    "TemporalGAT",
    "TemporalGATOutput",
    "TemporalRiskModel",
    "TrainResult",
    "attention_flow",
    "graph_windows",
    "incident_evidence",
    "model_rootcause",
    "predict_risk",
    "rank_average",
    "rank_by_score",
    "rank_downstream",
    "simulate_topologies",
    "train_risk_model",
]
