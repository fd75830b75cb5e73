"""Percentile bootstrap intervals over units, single and paired (issue 10, item 6)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tgad_lite.metrics.bootstrap import bootstrap_ci, paired_bootstrap


def test_matches_scipy_percentile_bootstrap_on_a_hand_case():
    values = np.array([0.0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1])  # 15 hits of 20
    ours = bootstrap_ci(values, n_resamples=20000, seed=1)
    ref = stats.bootstrap(
        (values,), np.mean, n_resamples=20000, confidence_level=0.95, method="percentile", rng=np.random.default_rng(2)
    ).confidence_interval
    assert ours.estimate == 0.75
    # different random draws: the two Monte Carlo quantiles agree to about one hit in 20 (0.05)
    assert ours.low == pytest.approx(ref.low, abs=0.051) and ours.high == pytest.approx(ref.high, abs=0.051)
    # and both sit near the normal-theory interval 0.75 +- 1.96 sqrt(0.75 * 0.25 / 20) = [0.56, 0.94]
    assert 0.5 <= ours.low <= 0.6 and 0.9 <= ours.high <= 1.0


def test_intervals_cover_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    trials, covered = 300, 0
    for _ in range(trials):
        sample = rng.exponential(scale=2.0, size=40)  # true mean 2, skewed
        ci = bootstrap_ci(sample, n_resamples=400, seed=int(rng.integers(2**31)))
        covered += ci.low <= 2.0 <= ci.high
    # percentile intervals under-cover a little at n = 40 on skewed data; 300 trials give +- 0.025 noise
    assert 0.88 <= covered / trials <= 0.99


def test_estimate_is_the_statistic_and_any_statistic_works():
    values = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    med = bootstrap_ci(values, statistic=np.median, n_resamples=300, seed=3)
    assert med.estimate == 3.5 and med.low <= 3.5 <= med.high
    # a statistic without an axis argument is applied row by row: the same resamples, the same interval
    looped = bootstrap_ci(values, statistic=lambda v: float(np.median(v)), n_resamples=300, seed=3)
    assert looped == med
    assert bootstrap_ci(values, seed=3, n_resamples=300) == bootstrap_ci(values, seed=3, n_resamples=300)
    assert bootstrap_ci(values, seed=3, n_resamples=300) != bootstrap_ci(values, seed=4, n_resamples=300)
    assert bootstrap_ci([7.0, 7.0, 7.0]) == (7.0, 7.0, 7.0)  # no variation in the data, none in the interval


def test_paired_bootstrap_cancels_what_the_units_share():
    rng = np.random.default_rng(5)
    difficulty = rng.normal(scale=3.0, size=60)  # per-incident difficulty, shared by both methods
    b = difficulty + rng.normal(scale=0.2, size=60)
    a = b + 0.3
    paired = paired_bootstrap(a, b, n_resamples=2000, seed=0)
    assert paired.difference == pytest.approx(0.3)
    assert paired.low == pytest.approx(0.3) and paired.high == pytest.approx(0.3)  # a - b is 0.3 on every unit
    assert paired.frac_a_le_b == 0.0
    # unpaired, the two intervals overlap widely: only pairing shows that a is better
    ca, cb = bootstrap_ci(a, seed=0), bootstrap_ci(b, seed=1)
    assert ca.low < cb.high
    # a noisy difference: the interval straddles zero and about half the resamples have a <= b
    c = b + rng.normal(scale=1.0, size=60)
    noisy = paired_bootstrap(c - np.mean(c - b), b, n_resamples=2000, seed=0)
    assert noisy.low < 0 < noisy.high and 0.3 < noisy.frac_a_le_b < 0.7
    same = paired_bootstrap(b, b, n_resamples=100)
    assert same.difference == 0 and same.frac_a_le_b == 1.0  # ties count as a <= b


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: bootstrap_ci([]), "empty"),
        (lambda: bootstrap_ci([1.0, np.nan]), "non-finite"),
        (lambda: bootstrap_ci([[1.0, 2.0]]), "1-D"),
        (lambda: bootstrap_ci(["a", "b"]), "numbers"),
        (lambda: bootstrap_ci([1.0], level=1.0), "level"),
        (lambda: bootstrap_ci([1.0], n_resamples=0), "n_resamples"),
        (lambda: bootstrap_ci([1.0], seed=-1), "seed"),
        (lambda: paired_bootstrap([1.0, 2.0], [1.0]), "same units"),
        (lambda: paired_bootstrap([], []), "empty"),
        (lambda: bootstrap_ci([1.0, 2.0], statistic=lambda v: np.nan), "non-finite value on a resample"),
    ],
)
def test_refuses_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
