"""Streaming monitor: risk per service, cascade score and alarms one telemetry step at a time.

``monitor`` (:class:`Monitor`, :class:`StepResult`), ``normaliser`` (:class:`OnlineNormaliser`:
the model's robust training normaliser moved by Welford statistics), ``state`` (state files,
fingerprints, saved models), ``cli`` (``python -m tgad_lite.monitor replay ...``), ``drift``
(:class:`DriftDetector`: KS on the inputs, change detectors on the score streams), ``retrain``
(fine-tuning with replay and the forgetting check), ``versions`` (:class:`ModelRegistry`).
"""

from tgad_lite.monitor.drift import DriftDetector, DriftEvent, DriftStatus
from tgad_lite.monitor.monitor import Monitor, StepResult, replay_threshold
from tgad_lite.monitor.normaliser import OnlineNormaliser, WelfordStats
from tgad_lite.monitor.retrain import RetrainDecision, forgetting_check, retrain_decision, retrain_with_replay
from tgad_lite.monitor.state import (
    MonitorModel,
    StateError,
    graph_fingerprint,
    load_monitor_model,
    load_state,
    model_fingerprint,
    save_monitor_model,
    save_state,
)
from tgad_lite.monitor.versions import ModelRegistry, ModelVersionError

__all__ = [
    "DriftDetector",
    "DriftEvent",
    "DriftStatus",
    "ModelRegistry",
    "ModelVersionError",
    "Monitor",
    "MonitorModel",
    "OnlineNormaliser",
    "RetrainDecision",
    "StateError",
    "StepResult",
    "WelfordStats",
    "forgetting_check",
    "graph_fingerprint",
    "load_monitor_model",
    "load_state",
    "model_fingerprint",
    "replay_threshold",
    "retrain_decision",
    "retrain_with_replay",
    "save_monitor_model",
    "save_state",
]
