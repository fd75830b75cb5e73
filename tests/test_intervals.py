"""Label/interval helpers (tgad_lite.intervals): 0/1 labels <-> inclusive anomaly ranges."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from tgad_lite.intervals import check_labels, label_ranges, ranges_to_labels

# Hand-computed: (labels [T], ranges with inclusive ends).
CASES = [
    ([], []),
    ([0, 0, 0], []),
    ([1, 1, 1, 1], [(0, 3)]),  # all ones: one range over the whole series
    ([1], [(0, 0)]),
    ([0], []),
    ([1, 1, 0, 0, 1], [(0, 1), (4, 4)]),  # ranges touching both ends
    ([0, 1, 0, 1, 1, 0], [(1, 1), (3, 4)]),
    ([0, 0, 1, 1, 1], [(2, 4)]),  # a range running to the last step
    ([1, 0, 1, 0, 1, 0, 1], [(0, 0), (2, 2), (4, 4), (6, 6)]),  # one-step ranges
]


@pytest.mark.parametrize(("labels", "ranges"), CASES)
def test_label_ranges_hand_computed(labels, ranges):
    assert label_ranges(np.array(labels, dtype=int)) == ranges


@pytest.mark.parametrize(("labels", "ranges"), CASES)
def test_ranges_to_labels_is_the_inverse(labels, ranges):
    out = ranges_to_labels(ranges, len(labels))
    assert out.dtype == np.int8 and out.shape == (len(labels),)
    np.testing.assert_array_equal(out, labels)


def test_label_ranges_accepts_bool_float_lists_and_tensors():
    expected = [(1, 2), (4, 4)]
    assert label_ranges([0, 1, 1, 0, 1]) == expected
    assert label_ranges(np.array([0.0, 1.0, 1.0, 0.0, 1.0])) == expected
    assert label_ranges(np.array([False, True, True, False, True])) == expected
    assert label_ranges(torch.tensor([0, 1, 1, 0, 1], dtype=torch.uint8)) == expected
    assert label_ranges(torch.tensor([False, True, True, False, True])) == expected
    # Plain Python ints out, not numpy scalars (they go into JSON metrics).
    assert all(type(b) is int for r in label_ranges([0, 1, 1]) for b in r)


def test_random_labels_round_trip_and_ranges_are_maximal():
    rng = np.random.default_rng(0)
    labels = (rng.random(500) < 0.3).astype(np.int8)
    ranges = label_ranges(labels)
    np.testing.assert_array_equal(ranges_to_labels(ranges, len(labels)), labels)
    # Maximal: two ranges are never adjacent (else they would be one), and each is non-empty.
    assert all(b[0] > a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(s <= e for s, e in ranges)


@pytest.mark.parametrize(
    ("bad", "shown"),
    [([0, 0.7, 1], "0.7"), ([0, 2, 1], "2"), ([0, -1], "-1"), ([0.0, np.nan], "nan")],
)
def test_scores_and_other_values_are_refused_naming_value_position_and_fix(bad, shown):
    with pytest.raises(ValueError, match="0/1") as err:
        label_ranges(np.array(bad))
    message = str(err.value)
    assert shown in message and "position (1,)" in message and "threshold" in message


def test_non_numeric_and_two_dimensional_labels_are_refused():
    with pytest.raises(ValueError, match="dtype"):
        label_ranges(np.array(["0", "1"]))
    with pytest.raises(ValueError, match="1-D"):
        label_ranges(np.zeros((3, 2), dtype=int))
    with pytest.raises(ValueError, match="1-D"):
        label_ranges(np.int64(1))


def test_check_labels_checks_length_and_keeps_2d():
    out = check_labels(np.array([[0, 1], [1, 0]]), length=2)
    assert out.dtype == np.int8 and out.shape == (2, 2)
    with pytest.raises(ValueError, match="3 time steps but the values have 4"):
        check_labels([0, 1, 0], length=4)
    with pytest.raises(ValueError, match="^predictions must be 0/1"):
        check_labels([0.5], name="predictions")


def test_ranges_to_labels_merges_overlaps_and_refuses_bad_ranges():
    np.testing.assert_array_equal(ranges_to_labels([(1, 3), (2, 4), (5, 5)], 7), [0, 1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(ranges_to_labels([], 3), [0, 0, 0])
    assert ranges_to_labels([], 0).shape == (0,)
    np.testing.assert_array_equal(ranges_to_labels([(np.int64(0), np.int64(1))], 2), [1, 1])
    with pytest.raises(ValueError, match=r"range 1 \(5, 2\): start > end"):
        ranges_to_labels([(0, 0), (5, 2)], 10)
    with pytest.raises(ValueError, match=r"outside the series: steps run 0..9"):
        ranges_to_labels([(8, 10)], 10)
    with pytest.raises(ValueError, match="outside the series"):
        ranges_to_labels([(-1, 2)], 10)
    with pytest.raises(ValueError, match="whole time-step indices"):
        ranges_to_labels([(0.5, 2)], 10)
    with pytest.raises(ValueError, match=r"\(start, end_inclusive\) pair"):
        ranges_to_labels([(1, 2, 3)], 10)
    with pytest.raises(ValueError, match="length"):
        ranges_to_labels([], -1)


def test_intervals_imports_neither_viz_nor_metrics_nor_torch():
    code = (
        "import sys, tgad_lite.intervals; "
        "bad = [m for m in ('tgad_lite.viz', 'tgad_lite.metrics', 'torch', 'matplotlib') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_metrics_do_not_import_viz():
    code = "import sys, tgad_lite.metrics; print([m for m in sys.modules if m.startswith('tgad_lite.viz')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
