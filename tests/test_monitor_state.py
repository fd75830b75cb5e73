"""Monitor state (issue 11, item 2): a restart continues bit for bit, a state of another model or
graph is refused, files are written atomically, SPOT and the saved-model format round-trip."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tgad_lite.anomaly.threshold import SPOT
from tgad_lite.data.microservices import fit_service_normaliser, random_service_dag, shop_graph, simulate
from tgad_lite.monitor import (
    DriftDetector,
    Monitor,
    OnlineNormaliser,
    StateError,
    load_monitor_model,
    load_state,
    save_monitor_model,
    save_state,
)
from tgad_lite.monitor.state import spot_from_state, spot_state
from tgad_lite.temporal import TemporalGAT
from tgad_lite.train import save_checkpoint

WINDOW = 4
REF = 150


# Tiny models run fastest on one torch thread (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tel():
    return simulate(shop_graph(), steps=420, seed=9, regime="hard", num_incidents=8)


def _model(seed: int = 0, **kwargs) -> TemporalGAT:
    torch.manual_seed(seed)
    return TemporalGAT(4, hidden=16, heads=2, **kwargs).eval()


def _copy(model: TemporalGAT) -> TemporalGAT:
    """A new model object with the same weights, as a restarted process would load."""
    fresh = TemporalGAT(**model.config)
    fresh.load_state_dict({k: v.clone() for k, v in model.state_dict().items()})
    return fresh.eval()


def _detector() -> DriftDetector:
    # short windows (period 10) so that KS evaluations and the score detectors run inside the test
    return DriftDetector(8, ["cpu", "memory", "latency_ms", "error_rate"], reference=40, recent=20, every=3, period=10)


def _monitor(model, tel, **options) -> Monitor:
    return Monitor(
        model,
        tel.graph.edge_index,
        normaliser=OnlineNormaliser.from_reference(tel.x[:REF], tel.mask[:REF]),
        window=WINDOW,
        calibration=30,
        spot_q=0.01,
        spot_level=0.95,
        model_version="v0007",
        **options,
    )


def _same(a, b) -> None:
    """Two StepResults are identical: arrays compared with ==, not allclose."""
    assert a.step == b.step and a.model_version == b.model_version
    if a.risk is None:
        assert b.risk is None and a.cascade is None and b.cascade is None
    else:
        assert np.array_equal(a.risk, b.risk) and a.cascade == b.cascade
    assert np.array_equal(a.alarms, b.alarms) and a.system_alarm == b.system_alarm
    assert a.risk_threshold == b.risk_threshold and a.cascade_threshold == b.cascade_threshold
    assert a.drift == b.drift


@pytest.mark.parametrize("cut", [2, 45, 70])  # mid-window, mid-calibration, after calibration with drift armed
def test_restart_continues_bit_for_bit(tel, tmp_path, cut):
    model = _model()
    total = 140
    steps = list(tel.steps(REF, REF + total))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        straight = _monitor(model, tel, drift=_detector())
        want = [straight.step(s.x, s.mask) for s in steps]
        first = _monitor(model, tel, drift=_detector())
        got = [first.step(s.x, s.mask) for s in steps[:cut]]
        path = first.save(tmp_path / "monitor.npz")
        del first
        restarted = Monitor.load(path, _copy(model), np.array(tel.graph.edge_index), drift=_detector())
        assert restarted.step_count == cut and restarted.model_version == "v0007"
        got += [restarted.step(s.x, s.mask) for s in steps[cut:]]
    for a, b in zip(got, want, strict=True):
        _same(a, b)
    # the run exercised what it claims: SPOT alarms and drift events happened somewhere
    assert any(r.alarms.any() or r.system_alarm for r in want)
    assert any(r.drift.events for r in want)


def test_state_dict_round_trip_in_memory(tel):
    model = _model(1)
    a = _monitor(model, tel)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in tel.steps(REF, REF + 50):
            a.step(s.x, s.mask)
        b = _monitor(model, tel)
        b.load_state_dict(a.state_dict())
        for s in tel.steps(REF + 50, REF + 90):
            _same(a.step(s.x, s.mask), b.step(s.x, s.mask))


@pytest.mark.parametrize("recurrent", ["lstm", "gru", "mingru"])
def test_every_recurrent_layer_restarts_bit_for_bit(tel, tmp_path, recurrent):
    model = _model(3, recurrent=recurrent)
    steps = list(tel.steps(REF, REF + 60))
    cut = 23
    straight = _monitor(model, tel, risk_threshold=1.0, cascade_threshold=1.0)
    want = [straight.step(s.x, s.mask) for s in steps]
    first = _monitor(model, tel, risk_threshold=1.0, cascade_threshold=1.0)
    for s in steps[:cut]:
        first.step(s.x, s.mask)
    restarted = Monitor.load(first.save(tmp_path / "monitor.npz"), _copy(model), np.array(tel.graph.edge_index))
    for s, b in zip(steps[cut:], want[cut:], strict=True):
        _same(restarted.step(s.x, s.mask), b)
    assert len({float(r.risk.max()) for r in want[cut:]}) > 1  # the risk moves: the comparison could fail


def test_a_state_of_another_model_or_graph_is_refused(tel, tmp_path):
    model = _model(2)
    mon = _monitor(model, tel)
    for s in tel.steps(REF, REF + 10):
        mon.step(s.x, s.mask)
    path = mon.save(tmp_path / "state.npz")
    ei = tel.graph.edge_index

    other_weights = _copy(model)
    with torch.no_grad():
        other_weights.head[0].weight[0, 0] += 1e-3
    with pytest.raises(StateError, match="other weights"):
        Monitor.load(path, other_weights, ei)
    with pytest.raises(StateError, match="config"):
        Monitor.load(path, _model(2, recurrent="gru"), ei)
    rewired = np.array(ei)[:, ::-1].copy()  # the same services, the edges in another order
    with pytest.raises(StateError, match="another graph"):
        Monitor.load(path, _copy(model), rewired)
    bigger = random_service_dag(12, edge_prob=0.2, seed=0).edge_index
    with pytest.raises(StateError, match="another graph"):
        Monitor.load(path, _copy(model), bigger)
    with pytest.raises(StateError, match="drift-detector"):
        Monitor.load(path, _copy(model), ei, drift=_detector())
    # load_state_dict refuses too, and leaves the monitor as it was
    target = _monitor(other_weights, tel)
    before = target.state_dict()
    with pytest.raises(StateError, match="other weights"):
        target.load_state_dict(load_state(path))
    after = target.state_dict()
    assert after["step"] == before["step"] and np.array_equal(after["raw"], before["raw"], equal_nan=True)
    # the right model and graph load fine
    assert Monitor.load(path, _copy(model), ei).step_count == 10


def test_unreadable_states_are_refused_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="Monitor.save"):
        load_state(tmp_path / "nothing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(StateError, match="not a readable monitor state"):
        load_state(junk)
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.zeros(3))
    with pytest.raises(StateError, match="not a monitor state"):
        load_state(plain)
    other = tmp_path / "other.npz"
    save_state(other, {"format": "something-else/1"})
    with pytest.raises(StateError, match="format"):
        load_state(other)


def test_save_is_atomic(tel, tmp_path, monkeypatch):
    mon = _monitor(_model(3), tel)
    path = mon.save(tmp_path / "state.npz")
    original = path.read_bytes()
    for s in tel.steps(REF, REF + 5):
        mon.step(s.x, s.mask)

    def broken_savez(f, **arrays):
        f.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(StateError, match="No space left"):
        mon.save(path)
    assert path.read_bytes() == original  # the old state is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz"]  # no partial file left
    monkeypatch.undo()
    with pytest.raises(StateError, match="folder"):
        mon.save(tmp_path)


def test_state_files_keep_every_value_exactly(tmp_path):
    state = {
        "format": "x/1",
        "nested": {"a": np.arange(5, dtype=np.int64), "b": [1.0 / 3.0, float("nan"), None, "text", True]},
        "mask": np.array([[True, False]]),
        "tiny": 5e-324,
        "big": np.float64(1e308),
        "empty": np.zeros((0, 3)),
    }
    path = save_state(tmp_path / "s.npz", state)
    with np.load(path, allow_pickle=False) as data:  # readable without pickle
        assert "__meta__" in data.files
    back = _unpack_raw(path)
    assert np.array_equal(back["nested"]["a"], state["nested"]["a"]) and back["nested"]["a"].dtype == np.int64
    b = back["nested"]["b"]
    assert b[0] == 1.0 / 3.0 and np.isnan(b[1]) and b[2] is None and b[3] == "text" and b[4] is True
    assert back["mask"].dtype == np.bool_ and np.array_equal(back["mask"], state["mask"])
    assert back["tiny"] == 5e-324 and back["big"] == 1e308 and back["empty"].shape == (0, 3)
    with pytest.raises(StateError, match="Python objects"):
        save_state(tmp_path / "o.npz", {"bad": np.array([object()])})
    with pytest.raises(StateError, match="Tensor"):
        save_state(tmp_path / "t.npz", {"bad": torch.zeros(2)})
    assert not (tmp_path / "o.npz").exists() and not (tmp_path / "t.npz").exists()


def _unpack_raw(path: Path) -> dict:
    """Read a state file whatever its format field (load_state checks it)."""
    import json

    from tgad_lite.monitor.state import _unpack

    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["__meta__"]))
        arrays = {k: data[k] for k in data.files if k != "__meta__"}
    return _unpack(meta, arrays)


def test_spot_state_round_trip_continues_identically():
    rng = np.random.default_rng(4)
    calib, stream = rng.exponential(size=300), rng.exponential(size=400) * 1.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = SPOT(1e-2, 0.9).fit(calib)
        a.run(stream[:150])
        b = spot_from_state(spot_state(a))
        assert b.num_peaks == a.num_peaks and b.n == a.n and b.result == a.result
        alarms_a, thr_a = a.run(stream[150:])
        alarms_b, thr_b = b.run(stream[150:])
    assert np.array_equal(alarms_a, alarms_b) and np.array_equal(thr_a, thr_b)
    assert a.num_peaks > 30  # peaks were added and refitted after the restore


def test_online_normaliser_state_round_trip(tel):
    a = OnlineNormaliser.from_reference(tel.x[:REF], tel.mask[:REF], memory=50)
    for s in tel.steps(REF, REF + 30):
        a.update(s.x.astype(np.float64), s.mask)
    b = OnlineNormaliser.from_state(a.state_dict())
    for s in tel.steps(REF + 30, REF + 60):
        assert np.array_equal(a.transform(s.x), b.transform(s.x), equal_nan=True)
        a.update(s.x.astype(np.float64), s.mask)
        b.update(s.x.astype(np.float64), s.mask)
    assert np.array_equal(a.center, b.center) and np.array_equal(a.scale, b.scale)
    with pytest.raises(ValueError, match="OnlineNormaliser state"):
        OnlineNormaliser.from_state({"adapt": True})


def test_saved_models_round_trip_and_other_files_are_refused(tel, tmp_path):
    model = _model(5, recurrent="gru")
    norm = fit_service_normaliser(tel.x[:REF], tel.mask[:REF])
    path = save_monitor_model(
        tmp_path / "m.pt",
        model,
        window=WINDOW,
        metric_names=tel.metric_names,
        normaliser=norm,
        threshold=0.42,
        metadata={"regime": "hard"},
    )
    back = load_monitor_model(path)
    assert back.window == WINDOW and back.metric_names == tel.metric_names and back.threshold == 0.42
    assert back.metadata == {"regime": "hard"}
    assert np.array_equal(back.normaliser.center, norm.center) and np.array_equal(back.normaliser.scale, norm.scale)
    assert back.model.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(back.model.state_dict()[k], v)
    plain = save_checkpoint(tmp_path / "plain.pt", model, model.config)
    with pytest.raises(StateError, match="not a monitor model"):
        load_monitor_model(plain)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    with pytest.raises(StateError):
        load_monitor_model(junk)
    with pytest.raises(FileNotFoundError):
        load_monitor_model(tmp_path / "missing.pt")
    with pytest.raises(StateError, match="metric_names"):
        save_monitor_model(tmp_path / "bad.pt", model, window=WINDOW, metric_names=["a"])
    assert not (tmp_path / "bad.pt").exists()
