"""Metrics on arrays (never on models): attention statistics and anomaly-detection scores.

Metrics never import :mod:`tgad_lite.viz`; event-based detection metrics get their anomaly
ranges from :mod:`tgad_lite.intervals`, as the plots do. :func:`evaluate` scores one detector on
one series as one row with every detection metric (:mod:`tgad_lite.metrics.detection`).
"""

from tgad_lite.metrics.attention import attention_entropy, entropy_ratio, uniform_entropy
from tgad_lite.metrics.bootstrap import BootstrapCI, PairedBootstrap, bootstrap_ci, paired_bootstrap
from tgad_lite.metrics.detection import (
    EVALUATE_KEYS,
    PRF,
    BestF1,
    alarms_at,
    best_f1,
    best_point_adjusted_f1,
    composite_f1,
    culprits_per_point,
    detection_delays,
    evaluate,
    event_recall,
    false_alarm_events,
    hit_rate,
    pa_k_auc,
    pa_k_curve,
    point_adjust,
    point_adjusted_f1,
    pr_auc,
    precision_recall_f1,
    roc_auc,
)
from tgad_lite.metrics.rootcause import ac_at_k, avg_at_k, rootcause_report

__all__ = [
    "EVALUATE_KEYS",
    "PRF",
    "BestF1",
    "BootstrapCI",
    "PairedBootstrap",
    "ac_at_k",
    "avg_at_k",
    "bootstrap_ci",
    "paired_bootstrap",
    "rootcause_report",
    "alarms_at",
    "attention_entropy",
    "best_f1",
    "best_point_adjusted_f1",
    "composite_f1",
    "culprits_per_point",
    "detection_delays",
    "entropy_ratio",
    "evaluate",
    "event_recall",
    "false_alarm_events",
    "hit_rate",
    "pa_k_auc",
    "pa_k_curve",
    "point_adjust",
    "point_adjusted_f1",
    "pr_auc",
    "precision_recall_f1",
    "roc_auc",
    "uniform_entropy",
]
