"""Windows, leakage-free time splits and robust per-service normalisation (issue 10, items 3-4 inputs)."""

from __future__ import annotations

import warnings
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from tgad_lite.data.microservices import (
    ServiceWindows,
    fit_service_normaliser,
    make_windows,
    robust_center_scale,
    shop_graph,
    simulate,
    time_split,
)


def _series(t: int = 20, n: int = 3, f: int = 2) -> SimpleNamespace:
    """x[t, n, f] = 100 t + 10 n + f: every value says where it came from."""
    x = (100 * np.arange(t)[:, None, None] + 10 * np.arange(n)[None, :, None] + np.arange(f)).astype(np.float32)
    labels = np.zeros((t, n), dtype=np.int8)
    labels[7, 1] = labels[12, 2] = 1
    return SimpleNamespace(x=x, mask=np.ones_like(x, dtype=bool), labels=labels)


@pytest.fixture(scope="module")
def hard():
    return simulate(shop_graph(), steps=400, seed=11, num_incidents=6, regime="hard")


# ----------------------------------------------------------------------------- make_windows


def test_windows_hold_the_right_steps_and_the_last_steps_label():
    s = _series()
    w = make_windows(s, window=4, stride=3, start=2, stop=17)
    assert w.t_end.tolist() == [5, 8, 11, 14]  # (17 - 2 - 4) // 3 + 1 = 4 windows, all inside [2, 17)
    assert w.x.shape == (4, 4, 3, 2) and w.mask.shape == w.x.shape and w.labels.shape == (4, 3)
    for b, t in enumerate(w.t_end):
        np.testing.assert_array_equal(w.x[b], s.x[t - 3 : t + 1])
        np.testing.assert_array_equal(w.labels[b], s.labels[t])
    assert w.labels[1, 1] == 0 and w.labels[2, 2] == 0  # labels at steps 7 / 12 are not last steps here
    assert make_windows(s, window=4, start=4, stop=9).labels[:, 1].tolist() == [1, 0]  # t_end 7, 8


def test_windows_are_read_only_views_and_take_copies():
    s = _series()
    w = make_windows(s, window=5)
    assert np.shares_memory(w.x, s.x) and np.shares_memory(w.mask, s.mask)  # no copy
    assert not w.x.flags.writeable and not w.labels.flags.writeable
    with pytest.raises(ValueError):
        w.x[0, 0, 0, 0] = 1.0  # overlapping windows share memory: writing is refused
    batch = w.take([3, 0])
    assert batch.x.flags.c_contiguous and batch.x.flags.writeable and not np.shares_memory(batch.x, s.x)
    np.testing.assert_array_equal(batch.x[0], w.x[3])
    assert batch.t_end.tolist() == [7, 4]
    picked = w.take(w.t_end % 2 == 0)
    assert (picked.t_end % 2 == 0).all() and len(picked) == int((w.t_end % 2 == 0).sum())


def test_windows_keep_nan_and_mask_of_partial_observability(hard):
    w = make_windows(hard, window=6)
    assert w.x.dtype == np.float32 and np.isnan(w.x).any()
    np.testing.assert_array_equal(np.isnan(w.x), ~w.mask)  # NaN exactly where unobserved, never a zero


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(window=0), "window must be >= 1"),
        (dict(window=21), "fewer than one window"),
        (dict(window=3, stride=0), "stride must be >= 1"),
        (dict(window=3, start=5, stop=5), "0 <= start < stop"),
        (dict(window=3, stop=99), "0 <= start < stop"),
        (dict(window=3.0), "window must be an int"),
        (dict(window=True), "window must be an int"),
    ],
)
def test_make_windows_refuses_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make_windows(_series(), **kwargs)


def test_make_windows_refuses_what_is_not_telemetry():
    with pytest.raises(TypeError, match="Telemetry"):
        make_windows(np.zeros((10, 2, 2)), window=3)
    s = _series()
    with pytest.raises(ValueError, match="mask"):
        make_windows(SimpleNamespace(x=s.x, mask=s.mask[:, :2], labels=s.labels), window=3)
    with pytest.raises(ValueError, match="labels"):
        make_windows(SimpleNamespace(x=s.x, mask=s.mask, labels=s.labels[:, :2]), window=3)
    with pytest.raises(ValueError, match="labels must be"):
        ServiceWindows(
            x=np.zeros((2, 3, 4, 1)), mask=np.ones((2, 3, 4, 1), bool), labels=np.zeros((2, 3)), t_end=np.arange(2)
        )


# ----------------------------------------------------------------------------- time_split


