"""Drawing graphs: seeded igraph layouts, drawn with plain matplotlib.

The functions here only draw what they are given (arrays or tensors); they never load data or
models. igraph computes the layout; matplotlib draws it (a ``LineCollection`` for the edges, or
one arrow per edge when ``arrows=True``, and a ``scatter`` for the nodes), so the figure can be
combined with other matplotlib axes and saved like any other.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

LAYOUTS = ("fr", "kk", "sugiyama", "tree", "circle")
# Marker areas (points^2) for the smallest and largest node; smaller for big graphs so that
# thousands of nodes do not merge into one blob.
_SMALL_GRAPH_SIZES = (40.0, 400.0)
_LARGE_GRAPH_SIZES = (2.0, 60.0)
_LARGE_GRAPH = 300
EDGE_WIDTH_RANGE = (0.4, 5.0)


def _to_numpy(a: Any) -> np.ndarray:
    """``a`` as a NumPy array; accepts torch tensors (also on GPU or requiring grad)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _check_edge_index(edge_index: Any, num_nodes: int) -> np.ndarray:
    ei = _to_numpy(edge_index)
    if ei.size == 0:
        return np.zeros((2, 0), dtype=np.int64)
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise ValueError(
            f"edge_index must have shape [2, E] (row 0 sources, row 1 targets), got {ei.shape}; "
            "transpose an [E, 2] edge list with .T"
        )
    if not np.issubdtype(ei.dtype, np.integer):
        raise TypeError(f"edge_index must hold integer node indices, got dtype {ei.dtype}")
    if ei.min() < 0 or ei.max() >= num_nodes:
        raise ValueError(
            f"edge_index refers to node {int(ei.max() if ei.max() >= num_nodes else ei.min())}, "
            f"but num_nodes={num_nodes} (valid indices 0..{num_nodes - 1}); relabel a subgraph's "
            "nodes to 0..n-1 first (e.g. torch_geometric.utils.subgraph(..., relabel_nodes=True))"
        )
    return ei.astype(np.int64)


def scale_to_range(values: Any, lo: float, hi: float) -> np.ndarray:
    """Map ``values [K]`` linearly onto ``[lo, hi]`` (min -> lo, max -> hi), keeping the order.

    All-equal values map to the middle of the range. NaN or infinite values raise ValueError.
    """
    v = _to_numpy(values).astype(np.float64).ravel()
    if v.size == 0:
        return v
    if not np.isfinite(v).all():
        raise ValueError("cannot scale NaN or infinite values; replace or drop them first")
    span = v.max() - v.min()
    if span == 0:
        return np.full_like(v, (lo + hi) / 2)
    return lo + (hi - lo) * (v - v.min()) / span


def edge_widths(values: Any, width_range: tuple[float, float] = EDGE_WIDTH_RANGE) -> np.ndarray:
    """Line widths (points) ``[E]`` for edge values ``[E]``: a linear, order-preserving map of
    ``[min, max]`` onto ``width_range`` (min-max scaling).

    This magnifies differences: values 0.91 and 1.09 become the thinnest and the widest line.
    Use it for signed values or when only the order matters; for magnitudes such as attention
    weights use :func:`widths_from_zero`, which keeps their ratios.
    """
    return scale_to_range(values, *width_range)


def widths_from_zero(values: Any, max_width: float = EDGE_WIDTH_RANGE[1]) -> np.ndarray:
    """Line widths (points) ``[E]`` proportional to non-negative ``values [E]``: ``max_width * v / max(v)``.

    Zero maps to zero and ratios are kept, so an edge with 9% more weight than another is drawn
    9% wider (min-max scaling would draw them as thin against thick). All-zero values give zero
    widths. NaN, infinite or negative values raise ValueError.
    """
    v = _to_numpy(values).astype(np.float64).ravel()
    if not np.isfinite(max_width) or max_width <= 0:
        raise ValueError(f"max_width must be a positive number of points, got {max_width!r}")
    if v.size == 0:
        return v
    if not np.isfinite(v).all():
        raise ValueError("cannot scale NaN or infinite values; replace or drop them first")
    if (v < 0).any():
        raise ValueError(
            f"widths from zero need non-negative values, got a minimum of {v.min():g}; "
            "for signed values use min-max scaling (draw_graph(..., edge_scale='minmax'))"
        )
    top = v.max()
    return np.zeros_like(v) if top == 0 else max_width * v / top


EDGE_SCALES = ("zero", "minmax")


