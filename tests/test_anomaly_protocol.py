"""Protocol helpers: normalisation fitted on training data only, and per-entity vs concatenated
evaluation whose rows say which protocol produced them (checked with a tiny stand-in metric)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tgad_lite.anomaly.protocol import (
    check_series,
    cross_fit_choice,
    evaluate_concatenated,
    evaluate_entities,
    evaluate_per_entity,
    fit_normaliser,
    split_entities,
)


def hits_at_half(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Stand-in metric: point-wise precision and recall of ``scores > 0.5``, plus constant fields."""
    alarm = scores > 0.5
    tp = int((alarm & (labels == 1)).sum())
    precision = tp / alarm.sum() if alarm.any() else float("nan")
    recall = tp / labels.sum() if labels.any() else float("nan")
    return {
        "precision": precision,
        "recall": recall,
        "length": len(scores),
        "rule": "> 0.5",
        "any_alarm": bool(alarm.any()),
    }


# Hand-computed: A has 2 alarms, 1 hit, 2 anomalies -> P 1/2, R 1/2. B has 1 alarm, 1 hit, 1 anomaly -> P 1, R 1.
RESULTS = {
    "A": (np.array([0.9, 0.1, 0.8, 0.2]), np.array([1, 1, 0, 0])),
    "B": (np.array([0.0, 0.7]), np.array([0, 1])),
}


def test_per_entity_averages_hand_computed_rows():
    row = evaluate_per_entity(RESULTS, hits_at_half, unit="channels")
    assert row["protocol"] == "per-entity mean (2 channels)" and row["entities"] == 2
    assert row["precision"] == pytest.approx(0.75) and row["recall"] == pytest.approx(0.75)
    assert row["length"] == pytest.approx(3.0)
    assert row["rule"] == "> 0.5"  # identical strings are kept
    assert row["any_alarm"] is True  # identical bools are kept, not averaged


def test_concatenated_scores_once_on_the_joined_series():
    row = evaluate_concatenated(RESULTS, hits_at_half, unit="channels")
    # Joined: alarms at 0, 2, 5; anomalies at 0, 1, 5 -> 2 hits: P 2/3, R 2/3 (not the per-entity 0.75).
    assert row["protocol"] == "concatenated (2 channels)" and row["entities"] == 2
    assert row["precision"] == pytest.approx(2 / 3) and row["recall"] == pytest.approx(2 / 3)
    assert row["length"] == 6


def test_entity_rows_name_their_entity():
    rows = evaluate_entities(RESULTS, hits_at_half)
    assert [r["entities"] for r in rows] == ["A", "B"] and {r["protocol"] for r in rows} == {"per-entity"}
    assert [r["precision"] for r in rows] == [0.5, 1.0]


def test_differing_non_numbers_become_varies():
    def fn(scores, labels):
        return {"rule": f"len {len(scores)}", "flags": labels.tolist(), "marks": np.ones(len(scores)), "same": [1, 2]}

    row = evaluate_per_entity(RESULTS, fn)
    assert row["rule"] == row["flags"] == row["marks"] == "varies" and row["same"] == [1, 2]


def test_undefined_metric_propagates_or_is_omitted_visibly():
    results = {**RESULTS, "C": (np.array([0.9, 0.1]), np.array([0, 0]))}  # no anomaly: recall undefined
    row = evaluate_per_entity(results, hits_at_half, unit="machines")
    assert math.isnan(row["recall"]) and row["precision"] == pytest.approx(0.5)  # C: 1 alarm, 0 hits
    omitted = evaluate_per_entity(results, hits_at_half, unit="machines", nan_policy="omit")
    assert omitted["recall"] == pytest.approx(0.75)
    assert omitted["protocol"] == "per-entity mean (3 machines; undefined values omitted)"
    assert omitted["undefined"] == "recall: 1"


def test_split_entities_inverts_concatenation():
    scores = np.arange(6.0)
    labels = np.array([0, 1, 0, 0, 1, 1])
    parts = split_entities(scores, labels, np.array([0, 2, 5]), ["x", "y", "z"])
    assert list(parts) == ["x", "y", "z"]
    assert [p[0].tolist() for p in parts.values()] == [[0, 1], [2, 3, 4], [5]]
    assert [p[1].tolist() for p in parts.values()] == [[0, 1], [0, 0, 1], [1]]


