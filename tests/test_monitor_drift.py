"""Drift detection (issue 11, item 3): the KS statistic and p-value against scipy and by hand, Page-Hinkley
against river and by hand, the DriftDetector on constructed streams, its saved state, and a tiny run of
benchmarks/drift_alarms.py."""

from __future__ import annotations

import copy
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import false_discovery_control, ks_2samp

from tgad_lite.monitor.drift import (
    DISTRIBUTION,
    KOLMOGOROV_MEDIAN,
    SCORE,
    DriftDetector,
    DriftStatus,
    PageHinkley,
    ks_inflation,
    ks_pvalue,
    ks_statistic,
    replay_drift,
)

METRICS = ("cpu", "latency_ms")
# A small detector: periods of 20 steps, a 2-period reference, a 1-period recent window.
SMALL = {"period": 20, "reference": 40, "recent": 20, "every": 5, "persistence": 2, "inflation": 1.0}


# ----------------------------------------------------------------------------- the KS statistic and p-value


def test_ks_statistic_by_hand():
    # ref {1,2,3,4}, recent {3,4,5,6}: F_ref - F_rec is 0.25, 0.5, 0.5 (at 3: 3/4 - 1/4), 0.5 (at 4: 1 - 2/4), ...
    d, n, m = ks_statistic(np.array([[1.0], [2.0], [3.0], [4.0]]), np.array([[3.0], [4.0], [5.0], [6.0]]))
    assert d.tolist() == [0.5] and n.tolist() == [4] and m.tolist() == [4]
    # identical samples: 0; a missing value is left out, not read as a number
    d, n, m = ks_statistic(np.array([[1.0], [np.nan], [2.0]]), np.array([[2.0], [1.0]]))
    assert d.tolist() == [0.0] and n.tolist() == [2]


def test_ks_statistic_equals_scipy_with_ties_and_missing_values():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(40, 30)).astype(float)  # few distinct values: many ties
    b = rng.integers(0, 6, size=(25, 30)).astype(float)
    a[rng.random(a.shape) < 0.2] = np.nan
    b[rng.random(b.shape) < 0.1] = np.nan
    b[:, 7] = np.nan  # a column never observed in one window
    d, n, m = ks_statistic(a, b)
    for c in range(30):
        x, y = a[~np.isnan(a[:, c]), c], b[~np.isnan(b[:, c]), c]
        assert n[c] == x.size and m[c] == y.size
        if y.size == 0:
            assert d[c] == 0.0
            continue
        # method="asymp" keeps scipy's raw statistic ("exact" rounds it to a multiple of 1/lcm(n, m))
        assert d[c] == ks_2samp(x, y, method="asymp").statistic
    continuous = rng.normal(size=(700, 3)), rng.normal(0.2, size=(300, 3))
    d, _, _ = ks_statistic(*continuous)
    for c in range(3):
        assert d[c] == ks_2samp(continuous[0][:, c], continuous[1][:, c], method="asymp").statistic


def test_ks_pvalue_is_the_kolmogorov_series_with_effective_sizes():
    d, n, m = 0.1, 600, 300
    lam = d * math.sqrt(n * m / (n + m))
    by_hand = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k**2 * lam**2) for k in range(1, 50))
    assert ks_pvalue(d, n, m) == pytest.approx(by_hand, rel=1e-12)
    # inflation kappa = the same test with n / kappa and m / kappa samples: larger p
    assert ks_pvalue(d, n, m, 3.0) == pytest.approx(float(ks_pvalue(d, n / 3, m / 3)), rel=1e-12)
    assert ks_pvalue(d, n, m, 3.0) > ks_pvalue(d, n, m)
    # close to scipy's asymptotic p-value (kstwo at round(en), a finite-n refinement) and never
    # below it: the limit distribution errs on the conservative side here
    rng = np.random.default_rng(1)
    for shift in (0.0, 0.15, 0.3):
        a, b = rng.normal(size=600), rng.normal(shift, size=300)
        res = ks_2samp(a, b, method="asymp")
        ours = float(ks_pvalue(res.statistic, 600, 300))
        assert res.pvalue <= ours <= 1.25 * res.pvalue
    with pytest.raises(ValueError, match=">= 1"):
        ks_pvalue(d, n, m, 0.5)


