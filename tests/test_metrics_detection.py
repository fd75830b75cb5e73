"""Detection metrics on hand-computed cases, edge cases, brute-force cross-checks and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tgad_lite.data.smd import SMDInterpretation
from tgad_lite.metrics import (
    EVALUATE_KEYS,
    best_f1,
    best_point_adjusted_f1,
    composite_f1,
    culprits_per_point,
    detection_delays,
    evaluate,
    event_recall,
    false_alarm_events,
    hit_rate,
    pa_k_auc,
    pa_k_curve,
    point_adjust,
    point_adjusted_f1,
    pr_auc,
    precision_recall_f1,
    roc_auc,
)

# Segments at both ends: (0, 1) and (5, 7). Alarms at threshold 0.5: steps 1, 4, 7.
EDGE_LABELS = np.array([1, 1, 0, 0, 0, 1, 1, 1])
EDGE_SCORES = np.array([0.0, 0.9, 0.0, 0.0, 0.6, 0.0, 0.0, 0.7])


def _brute_best(scores, labels, metric):
    """Max F1 over thresholds just below every distinct score (alarms: score > t), the slow obvious way."""
    return max(metric(scores, labels, t).f1 for t in np.nextafter(np.unique(scores), -np.inf))


# ----------------------------------------------------------------------------- point-wise


def test_point_wise_hand_computed():
    labels = [0, 1, 1, 0, 0, 1, 0, 0]
    scores = [0.1, 0.8, 0.3, 0.2, 0.9, 0.4, 0.1, 0.0]
    p, r, f1 = precision_recall_f1(scores, labels, 0.35)  # alarms at 1, 4, 5: TP = 2 of 3 alarms, 3 anomalies
    assert (p, r, f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    p, r, f1 = precision_recall_f1(scores, labels, 0.85)  # one alarm, a false one
    assert (p, r, f1) == (0.0, 0.0, 0.0)


def test_alarm_is_strictly_greater():
    # A score exactly at the threshold raises no alarm (the rule of tgad_lite.anomaly.threshold too).
    assert precision_recall_f1([0.5, 0.2], [1, 0], 0.5) == (0.0, 0.0, 0.0)
    assert precision_recall_f1([0.5, 0.2], [1, 0], 0.4) == (1.0, 1.0, 1.0)


def test_best_f1_ties_in_scores_alarm_together():
    # Thresholds 0.2 (all alarm: P .5, R 1) and 0.5 (steps 0, 1: P .5, R .5); tied steps never split.
    best = best_f1([0.5, 0.5, 0.2, 0.2], [1, 0, 1, 0])
    assert best.f1 == pytest.approx(2 / 3) and best.threshold == np.nextafter(0.2, 0)  # just below 0.2
    assert (best.precision, best.recall) == (0.5, 1.0)


def test_best_f1_equals_brute_force_with_many_ties():
    rng = np.random.default_rng(3)
    for _ in range(5):
        labels = (rng.random(60) < 0.3).astype(int)
        scores = rng.integers(0, 6, size=60).astype(float)  # heavy ties
        best = best_f1(scores, labels)
        assert best.f1 == pytest.approx(_brute_best(scores, labels, precision_recall_f1))
        assert precision_recall_f1(scores, labels, best.threshold).f1 == pytest.approx(best.f1)


def test_constant_scores_flag_everything():
    scores, labels = [0.3] * 5, [0, 1, 1, 0, 0]
    best = best_f1(scores, labels)
    assert (best.threshold, best.precision, best.recall) == (np.nextafter(0.3, 0), 0.4, 1.0)
    assert best.f1 == pytest.approx(2 * 0.4 / 1.4)
    assert roc_auc(scores, labels) == 0.5 and pr_auc(scores, labels) == pytest.approx(0.4)


def test_no_anomaly_recall_and_f1_are_none_not_nan():
    labels = np.zeros(4, dtype=int)
    assert precision_recall_f1([0.1, 0.9, 0.2, 0.8], labels, 0.5) == (0.0, None, None)
    best = best_f1([0.1, 0.9, 0.2, 0.8], labels)
    assert best.f1 is None and best.threshold == 0.9  # the largest score: no alarm under score > threshold
    assert roc_auc([0.1, 0.9, 0.2, 0.8], labels) is None and pr_auc([0.1, 0.9, 0.2, 0.8], labels) is None
    assert event_recall([0.1, 0.9, 0.2, 0.8], labels, 0.5) is None
    assert composite_f1([0.1, 0.9, 0.2, 0.8], labels, 0.5) is None
    assert pa_k_auc([0.1, 0.9, 0.2, 0.8], labels, 0.5) is None
    assert false_alarm_events([0.1, 0.9, 0.2, 0.8], labels, 0.5) == 2  # runs (1, 1) and (3, 3)


def test_all_anomalous():
    scores, labels = [0.1, 0.4, 0.2, 0.3], [1, 1, 1, 1]
    best = best_f1(scores, labels)
    assert (best.f1, best.threshold) == (1.0, np.nextafter(0.1, 0))
    assert roc_auc(scores, labels) is None and pr_auc(scores, labels) is None
    assert precision_recall_f1(scores, labels, 0.35).f1 == pytest.approx(0.4)  # P 1, R 1/4
    assert point_adjusted_f1(scores, labels, 0.35) == (1.0, 1.0, 1.0)
    assert detection_delays(scores, labels, 0.35) == [1]


def test_roc_and_pr_auc_hand_computed():
    # Ranking 0.8 (+), 0.4 (-), 0.35 (+), 0.1 (-): 3 of 4 (+, -) pairs ordered; AP = (1 + 2/3) / 2.
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert roc_auc(scores, labels) == pytest.approx(0.75)
    assert pr_auc(scores, labels) == pytest.approx(5 / 6)


# ----------------------------------------------------------------------------- point adjustment


def test_point_adjusted_hand_computed_segments_at_start_and_end():
    # Point-wise: TP 2 (steps 1, 7) of 3 alarms, 5 anomalies. Adjusted: both segments, TP 5 of 6 alarms.
    assert precision_recall_f1(EDGE_SCORES, EDGE_LABELS, 0.5) == pytest.approx((2 / 3, 2 / 5, 0.5))
    assert point_adjusted_f1(EDGE_SCORES, EDGE_LABELS, 0.5) == pytest.approx((5 / 6, 1.0, 10 / 11))
    adjusted = point_adjust(EDGE_SCORES >= 0.5, EDGE_LABELS)
    assert adjusted.tolist() == [True, True, False, False, True, True, True, True]


def test_pa_k_thresholds_hand_computed():
    # Segment (0, 1): 1 alarm of 2, adjusted while 100 > 2K (K <= 49); (5, 7): 1 of 3, while K <= 33.
    ks, f1 = pa_k_curve(EDGE_SCORES, EDGE_LABELS, 0.5)
    assert ks.tolist() == list(range(101))
    assert f1[:34] == pytest.approx([10 / 11] * 34)
    assert f1[34:50] == pytest.approx([2 / 3] * 16)  # TP 3 of 4 alarms, 5 anomalies
    assert f1[50:] == pytest.approx([0.5] * 51)  # point-wise
    area = 0.33 * 10 / 11 + 0.01 * (10 / 11 + 2 / 3) / 2 + 0.15 * 2 / 3 + 0.01 * (2 / 3 + 0.5) / 2 + 0.5 * 0.5
    assert pa_k_auc(EDGE_SCORES, EDGE_LABELS, 0.5) == pytest.approx(area)
    assert point_adjusted_f1(EDGE_SCORES, EDGE_LABELS, 0.5, k=40).f1 == pytest.approx(2 / 3)


def test_pa_k_needs_alarms_to_exceed_k_percent_exactly():
    # 29 alarms in a segment of 100: 29% does not *exceed* K = 29 (float k / 100 * 100 would say it does).
    labels = np.r_[np.zeros(5), np.ones(100), np.zeros(5)].astype(int)
    alarms = np.zeros(110, dtype=bool)
    alarms[5:34] = True
    assert point_adjust(alarms, labels, k=29)[34:105].sum() == 0
    assert point_adjust(alarms, labels, k=28)[5:105].all()
    # K = 100 never adjusts; K = 0 needs one alarm.
    assert (point_adjust(alarms, labels, k=100) == alarms).all()
    assert not point_adjust(np.zeros(110, dtype=bool), labels, k=0).any()


def test_pa_k_curve_ends_are_point_adjusted_and_point_wise():
    rng = np.random.default_rng(0)
    labels = np.zeros(300, dtype=int)
    labels[[*range(20, 60), *range(150, 155), *range(290, 300)]] = 1
    scores = rng.random(300)
    _, f1 = pa_k_curve(scores, labels, 0.7)
    assert f1[0] == pytest.approx(point_adjusted_f1(scores, labels, 0.7).f1)
    assert f1[-1] == pytest.approx(precision_recall_f1(scores, labels, 0.7).f1)
    assert (np.diff(f1) <= 1e-12).all()  # adjusting raises P and R, and larger K adjusts fewer segments


@pytest.mark.parametrize("k", [0, 10, 50, 100])
def test_best_point_adjusted_f1_equals_brute_force(k):
    rng = np.random.default_rng(k)
    labels = np.zeros(80, dtype=int)
    labels[[0, 1, 2, 20, 21, 22, 23, 24, 50, 79]] = 1  # segments at both ends and a single-step one
    scores = rng.integers(0, 8, size=80).astype(float)  # ties
    best = best_point_adjusted_f1(scores, labels, k=k)

    def metric(s, lab, t):
        return point_adjusted_f1(s, lab, t, k=k)

    assert best.f1 == pytest.approx(_brute_best(scores, labels, metric))
    assert metric(scores, labels, best.threshold).f1 == pytest.approx(best.f1)


def test_random_scores_point_adjusted_f1_far_above_point_wise():
    # The point: on long segments, uniform random scores look excellent once point-adjusted.
    rng = np.random.default_rng(0)
    labels = np.zeros(5000, dtype=int)
    for start in range(300, 5000, 1000):
        labels[start : start + 150] = 1  # 5 segments of 150 steps, 15% anomalous
    scores = rng.random(5000)
    point = best_f1(scores, labels).f1
    flag_all = 2 * labels.mean() / (1 + labels.mean())
    assert point <= flag_all + 0.05  # random scores cannot beat flagging everything by much
    adjusted = best_point_adjusted_f1(scores, labels).f1
    assert adjusted > 2 * point and adjusted > 0.8
    # At a fixed high threshold the PA%K area lies between point-wise and point-adjusted F1, and
    # (Kim et al.'s point) is not fooled: random alarms rarely exceed K% of a long segment.
    point_at, adjusted_at = precision_recall_f1(scores, labels, 0.95).f1, point_adjusted_f1(scores, labels, 0.95).f1
    area = pa_k_auc(scores, labels, 0.95)
    assert point_at < area < adjusted_at / 2


# ----------------------------------------------------------------------------- event-wise


def test_event_composite_delays_false_alarms_hand_computed():
    labels = [0, 1, 1, 0, 0, 1, 0, 0, 1, 1]
    scores = [0.0, 0.0, 0.9, 0.0, 0.8, 0.0, 0.9, 0.9, 0.0, 0.0]
    # Alarms 2, 4, 6, 7: segment (1, 2) found with delay 1, (5, 5) and (8, 9) missed.
    assert event_recall(scores, labels, 0.5) == pytest.approx(1 / 3)
    p = 1 / 4
    assert composite_f1(scores, labels, 0.5) == pytest.approx(2 * p * (1 / 3) / (p + 1 / 3))
    assert detection_delays(scores, labels, 0.5) == [1, None, None]
    assert false_alarm_events(scores, labels, 0.5) == 2  # runs (4, 4) and (6, 7)


def test_alarm_run_overlapping_a_segment_is_not_false():
    # Run (3, 6) overlaps segment (5, 5): not a false alarm; run (8, 8) is.
    labels = [0, 0, 0, 0, 0, 1, 0, 0, 0]
    scores = [0, 0, 0, 1, 1, 1, 1, 0, 1]
    assert false_alarm_events(scores, labels, 0.5) == 1
    assert detection_delays(scores, labels, 0.5) == [0]


def test_per_step_threshold_array():
    scores = np.array([0.5, 0.5, 0.5, 0.5])
    labels = [0, 1, 1, 0]
    th = np.array([0.6, 0.4, 0.6, 0.6])  # only step 1 alarms
    assert precision_recall_f1(scores, labels, th) == pytest.approx((1.0, 0.5, 2 / 3))
    assert point_adjusted_f1(scores, labels, th) == (1.0, 1.0, 1.0)
    row = evaluate(scores, labels, th, threshold_rule="DSPOT")
    assert row["threshold"] is None and row["threshold_rule"] == "DSPOT" and row["n_alarms"] == 1


# ----------------------------------------------------------------------------- attribution


def test_hit_rate_hand_computed_with_load_smd_events():
    x = np.array(
        [
            [0.9, 0.1, 0.5, 0.2],  # G {0, 2}: top2 {0, 2} -> 1; top3 -> 1
            [0.1, 0.9, 0.5, 0.8],  # G {0, 2}: top2 {1, 3} -> 0; top3 {1, 3, 2} -> 1/2
            [0.3, 0.2, 0.1, 0.0],  # G {3}: top1 {0} -> 0; floor(1.5) = 1 -> 0
            [0.0, 0.0, 0.0, 0.0],  # no culprit list: not counted
        ]
    )
    events = [SMDInterpretation(0, 1, (0, 2)), SMDInterpretation(2, 2, (3,))]
    assert hit_rate(x, events, 100) == pytest.approx(1 / 3)
    assert hit_rate(x, events, 150) == pytest.approx(1 / 2)
    assert hit_rate(x, [(0, 1, (0, 2)), (2, 2, [3])], 150) == pytest.approx(1 / 2)  # plain tuples
    assert hit_rate(x, {0: [0, 2], 1: [0, 2], 2: [3]}, 100) == pytest.approx(1 / 3)  # per step
    assert hit_rate(x, [], 100) is None


def test_hit_rate_ties_and_overlapping_events():
    assert culprits_per_point([(0, 1, (2,)), (1, 2, (0,))], 3) == {0: (2,), 1: (0, 2), 2: (0,)}
    x = np.ones((1, 3))  # all tied: the lower feature index wins
    assert hit_rate(x, [(0, 0, (0,))], 100) == 1.0
    assert hit_rate(x, [(0, 0, (2,))], 100) == 0.0


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_oracle_row_is_complete_and_consistent():
    x = np.random.default_rng(1).random((8, 3))
    row = evaluate(EDGE_SCORES, EDGE_LABELS, name="edge", per_feature_scores=x, culprits=[(0, 1, (1,))])
    assert tuple(row) == EVALUATE_KEYS
    assert row["threshold_rule"] == "oracle best-F1" and row["name"] == "edge"
    best = best_f1(EDGE_SCORES, EDGE_LABELS)
    assert row["threshold"] == best.threshold and row["f1"] == best.f1 == row["best_f1"]
    assert row["best_pa_f1"] == best_point_adjusted_f1(EDGE_SCORES, EDGE_LABELS).f1
    assert row["hitrate_100"] == hit_rate(x, [(0, 1, (1,))], 100)
    assert (row["n_segments"], row["n_anomalous_points"], row["n_points"]) == (2, 5, 8)
    json.dumps(row, allow_nan=False)


def test_evaluate_given_threshold_matches_the_functions():
    row = evaluate(EDGE_SCORES, EDGE_LABELS, 0.5, threshold_rule="POT q=1e-4")
    assert row["threshold_rule"] == "POT q=1e-4" and row["threshold"] == 0.5
    assert row["pa_f1"] == pytest.approx(10 / 11) and row["f1"] == pytest.approx(0.5)
    assert (row["delay_mean"], row["delay_median"], row["n_detected_segments"]) == (1.5, 1.5, 2)
    assert row["false_alarm_events"] == 1 and row["hitrate_100"] is None
    assert evaluate(EDGE_SCORES, EDGE_LABELS, 0.5)["threshold_rule"] == "given"


@pytest.mark.parametrize("labels", [np.zeros(8, dtype=int), np.ones(8, dtype=int)], ids=["none", "all"])
def test_evaluate_one_class_has_no_nan_and_says_why(labels):
    row = evaluate(EDGE_SCORES, labels)
    assert row["roc_auc"] is None and "all one class" in row["notes"]
    json.dumps(row, allow_nan=False)  # raises on NaN or inf


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("scores", "labels", "threshold", "message"),
    [
        ([0.1, 0.2], [0, 1, 0], 0.5, "labels has 3 time steps but the values have 2"),
        ([0.1, np.nan], [0, 1], 0.5, "scores must be finite, found nan at step 1"),
        ([0.1, np.inf], [0, 1], 0.5, "scores must be finite, found inf at step 1"),
        ([[0.1, 0.2]], [0], 0.5, "scores must be 1-D [T]"),
        ([], [], 0.5, "scores is empty"),
        (["a", "b"], [0, 1], 0.5, "scores must be numbers"),
        ([0.1, 0.2], [0, 2], 0.5, "labels must be 0/1"),
        ([0.1, 0.2], [0, 1], float("nan"), "threshold must be finite"),
        ([0.1, 0.2], [0, 1], [0.5, 0.5, 0.5], "per-step threshold must have shape [T] = (2,)"),
        ([0.1, 0.2], [0, 1], True, "threshold must be a finite number"),
    ],
    ids=["length", "nan", "inf", "2d", "empty", "strings", "labels", "nan-threshold", "threshold-shape", "bool"],
)
def test_bad_input_is_refused_with_the_fix(scores, labels, threshold, message):
    with pytest.raises(ValueError) as err:
        evaluate(scores, labels, threshold)
    assert message in str(err.value)


def test_bad_k_culprits_and_attribution_input():
    with pytest.raises(ValueError, match="K must be a whole percentage 0..100"):
        point_adjusted_f1([0.1, 0.9], [0, 1], 0.5, k=101)
    with pytest.raises(ValueError, match=r"culprit event \(2, 5\) lies outside the series"):
        culprits_per_point([(2, 5, (0,))], 4)
    with pytest.raises(ValueError, match="culprit feature 4 at step 0 is outside 0..3"):
        hit_rate(np.zeros((2, 4)), [(0, 0, (4,))])
    with pytest.raises(ValueError, match="per_feature_scores must be finite"):
        hit_rate(np.full((2, 4), np.nan), [(0, 0, (1,))])
    with pytest.raises(ValueError, match="pass both per_feature_scores"):
        evaluate([0.1, 0.9], [0, 1], per_feature_scores=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="labels hold no anomaly"):
        pa_k_curve([0.1, 0.9], [0, 0], 0.5)
