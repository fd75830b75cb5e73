"""Plots for the notebooks: graphs (:mod:`tgad_lite.viz.graph`) and time series with anomaly
ranges (:mod:`tgad_lite.viz.timeseries`).

They draw the arrays or tensors they are given on matplotlib axes; nothing here loads data or
models. Label helpers (0/1 labels <-> anomaly ranges) are in :mod:`tgad_lite.intervals`.
matplotlib and igraph are imported by the functions that need them, so importing this
package stays cheap and sets no backend.
"""

from __future__ import annotations

from tgad_lite.viz.graph import (
    class_colors,
    compute_layout,
    degree_histogram,
    draw_graph,
    edge_widths,
    node_sizes,
)
from tgad_lite.viz.sweep import plot_sweep
from tgad_lite.viz.timeseries import plot_heatmap, plot_with_anomalies, shade_ranges

__all__ = [
    "class_colors",
    "compute_layout",
    "degree_histogram",
    "draw_graph",
    "edge_widths",
    "node_sizes",
    "plot_heatmap",
    "plot_sweep",
    "plot_with_anomalies",
    "shade_ranges",
]
