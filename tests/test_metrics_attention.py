import numpy as np
import pytest

from tgad_lite.metrics import attention_entropy, uniform_entropy


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