@pytest.mark.parametrize(
    "boundaries, names, match",
    [
        (np.array([1, 3]), ["a", "b"], r"start at 0"),
        (np.array([0, 3, 3]), ["a", "b", "c"], r"increase strictly"),
        (np.array([0, 6]), ["a", "b"], r"below the series length 6"),
        (np.array([0, 3]), ["a"], r"1 names for 2 boundaries"),
        (np.array([0.0, 3.0]), ["a", "b"], r"integer array"),
        (np.array([0, 3]), ["a", "a"], r"unique"),
    ],
)
def test_split_entities_refuses_bad_boundaries(boundaries, names, match):
    with pytest.raises(ValueError, match=match):
        split_entities(np.zeros(6), np.zeros(6, dtype=int), boundaries, names)


@pytest.mark.parametrize(
    "results, match",
    [
        ({}, r"non-empty mapping .* got an empty mapping"),
        ([(np.zeros(2), np.zeros(2))], r"non-empty mapping .* got list"),
        ({"A": np.zeros(2)}, r"results\['A'\] must be a pair"),
        ({"A": (np.zeros(3), np.zeros(2))}, r"2 time steps but the values have 3"),
        ({"A": (np.zeros((3, 1)), np.zeros(3))}, r"1-D array \[T\]"),
        ({"A": (np.array([0.1, np.nan]), np.zeros(2))}, r"1 non-finite"),
        ({"A": (np.zeros(2), np.array([0, 2]))}, r"must be 0/1"),
    ],
)
def test_bad_results_are_refused(results, match):
    for evaluate in (evaluate_per_entity, evaluate_concatenated):
        with pytest.raises(ValueError, match=match):
            evaluate(results, hits_at_half)


def test_metric_rows_may_not_overwrite_protocol_keys():
    with pytest.raises(ValueError, match=r"already has the key\(s\) \['protocol'\]"):
        evaluate_concatenated(RESULTS, lambda s, lab: {"protocol": "mine"})
    with pytest.raises(TypeError, match=r"must return a dict"):
        evaluate_per_entity(RESULTS, lambda s, lab: 0.5)
    with pytest.raises(ValueError, match=r"nan_policy"):
        evaluate_per_entity(RESULTS, hits_at_half, nan_policy="ignore")


# --- normalisation ------------------------------------------------------------------------------

TRAIN = np.array([[0.0, 5.0, 1.0], [2.0, 5.0, 3.0], [4.0, 5.0, 5.0]])  # feature 1 is constant


def test_minmax_hand_computed_and_fitted_on_train_only():
    norm = fit_normaliser(TRAIN, "minmax")
    assert np.allclose(norm.transform(TRAIN), [[0, 0, 0], [0.5, 0, 0.5], [1, 0, 1]])
    test = np.array([[8.0, 6.0, -3.0]])
    # Outside the training range stays outside (no clipping by default); the constant feature moves in raw units.
    assert np.allclose(norm(test), [[2.0, 1.0, -1.0]])
    # Applying it to data of another range leaves the training statistics as they were.
    assert np.array_equal(norm.offset, [0, 5, 1]) and np.array_equal(norm.scale, [4, 1, 4])


def test_zscore_hand_computed_with_constant_feature():
    norm = fit_normaliser(TRAIN, "zscore")
    sd = np.sqrt(8 / 3)
    assert np.allclose(norm.offset, [2, 5, 3]) and np.allclose(norm.scale, [sd, 1, sd])
    out = norm.transform(np.array([[2.0 + sd, 5.0, 3.0]]))
    assert np.allclose(out, [[1.0, 0.0, 0.0]]) and np.isfinite(out).all()


def test_nearly_constant_float32_feature_counts_as_constant():
    col = np.full((1000, 1), 0.1, dtype=np.float32)
    norm = fit_normaliser(col, "zscore")
    assert norm.scale[0] == 1.0 and np.abs(norm(col)).max() < 1e-6


def test_clip_bounds_transformed_values():
    norm = fit_normaliser(TRAIN, "minmax", clip=(-0.5, 1.5))
    assert np.allclose(norm(np.array([[8.0, 6.0, -3.0]])), [[1.5, 1.0, -0.5]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "robust"}, r"method must be one of \('minmax', 'zscore'\)"),
        ({"clip": (1.0, 0.0)}, r"lo < hi"),
        ({"clip": (0.0, float("inf"))}, r"finite numbers"),
        ({"clip": 1.0}, r"pair \(lo, hi\)"),
    ],
)
def test_bad_normaliser_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_normaliser(TRAIN, **kwargs)