def test_benjamini_hochberg_by_hand():
    # sorted p 0.01, 0.03, 0.04, 0.2 (m = 4): p m / rank = 0.04, 0.06, 0.0533, 0.2, then the running
    # minimum from the largest rank down: 0.04, 0.0533, 0.0533, 0.2
    adjusted = false_discovery_control([0.01, 0.04, 0.03, 0.2], method="bh")
    np.testing.assert_allclose(adjusted, [0.04, 0.16 / 3, 0.16 / 3, 0.2])


def test_ks_inflation_is_about_one_for_independent_samples_and_larger_for_autocorrelated():
    rng = np.random.default_rng(2)
    period, periods = 50, 12
    iid = rng.normal(size=(period * periods, 10, 2))
    kappa_iid = ks_inflation(iid, period)
    assert kappa_iid.shape == (2,)
    assert (kappa_iid < 1.5).all()
    ar = np.zeros_like(iid)
    for t in range(1, len(ar)):
        ar[t] = 0.9 * ar[t - 1] + iid[t]
    kappa_ar = ks_inflation(ar, period)
    assert (kappa_ar > kappa_iid + 1.0).all()
    # the statistic's median at kappa = 1 is the Kolmogorov median, by construction of the estimate
    assert KOLMOGOROV_MEDIAN == pytest.approx(0.8275735551899059)
    with pytest.raises(ValueError, match="whole number"):
        ks_inflation(iid[:75], period)


# ----------------------------------------------------------------------------- Page-Hinkley


def test_page_hinkley_fires_where_computed_by_hand_and_river_agrees():
    from river.drift import PageHinkley as RiverPageHinkley

    # 10 zeros, then ones; delta 0, no forgetting. After the j-th one the mean is j / (10 + j), its
    # deviation 10 / (10 + j), and the rise statistic sum_{i<=j} 10 / (10 + i): 10/11 + 10/12 = 1.742
    # is below the threshold 2, + 10/13 = 2.511 above: it must fire at the third one, index 12.
    rise = [sum(Fraction(10, 10 + i) for i in range(1, j + 1)) for j in (1, 2, 3)]
    assert rise[1] < 2 < rise[2]
    stream = [0.0] * 10 + [1.0] * 5
    settings = {"min_instances": 1, "delta": 0.0, "threshold": 2.0, "alpha": 1.0, "mode": "up"}
    ours, theirs = PageHinkley(**settings), RiverPageHinkley(**settings)
    fired_ours, fired_river = [], []
    for i, x in enumerate(stream):
        if ours.update(x):
            fired_ours.append(i)
        theirs.update(x)
        if theirs.drift_detected:
            fired_river.append(i)
    assert fired_ours[0] == 12 and fired_river[0] == 12
    assert fired_ours == fired_river


def test_page_hinkley_matches_river_bit_for_bit_on_random_streams():
    from river.drift import PageHinkley as RiverPageHinkley

    rng = np.random.default_rng(3)
    stream = np.concatenate([rng.normal(0, 1, 400), rng.normal(1.5, 1, 400), rng.normal(-1, 2, 400)])
    for settings in ({}, {"delta": 0.5, "threshold": 20.0, "alpha": 0.99}, {"mode": "down", "threshold": 10.0}):
        ours, theirs = PageHinkley(**settings), RiverPageHinkley(**settings)
        fired = 0
        for x in stream.tolist():
            ours.update(x)
            theirs.update(x)
            assert ours.drift_detected == theirs.drift_detected
            assert ours.sum_increase == theirs._sum_increase and ours.sum_decrease == theirs._sum_decrease
            assert ours.mean == theirs._x_mean.get()
            fired += ours.drift_detected
        assert fired > 0  # the stream has changes: the comparison covered detections and restarts


