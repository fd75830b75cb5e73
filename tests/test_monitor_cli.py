"""``python -m tgad_lite.monitor`` (issue 11, item 5): train, replay, restart from a state, exit codes,
and the real drift detector wired in."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tgad_lite.data.microservices import random_service_dag, shop_graph, simulate
from tgad_lite.monitor import load_monitor_model, load_state, save_monitor_model
from tgad_lite.monitor.cli import main
from tgad_lite.temporal import TemporalGAT

# Fixed thresholds and no drift detector where neither is what a test checks: every new peak of a
# SPOT refits a GPD with scipy (tens of ms), which would dominate these tests' time.
QUIET = ["--no-drift", "--risk-threshold", "model", "--cascade-threshold", "0.5"]


# Tiny models run fastest on one torch thread (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def no_bars(monkeypatch):
    monkeypatch.setenv("TGAD_PROGRESS", "off")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A tiny model trained by the CLI's own train command (shop graph, hard regime)."""
    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    code = main(
        [
            "train", "--out", str(out), "--steps", "500", "--seed", "3", "--epochs", "1",
            "--hidden", "8", "--heads", "2", "--window", "4",
        ]
    )  # fmt: skip
    assert code == 0 and out.is_file()
    return out


def _replay(model_path, *args: str) -> int:
    return main(["replay", "--model", str(model_path), *args])


def test_train_saves_what_replay_needs(model_path):
    saved = load_monitor_model(model_path)
    assert saved.window == 4 and saved.normaliser.shape == (8, 4)
    assert saved.threshold is not None and saved.metadata["regime"] == "hard"
    assert saved.metadata["train_span"][0] == 0


def test_replay_prints_alarms_and_a_summary(model_path, tmp_path, capsys):
    out = tmp_path / "summary.json"
    code = _replay(
        model_path, "--steps", "700", "--seed", "4", "--json", str(out), "--no-drift", "--calibration", "100"
    )
    printed = capsys.readouterr().out
    assert code == 0
    for text in ("model:", "replaying 175..699", "alarm episodes:", "summary: 525 steps replayed", "ground truth:"):
        assert text in printed
    summary = json.loads(out.read_text())
    assert summary["replayed"] == [175, 700] and summary["steps"] == 525
    assert summary["scored_steps"] == 525 - 3  # window 4: the first 3 steps have no risk
    assert summary["incidents"] >= 1 and 0 <= summary["incidents_detected"] <= summary["incidents"]


def test_replay_in_two_parts_with_a_state_equals_one_replay(model_path, tmp_path, capsys):
    """Stop at step 400, save, run again from the state: the final state equals one uninterrupted replay's."""
    base = ["--steps", "650", "--seed", "5", "--calibration", "60", "--drift-reference", "288", "--drift-recent", "288"]
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    assert _replay(model_path, *base, "--state", str(one)) == 0
    assert _replay(model_path, *base, "--state", str(two), "--stop", "400") == 0
    assert "state saved" in capsys.readouterr().out
    assert load_state(two)["step"] == 400 - 162  # reference: 650 // 4 = 162 steps
    assert _replay(model_path, *base, "--state", str(two)) == 0
    assert "resumed from" in capsys.readouterr().out
    a, b = load_state(one), load_state(two)
    assert a["step"] == b["step"] == 650 - 162
    for key in ("raw", "normalised", "gates"):
        assert np.array_equal(a[key], b[key], equal_nan=True)
    assert np.array_equal(a["normaliser"]["stats"]["mean"], b["normaliser"]["stats"]["mean"])
    assert a["risk_threshold"]["spot"]["result"] == b["risk_threshold"]["spot"]["result"]
    assert np.array_equal(a["risk_threshold"]["spot"]["peaks"], b["risk_threshold"]["spot"]["peaks"])
    assert np.array_equal(a["drift"]["reference"], b["drift"]["reference"], equal_nan=True)


def test_replay_of_a_saved_npz(model_path, tmp_path, capsys):
    tel = simulate(shop_graph(), steps=400, seed=8, regime="hard", num_incidents=4)
    data = tmp_path / "series.npz"
    np.savez(data, x=tel.x, mask=tel.mask, edge_index=tel.graph.edge_index, root_cause=tel.root_cause)
    assert _replay(model_path, "--npz", str(data), "--reference", "100", *QUIET) == 0
    printed = capsys.readouterr().out
    assert "series.npz: 400 steps, N=8" in printed and "ground truth:" in printed


