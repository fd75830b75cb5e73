"""The streaming monitor (issue 11, items 1 and 2): exactness against the batch model, the cached
path, online normalisation (Welford), masks, freezing, alarms, errors, model swaps, the detector hook."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tgad_lite.anomaly.cascade import cascade_score
from tgad_lite.anomaly.threshold import SPOT
from tgad_lite.data.microservices import (
    fit_service_normaliser,
    make_windows,
    random_service_dag,
    shop_graph,
    simulate,
)
from tgad_lite.monitor import Monitor, OnlineNormaliser, StepResult, WelfordStats, replay_threshold
from tgad_lite.monitor.monitor import _Cascade, _SnapshotModel
from tgad_lite.temporal import TemporalGAT

WINDOW = 5
REF = 200


# Tiny models run fastest on one torch thread (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed: int = 0, **kwargs) -> TemporalGAT:
    torch.manual_seed(seed)
    return TemporalGAT(4, hidden=16, heads=2, **kwargs).eval()


@pytest.fixture(scope="module")
def hard():
    """The shop graph in the hard regime: unobserved services and missing metrics (masks)."""
    tel = simulate(shop_graph(), steps=360, seed=5, regime="hard", num_incidents=6)
    assert not tel.mask.all()  # the masks are exercised
    return tel


@pytest.fixture(scope="module")
def dag():
    graph = random_service_dag(30, edge_prob=0.08, seed=3)
    return simulate(graph, steps=320, seed=2, regime="hard", num_incidents=4)


def _batch_risk(model: TemporalGAT, z: np.ndarray, mask: np.ndarray, edge_index, window: int) -> np.ndarray:
    """``TemporalGAT.forward`` on ``make_windows`` of a normalised series ``z [T, N, F]``: risk ``[B, N]``."""
    series = SimpleNamespace(x=z, mask=mask, labels=np.zeros(z.shape[:2], dtype=np.int8))
    w = make_windows(series, window)
    with torch.no_grad():
        out = model(
            torch.from_numpy(np.array(w.x)),
            torch.tensor(np.asarray(edge_index)),
            torch.from_numpy(np.array(w.mask)),
        )
    return torch.sigmoid(out.logits.float()).double().numpy()


def _quiet(**options):
    """Thresholds that never fire (no alarms, so nothing is frozen)."""
    return {"risk_threshold": 1.0, "cascade_threshold": 1.0, **options}


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("recurrent", ["lstm", "gru", "mingru"])
def test_step_equals_the_batch_model_on_the_same_windows(hard, recurrent):
    """Fixed training normaliser: the replay's risk is TemporalGAT.forward on make_windows (1e-5)."""
    model = _model(recurrent=recurrent)
    norm = fit_service_normaliser(hard.x[:REF], hard.mask[:REF])
    monitor = Monitor(model, hard.graph.edge_index, normaliser=norm, window=WINDOW, **_quiet())
    results = [monitor.step(s.x, s.mask) for s in hard.steps(REF)]
    assert all(r.risk is None and r.cascade is None for r in results[: WINDOW - 1])
    got = np.stack([r.risk for r in results[WINDOW - 1 :]])
    want = _batch_risk(model, norm.transform(hard.x[REF:]), hard.mask[REF:], hard.graph.edge_index, WINDOW)
    assert got.shape == want.shape == (hard.num_steps - REF - WINDOW + 1, 8)
    assert np.abs(got - want).max() <= 1e-5
    cascade = np.array([r.cascade for r in results[WINDOW - 1 :]])
    np.testing.assert_allclose(cascade, cascade_score(want, hard.graph.edge_index), atol=1e-5)
    assert [r.step for r in results] == list(range(len(results)))


