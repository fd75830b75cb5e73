"""Metrics on arrays (never on models): attention statistics, and later detection scores."""

from tgad_lite.metrics.attention import attention_entropy, uniform_entropy

__all__ = ["attention_entropy", "uniform_entropy"]
