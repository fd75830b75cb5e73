"""``python -m tgad_lite.monitor replay|train``: replay telemetry through a saved model, step by step.

``replay`` reads a model saved with :func:`~tgad_lite.monitor.save_monitor_model` (or by
``train``), replays generated telemetry (``--regime --steps --seed --topology``, optionally with
drift: ``--drift-at STEP --traffic-scale X --new-failure-mode KIND``) or a saved ``.npz``
(``x [T, N, F]``, optional ``mask``, ``edge_index [2, E]``, optional ``labels [T, N]`` /
``root_cause [T]``) through a :class:`~tgad_lite.monitor.Monitor`, and prints alarm episodes,
drift events and a summary (with the ground truth when the data has it), with one progress bar.

The first ``--reference`` steps (default a quarter of the series) are the reference: the robust
normaliser and the Welford reference statistics are fitted on them (``--normaliser model``: the
model's own training normaliser is the anchor instead) and the replay covers the steps after them.
``--state PATH``: continue from the monitor state saved there (if the file exists) and save the
state there at the end, atomically; ``--stop STEP`` ends the replay early, e.g. to show a restart.

``train`` trains a small temporal GAT on a generated series and saves it for ``replay``.

``--threads`` (default 1 for ``replay``): a step is one small snapshot; with more threads each
operation waits for the others, and on a busy machine those waits dominate (measured: 7 ms per
LayerNorm call on 8 services with 2 threads beside other jobs, 5 us with one).

Exit codes: 0 done, 2 bad input (a clear message on stderr; nothing written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

EXIT_OK, EXIT_BAD_INPUT = 0, 2


class InputError(ValueError):
    """Bad input to the command line: the message says what and how to fix it."""


# ----------------------------------------------------------------------------- arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tgad_lite.monitor",
        description="Streaming risk monitor: replay telemetry through a saved model.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def data_options(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("generated telemetry (see tgad_lite.data.microservices.simulate)")
        g.add_argument("--regime", default="hard", choices=("easy", "hard"), help="generator preset (default hard)")
        g.add_argument("--steps", type=int, default=2000, help="steps to generate (default 2000)")
        g.add_argument("--seed", type=int, default=0, help="series seed (default 0)")
        g.add_argument("--topology", default="shop", choices=("shop", "random"), help="shop graph or a random DAG")
        g.add_argument("--services", type=int, default=50, help="services of the random DAG (default 50)")
        g.add_argument("--graph-seed", type=int, default=0, help="seed of the random DAG (default 0)")
        g.add_argument("--incidents", type=int, default=None, help="random incidents (default steps // 100)")

    r = sub.add_parser("replay", help="replay telemetry through a saved model and print alarms and drift")
    r.add_argument("--model", required=True, help="saved model (save_monitor_model / the train command)")
    r.add_argument("--npz", default=None, help="replay this .npz (x, mask, edge_index[, labels, root_cause])")
    data_options(r)
    d = r.add_argument_group("drift injected into generated telemetry (DriftConfig)")
    d.add_argument("--drift-at", type=int, default=None, help="step from which the drift applies")
    d.add_argument("--traffic-scale", type=float, default=1.0, help="entry traffic multiplier after --drift-at")
    d.add_argument("--new-failure-mode", default=None, help="an incident kind that appears after --drift-at")
    m = r.add_argument_group("monitor")
    m.add_argument("--reference", type=int, default=None, help="reference steps at the start (default: T // 4)")
    m.add_argument("--normaliser", default="reference", choices=("reference", "model"), help="normaliser anchor")
    m.add_argument("--fixed-normaliser", action="store_true", help="no online adaptation (the anchor, fixed)")
    m.add_argument("--risk-threshold", default="spot", help="'spot', 'model' (saved threshold) or a number")
    m.add_argument("--cascade-threshold", default="spot", help="'spot' or a number")
    m.add_argument("--spot-q", type=float, default=1e-3, help="SPOT risk q (default 1e-3)")
    m.add_argument("--calibration", type=int, default=300, help="scored steps each SPOT calibrates on")
    m.add_argument("--no-freeze", action="store_true", help="learn alarmed steps into the statistics too")
    m.add_argument("--no-drift", action="store_true", help="no drift detector")
    m.add_argument("--drift-reference", type=int, default=576, help="drift detector reference steps (576)")
    m.add_argument("--drift-recent", type=int, default=288, help="drift detector recent window (288)")
    m.add_argument("--state", default=None, help="continue from / save the monitor state at this .npz path")
    m.add_argument("--stop", type=int, default=None, help="stop before this series step")
    m.add_argument("--max-lines", type=int, default=20, help="alarm episodes printed (default 20)")
    m.add_argument("--json", default=None, help="also write the summary to this JSON file")
    m.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    m.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: one step is too small to split; 0: torch's)"
    )

    t = sub.add_parser("train", help="train a small temporal GAT on generated telemetry and save it for replay")
    t.add_argument("--out", required=True, help="where to save the model (.pt)")
    data_options(t)
    t.add_argument("--window", type=int, default=8, help="steps per window (default 8)")
    t.add_argument("--hidden", type=int, default=32, help="hidden width (default 32)")
    t.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    t.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    t.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    t.add_argument("--threads", type=int, default=0, help="torch threads (default 0: torch's own choice)")
    return parser


# ----------------------------------------------------------------------------- data


def _graph(args: argparse.Namespace) -> Any:
    from tgad_lite.data.microservices import random_service_dag, shop_graph

    if args.topology == "shop":
        return shop_graph()
    if args.services < 2:
        raise InputError(f"--services must be >= 2 for a random DAG, got {args.services}")
    return random_service_dag(args.services, edge_prob=min(1.0, 1.5 / args.services), seed=args.graph_seed)


def _simulate(args: argparse.Namespace, drift: Any = None) -> Any:
    from tgad_lite.data.microservices import simulate

    if args.steps < 2:
        raise InputError(f"--steps must be >= 2, got {args.steps}")
    incidents = args.steps // 100 if args.incidents is None else args.incidents
    return simulate(
        _graph(args), steps=args.steps, seed=args.seed, regime=args.regime, num_incidents=incidents, drift=drift
    )


class _Series:
    """What is replayed: ``x [T, N, F]``, ``mask``, ``edge_index``, names, ground truth ``[T]`` or None."""

    def __init__(self, x, mask, edge_index, names, truth, metric_names, description):
        self.x, self.mask, self.edge_index, self.names = x, mask, edge_index, names
        self.truth, self.metric_names, self.description = truth, metric_names, description


def _load_npz(path: str) -> _Series:
    from tgad_lite.anomaly.cascade import check_edge_index

    p = Path(path)
    if not p.is_file():
        raise InputError(f"--npz {p}: no such file")
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"--npz {p} is not a readable .npz file ({exc})") from None
    missing = [k for k in ("x", "edge_index") if k not in arrays]
    if missing:
        raise InputError(f"--npz {p} lacks {', '.join(missing)}; it needs x [T, N, F] and edge_index [2, E]")
    x = arrays["x"]
    if x.ndim != 3 or x.dtype.kind not in "iuf":
        raise InputError(f"--npz {p}: x must be a numeric [T, N, F] array, got {x.dtype} {x.shape}")
    mask = arrays.get("mask")
    if mask is None:
        mask = np.isfinite(x)
    elif mask.shape != x.shape or mask.dtype != np.bool_:
        raise InputError(f"--npz {p}: mask must be bool shaped like x {x.shape}, got {mask.dtype} {mask.shape}")
    try:
        edges = check_edge_index(arrays["edge_index"], x.shape[1])
    except ValueError as exc:
        raise InputError(f"--npz {p}: {exc}") from None
    truth = None
    if "root_cause" in arrays:
        truth = (np.asarray(arrays["root_cause"]) >= 0).astype(np.int8)
    elif "labels" in arrays:
        truth = np.asarray(arrays["labels"]).reshape(x.shape[0], -1).any(axis=1).astype(np.int8)
    if truth is not None and truth.shape != (x.shape[0],):
        raise InputError(f"--npz {p}: root_cause / labels must have one entry per step ({x.shape[0]})")
    names = [f"s{i}" for i in range(x.shape[1])]
    metric_names = [str(m) for m in arrays["metric_names"]] if "metric_names" in arrays else None
    return _Series(x, mask, edges, names, truth, metric_names, f"{p.name}: {x.shape[0]} steps, N={x.shape[1]}")


def _series(args: argparse.Namespace) -> _Series:
    from tgad_lite.anomaly.cascade import incident_labels
    from tgad_lite.data.microservices import DriftConfig

    if args.npz is not None:
        if args.drift_at is not None:
            raise InputError("--drift-at applies to generated telemetry, not to --npz data")
        return _load_npz(args.npz)
    drift = None
    if args.drift_at is not None:
        try:
            drift = DriftConfig(
                start=args.drift_at, traffic_scale=args.traffic_scale, new_failure_mode=args.new_failure_mode
            )
        except (TypeError, ValueError) as exc:
            raise InputError(f"drift options: {exc}") from None
    elif args.traffic_scale != 1.0 or args.new_failure_mode is not None:
        raise InputError("--traffic-scale and --new-failure-mode need --drift-at STEP (when the drift starts)")
    tel = _simulate(args, drift)
    what = f"{args.regime} regime, {args.topology} graph (N={tel.num_nodes}), seed {args.seed}, {tel.num_steps} steps"
    if drift is not None:
        what += f", drift from step {drift.start} (traffic x{drift.traffic_scale}"
        what += f", new failure mode {drift.new_failure_mode})" if drift.new_failure_mode else ")"
    return _Series(
        tel.x,
        tel.mask,
        np.asarray(tel.graph.edge_index),
        list(tel.graph.names),
        incident_labels(tel),
        list(tel.metric_names),
        what,
    )


# ----------------------------------------------------------------------------- replay


def _threshold(value: str, saved: float | None, name: str) -> float | str:
    if value == "spot":
        return "spot"
    if value == "model":
        if saved is None:
            raise InputError(f"--{name} model: the saved model has no threshold; use 'spot' or a number")
        return float(saved)
    try:
        return float(value)
    except ValueError:
        raise InputError(
            f"--{name} must be 'spot'{', model' if name == 'risk-threshold' else ''} or a number"
        ) from None


def _episodes(flags: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True in ``flags [T]`` as (first, last) indices."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist(), strict=True))


def _write_json(path: str, payload: dict) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(name, target)
    finally:
        Path(name).unlink(missing_ok=True)


def _replay(args: argparse.Namespace) -> int:
    from tgad_lite.metrics.detection import detection_delays, false_alarm_events
    from tgad_lite.monitor.monitor import Monitor
    from tgad_lite.monitor.normaliser import OnlineNormaliser
    from tgad_lite.monitor.state import load_monitor_model
    from tgad_lite.progress import Progress

    saved = load_monitor_model(args.model, device=args.device)
    series = _series(args)
    steps, n, f = series.x.shape
    if f != saved.model.num_features:
        raise InputError(f"the data has {f} metrics per service but the model reads {saved.model.num_features}")
    metric_names = series.metric_names or list(saved.metric_names)
    reference = steps // 4 if args.reference is None else args.reference
    if not 1 <= reference < steps:
        raise InputError(f"--reference must leave steps to replay: 1 <= {reference} < {steps} (the series)")
    stop = steps if args.stop is None else args.stop
    if not reference < stop <= steps:
        raise InputError(f"--stop must lie after the reference span: {reference} < {stop} <= {steps}")
    x_ref, m_ref = series.x[:reference], series.mask[:reference]
    drift = None
    if not args.no_drift:
        from tgad_lite.monitor.drift import DriftDetector

        drift = DriftDetector(n, metric_names, reference=args.drift_reference, recent=args.drift_recent)
    state_path = Path(args.state) if args.state else None
    context = {"data": series.description, "reference": reference}
    if state_path is not None and state_path.exists():
        from tgad_lite.monitor.state import load_state

        saved_context = load_state(state_path).get("extra", {})
        if saved_context != context:
            raise InputError(
                f"--state {state_path} was saved replaying {saved_context.get('data')!r} with reference "
                f"{saved_context.get('reference')}, not {series.description!r} with reference {reference}; "
                "resume with the same data options, or use a new --state path"
            )
        monitor = Monitor.load(state_path, saved.model, series.edge_index, drift=drift, device=args.device)
        resumed = f"resumed from {state_path} at monitor step {monitor.step_count}"
    else:
        if args.normaliser == "model":
            if saved.normaliser is None:
                raise InputError("--normaliser model: the saved model has no normaliser; use --normaliser reference")
            if saved.normaliser.shape != (n, f):
                raise InputError(
                    f"--normaliser model: the model's normaliser is for {saved.normaliser.shape[0]} services, the data "
                    f"has {n}; use --normaliser reference (fit on the first --reference steps)"
                )
            ref = None if args.fixed_normaliser else (x_ref, m_ref)
            normaliser = OnlineNormaliser(saved.normaliser, ref, adapt=not args.fixed_normaliser)
        else:
            normaliser = OnlineNormaliser.from_reference(x_ref, m_ref, adapt=not args.fixed_normaliser)
        monitor = Monitor(
            saved.model,
            series.edge_index,
            normaliser=normaliser,
            window=saved.window,
            metric_names=metric_names,
            drift=drift,
            freeze_on_alarm=not args.no_freeze,
            risk_threshold=_threshold(args.risk_threshold, saved.threshold, "risk-threshold"),
            cascade_threshold=_threshold(args.cascade_threshold, None, "cascade-threshold"),
            spot_q=args.spot_q,
            calibration=args.calibration,
            model_version=saved.metadata.get("version", saved.path.name),
            device=args.device,
        )
        resumed = None
    start = reference + monitor.step_count
    if start >= stop:
        raise InputError(f"nothing to replay: the state is at series step {start}, the replay stops at {stop}")

    print(f"model: {saved.path} (window {saved.window}, version {monitor.model_version})")
    print(f"data: {series.description}; reference steps 0..{reference - 1}; replaying {start}..{stop - 1}")
    if resumed:
        print(resumed)
    if drift is None:
        print("drift detection: off (--no-drift)")
    elif stop - reference < args.drift_reference + args.drift_recent:
        print(
            f"drift detection: on, but it needs {args.drift_reference + args.drift_recent} replayed steps "
            "(--drift-reference + --drift-recent) before it can fire"
        )
    count = stop - start
    service_alarm = np.zeros(count, dtype=bool)
    system_alarm = np.zeros(count, dtype=bool)
    scored = np.zeros(count, dtype=bool)
    peak_risk = np.zeros(count)
    alarmed: list[list[int]] = []
    events: list[dict] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SPOT fallbacks on short calibrations: the summary says the thresholds
        with Progress(count, "replay") as bar:
            for i, t in enumerate(range(start, stop)):
                r = monitor.step(series.x[t], series.mask[t])
                scored[i] = r.risk is not None
                service_alarm[i], system_alarm[i] = bool(r.alarms.any()), r.system_alarm
                peak_risk[i] = 0.0 if r.risk is None else float(r.risk.max())
                alarmed.append(np.flatnonzero(r.alarms).tolist())
                if r.drift is not None:
                    for e in r.drift.events:
                        events.append({"series_step": t, "kind": e.kind, "detail": e.detail})
                        print(f"step {t}: DRIFT ({e.kind}) {e.detail}")
                bar.update(1, alarms=int(service_alarm[: i + 1].sum()))
    any_alarm = service_alarm | system_alarm
    episodes = _episodes(any_alarm)
    print(f"alarm episodes: {len(episodes)}")
    for first, last in episodes[: args.max_lines]:
        services = sorted({s for k in range(first, last + 1) for s in alarmed[k]})
        who = ", ".join(series.names[s] for s in services[:8]) + (" ..." if len(services) > 8 else "")
        sys_steps = int(system_alarm[first : last + 1].sum())
        print(
            f"  steps {start + first}..{start + last}: services [{who or '-'}], max risk "
            f"{peak_risk[first : last + 1].max():.3f}, system alarm on {sys_steps} step(s)"
        )
    if len(episodes) > args.max_lines:
        print(f"  ... {len(episodes) - args.max_lines} more (--max-lines)")
    summary: dict[str, Any] = {
        "model": str(saved.path),
        "data": series.description,
        "replayed": [start, stop],
        "steps": count,
        "scored_steps": int(scored.sum()),
        "service_alarm_steps": int(service_alarm.sum()),
        "system_alarm_steps": int(system_alarm.sum()),
        "alarm_episodes": len(episodes),
        "risk_threshold": monitor.risk_gate.current(),
        "cascade_threshold": monitor.cascade_gate.current(),
        "drift_events": events,
        "model_version": monitor.model_version,
    }
    print(
        f"summary: {count} steps replayed, {int(scored.sum())} scored; service alarms on {int(service_alarm.sum())} "
        f"step(s), system alarms on {int(system_alarm.sum())}; {len(events)} drift event(s); thresholds: risk "
        f"{_fmt(summary['risk_threshold'])}, cascade {_fmt(summary['cascade_threshold'])}"
    )
    if series.truth is not None:
        truth = series.truth[start:stop]
        score = any_alarm.astype(np.float64)
        delays = detection_delays(score, truth, 0.5)
        found = [d for d in delays if d is not None]
        summary.update(
            incidents=len(delays),
            incidents_detected=len(found),
            median_delay=float(np.median(found)) if found else None,
            false_alarm_episodes=false_alarm_events(score, truth, 0.5),
        )
        median = f"{summary['median_delay']:g}" if found else "n/a"
        print(
            f"ground truth: {len(delays)} incident(s) in the replay, {len(found)} alarmed (median delay {median} "
            f"steps), {summary['false_alarm_episodes']} alarm episode(s) outside any incident"
        )
    if state_path is not None:
        monitor.save(state_path, extra=context)
        at = reference + monitor.step_count
        print(f"state saved: {state_path} (monitor step {monitor.step_count}, series step {at})")
        summary["state"] = str(state_path)
    if args.json:
        _write_json(args.json, summary)
    return EXIT_OK


def _fmt(value: float | None) -> str:
    return "calibrating" if value is None else f"{value:.4g}"


# ----------------------------------------------------------------------------- train


def _train(args: argparse.Namespace) -> int:
    import torch

    from tgad_lite.data.microservices import time_split
    from tgad_lite.monitor.state import save_monitor_model
    from tgad_lite.temporal import TemporalGAT, train_risk_model

    tel = _simulate(args)
    try:
        split = time_split(tel, window=args.window)
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot split {args.steps} steps into windows of {args.window}: {exc}") from None
    torch.manual_seed(args.seed)
    try:
        model = TemporalGAT(tel.x.shape[2], hidden=args.hidden, heads=args.heads)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    result = train_risk_model(
        model, split.train, split.val, tel.graph.edge_index, epochs=args.epochs, device=args.device, seed=args.seed
    )
    meta = {
        "topology": args.topology,
        "services": tel.num_nodes,
        "regime": args.regime,
        "seed": args.seed,
        "steps": args.steps,
        "train_span": list(split.spans[0]),
        "val_pr_auc": result.val_pr_auc,
        "version": Path(args.out).stem,
    }
    path = save_monitor_model(
        args.out,
        model.cpu(),
        window=args.window,
        metric_names=tel.metric_names,
        normaliser=split.normaliser,
        threshold=result.threshold,
        metadata=meta,
    )
    print(f"saved {path}: validation PR-AUC {result.val_pr_auc:.3f}, threshold {result.threshold:.3f}")
    return EXIT_OK


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 done, 2 bad input)."""
    from tgad_lite.monitor.state import StateError
    from tgad_lite.train import CheckpointError

    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    import torch

    threads = torch.get_num_threads()
    try:
        if args.threads < 0:
            raise InputError(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
        if args.threads:
            torch.set_num_threads(args.threads)
        return _replay(args) if args.command == "replay" else _train(args)
    except (InputError, StateError, CheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as exc:  # a refused step or setting: the message names the fix
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        torch.set_num_threads(threads)
