"""Metrics on arrays (never on models): attention statistics, and later detection scores.

Metrics never import :mod:`tgad_lite.viz`; event-based detection metrics get their anomaly
ranges from :mod:`tgad_lite.intervals`, as the plots do.
"""

from tgad_lite.metrics.attention import attention_entropy, entropy_ratio, uniform_entropy

__all__ = ["attention_entropy", "entropy_ratio", "uniform_entropy"]