def test_normaliser_refuses_other_feature_counts_and_leaves_input_alone():
    norm = fit_normaliser(TRAIN)
    with pytest.raises(ValueError, match=r"2 features but the model was fitted on 3"):
        norm(TRAIN[:, :2])
    x = TRAIN.copy()
    norm(x)
    assert np.array_equal(x, TRAIN)


def test_check_series_accepts_lists_and_ints_as_float64():
    out = check_series([[1, 2], [3, 4]])
    assert out.dtype == np.float64 and out.shape == (2, 2)


def test_per_entity_thresholds_reach_their_own_entity():
    # Each entity's threshold is applied to that entity's scores only (alarms: score > threshold).
    results = {"a": (np.array([0.1, 0.9]), np.array([0, 1])), "b": (np.array([5.0, 6.0]), np.array([1, 0]))}

    def alarm_rate(scores, labels, threshold):
        return {"alarm_rate": float((scores > threshold).mean())}

    rows = evaluate_entities(results, alarm_rate, thresholds={"a": 0.5, "b": 5.5})
    assert [r["alarm_rate"] for r in rows] == [0.5, 0.5]
    assert evaluate_per_entity(results, alarm_rate, thresholds={"a": 0.0, "b": 10.0})["alarm_rate"] == 0.5
    with pytest.raises(ValueError, match=r"missing \['b'\], unknown \['c'\]"):
        evaluate_entities(results, alarm_rate, thresholds={"a": 0.5, "c": 1.0})


# Entities a..d sorted, two folds: {a, c} and {b, d}. Span 1 is best on b and d, span 10 on a and c, so each
# fold gets the candidate that won on the OTHER fold, never its own winner (hand-computed means below).
CROSS_QUALITY = {
    1: {"a": 0.1, "b": 0.6, "c": 0.2, "d": 0.4},  # fold {a, c}: mean 0.15; fold {b, d}: 0.5
    10: {"a": 0.5, "b": 0.3, "c": 0.7, "d": 0.3},  # fold {a, c}: mean 0.6;  fold {b, d}: 0.3
}


def test_cross_fit_choice_picks_on_the_other_fold():
    chosen = cross_fit_choice(CROSS_QUALITY)
    # {a, c} is scored with the choice made on {b, d} (1: 0.5 > 0.3), {b, d} with {a, c}'s (10: 0.6 > 0.15)
    assert chosen == {"a": 1, "c": 1, "b": 10, "d": 10}
    # an oracle choice (each fold its own winner) would be the opposite on every entity
    assert all(chosen[e] != max(CROSS_QUALITY, key=lambda c: CROSS_QUALITY[c][e]) for e in "abcd")


def test_cross_fit_choice_folds_round_robin_over_sorted_names_and_ties_go_first():
    # three folds over c, a, b (given unsorted): sorted a | b | c, each fold chosen on the two others
    quality = {"x": {"c": 1.0, "a": 0.0, "b": 0.0}, "y": {"c": 0.0, "a": 1.0, "b": 0.5}}
    # a: mean over b, c -> x 0.5, y 0.25 -> x; b: over a, c -> x 0.5, y 0.5 -> tie, x listed first; c: over a, b -> y
    assert cross_fit_choice(quality, n_folds=3) == {"a": "x", "b": "x", "c": "y"}
    swapped = {"y": quality["y"], "x": quality["x"]}
    assert cross_fit_choice(swapped, n_folds=3)["b"] == "y"  # the tie now goes to y, listed first


@pytest.mark.parametrize(
    ("quality", "n_folds", "match"),
    [
        (CROSS_QUALITY, 1, "n_folds must be an integer >= 2"),
        (CROSS_QUALITY, True, "n_folds must be an integer >= 2"),
        (CROSS_QUALITY, 5, "4 entities cannot fill 5 folds"),
        ({}, 2, "quality is empty"),
        ({1: {"a": 0.1, "b": 0.2}, 2: {"a": 0.1, "c": 0.2}}, 2, "score every candidate on the same entities"),
        ({1: {"a": 0.1, "b": float("nan")}}, 2, "entity 'b' is nan; every quality must be a finite number"),
        ({1: {"a": 0.1, "b": None}}, 2, "entity 'b' is None"),
    ],
)
def test_cross_fit_choice_refuses_bad_input(quality, n_folds, match):
    with pytest.raises(ValueError, match=match):
        cross_fit_choice(quality, n_folds=n_folds)
