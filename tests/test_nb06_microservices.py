"""Notebook 06 (temporal GAT on synthetic microservices) in the smoke profile.

Two runs: the default (shop graph, hard regime, with the tiny other-regime and unseen-topology
studies) and a random 6-service DAG without the studies. Each trains the graph and the no-graph
model, scores them beside the per-service baselines with one validation-chosen threshold rule,
scores the cascade score as an incident detector, ranks root causes beside the rules with bootstrap
intervals and a paired bootstrap, and writes it all to metrics.json; its closing summary comes from
the run's own numbers and says it is a smoke run. Speed is not asserted.
"""

from __future__ import annotations

import math

import pytest
from _notebook_output import CLOSING_LINE, progress_lines, shown_text
from _notebook_output import streams as output_streams

from tgad_lite.device import resolve_device

pytestmark = pytest.mark.notebook

SMOKE_LABEL = "SMOKE RUN: a short series and a tiny model, not a result."
DETECTORS = ["temporal GAT", "no-graph", "random", "robust-z", "iforest", "gbm"]
SYSTEM = ["cascade (temporal GAT risk)", "cascade (no-graph risk)", "max-z", "iforest"]
METHODS = [
    "temporal GAT · risk",
    "temporal GAT · attention flow",
    "temporal GAT · risk + flow",
    "temporal GAT · downstream",
    "no-graph · risk",
    "no-graph · downstream",
    "rule · largest z",
    "rule · earliest onset",
    "rule · most downstream",
    "rule · change point + z",
    "random",
]
FIGURES = {
    "service_graph.png",
    "incident_heatmap.png",
    "training_curves.png",
    "risk_moments.png",
    "incident_attention.png",
    "system_scores.png",
    "rootcause_ac1.png",
}
# (parameters, services, trainings whose progress display closes once each, in order)
RUNS = {
    "shop": (
        {},
        8,
        [
            "temporal GAT, seed 0",
            "no-graph, seed 0",
            "temporal GAT (easy), seed 0",
            "no-graph (easy), seed 0",
            "temporal GAT on 2 random graphs",
            "no-graph on 2 random graphs",
        ],
    ),
    "random": (  # also the streaming monitor's fast model: one GATv2 layer, a minGRU
        {"topology": "random", "num_services": 6, "studies": False, "num_layers": 1, "recurrent": "mingru"},
        6,
        ["temporal GAT, seed 0", "no-graph, seed 0"],
    ),
}


@pytest.fixture(scope="module", params=list(RUNS))
def run(request, run_notebook_once):
    return request.param, run_notebook_once("06_microservices", **RUNS[request.param][0])


@pytest.fixture(scope="module")
def m(run):
    return run[1].metrics["metrics"]