def _widths_on_scale_of(
    values: np.ndarray, drawn: np.ndarray, edge_scale: str, width_range: tuple[float, float]
) -> np.ndarray:
    """Widths of ``values`` on the scale fixed by the drawn edge values (for legend keys; a value
    outside the drawn range extrapolates, never below zero)."""
    lo, hi = width_range
    if edge_scale == "zero":
        top = drawn.max()
        return np.zeros_like(values) if top == 0 else np.maximum(hi * values / top, 0.0)
    span = drawn.max() - drawn.min()
    if span == 0:
        return np.full_like(values, (lo + hi) / 2)
    return np.maximum(lo + (hi - lo) * (values - drawn.min()) / span, 0.0)


def _scale_edges(values: Any, edge_scale: str, width_range: tuple[float, float]) -> np.ndarray:
    if edge_scale == "zero":
        return widths_from_zero(values, width_range[1])
    if edge_scale == "minmax":
        return edge_widths(values, width_range)
    raise ValueError(f"edge_scale must be one of {EDGE_SCALES}, got {edge_scale!r}")


def node_sizes(values: Any, size_range: tuple[float, float] | None = None) -> np.ndarray:
    """Marker areas (points^2) ``[N]`` for node values ``[N]`` (e.g. degrees).

    The marker *area* grows linearly with the value. The default range depends on the graph
    size: large graphs get smaller markers.
    """
    v = _to_numpy(values).ravel()
    if size_range is None:
        size_range = _LARGE_GRAPH_SIZES if v.size > _LARGE_GRAPH else _SMALL_GRAPH_SIZES
    return scale_to_range(v, *size_range)


def _palette(n: int) -> list:
    import matplotlib

    if n <= 10:
        return list(matplotlib.colormaps["tab10"].colors)[: max(n, 1)]
    if n <= 20:
        return list(matplotlib.colormaps["tab20"].colors)[:n]
    cmap = matplotlib.colormaps["hsv"]
    return [cmap(i / n) for i in range(n)]


def class_colors(num_classes: int) -> list:
    """The colour used for each class id ``0..num_classes-1`` (tab10 up to 10 classes), so
    several plots of the same classes agree."""
    return _palette(num_classes)


def _node_colors(
    node_color: Any, num_nodes: int, num_classes: int | None, palette: Sequence[Any] | None = None
) -> tuple[Any, list | None]:
    """(colours for scatter, the class palette or None when colours were given directly)."""
    if node_color is None:
        return "tab:blue", None
    if isinstance(node_color, str):
        return node_color, None
    arr = _to_numpy(node_color)
    if arr.dtype.kind in "US" or arr.dtype == object:  # colour names or hex strings
        if len(arr) != num_nodes:
            raise ValueError(f"node_color has {len(arr)} colours for {num_nodes} nodes")
        return list(arr), None
    if arr.ndim == 2 and arr.shape[1] in (3, 4):  # RGB(A) rows
        if arr.shape[0] != num_nodes:
            raise ValueError(f"node_color has {arr.shape[0]} RGB rows for {num_nodes} nodes")
        return arr, None
    if arr.ndim != 1 or arr.shape[0] != num_nodes:
        raise ValueError(
            f"node_color must be [N] class ids, [N] colour names or [N, 3|4] RGB(A) for "
            f"num_nodes={num_nodes}, got shape {arr.shape}"
        )
    if arr.dtype.kind == "b" or not np.array_equal(arr, np.round(arr)) or (arr.size and arr.min() < 0):
        raise ValueError(
            "node_color as a 1-D array must hold non-negative integer class ids; map continuous "
            "values to colours yourself (e.g. matplotlib.colormaps['viridis'](v)) and pass [N, 4]"
        )
    ids = arr.astype(np.int64)
    k = int(ids.max()) + 1 if ids.size else 1
    if num_classes is not None:
        if k > num_classes:
            raise ValueError(f"node_color has class id {k - 1} but legend names only {num_classes} classes")
        k = num_classes
    if palette is None:
        palette = _palette(k)
    elif len(palette) < k:
        raise ValueError(f"palette has {len(palette)} colours but there are {k} classes (ids 0..{k - 1})")
    palette = list(palette)
    return [palette[i] for i in ids], palette


@contextmanager
def _igraph_rng(seed: int) -> Iterator[None]:
    """Run igraph with its own ``random.Random(seed)``: its force-directed layouts draw random
    numbers even from given start positions. Afterwards igraph gets back its default generator
    (the ``random`` module), whose state this never touches."""
    import igraph as ig

    ig.set_random_number_generator(random.Random(seed))
    try:
        yield
    finally:
        ig.set_random_number_generator(random)


