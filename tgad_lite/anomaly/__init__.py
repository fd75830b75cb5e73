"""Anomaly scoring: thresholds that turn scores into alarms, and simple baseline detectors.

Import from the submodules (``tgad_lite.anomaly.threshold``, ``tgad_lite.anomaly.baselines``).
"""
