"""Notebook 07 (the streaming monitor: a replay with drift, false alarms, retraining, restart) in the smoke profile.

Two runs: the default (shop graph, traffic drift, fixed normaliser) and a new failure mode with the
Welford normaliser on a random 6-service DAG. Each trains a first model into a registry, replays the
series step by step through ``Monitor.step`` with a drift detector, measures false drift alarms on the
drift-free twin, retrains with replay and applies the forgetting check, continues with the version kept,
restarts from the saved state and compares, and writes it all to metrics.json; its closing summary comes
from the run's own numbers and says it is a smoke run. Speed is not asserted.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _notebook_output import CLOSING_LINE, progress_lines, shown_text
from _notebook_output import streams as output_streams

from tgad_lite.device import resolve_device

pytestmark = pytest.mark.notebook

SMOKE_LABEL = "SMOKE RUN: a short series and a tiny model, not a result."
FIGURES = {"series_overview.png", "replay.png", "drift_day.png", "ks_evaluation.png", "versions.png"}
CHECKS = {
    "risk",
    "cascade",
    "alarms",
    "system",
    "risk_thr",
    "cascade_thr",
    "z",
    "ph",
    "ks_p",
    "ks_pairs",
    "drift events",
}
# Progress displays, in the order they close: the replay's display stays open across the retraining.
CLOSING = ["first model", "drift-free replay", "retrain with replay", "replay", "restarted monitor"]
# (parameters, services)
RUNS = {
    "traffic": ({}, 8),
    "new_failure_mode": (  # also the fastest model: one GATv2 layer and a minGRU (restart, retraining, registry)
        {
            "drift_kind": "new_failure_mode",
            "normaliser": "welford",
            "topology": "random",
            "num_services": 6,
            "num_layers": 1,
            "recurrent": "mingru",
        },
        6,
    ),
}


@pytest.fixture(scope="module", params=list(RUNS))
def run(request, run_notebook_once):
    return request.param, run_notebook_once("07_streaming_monitor", **RUNS[request.param][0])


@pytest.fixture(scope="module")
def m(run):
    return run[1].metrics["metrics"]


@pytest.fixture(scope="module")
def p(run):
    return run[1].metrics["params"]


def _fraction(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0


def test_the_model_is_built_as_asked(run, p):
    params = RUNS[run[0]][0]
    assert (p["num_layers"], p["recurrent"]) == (params.get("num_layers", 2), params.get("recurrent", "lstm"))
    first = json.loads((run[1].output_notebook.parent / "registry" / "v0001" / "version.json").read_text())
    assert (first["config"]["num_layers"], first["config"]["recurrent"]) == (p["num_layers"], p["recurrent"])
    assert f"{p['num_layers']} GATv2 layer(s), {p['recurrent']}" in first["note"]


def test_restart_from_the_saved_state_is_identical_and_another_model_is_refused(m, p):
    r = m["restart"]
    assert r["identical"] is True
    assert set(r["checks"]) == CHECKS and all(v is True for v in r["checks"].values())
    assert r["saved_after_step"] == p["drift_at"] - 49
    # resumed from the step after the save up to the retraining: across the drift start
    assert r["resumed_steps"] == m["drift_replay"]["retrain_at"] - r["saved_after_step"] - 1 > 0
    assert r["other_model_refused"] is True and r["state_bytes"] > 0


def test_false_alarm_figures_on_the_drift_free_twin_are_present_finite_and_consistent(m, p):
    fa = m["false_alarms"]
    steps = m["series_steps"] - p["train_steps"]
    assert fa["steps"] == steps and 0 < fa["armed_steps"] <= steps
    assert fa["alarms"] == len(fa["alarm_steps"]) == fa["distribution_alarms"] + fa["score_alarms"]
    assert all(p["train_steps"] <= s < m["series_steps"] for s in fa["alarm_steps"])
    assert math.isfinite(fa["per_10000_steps"]) and fa["per_10000_steps"] == pytest.approx(fa["alarms"] / steps * 1e4)
    if fa["alarms"]:
        assert fa["mean_armed_steps_between"] == pytest.approx(fa["armed_steps"] / fa["alarms"])
    else:
        assert fa["mean_armed_steps_between"] is None
    assert fa["target_met"] is (fa["per_10000_steps"] <= 1.0)
    line = next(x for x in m["summary"] if x.startswith("False drift alarms"))
    assert (
        f"{fa['alarms']} in {steps} steps ({fa['armed_steps']} armed), {fa['per_10000_steps']:.2f} per 10,000" in line
    )
    assert line.endswith(f"{'met' if fa['target_met'] else 'NOT met'} in this run.")


def test_drift_events_trigger_and_detection_delay_agree(m, p):
    dr = m["drift_replay"]
    drift_at, events = p["drift_at"], dr["events"]
    assert [e["series_step"] for e in events] == sorted(e["series_step"] for e in events)
    for e in events:
        assert e["false_alarm"] is (e["series_step"] < drift_at)
        assert e["kind"] in ("distribution", "score")
        if e["kind"] == "distribution":  # KS names what drifted
            assert e["services"] and e["metrics"] and set(e["metrics"]) <= {"cpu", "memory", "latency_ms", "error_rate"}
        else:
            assert e["services"] == [] and e["metrics"] == []
    assert dr["false_alarms_before_drift"] == sum(e["false_alarm"] for e in events)
    after = [e for e in events if not e["false_alarm"]]
    if dr["trigger"] == "drift event":
        assert dr["trigger_step"] == after[0]["series_step"]
        assert dr["detection_delay_steps"] == dr["trigger_step"] - drift_at < p["max_wait"]
        assert dr["detection_delay_minutes"] == 5 * dr["detection_delay_steps"]
        assert dr["first_kind"] == after[0]["kind"]
    else:
        assert dr["trigger"].startswith("schedule")
        assert dr["trigger_step"] == drift_at + p["max_wait"] - 1
        assert all(e["series_step"] > dr["trigger_step"] for e in after)
        assert dr["detection_delay_steps"] is None and dr["detection_delay_minutes"] is None
    assert dr["retrain_at"] == dr["trigger_step"] + p["retrain_after"]
    assert m["series"]["same_before_drift"] is True and m["series"]["incidents_after_drift"] > 0


def test_retrain_table_and_the_decision_follow_the_margin_and_the_numbers(m, p):
    rt = m["retrain"]
    d = rt["decision"]
    assert rt["margin"] == d["margin"] == p["retrain_margin"]
    assert rt["min_gain"] == d["min_gain"] == p["retrain_min_gain"] > 0  # a gain of +0.00005 is not "better"
    for key in ("old_before", "old_after", "new_before", "new_after"):
        assert _fraction(d[key]), key
    old, new = rt["rows"]
    assert old["regime"].startswith("old") and new["regime"].startswith("new")
    for row, regime in ((old, "old"), (new, "new")):
        assert row["PR-AUC v0001 (before)"] == d[f"{regime}_before"]
        assert row["PR-AUC new model (after)"] == d[f"{regime}_after"]
        assert row["change"] == pytest.approx(d[f"{regime}_after"] - d[f"{regime}_before"])
        assert row["windows"] > 0
    assert old["passes"] is (d["old_after"] >= d["old_before"] - d["margin"])
    assert new["passes"] is (d["new_after"] > d["new_before"] + d["min_gain"])
    assert d["keep"] is (old["passes"] and new["passes"])
    assert d["reason"].startswith("kept" if d["keep"] else "rejected")
    # the spans the check reads were never trained on: old = the replay before the drift, new = held out
    dr = m["drift_replay"]
    assert rt["old_check_steps"] == [p["train_steps"], p["drift_at"]]
    assert rt["recent_steps"][0] == dr["trigger_step"] and rt["recent_steps"][1] == rt["new_check_steps"][0]
    assert rt["new_check_steps"][1] == dr["retrain_at"]
    line = next(x for x in m["summary"] if x.startswith("Retraining"))
    assert f"new-regime PR-AUC {d['new_before']:.3f} -> {d['new_after']:.3f}" in line
    assert f"{'kept' if d['keep'] else 'rejected'} (v0002)" in line


def test_registry_versions_and_which_version_scored_each_step(m, p):
    keep = m["retrain"]["decision"]["keep"]
    reg = m["registry"]
    assert [v["id"] for v in reg["versions"]] == ["v0001", "v0002"]
    v1, v2 = reg["versions"]
    assert v1["parent"] is None and v2["parent"] == "v0001" and reg["new_version"] == "v0002"
    assert v2["metrics"]["kept"] == float(keep)
    assert v2["metrics"]["new_after"] == m["retrain"]["decision"]["new_after"]
    assert reg["current"] == ("v0002" if keep else "v0001")
    rows = m["versions_scored"]
    retrain_at, end = m["drift_replay"]["retrain_at"], m["series_steps"]
    assert rows[0]["version"] == "v0001" and rows[0]["first step"] == p["train_steps"]
    assert m["thresholds_recalibrated"] is keep
    if keep:
        assert [r["version"] for r in rows] == ["v0001", "v0002"]
        assert rows[0]["last step"] == retrain_at - 1
        assert (rows[1]["first step"], rows[1]["last step"]) == (retrain_at, end - 1)
        if p["calibrate_on"] == "stream":  # the SPOTs calibrate on v0002's first `calibration` steps: no alarm
            assert p["after_steps"] < p["calibration"] and rows[1]["service alarm steps"] == 0
            assert m["v2_calibration_windows"] is None
        else:  # fitted at once on v0002's scores at incident-free held-out windows
            assert m["v2_calibration_windows"] >= 50
    else:
        assert [r["version"] for r in rows] == ["v0001"] and rows[0]["last step"] == end - 1
    assert sum(r["steps"] for r in rows) == end - p["train_steps"]
    after = m["after_retraining_pr_auc"]
    if not keep:  # the monitor kept v0001: its risk is v0001's
        assert after["scoring version"] == pytest.approx(after["v0001"], abs=1e-6)


def test_the_monitor_equals_the_batch_model_and_the_normalisers_are_compared(run, m, p):
    assert m["batch_equivalence_max_abs"] < 1e-5
    rows = m["normalisation"]["rows"]
    other = "welford" if p["normaliser"] == "fixed" else "fixed"
    assert rows[0]["normaliser"].startswith(p["normaliser"]) and rows[1]["normaliser"].startswith(other)
    assert [r["normaliser"] for r in rows[2:]] == [
        "welford, learns every step (shadow)",
        "welford, reference with incidents (shadow)",
    ]
    for r in rows:
        assert _fraction(r["PR-AUC before the drift"]) and _fraction(r["PR-AUC after it, until the retraining"])
        assert 0 <= r["steps with an alarm"] <= m["drift_replay"]["retrain_at"] - p["train_steps"]
    assert all(v > 0 for v in m["normalisation"]["welford_scale_ratio_max"].values())
    # the three Welford normalisers, [smallest, largest] scale / training scale per metric
    ratios = m["normalisation"]["scale_ratio_min_max"]
    assert len(ratios) == 3 and all(0 < lo <= hi for r in ratios.values() for lo, hi in r.values())


def test_spot_calibrated_on_incident_free_validation_steps_beats_the_stream_calibration(m, p):
    """Alarm quality of the three rules on both replays, over the same steps. The stream calibration's
    first two days hold incidents, so its tail is theirs and it alarms on few; calibrated on incident-free
    validation windows SPOT must alarm on more incidents on both replays (it did not before the fix)."""
    sc = m["spot_calibration"]
    assert sc["calibrate_on"] == p["calibrate_on"] == "validation"
    assert 50 <= sc["incident_free_windows"] <= sc["validation_windows"]
    # the monitor's own alarms equal SPOT rerun on its logged scores: the other rule's figures are trustworthy
    assert sc["monitor_equals_rerun"] == {"drift replay": True, "drift-free twin": True}
    live = p["train_steps"] + p["window"] - 1 + p["calibration"]
    retrain_at = m["drift_replay"]["retrain_at"]
    assert sc["span"] == [live, retrain_at]
    rows = m["risk_alarms"]
    assert [r["replay"] for r in rows] == ["drift replay"] * 3 + ["drift-free twin"] * 3
    for r in rows:
        assert r["steps"] == retrain_at - live and 0 <= r["alarmed"] <= r["incidents"] > 0
        assert r["event recall"] == pytest.approx(r["alarmed"] / r["incidents"])
        assert (r["median delay (steps)"] is None) is (r["alarmed"] == 0)
        assert r["per day"] == pytest.approx(r["false alarm episodes"] / (r["steps"] * 5 / 1440))
        assert r["per 10,000 normal steps"] >= r["false alarm episodes"] / r["steps"] * 1e4
    for replay in (rows[:3], rows[3:]):
        val, stream, fixed = replay
        assert (
            val["alarm rule"]
            == f"SPOT, calibrated on validation, incident-free ({sc['incident_free_windows']} windows) (the monitor's)"
        )
        assert stream["alarm rule"] == f"SPOT, calibrated on stream, first {p['calibration']} steps"
        assert fixed["alarm rule"] == f"validation threshold {m['first_model']['threshold']:.3f}"
        assert val["event recall"] > stream["event recall"]
    # thresholds at the span's start: the stream's lies above more incident steps' largest risk
    start, above = sc["risk_threshold_at_span_start"], sc["incident_steps_above_it"]
    assert 0.0 < start["validation"] < start["stream"] < 1.0
    assert _fraction(above["validation"]) and _fraction(above["stream"]) and above["validation"] > above["stream"]
    line = next(x for x in m["summary"] if x.startswith("Risk alarms"))
    val, stream = rows[3], rows[4]
    assert f"alarmed {val['alarmed']} of {val['incidents']} incidents" in line
    assert f"first {p['calibration']} steps {stream['alarmed']} ({stream['per 10,000 normal steps']:.1f})" in line


def test_spot_q_and_calibration_length_table(m, p):
    rows = m["spot_q_table"]
    grid = sorted({1e-2, 1e-3, 1e-4, 1e-5, p["spot_q"]}, reverse=True)
    assert [r["q"] for r in rows] == grid + grid + [p["spot_q"], p["spot_q"]]
    n_calib = m["spot_calibration"]["incident_free_windows"]
    c = p["calibration"]
    assert [r["scores"] for r in rows] == [n_calib] * len(grid) + [c] * len(grid) + [c // 2, c // 4]
    twin = m["risk_alarms"][3:5]
    for r in rows:
        assert _fraction(r["event recall"]) and r["false alarms per 10,000 normal steps"] >= 0
        alarmed, incidents = map(int, r["incidents alarmed"].split(" of "))
        assert incidents == twin[0]["incidents"] and r["event recall"] == pytest.approx(alarmed / incidents)
    # the rows at the monitor's q repeat the main table's figures (same rule, same steps)
    at_q = [r for r in rows if r["q"] == p["spot_q"]]
    assert at_q[0]["event recall"] == twin[0]["event recall"] and at_q[1]["event recall"] == twin[1]["event recall"]


def test_latency_is_measured(run, m, p):
    name, _ = run
    lat = m["latency"]
    assert lat["services"] == RUNS[name][1] and lat["metrics"] == 4
    assert lat["steps"] == m["series_steps"] - p["train_steps"] - p["window"] + 1
    assert 0 < lat["p50_ms"] <= lat["p99_ms"]
    assert sum(r["count"] for r in lat["rows"][1:]) == lat["rows"][0]["count"] == lat["steps"]


def test_summary_comes_from_this_run_and_says_smoke(run, m):
    _, result = run
    summary = m["summary"]
    assert summary[0] == SMOKE_LABEL
    r = m["restart"]
    assert any(f"{r['resumed_steps']} resumed steps identical to the uninterrupted run: True" in x for x in summary)
    lat = m["latency"]
    assert any(f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms" in x for x in summary)
    shown = shown_text(result.output_notebook)
    assert all(x in shown for x in summary)  # the summary printed is the one recorded
    assert SMOKE_LABEL in shown


def test_outputs_hold_one_progress_display_per_loop_and_no_warnings(run):
    _, result = run
    stdout, stderr = output_streams(result.output_notebook)
    closing = [line for line in stdout.splitlines() if CLOSING_LINE.search(line)]
    assert [line.split(":")[0] for line in closing] == CLOSING, closing
    assert len(progress_lines(stdout + stderr)) <= len(CLOSING) * 11  # lines mode: at most ten and the last
    assert "IProgress" not in shown_text(result.output_notebook)
    assert not stderr, stderr


def test_parameters_figures_registry_and_state_are_recorded(run, m, p):
    name, result = run
    assert m["device"] == str(resolve_device("auto"))
    assert (p["profile"], p["device"], p["window"], p["hidden"], p["epochs"]) == ("smoke", "auto", 8, 16, 6)
    assert (p["train_steps"], p["drift_at"], p["retrain_after"], p["after_steps"]) == (1000, 2000, 864, 288)
    assert m["series_steps"] == p["drift_at"] + p["max_wait"] + p["retrain_after"] + p["after_steps"]
    assert m["series"]["services"] == RUNS[name][1]
    if p["drift_kind"] == "new_failure_mode":
        assert set(m["series"]["kinds_after_drift"]) == {p["new_failure_mode"]}
    assert result.metrics["runtime_s"] > 0 and "torch" in result.metrics["versions"]
    folder = result.output_notebook.parent
    assert {f.name for f in folder.glob("*.png")} >= FIGURES
    assert (folder / "monitor_state.npz").is_file()
    registry = folder / "registry"
    assert (registry / "CURRENT").read_text().strip() == m["registry"]["current"]
    for version in ("v0001", "v0002"):
        assert (registry / version / "model.pt").is_file() and (registry / version / "version.json").is_file()
    with np.load(folder / "monitor_state.npz", allow_pickle=False) as state:
        assert "__meta__" in state.files  # arrays plus one JSON document, no pickled objects
