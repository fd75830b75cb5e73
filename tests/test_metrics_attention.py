import numpy as np
import pytest

from tgad_lite.metrics import attention_entropy, entropy_ratio, uniform_entropy


def test_entropy_of_uniform_and_one_hot_attention():
    index = np.array([0, 0, 0, 0, 1, 1, 2])
    uniform = np.array([0.25] * 4 + [0.5, 0.5, 1.0])
    np.testing.assert_allclose(attention_entropy(index, uniform, 4)[:, 0], [np.log(4), np.log(2), 0.0, 0.0])
    np.testing.assert_allclose(uniform_entropy(index, 4), [np.log(4), np.log(2), 0.0, 0.0])
    peaked = np.array([[1.0, 0.25], [0.0, 0.25], [0.0, 0.25], [0.0, 0.25], [0.9, 0.5], [0.1, 0.5], [1.0, 1.0]])
    ent = attention_entropy(index, peaked, 3)
    np.testing.assert_allclose(ent[:, 0], [0.0, -(0.9 * np.log(0.9) + 0.1 * np.log(0.1)), 0.0])
    np.testing.assert_allclose(ent[:, 1], [np.log(4), np.log(2), 0.0])


def test_entropy_rejects_unnormalised_attention():
    with pytest.raises(ValueError, match="sum to 1"):
        attention_entropy(np.array([0, 0]), np.array([0.7, 0.7]), 1)


def test_entropy_ratio_is_one_for_uniform_and_zero_for_one_hot_attention():
    # Node 0: 4 in-edges, node 1: 2, node 2: 1 (no choice: adds 0 to both sums).
    index = np.array([0, 0, 0, 0, 1, 1, 2])
    uniform = np.array([0.25] * 4 + [0.5, 0.5, 1.0])
    np.testing.assert_allclose(entropy_ratio(index, uniform, 3), [1.0])
    one_hot = np.array([1.0, 0, 0, 0, 0, 1.0, 1.0])
    np.testing.assert_allclose(entropy_ratio(index, one_hot, 3), [0.0])
    # Two heads: uniform on node 0 only, one-hot on node 1, then the reverse. Hand-computed:
    # head 1 = log 4 / (log 4 + log 2) = 2/3, head 2 = log 2 / (log 4 + log 2) = 1/3.
    mixed = np.array([[0.25, 1.0], [0.25, 0.0], [0.25, 0.0], [0.25, 0.0], [1.0, 0.5], [0.0, 0.5], [1.0, 1.0]])
    np.testing.assert_allclose(entropy_ratio(index, mixed, 3), [2 / 3, 1 / 3])


def test_entropy_ratio_undefined_without_a_choice():
    with pytest.raises(ValueError, match="undefined"):
        entropy_ratio(np.array([0, 1]), np.array([1.0, 1.0]), 2)


def test_bad_index_and_alpha_are_refused():
    alpha = np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="outside 0..1"):
        attention_entropy(np.array([0, 2]), alpha, 2)
    with pytest.raises(ValueError, match="outside 0..1"):
        attention_entropy(np.array([0, -1]), alpha, 2)  # would wrap to node 1 without the check
    with pytest.raises(ValueError, match="integer node ids"):
        attention_entropy(np.array([0.0, 0.0]), alpha, 1)
    with pytest.raises(ValueError, match="one row per edge"):
        attention_entropy(np.array([0, 0, 0]), alpha, 1)
    with pytest.raises(ValueError, match="non-negative"):
        attention_entropy(np.array([0, 0]), np.array([1.5, -0.5]), 1)
    with pytest.raises(ValueError, match="finite"):
        attention_entropy(np.array([0, 0]), np.array([np.nan, 1.0]), 1)
