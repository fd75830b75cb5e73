"""Plotting multivariate time series with their labelled anomaly ranges.

Only draws what it is given (arrays or tensors); never loads data or models. Anomaly labels are
0/1 per time step; a run of consecutive 1s is one anomaly range, shaded in red. The label
helpers (checking 0/1 labels, labels <-> ranges) live in :mod:`tgad_lite.intervals`, shared with
the metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tgad_lite.intervals import check_labels, label_ranges

ANOMALY_COLOR = "tab:red"


def _to_numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _time_axis(time: Any, length: int) -> tuple[np.ndarray, float]:
    """(x positions [T], width of one step) for ``time`` (None = step numbers 0..T-1)."""
    if time is None:
        return np.arange(length, dtype=np.float64), 1.0
    t = _to_numpy(time).astype(np.float64).ravel()
    if t.shape[0] != length:
        raise ValueError(f"time has {t.shape[0]} entries but the values have {length} steps")
    step = float(np.median(np.diff(t))) if length > 1 else 1.0
    return t, step


def shade_ranges(
    ax: Any,
    labels: Any,
    *,
    time: Any = None,
    color: str = ANOMALY_COLOR,
    alpha: float = 0.2,
    label: str | None = "labelled anomaly",
) -> list[tuple[int, int]]:
    """Shade every anomaly range of ``labels [T]`` on ``ax``; return the ranges.

    A range covers its steps fully (half a step either side), so a one-step anomaly is visible.
    """
    ranges = label_ranges(labels)
    t, step = _time_axis(time, len(_to_numpy(labels)))
    for i, (s, e) in enumerate(ranges):
        ax.axvspan(
            t[s] - step / 2,
            t[e] + step / 2,
            color=color,
            alpha=alpha,
            linewidth=0,
            label=label if i == 0 else None,
            zorder=0,
        )
    return ranges


def _is_first_col(ax: Any) -> bool:
    spec = ax.get_subplotspec() if hasattr(ax, "get_subplotspec") else None
    return spec is None or spec.is_first_col()


def _is_last_row(ax: Any) -> bool:
    spec = ax.get_subplotspec() if hasattr(ax, "get_subplotspec") else None
    return spec is None or spec.is_last_row()


def plot_with_anomalies(
    values: Any,
    labels: Any,
    *,
    ax: Any = None,
    axes: Sequence[Any] | None = None,
    title: str | None = None,
    feature_names: Sequence[str] | None = None,
    max_features: int = 8,
    time: Any = None,
    xlabel: str = "time step",
    ylabel: str = "value",
    marks: Sequence[tuple[int, int, int]] | None = None,
    color: str = "tab:blue",
) -> list:
    """Plot a time series with its anomaly ranges shaded; return the axes drawn on.

    - ``values [T]`` or ``[T, F]``; ``labels [T]`` (0/1, shared by all features) or ``[T, F]``
      (one label column per feature, e.g. per service).
    - ``ax``: one axes; the first ``max_features`` features are overlaid with a legend.
    - ``axes``: a sequence of axes (e.g. ``fig.subplots(r, c).ravel()``); feature ``i`` goes on
      ``axes[i]`` (small multiples), up to ``min(F, max_features, len(axes))`` features; spare
      axes are hidden. ``title`` then becomes the figure's title.
    - ``time [T]``: x positions (e.g. hours) instead of step numbers; say so in ``xlabel``.
    - ``marks``: ``(start, end_inclusive, feature)`` triples whose values are redrawn in red,
      e.g. SMD's interpretation labels (the metrics blamed for each anomaly).
    """
    v = _to_numpy(values).astype(np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError(f"values must be [T] or [T, F] with T > 0, got shape {v.shape}")
    length, n_feat = v.shape
    lab = check_labels(labels, length)
    if lab.ndim == 2 and lab.shape[1] != n_feat:
        raise ValueError(f"labels [T, F] has {lab.shape[1]} columns but values have {n_feat} features")
    if lab.ndim not in (1, 2):
        raise ValueError(f"labels must be [T] or [T, F], got shape {lab.shape}")
    if feature_names is not None and len(feature_names) != n_feat:
        raise ValueError(f"feature_names has {len(feature_names)} names for {n_feat} features")
    if max_features < 1:
        raise ValueError(f"max_features must be >= 1, got {max_features}")
    names = list(feature_names) if feature_names is not None else [f"feature {i}" for i in range(n_feat)]
    t, _ = _time_axis(time, length)

    def column(i: int) -> np.ndarray:
        return lab if lab.ndim == 1 else lab[:, i]

    def draw_marks(axis: Any, i: int) -> None:
        for start, end, feature in marks or ():
            if feature == i:
                axis.plot(t[start : end + 1], v[start : end + 1, i], color=ANOMALY_COLOR, linewidth=1.2, zorder=3)

    if (ax is None) == (axes is None):
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(10, 3))
        else:
            raise ValueError("pass either ax (features overlaid) or axes (one feature per axes), not both")

    if ax is not None:
        shown = min(n_feat, max_features)
        # Overlaid features share one time axis: shade where any shown feature is labelled.
        shade_ranges(ax, lab if lab.ndim == 1 else lab[:, :shown].max(axis=1), time=t)
        for i in range(shown):
            ax.plot(
                t, v[:, i], linewidth=0.8, label=names[i] if n_feat > 1 else None, color=color if n_feat == 1 else None
            )
            draw_marks(ax, i)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_xlim(t[0], t[-1])
        if title:
            ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=7, frameon=False, ncol=2 if shown > 4 else 1)
        return [ax]

    from matplotlib.ticker import MaxNLocator

    axes = list(np.ravel(np.asarray(axes, dtype=object)))
    shown = min(n_feat, max_features, len(axes))
    for i, axis in enumerate(axes):
        if i >= shown:
            axis.set_visible(False)
            continue
        shade_ranges(axis, column(i), time=t, label=None)
        axis.plot(t, v[:, i], color=color, linewidth=0.6)
        draw_marks(axis, i)
        axis.set_title(names[i], fontsize=8, pad=2)
        axis.set_xlim(t[0], t[-1])
        axis.tick_params(labelsize=6)
        # Few ticks on small panels: readable, and ticks dominate drawing time for big grids.
        axis.xaxis.set_major_locator(MaxNLocator(nbins=5))
        axis.yaxis.set_major_locator(MaxNLocator(nbins=3))
        if _is_last_row(axis):
            axis.set_xlabel(xlabel, fontsize=8)
        if _is_first_col(axis):
            axis.set_ylabel(ylabel, fontsize=8)
    if title:
        axes[0].figure.suptitle(title)
    return axes[:shown]


def plot_heatmap(
    matrix: Any,
    *,
    ax: Any,
    labels: Any = None,
    feature_names: Sequence[str] | None = None,
    title: str | None = None,
    cbar_label: str = "value",
    time: Any = None,
    xlabel: str = "time step",
    ylabel: str = "feature",
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
) -> Any:
    """Draw ``matrix [T, F]`` as an image with one row per feature and time along x; return
    the image.

    ``labels [T, F]`` outlines the labelled cells (one red contour per anomalous block);
    ``labels [T]`` draws the anomaly ranges as a red bar above the image. ``time [T]`` gives
    evenly spaced x positions (e.g. hours). ``colorbar=False`` leaves the colour bar out (for
    a 0/1 image, or to keep the x axis aligned with a plot above).
    """
    m = _to_numpy(matrix).astype(np.float64)
    if m.ndim != 2 or m.shape[0] == 0:
        raise ValueError(f"matrix must be [T, F] with T > 0, got shape {m.shape}")
    length, n_feat = m.shape
    t, step = _time_axis(time, length)
    extent = (t[0] - step / 2, t[-1] + step / 2, n_feat - 0.5, -0.5)
    image = ax.imshow(m.T, aspect="auto", interpolation="nearest", cmap=cmap, vmin=vmin, vmax=vmax, extent=extent)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, pad=0.01).set_label(cbar_label)
    if labels is not None:
        lab = check_labels(labels, length)
        if lab.ndim == 2:
            if lab.shape[1] != n_feat:
                raise ValueError(f"labels [T, F] has {lab.shape[1]} columns but matrix has {n_feat}")
            if lab.any():
                # Contour on a grid refined 2x so block edges land between cells.
                fine = np.repeat(np.repeat(lab.T, 2, axis=0), 2, axis=1).astype(float)
                xs = np.linspace(extent[0], extent[1], fine.shape[1])
                ys = np.linspace(-0.5, n_feat - 0.5, fine.shape[0])
                ax.contour(xs, ys, fine, levels=[0.5], colors=ANOMALY_COLOR, linewidths=1.2)
        else:
            for s, e in label_ranges(lab):
                ax.axvspan(
                    t[s] - step / 2,
                    t[e] + step / 2,
                    ymin=1.0,
                    ymax=1.04,
                    color=ANOMALY_COLOR,
                    clip_on=False,
                    linewidth=0,
                )
    if feature_names is not None:
        if len(feature_names) != n_feat:
            raise ValueError(f"feature_names has {len(feature_names)} names for {n_feat} features")
        ax.set_yticks(range(n_feat))
        ax.set_yticklabels(feature_names, fontsize=7 if n_feat > 20 else 9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, pad=8 if labels is not None else None)
    return image