def _fraction(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0


def _inside(row, key) -> bool:
    return row[f"{key}_low"] <= row[key] <= row[f"{key}_high"]


def test_detection_table_has_every_detector_on_the_validation_rule_with_the_oracle_labelled(m):
    rows = m["detection_table"]
    assert [r["name"] for r in rows] == DETECTORS  # both models and every baseline, once each
    for r in rows:
        for key in ("pr_auc", "event_f1", "event_precision", "event_recall", "precision", "recall", "f1"):
            assert _fraction(r[key]), (r["name"], key, r[key])
        assert _inside(r, "pr_auc") and _inside(r, "event_f1"), r["name"]
        assert r["f1"] <= r["oracle_best_f1"] + 1e-12, r["name"]  # the oracle read the test labels
        assert math.isfinite(r["threshold"]) and r["n_blocks"] > 1
        assert r["event_segments"] > 0
    by = {r["name"]: r for r in rows}
    # Random scores carry nothing: PR-AUC about the positive rate; the trained model is far above.
    rate = by["random"]["positive_rate"]
    assert by["random"]["pr_auc"] < 2 * rate + 0.05
    assert by["temporal GAT"]["pr_auc"] > by["random"]["pr_auc"] + 0.3
    # The same rule for every detector: the model's table threshold is its training recipe's.
    trained = {(t["model"], t["seed"]): t for t in m["training"]}
    for name in ("temporal GAT", "no-graph"):
        assert by[name]["threshold"] == pytest.approx(trained[(name, 0)]["threshold"], abs=1e-6)


def test_system_table_scores_the_cascade_score_beside_the_graph_free_detectors(m):
    rows = m["system_table"]
    assert [r["name"] for r in rows] == SYSTEM
    for r in rows:
        assert 0 <= r["n_detected"] <= r["n_events"] and r["n_events"] > 0
        assert _fraction(r["event_recall"]) and _fraction(r["event_precision"]), r["name"]
        assert r["event_recall"] == pytest.approx(r["n_detected"] / r["n_events"])
        assert _inside(r, "event_recall"), r["name"]
        if r["n_alarm_runs"]:
            assert _inside(r, "event_precision"), r["name"]
        if r["n_detected"]:
            assert r["delay_mean"] >= 0 and _inside(r, "delay_mean"), r["name"]
        else:
            assert r["delay_mean"] is None
        assert 0 <= r["false_alarm_events"] <= r["n_alarm_runs"]


def test_rootcause_table_has_every_method_with_intervals_and_a_paired_bootstrap(m):
    rc = m["rootcause"]
    rows = rc["rows"]
    assert [r["method"] for r in rows] == METHODS
    n = m["rootcause_incidents"]["test"]
    for r in rows:
        assert r["n_incidents"] == n > 0
        for key in ("AC@1", "AC@3", "Avg@5"):
            assert _fraction(r[key]) and _inside(r, key), (r["method"], key)
        # AC@k grows with k; Avg@5 averages AC@1 .. AC@5, so it lies between AC@1 and 1
        assert r["AC@1"] <= r["AC@3"] + 1e-12 and r["AC@1"] <= r["Avg@5"] + 1e-12, r["method"]
    by = {r["method"]: r for r in rows}
    # The graph model's ranker comes from the validation incidents, the best rule is the best on test.
    assert rc["graph_ranker"].startswith("temporal GAT · ")
    kind = rc["graph_ranker"].split(" · ")[1]
    assert rc["nograph_ranker"] == (f"no-graph · {kind}" if f"no-graph · {kind}" in by else "no-graph · risk")
    val = {r["method"]: r for r in rc["validation_rows"]}
    assert set(val) == {x for x in METHODS if not x.startswith(("rule", "random"))}
    assert val[rc["graph_ranker"]]["AC@1"] == max(v["AC@1"] for k, v in val.items() if k.startswith("temporal"))
    rules = [x for x in METHODS if x.startswith("rule")]
    assert rc["best_rule"] in rules and by[rc["best_rule"]]["AC@1"] == max(by[x]["AC@1"] for x in rules)
    for key, other in (("vs_best_rule", rc["best_rule"]), ("vs_nograph", rc["nograph_ranker"])):
        p = rc[key]
        assert (p["a"], p["b"]) == (by[rc["graph_ranker"]]["AC@1"], by[other]["AC@1"])
        assert p["difference"] == pytest.approx(p["a"] - p["b"])
        assert p["low"] <= p["difference"] <= p["high"] and 0.0 <= p["p_a_le_b"] <= 1.0
        assert p["n_incidents"] == n
    above = all(by[rc["graph_ranker"]]["AC@1"] > by[x]["AC@1"] for x in by if x.startswith(("rule", "no-graph")))
    assert rc["graph_above_all_rules_and_nograph"] is above
    assert m["target_met"] is (above and rc["vs_best_rule"]["low"] > 0)


def test_summary_comes_from_this_run_and_says_smoke(run, m):
    _, result = run
    summary = m["summary"]
    assert summary[0] == SMOKE_LABEL
    rc = m["rootcause"]
    by = {r["method"]: r for r in rc["rows"]}
    line = next(x for x in summary if x.startswith("Root cause"))
    g = by[rc["graph_ranker"]]
    assert f"{rc['graph_ranker']}, has AC@1 {g['AC@1']:.2f} [{g['AC@1_low']:.2f}, {g['AC@1_high']:.2f}]" in line
    p = rc["vs_best_rule"]
    assert f"paired difference {p['difference']:+.2f} [{p['low']:+.2f}, {p['high']:+.2f}]" in line
    assert line.endswith(f"{'met' if m['target_met'] else 'NOT met'} in this run.")
    det = {r["name"]: r for r in m["detection_table"]}
    assert f"temporal GAT {det['temporal GAT']['pr_auc']:.2f}" in next(x for x in summary if "PR-AUC" in x)
    shown = shown_text(result.output_notebook)
    assert all(x in shown for x in summary)  # the summary printed is the one recorded
    assert SMOKE_LABEL in shown


def test_studies_run_the_other_regime_and_unseen_topologies(run, m):
    name, _ = run
    if name != "shop":
        assert "other_regime" not in m and "unseen" not in m
        return
    other = m["other_regime"]
    assert other["regime"] == "easy" and [r["method"] for r in other["rows"]] == METHODS
    assert set(other["pr_auc"]) == {"temporal GAT", "no-graph"}
    unseen = m["unseen"]
    assert len(unseen["train_graphs"]) == 2
    for label in ("random graphs", "shop"):
        res = unseen[label]
        assert [r["method"] for r in res["rows"]] == METHODS
        assert res["rows"][0]["n_incidents"] == res["vs_best_rule"]["n_incidents"] > 0
        assert res["graph_ranker"].startswith("temporal GAT · ") and res["best_rule"].startswith("rule · ")
        assert all(_fraction(v) for v in res["pr_auc"].values())
    assert unseen["shop"]["graphs"] == ["8 services, 10 dependencies"]
    assert any(x.startswith("Unseen shop") for x in m["summary"])
    assert any(x.startswith("Easy regime") for x in m["summary"])


def test_the_model_is_taken_apart_with_this_runs_shapes(run, m):
    name, _ = run
    n = RUNS[name][1]
    layers, recurrent = RUNS[name][0].get("num_layers", 2), RUNS[name][0].get("recurrent", "lstm")
    assert m["model"] == {"hidden": 16, "heads": 4, "recurrent": recurrent, "num_layers": layers}
    shapes = {p["step"]: p["shape"] for p in m["model_parts"]}
    edges = m["series"]["dependencies"]
    # four windows of 8 steps (smoke), 4 metrics with their 4 mask channels, hidden 16, 4 heads
    assert shapes["inputs with mask"] == [4, 8, n, 8]
    assert shapes["input projection"] == shapes[f"GATv2 layer {layers} + residual + LayerNorm"] == [4 * n * 8, 16]
    assert f"GATv2 layer {layers + 1} + residual + LayerNorm" not in shapes
    assert shapes["attention of the last layer"] == [4, 8, 2 * edges + n, 4]
    recurrent_name = {"lstm": "LSTM", "mingru": "minGRU"}[recurrent]
    assert shapes[f"{recurrent_name} over the S steps"] == [4 * n, 8, 16]
    assert shapes["risk head (logits)"] == [4, n]
    assert m["series"]["services"] == n


def test_outputs_hold_one_progress_display_per_training_and_no_warnings(run):
    name, result = run
    stdout, stderr = output_streams(result.output_notebook)
    assert len(progress_lines(stdout + stderr)) <= 7 * len(RUNS[name][2])  # 6 smoke epochs: a line each at most
    closing = [line for line in stdout.splitlines() if CLOSING_LINE.search(line)]
    assert len(closing) == len(RUNS[name][2]), closing
    for line, desc in zip(closing, RUNS[name][2], strict=True):
        assert line.startswith(desc), (line, desc)
    assert "IProgress" not in shown_text(result.output_notebook)
    assert not stderr, stderr


def test_device_parameters_and_figures_are_recorded(run, m):
    name, result = run
    assert m["device"] == str(resolve_device("auto"))
    params = result.metrics["params"]
    assert (params["profile"], params["device"], params["regime"]) == ("smoke", "auto", "hard")
    assert params["topology"] == ("random" if name == "random" else "shop")
    assert (params["steps"], params["window"], params["hidden"], params["epochs"], params["num_seeds"]) == (
        2000,
        8,
        16,
        6,
        1,
    )
    assert params["n_resamples"] == 200 and m["seeds"] == [0]
    assert result.metrics["runtime_s"] > 0 and "torch" in result.metrics["versions"]
    assert [r["seed"] for r in m["seed_study"]] == [0]
    names = {p.name for p in result.output_notebook.parent.glob("*.png")}
    assert names >= FIGURES