@pytest.mark.parametrize("window", [1, 4, 9])
def test_time_split_windows_never_straddle_a_cut(window):
    s = _series(t=60)
    split = time_split(s, window, fractions=(0.5, 0.25, 0.25), normalise=False)
    assert split.spans == ((0, 30), (30, 45), (45, 60))
    targets = []
    for part, (lo, hi) in zip((split.train, split.val, split.test), split.spans, strict=True):
        first_step = part.t_end - window + 1
        assert (first_step >= lo).all() and (part.t_end < hi).all()
        # the windows' values come from their own span only (x encodes the step as 100 t)
        steps = np.unique(part.x[..., 0, 0] // 100)
        assert steps.min() >= lo and steps.max() < hi
        targets.append(part.t_end)
    # the first window - 1 steps after each cut are context only: exactly that gap of targets is dropped
    assert split.train.t_end[-1] == 29 and split.val.t_end[0] == 30 + window - 1
    assert split.val.t_end[-1] == 44 and split.test.t_end[0] == 45 + window - 1
    dropped = sorted(set(range(60)) - set(np.concatenate(targets).tolist()))
    assert dropped == [t for lo in (0, 30, 45) for t in range(lo, lo + window - 1)]


def test_time_split_normalises_with_training_statistics_only(hard):
    split = time_split(hard, window=8, fractions=(0.6, 0.2, 0.2))
    c1 = split.spans[0][1]
    # the statistics come from the training span: rewriting everything after it changes nothing
    later = hard.x.copy()
    later[c1:] = np.where(hard.mask[c1:], later[c1:] * 50 + 1000, np.nan)
    moved = time_split(replace(hard, x=later), window=8)
    np.testing.assert_array_equal(split.normaliser.center, moved.normaliser.center)
    np.testing.assert_array_equal(split.normaliser.scale, moved.normaliser.scale)
    # ... and on the training span the normalised data have median 0 and IQR 1.349 per observed (service, metric)
    train = split.normaliser.transform(np.where(hard.mask[:c1], hard.x[:c1], np.nan))
    observed = hard.mask[:c1].all(axis=0)
    center, scale = robust_center_scale(train, axis=0)
    np.testing.assert_allclose(center[observed], 0.0, atol=1e-5)
    np.testing.assert_allclose(scale[observed], 1.0, rtol=1e-4)
    # windows are views of the normalised series, NaN kept; labels untouched
    t = int(split.test.t_end[0])
    np.testing.assert_array_equal(split.test.x[0, -1], split.normaliser.transform(hard.x[t]))
    np.testing.assert_array_equal(split.test.labels[0], hard.labels[t])
    np.testing.assert_array_equal(np.isnan(split.test.x), ~split.test.mask)


@pytest.mark.parametrize(
    ("fractions", "match"),
    [
        ((0.6, 0.2), "three positive numbers"),
        ((0.6, 0.3, 0.2), "summing to 1"),
        ((1.2, -0.1, -0.1), "three positive numbers"),
        ((0.9, 0.05, 0.05), "the val span"),
        ("abc", "three numbers"),
    ],
)
def test_time_split_refuses_bad_fractions(fractions, match):
    with pytest.raises((ValueError, TypeError), match=match):
        time_split(_series(t=100), window=8, fractions=fractions)


# ----------------------------------------------------------------------------- robust statistics


def test_robust_center_scale_matches_numpy_and_a_hand_case():
    # hand: [1, 2, 3, 10] -> median 2.5; |dev| = 1.5, .5, .5, 7.5 -> MAD 1.0; IQR (linear) 4.75 - 1.75 = 3
    c, s = robust_center_scale(np.array([1.0, 2, 3, 10]), method="mad")
    assert c == 2.5 and s == pytest.approx(1.482602218505602)
    c, s = robust_center_scale(np.array([1.0, 2, 3, 10]), method="iqr")
    assert s == pytest.approx(3.0 / 1.3489795003921634)
    r = np.random.default_rng(0).normal(size=(101, 5))
    r[::7, 2] = np.nan
    c, s = robust_center_scale(r, axis=0)
    np.testing.assert_allclose(c, np.nanmedian(r, axis=0))
    iqr = np.nanpercentile(r, 75, axis=0) - np.nanpercentile(r, 25, axis=0)
    np.testing.assert_allclose(s, iqr / 1.3489795003921634)


def test_robust_center_scale_is_nan_for_empty_columns_without_warnings():
    v = np.array([[1.0, np.nan], [2.0, np.nan], [4.0, np.inf]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c, s = robust_center_scale(v, method="mad")
        c3, _ = robust_center_scale(v, min_count=4)
    assert c[0] == 2.0 and np.isnan(c[1]) and np.isnan(s[1]) and np.isnan(c3).all()
    with pytest.raises(ValueError, match="method"):
        robust_center_scale(v, method="std")


def test_normaliser_handles_unobserved_and_constant_pairs():
    x = np.random.default_rng(1).normal(size=(50, 3, 2)) * 5 + 7
    x[:, 0, :] = np.nan  # service 0 never observed
    x[:, 1, 1] = 3.0  # constant
    norm = fit_service_normaliser(x)
    assert (norm.center[0] == 0).all() and (norm.scale[0] == 1).all()
    assert norm.center[1, 1] == 3.0 and norm.scale[1, 1] == 1.0  # centred, not scaled
    out = norm.transform(x)
    assert out.dtype == np.float32 and np.isnan(out[:, 0]).all() and (out[:, 1, 1] == 0).all()
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        norm.transform(x[:, :2])
    with pytest.raises(ValueError, match="mask"):
        fit_service_normaliser(x, mask=np.ones((50, 3, 2)))
