"""Training-step and inference time of the batched TemporalGAT against the loop reference (issue 10, item 8).

Run from the repository root::

    .venv/bin/python benchmarks/temporal_gat.py [--threads 1] [--device auto|cpu|cuda] [--quick] [--json PATH]

The loop reference (``tests/_temporal_loop_reference.py``) runs the same model's layers once per
window and step (graph layers) and once per window and service (recurrent layer), as the issue's
reference sketch does. Both get identical weights; every time is also given as a speed-up over the
loop reference on the same graph, measured in the same run with the two interleaved (A B A B ...),
so machine speed and background load mostly cancel. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent / "tests"):  # gat_layers (system_info), the loop reference
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from _temporal_loop_reference import loop_forward  # noqa: E402
from gat_layers import system_info  # noqa: E402

from tgad_lite.data.microservices import random_service_dag, shop_graph  # noqa: E402
from tgad_lite.device import resolve_device  # noqa: E402
from tgad_lite.profiling import Timing, time_interleaved  # noqa: E402
from tgad_lite.temporal import TemporalGAT  # noqa: E402

REFERENCE = "loop reference"
METRICS = 4  # F: cpu, memory, latency, error rate
LR = 1e-3
DROPOUT = 0.1
INCIDENT_RATE = 0.1  # share of positive labels in the random targets
SPEEDUP_TARGET = 35.0  # issue 10: batched step >= 35x the loop reference at B=64, S=8, N=8 (shop)
DIFF_TARGET = 1e-5  # ... with outputs within 1e-5


@dataclass
class Row:
    """One line of a results table; ``speedup`` is the loop reference's median over this row's."""

    table: str  # "train" or "inference"
    graph: str
    nodes: int
    edges: int
    message_edges: int
    impl: str
    optimizer: str
    ms: float | None  # median: per training step, or per window for inference
    iqr_ms: float | None
    n: int
    speedup: float | None
    note: str = ""


def make_graph(kind: str, n: int) -> tuple[str, int, torch.Tensor]:
    """``(name, N, edge_index [2, E])``: the 8-service shop (``n`` ignored), or ``random_service_dag(n)``
    with ``edge_prob = 2 / n`` (its ``n - 1`` tree edges plus about ``n - 1`` more: ~2 dependencies per
    service), seed 0."""
    graph = shop_graph() if kind == "shop" else random_service_dag(n, edge_prob=min(1.0, 2.0 / n), seed=0)
    return ("shop" if kind == "shop" else "random DAG"), graph.num_nodes, torch.tensor(graph.edge_index)


def adam(params, kind: str, device: torch.device) -> tuple[torch.optim.Optimizer, str]:
    """``kind`` "default": torch's default Adam; "fast": fused Adam where this torch has it on ``device``,
    else foreach. Returns the optimizer and the label the table prints."""
    params = list(params)
    if kind == "default":
        return torch.optim.Adam(params, lr=LR), "Adam default"
    try:
        opt = torch.optim.Adam(params, lr=LR, fused=True)
        # Some builds accept fused=True and only refuse at the first step: try one on a scratch tensor.
        probe = torch.zeros(1, device=device, requires_grad=True)
        probe.grad = torch.zeros_like(probe)
        torch.optim.Adam([probe], lr=LR, fused=True).step()
        return opt, "Adam fused"
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=LR, foreach=True), "Adam foreach"


def build_model(args: argparse.Namespace) -> TemporalGAT:
    return TemporalGAT(METRICS, hidden=args.hidden, heads=args.heads, dropout=DROPOUT, recurrent=args.recurrent)


def data(bsz: int, steps: int, n: int, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows ``x [B, S, N, F]`` and incident labels ``y [B, N]`` (``INCIDENT_RATE`` positive)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, steps, n, METRICS, generator=g)
    y = (torch.rand(bsz, n, generator=g) < INCIDENT_RATE).float()
    return x.to(device), y.to(device)


def max_differences(model: TemporalGAT, x: torch.Tensor, ei: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Max |batched - loop| over risk, logits, attention and every parameter's gradient, identical weights.

    Dropout is switched off (a copy of the model with ``dropout=0``, train mode) so both compute the
    same function; train mode because cuDNN's recurrent backward pass refuses eval mode.
    """
    check = TemporalGAT(**{**model.config, "dropout": 0.0}).to(x.device)
    check.load_state_dict(model.state_dict())
    results = []
    for fn in (lambda: check(x, ei, return_attention=True), lambda: loop_forward(check, x, ei, return_attention=True)):
        check.zero_grad(set_to_none=True)
        out = fn()
        F.binary_cross_entropy_with_logits(out.logits, y).backward()
        results.append((out, [p.grad.detach().clone() for p in check.parameters()]))
    (a, ga), (b, gb) = results
    return {
        "risk": _max_abs(a.risk, b.risk),
        "logits": _max_abs(a.logits, b.logits),
        "attention": max(_max_abs(u, v) for u, v in zip(a.layer_attention, b.layer_attention, strict=True)),
        "gradients": max(_max_abs(u, v) for u, v in zip(ga, gb, strict=True)),
    }


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max())