def compute_layout(
    edge_index: Any,
    num_nodes: int,
    layout: str = "fr",
    *,
    seed: int = 0,
    niter: int | None = None,
) -> np.ndarray:
    """Node positions ``[N, 2]`` for a graph given as ``edge_index [2, E]``.

    ``layout``: ``"fr"`` (Fruchterman-Reingold), ``"kk"`` (Kamada-Kawai), ``"circle"``, or for
    directed graphs (row 0 -> row 1, e.g. caller -> callee) ``"sugiyama"`` (layers by longest
    path) and ``"tree"`` (Reingold-Tilford from the nodes nothing points to); those two put the
    sources at the top. The force-directed layouts start from positions drawn with
    ``np.random.default_rng(seed)`` and run igraph on a generator seeded with ``seed``, so the
    same seed gives the same picture and no global random state is used or changed. ``niter``
    overrides the iteration count of ``"fr"`` (default 500; fewer is faster and rougher).
    """
    import igraph as ig

    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS} or an [N, 2] array of positions, got {layout!r}")
    ei = _check_edge_index(edge_index, num_nodes)
    directed = layout in ("sugiyama", "tree")
    pairs = ei.T
    if not directed:
        # One undirected edge per pair: PyG graphs list both directions.
        pairs = np.unique(np.sort(pairs, axis=1), axis=0) if pairs.size else pairs
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    g = ig.Graph(n=num_nodes, edges=pairs.tolist(), directed=directed)
    start = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(num_nodes, 2)).tolist()
    with _igraph_rng(seed):
        if layout == "fr":
            kwargs = {"niter": niter} if niter is not None else {}
            coords = g.layout_fruchterman_reingold(seed=start, **kwargs).coords
        elif layout == "kk":
            coords = g.layout_kamada_kawai(seed=start).coords
        elif layout == "circle":
            coords = g.layout_circle().coords
        elif layout == "sugiyama":
            coords = g.layout_sugiyama().coords[:num_nodes]  # later rows are dummy bend points
        else:
            roots = [v for v in range(num_nodes) if g.indegree(v) == 0] or [0]
            coords = g.layout_reingold_tilford(mode="out", root=roots).coords
    xy = np.asarray(coords, dtype=np.float64).reshape(num_nodes, 2)
    if directed:
        xy[:, 1] = -xy[:, 1]  # igraph puts layer 0 at y=0 growing downwards; matplotlib's y grows up
    return xy


