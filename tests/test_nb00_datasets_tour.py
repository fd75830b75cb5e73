"""Executes notebooks/00_datasets_tour.ipynb (smoke profile) and checks what it reports.

Real data (Cora, MSL) must give the published sizes exactly; the generated PPI/SMD stand-ins
must be flagged as such; the microservice cascade measured from the labels must match the
generator's settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _notebook_output import progress_lines, shown_text, streams

from tgad_lite.data import data_dir, load_telemanom
from tgad_lite.data.microservices import Incident, cascade, shop_graph
from tgad_lite.device import resolve_device

pytestmark = pytest.mark.notebook

FIGURES = (
    "cora_graph",
    "cora_degrees",
    "ppi_stats",
    "smd_machine",
    "msl_channel",
    "msl_channels",
    "shop_graph",
    "services_heatmap",
    "services_latency",
)


def _has_real_data(root: Path | None) -> bool:
    return (
        root is not None
        and (root / "Cora" / "raw" / "ind.cora.x").is_file()
        and (root / "MSL" / "labeled_anomalies.csv").is_file()
    )


@pytest.fixture(scope="module")
def nb00(run_notebook_once, data_mirror):
    if not (_has_real_data(data_mirror) or _has_real_data(data_dir())):
        pytest.skip(
            "needs the real Cora and MSL files: set TGAD_DATA_MIRROR (CI: ../shared/data) or "
            "place them under data/ (see data/README.md)"
        )
    return run_notebook_once("00_datasets_tour")


@pytest.fixture(scope="module")
def m(nb00):
    return nb00.metrics["metrics"]


@pytest.fixture(scope="module")
def params(nb00):
    return nb00.metrics["params"]


def test_cora_statistics_are_exact(m):
    assert (m["cora_nodes"], m["cora_edges"], m["cora_features"], m["cora_classes"]) == (2708, 10556, 1433, 7)
    assert (m["cora_train"], m["cora_val"], m["cora_test"]) == (140, 500, 1000)
    assert m["cora_largest_component_nodes"] < m["cora_nodes"]
    assert 0 < m["cora_feature_density"] < 0.05  # bag of words: sparse
    assert 0.7 < m["cora_edge_homophily"] < 0.9  # Cora is known to be ~0.81 homophilous


def test_msl_statistics_are_exact(m, params):
    assert m["msl_channel"] == params["msl_channel"]
    assert m["msl_channel_test_shape"][1] == 55 and m["msl_channel_train_shape"][1] == 55
    assert m["msl_channels"] == 27 and m["msl_features"] == 55
    # The concatenated sizes published by OmniAnomaly / MTAD-GAT.
    assert m["msl_train_shape"] == [58317, 55]
    assert m["msl_test_shape"] == [73729, 55]
    assert m["msl_anomaly_rate"] == pytest.approx(0.1053, abs=5e-4)
    for start, end in m["msl_channel_anomaly_ranges"]:
        assert 0 <= start <= end < m["msl_channel_test_shape"][0]


def test_smoke_uses_flagged_standins_in_the_real_formats(nb00, m, params):
    assert params["profile"] == "smoke"
    assert m["ppi_is_standin"] is True and m["smd_is_standin"] is True
    assert (m["ppi_graphs_train"], m["ppi_graphs_val"], m["ppi_graphs_test"]) == (20, 2, 2)
    assert (m["ppi_features"], m["ppi_labels"]) == (50, 121)
    assert m["ppi_shown_graph_nodes"] > 0 and m["ppi_mean_degree"] > 0
    assert 0 < m["ppi_positive_label_rate"] < 1
    assert m["smd_test_shape"][1] == 38 and m["smd_train_shape"][1] == 38
    assert 0 < m["smd_anomaly_rate"] < 0.5
    assert m["smd_anomaly_ranges"] >= 1 and m["smd_interpretation_events"] >= 1
    # The banner is visible in the executed notebook wherever stand-ins are used.
    executed = json.loads(Path(nb00.output_notebook).read_text())
    text = json.dumps([c.get("outputs", []) for c in executed["cells"]])
    assert "STAND-IN DATA: generated, not the real PPI" in text
    assert "STAND-IN DATA: generated, not the real SMD" in text


def test_cascade_matches_the_generator(m, params):
    shop = shop_graph()
    root = shop.index(params["incident_root"])
    incident = Incident(root, 0, params["incident_steps"], params["incident_kind"], 1.0)
    hit = cascade(shop, incident, hop_delay=params["hop_delay"])
    expected = {shop.names[v]: h for v, h, _, _ in hit}
    assert m["cascade_hops"] == expected
    assert set(m["cascade_services_affected"]) == set(expected)
    delays = m["cascade_onset_delay_per_hop"]
    assert len(delays) == max(expected.values()) >= 1
    assert all(d == params["hop_delay"] for d in delays)
    # Decay: each hop up the latency rises less than at the hop below it.
    by_hop = sorted(expected, key=expected.get)
    ratios = [m["cascade_latency_ratio"][name] for name in by_hop]
    assert ratios[0] > 2 and all(a > b > 1 for a, b in zip(ratios, ratios[1:], strict=False))


def test_figures_are_saved(nb00):
    folder = Path(nb00.output_notebook).parent
    for name in FIGURES:
        png = folder / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 5000, f"missing or empty figure {png.name}"


def test_device_is_resolved_and_recorded(m, params):
    assert params["device"] == "auto"
    assert m["device"] == str(resolve_device("auto"))  # cpu here, cuda where torch sees a GPU


def test_msl_per_channel_anomaly_fractions_and_their_wording(nb00, m, data_mirror, monkeypatch):
    if data_mirror is not None:
        monkeypatch.setenv("TGAD_DATA_MIRROR", str(data_mirror))
    msl = load_telemanom("MSL")
    bounds = np.append(msl.test_boundaries, len(msl.test))
    rates = {
        ch: float(msl.test_labels[a:b].mean()) for ch, a, b in zip(msl.channels, bounds[:-1], bounds[1:], strict=True)
    }
    assert m["msl_channel_anomaly_fraction"] == pytest.approx(rates)
    assert m["msl_max_channel_anomaly_fraction"] == pytest.approx(max(rates.values()))
    assert m["msl_min_channel_anomaly_fraction"] == pytest.approx(min(rates.values()))
    # The prose follows the number: the maximum is printed, and "mostly anomalous" is not said of
    # channels that are at most 60 % anomalous (the real maximum is about half).
    text = shown_text(nb00.output_notebook)
    assert f"{m['msl_max_channel_anomaly_fraction']:.1%}" in text
    if m["msl_max_channel_anomaly_fraction"] <= 0.6:
        source = Path(__file__).resolve().parents[1] / "notebooks" / "00_datasets_tour.ipynb"
        assert "mostly anomalous" not in text and "mostly anomalous" not in source.read_text()
        assert "about half" in text


def test_ppi_sizes_are_reported_for_what_was_loaded(nb00, m):
    per_split = m["ppi_nodes_per_split"]
    assert set(per_split) == {"train", "val", "test"} and all(n > 0 for n in per_split.values())
    assert m["ppi_total_nodes"] == sum(per_split.values())
    graphs = m["ppi_graphs_train"] + m["ppi_graphs_val"] + m["ppi_graphs_test"]
    assert m["ppi_mean_nodes_per_graph"] == pytest.approx(m["ppi_total_nodes"] / graphs)
    # The real data set's sizes are stated beside the stand-in's; the wrong "about 2,250" is gone.
    text = shown_text(nb00.output_notebook)
    assert "56,944" in text and "44,906" in text
    assert "2,250" not in text


def test_outputs_hold_no_progress_spam_iprogress_or_processing(nb00):
    stdout, stderr = streams(nb00.output_notebook)
    text = stdout + stderr
    assert len(progress_lines(text)) < 50
    assert "IProgress" not in text
    assert "Processing..." not in text and "Done!" not in stderr


def test_summary_is_computed_and_labels_the_smoke_run(nb00, m):
    text = shown_text(nb00.output_notebook)
    assert "SMOKE RUN" in text
    # Figures in the summary come from this run's metrics.
    assert f"{m['cora_nodes']:,} nodes" in text and f"{m['msl_anomaly_rate']:.1%}" in text
