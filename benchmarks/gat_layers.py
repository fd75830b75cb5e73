"""Training-step time and peak memory of the GAT layer implementations, against PyG's GATConv.

Run from the repository root (``make bench`` does)::

    .venv/bin/python benchmarks/gat_layers.py [--quick] [--repeats N] [--json PATH]

Every number is also reported as a ratio to ``torch_geometric.nn.GATConv`` (``impl="pyg"``) on
the same graph, measured in the same run with the implementations interleaved (A B C A B C ...),
so machine speed and background load cancel out of the ratios. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from tgad_lite.gat import GAT, SparseFeatures, receptive_field
from tgad_lite.profiling import (
    Timing,
    dense_attention_bytes,
    peak_memory,
    random_graph,
    time_call,
    time_interleaved,
    train_step_fn,
)

REFERENCE = "pyg"
PAPER_MODEL = {"hidden": 8, "heads": 8, "out_heads": 1, "dropout": 0.6}  # Cora settings of the paper
PAPER_ADAM = {"lr": 0.005, "weight_decay": 5e-4}
NUM_CLASSES_RANDOM = 7
TRAIN_EVERY = 20  # random graphs: every 20th node is a training target (~5%, as Cora's 140 / 2708)
CHECKS = (("sparse+sparse-input", 0.2), ("sparse+sparse-input+receptive-field", 0.1))
GIB = 1024**3


@dataclass
class Case:
    """One implementation's training step on one graph (``step is None``: skipped, see ``note``).

    ``once``: time a single step and skip the memory profile (the naive layer's Python loop).
    """

    impl: str
    step: Callable[[], float] | None
    note: str = ""
    once: bool = False


@dataclass
class Row:
    """One line of the results table; ratios are to the reference implementation on the same graph."""

    graph: str
    nodes: int
    edges: int
    impl: str
    ms: float | None
    iqr_ms: float | None
    n: int
    peak_mb: float | None
    ms_ratio: float | None
    mem_ratio: float | None
    note: str = ""


def make_step(
    impl: str,
    x: Any,
    edge_index: Any,
    targets: torch.Tensor,
    y: torch.Tensor,
    in_channels: int,
    num_classes: int,
    *,
    seed: int,
    num_targets: list[int] | None = None,
) -> Callable[[], float]:
    """A paper-settings GAT with implementation ``impl`` and its Adam step, as a callable."""
    with torch.random.fork_rng():  # same initial weights from run to run; the global RNG is left alone
        torch.manual_seed(seed)
        model = GAT(in_channels, num_classes, impl=impl, **PAPER_MODEL)
    optimizer = torch.optim.Adam(model.parameters(), **PAPER_ADAM)
    return train_step_fn(model, x, edge_index, targets, y, optimizer, num_targets=num_targets)


def cora_cases(data: Any, *, include_naive: bool, seed: int = 0) -> list[Case]:
    """The Cora rows: pyg (reference), naive, dense, sparse, sparse input, receptive field."""
    n, f = data.x.shape
    k = int(data.y.max()) + 1
    common = (data.train_mask, data.y, f, k)
    x_sparse = SparseFeatures(data.x)
    rf = receptive_field(data.edge_index, data.train_mask, 2, n)
    rf_step = make_step(
        "sparse",
        rf.select(x_sparse),
        rf.layer_edges,
        rf.targets,
        data.y[rf.nodes],
        f,
        k,
        seed=seed,
        num_targets=rf.layer_targets,
    )
    naive = (
        Case(
            "naive",
            make_step("naive", data.x, data.edge_index, *common, seed=seed),
            note="1 step, no warm-up; memory not profiled",
            once=True,
        )
        if include_naive
        else Case("naive", None, note="skipped: a Python loop over nodes, seconds per step (run without --quick)")
    )
    return [
        Case(REFERENCE, make_step(REFERENCE, data.x, data.edge_index, *common, seed=seed)),
        naive,
        Case("dense", make_step("dense", data.x, data.edge_index, *common, seed=seed)),
        Case("sparse", make_step("sparse", data.x, data.edge_index, *common, seed=seed)),
        Case("sparse+sparse-input", make_step("sparse", x_sparse, data.edge_index, *common, seed=seed)),
        Case(
            "sparse+sparse-input+receptive-field",
            rf_step,
            note=f"edges per layer {rf.num_edges} of {data.edge_index.size(1)}, {rf.nodes.numel()} nodes",
        ),
    ]


def random_cases(x: torch.Tensor, edge_index: torch.Tensor, *, dense_budget_bytes: int, seed: int = 0) -> list[Case]:
    """The random-graph rows: pyg (reference), dense (unless over the memory budget), sparse."""
    n, f = x.shape
    y = torch.randint(NUM_CLASSES_RANDOM, (n,), generator=torch.Generator().manual_seed(seed))
    targets = torch.arange(0, n, TRAIN_EVERY)
    common = (targets, y, f, NUM_CLASSES_RANDOM)
    need = dense_attention_bytes(n, PAPER_MODEL["heads"])
    if need > dense_budget_bytes:
        dense = Case(
            "dense",
            None,
            note=f"skipped: would need {need / GIB:.1f} GiB > budget "
            f"{dense_budget_bytes / GIB:.1f} GiB (--dense-budget-gb)",
        )
    else:
        dense = Case("dense", make_step("dense", x, edge_index, *common, seed=seed))
    return [
        Case(REFERENCE, make_step(REFERENCE, x, edge_index, *common, seed=seed)),
        dense,
        Case("sparse", make_step("sparse", x, edge_index, *common, seed=seed)),
    ]


def measure(
    graph: str,
    nodes: int,
    edges: int,
    cases: Sequence[Case],
    *,
    warmup: int = 1,
    repeats: int = 5,
    min_time_s: float = 0.0,
    max_time_s: float | None = None,
    memory: bool = True,
) -> list[Row]:
    """Time (interleaved) and profile every case on one graph; one :class:`Row` per case, in order."""
    if sum(c.impl == REFERENCE and c.step is not None and not c.once for c in cases) != 1:
        raise ValueError(f"measure needs exactly one runnable {REFERENCE!r} case to take ratios against")
    regular = {c.impl: c.step for c in cases if c.step is not None and not c.once}
    timings: dict[str, Timing] = time_interleaved(
        regular, warmup=warmup, repeats=repeats, min_time_s=min_time_s, max_time_s=max_time_s
    )
    for c in cases:
        if c.step is not None and c.once:
            timings[c.impl] = time_call(c.step, warmup=0, repeats=1)
    peaks = {impl: peak_memory(step, warmup=0) for impl, step in regular.items()} if memory else {}

    ref_ms, ref_mem = timings[REFERENCE].median_ms, peaks.get(REFERENCE)
    rows = []
    for c in cases:
        t, peak = timings.get(c.impl), peaks.get(c.impl)
        rows.append(
            Row(
                graph=graph,
                nodes=nodes,
                edges=edges,
                impl=c.impl,
                ms=t.median_ms if t else None,
                iqr_ms=t.iqr_ms if t else None,
                n=t.n if t else 0,
                peak_mb=peak / 1e6 if peak is not None else None,
                ms_ratio=t.median_ms / ref_ms if t else None,
                mem_ratio=peak / ref_mem if peak is not None and ref_mem else None,
                note=c.note,
            )
        )
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """Plain-text table, one block per graph."""

    def num(v: float | None, fmt: str) -> str:
        width = int(fmt.split(".")[0])
        return f"{'-':>{width}}" if v is None else format(v, fmt)

    header = (
        f"{'implementation':<37} {'ms/step':>9} {'IQR':>7} {'n':>3} {'peak MB':>9} {'time/pyg':>8} {'mem/pyg':>8}  note"
    )
    lines, graph = [], None
    for r in rows:
        if r.graph != graph:
            graph = r.graph
            lines += ["", f"{r.graph}: {r.nodes} nodes, {r.edges} edges", header, "-" * len(header)]
        lines.append(
            f"{r.impl:<37} {num(r.ms, '9.1f')} {num(r.iqr_ms, '7.1f')} {r.n:>3} "
            f"{num(r.peak_mb, '9.1f')} {num(r.ms_ratio, '8.3f')} {num(r.mem_ratio, '8.3f')}  {r.note}"
        )
    return "\n".join(lines[1:])


def check_targets(rows: Sequence[Row], graph: str = "Cora") -> list[dict]:
    """The Cora speed targets: time ratio to pyg at most 0.2 (sparse input) and 0.1 (+receptive field)."""
    by_impl = {r.impl: r for r in rows if r.graph == graph}
    out = []
    for impl, limit in CHECKS:
        ratio = by_impl[impl].ms_ratio if impl in by_impl else None
        status = "SKIPPED" if ratio is None else ("PASS" if ratio <= limit else "FAIL")
        out.append({"impl": impl, "limit": limit, "ratio": ratio, "status": status})
    return out


def system_info() -> dict[str, Any]:
    """Where the numbers come from: threads, cores, CPU model, library versions, load."""
    import torch_geometric

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": model or "unknown",
        "platform": platform.platform(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _write_json(path: Path, record: dict) -> None:
    # Temporary name then rename: a reader never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, allow_nan=False))
    tmp.replace(path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer graphs and repeats (~40 s), no naive step")
    p.add_argument(
        "--repeats", type=int, default=None, help="timed steps per implementation and graph (default 5, quick 3)"
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds per graph first (default 1)")
    p.add_argument(
        "--min-time-s",
        type=float,
        default=None,
        help="time fast implementations until their timed steps add up to this many seconds (default 1, quick 0.3)",
    )
    p.add_argument(
        "--max-time-s",
        type=float,
        default=None,
        help="stop timing an implementation once its timed steps add up to this many seconds (default 12, quick 5)",
    )
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help="random graph sizes (default 1000 2000 4000 8000 16000 32000; quick 1000 2000 8000)",
    )
    p.add_argument("--avg-degree", type=float, default=4.0, help="of the random graphs (default 4)")
    p.add_argument("--features", type=int, default=500, help="of the random graphs (default 500)")
    p.add_argument(
        "--dense-budget-gb",
        type=float,
        default=4.0,
        help="skip the dense layer where its [H, N, N] tensors would exceed this many GiB (default 4)",
    )
    p.add_argument("--no-cora", action="store_true", help="random graphs only")
    p.add_argument("--json", type=Path, default=None, help="also write the results here as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when a Cora target check fails or is skipped")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads before measuring (default: torch's own choice); 1 is steadier "
        "on a machine shared with other jobs",
    )
    p.add_argument("--seed", type=int, default=0, help="for weights, graphs and labels (default 0)")
    args = p.parse_args(argv)
    args.repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    args.min_time_s = args.min_time_s if args.min_time_s is not None else (0.3 if args.quick else 1.0)
    args.max_time_s = args.max_time_s if args.max_time_s is not None else (5.0 if args.quick else 12.0)
    args.sizes = args.sizes or ([1000, 2000, 8000] if args.quick else [1000, 2000, 4000, 8000, 16000, 32000])
    if args.repeats < 1 or args.warmup < 0 or args.min_time_s < 0 or args.max_time_s <= 0:
        p.error("--repeats must be >= 1, --warmup >= 0, --min-time-s >= 0 and --max-time-s > 0")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    if args.dense_budget_gb < 0:
        p.error("--dense-budget-gb must be >= 0")
    if min(args.sizes) < 2 or args.features < 1 or args.avg_degree < 0:
        p.error("--sizes must be >= 2, --features >= 1, --avg-degree >= 0")
    return args


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    info = system_info()
    print(f"torch {info['torch']}, torch_geometric {info['torch_geometric']}, python {info['python']}")
    print(f"torch threads {info['torch_threads']}, CPU count {info['cpu_count']}, CPU: {info['cpu_model']}")
    print(f"platform {info['platform']}, 1-min load average at start {info['load_average_1min']}")
    load, cores, threads = info["load_average_1min"], info["cpu_count"], info["torch_threads"]
    if load is not None and cores and threads > 1 and load + threads > cores + 0.5:
        print(
            f"WARNING: other processes keep ~{load:.1f} of {cores} cores busy; {threads} torch threads "
            "contending with them make timings slow and noisy. Rerun on an idle machine or with --threads 1."
        )
    print(
        f"settings: {args.warmup} warm-up round(s); then >= {args.repeats} timed steps and "
        f">= {args.min_time_s} s per implementation, unless {args.max_time_s} s are spent first"
    )
    print("median ms per training step (forward + backward + Adam); peak MB of tensors allocated in one step")

    rows: list[Row] = []
    common = {
        "warmup": args.warmup,
        "repeats": args.repeats,
        "min_time_s": args.min_time_s,
        "max_time_s": args.max_time_s,
    }
    if not args.no_cora:
        from tgad_lite.data import DataUnavailableError
        from tgad_lite.data.cora import load_cora

        try:
            data = load_cora()[0]
        except DataUnavailableError as exc:
            print(f"\nCora skipped: {exc}\n(set TGAD_DATA_MIRROR=../shared/data when the mirror exists)")
        else:
            _progress("measuring Cora ...")
            cases = cora_cases(data, include_naive=not args.quick, seed=args.seed)
            rows += measure("Cora", data.num_nodes, data.edge_index.size(1), cases, **common)
    budget = int(args.dense_budget_gb * GIB)
    for n in args.sizes:
        _progress(f"measuring random graph N={n} ...")
        x, edge_index = random_graph(n, args.avg_degree, args.features, seed=args.seed)
        cases = random_cases(x, edge_index, dense_budget_bytes=budget, seed=args.seed)
        rows += measure(f"random N={n}", n, edge_index.size(1), cases, **common)

    print()
    print(format_table(rows))
    checks = check_targets(rows)
    print("\nCora targets (time ratio to pyg, informative):")
    for c in checks:
        ratio = "-" if c["ratio"] is None else f"{c['ratio']:.3f}"
        print(f"  {c['impl']} ratio <= {c['limit']}: {c['status']} ({ratio})")
    wall = time.perf_counter() - started
    print(f"\nwall time {wall:.0f} s")
    if args.json is not None:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        _write_json(
            args.json,
            {
                "system": info,
                "settings": settings,
                "rows": [asdict(r) for r in rows],
                "checks": checks,
                "wall_s": round(wall, 1),
            },
        )
        print(f"results written to {args.json}")
    if args.strict and any(c["status"] != "PASS" for c in checks):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