def test_page_hinkley_state_round_trip_continues_exactly():
    rng = np.random.default_rng(4)
    stream = np.concatenate([rng.normal(0, 1, 300), rng.normal(2, 1, 300)]).tolist()
    a = PageHinkley(delta=0.5, threshold=20.0)
    for x in stream[:250]:
        a.update(x)
    b = PageHinkley(delta=0.5, threshold=20.0)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    outs_a = [(a.update(x), a.statistic) for x in stream[250:]]
    outs_b = [(b.update(x), b.statistic) for x in stream[250:]]
    assert outs_a == outs_b
    assert any(fired for fired, _ in outs_a)
    with pytest.raises(ValueError, match="lacks"):
        b.load_state_dict({"n": 1.0})


def test_river_adwin_sees_a_large_step_and_not_a_constant_stream():
    from river.drift import ADWIN

    adwin = ADWIN(clock=1)
    detections = [i for i, x in enumerate([0.0] * 200 + [5.0] * 100) if adwin.update(x) or adwin.drift_detected]
    assert detections and 200 <= detections[0] < 260
    constant = ADWIN(clock=1)
    assert not any(constant.update(1.0) or constant.drift_detected for _ in range(500))


# ----------------------------------------------------------------------------- the detector


def _stream(steps: int, seed: int = 0, n: int = 3, shift_at: int | None = None, shift: float = 3.0) -> np.ndarray:
    """``[steps, n, 2]`` iid normal values; service 1's cpu shifted by ``shift`` from ``shift_at`` on."""
    x = np.random.default_rng(seed).normal(size=(steps, n, 2))
    if shift_at is not None:
        x[shift_at:, 1, 0] += shift
    return x


def _run(det: DriftDetector, x: np.ndarray, mask=None, scores=None, start: int = 0) -> list[DriftStatus]:
    out = []
    for t in range(start, len(x)):
        s = None if scores is None else {k: v[t] for k, v in scores.items()}
        out.append(det.update(t, x[t], None if mask is None else mask[t], s))
    return out


def test_a_shifted_pair_is_detected_and_named_and_nothing_fires_without_it():
    quiet = DriftDetector(3, METRICS, score_detector=None, **SMALL)
    assert not any(s.events for s in _run(quiet, _stream(400)))
    assert quiet.last_evaluation is not None and not quiet.drifting

    det = DriftDetector(3, METRICS, score_detector=None, **SMALL)
    statuses = _run(det, _stream(400, shift_at=200))
    events = [e for s in statuses for e in s.events]
    assert len(events) == 1  # fires once per reference
    event = events[0]
    assert event.kind == DISTRIBUTION and event.services == (1,) and event.metrics == ("cpu",)
    # confirmed after the shift, within one recent window plus the persistence evaluations
    assert 200 <= event.step <= 200 + SMALL["recent"] + SMALL["persistence"] * SMALL["every"]
    assert "cpu of service 1" in event.detail
    assert all(s.drifting for s in statuses[event.step :]) and not any(s.drifting for s in statuses[: event.step])
    assert 0.0 < event.statistic <= 1.0


def test_masked_values_are_left_out_whatever_they_hold():
    x = _stream(300, shift_at=150)
    mask = np.ones(x.shape, dtype=bool)
    mask[::3, 2, 1] = False  # a third of one pair unobserved
    mask[:, 0, 1] = False  # one pair never observed: not tested
    garbage, missing = x.copy(), x.copy()
    garbage[~mask] = 1e6
    missing[~mask] = np.nan
    a = DriftDetector(3, METRICS, score_detector=None, **SMALL)
    b = DriftDetector(3, METRICS, score_detector=None, **SMALL)
    ea = [e for s in _run(a, garbage, mask) for e in s.events]
    eb = [e for s in _run(b, missing, mask) for e in s.events]
    assert ea == eb and ea
    stat = a.last_evaluation.statistic
    np.testing.assert_array_equal(stat, b.last_evaluation.statistic)
    assert np.isnan(stat[0, 1]) and np.isfinite(stat[2, 1])
    assert "1e6" not in ea[0].detail and ea[0].services == (1,)