def train_step(model: TemporalGAT, opt: torch.optim.Optimizer, forward: Callable, y: torch.Tensor) -> Callable:
    """One training step as a zero-argument callable returning the loss (a float, so GPU work is waited for)."""

    def step() -> float:
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(forward(model).logits, y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def timing_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "warmup": args.warmup,
        "repeats": args.repeats,
        "min_time_s": args.min_time_s,
        "max_time_s": args.max_time_s,
    }


def measure_training(
    kind: str, n: int, args: argparse.Namespace, device: torch.device
) -> tuple[list[Row], dict[str, float]]:
    """The training-step rows of one graph (loop reference first) and the max differences."""
    name, n, ei = make_graph(kind, n)
    ei = ei.to(device)
    x, y = data(args.batch, args.steps, n, device, args.seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(args.seed)
        base = build_model(args).to(device)
    diffs = max_differences(base, x, ei, y)
    steps: dict[str, Callable] = {}
    labels: dict[str, tuple[str, str]] = {}
    for impl, opt_kind, forward in (
        (REFERENCE, "default", lambda m: loop_forward(m, x, ei)),
        ("batched", "default", lambda m: m(x, ei)),
        ("batched", "fast", lambda m: m(x, ei)),
    ):
        # Identical weights for every row. Built and loaded rather than deep-copied: a deep copy leaves
        # cuDNN's LSTM weights in separate chunks, which it then compacts at every call.
        model = build_model(args).to(device)
        model.load_state_dict(base.state_dict())
        opt, opt_label = adam(model.parameters(), opt_kind, device)
        key = f"{impl} / {opt_label}"
        steps[key], labels[key] = train_step(model, opt, forward, y), (impl, opt_label)
    timings = time_interleaved(steps, device=device, **timing_settings(args))
    ref = timings[f"{REFERENCE} / Adam default"].median_ms
    msg = base.message_edges(ei, n).size(1)
    rows = [
        Row("train", name, n, ei.size(1), msg, *labels[k], t.median_ms, t.iqr_ms, t.n, ref / t.median_ms)
        for k, t in timings.items()
    ]
    return rows, diffs


def measure_inference(kind: str, n: int, args: argparse.Namespace, device: torch.device) -> list[Row]:
    """Per-window inference time of the batched model and, for ``n <= --loop-max-nodes``, the loop reference."""
    name, n, ei = make_graph(kind, n)
    ei = ei.to(device)
    x, _ = data(args.infer_batch, args.steps, n, device, args.seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(args.seed)
        model = build_model(args).to(device).eval()

    def infer(forward: Callable) -> Callable[[], float]:
        def call() -> float:
            with torch.inference_mode():
                return float(forward().risk.sum())

        return call

    fns = {"batched": infer(lambda: model(x, ei))}
    loop_note = ""
    if n <= args.loop_max_nodes:
        fns = {REFERENCE: infer(lambda: loop_forward(model, x, ei)), **fns}
    else:
        loop_note = f"skipped: N > --loop-max-nodes {args.loop_max_nodes} (the loop would take minutes)"
    timings: dict[str, Timing] = time_interleaved(fns, device=device, **timing_settings(args))
    msg = model.message_edges(ei, n).size(1)
    per_window = {k: t.median_ms / args.infer_batch for k, t in timings.items()}
    ref = per_window.get(REFERENCE)
    rows = []
    if REFERENCE not in timings:
        rows.append(Row("inference", name, n, ei.size(1), msg, REFERENCE, "-", None, None, 0, None, loop_note))
    for k, t in timings.items():
        ms = per_window[k]
        rows.append(
            Row(
                "inference", name, n, ei.size(1), msg, k, "-", ms, t.iqr_ms / args.infer_batch, t.n,
                None if ref is None else ref / ms,
            )
        )  # fmt: skip
    return rows


def _num(v: float | None, fmt: str) -> str:
    width = int(fmt.split(".")[0])
    return f"{'-':>{width}}" if v is None else format(v, fmt)


def format_table(rows: Sequence[Row], diffs: dict[str, dict[str, float]] | None = None) -> str:
    """Plain-text table, one block per graph; the train blocks start with the max differences."""
    header = f"{'implementation':<16} {'optimizer':<13} {'ms':>10} {'IQR':>8} {'n':>4} {'speed-up':>9}  note"
    lines, block = [], None
    for r in rows:
        if (r.table, r.graph, r.nodes) != block:
            block = (r.table, r.graph, r.nodes)
            lines += [
                "",
                f"{r.graph}: N={r.nodes} services, E={r.edges} dependencies, E'={r.message_edges} message edges",
            ]
            d = (diffs or {}).get(f"{r.graph} N={r.nodes}") if r.table == "train" else None
            if d:
                lines.append(
                    "  identical weights, max |batched - loop|: " + ", ".join(f"{k} {v:.1e}" for k, v in d.items())
                )
            lines += [header, "-" * len(header)]
        lines.append(
            f"{r.impl:<16} {r.optimizer:<13} {_num(r.ms, '10.3f')} {_num(r.iqr_ms, '8.3f')} {r.n:>4} "
            f"{_num(r.speedup, '9.1f')}  {r.note}".rstrip()
        )
    return "\n".join(lines[1:])


def check_targets(rows: Sequence[Row], diffs: dict[str, dict[str, float]], *, target_shape: bool) -> list[dict]:
    """The issue's targets: fastest batched step >= 35x the loop reference on the shop graph; risk within 1e-5.

    ``target_shape``: the run used the target's B=64, S=8; otherwise the speed check is SKIPPED.
    """
    shop = [r for r in rows if r.table == "train" and r.graph == "shop" and r.impl == "batched" and r.speedup]
    best = max((r.speedup for r in shop), default=None) if target_shape else None
    risk = max((d["risk"] for d in diffs.values()), default=None)
    out = []
    for name, value, ok in (
        (f"batched training step >= {SPEEDUP_TARGET:g}x the loop reference (shop)", best,
         best is not None and best >= SPEEDUP_TARGET),
        (f"max |risk difference| <= {DIFF_TARGET:g}", risk, risk is not None and risk <= DIFF_TARGET),
    ):  # fmt: skip
        status = "SKIPPED" if value is None else ("PASS" if ok else "FAIL")
        out.append({"check": name, "value": value, "status": status})
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny shapes and one timed step each (B=4, S=3; N=8 and 20; inference N=8, 20, 40): a "
        "structure check in seconds, not a measurement",
    )
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N (default auto: cuda when present)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads before measuring (default: torch's choice); 1 is steadier on a shared machine",
    )
    p.add_argument("--batch", type=int, default=None, help="B, windows per training step (default 64)")
    p.add_argument("--steps", type=int, default=None, help="S, steps per window (default 8)")
    p.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=None,
        help="training: random-DAG sizes after the shop (default 200; none: the shop only)",
    )
    p.add_argument(
        "--infer-sizes",
        type=int,
        nargs="*",
        default=None,
        help="inference: random-DAG sizes after the shop (default 200 1000; none: the shop only)",
    )
    p.add_argument("--infer-batch", type=int, default=None, help="windows per inference call (default 64)")
    p.add_argument(
        "--loop-max-nodes",
        type=int,
        default=200,
        help="time the loop reference's inference only up to this N (default 200)",
    )
    p.add_argument("--hidden", type=int, default=32, help="model width D (default 32)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    p.add_argument("--recurrent", choices=("lstm", "gru"), default="lstm")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per row at least (default 5, quick 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 1, quick 0)")
    p.add_argument(
        "--min-time-s", type=float, default=None, help="time fast rows for this long at least (default 2, quick 0)"
    )
    p.add_argument(
        "--max-time-s", type=float, default=None, help="stop timing a row after this many seconds (default 10, quick 1)"
    )
    p.add_argument("--seed", type=int, default=0, help="for weights, windows and labels (default 0)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target check fails or is skipped")
    args = p.parse_args(argv)
    q = args.quick
    for name, full, quick in (
        ("batch", 64, 4), ("steps", 8, 3), ("sizes", [200], [20]), ("infer_sizes", [200, 1000], [20, 40]),
        ("infer_batch", 64, 4), ("repeats", 5, 1), ("warmup", 1, 0), ("min_time_s", 2.0, 0.0),
        ("max_time_s", 10.0, 1.0),
    ):  # fmt: skip
        if getattr(args, name) is None:
            setattr(args, name, quick if q else full)
    if min(args.batch, args.steps, args.infer_batch, args.repeats, args.hidden, args.heads) < 1:
        p.error("--batch, --steps, --infer-batch, --repeats, --hidden and --heads must be >= 1")
    if args.hidden % args.heads:
        p.error(f"--hidden ({args.hidden}) must be a multiple of --heads ({args.heads})")
    if args.warmup < 0 or args.min_time_s < 0 or args.max_time_s <= 0:
        p.error("--warmup and --min-time-s must be >= 0, --max-time-s > 0")
    if min(args.sizes + args.infer_sizes, default=2) < 2:
        p.error("--sizes and --infer-sizes must be >= 2")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    try:
        args.device = resolve_device(args.device)
    except ValueError as exc:
        p.error(str(exc))
    return args


