"""Attention figures: widths proportional to attention from zero, the uniform reference, entropy ratios."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from tgad_lite.viz.attention import (  # noqa: E402
    entropy_ratio_boxplot,
    entropy_ratio_frame,
    neighbourhood_attention,
    plot_attention_neighbourhood,
)
from tgad_lite.viz.graph import draw_graph, edge_widths, widths_from_zero  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def star(d: int) -> np.ndarray:
    """Edges 1..d -> 0 (neighbours into the centre), ``[2, d]``."""
    return np.stack([np.arange(1, d + 1), np.zeros(d, dtype=np.int64)])


def drawn_widths(ax) -> np.ndarray:
    lines = next(c for c in ax.collections if isinstance(c, LineCollection))
    return np.sort(np.asarray(lines.get_linewidths(), dtype=float))


# --------------------------------------------------------------------------- widths from zero


def test_widths_are_proportional_to_values_from_zero():
    np.testing.assert_allclose(widths_from_zero([0.1, 0.2, 0.4], 4.0), [1.0, 2.0, 4.0])
    np.testing.assert_allclose(widths_from_zero(np.array([0.0, 3.0, 1.5]), 2.0), [0.0, 2.0, 1.0])
    np.testing.assert_allclose(widths_from_zero(torch.tensor([2.0, 2.0])), [5.0, 5.0])  # default max width 5
    np.testing.assert_array_equal(widths_from_zero([0.0, 0.0], 3.0), [0.0, 0.0])  # nothing to draw


def test_nine_percent_apart_looks_nine_percent_apart():
    # Attention 9% below and 9% above uniform (1/169), as on Cora's best-connected paper.
    alpha = np.array([0.91, 1.0, 1.09]) / 169
    widths = widths_from_zero(alpha, 5.0)
    np.testing.assert_allclose(widths, [5.0 * 0.91 / 1.09, 5.0 / 1.09, 5.0])  # 4.174, 4.587, 5.0
    assert widths[2] / widths[0] == pytest.approx(1.09 / 0.91)  # 1.2x wider, as the values
    # Min-max scaling, which this replaces, drew the same values 12.5x apart.
    assert edge_widths(alpha, (0.4, 5.0))[2] / edge_widths(alpha, (0.4, 5.0))[0] == pytest.approx(12.5)


def test_widths_from_zero_refuse_what_they_cannot_draw_honestly():
    with pytest.raises(ValueError, match="non-negative.*edge_scale='minmax'"):
        widths_from_zero([-0.5, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        widths_from_zero([np.nan, 1.0])
    with pytest.raises(ValueError, match="max_width"):
        widths_from_zero([1.0], 0.0)


def test_draw_graph_scales_edges_from_zero_by_default_and_minmax_on_request(ax):
    values = np.array([0.2, 0.4, 0.8])
    draw_graph(star(3), 4, ax=ax, edge_width=values, width_range=(0.5, 4.0), seed=0)
    np.testing.assert_allclose(drawn_widths(ax), [1.0, 2.0, 4.0])  # 4 * v / 0.8; the lower end is unused
    ax.cla()
    draw_graph(star(3), 4, ax=ax, edge_width=values, width_range=(0.5, 4.0), edge_scale="minmax", seed=0)
    np.testing.assert_allclose(drawn_widths(ax), [0.5, 0.5 + 3.5 / 3, 4.0])
    with pytest.raises(ValueError, match="edge_scale"):
        draw_graph(star(3), 4, ax=ax, edge_width=values, edge_scale="log")
    with pytest.raises(ValueError, match="edge_legend"):
        draw_graph(star(3), 4, ax=ax, edge_width=values, edge_reference={"uniform": 0.25})


def test_edge_legend_shows_the_reference_at_its_true_width(ax):
    values = np.array([0.2, 0.3, 0.4])
    draw_graph(
        star(3),
        4,
        ax=ax,
        edge_width=values,
        width_range=(0.0, 2.0),
        edge_legend="attention",
        edge_reference={"uniform, 1/4": 0.25},
        seed=0,
    )
    key = ax.get_legend()
    labels = [t.get_text() for t in key.get_texts()]
    assert labels == ["0.200", "0.300", "0.400", "uniform, 1/4: 0.250"]  # a digit more beside a reference
    widths = [h.get_linewidth() for h in key.legend_handles]
    np.testing.assert_allclose(widths, [1.0, 1.5, 2.0, 1.25])  # 2 * v / 0.4, the drawn edges' scale
    assert key.legend_handles[-1].get_linestyle() == "--"
    np.testing.assert_allclose(drawn_widths(ax), [1.0, 1.5, 2.0])


# --------------------------------------------------------------------------- one node's neighbourhood


def neighbourhood_example():
    # Node 0 attends to 1, 2, 3 and itself; node 1 attends to 0 and itself. Two heads.
    edge_index = torch.tensor([[1, 2, 3, 0, 0, 1], [0, 0, 0, 0, 1, 1]])
    alpha = torch.tensor([[0.1, 0.25], [0.2, 0.25], [0.3, 0.25], [0.4, 0.25], [0.5, 0.5], [0.5, 0.5]])
    return edge_index, alpha


def test_neighbourhood_attention_splits_neighbours_self_loop_and_uniform():
    nbh = neighbourhood_attention(*neighbourhood_example(), node=0, head=0)
    np.testing.assert_array_equal(nbh.neighbours, [1, 2, 3])
    np.testing.assert_allclose(nbh.alpha, [0.1, 0.2, 0.3])
    assert nbh.self_alpha == pytest.approx(0.4) and nbh.uniform == 0.25 and nbh.num_edges == 4
    s = nbh.summary()
    assert s["min"] == pytest.approx(0.1) and s["max"] == pytest.approx(0.3)
    assert s["min_over_uniform"] == pytest.approx(0.4) and s["max_over_uniform"] == pytest.approx(1.2)
    uniform_head = neighbourhood_attention(*neighbourhood_example(), node=0, head=1)
    np.testing.assert_allclose(uniform_head.alpha / uniform_head.uniform, 1.0)


def test_neighbourhood_attention_refuses_bad_requests():
    ei, alpha = neighbourhood_example()
    with pytest.raises(ValueError, match="head 2 does not exist.*2 head"):
        neighbourhood_attention(ei, alpha, node=0, head=2)
    with pytest.raises(ValueError, match="node 3 has no in-edges"):
        neighbourhood_attention(ei, alpha, node=3)
    with pytest.raises(ValueError, match=r"alpha must be \[E\] or \[E, H\] with E = 6"):
        neighbourhood_attention(ei, alpha[:5], node=0)


def test_neighbourhood_plot_draws_attention_proportionally_with_the_uniform_key(ax):
    nbh = neighbourhood_attention(*neighbourhood_example(), node=0, head=0)
    xy = plot_attention_neighbourhood(nbh, ax=ax, node_color=np.array([0, 1, 1, 0]), legend=["a", "b"], max_width=3.0)
    assert xy.shape == (4, 2)
    np.testing.assert_allclose(drawn_widths(ax), [1.0, 2.0, 3.0])  # 3 * alpha / 0.3
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[-1] == "uniform, 1/4: 0.250"


# --------------------------------------------------------------------------- entropy against uniform


def test_entropy_ratio_frame_divides_by_log_degree_and_skips_single_edge_nodes():
    uniform = np.log(np.array([2.0, 1.0, 4.0]))  # node 1 has one in-edge: nothing to choose
    layer1 = np.array([[np.log(2.0), 0.5], [0.0, 0.0], [np.log(2.0), np.log(4.0)]])
    layer2 = np.array([[0.0], [0.0], [np.log(4.0)]])
    frame = entropy_ratio_frame([layer1, layer2], uniform, ["layer 1", "layer 2"])
    assert sorted(set(frame.node)) == [0, 2]
    got = {(r.layer, r.head, r.node): r.ratio for r in frame.itertuples()}
    assert got[("layer 1", 1, 0)] == pytest.approx(1.0)
    assert got[("layer 1", 2, 0)] == pytest.approx(0.5 / np.log(2.0))
    assert got[("layer 1", 1, 2)] == pytest.approx(0.5)  # log 2 / log 4
    assert got[("layer 2", 1, 0)] == 0.0 and got[("layer 2", 1, 2)] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 layer names for 1 layers"):
        entropy_ratio_frame([layer1], uniform, ["a", "b"])


def test_entropy_boxplot_marks_uniform_at_one_above_the_boxes(ax):
    uniform = np.log(np.array([2.0, 3.0, 4.0]))
    ent = np.stack([uniform * 0.9, uniform * 0.8], axis=1)
    entropy_ratio_boxplot(entropy_ratio_frame([ent], uniform), ax=ax, title="t")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["layer 1\nhead 1", "layer 1\nhead 2"]
    assert any(list(line.get_ydata()) == [1.0, 1.0] and line.get_linestyle() == "--" for line in ax.get_lines())
    assert ax.get_ylim()[1] > 1.0  # room for the label, no legend on the data
    assert ax.get_legend() is None
    assert any(t.get_text() == "uniform attention (ratio 1)" for t in ax.texts)
