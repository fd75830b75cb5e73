"""A sweep's metric per setting: every run (seed, entity) as a dot, mean ± std as a black diamond.

It draws the table it is given: ``tgad_lite.notebooks.aggregate.load_runs(folder)``, or
``sweep(...).attrs["runs"]`` (one row per run). Only runs with status ok are drawn; the title
says how many others there were. The error bars are the sample standard deviation (ddof 1), the
``std`` of ``aggregate_runs``; a setting with one run has none.
"""

from __future__ import annotations

from typing import Any


def plot_sweep(
    runs: Any,
    metric: str,
    *,
    ax: Any,
    x: str | None = None,
    hue: str | None = None,
    title: str | None = None,
    ylabel: str | None = None,
) -> Any:
    """Plot ``metric`` of each ok run against setting ``x`` (default: the first swept parameter
    not averaged over; none: one column), coloured by ``hue``, with mean ± std per setting.

    ``runs``: one row per run with ``status``, the parameter columns and the metric column.
    Raises ``ValueError`` naming the available metrics when ``metric`` is not a column, and when
    no ok run has a value for it. Returns ``ax``.
    """
    import pandas as pd
    import seaborn as sns

    from tgad_lite.notebooks.aggregate import setting_keys

    if metric not in runs.columns:
        available = runs.attrs.get("metrics") or [c for c in runs.columns if c not in ("folder", "status", "error")]
        raise ValueError(f"no metric {metric!r} in the runs table; metrics: {', '.join(map(str, available))}")
    data = runs[runs["status"] == "ok"].copy()
    data[metric] = pd.to_numeric(data[metric], errors="coerce")
    data = data.dropna(subset=[metric])
    if data.empty:
        raise ValueError(f"no run with status ok has a value for {metric!r}; nothing to plot")
    if x is None:
        keys = setting_keys(runs)
        x = keys[0] if keys else None
    if x is None:
        data = data.assign(setting="all runs")
        x = "setting"
    data[x] = data[x].astype(str)  # categories in table order, numbers included
    dodge = 0.4 if hue else False
    sns.stripplot(data=data, x=x, y=metric, hue=hue, dodge=bool(hue), ax=ax, alpha=0.5, size=5, jitter=0.15)
    sns.pointplot(
        data=data,
        x=x,
        y=metric,
        hue=hue,
        dodge=dodge,
        errorbar="sd",
        estimator="mean",
        linestyle="none",
        marker="D",
        color=None if hue else "k",
        capsize=0.1,
        ax=ax,
        legend=False,
    )
    others = int((runs["status"] != "ok").sum())
    note = f"; {others} run(s) not ok, not shown" if others else ""
    ax.set_title(title or f"{metric}: each run, and mean ± std per {x} ({len(data)} runs{note})")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or metric)
    ax.grid(alpha=0.3, axis="y")
    return ax


__all__ = ["plot_sweep"]