def test_step_equals_the_batch_model_with_online_statistics(dag):
    """Welford adaptation on: each snapshot normalised with the statistics of the reference plus every
    earlier step (an independent two-pass computation here), then the batch model on those windows."""
    model = _model(1)
    x, mask = dag.x.astype(np.float64), dag.mask
    monitor = Monitor(
        model,
        dag.graph.edge_index,
        normaliser=OnlineNormaliser.from_reference(x[:REF], mask[:REF]),
        window=WINDOW,
        **_quiet(),
    )
    got = [monitor.step(s.x, s.mask).risk for s in dag.steps(REF)]
    anchor = fit_service_normaliser(x[:REF], mask[:REF])

    def moments(upto: int) -> tuple[np.ndarray, np.ndarray]:
        v = np.where(mask[:upto], x[:upto], np.nan)
        return np.nanmean(v, axis=0), np.nanvar(v, axis=0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: unobserved services
        m0, v0 = moments(REF)
        z = np.empty((dag.num_steps - REF, *x.shape[1:]), dtype=np.float32)
        for i, t in enumerate(range(REF, dag.num_steps)):
            m, v = moments(t)
            has = ~np.isnan(m0)
            center = np.where(has, anchor.center + (m - m0), anchor.center)
            ratio = np.where(has & (np.nan_to_num(v0) > 0), v / np.where(v0 > 0, v0, 1.0), 1.0)
            z[i] = ((x[t] - center) / (anchor.scale * np.sqrt(ratio))).astype(np.float32)
    want = _batch_risk(model, z, mask[REF:], dag.graph.edge_index, WINDOW)
    assert np.abs(np.stack(got[WINDOW - 1 :]) - want).max() <= 1e-5
    # ... and the statistics moved: the centre is no longer the anchor's
    assert np.abs(monitor.normaliser.center - anchor.center).max() > 0


def test_cached_path_equals_the_full_forward_every_step(dag):
    """fast=True (snapshot cache) and fast=False (TemporalGAT.forward over the window) agree, step by step."""
    model = _model(2)
    norm = OnlineNormaliser.from_reference(dag.x[:REF], dag.mask[:REF])
    cached = Monitor(model, dag.graph.edge_index, normaliser=norm, window=WINDOW, **_quiet())
    naive = Monitor(
        model,
        dag.graph.edge_index,
        normaliser=OnlineNormaliser.from_reference(dag.x[:REF], dag.mask[:REF]),
        window=WINDOW,
        fast=False,
        **_quiet(),
    )
    worst = 0.0
    for s in dag.steps(REF):
        a, b = cached.step(s.x, s.mask), naive.step(s.x, s.mask)
        if a.risk is None:
            assert b.risk is None
            continue
        worst = max(worst, float(np.abs(a.risk - b.risk).max()))
    assert 0.0 <= worst <= 1e-5


@pytest.mark.parametrize("att_scale", [1.0, 1e4])
def test_snapshot_gatv2_equals_pyg(dag, att_scale, monkeypatch):
    """The target-sorted segment version of GATv2Conv equals PyG's forward on one snapshot: layer 0
    from the snapshot's input [N, 2F] (the input projection folded into its weights), later layers
    from h [N, D]. Scores scaled by 1e4 put some targets' scores far below the head's maximum (exp
    underflows): those layers must take the targets' own maxima (counted), and still agree."""
    model = _model(3)
    with torch.no_grad():
        for conv in model.convs:
            conv.att.mul_(att_scale)
    path = _SnapshotModel(model, dag.graph.edge_index, 30, WINDOW, torch.device("cpu"))
    assert path.fast_convs
    calls = []
    segment_reduce = torch.segment_reduce
    monkeypatch.setattr(torch, "segment_reduce", lambda *a, **k: calls.append(1) or segment_reduce(*a, **k))
    torch.manual_seed(0)
    inputs, h = torch.randn(30, 8), torch.randn(30, 16)
    for i, conv in enumerate(model.convs):
        with torch.no_grad():
            want = conv(model.input_proj(inputs) if i == 0 else h, path.msg)
            got = path._gatv2(i, inputs if i == 0 else h)
        assert torch.allclose(got, want, atol=1e-6)
    assert (len(calls) == len(model.convs)) if att_scale > 1 else not calls


@pytest.mark.parametrize("recurrent", ["lstm", "gru"])
@pytest.mark.parametrize("window", [1, 2, 5])
def test_hand_written_recurrence_equals_torch_recurrent_layer_in_float64(dag, recurrent, window):
    """The monitor's cell steps over the ring of cached gate inputs (LSTM gates reordered, input part
    and both biases folded in, first step from zero) equal nn.LSTM / nn.GRU from a zero state on
    every window of a stream, then the risk head: float64, 1e-12."""
    model = _model(4, recurrent=recurrent).double()
    path = _SnapshotModel(model, dag.graph.edge_index, 30, window, torch.device("cpu"))
    seq = torch.randn(window + 12, 30, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    worst, spread = 0.0, 0.0
    with torch.inference_mode():
        for t in range(seq.shape[0]):  # seq[t]: the encoder's output at step t, [N, D]
            torch.addmm(path.b_in, seq[t], path.w_ih_t, out=path.gates_ring[t % window])
            if t < window - 1:
                continue
            got = path.risk_logits(t)
            states, _ = model.rnn(seq[t - window + 1 : t + 1].transpose(0, 1))  # [N, S, D]
            want = model.head(states[:, -1]).view(-1)
            worst = max(worst, float((got - want).abs().max()))
            spread = max(spread, float(want.std()))
    assert worst <= 1e-12
    assert spread > 1e-3  # the logits are not all alike: the comparison could fail


@pytest.mark.parametrize("window", [1, 2, 3, 5])
def test_mingru_window_needs_no_product_and_equals_the_cell_in_float64(dag, window):
    """minGRU: encode stores each step's coefficients (a, b) (MinGRU.coefficients of the encoder
    output); advance composes them into block aggregates, and the window's state is multiply-adds
    only, equal to MinGRU.forward from a zero state on every window of a stream (several blocks,
    every offset in a block), then the risk head: float64, 1e-12. A second path loaded from the
    first's saved cache after any step (import_gates, restore) holds the same aggregates bit for bit."""
    model = _model(4, recurrent="mingru").double()
    path = _SnapshotModel(model, dag.graph.edge_index, 30, window, torch.device("cpu"))
    twin = _SnapshotModel(model, dag.graph.edge_index, 30, window, torch.device("cpu"))
    assert not hasattr(path, "w_hh_t")  # no hidden-to-hidden weights to multiply by
    inputs = torch.randn(4 * window + 3, 30, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    worst, spread, restored = 0.0, 0.0, 0
    with torch.inference_mode():
        encoded = []
        for t in range(inputs.shape[0]):
            path.encode(inputs[t], t % window)
            path.advance(t)
            h = model.input_proj(inputs[t])  # the encoder, as TemporalGAT.forward runs it on one snapshot
            for i, norm in enumerate(model.norms):
                h = norm(h + torch.nn.functional.elu(model.convs[i](h, path.msg)))
            encoded.append(h)
            a, b = model.rnn.coefficients(h)
            assert torch.allclose(path.export_gates()[t % window], torch.cat([a, b], dim=1), atol=1e-12)
            twin.import_gates(path.export_gates())
            twin.restore(t)
            r = t % window
            assert torch.equal(twin.prefix_a, path.prefix_a) and torch.equal(twin.prefix_b, path.prefix_b)
            if t >= window:  # the last block's suffixes the rest of this block reads
                assert torch.equal(twin.suffix_b[r + 1 :], path.suffix_b[r + 1 :])
                restored += r + 1 < window
            if t < window - 1:
                continue
            got = path.risk_logits(t)
            assert torch.equal(twin.risk_logits(t), got)
            _, last = model.rnn(torch.stack(encoded[t - window + 1 : t + 1], dim=1))  # [N, S, D] -> [1, N, D]
            want = model.head(last[0]).view(-1)
            worst = max(worst, float((got - want).abs().max()))
            spread = max(spread, float(want.std()))
    assert worst <= 1e-12
    assert spread > 1e-3  # the logits are not all alike: the comparison could fail
    assert restored > 0 or window == 1  # suffixes were rebuilt and compared


def test_cascade_operator_equals_cascade_score():
    ei = np.array([[0, 1, 1, 2, 3, 3, 0], [1, 2, 2, 3, 3, 4, 4]])  # a duplicate edge and a self loop
    risk = np.random.default_rng(0).random((20, 6))
    op = _Cascade(ei, 6)
    assert np.array_equal(np.array([op(r) for r in risk]), cascade_score(risk, ei))
    assert _Cascade(np.zeros((2, 0), dtype=np.int64), 6)(risk[0]) == 0.0


def test_graph_free_model_streams_exactly(hard):
    model = _model(graph=False)
    norm = fit_service_normaliser(hard.x[:REF], hard.mask[:REF])
    monitor = Monitor(model, hard.graph.edge_index, normaliser=norm, window=WINDOW, **_quiet())
    got = np.stack([r.risk for r in monitor.run(hard.x[REF:], hard.mask[REF:])[WINDOW - 1 :]])
    want = _batch_risk(model, norm.transform(hard.x[REF:]), hard.mask[REF:], hard.graph.edge_index, WINDOW)
    assert np.abs(got - want).max() <= 1e-5


# ----------------------------------------------------------------------------- Welford and the normaliser


def test_welford_hand_computed_cases():
    stats = WelfordStats((1, 1))
    for v in (1.0, 2.0, 3.0, 4.0):
        stats.update(np.array([[v]]), np.array([[True]]))
    assert stats.mean[0, 0] == 2.5 and stats.variance[0, 0] == pytest.approx(1.25, abs=1e-15)
    # Exponential forgetting, decay 1/2: weights (0.5, 1) on (0, 2): mean 4/3, variance 8/9.
    decayed = WelfordStats((1, 1), decay=0.5)
    for v in (0.0, 2.0):
        decayed.update(np.array([[v]]), np.array([[True]]))
    assert decayed.weight[0, 0] == 1.5
    assert decayed.mean[0, 0] == pytest.approx(4 / 3, abs=1e-15)
    assert decayed.variance[0, 0] == pytest.approx(8 / 9, abs=1e-15)
    with pytest.raises(ValueError, match="decay"):
        WelfordStats((1, 1), decay=0.0)


def test_welford_is_numerically_stable_where_the_textbook_formula_fails():
    """Values 1e9 + unit noise: Welford's variance matches the two-pass one; E[x^2] - E[x]^2 does not."""
    rng = np.random.default_rng(1)
    x = 1e9 + rng.normal(0.0, 1.0, size=(2000, 1, 1))
    stats = WelfordStats((1, 1))
    stats.update_many(x, np.ones_like(x, dtype=bool))
    two_pass = float(np.var(x))
    assert stats.variance[0, 0] == pytest.approx(two_pass, rel=1e-6)
    naive = float(np.mean(x**2) - np.mean(x) ** 2)
    assert abs(naive - two_pass) > 10 * two_pass  # catastrophic cancellation: not even the right magnitude


def test_masked_values_never_enter_the_statistics():
    rng = np.random.default_rng(2)
    x = rng.normal(5.0, 2.0, size=(50, 3, 2))
    mask = rng.random(x.shape) > 0.3
    garbage = np.where(mask, x, 1e12)  # what sits under the mask must not matter
    a, b = WelfordStats((3, 2)), WelfordStats((3, 2))
    a.update_many(np.where(mask, x, np.nan), mask)
    b.update_many(garbage, mask)
    assert np.array_equal(a.mean, b.mean) and np.array_equal(a.m2, b.m2)
    observed = np.where(mask, x, np.nan)
    np.testing.assert_allclose(a.mean, np.nanmean(observed, axis=0), rtol=1e-12)
    np.testing.assert_allclose(a.variance, np.nanvar(observed, axis=0), rtol=1e-10)
    assert np.array_equal(a.weight, mask.sum(axis=0))


def test_online_normaliser_starts_as_the_training_normaliser_bit_for_bit(hard):
    norm = fit_service_normaliser(hard.x[:REF], hard.mask[:REF])
    online = OnlineNormaliser(norm, (hard.x[:REF], hard.mask[:REF]))
    assert np.array_equal(online.transform(hard.x[REF]), norm.transform(hard.x[REF]), equal_nan=True)
    same = OnlineNormaliser.from_reference(hard.x[:REF], hard.mask[:REF])
    assert np.array_equal(same.center, norm.center) and np.array_equal(same.scale, norm.scale)
    with pytest.raises(ValueError, match="reference"):
        OnlineNormaliser(norm)  # adapt=True without reference data
    with pytest.raises(ValueError, match="ServiceNormaliser"):
        OnlineNormaliser(np.zeros((8, 4)))


def test_online_normaliser_follows_a_level_shift():
    """After a shift of +10 in one metric the centre moves towards it and z of the new normal shrinks."""
    rng = np.random.default_rng(3)
    ref = rng.normal(0.0, 1.0, size=(300, 2, 1))
    online = OnlineNormaliser.from_reference(ref)
    shifted = rng.normal(10.0, 1.0, size=(300, 2, 1))
    z_first = online.transform(shifted[0])
    for t in range(300):
        online.update(shifted[t], np.ones((2, 1), dtype=bool))
    z_last = online.transform(shifted[-1])
    assert np.all(np.abs(z_last) < np.abs(z_first) / 2)
    # cumulative statistics: the mean of reference + stream is half-way, and the centre moved by that
    moved = online.center - online.anchor_center
    np.testing.assert_allclose(moved, np.concatenate([ref, shifted]).mean(axis=0) - ref.mean(axis=0), rtol=1e-9)


# ----------------------------------------------------------------------------- masks and errors


def test_masked_values_reach_the_model_as_missing_not_as_numbers(hard):
    """What sits under mask=False does not change the risk; the same number marked observed does."""
    model = _model(4)
    norm = fit_service_normaliser(hard.x[:REF], hard.mask[:REF])

    def last_risk(x_last, mask_last):
        mon = Monitor(model, hard.graph.edge_index, normaliser=norm, window=WINDOW, **_quiet())
        for s in hard.steps(REF, REF + WINDOW - 1):
            mon.step(s.x, s.mask)
        return mon.step(x_last, mask_last).risk

    step = next(hard.steps(REF + WINDOW - 1))
    x, m = step.x.copy(), step.mask.copy()
    m[2, 1] = False
    a = last_risk(np.where(m, x, np.nan), m)
    b = last_risk(np.where(m, x, 1e6), m)
    assert np.array_equal(a, b)
    zero_observed = np.where(m, x, 0.0)
    c = last_risk(zero_observed, m | (np.arange(8)[:, None] == 2) & (np.arange(4)[None] == 1))
    assert np.abs(a - c).max() > 1e-6  # a zero reading is not the same as a missing one


def _state(mon: Monitor) -> tuple:
    return (mon.step_count, mon.raw.copy(), mon.mask.copy(), mon.normaliser.stats.weight.copy())


@pytest.mark.parametrize(
    ("x", "mask", "match"),
    [
        (np.zeros((3, 8, 4)), None, "ONE step"),
        (np.zeros((9, 4)), None, "watches N = 8"),
        (np.zeros((8, 3)), None, "reads F = 4"),
        (np.full((8, 4), np.nan), None, r"mask=np\.isfinite"),
        (np.full((8, 4), np.nan), np.ones((8, 4), dtype=bool), "where mask says observed"),
        (np.zeros((8, 4)), np.ones((8, 4)), "bool"),
        (np.zeros((8, 4)), np.ones((4, 8), dtype=bool), "bool array"),
        (np.array([["a"] * 4] * 8), None, "numeric"),
    ],
)
def test_bad_steps_are_refused_clearly_and_change_nothing(hard, x, mask, match):
    norm = fit_service_normaliser(hard.x[:REF], hard.mask[:REF])
    mon = Monitor(_model(), hard.graph.edge_index, normaliser=OnlineNormaliser(norm, (hard.x[:REF], None)), window=3)
    for s in hard.steps(REF, REF + 2):
        mon.step(s.x, s.mask)
    before = _state(mon)
    with pytest.raises(ValueError, match=match):
        mon.step(x, mask)
    after = _state(mon)
    assert before[0] == after[0]
    for a, b in zip(before[1:], after[1:], strict=True):
        assert np.array_equal(a, b, equal_nan=True)


def test_bad_construction_is_refused(hard):
    norm = fit_service_normaliser(hard.x[:REF], hard.mask[:REF])
    ei = hard.graph.edge_index
    with pytest.raises(ValueError, match="OnlineNormaliser"):
        Monitor(_model(), ei, normaliser=None, window=3)
    with pytest.raises(ValueError, match="N = 8"):
        Monitor(_model(), np.array([[0], [8]]), normaliser=norm, window=3)
    with pytest.raises(ValueError, match="metric_names"):
        Monitor(_model(), ei, normaliser=norm, window=3, metric_names=["a", "b"])
    with pytest.raises(ValueError, match="window"):
        Monitor(_model(), ei, normaliser=norm, window=0)
    with pytest.raises(ValueError, match="spot"):
        Monitor(_model(), ei, normaliser=norm, window=3, risk_threshold="pot")
    with pytest.raises(ValueError, match="q="):
        Monitor(_model(), ei, normaliser=norm, window=3, spot_q=0.5)
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="F = 4"):
        Monitor(TemporalGAT(3, hidden=8, heads=2), ei, normaliser=norm, window=3)


# ----------------------------------------------------------------------------- alarms and freezing


def test_alarms_follow_streaming_spot_on_the_max_risk_and_the_cascade(dag):
    """An independent SPOT fed the same max-risk (cascade) stream alarms at exactly the same steps;
    alarmed services are those above the threshold in force; nothing alarms while calibrating."""
    calibration, q = 40, 0.02
    mon = Monitor(
        _model(5),
        dag.graph.edge_index,
        normaliser=OnlineNormaliser.from_reference(dag.x[:REF], dag.mask[:REF]),
        window=WINDOW,
        calibration=calibration,
        spot_q=q,
        spot_level=0.9,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = [r for r in (mon.step(s.x, s.mask) for s in dag.steps(REF)) if r.risk is not None]
        peak = np.array([r.risk.max() for r in results])
        cascade = np.array([r.cascade for r in results])
        # the risk SPOT works on logit(max risk) and reports its threshold as a probability
        logit = np.log(peak) - np.log1p(-peak)
        sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
        for scores, back, flags, thresholds in (
            (logit, sigmoid, [r.alarms.any() for r in results], [r.risk_threshold for r in results]),
            (cascade, lambda v: v, [r.system_alarm for r in results], [r.cascade_threshold for r in results]),
        ):
            assert not any(flags[:calibration]) and all(t is None for t in thresholds[:calibration])
            spot = SPOT(q, 0.9).fit(scores[:calibration])
            want_alarm, want_thr = spot.run(scores[calibration:])
            assert np.array_equal(np.array(flags[calibration:]), want_alarm)
            np.testing.assert_allclose(np.array(thresholds[calibration:], dtype=float), back(want_thr), rtol=1e-12)
        # replay_threshold over the logged scores gives the monitor's own alarms and thresholds
        for scores, logit_units, flags, thresholds in (
            (peak, True, [r.alarms.any() for r in results], [r.risk_threshold for r in results]),
            (cascade, False, [r.system_alarm for r in results], [r.cascade_threshold for r in results]),
        ):
            alarms, thr = replay_threshold(scores, q=q, level=0.9, calibration=calibration, logit=logit_units)
            assert np.array_equal(alarms, np.array(flags))
            want = np.array([np.nan if t is None else t for t in thresholds], dtype=float)
            np.testing.assert_array_equal(thr, want)
    alarmed = [r for r in results if r.alarms.any()]
    assert alarmed, "q=0.02 on a hard series raised no alarm: the test checks nothing"
    for r in alarmed:
        assert np.array_equal(r.alarms, r.risk > r.risk_threshold)


def test_replay_threshold_fitted_on_given_scores_alarms_from_the_first_score():
    rng = np.random.default_rng(0)
    normal, stream = rng.normal(size=400), np.r_[rng.normal(size=300), [6.0, 7.0, 0.0]]
    alarms, thresholds = replay_threshold(stream, q=1e-2, level=0.9, fit_on=normal)
    want_alarms, want_thr = SPOT(1e-2, 0.9).fit(normal).run(stream)
    assert np.array_equal(alarms, want_alarms) and alarms[-3] and alarms[-2] and not alarms[-1]
    np.testing.assert_array_equal(thresholds, want_thr)
    # risk units: SPOT on logit(risk), thresholds back as probabilities
    p = 1.0 / (1.0 + np.exp(-stream))
    alarms_p, thr_p = replay_threshold(p, q=1e-2, level=0.9, fit_on=1.0 / (1.0 + np.exp(-normal)), logit=True)
    assert np.array_equal(alarms_p, want_alarms)
    np.testing.assert_allclose(thr_p, 1.0 / (1.0 + np.exp(-want_thr)), rtol=1e-9)


def test_swap_model_recalibrates_and_calibrate_fits_on_given_normal_scores(dag):
    calibration = 30
    mon = Monitor(
        _model(5),
        dag.graph.edge_index,
        normaliser=OnlineNormaliser.from_reference(dag.x[:REF], dag.mask[:REF]),
        window=WINDOW,
        calibration=calibration,
        spot_q=0.02,
        spot_level=0.9,
    )
    steps = list(dag.steps(REF, REF + WINDOW + calibration + 10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in steps[: WINDOW + calibration + 5]:
            mon.step(s.x, s.mask)
        assert mon.risk_gate.current() is not None and mon.cascade_gate.current() is not None
        kept = mon.risk_gate.current()
        mon.swap_model(_model(6), "v2", recalibrate=False)
        assert mon.risk_gate.current() == kept  # the old tail kept, as asked
        mon.swap_model(_model(7), "v3")  # default: both gates calibrate again on the new model's scores
        assert mon.risk_gate.current() is None and mon.cascade_gate.current() is None
        r = mon.step(steps[-1].x, steps[-1].mask)
        assert not r.alarms.any() and not r.system_alarm and r.risk_threshold is None
        # calibrate at once on known-normal scores: the thresholds are SPOT's on them (risk via its logit)
        normal_peaks = np.linspace(0.05, 0.3, 200)
        mon.calibrate(risk=normal_peaks, cascade=np.linspace(0.0, 1.0, 200))
        want = SPOT(0.02, 0.9).fit(np.log(normal_peaks) - np.log1p(-normal_peaks)).threshold
        assert mon.risk_gate.current() == pytest.approx(1.0 / (1.0 + np.exp(-want)), rel=1e-12)
        assert mon.cascade_gate.current() == pytest.approx(SPOT(0.02, 0.9).fit(np.linspace(0.0, 1.0, 200)).threshold)
    fixed = Monitor(
        _model(5),
        dag.graph.edge_index,
        normaliser=OnlineNormaliser.from_reference(dag.x[:REF], dag.mask[:REF]),
        window=WINDOW,
        risk_threshold=0.5,
    )
    with pytest.raises(ValueError, match="fixed threshold"):
        fixed.calibrate(risk=normal_peaks)


def test_freeze_on_alarm_keeps_alarmed_services_out_of_the_statistics(hard):
    norm = OnlineNormaliser.from_reference(hard.x[:REF], hard.mask[:REF])
    threshold = 0.5
    mon = Monitor(_model(), hard.graph.edge_index, normaliser=norm, window=3, risk_threshold=threshold)
    steps = list(hard.steps(REF, REF + 40))
    frozen = learned = 0
    for s in steps:
        before = mon.normaliser.stats.weight.copy()
        r = mon.step(s.x, s.mask)
        grew = mon.normaliser.stats.weight - before
        expect = s.mask & ~r.alarms[:, None]
        assert np.array_equal(grew, expect.astype(float))
        frozen += int(r.alarms.sum())
        learned += int((~r.alarms).sum())
    assert frozen and learned  # both kinds of service occurred
    # without freezing every observed value is learned
    free = Monitor(
        _model(),
        hard.graph.edge_index,
        normaliser=OnlineNormaliser.from_reference(hard.x[:REF], hard.mask[:REF]),
        window=3,
        risk_threshold=threshold,
        freeze_on_alarm=False,
    )
    w0 = free.normaliser.stats.weight.copy()
    for s in steps:
        free.step(s.x, s.mask)
    assert np.array_equal(free.normaliser.stats.weight - w0, np.sum([s.mask for s in steps], axis=0))


def test_a_system_alarm_freezes_every_service(hard):
    mon = Monitor(
        _model(),
        hard.graph.edge_index,
        normaliser=OnlineNormaliser.from_reference(hard.x[:REF], hard.mask[:REF]),
        window=3,
        risk_threshold=1.0,
        cascade_threshold=-1.0,  # always a system alarm once scored
    )
    for s in hard.steps(REF, REF + 2):
        mon.step(s.x, s.mask)
    w = mon.normaliser.stats.weight.copy()
    for s in hard.steps(REF + 2, REF + 10):
        assert mon.step(s.x, s.mask).system_alarm
    assert np.array_equal(mon.normaliser.stats.weight, w)


# ----------------------------------------------------------------------------- versions, swaps, the detector hook


@pytest.mark.parametrize(("recurrent", "seen"), [("gru", 12), ("mingru", 12), ("mingru", 10)])
def test_swap_model_rebuilds_the_cache_and_records_the_version(hard, recurrent, seen):
    """After a swap the next steps score as the new model on the same windows. A minGRU's window
    aggregates are rebuilt from the re-encoded window: mid-block (12 steps seen, window 5) and right
    after a block completed (10)."""
    norm = fit_service_normaliser(hard.x[:REF], hard.mask[:REF])
    old, new = _model(6), _model(7, recurrent=recurrent)
    mon = Monitor(old, hard.graph.edge_index, normaliser=norm, window=WINDOW, model_version="v0001", **_quiet())
    swap_at = REF + seen
    first = [mon.step(s.x, s.mask) for s in hard.steps(REF, swap_at)]
    assert {r.model_version for r in first} == {"v0001"}
    with pytest.raises(ValueError, match="F = 4"):
        torch.manual_seed(0)
        mon.swap_model(TemporalGAT(3, hidden=8, heads=2), "bad")
    assert mon.model is old and mon.model_version == "v0001"  # a refused swap changes nothing
    mon.swap_model(new, "v0002")
    after = [mon.step(s.x, s.mask) for s in hard.steps(swap_at, swap_at + 6)]
    assert {r.model_version for r in after} == {"v0002"}
    z = norm.transform(hard.x[swap_at - WINDOW + 1 : swap_at + 6])
    want = _batch_risk(new, z, hard.mask[swap_at - WINDOW + 1 : swap_at + 6], hard.graph.edge_index, WINDOW)
    assert np.abs(np.stack([r.risk for r in after]) - want).max() <= 1e-5


def test_swap_model_with_a_new_normaliser_renormalises_the_raw_window(hard):
    norm = fit_service_normaliser(hard.x[:REF], hard.mask[:REF])
    mon = Monitor(_model(), hard.graph.edge_index, normaliser=norm, window=WINDOW, **_quiet())
    at = REF + 10
    for s in hard.steps(REF, at):
        mon.step(s.x, s.mask)
    other = OnlineNormaliser(fit_service_normaliser(hard.x[:100], hard.mask[:100]), adapt=False)
    new = _model(8)
    mon.swap_model(new, "v2", normaliser=other)
    r = mon.step(*next(hard.steps(at))[1:3])
    z = other.transform(hard.x[at - WINDOW + 1 : at + 1])
    want = _batch_risk(new, z, hard.mask[at - WINDOW + 1 : at + 1], hard.graph.edge_index, WINDOW)[0]
    assert np.abs(r.risk - want).max() <= 1e-5


class FakeDetector:
    """Records what the monitor passes; reports drift from step ``fire`` on."""

    def __init__(self, fire: int = 10**9) -> None:
        self.calls, self.fire = [], fire

    def update(self, step, values, mask, scores):
        self.calls.append((step, values.copy(), None if mask is None else mask.copy(), dict(scores)))
        return SimpleNamespace(drifting=step >= self.fire, events=("event",) if step == self.fire else ())

    def state_dict(self):
        return {"calls": len(self.calls), "fire": self.fire}

    def load_state_dict(self, state):
        self.fire = state["fire"]


def test_the_drift_hook_gets_raw_values_mask_and_scores(hard):
    det = FakeDetector(fire=8)
    norm = fit_service_normaliser(hard.x[:REF], hard.mask[:REF])
    mon = Monitor(_model(), hard.graph.edge_index, normaliser=norm, window=WINDOW, drift=det, **_quiet())
    results = [mon.step(s.x, s.mask) for s in hard.steps(REF, REF + 12)]
    assert [c[0] for c in det.calls] == list(range(12))
    for (step, values, mask, scores), s, r in zip(det.calls, hard.steps(REF, REF + 12), results, strict=True):
        assert np.array_equal(values, np.where(s.mask, s.x, np.nan), equal_nan=True)
        assert np.array_equal(mask, s.mask)
        if r.risk is None:
            assert scores == {}
        else:
            assert scores == {"max_risk": float(r.risk.max()), "cascade": r.cascade}
        assert r.drift.drifting == (step >= 8)
    assert results[8].drift.events == ("event",)
    assert isinstance(results[0], StepResult)


def test_a_detector_for_other_services_or_metrics_is_refused_at_construction(hard):
    from tgad_lite.monitor import DriftDetector

    norm = fit_service_normaliser(hard.x[:REF], hard.mask[:REF])
    metrics = list(hard.metric_names)
    with pytest.raises(ValueError, match="watches 9 services"):
        Monitor(_model(), hard.graph.edge_index, normaliser=norm, window=3, drift=DriftDetector(9, metrics))
    with pytest.raises(ValueError, match="metrics"):
        Monitor(_model(), hard.graph.edge_index, normaliser=norm, window=3, drift=DriftDetector(8, metrics[::-1]))
    with pytest.raises(ValueError, match="lacks"):
        Monitor(_model(), hard.graph.edge_index, normaliser=norm, window=3, drift=object())
    Monitor(_model(), hard.graph.edge_index, normaliser=norm, window=3, drift=DriftDetector(8, metrics))


@pytest.mark.parametrize("recurrent", ["lstm", "gru"])
def test_saved_gate_cache_keeps_format_1s_layout_exactly(dag, recurrent):
    """The ring holds the tanh gate's pre-activation doubled (one sigmoid covers every gate); a state
    stores it as format 1 did (LSTM gates i, f, o, g, GRU r, z, n, biases folded, nothing doubled) and
    loading it back gives the ring bit for bit."""
    model = _model(4, recurrent=recurrent)
    path = _SnapshotModel(model, dag.graph.edge_index, 30, WINDOW, torch.device("cpu"))
    h = torch.randn(30, 16, generator=torch.Generator().manual_seed(1))
    rnn, d = model.rnn, 16
    with torch.inference_mode():
        torch.addmm(path.b_in, h, path.w_ih_t, out=path.gates_ring[2])
        if recurrent == "lstm":
            order = torch.cat([torch.arange(0, 2 * d), torch.arange(3 * d, 4 * d), torch.arange(2 * d, 3 * d)])
            want = (h @ rnn.weight_ih_l0.t() + rnn.bias_ih_l0 + rnn.bias_hh_l0)[:, order]
        else:
            want = h @ rnn.weight_ih_l0.t() + rnn.bias_ih_l0
        saved = path.export_gates()
        assert torch.allclose(saved[2], want, atol=1e-6)
        tanh_gate = slice((3 if recurrent == "lstm" else 2) * d, None)
        assert torch.equal(saved[2][:, tanh_gate] * 2, path.gates_ring[2][:, tanh_gate])
        ring = path.gates_ring.clone()
        path.gates_ring.zero_()
        path.import_gates(saved)
        assert torch.equal(path.gates_ring, ring)
