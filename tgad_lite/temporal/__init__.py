"""Temporal graph attention on service telemetry: per-service risk from windows on a dependency graph."""

from tgad_lite.temporal.model import (
    DIRECTION_CHOICES,
    RECURRENT_CHOICES,
    TemporalGAT,
    TemporalGATOutput,
)

__all__ = ["DIRECTION_CHOICES", "RECURRENT_CHOICES", "TemporalGAT", "TemporalGATOutput"]
