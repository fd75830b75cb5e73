"""Shared argument checks (tgad_lite.checks): what passes, what is refused and what the message says."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tgad_lite.checks import int_at_least, real_in


def test_int_at_least_accepts_integers_and_refuses_the_rest():
    assert int_at_least("k", 3, 1) == 3 and type(int_at_least("k", np.int64(5), 0)) is int
    for bad in (0, True, 2.0, "3", None):
        with pytest.raises(ValueError, match=r"k must be an int >= 1, got"):
            int_at_least("k", bad, 1)


def test_real_in_open_and_closed_ends():
    assert real_in("p", 0.0, 0.0, 1.0) == 0.0 and real_in("p", 1, 0.0, 1.0) == 1.0
    with pytest.raises(ValueError, match=r"p must be a number in \(0.0, 1.0\], got 0.0"):
        real_in("p", 0.0, 0.0, 1.0, low_open=True)
    with pytest.raises(ValueError, match=r"in \[0.0, 1.0\), got 1.0"):
        real_in("p", 1.0, 0.0, 1.0, high_open=True)
    for bad in (math.nan, math.inf, True, "0.5", None):
        with pytest.raises(ValueError, match="p must be a number"):
            real_in("p", bad, 0.0, 1.0)
