"""Thresholds (tgad_lite.anomaly.threshold): POT on known tails, the shape-0 likelihood's sign,
SPOT/DSPOT streaming, Hundman's dynamic threshold with pruning, percentile, fixed-ratio and oracle thresholds."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from tgad_lite.anomaly.threshold import (
    DSPOT,
    SPOT,
    ThresholdWarning,
    best_f1_threshold,
    dynamic_threshold,
    exponential_log_likelihood,
    fit_gpd,
    fixed_ratio_threshold,
    gpd_log_likelihood,
    percentile_threshold,
    pot_threshold,
)

# --------------------------------------------------------------------------------------------
# POT on tails whose quantiles are known in closed form

N_KNOWN = 1_000_000  # 20k peaks at level 0.98: the q = 1e-4 estimate's spread is a few percent


def _pareto3(seed: int) -> tuple[np.ndarray, callable]:
    # Pareto(b=3, x_m=1): P(X > x) = x^-3, so the (1 - q) quantile is q^(-1/3).
    x = stats.pareto(b=3).rvs(N_KNOWN, random_state=np.random.default_rng(seed))
    return x, lambda q: q ** (-1 / 3)


def _exp1(seed: int) -> tuple[np.ndarray, callable]:
    # Exp(1): P(X > x) = e^-x, so the (1 - q) quantile is -log q.
    return np.random.default_rng(seed).exponential(1.0, N_KNOWN), lambda q: -math.log(q)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("make", [_pareto3, _exp1], ids=["pareto3", "exp1"])
def test_pot_recovers_known_tail_quantile(make, seed):
    x, truth = make(seed)
    for q in (1e-3, 1e-4):
        with warnings.catch_warnings():
            warnings.simplefilter("error", ThresholdWarning)  # a fallback here would be a failure
            res = pot_threshold(x, level=0.98, q=q)
        assert res.threshold == pytest.approx(truth(q), rel=0.10), (q, res)
        assert res.num_peaks == pytest.approx(0.02 * N_KNOWN, rel=0.01) and res.n == N_KNOWN
    # The tail model is the right one: shape 1/3 for Pareto(3), 0 for Exp(1).
    expected_shape = 1 / 3 if make is _pareto3 else 0.0
    assert res.shape == pytest.approx(expected_shape, abs=0.05)


def test_pot_result_describes_the_fit():
    x, _ = _pareto3(0)
    res = pot_threshold(x[:200_000], level=0.98, q=1e-3)
    assert res.method == "gpd" and res.warnings == ()
    assert res.init_threshold == pytest.approx(np.quantile(x[:200_000], 0.98))
    assert res.level == 0.98 and res.q == 1e-3
    # The fitted tail reproduces its own definition: P(score > threshold) = q, P(score > t) = N_t / n.
    assert res.tail_probability([res.threshold])[0] == pytest.approx(1e-3, rel=1e-9)
    assert res.tail_probability([res.init_threshold])[0] == pytest.approx(res.num_peaks / res.n)
    assert np.isnan(res.tail_probability([res.init_threshold - 1])[0])
    assert res.log_likelihood == pytest.approx(
        gpd_log_likelihood(x[:200_000][x[:200_000] > res.init_threshold] - res.init_threshold, res.shape, res.scale)
    )


# --------------------------------------------------------------------------------------------
# the shape-0 log-likelihood and its sign


def test_exponential_log_likelihood_hand_computed():
    y = np.array([1.0, 2.0, 3.0])
    # -N log(sigma) - sum(y) / sigma
    assert exponential_log_likelihood(y, 2.0) == pytest.approx(-3 * math.log(2.0) - 6.0 / 2.0)
    # at the MLE sigma = mean = 2 it is -N (1 + log mean): the same number here
    assert exponential_log_likelihood(y) == pytest.approx(-3 * (1 + math.log(2.0)))
    # ... and it agrees with scipy's density, and is the GPD's shape -> 0 limit
    assert exponential_log_likelihood(y, 1.5) == pytest.approx(stats.expon(scale=1.5).logpdf(y).sum())
    assert gpd_log_likelihood(y, 1e-9, 1.5) == pytest.approx(exponential_log_likelihood(y, 1.5), rel=1e-6)
    assert gpd_log_likelihood(y, 0.4, 1.5) == pytest.approx(stats.genpareto(0.4, scale=1.5).logpdf(y).sum())
    assert gpd_log_likelihood(y, -0.5, 1.0) == -math.inf  # y = 2, 3 lie beyond the endpoint sigma / 0.5 = 2


def test_shape0_sign_picks_the_right_tail_model():
    # Excesses of Pareto(3) over a high threshold are GPD with shape 1/3: heavier than exponential.
    x = stats.pareto(b=3).rvs(100_000, random_state=np.random.default_rng(7))
    t = np.quantile(x, 0.98)
    y = x[x > t] - t
    c, _, s = stats.genpareto.fit(y, floc=0)
    ll_gpd = gpd_log_likelihood(y, c, s)
    ll_exp = exponential_log_likelihood(y)
    assert ll_exp < 0 and ll_gpd < 0  # log-densities of continuous data with scale > 1
    assert ll_gpd > ll_exp  # correct sign: the heavy tail wins
    # Documentation of the shared SPOT code's bug: it returns +N (1 + log mean) for shape 0. With
    # mean excess > 1/e that is positive, beats every (negative) GPD log-likelihood, and the
    # exponential tail is chosen -- whose 1e-3 quantile is far below the truth (q^(-1/3) = 10).
    wrong_ll_exp = -ll_exp
    assert y.mean() > 1 / math.e and wrong_ll_exp > ll_gpd
    r = 1e-3 * x.size / y.size
    exp_quantile = t - y.mean() * math.log(r)
    gpd_quantile = t + s / c * (r ** (-c) - 1)
    assert abs(gpd_quantile - 10.0) < abs(exp_quantile - 10.0)
    assert exp_quantile < 0.9 * 10.0


def test_exponential_data_is_not_pushed_to_a_heavy_tail():
    # On Exp(1) excesses the GPD gains almost nothing over the exponential (nested models, shape ~ 0).
    y = np.random.default_rng(3).exponential(2.0, 20_000)
    c, _, s = stats.genpareto.fit(y, floc=0)
    assert gpd_log_likelihood(y, c, s) - exponential_log_likelihood(y) < 5.0
    assert abs(c) < 0.03


def _gpd_samples() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    out = []
    for shape in (-0.45, -0.2, 0.0, 0.15, 0.4, 0.8):
        for n in (12, 60, 400):
            out.append(stats.genpareto(shape, scale=rng.uniform(0.05, 20.0)).rvs(n, random_state=rng))
    out.append(np.abs(rng.standard_t(2, 300)))  # heavy, not GPD
    out.append(rng.uniform(0.0, 1.0, 200))  # bounded: shape -1 is the truth, the fit stays in xi > -1
    return out


@pytest.mark.parametrize("i", range(20))
def test_fit_gpd_is_at_least_as_likely_as_scipy(i):
    y = _gpd_samples()[i]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a notebook's output must stay clean: no optimiser chatter
        c, s = fit_gpd(y)
    ours = gpd_log_likelihood(y, c, s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c_sp, _, s_sp = stats.genpareto.fit(y, floc=0)
    theirs = gpd_log_likelihood(y, c_sp, s_sp) if c_sp > -1 else -math.inf
    assert ours >= theirs - 1e-7 * abs(theirs)
    assert ours >= exponential_log_likelihood(y) - 1e-9  # never below the nested shape-0 model
    assert c > -1 and s > 0


def test_fit_gpd_on_bounded_tails_raises_no_optimiser_warnings():
    # Uniform excesses (shape -1, the edge of the searched region) sent the bounded refinement into
    # inf - inf: scipy's RuntimeWarning then leaked into notebook 05's output. The fit stays quiet.
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(40):
            y = rng.uniform(0.0, 1.0, int(rng.integers(50, 300)))
            c, s = fit_gpd(y)
            assert -1 < c < 0 and s > 0


def test_fit_gpd_profile_formula_and_recovery_on_a_large_sample():
    # The one-variable profile likelihood: at x = xi / sigma with xi = mean(log(1 + x y)) it equals the
    # two-parameter likelihood, so maximising it over x maximises the GPD likelihood.
    y = stats.genpareto(0.25, scale=2.0).rvs(200_000, random_state=np.random.default_rng(5))
    c, s = fit_gpd(y)
    assert c == pytest.approx(0.25, abs=0.01) and s == pytest.approx(2.0, rel=0.02)
    x = c / s
    assert c == pytest.approx(np.log1p(x * y).mean(), rel=1e-12)
    # a perturbed (xi, sigma) is less likely: the fit is a maximum
    best = gpd_log_likelihood(y, c, s)
    for dc, ds in ((0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01)):
        assert gpd_log_likelihood(y, c + dc, s * (1 + ds)) < best


def test_fit_gpd_exponential_data_and_bad_input():
    c, s = fit_gpd(np.random.default_rng(3).exponential(2.0, 20_000))
    assert abs(c) < 0.03 and s == pytest.approx(2.0, rel=0.03)
    with pytest.raises(ValueError, match="excesses must be >= 0"):
        fit_gpd([1.0, -0.5, 2.0])
    with pytest.raises(ValueError, match="all excesses are 0"):
        fit_gpd([0.0, 0.0, 0.0])


# --------------------------------------------------------------------------------------------
# guards


def test_too_few_peaks_warns_and_falls_back_to_empirical():
    x = np.arange(100, dtype=float)  # level 0.98 leaves 2 peaks
    with pytest.warns(ThresholdWarning, match=r"only 2 score\(s\) above .*min_peaks=10.*empirical"):
        res = pot_threshold(x, level=0.98, q=1e-3)
    assert res.method == "empirical" and res.num_peaks == 2
    assert res.threshold == 99.0  # q n = 0.1 < 1: the largest score, no extrapolation
    assert np.isnan(res.shape) and len(res.warnings) == 1


def test_constant_scores_warn_and_threshold_at_the_value():
    with pytest.warns(ThresholdWarning, match="only 0 score"):
        res = pot_threshold(np.full(500, 3.0), level=0.9, q=1e-3)
    assert res.threshold == 3.0 and res.num_peaks == 0  # nothing above what calibration saw


def test_equal_excesses_warn():
    x = np.concatenate([np.linspace(0, 1, 900), np.full(100, 5.0)])  # a discrete top: 100 peaks of 4.0
    with pytest.warns(ThresholdWarning, match="excesses over .* are equal"):
        res = pot_threshold(x, level=0.9, q=1e-3)
    assert res.method == "empirical" and res.threshold == 5.0


def test_bounded_tail_shape_below_min_shape_warns_and_uses_exponential():
    # Uniform scores: the excesses are uniform, GPD shape -1 (irregular likelihood).
    x = np.random.default_rng(0).uniform(size=20_000)
    with pytest.warns(ThresholdWarning, match=r"shape xi=.* < min_shape=-0.5.*exponential"):
        res = pot_threshold(x, level=0.98, q=1e-4)
    assert res.method == "exponential" and res.shape == 0.0
    y = x[x > res.init_threshold] - res.init_threshold
    assert res.scale == pytest.approx(y.mean())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_are_refused(bad):
    x = np.random.default_rng(0).exponential(size=1000)
    x[17] = bad
    with pytest.raises(ValueError, match="non-finite value.*index 17"):
        pot_threshold(x)
    with pytest.raises(ValueError, match="non-finite"):
        SPOT().fit(x)
    with pytest.raises(ValueError, match="non-finite"):
        dynamic_threshold(x)
    with pytest.raises(ValueError, match="non-finite"):
        percentile_threshold(x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"q": 0.05}, r"q=0.05 must be in \(0, 1 - level\)"), ({"level": 1.0}, "level must be in"), ({"q": 0}, "q=0")],
)
def test_bad_q_or_level_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pot_threshold(np.arange(1000.0), **kwargs)
    with pytest.raises(ValueError, match=match):
        SPOT(**kwargs)


def test_2d_scores_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"1-D \[T\].*max\(axis=1\)"):
        pot_threshold(np.zeros((100, 3)))


# --------------------------------------------------------------------------------------------
# streaming


def test_spot_threshold_after_fit_equals_batch_pot():
    x = np.random.default_rng(1).standard_t(df=4, size=20_000)
    batch = pot_threshold(x, level=0.98, q=1e-3)
    spot = SPOT(q=1e-3, level=0.98).fit(x)
    assert spot.threshold == batch.threshold
    assert spot.init_threshold == batch.init_threshold and spot.num_peaks == batch.num_peaks
    assert spot.result.shape == batch.shape and spot.n == batch.n


def test_spot_update_learns_from_normal_scores_not_from_alarms():
    rng = np.random.default_rng(2)
    spot = SPOT(q=1e-3, level=0.98).fit(rng.exponential(size=5000))
    peaks, n, thr = spot.num_peaks, spot.n, spot.threshold
    assert spot.update(thr + 100.0) is True  # an alarm: state unchanged
    assert (spot.num_peaks, spot.n, spot.threshold) == (peaks, n, thr)
    assert spot.update(0.0) is False  # normal, below t: n grows, no refit
    assert (spot.num_peaks, spot.n) == (peaks, n + 1)
    assert spot.update((spot.init_threshold + thr) / 2) is False  # a new peak: refit
    assert spot.num_peaks == peaks + 1 and spot.threshold != thr
    alarms, thresholds = spot.run(rng.exponential(size=2000))
    assert alarms.dtype == bool and thresholds.shape == (2000,)
    assert alarms.mean() < 0.01  # same distribution, risk 1e-3


def test_spot_state_dict_continues_exactly_and_refuses_other_settings():
    rng = np.random.default_rng(4)
    calib, stream = rng.standard_t(df=4, size=3000), rng.standard_t(df=4, size=1500)
    whole = SPOT(q=1e-3, level=0.97).fit(calib)
    a1, t1 = whole.run(stream)
    first = SPOT(q=1e-3, level=0.97).fit(calib)
    first.run(stream[:700])
    state = first.state_dict()
    assert state["peaks"].dtype == np.float64 and isinstance(state["result"], dict)
    resumed = SPOT(q=1e-3, level=0.97)
    resumed.load_state_dict(state)
    a2, t2 = resumed.run(stream[700:])
    assert np.array_equal(a1[700:], a2) and np.array_equal(t1[700:], t2)
    assert resumed.num_peaks == whole.num_peaks and resumed.n == whole.n
    with pytest.raises(ValueError, match=r"\(q, level, min_peaks, min_shape\)"):
        SPOT(q=1e-2, level=0.97).load_state_dict(state)
    with pytest.raises(ValueError, match="not of a DSPOT"):
        DSPOT(q=1e-3, level=0.97).load_state_dict(state)
    # DSPOT carries its moving-mean window too
    d_whole = DSPOT(q=1e-3, level=0.97, depth=5).fit(calib)
    d_alarms, _ = d_whole.run(stream)
    d_first = DSPOT(q=1e-3, level=0.97, depth=5).fit(calib)
    d_first.run(stream[:700])
    d_resumed = DSPOT(q=1e-3, level=0.97, depth=5)
    d_resumed.load_state_dict(d_first.state_dict())
    assert np.array_equal(d_resumed.run(stream[700:])[0], d_alarms[700:])
    with pytest.raises(ValueError, match="depth=5, this DSPOT has depth=6"):
        DSPOT(q=1e-3, level=0.97, depth=6).load_state_dict(d_first.state_dict())


def test_spot_refuses_use_before_fit_and_bad_scores():
    with pytest.raises(RuntimeError, match=r"call \.fit"):
        SPOT().update(1.0)
    spot = SPOT(q=1e-3).fit(np.random.default_rng(0).exponential(size=2000))
    with pytest.raises(ValueError, match="not finite"):
        spot.update(float("nan"))


def test_dspot_follows_a_level_shift_without_alarming_forever():
    rng = np.random.default_rng(4)
    calib = rng.normal(size=2000)
    shifted = rng.normal(size=600) + 3.0  # a step of 3 sigma, smaller than the relative threshold
    depth = 20
    dspot = DSPOT(q=1e-3, level=0.98, depth=depth).fit(calib)
    alarms, thresholds = dspot.run(shifted)
    # Alarms only while the moving mean catches up (within `depth` steps of the shift), then none.
    assert alarms.any() and np.flatnonzero(alarms).max() < depth
    assert not alarms[depth:].any()
    assert dspot.moving_mean == pytest.approx(3.0, abs=0.7)
    assert thresholds[-1] > thresholds[0] + 2.0  # the absolute threshold moved up with the level
    assert dspot.threshold == pytest.approx(dspot.relative_threshold + dspot.moving_mean)
    # For contrast, a threshold fixed at calibration would keep flagging a large share of the new level.
    fixed = pot_threshold(calib, level=0.98, q=1e-3).threshold
    assert (shifted[depth:] > fixed).mean() > 0.2


def test_dspot_fit_is_pot_on_scores_relative_to_the_previous_window():
    x = np.random.default_rng(5).normal(size=4000)
    depth = 7
    rel = np.array([x[i] - x[i - depth : i].mean() for i in range(depth, x.size)])
    dspot = DSPOT(q=1e-3, level=0.98, depth=depth).fit(x)
    # rel=1e-6: the likelihood is flat at its optimum, so ulp-level differences in `rel` move the fit ~1e-9
    assert dspot.relative_threshold == pytest.approx(pot_threshold(rel, level=0.98, q=1e-3).threshold, rel=1e-6)
    assert dspot.moving_mean == pytest.approx(x[-depth:].mean())
    with pytest.raises(ValueError, match="depth must be a positive int"):
        DSPOT(depth=0)
    with pytest.raises(ValueError, match="at least 8"):
        DSPOT(depth=depth).fit(x[:depth])


# --------------------------------------------------------------------------------------------
# Hundman et al.'s dynamic threshold


def _noise(t: int, seed: int = 0) -> np.ndarray:
    return np.abs(np.random.default_rng(seed).normal(0.0, 0.1, t))


def test_dynamic_threshold_finds_an_injected_spike_segment():
    e = _noise(1000)
    e[500:510] += 3.0
    res = dynamic_threshold(e, span=1)  # span=1: no smoothing, so the segment is exact
    assert res.segments == [(500, 509)] and res.pruned == []
    assert res.labels.sum() == 10 and res.labels[500:510].all()
    assert res.z is not None and res.threshold == pytest.approx(res.smoothed.mean() + res.z * res.smoothed.std())
    assert ((res.smoothed > res.threshold) == res.labels.astype(bool)).all()


def _two_events(normal_max: float) -> np.ndarray:
    # Flat errors 0.05; a clear event (5 steps at 1.0), a long marginal one (30 steps at 0.8), and
    # one normal spike of `normal_max`, below the chosen threshold (z = 2.5 or 3 here, ~0.68-0.79).
    e = np.full(400, 0.05)
    e[50:55] = 1.0
    e[300:330] = 0.8
    e[200] = normal_max
    return e


def test_dynamic_threshold_pruning_removes_a_marginal_segment():
    # Sorted sequence maxima 1.0, 0.8, then the largest normal error 0.75: percentage decreases
    # (1.0 - 0.8) / 1.0 = 0.2 >= 0.13 (keep the clear event) and (0.8 - 0.75) / 0.8 = 0.0625 < 0.13
    # (the marginal event barely stands out from normal data: reclassified as normal).
    res = dynamic_threshold(_two_events(0.75), span=1, p=0.13)
    assert 0.75 < res.threshold < 0.8  # both events are above the threshold before pruning ...
    assert res.segments == [(50, 54)] and res.pruned == [(300, 329)]  # ... and pruning drops one
    assert res.labels.sum() == 5
    # p = 0 prunes nothing; the threshold does not depend on p
    res0 = dynamic_threshold(_two_events(0.75), span=1, p=0.0)
    assert res0.segments == [(50, 54), (300, 329)] and res0.pruned == [] and res0.threshold == res.threshold
    # With the largest normal error at 0.6 the decrease is (0.8 - 0.6) / 0.8 = 0.25 >= 0.13: kept.
    kept = dynamic_threshold(_two_events(0.6), span=1, p=0.13)
    assert kept.segments == [(50, 54), (300, 329)] and kept.pruned == []


def test_dynamic_threshold_smoothing_matches_pandas_ewm():
    pd = pytest.importorskip("pandas")
    e = _noise(300, seed=3)
    res = dynamic_threshold(e, span=20)
    np.testing.assert_allclose(res.smoothed, pd.Series(e).ewm(span=20).mean().to_numpy(), rtol=1e-10)


def test_dynamic_threshold_flat_errors_flag_nothing_and_bad_input_is_refused():
    res = dynamic_threshold(np.full(100, 0.2), span=1)
    assert res.segments == [] and res.z is None and res.labels.sum() == 0
    with pytest.raises(ValueError, match="errors must be >= 0"):
        dynamic_threshold(np.array([0.1, -0.2, 0.3]))
    with pytest.raises(ValueError, match="p .* must be in"):
        dynamic_threshold(_noise(50), p=1.5)


# --------------------------------------------------------------------------------------------
# percentile and oracle


def test_percentile_threshold_hand_computed():
    assert percentile_threshold(np.arange(101.0), pct=99) == 99.0
    assert percentile_threshold([1.0, 2.0, 3.0], pct=50) == 2.0
    with pytest.raises(ValueError, match="pct must be"):
        percentile_threshold([1.0], pct=120)
    with pytest.raises(ValueError, match="pct must be"):
        percentile_threshold([1.0], pct="99")
    # a numpy float32 pct (95 is exact in float32) gives the float64 percentile, 18.05, not one computed
    # in float32 (18.049999237...)
    assert percentile_threshold(np.arange(20.0), pct=np.float32(95)) == percentile_threshold(np.arange(20.0), pct=95)


def test_fixed_ratio_threshold_hand_computed():
    # 0..19 together; the 95th percentile by linear interpolation: rank 0.95 * 19 = 18.05 -> 18.05.
    thr = fixed_ratio_threshold(np.arange(10.0), np.arange(10.0, 20.0), ratio_pct=5)
    assert thr == pytest.approx(18.05)
    # numpy numbers are numbers: the same threshold from np.int64 / np.float32 ratios
    assert fixed_ratio_threshold(np.arange(10.0), np.arange(10.0, 20.0), ratio_pct=np.int64(5)) == thr
    assert fixed_ratio_threshold(np.arange(10.0), np.arange(10.0, 20.0), ratio_pct=np.float32(5)) == thr
    assert np.flatnonzero(np.arange(10.0, 20.0) > thr).tolist() == [9]  # 1 alarm of 20 steps: 5 %
    # The reference and test parts enter alike: only the pooled values matter.
    assert fixed_ratio_threshold(np.arange(10.0, 20.0), np.arange(10.0), ratio_pct=5) == thr


def test_fixed_ratio_threshold_holds_its_rate_when_the_test_scores_shift():
    rng = np.random.default_rng(0)
    reference, test = rng.normal(0, 1, 20_000), rng.normal(3, 1, 20_000)  # every test score shifted up by 3 sd
    # A percentile of the reference alone alarms on most of the shifted test series ...
    assert np.mean(test > percentile_threshold(reference, pct=99)) > 0.6
    # ... the pooled percentile alarms on 1 % of all steps, however far the test part moved.
    thr = fixed_ratio_threshold(reference, test, ratio_pct=1)
    assert np.mean(np.concatenate([reference, test]) > thr) == pytest.approx(0.01, abs=1e-4)


def test_fixed_ratio_threshold_refuses_bad_input():
    with pytest.raises(ValueError, match="ratio_pct must be a percentage in"):
        fixed_ratio_threshold([1.0, 2.0], [3.0], ratio_pct=0)
    with pytest.raises(ValueError, match="ratio_pct must be a percentage in"):
        fixed_ratio_threshold([1.0, 2.0], [3.0], ratio_pct=100)
    with pytest.raises(ValueError, match="ratio_pct must be a percentage in"):
        fixed_ratio_threshold([1.0, 2.0], [3.0], ratio_pct=float("nan"))
    with pytest.raises(ValueError, match="ratio_pct must be a percentage in"):
        fixed_ratio_threshold([1.0, 2.0], [3.0], ratio_pct="1")
    with pytest.raises(ValueError, match="test_scores holds 1 non-finite"):
        fixed_ratio_threshold([1.0, 2.0], [3.0, np.inf])
    with pytest.raises(ValueError, match="reference_scores has 0 values"):
        fixed_ratio_threshold([], [3.0])


def test_best_f1_threshold_hand_computed():
    # thresholds (score >= s): 0.8 -> P 1, R .5, F1 .667; 0.4 -> P .5, R .5; 0.35 -> P 2/3, R 1, F1 .8;
    # 0.1 -> P .5, R 1, F1 .667. Best: flag {0.35, 0.4, 0.8}.
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    best = best_f1_threshold(scores, labels)
    assert best.f1 == pytest.approx(0.8) and best.precision == pytest.approx(2 / 3) and best.recall == 1.0
    assert best.threshold == pytest.approx(0.225)  # halfway between 0.1 and 0.35
    np.testing.assert_array_equal(scores > best.threshold, [False, True, True, True])


def test_best_f1_threshold_ties_and_flag_everything():
    # Tied scores cannot be split: flagging all three (two anomalous) is best; the threshold is just
    # below the lowest score so `score > threshold` flags it too.
    best = best_f1_threshold([0.5, 0.5, 0.5], [1, 0, 1])
    assert best.f1 == pytest.approx(0.8) and (np.array([0.5]) > best.threshold).all()
    with pytest.raises(ValueError, match="no anomaly"):
        best_f1_threshold([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="2 time steps but the values have 3"):
        best_f1_threshold([0.1, 0.2, 0.3], [0, 1])
