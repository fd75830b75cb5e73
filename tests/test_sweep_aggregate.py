"""Sweeps without a cluster: the grid (parsing, expansion, folder names), records and resume checks,
the aggregate table on hand-made run folders with hand-computed means and stds, the summary, the
retry of a run whose kernel cannot start, the dashboard note and the plot. Real sweeps on Dask:
test_sweep.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from fixtures.sweep_notebooks import sweep_notebook  # noqa: E402

from tgad_lite.notebooks import ParameterError, RunnerError  # noqa: E402
from tgad_lite.notebooks.aggregate import (  # noqa: E402
    aggregate_runs,
    failed_runs,
    flatten_metrics,
    format_summary,
    load_runs,
    select_metrics,
)
from tgad_lite.notebooks.sweep import (  # noqa: E402
    RECORD,
    completed,
    dashboard_line,
    expand_grid,
    parse_grid,
    plan_sweep,
    run_task,
    split_values,
    sweep_folder_name,
)
from tgad_lite.viz.sweep import plot_sweep  # noqa: E402

# --------------------------------------------------------------------------- the grid


def test_values_split_at_top_level_commas_and_read_as_literals() -> None:
    assert split_values("a, [1, 2] ,'x,y',{\"k\": (1, 2)}") == ["a", "[1, 2]", "'x,y'", '{"k": (1, 2)}']
    grid = parse_grid(["impl=sparse,dense", "lr=0.01", 'entities=["M-1"],["M-2", "T-1"]', "flag=True,None", "n=01"])
    assert grid == {
        "impl": ["sparse", "dense"],
        "lr": [0.01],
        "entities": [["M-1"], ["M-2", "T-1"]],
        "flag": [True, None],
        "n": ["01"],  # not a literal (a leading zero): kept as text, as `run -p` does
    }
    for bad, needle in [("lr", "name=value"), ("lr=0.1,", "empty value"), ("2x=1", "not a valid parameter name")]:
        with pytest.raises(ParameterError, match=needle):
            parse_grid([bad])
    with pytest.raises(ParameterError, match="given twice"):
        parse_grid(["lr=0.1", "lr=0.2"])


def test_expansion_order_and_seeds() -> None:
    combos = expand_grid({"model": ["gat", "gatv2"], "lr": [0.1]}, seeds=2, first_seed=5)
    assert combos == [
        {"model": "gat", "lr": 0.1, "seed": 5},
        {"model": "gat", "lr": 0.1, "seed": 6},
        {"model": "gatv2", "lr": 0.1, "seed": 5},
        {"model": "gatv2", "lr": 0.1, "seed": 6},
    ]
    assert expand_grid({}) == [{}]  # no grid: one run with the defaults
    with pytest.raises(ParameterError, match="give the seeds once"):
        expand_grid({"seed": [1, 2]}, seeds=2)
    with pytest.raises(ParameterError, match="seeds must be"):
        expand_grid({}, seeds=0)
    with pytest.raises(ParameterError, match="no values"):
        expand_grid({"lr": []})


def test_folder_names_are_readable_stable_and_distinct() -> None:
    a = {"entities": ["A-1", "B-22"], "seed": 3, "lr": 0.1}
    name = sweep_folder_name("05_mtad_gat", a, ["entities", "seed"])
    assert name.startswith("05_mtad_gat-entities=A-1_B-22-seed=3-") and len(name.rsplit("-", 1)[1]) == 8
    assert sweep_folder_name("05_mtad_gat", dict(a), ["entities", "seed"]) == name
    long_a = {"entities": ["X" * 40 + "a"]}
    long_b = {"entities": ["X" * 40 + "b"]}  # shortened alike, told apart by the hash
    assert sweep_folder_name("nb", long_a, ["entities"]) != sweep_folder_name("nb", long_b, ["entities"])
    assert "/" not in sweep_folder_name("nb", {"path": "a/b c"}, ["path"])


def test_plan_validates_converts_and_starts_seeds_at_the_given_one(tmp_path: Path) -> None:
    notebook = sweep_notebook(tmp_path / "tiny.ipynb")
    plan = plan_sweep(notebook, {"lr": 1, "seed": 5, "model": ["gat", "gatv2"]}, seeds=2)
    assert [c.swept for c in plan.combinations] == [
        {"lr": 1.0, "model": "gat", "seed": 5},  # int -> float for a float parameter; seed last
        {"lr": 1.0, "model": "gat", "seed": 6},
        {"lr": 1.0, "model": "gatv2", "seed": 5},
        {"lr": 1.0, "model": "gatv2", "seed": 6},
    ]
    assert all(c.values["profile"] == "smoke" and c.values["entity"] is None for c in plan.combinations)
    assert len({c.folder for c in plan.combinations}) == 4
    with pytest.raises(ParameterError, match=r"'seed' of tiny.ipynb must be a number in \[0, 1000\], got 5000"):
        plan_sweep(notebook, {"seed": [0, 5000]})
    no_seed = tmp_path / "noseed.ipynb"
    sweep_notebook(no_seed).write_text(no_seed.read_text().replace("seed = 0  # range: [0, 1000]: random seed\\n", ""))
    with pytest.raises(ParameterError, match="declares no 'seed'"):
        plan_sweep(no_seed, {}, seeds=2)


# --------------------------------------------------------------------------- records and tables


def _run_folder(root: Path, name: str, status: str, swept: dict, metrics: dict | str | None, error=None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    record = {"status": status, "error": error, "parameters": {"profile": "smoke", **swept}, "swept": swept}
    (folder / RECORD).write_text(json.dumps({**record, "seconds": 1.0, "attempts": 1}))
    if metrics is not None:
        (folder / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    return folder


def test_flatten_keeps_finite_numbers_by_dotted_path() -> None:
    data = {"a": 1, "b": {"c": 2.5, "d": {"e": -1}}, "t": "x", "flag": True, "xs": [1, 2], "none": None}
    assert flatten_metrics(data) == {"a": 1.0, "b.c": 2.5, "b.d.e": -1.0}
    assert flatten_metrics({"x": float("nan"), "y": float("inf"), "z": 0}) == {"z": 0.0}
    record = {"notebook": "02_cora", "metrics": {"acc": 0.8, "table": {"GAT": {"mean": 0.81}}}, "params": {}, "seed": 0}
    assert flatten_metrics(record) == {"acc": 0.8, "table.GAT.mean": 0.81}  # write_metrics: its "metrics" only


def test_aggregate_is_mean_and_sample_std_per_setting_over_seeds_and_entities(tmp_path: Path) -> None:
    # model gat: scores 1, 2, 4 over (seed, entity); mean 7/3, sample std sqrt(7/3) (hand-computed:
    # squared deviations 16/9 + 1/9 + 25/9 = 42/9, over n - 1 = 2). model gatv2: 10 and a failure.
    runs = [
        ("g0", "ok", {"model": "gat", "seed": 0, "entity": "A"}, {"score": 1, "lr": 5, "deep": {"x": 1}}),
        ("g1", "ok", {"model": "gat", "seed": 1, "entity": "A"}, {"score": 2, "lr": 5, "deep": {"x": 3}}),
        ("g2", "ok", {"model": "gat", "seed": 0, "entity": "B"}, {"score": 4, "lr": 5}),
        ("v0", "ok", {"model": "gatv2", "seed": 0, "entity": "A"}, {"score": 10, "lr": 5}),
        ("v1", "failed", {"model": "gatv2", "seed": 1, "entity": "A"}, {"score": 99}),  # not counted
    ]
    for name, status, swept, metrics in runs:
        _run_folder(tmp_path, name, status, swept | {"lr": 0.1}, metrics, error="Traceback\nValueError: boom")
    never = {"model": "gatv2", "seed": 2, "entity": "A", "lr": 0.1}  # planned, but its run never started
    table = load_runs(tmp_path, [r[0] for r in runs] + ["never"], swept={"never": never})
    assert table["status"].tolist() == ["ok", "ok", "ok", "ok", "failed", "not run"]
    assert table.attrs["parameters"] == ["model", "seed", "entity", "lr"]
    assert table.attrs["metrics"] == ["score", "metrics.lr", "deep.x"]  # "lr" is also a parameter

    agg = aggregate_runs(table).set_index(["model", "metric"])
    assert agg.attrs["settings"] == ["model"]  # seed and entity are averaged over; lr takes one value
    gat = agg.loc[("gat", "score")]
    assert (gat["n"], gat["runs"], gat["failed"]) == (3, 3, 0)
    assert gat["mean"] == pytest.approx(7 / 3) and gat["std"] == pytest.approx(math.sqrt(7 / 3))
    assert (gat["min"], gat["max"]) == (1.0, 4.0)
    assert agg.loc[("gat", "deep.x"), "n"] == 2 and agg.loc[("gat", "deep.x"), "std"] == pytest.approx(math.sqrt(2))
    v2 = agg.loc[("gatv2", "score")]
    assert (v2["n"], v2["mean"], v2["runs"], v2["failed"]) == (1, 10.0, 3, 2)  # the failure and the run never made
    assert math.isnan(v2["std"])  # one run: no spread, shown as n/a

    by_entity = aggregate_runs(table, over=("seed",), metrics=["sc*"])
    assert by_entity.attrs["settings"] == ["model", "entity"] and set(by_entity["metric"]) == {"score"}
    assert by_entity.set_index(["model", "entity"]).loc[("gat", "A"), "mean"] == pytest.approx(1.5)

    text = format_summary(aggregate_runs(table), table)
    assert "model=gat" in text and "2.333 ± 1.53 (n=3)" in text and "10 ± n/a (n=1)" in text
    assert "v1  failed: ValueError: boom" in text  # the last line of the error
    assert "never  not run: (never started)" in text
    assert failed_runs(table)[0] == ("v1", "failed", "ValueError: boom")


def test_metric_selection_and_records_that_do_not_count_as_done(tmp_path: Path) -> None:
    assert select_metrics(["a.x", "a.y", "b"], ["a.*", "b"]) == ["a.x", "a.y", "b"]
    with pytest.raises(RunnerError, match=r"'c\*' matches no metric.*a\.x, a\.y, b"):
        select_metrics(["a.x", "a.y", "b"], ["c*"])
    assert select_metrics([], ["c*"]) == []  # no finished run: nothing to check against

    values = {"profile": "smoke", "lr": 0.1}
    done = _run_folder(tmp_path, "done", "ok", {"lr": 0.1}, {"score": 1})
    assert completed(done, values)["status"] == "ok"
    assert completed(done, {**values, "lr": 0.2}) is None  # other parameters: run it
    assert completed(_run_folder(tmp_path, "failed", "failed", {"lr": 0.1}, {"score": 1}), values) is None
    assert completed(_run_folder(tmp_path, "cut", "ok", {"lr": 0.1}, '{"score": '), values) is None
    assert completed(_run_folder(tmp_path, "none", "ok", {"lr": 0.1}, None), values) is None
    assert completed(tmp_path / "absent", values) is None
    table = load_runs(tmp_path, ["cut"])
    assert table["status"].tolist() == ["failed"] and "unreadable" in table["error"][0]


# --------------------------------------------------------------------------- one task, no cluster


@pytest.mark.notebook
def test_a_kernel_that_cannot_start_is_retried_once_and_a_done_run_is_not_redone(tmp_path: Path) -> None:
    notebook = sweep_notebook(tmp_path / "tiny.ipynb")
    (combo,) = plan_sweep(notebook, {"lr": 0.2}).combinations
    out = tmp_path / "out"
    out.mkdir()
    folder = _run_folder(out, combo.folder, "ok", combo.swept, {"score": 2})
    record = json.loads((folder / RECORD).read_text())
    (folder / RECORD).write_text(json.dumps({**record, "parameters": combo.values, "sweep_id": "s1"}))

    args = (combo.plan, str(out), combo.folder, combo.swept)
    again = run_task(*args, kernel="no-such-kernel", sweep_id="s1", force=True)  # Dask reran a finished task
    assert again["status"] == "ok" and again["skipped"] is False  # this sweep's own run: returned, not redone
    resumed = run_task(*args, kernel="no-such-kernel", sweep_id="s2")
    assert resumed["status"] == "ok" and resumed["skipped"] is True

    forced = run_task(*args, kernel="no-such-kernel", sweep_id="s3", force=True)  # no cell can ever start
    assert forced["status"] == "failed" and forced["attempts"] == 2
    assert "NoSuchKernel" in forced["first_attempt_error"] and "NoSuchKernel" in forced["error"]
    assert json.loads((out / combo.folder / RECORD).read_text())["sweep_id"] == "s3"  # replaced, as --force says
    assert not (out / combo.folder / "metrics.json").exists()
    assert not any((out / ".attempts").iterdir())


# --------------------------------------------------------------------------- dashboard and plot


class _FakeClient:
    def __init__(self, services: dict, bokeh: bool) -> None:
        self.services, self.bokeh, self.dashboard_link = services, bokeh, "http://127.0.0.1:8787/status"

    def scheduler_info(self) -> dict:
        return {"services": self.services}

    def run_on_scheduler(self, fn):
        return self.bokeh


def test_dashboard_link_or_why_there_is_none() -> None:
    assert dashboard_line(_FakeClient({"dashboard": 8787}, True)) == "dashboard: http://127.0.0.1:8787/status"
    # without bokeh the scheduler still serves a page there (saying to install bokeh): not a dashboard
    assert "bokeh is not installed" in dashboard_line(_FakeClient({"dashboard": 8787}, False))
    assert "serves none" in dashboard_line(_FakeClient({}, True))


def test_plot_draws_each_run_and_mean_with_sample_std(tmp_path: Path) -> None:
    scores = {"gat": [1.0, 2.0, 4.0], "gatv2": [10.0, 12.0]}
    for model, values in scores.items():
        for seed, value in enumerate(values):
            _run_folder(tmp_path, f"{model}-{seed}", "ok", {"model": model, "seed": seed}, {"score": value})
    _run_folder(tmp_path, "bad", "failed", {"model": "gat", "seed": 9}, None)
    runs = load_runs(tmp_path)
    fig, ax = plt.subplots()
    try:
        plot_sweep(runs, "score", ax=ax)
        dots = sorted(y for coll in ax.collections for _, y in coll.get_offsets() if len(coll.get_offsets()))
        assert dots == sorted(scores["gat"] + scores["gatv2"])
        # seaborn draws the points as one line, then each error bar with its caps as one line
        # (segments separated by NaN)
        points, *bars = ax.lines
        assert points.get_ydata().tolist() == pytest.approx([7 / 3, 11.0])
        halves = [(np.nanmax(b.get_ydata()) - np.nanmin(b.get_ydata())) / 2 for b in bars]
        centres = [(np.nanmax(b.get_ydata()) + np.nanmin(b.get_ydata())) / 2 for b in bars]
        assert halves == pytest.approx([math.sqrt(7 / 3), math.sqrt(2)])  # sample std, as in the table
        assert centres == pytest.approx([7 / 3, 11.0])
        assert ax.get_xlabel() == "model" and ax.get_ylabel() == "score" and "1 run(s) not ok" in ax.get_title()
        with pytest.raises(ValueError, match="no metric 'scor'"):
            plot_sweep(runs, "scor", ax=ax)
    finally:
        plt.close(fig)
