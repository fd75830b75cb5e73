"""A sweep's tables: one row per run, and mean ± std per setting over seeds and entities.

``load_runs`` reads the run folders of a sweep (their ``run.json`` and ``metrics.json``) into one
row per run; ``aggregate_runs`` groups the finished runs by setting (the swept parameters not
averaged over) and gives, per metric, n, mean, sample std (ddof 1: ``NaN`` for a single run, shown
as ``n/a``), min and max; ``format_summary`` prints it with the failed runs and the last line of
their error. A metric is a number in ``metrics.json``: for a file written by
``tgad_lite.repro.write_metrics``, the numbers under its ``"metrics"`` key, otherwise the whole
file; nested keys are joined with dots (``tsne.kl_divergence``); text, booleans, lists and
non-finite numbers are not metrics.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tgad_lite.notebooks.errors import RunnerError

DEFAULT_OVER = ("seed", "entity", "entities")
RUN_COLUMNS = ("folder", "status", "error", "seconds", "attempts")
STAT_COLUMNS = ("metric", "n", "mean", "std", "min", "max", "runs", "failed")


def flatten_metrics(data: Any, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a JSON object, keyed by their dotted path; booleans, text, lists
    and ``NaN``/``inf`` are left out. A ``write_metrics`` record is read under its ``"metrics"``."""
    if not prefix and isinstance(data, dict) and isinstance(data.get("metrics"), dict) and "params" in data:
        data = data["metrics"]
    out: dict[str, float] = {}
    if not isinstance(data, dict):
        return out
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_metrics(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def _cell(value: Any) -> Any:
    """A parameter value as a table cell: lists and dicts as JSON text (hashable, CSV-safe)."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"))
    return value


def load_runs(
    root: str | os.PathLike,
    folders: Sequence[str] | None = None,
    *,
    swept: Mapping[str, Mapping[str, Any]] | None = None,
) -> Any:
    """One row per run folder of a sweep in ``root`` (default: every folder holding ``run.json``).

    Columns: ``folder``, ``status`` (``ok``, ``failed``, ``interrupted``, or ``not run`` for a
    folder that does not exist), ``error``, ``seconds``, ``attempts``, the swept parameters (from
    ``swept`` or each ``run.json``), then the flattened metrics of the ok runs. ``attrs`` holds
    ``parameters`` and ``metrics``: the names of those columns. A metric named like another
    column is prefixed ``metrics.``.
    """
    import pandas as pd

    from tgad_lite.notebooks.sweep import METRICS, read_record

    root = Path(root)
    if folders is None:
        folders = sorted(p.parent.name for p in root.glob("*/run.json"))
    rows, params, metric_names = [], {}, {}
    for folder in folders:
        record = read_record(root / folder)
        values = dict((swept or {}).get(folder) or (record or {}).get("swept") or {})
        params.update(dict.fromkeys(values))
        row = {"folder": folder, "status": "not run", "error": None, "seconds": None, "attempts": None}
        if record is not None:
            row.update(
                status=record.get("status", "failed"),
                error=record.get("error"),
                seconds=record.get("seconds"),
                attempts=record.get("attempts"),
            )
        row.update({k: _cell(v) for k, v in values.items()})
        found: dict[str, float] = {}
        if row["status"] == "ok":
            try:
                found = flatten_metrics(json.loads((root / folder / METRICS).read_text()))
            except (OSError, ValueError) as exc:
                row.update(status="failed", error=f"{METRICS} is unreadable: {exc}")
        metric_names.update(dict.fromkeys(found))
        rows.append((row, found))
    taken = set(RUN_COLUMNS) | set(params)
    rename = {m: (f"metrics.{m}" if m in taken else m) for m in metric_names}
    frame = pd.DataFrame(
        [{**row, **{rename[k]: v for k, v in found.items()}} for row, found in rows],
        columns=[*RUN_COLUMNS, *params, *rename.values()],
    )
    frame.attrs["parameters"] = list(params)
    frame.attrs["metrics"] = list(rename.values())
    return frame


def select_metrics(available: Sequence[str], patterns: Sequence[str] | None) -> list[str]:
    """The metrics matching ``patterns`` (exact names or ``*``/``?`` wildcards), in table order.

    ``None`` selects all. Raises ``RunnerError`` naming a pattern that matches nothing, with the
    available names.
    """
    if patterns is None or not available:  # no finished run: nothing to select from
        return list(available)
    chosen: list[str] = []
    for pattern in patterns:
        hits = [m for m in available if fnmatch.fnmatchcase(m, pattern)]
        if not hits:
            shown = ", ".join(available[:40]) + (" ..." if len(available) > 40 else "")
            raise RunnerError(
                f"--metric {pattern!r} matches no metric of the finished runs; metrics: {shown or '(none)'}"
            )
        chosen.extend(h for h in hits if h not in chosen)
    return [m for m in available if m in chosen]


def setting_keys(runs: Any, over: Sequence[str] = DEFAULT_OVER) -> list[str]:
    """The swept parameters that make a setting: those not averaged ``over`` that take more than
    one value among the runs."""
    return [k for k in runs.attrs.get("parameters", []) if k not in over and runs[k].nunique(dropna=False) > 1]


def aggregate_runs(
    runs: Any,
    *,
    over: Sequence[str] = DEFAULT_OVER,
    metrics: Sequence[str] | None = None,
    by: Sequence[str] | None = None,
) -> Any:
    """Mean ± std of each metric per setting, over the ok runs (seeds, entities) of the setting.

    ``runs`` is ``load_runs``'s table. ``by`` (default ``setting_keys(runs, over)``) are the
    columns that make a setting. Returns one row per setting and metric: the setting's values,
    ``metric``, ``n`` (ok runs with that metric), ``mean``, ``std`` (sample, ddof 1; NaN when
    n < 2), ``min``, ``max``, ``runs`` (all runs of the setting) and ``failed`` (those not ok). A
    setting without any metric gets one row with ``metric`` empty and ``n`` 0.
    """
    import pandas as pd

    by = list(setting_keys(runs, over) if by is None else by)
    names = select_metrics(runs.attrs.get("metrics", []), metrics)
    rows = []
    groups = runs.groupby(by, dropna=False, sort=False) if by else [((), runs)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        setting = dict(zip(by, key, strict=True))
        ok = group[group["status"] == "ok"]
        counts = {"runs": len(group), "failed": int((group["status"] != "ok").sum())}
        for name in names:
            values = pd.to_numeric(ok[name], errors="coerce").dropna()
            n = len(values)
            rows.append(
                {
                    **setting,
                    "metric": name,
                    "n": n,
                    "mean": float(values.mean()) if n else math.nan,
                    "std": float(values.std(ddof=1)) if n > 1 else math.nan,
                    "min": float(values.min()) if n else math.nan,
                    "max": float(values.max()) if n else math.nan,
                    **counts,
                }
            )
        if not names:
            rows.append(
                {**setting, "metric": "", "n": 0, **dict.fromkeys(("mean", "std", "min", "max"), math.nan), **counts}
            )
    table = pd.DataFrame(rows, columns=[*by, *STAT_COLUMNS])
    table.attrs["settings"] = by
    return table


def failed_runs(runs: Any) -> list[tuple[str, str, str]]:
    """``(folder, status, last line of the error)`` of every run that is not ok."""
    out = []
    for row in runs[runs["status"] != "ok"].itertuples(index=False):
        error = row.error if isinstance(row.error, str) else ""  # missing: None or NaN, by pandas version
        lines = [line for line in error.strip().splitlines() if line.strip()]
        empty = "(never started)" if row.status == "not run" else "(no error recorded)"
        out.append((row.folder, row.status, lines[-1] if lines else empty))
    return out


def _mean_std(mean: float, std: float, n: int) -> str:
    if n == 0:
        return "-"
    spread = "n/a" if math.isnan(std) else f"{std:.3g}"
    return f"{mean:.4g} ± {spread} (n={n})"


def format_summary(table: Any, runs: Any, max_metrics: int = 6) -> str:
    """The aggregate as text: a line per setting with ``mean ± std (n)`` of up to
    ``max_metrics`` metrics, then the runs that are not ok with the last line of their error."""
    by = list(table.attrs.get("settings", [c for c in table.columns if c not in STAT_COLUMNS]))
    metrics = [m for m in dict.fromkeys(table["metric"]) if m]
    shown = metrics[:max_metrics]
    lines = []
    if len(table):
        header = ["setting", "runs", "failed", *shown]
        body = []
        for key, part in table.groupby(by, dropna=False, sort=False) if by else [((), table)]:
            key = key if isinstance(key, tuple) else (key,)
            label = " ".join(f"{k}={v}" for k, v in zip(by, key, strict=True)) or "all runs"
            cells = {r.metric: _mean_std(r.mean, r.std, r.n) for r in part.itertuples(index=False)}
            first = part.iloc[0]
            body.append([label, str(first["runs"]), str(first["failed"]), *(cells.get(m, "-") for m in shown)])
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *body]]
        if len(metrics) > len(shown):
            lines.append(f"(+{len(metrics) - len(shown)} more metrics in the CSV; choose some with --metric NAME)")
    failures = failed_runs(runs)
    if failures:
        lines.append(f"runs not ok ({len(failures)}):")
        lines += [f"  {folder}  {status}: {last}" for folder, status, last in failures]
    return "\n".join(lines)


def write_csv(frame: Any, path: str | os.PathLike) -> Path:
    """Write ``frame`` (without its index) to ``path`` atomically; return the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


__all__ = [
    "DEFAULT_OVER",
    "aggregate_runs",
    "failed_runs",
    "flatten_metrics",
    "format_summary",
    "load_runs",
    "select_metrics",
    "setting_keys",
    "write_csv",
]
