"""Tests for the plotting helpers (tgad_lite.viz), drawn off-screen with the Agg backend."""

from __future__ import annotations

import random

import matplotlib
import matplotlib.legend

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from tgad_lite.data.microservices import shop_graph  # noqa: E402
from tgad_lite.viz import (  # noqa: E402
    class_colors,
    compute_layout,
    degree_histogram,
    draw_graph,
    edge_widths,
    plot_heatmap,
    plot_with_anomalies,
)


@pytest.fixture
def ax():
    fig, axis = plt.subplots()
    yield axis
    plt.close(fig)


def ring(n: int) -> np.ndarray:
    """Both directions of a ring on n nodes: [2, 2n]."""
    a = np.arange(n)
    b = (a + 1) % n
    return np.stack([np.concatenate([a, b]), np.concatenate([b, a])])


# --------------------------------------------------------------------------- draw_graph


def test_draw_graph_returns_coords_and_is_deterministic_per_seed(ax):
    ei = ring(12)
    a = draw_graph(ei, 12, ax=ax, seed=3)
    b = draw_graph(torch.from_numpy(ei), 12, ax=ax, seed=3)
    c = draw_graph(ei, 12, ax=ax, seed=4)
    assert a.shape == (12, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert np.isfinite(a).all()


def test_layout_leaves_global_random_state_alone():
    random.seed(5)
    expected = random.random()
    random.seed(5)
    compute_layout(ring(30), 30, "fr", seed=0)
    assert random.random() == expected


@pytest.mark.parametrize("layout", ["kk", "circle"])
def test_other_layouts_are_deterministic(layout):
    ei = ring(9)
    np.testing.assert_array_equal(compute_layout(ei, 9, layout, seed=1), compute_layout(ei, 9, layout, seed=1))


def test_draw_graph_reuses_given_positions(ax):
    xy = np.random.default_rng(0).normal(size=(5, 2))
    out = draw_graph(ring(5), 5, ax=ax, layout=xy)
    np.testing.assert_array_equal(out, xy)
    nodes = next(c for c in ax.collections if isinstance(c, PathCollection))
    np.testing.assert_allclose(nodes.get_offsets(), xy)


def test_edge_width_mapping_is_monotonic():
    values = np.array([0.3, 0.05, 0.9, 0.3, 0.6])
    widths = edge_widths(values, (0.5, 4.0))
    assert widths.min() == 0.5 and widths.max() == 4.0
    order = np.argsort(values)
    assert np.all(np.diff(widths[order]) >= 0)
    assert widths[0] == widths[3]  # equal values, equal widths
    # All-equal values still get one visible width.
    np.testing.assert_allclose(edge_widths(np.ones(4), (0.5, 4.0)), 2.25)


def test_drawn_edges_get_width_by_value(ax):
    ei = ring(6)
    values = np.linspace(0.0, 1.0, ei.shape[1])[::-1].copy()  # first edge strongest
    xy = draw_graph(ei, 6, ax=ax, edge_width=values, seed=0)
    lines = next(c for c in ax.collections if isinstance(c, LineCollection))
    widths = np.asarray(lines.get_linewidths())
    assert len(widths) == ei.shape[1]
    assert np.all(np.diff(widths) >= 0)  # drawn thinnest first, so strong edges stay on top
    widest = lines.get_segments()[-1]
    np.testing.assert_allclose(widest, xy[ei[:, 0]])  # ... and the widest is edge 0
    assert widths[-1] > 3 * widths[0]


def test_arrows_are_one_patch_per_edge(ax):
    ei = ring(4)
    draw_graph(ei, 4, ax=ax, arrows=True, edge_width=np.arange(ei.shape[1]), seed=0)
    assert len(ax.patches) == ei.shape[1]
    assert not any(isinstance(c, LineCollection) for c in ax.collections)


def test_class_colours_and_legend(ax):
    y = np.array([0, 1, 2, 2, 1, 0])
    names = ["alpha", "beta", "gamma"]
    draw_graph(ring(6), 6, ax=ax, node_color=y, legend=names, seed=0)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == names
    nodes = next(c for c in ax.collections if isinstance(c, PathCollection))
    palette = class_colors(3)
    for i, colour in enumerate(nodes.get_facecolors()):
        np.testing.assert_allclose(colour, to_rgba(palette[y[i]]))
    handle_colours = [to_rgba(h.get_markerfacecolor()) for h in legend.legend_handles]
    np.testing.assert_allclose(handle_colours, [to_rgba(c) for c in palette])


def test_edge_legend_keys_widths_to_values_and_keeps_class_legend(ax):
    ei = ring(5)
    values = np.linspace(0.1, 0.9, ei.shape[1])
    draw_graph(
        ei,
        5,
        ax=ax,
        node_color=np.array([0, 1, 0, 1, 0]),
        legend=["a", "b"],
        edge_width=values,
        edge_legend="attention",
        seed=0,
    )
    key = ax.get_legend()
    assert key.get_title().get_text() == "attention"
    assert [t.get_text() for t in key.get_texts()] == ["0.10", "0.50", "0.90"]
    lines = next(c for c in ax.collections if isinstance(c, LineCollection))
    key_widths = [h.get_linewidth() for h in key.legend_handles]
    assert key_widths[0] == pytest.approx(min(lines.get_linewidths()))
    assert key_widths[-1] == pytest.approx(max(lines.get_linewidths()))
    classes = [a for a in ax.artists if isinstance(a, matplotlib.legend.Legend)]
    assert [t.get_text() for t in classes[0].get_texts()] == ["a", "b"]
    with pytest.raises(ValueError, match="edge_width"):
        draw_graph(ei, 5, ax=ax, edge_legend="attention")


def test_node_size_grows_with_value(ax):
    sizes = np.array([1, 5, 2, 10])
    draw_graph(ring(4), 4, ax=ax, node_size=sizes, size_range=(10, 100), seed=0)
    nodes = next(c for c in ax.collections if isinstance(c, PathCollection))
    drawn = nodes.get_sizes()
    np.testing.assert_array_equal(np.argsort(drawn), np.argsort(sizes))
    assert drawn.min() == 10 and drawn.max() == 100


def test_layered_layout_puts_callers_above_callees():
    shop = shop_graph()
    xy = compute_layout(shop.edge_index, shop.num_nodes, "sugiyama")
    callers, callees = shop.edge_index
    assert np.all(xy[callers, 1] > xy[callees, 1])
    tree = compute_layout(shop.edge_index, shop.num_nodes, "tree")
    assert tree[shop.index("Frontend"), 1] == tree[:, 1].max()


def test_draw_graph_rejects_bad_input(ax):
    with pytest.raises(ValueError, match="num_nodes=3"):
        draw_graph(np.array([[0, 1], [1, 5]]), 3, ax=ax)
    with pytest.raises(ValueError, match=r"\[2, E\]"):
        draw_graph(np.array([[0, 1], [1, 2], [2, 0]]), 3, ax=ax)
    with pytest.raises(ValueError, match="one value per column"):
        draw_graph(ring(3), 3, ax=ax, edge_width=np.ones(2))
    with pytest.raises(ValueError, match="class ids"):
        draw_graph(ring(3), 3, ax=ax, node_color=np.array([0.1, 0.5, 0.9]))
    with pytest.raises(ValueError, match="legend"):
        draw_graph(ring(3), 3, ax=ax, node_color=np.array([0, 1, 3]), legend=["a", "b"])
    with pytest.raises(ValueError, match="layout"):
        draw_graph(ring(3), 3, ax=ax, layout="spring")
    with pytest.raises(ValueError, match="NaN"):
        draw_graph(ring(3), 3, ax=ax, edge_width=np.array([1.0, np.nan, 1, 1, 1, 1]))


def test_degree_histogram_counts_every_node(ax):
    degrees = np.array([0, 1, 1, 2, 2, 2, 7, 30])
    values, counts = degree_histogram(degrees, ax=ax, title="t")
    np.testing.assert_array_equal(values, [0, 1, 2, 7, 30])
    assert counts.sum() == len(degrees)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title() == "t"
    assert "1 with degree 0" in ax.get_legend().get_texts()[0].get_text()
    with pytest.raises(ValueError, match="non-negative integers"):
        degree_histogram(np.array([1.5, 2.0]), ax=ax)


# --------------------------------------------------------------------------- time series


def _spans(axis) -> list[tuple[float, float]]:
    """x extents of the shaded rectangles (axvspan) on an axes."""
    out = []
    for p in axis.patches:
        x = p.get_x() if hasattr(p, "get_x") else None
        if x is not None:
            out.append((x, x + p.get_width()))
    return sorted(out)


def test_plot_with_anomalies_shades_each_range(ax):
    labels = np.zeros(50, dtype=int)
    labels[:3] = 1
    labels[20:25] = 1
    labels[49] = 1
    values = np.sin(np.arange(50) / 5)
    out = plot_with_anomalies(values, labels, ax=ax, title="demo", ylabel="volts (V)")
    assert out == [ax]
    assert _spans(ax) == [(-0.5, 2.5), (19.5, 24.5), (48.5, 49.5)]
    assert ax.get_title() == "demo" and ax.get_ylabel() == "volts (V)" and ax.get_xlabel()


def test_plot_with_anomalies_small_multiples_and_marks():
    fig, axes = plt.subplots(2, 2)
    values = np.random.default_rng(0).normal(size=(40, 3))
    labels = np.zeros((40, 3), dtype=int)
    labels[10:15, 1] = 1  # per-feature labels: only feature 1 is hit
    used = plot_with_anomalies(
        values, labels, axes=axes, feature_names=["a", "b", "c"], marks=[(10, 14, 1)], title="grid"
    )
    assert len(used) == 3
    assert not axes[1, 1].get_visible()
    assert [a.get_title() for a in used] == ["a", "b", "c"]
    assert [len(_spans(a)) for a in used] == [0, 1, 0]
    # The mark redraws feature 1's values over rows 10..14.
    red = [line for line in used[1].get_lines() if len(line.get_xdata()) == 5]
    assert len(red) == 1
    np.testing.assert_array_equal(red[0].get_ydata(), values[10:15, 1])
    assert fig.get_suptitle() == "grid"
    plt.close(fig)


def test_plot_with_anomalies_time_axis_and_errors(ax):
    labels = np.array([0, 1, 1, 0])
    plot_with_anomalies(np.arange(4.0), labels, ax=ax, time=np.array([0.0, 0.5, 1.0, 1.5]))
    assert _spans(ax) == [(0.25, 1.25)]
    with pytest.raises(ValueError, match="time steps"):
        plot_with_anomalies(np.arange(5.0), labels, ax=ax)
    with pytest.raises(ValueError, match="either ax"):
        plot_with_anomalies(np.arange(4.0), labels, ax=ax, axes=[ax])


def test_plot_heatmap_layout(ax):
    matrix = np.arange(30.0).reshape(10, 3)  # [T, F]
    labels = np.zeros((10, 3), dtype=int)
    labels[2:5, 0] = 1
    image = plot_heatmap(matrix, ax=ax, labels=labels, feature_names=["x", "y", "z"], cbar_label="ms")
    np.testing.assert_array_equal(image.get_array(), matrix.T)  # one row per feature
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "z"]
    assert ax.figure.axes[-1].get_ylabel() == "ms"  # the colour bar


def test_time_series_plots_refuse_scores_as_labels_with_the_shared_message(ax):
    # The plots check labels with tgad_lite.intervals.check_labels, as the metrics will.
    with pytest.raises(ValueError, match=r"labels must be 0/1 .*found 0\.4.*threshold"):
        plot_with_anomalies(np.arange(3.0), np.array([0.0, 0.4, 1.0]), ax=ax)
    with pytest.raises(ValueError, match="0/1"):
        plot_heatmap(np.zeros((3, 2)), ax=ax, labels=np.array([0, 2, 0]))


def test_heatmap_marks_each_range_of_1d_labels_above_the_image(ax):
    labels = np.array([1, 0, 0, 1, 1, 0, 1])
    plot_heatmap(np.zeros((7, 2)), ax=ax, labels=labels, colorbar=False)
    # One bar per range, covering its steps fully: (0,0), (3,4), (6,6).
    assert _spans(ax) == [(-0.5, 0.5), (2.5, 4.5), (5.5, 6.5)]
