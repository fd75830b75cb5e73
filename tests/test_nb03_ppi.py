"""Notebook 03 (inductive GAT on PPI) in the smoke profile, on the generated PPI-format stand-in.

It needs no real data: the smoke profile writes the stand-in itself. The checks: the stand-in is
flagged, the split is inductive, the table and summary come from the run and say smoke, the
trivial predictor's micro-F1 is the hand formula, the deeper-layer attention investigation is
internally consistent, the CPU estimate is labelled and its arithmetic holds, and no full-profile
number is shown. Speed is not asserted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from _notebook_output import CLOSING_LINE, progress_lines, shown_text
from _notebook_output import streams as output_streams

from tgad_lite.device import resolve_device

pytestmark = pytest.mark.notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_ppi.ipynb"
MODELS = ("GAT (ours)", "GCN", "MLP")
SMOKE_LABEL = "SMOKE RUN: tiny settings, not a result."
STANDIN_NODES = 40  # the notebook's default standin_nodes


@pytest.fixture(scope="module")
def run(run_notebook_once):
    return run_notebook_once("03_ppi")


@pytest.fixture(scope="module")
def m(run):
    return run.metrics["metrics"]


def test_standin_is_flagged_and_has_ppis_format(run, m):
    assert m["is_standin"] is True
    assert m["graphs"] == {"train": 20, "val": 2, "test": 2}
    assert (m["num_features"], m["num_labels"]) == (50, 121)
    assert m["proteins"] == {split: n * STANDIN_NODES for split, n in m["graphs"].items()}
    assert "STAND-IN DATA: generated, not the real PPI" in shown_text(run.output_notebook)


def test_split_is_inductive(m):
    ind = m["inductive"]
    # The stand-in numbers its graphs 1..24 across the three files, as the real raw files do.
    assert ind["graph_ids"] == {"train": list(range(1, 21)), "val": [21, 22], "test": [23, 24]}
    assert ind["shared_graph_ids"] == {"train&val": [], "train&test": [], "val&test": []}
    assert ind["train_loader_proteins"] == ind["train_proteins"] == m["proteins"]["train"]
    assert ind["identical_feature_rows"] == {"val": 0, "test": 0}  # random normal features: no repeats


def test_table_has_the_three_models_and_the_trivial_predictor(m):
    table = m["table"]
    assert set(table) == {*MODELS, "every label present"}
    for name in MODELS:
        row = table[name]
        assert row["n"] == 1 and row["std"] is None, name  # no spread from one seed
        assert row["per_seed"] == [pytest.approx(row["mean"])], name
        assert 0.0 < row["mean"] < 1.0, name
        assert row["epochs_mean"] == 2 and 1 <= row["best_epoch_mean"] <= 2, name
    # Predicting every label present scores 2p / (1 + p), p the test positive rate: the metric pipeline
    # (pooled counts, logits > 0) checked against the hand formula.
    trivial = table["every label present"]
    p = trivial["positive_rate"]
    assert 0.2 < p < 0.8 and trivial["mean"] == pytest.approx(2 * p / (1 + p))
    assert m["test_f1_mean"] == table["GAT (ours)"]["mean"] and m["test_f1_std"] is None
    assert m["gat_parameters"] == 2_899_493  # the paper's sizes, as in tests/test_ppi_model.py


def test_attention_entropy_per_layer_and_head(m):
    per_head = m["attention_entropy_ratio_per_head"]
    assert [len(r) for r in per_head] == [4, 4, 6]
    assert all(0.0 < v <= 1.0 + 1e-9 for r in per_head for v in r)  # entropy never exceeds uniform's


def test_deeper_layer_investigation_is_consistent(m):
    assert "SYNTHETIC" in m["attention_probe"]  # the stand-in is too small: a PPI-sized graph, labelled
    assert m["attention_probe_max_degree"] >= 200  # hundreds of partners, as in real PPI
    nodes, edges = 2245, 61_000
    for row, heads in zip(m["attention_coefficients"], (4, 4, 6), strict=True):
        assert row["heads"] == heads and row["coefficients"] == heads * (edges + nodes)
        assert 0.0 <= row["min"] <= row["max"] <= 1.0
        assert 0.0 <= row["small_near_uniform"] <= 1.0 and 0.0 <= row["below_0_01"] <= 1.0
    for row in m["attention_precision"]:
        assert row["dtype"] == "float32"
        assert row["max_abs_sum_minus_1"] < 1e-5  # softmax outputs: each node's coefficients sum to 1
        assert row["bfloat16_max_rel_error"] <= 2**-8 + 1e-12  # 8 significant bits, rounded to nearest
        if row["float16_subnormal"] == 0:
            assert row["float16_max_rel_error"] <= 2**-11 + 1e-12  # 11 significant bits
        if row["min"] >= 1e-7:
            assert row["float16_zeros"] == 0
    for row in m["attention_edge_order"]:
        assert (row["input_edges"], row["attended_edges"], row["input_self_loops"]) == (edges, edges + nodes, 0)
        assert row["prefix_equals_input"] and row["tail_is_self_loops"]
        assert row["right_pairing_mean_sum_error"] < 1e-6
        # Pairing with the input edges drops the self loops: each node misses its self loop's share.
        assert row["input_edges_pairing_mean_sum_error"] > 1e-3
        assert row["resorted_pairing_mean_sum_error"] > 1e-2
        assert row["same_edge_order"] and row["max_abs_alpha_diff"] < 1e-5  # PyG's GATConv, copied weights
    answer = m["attention_answer"]
    assert any("full run" in line for line in answer)  # the answer on real PPI is not claimed from a smoke run


def test_cpu_estimate_is_labelled_and_its_arithmetic_holds(m):
    e = m["cpu_estimate"]
    assert "ESTIMATE" in e["label"] and "not a measured full run" in e["label"]
    # Smoke times one PPI-sized graph per step (the full profile the paper's batch of two).
    assert e["graphs_per_timed_step"] == 1 and (e["batch_nodes"], e["batch_edges"]) == (2245, 61_000)
    assert e["timed_steps"] == 1 and len(e["step_seconds"]) == 1 and e["step_s"] > 0 and e["step_cpu_s"] > 0
    assert e["steps_per_epoch"] == 20  # 20 training graphs, 1 per timed step
    assert e["val_pass_s"] == pytest.approx(e["eval_forward_s"] * 6514 / e["eval_forward_nodes"])
    assert e["epoch_s"] == pytest.approx(20 * e["step_s"] + e["val_pass_s"])
    assert e["epoch_cpu_s"] == pytest.approx(20 * e["step_cpu_s"] + e["eval_forward_cpu_s"] * 6514 / 2245)
    assert set(e["hours"]) == set(e["hours_cpu_time"]) == {"101", "400", "1000"}  # patience 100 + 1 at least
    for epochs, hours in e["hours"].items():
        assert hours == pytest.approx(e["epoch_s"] * int(epochs) / 3600)
        assert e["hours_cpu_time"][epochs] == pytest.approx(e["epoch_cpu_s"] * int(epochs) / 3600)
    assert e["threads"] == 1 == m["torch_threads"]  # the smoke profile runs on one thread


def test_summary_comes_from_this_run_says_smoke_and_shows_no_full_result(run, m):
    summary = m["summary"]
    assert summary[0] == SMOKE_LABEL
    gat = m["table"]["GAT (ours)"]
    assert f"test micro-F1 {gat['mean']:.3f} (1 seed) on the generated PPI-format stand-in" in summary[1]
    for name in ("GCN", "MLP"):
        assert f"{name}: {m['table'][name]['mean']:.3f} (1 seed)." in summary
    assert any(line.startswith("Full profile: NOT RUN here") for line in summary)
    estimate = [line for line in summary if line.startswith("CPU ESTIMATE")]
    assert len(estimate) == 1 and f"{m['cpu_estimate']['step_s']:.1f} s wall per training step" in estimate[0]
    assert all(line in summary for line in m["attention_answer"])
    shown = shown_text(run.output_notebook)
    assert all(line in shown for line in summary)  # the summary printed is the one recorded


def test_outputs_hold_one_progress_display_per_training_run(run, m):
    streams = "".join(output_streams(run.output_notebook))
    shown = shown_text(run.output_notebook)
    assert len(progress_lines(streams)) < 50
    assert len(CLOSING_LINE.findall(streams)) == sum(m["table"][name]["n"] for name in MODELS) == 3
    assert "IProgress" not in shown
    assert not re.search(r"± 0\.0+(?![0-9])", shown) and "(1 seed)" in shown  # no zero spread from one seed


def test_device_and_metadata_are_recorded(run, m):
    assert m["device"] == str(resolve_device("auto"))
    assert m["device_name"]
    record = json.loads((run.output_notebook.parent / "metrics.json").read_text())
    assert record["params"]["profile"] == "smoke" and record["params"]["device"] == "auto"
    assert record["seed"] == 0
    assert record["versions"]["torch"].startswith("2.13")
    assert record["runtime_s"] > 0


def test_figures_are_written_at_100_dpi_or_more(run):
    from PIL import Image

    out = run.output_notebook.parent
    names = {p.name for p in out.glob("*.png")}
    assert {
        "ppi_graphs.png",
        "ppi_training_curves.png",
        "ppi_models_over_seeds.png",
        "ppi_attention_entropy.png",
        "ppi_attention_neighbourhood.png",
        "ppi_attention_by_degree.png",
    } <= names
    for png in out.glob("*.png"):
        dpi = Image.open(png).info.get("dpi", (0, 0))
        assert min(dpi) >= 99.5, png.name


def test_notebook_source_uses_the_package_and_states_the_full_profile_was_not_run():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    params = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert 'device = "auto"  # choice: auto|cpu|cuda: ' in params
    assert "PPIGAT(" in code and "train_multilabel(" in code and "load_ppi(" in code
    assert "ppi_root = None" in code  # the full profile reads real data only, through the data layer
    assert "**not measured**" in markdown and "estimate" in markdown.lower()
