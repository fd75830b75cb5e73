"""Baseline detectors: shape contracts, that each finds an injected anomaly, seeding, training-only
statistics, the bounded kNN index, constant features, and refusal of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from tgad_lite.anomaly.baselines import (
    Detector,
    IsolationForestDetector,
    KNNDetector,
    MagnitudeDetector,
    PCADetector,
    RandomDetector,
    default_baselines,
)

T_TRAIN, T_TEST, F = 400, 200, 4
SPIKE = slice(120, 126)  # the injected anomaly in the test series


def correlated_series(t: int, seed: int) -> np.ndarray:
    """``[t, F]``: two slow sines mixed into 4 features, plus small noise (normal behaviour)."""
    rng = np.random.default_rng(seed)
    time = np.arange(t)
    sources = np.stack([np.sin(2 * np.pi * time / 50), np.cos(2 * np.pi * time / 37)], axis=1)
    mix = np.array([[1.0, 0.5, -0.8, 0.2], [0.3, -1.0, 0.4, 0.9]])
    return sources @ mix + 0.05 * rng.normal(size=(t, F))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    train = correlated_series(T_TRAIN, seed=0)
    test = correlated_series(T_TEST, seed=1)
    # Features 0 and 2 jump by 3 for a few steps, outside their training range (about +-1.3).
    test[SPIKE, 0] += 3.0
    test[SPIKE, 2] += 3.0
    return train, test


def non_random_detectors() -> list[Detector]:
    return [
        MagnitudeDetector("max"),
        MagnitudeDetector("l2"),
        PCADetector(n_components=2),
        PCADetector(0.9),
        KNNDetector(window=5, max_train_windows=200, seed=0),
        IsolationForestDetector(n_estimators=50, seed=0),
    ]


@pytest.mark.parametrize("det", non_random_detectors(), ids=lambda d: repr(d))
def test_injected_anomaly_scores_above_every_normal_point(det, data):
    train, test = data
    scores = det.fit(train).score(test)
    anomalous = np.zeros(T_TEST, dtype=bool)
    # kNN gives a window's score to its last step, so its alarm can trail the spike by window - 1 steps.
    anomalous[SPIKE.start : SPIKE.stop + getattr(det, "window", 1) - 1] = True
    assert scores[SPIKE].min() > scores[~anomalous].max()


@pytest.mark.parametrize("det", [RandomDetector(3), *non_random_detectors()], ids=lambda d: repr(d))
def test_shapes_dtype_and_input_untouched(det, data):
    train, test = data
    before = test.copy()
    assert det.fit(train) is det
    scores = det.score(test)
    assert scores.shape == (T_TEST,) and scores.dtype == np.float64 and np.isfinite(scores).all()
    assert np.array_equal(test, before)
    try:
        per_feature = det.score_features(test)
    except NotImplementedError as exc:
        assert det.name in str(exc) and "score(x)" in str(exc)
    else:
        assert per_feature.shape == (T_TEST, F) and np.isfinite(per_feature).all()


def test_per_feature_scores_point_at_the_broken_feature(data):
    train, test = data
    for det in (MagnitudeDetector(), PCADetector(n_components=2)):
        per_feature = det.fit(train).score_features(test)
        assert set(per_feature[SPIKE].argmax(axis=1)) <= {0, 2}, det.name


def test_reductions_of_per_feature_scores(data):
    train, test = data
    z = MagnitudeDetector().fit(train).score_features(test)
    assert np.allclose(MagnitudeDetector("max").fit(train).score(test), z.max(axis=1))
    assert np.allclose(MagnitudeDetector("l2").fit(train).score(test), np.linalg.norm(z, axis=1))
    pca = PCADetector(n_components=2).fit(train)
    assert np.allclose(pca.score(test), pca.score_features(test).sum(axis=1))


def test_magnitude_on_hand_computed_values():
    train = np.array([[0.0, 10.0], [2.0, 10.0], [4.0, 10.0]])  # mean 2, std sqrt(8/3); feature 1 constant
    det = MagnitudeDetector("l2").fit(train)
    x = np.array([[2.0 + np.sqrt(8 / 3), 13.0]])
    # z = (1, 3): the constant feature keeps its raw units (scale 1) instead of dividing by zero.
    assert np.allclose(det.score_features(x), [[1.0, 3.0]])
    assert np.allclose(det.score(x), [np.sqrt(10.0)])


def test_random_is_seeded_and_ignores_the_data(data):
    train, test = data
    a = RandomDetector(seed=7).fit(train)
    b = RandomDetector(seed=7).fit(train * 100 + 5)
    other = np.random.default_rng(99).normal(size=test.shape) * 1e3
    assert np.array_equal(a.score(test), b.score(other))
    assert np.array_equal(a.score_features(test), b.score_features(other))
    assert not np.array_equal(a.score(test), RandomDetector(seed=8).fit(train).score(test))
    scores = a.score(test)
    assert scores.min() >= 0.0 and scores.max() < 1.0


def test_standardisation_uses_training_statistics_only(data):
    train, test = data
    det = MagnitudeDetector().fit(train)
    mean, scale = det.normaliser_.offset.copy(), det.normaliser_.scale.copy()
    assert np.allclose(mean, train.mean(axis=0)) and np.allclose(scale, train.std(axis=0))
    shifted = test * 10 + 50  # a very different test distribution
    z = det.score_features(shifted)
    assert np.array_equal(det.normaliser_.offset, mean) and np.array_equal(det.normaliser_.scale, scale)
    assert np.allclose(z, np.abs((shifted - mean) / scale))


def test_knn_index_is_bounded_and_seeded(data):
    train, test = data
    n_windows = T_TRAIN - 5 + 1
    small = KNNDetector(window=5, max_train_windows=50, seed=1).fit(train)
    assert small.index_size_ == 50 and small.index_.n_samples_fit_ == 50
    again = KNNDetector(window=5, max_train_windows=50, seed=1).fit(train)
    assert np.array_equal(small.score(test), again.score(test))
    full = KNNDetector(window=5, max_train_windows=10_000).fit(train)
    assert full.index_size_ == n_windows
    # Fewer windows in the index can only make the nearest one farther away.
    assert (small.score(test) >= full.score(test) - 1e-9).all()


def test_knn_score_goes_to_the_last_step_of_each_window():
    train = np.zeros((20, 1))
    x = np.zeros((10, 1))
    x[6] = 1.0
    det = KNNDetector(window=3, max_train_windows=100).fit(train)  # constant train: z = x - 0
    scores = det.score(x, batch_size=2)  # several batches, to test their stitching
    # Windows ending at steps 6, 7, 8 contain the 1; the first window_-1 steps copy the first window's 0.
    assert np.allclose(scores, [0, 0, 0, 0, 0, 0, 1, 1, 1, 0])


def test_knn_scores_training_windows_at_zero_with_k1(data):
    train, _ = data
    det = KNNDetector(window=5, max_train_windows=10_000, k=1).fit(train)
    assert np.allclose(det.score(train), 0.0, atol=1e-6)  # documented: each training window is its own neighbour
    assert (KNNDetector(window=5, max_train_windows=10_000, k=2).fit(train).score(train)[4:] > 0).all()


def test_isolation_forest_is_seeded(data):
    train, test = data
    a = IsolationForestDetector(n_estimators=20, seed=4).fit(train).score(test)
    b = IsolationForestDetector(n_estimators=20, seed=4).fit(train).score(test)
    c = IsolationForestDetector(n_estimators=20, seed=5).fit(train).score(test)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("det", [RandomDetector(), *non_random_detectors()], ids=lambda d: repr(d))
def test_constant_features_give_finite_scores(det):
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.normal(size=300), np.full(300, 3.0), np.zeros(300), rng.normal(size=300)])
    test = np.column_stack([rng.normal(size=50), np.full(50, 4.0), np.zeros(50), rng.normal(size=50)])
    assert np.isfinite(det.fit(train).score(test)).all()


def test_all_constant_training_data_reconstructs_the_mean():
    det = PCADetector().fit(np.full((30, 2), 5.0))
    assert det.pca_ is None
    assert np.allclose(det.score_features(np.array([[5.0, 7.0]])), [[0.0, 4.0]])


def test_pca_keeping_every_component_warns(data):
    train, test = data
    with pytest.warns(UserWarning, match="all scores are 0"):
        det = PCADetector(n_components=F).fit(train)
    assert np.allclose(det.score(test), 0.0)


def test_default_baselines_have_distinct_names():
    names = [d.name for d in default_baselines()]
    assert len(set(names)) == len(names) == 6


def test_float32_and_list_inputs_are_accepted(data):
    train, test = data
    a = MagnitudeDetector().fit(train.astype(np.float32)).score(test.astype(np.float32).tolist())
    assert a.shape == (T_TEST,) and a.dtype == np.float64


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("det", [RandomDetector(), *non_random_detectors()], ids=lambda d: repr(d))
def test_scoring_before_fit_is_refused(det, data):
    with pytest.raises(RuntimeError, match=r"not fitted; call fit\(train\)"):
        det.score(data[1])


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros(10), r"2-D \[T, F\].*\w+\[:, None\]"),
        (np.zeros((10, 2, 2)), r"2-D \[T, F\]"),
        (np.zeros((0, F)), r"0 time steps"),
        (np.zeros((10, 0)), r"no features"),
        (np.array([[1.0, np.nan, 0, 0]] * 5), r"non-finite.*nan.*step 0, feature 1"),
        (np.array([[1.0, 0, 0, np.inf]] * 5), r"non-finite"),
        (np.array([["a", "b", "c", "d"]]), r"real numbers"),
        (np.ones((5, F), dtype=bool), r"real numbers"),
        (np.ones((5, F), dtype=complex), r"real numbers"),
    ],
)
def test_bad_series_are_refused_in_fit_and_score(bad, match, data):
    train, _ = data
    with pytest.raises(ValueError, match=match):
        MagnitudeDetector().fit(bad)
    with pytest.raises(ValueError, match=match):
        MagnitudeDetector().fit(train).score(bad)


@pytest.mark.parametrize("det", [RandomDetector(), *non_random_detectors()], ids=lambda d: repr(d))
def test_feature_count_mismatch_is_refused(det, data):
    train, test = data
    det.fit(train)
    with pytest.raises(ValueError, match=rf"3 features but the model was fitted on {F}"):
        det.score(test[:, :3])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MagnitudeDetector("mean"), r"reduce must be 'max' or 'l2'"),
        (lambda: PCADetector(1.0), r"fraction .* must be in \(0, 1\)"),
        (lambda: PCADetector(0), r"n_components must be an int >= 1"),
        (lambda: PCADetector(True), r"n_components must be"),
        (lambda: KNNDetector(window=0), r"window must be an int >= 1"),
        (lambda: KNNDetector(max_train_windows=2.5), r"max_train_windows must be an int"),
        (lambda: KNNDetector(k=0), r"k must be an int >= 1"),
        (lambda: RandomDetector(seed=-1), r"seed must be an int"),
        (lambda: IsolationForestDetector(max_samples="all"), r"max_samples must be an int"),
    ],
)
def test_bad_settings_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_refused_fit_leaves_the_previous_fit_intact(data):
    train, test = data
    det = PCADetector(n_components=3).fit(train)
    before = det.score(test)
    with pytest.raises(ValueError, match=r"at most 2 components exist"):
        det.fit(train[:2])  # 2 steps allow at most 2 components
    assert np.array_equal(det.score(test), before)
    knn = KNNDetector(window=5, max_train_windows=50).fit(train)
    before = knn.score(test)
    with pytest.raises(ValueError, match=r"fewer than the 5 needed"):
        knn.fit(train[:4])
    with pytest.raises(ValueError, match=r"fewer than k=3"):
        KNNDetector(window=5, k=3).fit(train[:6])
    assert np.array_equal(knn.score(test), before) and knn.index_size_ == 50


def test_knn_refuses_a_series_shorter_than_the_window(data):
    train, test = data
    det = KNNDetector(window=5, max_train_windows=50).fit(train)
    with pytest.raises(ValueError, match=r"x has 4 time steps, fewer than the 5 needed"):
        det.score(test[:4])


def test_pca_scores_carry_no_floating_point_noise_and_ignore_column_order():
    # Rank-deficient training data, as on MSL: column 3 = column 0 + column 1, columns 4 and 5 never
    # change. Test steps move freely inside the training span and flip column 4 between 0 and 1, so
    # in exact arithmetic every score is 0 or 1 (the residual is column 4's deviation alone). Unrounded,
    # reconstruction noise (~1e-16) gives almost every step its own score and an oracle threshold
    # ranks steps by it.
    rng = np.random.default_rng(0)
    base = rng.normal(size=(400, 3))
    train = np.column_stack([base, base[:, 0] + base[:, 1], np.zeros(400), np.ones(400)])
    moves = rng.normal(size=(300, 3)) * 3
    flips = (rng.random(300) < 0.3).astype(float)
    test = np.column_stack([moves, moves[:, 0] + moves[:, 1], flips, np.ones(300)])
    det = PCADetector(0.95).fit(train)
    assert det.pca_.n_components_ == 3  # the whole training span: the 0.95 cut needs every varying direction
    score = det.score(test)
    assert set(np.unique(score)) == {0.0, 1.0}
    assert np.array_equal(score, flips)
    for seed in range(5):
        perm = np.random.default_rng(seed).permutation(6)
        assert np.array_equal(PCADetector(0.95).fit(train[:, perm]).score(test[:, perm]), score)


def test_pca_resolution_follows_the_data_scale_without_standardising():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(200, 3)) * 1e-6  # tiny units: an absolute 1e-9 floor would zero every score
    det = PCADetector(2, standardise=False).fit(train)
    assert det.resolution_ == pytest.approx(1e-9 * train.var(axis=0).mean(), rel=1e-9)
    test = rng.normal(size=(50, 3)) * 1e-6
    assert (det.score(test) > 0).all()