def _write_json(path: Path, record: dict) -> None:
    # Temporary name then rename: a reader never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, allow_nan=False))
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = args.device
    info = system_info()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    print(f"torch {info['torch']}, torch_geometric {info['torch_geometric']}, python {info['python']}, device {device}")
    print(f"torch threads {info['torch_threads']}, CPU count {info['cpu_count']}, CPU: {info['cpu_model']}")
    print(
        f"1-min load average at start {info['load_average_1min']}" + (f", GPU {info['gpu']}" if "gpu" in info else "")
    )
    print(
        f"model: TemporalGAT(F={METRICS}, hidden={args.hidden}, heads={args.heads}, 2 GATv2 layers, "
        f"{args.recurrent}, dropout {DROPOUT}, direction both); timing: {args.warmup} warm-up round(s), "
        f">= {args.repeats} timed calls and >= {args.min_time_s} s per row unless {args.max_time_s} s are spent "
        "first; median and IQR"
    )
    rows: list[Row] = []
    diffs: dict[str, dict[str, float]] = {}
    print(
        f"\nTRAINING STEP (forward, BCE loss, backward, Adam lr {LR:g}; train mode), B={args.batch} windows, "
        f"S={args.steps} steps; ms per step; speed-up = loop reference ms / this row's ms"
    )
    for kind, n in [("shop", 8)] + [("random", n) for n in args.sizes]:
        print(f"measuring training, {kind} N={n} ...", file=sys.stderr, flush=True)
        graph_rows, d = measure_training(kind, n, args, device)
        diffs[f"{graph_rows[0].graph} N={graph_rows[0].nodes}"] = d
        rows += graph_rows
    print(format_table([r for r in rows if r.table == "train"], diffs))
    print(
        f"\nINFERENCE (eval mode, torch.inference_mode), batches of {args.infer_batch} windows, S={args.steps}; "
        "ms per window; speed-up over the loop reference"
    )
    infer_rows: list[Row] = []
    for kind, n in [("shop", 8)] + [("random", n) for n in args.infer_sizes]:
        print(f"measuring inference, {kind} N={n} ...", file=sys.stderr, flush=True)
        infer_rows += measure_inference(kind, n, args, device)
    print(format_table(infer_rows))
    rows += infer_rows
    checks = check_targets(rows, diffs, target_shape=(args.batch, args.steps) == (64, 8))
    print("\ntargets (issue 10; informative unless --strict):")
    for c in checks:
        value = "-" if c["value"] is None else f"{c['value']:.3g}"
        print(f"  {c['check']}: {c['status']} ({value})")
    wall = time.perf_counter() - started
    print(f"\nwall time {wall:.0f} s")
    if args.json is not None:
        settings = {k: str(v) if isinstance(v, Path | torch.device) else v for k, v in vars(args).items()}
        record = {"system": info, "settings": settings, "rows": [asdict(r) for r in rows], "differences": diffs}
        _write_json(args.json, {**record, "checks": checks, "wall_s": round(wall, 1)})
        print(f"results written to {args.json}")
    if args.strict and any(c["status"] != "PASS" for c in checks):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