def draw_graph(
    edge_index: Any,
    num_nodes: int,
    *,
    ax: Any,
    node_color: Any = None,
    node_size: Any = None,
    edge_width: Any = None,
    layout: str | Any = "fr",
    title: str | None = None,
    labels: Sequence[str] | Mapping[int, str] | None = None,
    legend: Sequence[str] | None = None,
    seed: int = 0,
    arrows: bool = False,
    size_range: tuple[float, float] | None = None,
    width_range: tuple[float, float] = EDGE_WIDTH_RANGE,
    edge_color: Any = "0.45",
    edge_alpha: float | None = None,
    niter: int | None = None,
    legend_title: str | None = None,
    palette: Sequence[Any] | None = None,
    edge_legend: str | None = None,
    edge_scale: str = "zero",
    edge_reference: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Draw a graph on ``ax`` and return the node positions ``[N, 2]``.

    - ``edge_index [2, E]``: row 0 source, row 1 target (NumPy or torch).
    - ``node_color``: ``[N]`` integer class ids (coloured with :func:`class_colors`), ``[N]``
      colour names, ``[N, 3|4]`` RGB(A), or one colour for all.
    - ``node_size``: ``[N]`` values (e.g. degree); marker area grows linearly with the value
      within ``size_range`` points^2 (default chosen from the graph size).
    - ``edge_width``: ``[E]`` values (e.g. attention weights), one per column of
      ``edge_index``; edges are drawn thinnest first so strong edges stay on top. With
      ``arrows=True`` each edge is a curved arrow, so the two directions of a pair (i->j and
      j->i) are both visible. Self-loops are not drawn.
    - ``edge_scale``: ``"zero"`` (default) draws widths proportional to the values,
      ``width_range[1] * v / max(v)`` (:func:`widths_from_zero`; values must be >= 0), so equal
      ratios look equal; ``"minmax"`` maps ``[min, max]`` onto ``width_range``
      (:func:`edge_widths`), which turns small differences into thin-against-thick lines.
    - ``edge_legend`` (e.g. ``"attention"``) adds a key of three widths with their values;
      ``edge_reference`` (``{label: value}``, e.g. ``{"uniform, 1/169": 1 / 169}``) adds dashed
      keys drawn at the width those values would get, for comparison.
    - ``layout``: ``"fr"``, ``"kk"``, ``"circle"``, ``"sugiyama"`` or ``"tree"`` (see
      :func:`compute_layout`, seeded by ``seed``), or an ``[N, 2]`` array of positions
      (e.g. the return value of an earlier call, to draw the same nodes in the same places).
    - ``labels``: ``[N]`` texts, or ``{node: text}`` for some nodes, written below the nodes.
    - ``legend``: class names for the ids in ``node_color``; adds a colour legend.
    - ``palette``: colours for class ids ``0, 1, ...`` (default :func:`class_colors`).
    """
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch

    num_nodes = int(num_nodes)
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    ei = _check_edge_index(edge_index, num_nodes)
    n_edges = ei.shape[1]

    if isinstance(layout, str):
        xy = compute_layout(ei, num_nodes, layout, seed=seed, niter=niter)
    else:
        xy = _to_numpy(layout).astype(np.float64)
        if xy.shape != (num_nodes, 2):
            raise ValueError(f"layout positions must have shape [{num_nodes}, 2], got {xy.shape}")

    if legend is not None and (node_color is None or isinstance(node_color, str)):
        raise ValueError("legend names classes: pass node_color as [N] integer class ids too")
    colors, class_palette = _node_colors(node_color, num_nodes, len(legend) if legend is not None else None, palette)
    if legend is not None and class_palette is None:
        raise ValueError("legend names classes: pass node_color as [N] integer class ids, not colours")
    if node_size is None:
        lo, hi = size_range or (_LARGE_GRAPH_SIZES if num_nodes > _LARGE_GRAPH else _SMALL_GRAPH_SIZES)
        sizes = np.full(num_nodes, lo + (hi - lo) / 4)
    else:
        sizes = _to_numpy(node_size).ravel()
        if sizes.shape[0] != num_nodes:
            raise ValueError(f"node_size has {sizes.shape[0]} values for {num_nodes} nodes")
        sizes = node_sizes(sizes, size_range)

    if edge_legend is not None and (edge_width is None or n_edges == 0):
        raise ValueError("edge_legend explains edge widths: pass edge_width values too")
    if edge_reference is not None and edge_legend is None:
        raise ValueError("edge_reference adds keys to the edge legend: pass edge_legend='...' too")
    if edge_scale not in EDGE_SCALES:
        raise ValueError(f"edge_scale must be one of {EDGE_SCALES}, got {edge_scale!r}")
    if edge_width is None:
        widths = np.full(n_edges, 0.3 if n_edges > 2000 else 1.0)
        order = np.arange(n_edges)
    else:
        w = _to_numpy(edge_width).ravel()
        if w.shape[0] != n_edges:
            raise ValueError(
                f"edge_width has {w.shape[0]} values but edge_index has {n_edges} edges; give one "
                "value per column of edge_index"
            )
        widths = _scale_edges(w, edge_scale, width_range)
        order = np.argsort(widths, kind="stable")
    if edge_alpha is None:
        edge_alpha = 0.25 if n_edges > 2000 else 0.7

    if arrows:
        # Markers are areas in points^2: the radius in points lets arrows stop at the node rim.
        radius = np.sqrt(sizes / np.pi)
        for e in order:
            s, t = ei[:, e]
            if s == t:
                continue
            ax.add_patch(
                FancyArrowPatch(
                    xy[s],
                    xy[t],
                    arrowstyle="-|>",
                    mutation_scale=8 + 2 * widths[e],
                    connectionstyle="arc3,rad=0.12",
                    linewidth=widths[e],
                    color=edge_color,
                    alpha=edge_alpha,
                    shrinkA=radius[s] + 1,
                    shrinkB=radius[t] + 2,
                    zorder=1,
                )
            )
    elif n_edges:
        segments = np.stack([xy[ei[0, order]], xy[ei[1, order]]], axis=1)
        ax.add_collection(
            LineCollection(
                segments,
                linewidths=widths[order],
                colors=edge_color,
                alpha=edge_alpha,
                zorder=1,
            )
        )

    ax.scatter(
        xy[:, 0],
        xy[:, 1],
        s=sizes,
        c=colors,
        edgecolors="white",
        linewidths=0.3 if num_nodes > _LARGE_GRAPH else 0.8,
        zorder=2,
    )

    if labels is not None:
        items = labels.items() if isinstance(labels, Mapping) else enumerate(labels)
        for i, text in items:
            if not 0 <= int(i) < num_nodes:
                raise ValueError(f"labels names node {i}, outside 0..{num_nodes - 1}")
            # Below the node: in layered layouts the arrows arrive from above.
            ax.annotate(
                str(text),
                xy[int(i)],
                xytext=(0, -np.sqrt(sizes[int(i)] / np.pi) - 2),
                textcoords="offset points",
                ha="center",
                va="top",
                fontsize=8,
                zorder=3,
                bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7},
            )

    if legend is not None:
        handles = [
            Line2D(
                [],
                [],
                marker="o",
                linestyle="",
                markersize=7,
                markerfacecolor=class_palette[i],
                markeredgecolor="white",
                label=str(name),
            )
            for i, name in enumerate(legend)
        ]
        class_legend = ax.legend(
            handles=handles,
            title=legend_title,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            frameon=False,
            fontsize=8,
            title_fontsize=9,
        )

    if edge_legend is not None:
        if legend is not None:
            ax.add_artist(class_legend)  # the next ax.legend() call would replace it otherwise
            class_legend.set_clip_on(False)  # add_artist clips to the axes; this legend sits outside
        w = _to_numpy(edge_width).astype(np.float64).ravel()
        samples = np.linspace(w.min(), w.max(), 3) if w.max() > w.min() else w[:1]
        span = float(w.max() - w.min()) or abs(float(w.max())) or 1.0
        refs = dict(edge_reference or {})
        # Two significant digits of the range; three with a reference, which usually falls inside
        # the range and must not print like one of the samples (0.0059 vs 0.00592).
        decimals = max(0, 1 - int(np.floor(np.log10(span)))) + (1 if refs else 0)
        ref_values = np.array(list(refs.values()), dtype=np.float64)
        if not np.isfinite(ref_values).all():
            raise ValueError(f"edge_reference values must be finite numbers, got {refs}")
        # On the drawn edges' scale, so a key is exactly as wide as an edge of its value.
        key_widths = _widths_on_scale_of(np.concatenate([samples, ref_values]), w, edge_scale, width_range)
        style = {"color": edge_color, "alpha": max(edge_alpha, 0.6)}
        keys = [
            Line2D([], [], linewidth=lw, label=f"{v:.{decimals}f}", **style)
            for v, lw in zip(samples, key_widths[: len(samples)], strict=True)
        ]
        keys += [
            Line2D([], [], linewidth=lw, linestyle="--", label=f"{name}: {v:.{decimals}f}", **style)
            for (name, v), lw in zip(refs.items(), key_widths[len(samples) :], strict=True)
        ]
        ax.legend(
            handles=keys,
            title=edge_legend,
            loc="lower left",
            bbox_to_anchor=(1.0, 0.0),
            frameon=False,
            fontsize=8,
            title_fontsize=9,
        )

    ax.autoscale_view()
    ax.margins(0.08)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_axis_off()  # layout coordinates have no unit
    if title:
        ax.set_title(title)
    return xy


def degree_histogram(
    degrees: Any,
    *,
    ax: Any,
    title: str | None = "Degree distribution",
    log: str = "loglog",
) -> tuple[np.ndarray, np.ndarray]:
    """Plot how many nodes have each degree; return ``(degree values [K], node counts [K])``.

    ``degrees [N]`` are non-negative integers. ``log="loglog"`` draws counts per degree on
    log-log axes (a heavy tail looks like a straight-ish line); ``"logy"`` draws a bar
    histogram with a log count axis. Degree-0 nodes cannot sit on a log degree axis, so with
    ``"loglog"`` their count is written in the legend instead.
    """
    d = _to_numpy(degrees).ravel()
    if d.size == 0:
        raise ValueError("degrees is empty: nothing to plot")
    if not np.array_equal(d, np.round(d)) or d.min() < 0:
        raise ValueError("degrees must be non-negative integers (e.g. torch_geometric.utils.degree(...).long())")
    d = d.astype(np.int64)
    values, counts = np.unique(d, return_counts=True)
    if log == "loglog":
        keep = values > 0
        zeros = int(counts[~keep].sum())
        label = f"{d.size} nodes" + (f" ({zeros} with degree 0 not shown)" if zeros else "")
        ax.loglog(values[keep], counts[keep], "o", markersize=4, alpha=0.8, label=label)
        ax.legend(frameon=False, fontsize=8)
    elif log == "logy":
        ax.bar(values, counts, width=1.0, color="tab:blue", alpha=0.8)
        ax.set_yscale("log")
    else:
        raise ValueError(f"log must be 'loglog' or 'logy', got {log!r}")
    ax.set_xlabel("degree (number of neighbours)")
    ax.set_ylabel("number of nodes")
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    return values, counts
