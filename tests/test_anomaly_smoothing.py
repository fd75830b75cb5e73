"""EWMA score smoothing: hand-computed values, pandas' definition, causality and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tgad_lite.anomaly.smoothing import ewma


def test_ewma_on_hand_computed_values():
    # span 3: w = 1 - 2/4 = 0.5.  t0: 4;  t1: (0 + 0.5*4) / 1.5 = 4/3;  t2: (2 + 0.5*0 + 0.25*4) / 1.75 = 12/7
    assert np.allclose(ewma([4.0, 0.0, 2.0], 3), [4.0, 4.0 / 3.0, 12.0 / 7.0], rtol=0, atol=1e-15)


@pytest.mark.parametrize("span", [2, 10, 105, 7.5])
def test_ewma_equals_pandas_adjusted_mean(span):
    x = np.random.default_rng(0).gamma(2.0, size=500)
    assert np.allclose(ewma(x, span), pd.Series(x).ewm(span=span).mean().to_numpy(), rtol=1e-12, atol=0)


def test_ewma_is_causal_and_span_one_is_the_identity():
    x = np.random.default_rng(1).normal(size=200)
    y = x.copy()
    y[150:] += 100.0  # a change at step 150 cannot move any earlier smoothed value
    assert np.array_equal(ewma(x, 20)[:150], ewma(y, 20)[:150])
    out = ewma(x, 1)
    assert np.array_equal(out, x) and out is not x


@pytest.mark.parametrize(
    ("scores", "span", "message"),
    [
        ([1.0, np.nan], 10, "non-finite"),
        (np.zeros((3, 2)), 10, r"must be 1-D \[T\]"),
        ([1.0, 2.0], 0.5, "span must be a finite number >= 1"),
        ([1.0, 2.0], True, "span must be"),
        ([1.0, 2.0], float("inf"), "span must be"),
    ],
)
def test_ewma_refuses_bad_input(scores, span, message):
    with pytest.raises(ValueError, match=message):
        ewma(scores, span)