def test_bad_input_is_refused_and_changes_nothing():
    det = DriftDetector(3, METRICS, **SMALL)
    x = _stream(50)
    _run(det, x[:30])
    before = det.state_dict()
    bad = x[30].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="no mask"):
        det.update(30, bad)
    with pytest.raises(ValueError, match="where mask says observed"):
        det.update(30, bad, np.ones((3, 2), dtype=bool))
    with pytest.raises(ValueError, match=r"\[N, F\]"):
        det.update(30, x[30, :2])
    with pytest.raises(ValueError, match="not the next step"):
        det.update(31, x[30])
    with pytest.raises(ValueError, match="unknown score stream"):
        det.update(30, x[30], None, {"risk": 0.1})
    with pytest.raises(ValueError, match="infinite"):
        det.update(30, x[30], None, {"cascade": math.inf})
    after = det.state_dict()
    for key in ("reference", "recent"):
        np.testing.assert_array_equal(before[key], after[key])
    assert before["seen"] == after["seen"] and before["next_step"] == after["next_step"]
    det.update(30, x[30], None, {"cascade": None, "max_risk": float("nan")})  # skipped scores are fine


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reference": 50}, "whole number of periods"),
        ({"recent": 10}, "whole number of periods"),
        ({"inflation": 0.5}, "inflation"),
        ({"inflation": [1.0, 2.0, 3.0]}, "one per metric"),
        ({"score_detector": "cusum"}, "score_detector"),
        ({"score_options": {"lambda": 3}}, "unknown score_options"),
        ({"alpha": 0.0}, "alpha"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DriftDetector(3, METRICS, **{**SMALL, **kwargs})


def test_score_stream_level_shift_fires_page_hinkley_and_the_daily_cycle_does_not():
    steps, period = 600, SMALL["period"]
    rng = np.random.default_rng(5)
    t = np.arange(steps)
    # a strong daily cycle (5 noise standard deviations) the seasonal baseline must remove
    cycle = 5.0 * np.sin(2 * np.pi * t / period) + rng.normal(size=steps)
    shifted = cycle + np.where(t >= 300, 3.0, 0.0)
    options = {"threshold": 30.0}
    x = _stream(steps)
    quiet = DriftDetector(3, METRICS, score_names=("cascade",), score_options=options, **SMALL)
    quiet_events = [e for s in _run(quiet, x, scores={"cascade": cycle}) for e in s.events if e.kind == SCORE]
    assert quiet_events == []
    det = DriftDetector(3, METRICS, score_names=("cascade",), score_options=options, **SMALL)
    events = [e for s in _run(det, x, scores={"cascade": shifted}) for e in s.events if e.kind == SCORE]
    assert len(events) == 1 and events[0].step >= 300
    # the baseline of two periods leaves a unit of noise sqrt(1.5) = 1.22 wide (scale 1.22 x 1 sd): a
    # shift of 3 is ~2.4 units, minus delta 1 about 1.4 per step, so ~22 steps to a threshold of 30,
    # a few more as the running mean takes in the shifted values
    assert events[0].step <= 300 + 45
    assert events[0].services == () and events[0].metrics == () and "rose" in events[0].detail
    assert det.score_statistics["cascade"] > 30.0


def test_reset_starts_a_new_reference_at_the_given_step():
    det = DriftDetector(3, METRICS, score_detector=None, **SMALL)
    statuses = _run(det, _stream(300, shift_at=150))
    assert det.drifting and any(s.events for s in statuses)
    det.reset(300)
    assert not det.drifting and det.steps_seen == 0 and det.last_evaluation is None
    with pytest.raises(ValueError, match="not the next step"):
        det.update(301, np.zeros((3, 2)))
    det.update(300, np.zeros((3, 2)))
    assert det.steps_seen == 1


# ----------------------------------------------------------------------------- state


def _leaves_are_plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _leaves_are_plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_leaves_are_plain(v) for v in value)
    return isinstance(value, (np.ndarray, bool, int, float, str))


