"""Score smoothing: an exponentially weighted moving average of a detector's scores over time.

A forecaster's error spikes where a level shift starts and falls back once its forecast has caught
up, while the labelled anomaly goes on; Hundman et al. (KDD 2018, telemanom) smooth prediction
errors with an EWMA before thresholding for that reason. The average is causal (step ``t`` uses
steps ``<= t`` only), so the same smoothing runs online, one step at a time.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def ewma(scores: Any, span: float) -> np.ndarray:
    """``scores [T]`` -> their EWMA ``[T]``, pandas' ``Series.ewm(span=span).mean()`` (``adjust=True``).

    Step ``t`` is ``sum_k w^k s_{t-k} / sum_k w^k`` over ``k = 0..t``, with ``w = 1 - 2 / (span + 1)``:
    the early steps are averages over the steps seen so far, not biased towards 0. ``span=1`` returns
    the scores unchanged (as float64). 105 is telemanom's (70 x 30 x 0.05).
    """
    from tgad_lite.anomaly.threshold import _scores_1d

    if isinstance(span, bool) or not isinstance(span, numbers.Real) or not span >= 1 or not np.isfinite(span):
        raise ValueError(f"span must be a finite number >= 1 (EWMA span in steps; 1 = no smoothing), got {span!r}")
    x = _scores_1d(scores, "scores")
    if span == 1:
        return x.copy()
    from scipy.signal import lfilter

    decay = 1.0 - 2.0 / (float(span) + 1.0)
    num = lfilter([1.0], [1.0, -decay], x)
    den = lfilter([1.0], [1.0, -decay], np.ones_like(x))
    return num / den
