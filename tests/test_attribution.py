"""Attribution: detected events from alarms, culprit features per event, on hand-computed cases and bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tgad_lite.anomaly.attribution import EventCulprits, detected_events, event_culprits
from tgad_lite.metrics.detection import alarms_at, false_alarm_events

# ----------------------------------------------------------------------------- detected_events


def test_detected_events_are_runs_of_alarms_with_inclusive_ends():
    scores = [0.1, 0.9, 0.8, 0.2, 0.7, 0.0, 0.6, 0.6]
    # Alarms (score > 0.5) at 1, 2, 4, 6, 7: three runs, the last one reaching the end of the series.
    assert detected_events(scores, 0.5) == [(1, 2), (4, 4), (6, 7)]
    assert detected_events(scores, 0.95) == []
    assert detected_events(scores, -1.0) == [(0, 7)]


def test_detected_events_use_the_strict_alarm_rule_of_the_metrics():
    # A score equal to the threshold is no alarm, as in every threshold rule and metric of the project.
    assert detected_events([0.5, 0.5, 0.6], 0.5) == [(2, 2)]
    rng = np.random.default_rng(0)
    scores, labels = rng.random(300), np.zeros(300, dtype=int)
    events = detected_events(scores, 0.8)
    # With no labelled segment every run of alarms is a false-alarm event: the two counts agree.
    assert len(events) == false_alarm_events(scores, labels, 0.8) > 10
    lab = np.zeros(300, dtype=bool)
    for s, e in events:
        lab[s : e + 1] = True
    np.testing.assert_array_equal(lab, alarms_at(scores, 0.8))


def test_detected_events_take_per_step_thresholds_and_tensors():
    scores = torch.tensor([1.0, 1.0, 1.0, 1.0])
    assert detected_events(scores, np.array([0.0, 2.0, 0.5, 0.5])) == [(0, 0), (2, 3)]


@pytest.mark.parametrize(
    ("scores", "threshold", "match"),
    [
        ([0.1, float("nan"), 0.3], 0.2, "finite"),
        ([0.1, 0.2], float("inf"), "finite"),
        ([0.1, 0.2, 0.3], [0.1, 0.2], r"shape \[T\]"),
        ([[0.1, 0.2], [0.3, 0.4]], 0.2, "1-D"),
        ([], 0.2, "empty"),
        ([0.1, 0.2], None, "threshold"),
    ],
)
def test_detected_events_refuse_bad_input(scores, threshold, match):
    with pytest.raises(ValueError, match=match):
        detected_events(scores, threshold)


# ----------------------------------------------------------------------------- event_culprits


def test_event_culprits_rank_by_mean_over_the_event_hand_computed():
    x = np.array(
        [
            [0.0, 0.0, 0.0],
            [1.0, 4.0, 0.0],  # event (1, 2): means [2, 3, 1] -> features 1, 0, 2; total 6
            [3.0, 2.0, 2.0],
            [0.0, 0.0, 9.0],  # event (3, 3): feature 2 alone
        ]
    )
    first, second = event_culprits(x, [(1, 2), (3, 3)], top_k=2, feature_names=["cpu", "mem", "disk"])
    assert first == EventCulprits(1, 2, (1, 0), ("mem", "cpu"), (3.0, 2.0), (0.5, 2 / 6), 6.0)
    assert first.length == 2
    assert second.features == (2, 0) and second.scores == (9.0, 0.0) and second.shares == (1.0, 0.0)


def test_the_mean_not_one_spike_decides_the_blame():
    # Feature 0 spikes once (10 at one step); feature 1 stays at 3 over the 5 steps: mean 3 > 2.
    x = np.zeros((5, 2))
    x[2, 0] = 10.0
    x[:, 1] = 3.0
    (ev,) = event_culprits(x, [(0, 4)], top_k=1)
    assert ev.features == (1,) and ev.names == ("feature 1",)
    assert ev.scores == (3.0,)
    assert ev.shares == (3.0 / 5.0,)


def test_ties_go_to_the_lower_feature_index():
    x = np.ones((3, 4))
    x[:, 2] = 2.0  # feature 2 first; features 0, 1, 3 tie at 1.0 and keep index order
    (ev,) = event_culprits(x, [(0, 2)], top_k=4)
    assert ev.features == (2, 0, 1, 3)
    assert sum(ev.shares) == pytest.approx(1.0)


def test_top_k_beyond_the_feature_count_returns_every_feature_and_no_events_give_nothing():
    x = np.arange(6.0).reshape(3, 2)
    (ev,) = event_culprits(x, [(0, 2)], top_k=10)
    assert ev.features == (1, 0)
    assert event_culprits(x, [], top_k=3) == []


def test_shares_are_none_when_a_fraction_of_the_total_means_nothing():
    x = np.array([[1.0, -3.0], [1.0, -1.0]])  # a negative mean
    (ev,) = event_culprits(x, [(0, 1)])
    assert ev.shares is None and ev.features == (0, 1) and ev.event_total == -1.0
    (ev,) = event_culprits(np.zeros((2, 3)), [(0, 1)])  # all zero: total 0
    assert ev.shares is None and ev.features == (0, 1, 2)


def test_event_culprits_are_frozen_and_accept_tensors_and_numpy_ints():
    x = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    (ev,) = event_culprits(x, [(np.int64(0), np.int64(1))], top_k=np.int64(1))
    assert ev.features == (0,) and ev.start == 0 and isinstance(ev.start, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.start = 1  # type: ignore[misc]


def test_events_of_detected_events_round_trip_with_the_injected_culprits():
    # Two injected anomalies, each in its own features: the events found at the threshold blame them.
    rng = np.random.default_rng(1)
    x = rng.random((200, 6)) * 0.1
    x[50:60, [1, 4]] += 1.0
    x[120:125, 3] += 2.0
    total = x.sum(axis=1)
    events = detected_events(total, 1.5)
    assert events == [(50, 59), (120, 124)]
    first, second = event_culprits(x, events, top_k=2)
    assert set(first.features) == {1, 4}
    assert second.features[0] == 3


@pytest.mark.parametrize(
    ("per_feature", "events", "kwargs", "match"),
    [
        (np.ones(5), [(0, 1)], {}, r"2-D \[T, F\].*per_feature\[:, None\]"),
        (np.ones((0, 3)), [], {}, "T, F > 0"),
        (np.array([[1.0, np.nan], [0.0, 0.0]]), [(0, 1)], {}, "finite, found nan at step 0, feature 1"),
        (np.array([[1.0, np.inf]]), [(0, 0)], {}, "finite"),
        (np.array([["a", "b"]]), [(0, 0)], {}, "numbers"),
        (np.ones((4, 2)), [(2, 4)], {}, r"outside the series: per_feature has steps 0..3"),
        (np.ones((4, 2)), [(-1, 1)], {}, "outside the series"),
        (np.ones((4, 2)), [(3, 1)], {}, "start > end"),
        (np.ones((4, 2)), [(0.5, 1)], {}, "whole time-step indices"),
        (np.ones((4, 2)), [(True, 1)], {}, "whole time-step indices"),
        (np.ones((4, 2)), [(0, 1, 2)], {}, r"\(start, end_inclusive\) pair"),
        (np.ones((4, 2)), (0, 1), {}, r"\(start, end_inclusive\) pair"),
        (np.ones((4, 2)), "0-1", {}, "list of"),
        (np.ones((4, 2)), [(0, 1)], {"top_k": 0}, "top_k must be an int >= 1"),
        (np.ones((4, 2)), [(0, 1)], {"top_k": 1.5}, "top_k must be an int >= 1"),
        (np.ones((4, 2)), [(0, 1)], {"top_k": True}, "top_k must be an int >= 1"),
        (np.ones((4, 2)), [(0, 1)], {"feature_names": ["a"]}, "1 names but per_feature has 2 features"),
        (np.ones((4, 2)), [(0, 1)], {"feature_names": "ab"}, "list of 2 names"),
    ],
)
def test_event_culprits_refuse_bad_input_with_the_fix(per_feature, events, kwargs, match):
    with pytest.raises(ValueError, match=match):
        event_culprits(per_feature, events, **kwargs)


def test_bad_input_leaves_the_callers_arrays_untouched():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    before = x.copy()
    event_culprits(x, [(0, 1)])
    with pytest.raises(ValueError):
        event_culprits(x, [(0, 5)])
    np.testing.assert_array_equal(x, before)