def _same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            _same_state(a[k], b[k])
        elif isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k])
        elif isinstance(a[k], float) and math.isnan(a[k]):
            assert math.isnan(b[k])
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("score_detector", ["page_hinkley", "adwin"])
def test_a_restored_detector_continues_exactly_like_the_uninterrupted_one(score_detector):
    steps = 500
    x = _stream(steps, shift_at=260)
    mask = np.random.default_rng(6).random(x.shape) > 0.1
    x[~mask] = np.nan
    rng = np.random.default_rng(7)
    scores = {
        "cascade": np.where(np.arange(steps) >= 300, 2.0, 0.0) + rng.normal(size=steps),
        "max_risk": np.where(rng.random(steps) < 0.05, np.nan, rng.random(steps)),
    }
    options = {"threshold": 20.0} if score_detector == "page_hinkley" else {"clock": 4}
    build = lambda: DriftDetector(  # noqa: E731
        3, METRICS, score_detector=score_detector, score_options=options, **SMALL
    )
    whole = build()
    first = _run(whole, x[:230], mask[:230], {k: v[:230] for k, v in scores.items()})
    state = copy.deepcopy(whole.state_dict())
    assert _leaves_are_plain(state)
    rest = _run(whole, x, mask, scores, start=230)
    restored = build()
    restored.load_state_dict(state)
    again = _run(restored, x, mask, scores, start=230)
    assert again == rest
    assert any(s.events for s in first + rest)  # the comparison covered events
    _same_state(whole.state_dict(), restored.state_dict())


def test_a_state_of_other_settings_or_shape_is_refused_and_the_detector_kept():
    det = DriftDetector(3, METRICS, **SMALL)
    _run(det, _stream(80))
    state = det.state_dict()
    other = DriftDetector(3, METRICS, **{**SMALL, "every": 4})
    _run(other, _stream(10))
    kept = other.state_dict()
    with pytest.raises(ValueError, match="every: state 5 vs now 4"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="expected format"):
        other.load_state_dict({"config": state["config"]})
    broken = copy.deepcopy(state)
    broken["reference"] = broken["reference"][:, :2]
    same = DriftDetector(3, METRICS, **SMALL)
    with pytest.raises(ValueError, match="reference has shape"):
        same.load_state_dict(broken)
    del broken["streams"]
    broken["reference"] = state["reference"]
    with pytest.raises(ValueError, match="incomplete or damaged"):
        same.load_state_dict(broken)
    _same_state(kept, other.state_dict())
    assert same.steps_seen == 0


# ----------------------------------------------------------------------------- replay and the benchmark


def test_replay_resets_after_each_alarm_and_counts_armed_steps():
    det = DriftDetector(3, METRICS, score_detector=None, **SMALL)
    x = _stream(400, shift_at=100, shift=6.0)
    result = replay_drift(det, x, reset_on_alarm=True)
    assert result.steps == 400
    assert result.resets == tuple(s + 1 for s in result.alarm_steps)
    # one alarm: the reference after the reset holds shifted values only, so nothing differs any more
    assert len(result.alarm_steps) == 1 and result.events[0].services == (1,)
    assert result.alarm_steps[0] > 100
    # armed: every step but the first reference + recent window (less one) after the start and the reset
    fill = SMALL["reference"] + SMALL["recent"] - 1
    assert result.armed_steps == 400 - 2 * fill
    with pytest.raises(ValueError, match="scores"):
        replay_drift(DriftDetector(3, METRICS, **SMALL), x, scores={"cascade": np.zeros(3)})


def test_drift_benchmark_detects_a_strong_traffic_drift_and_runs_its_tables():
    from _benchmarks import loaded_benchmark

    with loaded_benchmark("drift_alarms.py", "drift_alarms_bench") as bench:
        settings = bench.Settings(seeds=1, free_steps=1200, drift_start=900, post=500, level_shift=1.5)
        free = bench.false_alarm_run("easy", 0, settings.free_steps, settings.detector)
        assert free.steps == 1200 and 0 < free.armed_steps <= 1200 - 576
        traffic = bench.drift_run("traffic x1.5", 0, settings)
        assert traffic.distribution_delay is not None and 0 <= traffic.distribution_delay <= 500
        assert traffic.services >= 2  # traffic moves every service
        shift = bench.drift_run("level shift", 0, settings)
        assert shift.located is True and shift.services == 1
        table = bench.delay_table([traffic, shift]) + bench.false_alarm_table([free])
        assert "traffic x1.5" in table and "level shift" in table and "easy" in table