def test_the_real_drift_detector_reports_injected_drift(model_path, tmp_path, capsys):
    """Traffic doubles 100 steps after the drift detector's reference and recent windows are full:
    a distribution drift is reported after the drift starts, naming the metrics it saw move."""
    drift_at = 200 + 576 + 100
    out = tmp_path / "drift.json"
    code = _replay(
        model_path, "--steps", "1300", "--seed", "6", "--reference", "200", "--risk-threshold", "model",
        "--drift-at", str(drift_at), "--traffic-scale", "2.0", "--json", str(out),
    )  # fmt: skip
    assert code == 0
    events = json.loads(out.read_text())["drift_events"]
    distribution = [e for e in events if e["kind"] == "distribution"]
    assert distribution, f"no distribution drift reported: {events}"
    assert distribution[0]["series_step"] >= drift_at
    assert "cpu" in distribution[0]["detail"]  # CPU follows traffic one to one
    assert "DRIFT (distribution)" in capsys.readouterr().out


def _model_file(tmp_path, n_services: int, name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = TemporalGAT(4, hidden=8, heads=2)
    rng = np.random.default_rng(0)
    from tgad_lite.data.microservices import ServiceNormaliser

    norm = ServiceNormaliser(center=rng.normal(size=(n_services, 4)), scale=np.ones((n_services, 4)))
    return save_monitor_model(
        tmp_path / name, model, window=4, metric_names=["cpu", "memory", "latency_ms", "error_rate"], normaliser=norm
    )


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda m, d: ["--model", str(d / "missing.pt")], "no saved model"),
        (lambda m, d: ["--model", str(d / "junk.pt")], "not"),
        (lambda m, d: ["--model", str(m), "--npz", str(d / "noedges.npz")], "lacks edge_index"),
        (lambda m, d: ["--model", str(m), "--npz", str(d / "three.npz")], "3 metrics"),
        (lambda m, d: ["--model", str(m), "--topology", "random", "--services", "12", "--normaliser", "model"], "12"),
        (lambda m, d: ["--model", str(m), "--steps", "400", "--stop", "50"], "--stop"),
        (lambda m, d: ["--model", str(m), "--traffic-scale", "2"], "--drift-at"),
        (lambda m, d: ["--model", str(m), "--risk-threshold", "high"], "--risk-threshold"),
        (lambda m, d: ["--model", str(m), "--steps", "300", "--state", str(d / "other.npz")], "other weights"),
        (lambda m, d: ["--model", str(m), "--steps", "300", "--seed", "2", "--state", str(d / "other.npz")], "seed 0"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(model_path, tmp_path, capsys, make_args, message):
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    tel = simulate(shop_graph(), steps=50, seed=1, num_incidents=1)
    np.savez(tmp_path / "noedges.npz", x=tel.x)
    np.savez(tmp_path / "three.npz", x=tel.x[:, :, :3], edge_index=tel.graph.edge_index)
    # a state saved for another model (same graph and architecture, other weights)
    other = _model_file(tmp_path, 8, "other.pt", seed=1)
    fixed = ["--no-drift", "--risk-threshold", "0.9", "--cascade-threshold", "0.5"]
    assert _replay(other, "--steps", "300", "--state", str(tmp_path / "other.npz"), *fixed) == 0
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["replay", *QUIET, *make_args(model_path, tmp_path)])  # the case's options win
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error:") and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_usage_errors_exit_2_and_help_exits_0(model_path, capsys):
    assert main(["replay"]) == 2  # --model is required
    assert main(["replay", "--model", str(model_path), "--threads", "-1"]) == 2
    assert torch.get_num_threads() == 1  # main restores the process's thread count
    assert main(["nonsense"]) == 2
    assert main(["--help"]) == 0
    assert "replay" in capsys.readouterr().out


def test_module_entry_point_runs(model_path):
    """``python -m tgad_lite.monitor`` as a user types it (exit code passed through)."""
    proc = subprocess.run(
        [sys.executable, "-m", "tgad_lite.monitor", "replay", "--model", str(model_path), "--steps", "200", *QUIET],
        capture_output=True,
        text=True,
        env={**os.environ, "TGAD_PROGRESS": "off", "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "summary:" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "tgad_lite.monitor", "replay", "--model", "/nonexistent/model.pt"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "no saved model" in bad.stderr


def test_random_topology_replay(model_path, capsys):
    """A model trained on the shop graph replays a 30-service random DAG (any graph; normaliser from the reference)."""
    graph = random_service_dag(30, edge_prob=0.05, seed=0)
    assert graph.num_nodes == 30
    code = _replay(model_path, "--topology", "random", "--services", "30", "--steps", "300", *QUIET)
    assert code == 0 and "N=30" in capsys.readouterr().out
