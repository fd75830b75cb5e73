"""MTAD-GAT training and scoring speed and peak memory, against the port-style reference, in one run.

Run from the repository root::

    .venv/bin/python benchmarks/mtad_gat.py [--only msl,150] [--steps N] [--threads N] [--json PATH]

For each dataset shape (MSL: 55 features, SMD: 38) and hidden size (150, 300: ``gru_hidden``,
``forecast_hidden``, ``recon_hidden`` and ``latent_dim`` all set to it), three variants of
``MTADGATModel`` at window 100, batch 256, mode ``both``:

* ``gat``: ours, the default decomposed GAT scores (``[B, K, K]`` memory);
* ``gatv2``: ours, GATv2 with the batch chunked (``--gatv2-chunk`` windows, checkpointed);
* ``port-style``: the reference, the same GATv2 model with both graph layers building the
  ``[B, K, K, 2D]`` concatenation as the popular port does (``benchmarks/_port_style_mtad.py``).

Each variant runs in a fresh process (this script with ``--worker``), so its peak resident set size
(``getrusage(RUSAGE_SELF).ru_maxrss``) is its own. A training step is forward, ``loss(...)["total"]``,
backward, gradient clipping at norm 1.0 and an Adam step, in train mode; a scoring step is
``model.score_consecutive(windows, gamma=1.0)`` (how ``MTADGAT.score`` scores a series: ``batch``
steps from ``batch + 1`` sliding windows, each encoded once) under ``model.eval()`` and
``torch.no_grad()``. Between the two, the model's GRU scratch buffers are released, as
``MTADGAT.fit`` releases them when it returns. One untimed warm-up step of each comes first;
windows/s is the batch size over the median step time. The data are synthetic, drawn once from a
seeded generator with the right shape: the cost of every operation here depends on tensor shapes,
not on values. Ratios are to the ``port-style`` row of the same dataset and
hidden size, measured in the same run. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DATASETS = {"msl": 55, "smd": 38}  # features: MSL's 55 channels (concatenated entities), SMD's 38 metrics
HIDDEN = (150, 300)
VARIANTS = ("gat", "gatv2", "port-style")
REFERENCE = "port-style"
QUICK = {"window": 20, "batch": 8, "hidden": 16, "steps": 1}
LR = 1e-3  # the paper's Adam learning rate; speed does not depend on it
CLIP_NORM = 1.0
GB = 1e9  # decimal gigabytes, as in the issue ("7.2 GB", "1 GB")
# The issue's target (2-core CPU, MSL, hidden 150, window 100, batch 256) and its measurement of the port.
TARGET = {"dataset": "msl", "hidden": 150, "variant": "gat", "window": 100, "batch": 256}
TARGET_TRAIN_WPS, PORT_TRAIN_WPS = 470.0, 23.6
TARGET_PEAK_GB, PORT_PEAK_GB = 1.0, 7.2
SCRIPT = Path(__file__).resolve()


@dataclass
class Row:
    """One variant's measurements; ratios are to the reference row of the same dataset and hidden size.

    ``peak_gb`` is the peak resident set size on CPU and ``torch.cuda.max_memory_allocated`` on CUDA
    (``peak_measure`` says which); ``rss_gb`` is the resident peak in both cases.
    """

    dataset: str
    n_features: int
    hidden: int
    variant: str
    window: int
    batch: int
    train_steps: int = 0
    score_steps: int = 0
    train_step_s: float | None = None  # median seconds per training step
    score_step_s: float | None = None
    train_wps: float | None = None  # windows per second
    score_wps: float | None = None
    peak_gb: float | None = None
    peak_measure: str = ""
    rss_gb: float | None = None
    train_ratio: float | None = None  # train_wps / reference train_wps (> 1: faster)
    score_ratio: float | None = None
    mem_ratio: float | None = None  # peak_gb / reference peak_gb (< 1: less memory)
    worker_s: float | None = None  # wall time of the worker process, start-up included
    note: str = ""
    error: str = ""


# ---------------------------------------------------------------------------------------------- worker


def build_model(variant: str, n_features: int, hidden: int, window: int, gatv2_chunk: int):
    """The ``MTADGATModel`` of one variant, paper settings otherwise (mode ``both``, dropout 0.3)."""
    from tgad_lite.mtad import MTADGATModel

    sizes = dict(window=window, gru_hidden=hidden, forecast_hidden=hidden, recon_hidden=hidden, latent_dim=hidden)
    if variant == "gat":
        return MTADGATModel(n_features, gat="gat", mode="both", **sizes)
    if variant == "gatv2":
        return MTADGATModel(n_features, gat="gatv2", chunk_size=gatv2_chunk, mode="both", **sizes)
    if variant == REFERENCE:
        from _port_style_mtad import port_style_model  # beside this script, on sys.path as its directory

        return port_style_model(n_features, mode="both", **sizes)
    raise ValueError(f"unknown variant {variant!r}; choose one of {'|'.join(VARIANTS)}")


def _median_step_s(fn, steps: int, sync) -> float:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        sync()  # on CUDA, wait for the kernels: otherwise the clock stops at launch
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Measure one variant in this process; returns the fields of its :class:`Row` plus the machine."""
    import resource

    import torch

    from tgad_lite.device import resolve_device

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    n_features = DATASETS[args.dataset]

    torch.manual_seed(args.seed)
    model = build_model(args.variant, n_features, args.hidden, args.window, args.gatv2_chunk).to(device)
    gen = torch.Generator().manual_seed(args.seed)
    # A series cut into batch + 1 sliding windows: the training batch and the windows scoring reads.
    series = torch.randn(args.batch + args.window, n_features, generator=gen).to(device)
    windows = series.unfold(0, args.window, 1).transpose(1, 2).contiguous()  # [batch + 1, window, F]
    x, y_next = windows[:-1], series[args.window :]
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.loss(x, y_next)["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        optimizer.step()

    def score_step() -> None:
        model.score_consecutive(windows, gamma=1.0)  # as MTADGAT.score scores a series

    model.train()
    for _ in range(args.warmup):  # allocates Adam's state, fills the allocator's caches
        train_step()
    sync()
    train_s = _median_step_s(train_step, args.steps, sync)
    # As MTADGAT.fit does when it returns: scoring then starts without training's scratch buffers.
    model.release_workspace()  # every variant, the port-style reference included, is an MTADGATModel
    model.eval()
    with torch.no_grad():
        for _ in range(args.warmup):
            score_step()
        sync()
        score_s = _median_step_s(score_step, args.steps, sync)

    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB  # ru_maxrss is KiB on Linux
    peak_gb, measure = rss_gb, "peak RSS"
    if cuda:
        peak_gb, measure = torch.cuda.max_memory_allocated(device) / GB, "cuda max_memory_allocated"
    return {
        "train_steps": args.steps,
        "score_steps": args.steps,
        "train_step_s": train_s,
        "score_step_s": score_s,
        "train_wps": args.batch / train_s,
        "score_wps": args.batch / score_s,
        "peak_gb": peak_gb,
        "peak_measure": measure,
        "rss_gb": rss_gb,
        "machine": {
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        },
    }


# ---------------------------------------------------------------------------------------------- driver


def parse_only(text: str | None) -> tuple[list[str], list[int] | None, list[str]]:
    """``--only`` -> (datasets, hidden sizes or None for the default, variants); unnamed kinds: all.

    Items are separated by commas: dataset names, variant names and hidden sizes (positive ints),
    e.g. ``msl,150,gat`` or ``smd,port-style``.
    """
    datasets: list[str] = []
    hidden: list[int] = []
    variants: list[str] = []
    for raw in (text or "").split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if item in DATASETS:
            datasets.append(item)
        elif item in VARIANTS:
            variants.append(item)
        elif item.isdigit() and int(item) > 0:
            hidden.append(int(item))
        else:
            raise ValueError(
                f"--only: unknown item {raw.strip()!r}; give comma-separated datasets ({'|'.join(DATASETS)}), "
                f"variants ({'|'.join(VARIANTS)}) or hidden sizes (positive ints), e.g. --only msl,150,gat"
            )
    return (
        list(dict.fromkeys(datasets)) or list(DATASETS),  # the order given, repeats dropped
        list(dict.fromkeys(hidden)) or None,
        [v for v in VARIANTS if v in variants] or list(VARIANTS),  # reference last, whatever the order given
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--only",
        default=None,
        help="comma-separated datasets (msl, smd), hidden sizes (default 150, 300) and variants "
        "(gat, gatv2, port-style) to run; kinds not named: all. Ratios need the port-style row",
    )
    p.add_argument(
        "--steps", type=int, default=None, help="timed training and scoring steps of our variants (default 5)"
    )
    p.add_argument(
        "--reference-steps",
        type=int,
        default=None,
        help="timed steps of the port-style reference (default 2: it takes about 10 s a step at hidden 150)",
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed training and scoring steps first (default 1)")
    p.add_argument("--window", type=int, default=None, help="window length (default 100, the paper's)")
    p.add_argument("--batch", type=int, default=None, help="windows per batch (default 256, the port's)")
    p.add_argument("--gatv2-chunk", type=int, default=32, help="chunk_size of our gatv2 variant (default 32)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads in every worker (default: torch's own choice, one per core); "
        "1 is steadier on a machine shared with other jobs",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu (default), cuda or cuda:N; on cuda, memory is the peak of torch.cuda.max_memory_allocated",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"tiny shapes for a smoke test: window {QUICK['window']}, batch {QUICK['batch']}, "
        f"hidden {QUICK['hidden']}, {QUICK['steps']} step",
    )
    p.add_argument("--seed", type=int, default=0, help="for weights and synthetic data (default 0)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows, settings and machine here")
    # One variant in this process; the driver starts the script with these.
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dataset", choices=list(DATASETS), default="msl", help=argparse.SUPPRESS)
    p.add_argument("--hidden", type=int, default=150, help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=list(VARIANTS), default="gat", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    quick = QUICK if args.quick else {}
    args.window = args.window if args.window is not None else quick.get("window", 100)
    args.batch = args.batch if args.batch is not None else quick.get("batch", 256)
    args.steps = args.steps if args.steps is not None else quick.get("steps", 5)
    args.reference_steps = args.reference_steps if args.reference_steps is not None else quick.get("steps", 2)
    if args.worker:
        return args
    try:
        args.datasets, hidden, args.variants = parse_only(args.only)
    except ValueError as exc:
        p.error(str(exc))
    args.hiddens = hidden or ([quick["hidden"]] if quick else list(HIDDEN))
    for name in ("steps", "reference_steps", "window", "batch", "gatv2_chunk"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.device != "cpu":  # refuse a bad or unavailable device before starting any worker
        from tgad_lite.device import resolve_device  # imports torch: only when needed, start-up is slow

        try:
            resolve_device(args.device)
        except ValueError as exc:
            p.error(f"--device: {exc}")
    return args


def worker_command(args: argparse.Namespace, dataset: str, hidden: int, variant: str) -> list[str]:
    """The command line that measures one variant in a fresh process."""
    steps = args.reference_steps if variant == REFERENCE else args.steps
    cmd = [sys.executable, str(SCRIPT), "--worker", "--dataset", dataset, "--hidden", str(hidden)]
    cmd += ["--variant", variant, "--window", str(args.window), "--batch", str(args.batch)]
    cmd += ["--steps", str(steps), "--warmup", str(args.warmup), "--gatv2-chunk", str(args.gatv2_chunk)]
    cmd += ["--device", args.device, "--seed", str(args.seed)]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    return cmd


def measure_variant(args: argparse.Namespace, dataset: str, hidden: int, variant: str) -> tuple[Row, dict]:
    """Run one worker; its :class:`Row` (``error`` set when it failed) and the machine it reported."""
    row = Row(dataset, DATASETS[dataset], hidden, variant, args.window, args.batch)
    if variant == "gatv2":
        row.note = f"chunk_size {args.gatv2_chunk}"
    started = time.perf_counter()
    proc = subprocess.run(worker_command(args, dataset, hidden, variant), capture_output=True, text=True)
    row.worker_s = time.perf_counter() - started
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if proc.returncode < 0:
            why = f"killed by signal {-proc.returncode}" + (" (out of memory?)" if proc.returncode == -9 else "")
        elif proc.returncode == 0:
            why = f"exit 0 without a result line: {tail}"
        else:
            why = f"exit {proc.returncode}: {tail}"
        row.error = f"worker failed, {why}"
        return row, {}
    result = json.loads(lines[-1])
    machine = result.pop("machine")
    for key, value in result.items():
        setattr(row, key, value)
    return row, machine


def add_ratios(rows: Sequence[Row]) -> None:
    """Fill each row's ratios against the measured reference row of the same dataset and hidden size."""
    refs = {(r.dataset, r.hidden): r for r in rows if r.variant == REFERENCE and not r.error}
    for r in rows:
        ref = refs.get((r.dataset, r.hidden))
        if ref is None or r.error:
            continue
        r.train_ratio = r.train_wps / ref.train_wps
        r.score_ratio = r.score_wps / ref.score_wps
        r.mem_ratio = r.peak_gb / ref.peak_gb


def format_table(rows: Sequence[Row]) -> str:
    """Plain-text table, one block per dataset and hidden size."""

    def num(v: float | None, fmt: str) -> str:
        width = int(fmt.split(".")[0])
        return f"{'-':>{width}}" if v is None else format(v, fmt)

    header = (
        f"{'variant':<11} {'train w/s':>10} {'score w/s':>10} {'peak GB':>8} "
        f"{'train x':>8} {'score x':>8} {'mem x':>7} {'steps':>5}  note"
    )
    lines: list[str] = []
    block = None
    for r in rows:
        if (r.dataset, r.hidden) != block:
            block = (r.dataset, r.hidden)
            title = f"{r.dataset.upper()}: F={r.n_features}, hidden {r.hidden}, window {r.window}, batch {r.batch}"
            lines += ["", title, header, "-" * len(header)]
        note = "; ".join(s for s in (r.note, r.error) if s)
        lines.append(
            f"{r.variant:<11} {num(r.train_wps, '10.1f')} {num(r.score_wps, '10.1f')} {num(r.peak_gb, '8.2f')} "
            f"{num(r.train_ratio, '8.2f')} {num(r.score_ratio, '8.2f')} {num(r.mem_ratio, '7.3f')} "
            f"{r.train_steps:>5}  {note}"
        )
    return "\n".join(lines[1:])


def target_lines(rows: Sequence[Row], device: str) -> list[str]:
    """The issue's targets against this run's ``msl``/150/``gat`` row (informative; never an exit code)."""
    match = [
        r
        for r in rows
        if not r.error and all(getattr(r, k) == v for k, v in TARGET.items()) and r.train_wps is not None
    ]
    where = "training windows/s at MSL hidden 150, gat"
    if not match:
        why = "not measured in this run (needs msl, hidden 150, gat at window 100, batch 256: the default settings)"
        return [f"{where}: {why} (target >= {TARGET_TRAIN_WPS:.0f}; port as measured in the issue: {PORT_TRAIN_WPS})"]
    r = match[0]
    ref = f"; in-run port-style reference x{r.train_ratio:.1f}" if r.train_ratio is not None else ""
    out = [
        f"{where}: {r.train_wps:.1f} (target >= {TARGET_TRAIN_WPS:.0f}; port as measured in the issue: "
        f"{PORT_TRAIN_WPS}{ref})"
    ]
    if device.startswith("cuda"):
        out.append(f"peak cuda memory at MSL hidden 150, gat: {r.peak_gb:.2f} GB (the 1 GB target is for CPU RSS)")
    else:
        out.append(
            f"peak RSS at MSL hidden 150, gat: {r.peak_gb:.2f} GB (target <= {TARGET_PEAK_GB:.0f} GB; "
            f"port as measured in the issue: {PORT_PEAK_GB} GB)"
        )
    return out


def _write_json(path: Path, record: dict) -> None:
    # Temporary name then rename: a reader never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, allow_nan=False))
    tmp.replace(path)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def print_header(system: dict, args: argparse.Namespace) -> None:
    """The machine and the settings, first on stdout."""
    threads, cores, load = system["torch_threads"], system["cpu_count"], system["load_average_1min"]
    print(f"torch {system['torch']}, python {system['python']}, CPU count {cores}, torch threads {threads}")
    print(f"device {system['device_name']}, platform {system['platform']}, 1-min load average at start {load}")
    if load is not None and cores and isinstance(threads, int) and threads > 1 and load + threads > cores + 0.5:
        print(
            f"WARNING: other processes kept ~{load:.1f} of {cores} cores busy at the start; {threads} torch threads "
            "contending with them make timings slow and noisy. Rerun on an idle machine or with --threads 1."
        )
    print(
        f"settings: window {args.window}, batch {args.batch}, mode both; {args.warmup} warm-up step(s), then "
        f"{args.steps} timed steps ({args.reference_steps} for {REFERENCE}); one fresh process per variant"
    )
    print(
        "train/score w/s: windows per second (batch / median step); peak GB: "
        + ("cuda max_memory_allocated" if args.device.startswith("cuda") else "peak resident set size of the process")
        + f"; x: ratio to {REFERENCE} (train x, score x > 1: faster; mem x < 1: smaller)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)), flush=True)
        return 0

    # The driver never imports torch (2 s or more of start-up): the workers report the version and threads.
    started = time.perf_counter()
    system: dict[str, Any] = {
        "torch": importlib.metadata.version("torch"),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads if args.threads is not None else "torch default",
        "device": args.device,
        "device_name": args.device,
        "platform": platform.platform(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,  # before our own load
    }
    rows: list[Row] = []
    for dataset in args.datasets:
        for hidden in args.hiddens:
            for variant in args.variants:
                _progress(f"measuring {dataset} hidden {hidden} {variant} ...")
                row, machine = measure_variant(args, dataset, hidden, variant)
                if machine:
                    system.update(
                        torch=machine["torch"],
                        torch_threads=machine["torch_threads"],
                        device_name=machine["device_name"],
                    )
                _progress(f"  {row.worker_s:.1f} s" + (f": {row.error}" if row.error else ""))
                rows.append(row)
    add_ratios(rows)

    print_header(system, args)
    print()
    print(format_table(rows))
    print()
    for line in target_lines(rows, args.device):
        print(line)
    wall = time.perf_counter() - started
    print(f"\nwall time {wall:.0f} s")
    failed = [r for r in rows if r.error]
    if args.json is not None:
        worker_only = ("worker", "dataset", "hidden", "variant")
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in worker_only}
        _write_json(
            args.json,
            {"system": system, "settings": settings, "rows": [asdict(r) for r in rows], "wall_s": round(wall, 1)},
        )
        print(f"results written to {args.json}")
    if failed:
        print(f"{len(failed)} variant(s) failed: see the note column", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
