"""Drift detection on the generator's drift kinds: detection delay, and false alarms on drift-free replays (issue 11).

Run from the repository root::

    .venv/bin/python benchmarks/drift_alarms.py [--seeds 5] [--free-steps 20000] [--quick] [--json PATH]
    .venv/bin/python benchmarks/drift_alarms.py --calibrate --seeds 6   # the KS inflation kappa needed
    .venv/bin/python benchmarks/drift_alarms.py --kinds "" --ph-delta 0.5 --ph-threshold 50   # other settings

Every replay feeds the raw telemetry of one simulated series (shop graph, 5-minute steps) step by
step through a :class:`~tgad_lite.monitor.DriftDetector` with its default settings, plus two
model-free score streams standing in for the monitor's: ``max_risk``, the largest per-service risk
of the robust z-score rule (:class:`~tgad_lite.anomaly.service_baselines.RobustZRisk`, statistics
from the detector's first reference span), and ``cascade``, :func:`~tgad_lite.anomaly.cascade.cascade_score`
of those risks. No model is trained: the detector reads what a monitor reads.

- **False alarms**: drift-free series of ``--free-steps`` steps per seed, easy and hard regime
  (hard: load surges, missing metrics, heterogeneous noise). The detector is reset after every
  alarm (as after a retraining) and keeps going; every alarm is false. Reported: alarms by kind
  and the mean number of *armed* steps between false alarms (steps at which some test could fire:
  none during the reference after each reset, the KS test only after reference + recent). Target:
  at most one per 10,000 steps.
- **Detection delay**: series of ``--drift-start + --post`` steps with one drift starting at
  ``--drift-start`` (shifted by 37 steps per seed, so the drift meets the daily cycle at different
  hours). Kinds: ``traffic x1.2`` / ``x1.5`` (``DriftConfig.traffic_scale``), ``new failure mode``
  (``DriftConfig(new_failure_mode="memory_leak", new_failure_share=1)``: every incident after the
  start is a memory leak, a kind never seen before), and ``level shift`` (injected here, not by the
  generator: one seeded service's latency multiplied by ``--level-shift`` from the start on, as after
  a slow deploy). Alarms before the start are false alarms and reset the detector; after the start
  the first event of each kind (distribution / score) gives the delay in steps. ``missed`` = no
  event within ``--post`` steps. For the level shift, ``located`` counts runs whose distribution
  event names the shifted service and latency; ``services`` / ``metrics``: how many the distribution
  event names (median over the runs that detected).

``--calibrate`` measures instead what KS inflation ``kappa`` the drift-free series need (see
:func:`calibration`); ``--alpha``, ``--inflation``, ``--ph-delta``, ``--ph-threshold`` replace the
detector's defaults. Speed is not measured here; see ``benchmarks/monitor.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from tgad_lite.anomaly.cascade import cascade_score  # noqa: E402
from tgad_lite.anomaly.service_baselines import RobustZRisk  # noqa: E402
from tgad_lite.data.microservices import DriftConfig, Telemetry, shop_graph, simulate  # noqa: E402
from tgad_lite.monitor.drift import (  # noqa: E402
    DISTRIBUTION,
    SCORE,
    DriftDetector,
    ks_inflation,
    ks_statistic,
    replay_drift,
)

TARGET_STEPS_PER_FALSE_ALARM = 10_000
INCIDENT_EVERY = 150  # one random incident per this many steps (the generator's default is 6 in all)
LATENCY = "latency_ms"
KINDS = ("traffic x1.2", "traffic x1.5", "new failure mode", "level shift")


@dataclass
class FreeRow:
    """False alarms on one drift-free replay."""

    regime: str
    seed: int
    steps: int
    armed_steps: int
    distribution_alarms: int
    score_alarms: int

    @property
    def alarms(self) -> int:
        return self.distribution_alarms + self.score_alarms


@dataclass
class DriftRow:
    """One drift run: delays (steps after the drift start) of the first event of each kind."""

    kind: str
    seed: int
    start: int
    distribution_delay: int | None
    score_delay: int | None
    false_alarms_before: int
    services: int = 0  # services named by the distribution event
    metrics: int = 0  # metrics named by it
    located: bool | None = None  # level shift: the shifted pair was among them
    detail: str = ""


@dataclass
class Settings:
    seeds: int
    free_steps: int
    drift_start: int
    post: int
    level_shift: float
    detector: dict[str, Any] = field(default_factory=dict)


def stand_in_scores(tel: Telemetry, reference: int) -> dict[str, np.ndarray]:
    """``{"max_risk": [T], "cascade": [T]}`` from the robust z-score rule fitted on the first ``reference`` steps."""
    x, mask = tel.x[:, None], tel.mask[:, None]  # windows of one step: [T, 1, N, F]
    rule = RobustZRisk().fit(x[:reference], mask[:reference])
    risk = rule.predict_risk(x, mask)  # [T, N]
    return {"max_risk": risk.max(axis=1), "cascade": cascade_score(risk, tel.graph.edge_index)}


def _detector(tel: Telemetry, options: dict[str, Any]) -> DriftDetector:
    return DriftDetector(tel.num_nodes, tel.metric_names, **options)


def false_alarm_run(regime: str, seed: int, steps: int, options: dict[str, Any]) -> FreeRow:
    tel = simulate(shop_graph(), steps=steps, seed=seed, regime=regime, num_incidents=steps // INCIDENT_EVERY)
    det = _detector(tel, options)
    scores = stand_in_scores(tel, det.config["reference"])
    result = replay_drift(det, tel, scores=scores, reset_on_alarm=True)
    # Two kinds firing at one step are one alarm for an operator: count steps, by the first kind.
    by_step: dict[int, str] = {}
    for e in result.events:
        by_step.setdefault(e.step, e.kind)
    return FreeRow(
        regime=regime,
        seed=seed,
        steps=result.steps,
        armed_steps=result.armed_steps,
        distribution_alarms=sum(k == DISTRIBUTION for k in by_step.values()),
        score_alarms=sum(k == SCORE for k in by_step.values()),
    )


def drifted_series(kind: str, seed: int, start: int, steps: int, level_shift: float) -> tuple[Telemetry, int | None]:
    """The series for one drift kind and, for the level shift, the service whose latency moved."""
    common = {"steps": steps, "seed": seed, "num_incidents": steps // INCIDENT_EVERY}
    if kind.startswith("traffic"):
        scale = float(kind.split("x")[1])
        return simulate(shop_graph(), drift=DriftConfig(start=start, traffic_scale=scale), **common), None
    if kind == "new failure mode":
        drift = DriftConfig(start=start, new_failure_mode="memory_leak", new_failure_share=1.0)
        return simulate(shop_graph(), drift=drift, **common), None
    if kind == "level shift":
        tel = simulate(shop_graph(), **common)
        service = int(np.random.default_rng([seed, 11]).integers(tel.num_nodes))
        x = np.array(tel.x)
        x[start:, service, tel.metric_names.index(LATENCY)] *= level_shift
        return Telemetry(**{**{f: getattr(tel, f) for f in tel.__dataclass_fields__}, "x": x}), service
    raise ValueError(f"unknown drift kind {kind!r}")


def drift_run(kind: str, seed: int, settings: Settings) -> DriftRow:
    start = settings.drift_start + 37 * seed
    tel, service = drifted_series(kind, seed, start, start + settings.post, settings.level_shift)
    det = _detector(tel, settings.detector)
    scores = stand_in_scores(tel, det.config["reference"])
    before = replay_drift(det, tel, scores=scores, stop=start, reset_on_alarm=True)
    after = replay_drift(det, tel, scores=scores, start=start, reset_on_alarm=False)
    first = {}
    for e in after.events:
        first.setdefault(e.kind, e)
    dist = first.get(DISTRIBUTION)
    row = DriftRow(
        kind=kind,
        seed=seed,
        start=start,
        distribution_delay=None if dist is None else dist.step - start,
        score_delay=None if SCORE not in first else first[SCORE].step - start,
        false_alarms_before=len(before.alarm_steps),
        detail="" if dist is None else dist.detail,
    )
    if dist is not None:
        row.services, row.metrics = len(dist.services), len(dist.metrics)
    if service is not None:
        row.located = dist is not None and service in dist.services and LATENCY in dist.metrics
    return row


# ----------------------------------------------------------------------------- calibration of kappa


def calibration(regime: str, seeds: int, steps: int, every: int = 12) -> dict[str, Any]:
    """What inflation ``kappa`` the KS tests need on drift-free series, and what :func:`ks_inflation` estimates.

    For every seed and a few fixed references (``reference`` steps, 3,000 steps apart), the scaled
    statistic ``l = D sqrt(n m / (n + m))`` of every (service, metric) pair against the recent
    window, every ``every`` steps over the next 2,000 steps. ``needed[q]``: per metric,
    ``(quantile_q(l) / Kolmogorov quantile_q)^2``, the kappa that makes the KS p-values right at
    that quantile. ``naive``: the share of evaluations in which some pair has a textbook (kappa = 1)
    p-value below ``1e-4 / pairs``. ``estimated``: ``ks_inflation`` on each seed's first 14 days.
    """
    from scipy.special import kolmogi, kolmogorov

    defaults = DriftDetector(8, ("cpu", "memory", "latency_ms", "error_rate")).config
    ref, rec, period = defaults["reference"], defaults["recent"], defaults["period"]
    lams, estimated = [], []
    for seed in range(seeds):
        tel = simulate(shop_graph(), steps=steps, seed=seed, regime=regime, num_incidents=steps // INCIDENT_EVERY)
        x = np.where(tel.mask, tel.x, np.nan).astype(np.float64)
        f = x.shape[2]
        for r0 in range(0, steps - ref - rec - 2000, 3000):
            reference = x[r0 : r0 + ref].reshape(ref, -1)
            for t in range(r0 + ref + rec, min(steps, r0 + ref + rec + 2000), every):
                d, n, m = ks_statistic(reference, x[t - rec : t].reshape(rec, -1))
                with np.errstate(invalid="ignore", divide="ignore"):
                    lams.append((d * np.sqrt(n * m / (n + m))).reshape(-1, f))
        days = min(14, steps // period)
        estimated.append(ks_inflation(x[: days * period], period).tolist())
    lam = np.array(lams)  # [evaluations, N, F]
    needed = {q: ((np.nanquantile(lam, q, axis=(0, 1)) / kolmogi(1 - q)) ** 2).tolist() for q in (0.5, 0.99, 0.999)}
    pairs = np.isfinite(lam[0]).sum()
    naive = float((np.nanmin(kolmogorov(lam.reshape(len(lam), -1)), axis=1) < 1e-4 / pairs).mean())
    return {"regime": regime, "evaluations": len(lam), "needed": needed, "naive": naive, "estimated": estimated}


def calibration_table(results: Sequence[dict[str, Any]], metric_names: Sequence[str]) -> str:
    lines = [
        "KS inflation kappa on drift-free series: needed at quantile q of the scaled statistic, per metric "
        f"({', '.join(metric_names)})"
    ]
    for r in results:
        lines.append(f"{r['regime']}: {r['evaluations']} evaluations; textbook KS (kappa 1) fires in "
                     f"{100 * r['naive']:.1f}% of them (some pair with p < 1e-4 / pairs)")  # fmt: skip
        for q, k in r["needed"].items():
            lines.append(f"  needed at q={q:<5}  " + "  ".join(f"{v:.2f}" for v in k))
        est = np.array(r["estimated"])
        ranges = [f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(est.min(0), est.max(0), strict=True)]
        lines.append("  ks_inflation, 14 days (min-max over seeds): " + "  ".join(ranges))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- tables


def _delay_summary(delays: Sequence[int | None]) -> str:
    got = sorted(d for d in delays if d is not None)
    missed = len(delays) - len(got)
    if not got:
        return f"missed {missed}/{len(delays)}"
    text = f"{int(np.median(got))} [{got[0]}, {got[-1]}]"
    return text + (f" missed {missed}/{len(delays)}" if missed else "")


def false_alarm_table(rows: Sequence[FreeRow]) -> str:
    lines = [
        "Drift-free replays (detector reset after every alarm; every alarm is false)",
        f"{'regime':<7} {'seeds':>5} {'steps':>8} {'armed':>8} {'KS':>4} {'score':>5} "
        f"{'armed steps / false alarm':>26} {'per 10k armed':>14}",
    ]
    for regime in sorted({r.regime for r in rows}):
        sel = [r for r in rows if r.regime == regime]
        steps, armed = sum(r.steps for r in sel), sum(r.armed_steps for r in sel)
        ks, sc = sum(r.distribution_alarms for r in sel), sum(r.score_alarms for r in sel)
        alarms = ks + sc
        between = f"{armed / alarms:,.0f}" if alarms else f"> {armed:,} (none)"
        lines.append(
            f"{regime:<7} {len(sel):>5} {steps:>8,} {armed:>8,} {ks:>4} {sc:>5} {between:>26} "
            f"{1e4 * alarms / max(armed, 1):>14.2f}"
        )
    return "\n".join(lines)


def _first(row: DriftRow) -> int | None:
    delays = [d for d in (row.distribution_delay, row.score_delay) if d is not None]
    return min(delays) if delays else None


def delay_table(rows: Sequence[DriftRow]) -> str:
    lines = [
        "Detection delay in steps after the drift start: median [min, max] over seeds (5-minute steps)",
        f"{'drift kind':<17} {'runs':>4} {'first event (either)':>28} {'KS (distribution)':>28} "
        f"{'Page-Hinkley (score)':>28} "
        f"{'false before':>12} {'located':>8} {'services':>8} {'metrics':>7}",
    ]
    for kind in dict.fromkeys(r.kind for r in rows):
        sel = [r for r in rows if r.kind == kind]
        located = [r.located for r in sel if r.located is not None]
        loc = f"{sum(located)}/{len(located)}" if located else "-"
        hit = [r for r in sel if r.distribution_delay is not None]
        services = int(np.median([r.services for r in hit])) if hit else 0
        metrics = int(np.median([r.metrics for r in hit])) if hit else 0
        lines.append(
            f"{kind:<17} {len(sel):>4} {_delay_summary([_first(r) for r in sel]):>28} "
            f"{_delay_summary([r.distribution_delay for r in sel]):>28} "
            f"{_delay_summary([r.score_delay for r in sel]):>28} {sum(r.false_alarms_before for r in sel):>12} "
            f"{loc:>8} {services:>8} {metrics:>7}"
        )
    return "\n".join(lines)


def run(settings: Settings, regimes: Sequence[str], kinds: Sequence[str], progress: bool = True) -> dict[str, Any]:
    free, drift = [], []
    for regime in regimes:
        for seed in range(settings.seeds):
            free.append(false_alarm_run(regime, seed, settings.free_steps, settings.detector))
            if progress:
                print(f"  drift-free {regime} seed {seed}: {free[-1].alarms} alarm(s)", file=sys.stderr, flush=True)
    for kind in kinds:
        for seed in range(settings.seeds):
            drift.append(drift_run(kind, seed, settings))
            if progress:
                r = drift[-1]
                print(f"  {kind} seed {seed}: KS {r.distribution_delay}, score {r.score_delay}", file=sys.stderr)
    return {"free": free, "drift": drift}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per drift kind and regime (default 5)")
    parser.add_argument("--free-steps", type=int, default=20_000, help="steps per drift-free replay (default 20000)")
    parser.add_argument("--drift-start", type=int, default=1500, help="drift start of seed 0 (default 1500)")
    parser.add_argument("--post", type=int, default=1500, help="steps watched after the drift start (default 1500)")
    parser.add_argument("--level-shift", type=float, default=1.3, help="latency factor of the level shift (1.3)")
    parser.add_argument("--regimes", default="easy,hard", help="drift-free regimes (default easy,hard)")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 6000 drift-free steps: a smoke run")
    parser.add_argument(
        "--calibrate", action="store_true", help="only measure the KS inflation kappa (see calibration)"
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"drift kinds, comma-separated ('' for none): {KINDS}")
    parser.add_argument("--alpha", type=float, help="detector alpha (default: the detector's)")
    parser.add_argument("--inflation", type=float, help="detector KS inflation kappa (default: the detector's)")
    parser.add_argument("--ph-delta", type=float, help="Page-Hinkley delta (default: the detector's)")
    parser.add_argument("--ph-threshold", type=float, help="Page-Hinkley threshold (default: the detector's)")
    parser.add_argument("--json", type=Path, help="also write the rows and settings as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.free_steps = 2, 6000
    if args.calibrate:
        regimes = [r for r in args.regimes.split(",") if r]
        print(f"drift_alarms --calibrate: shop graph, {args.seeds} seed(s) x {args.free_steps} steps per regime")
        results = [calibration(r, args.seeds, args.free_steps) for r in regimes]
        print(calibration_table(results, ("cpu", "memory", "latency_ms", "error_rate")))
        return 0
    options: dict[str, Any] = {}
    if args.alpha is not None:
        options["alpha"] = args.alpha
    if args.inflation is not None:
        options["inflation"] = args.inflation
    ph = {k: v for k, v in (("delta", args.ph_delta), ("threshold", args.ph_threshold)) if v is not None}
    if ph:
        options["score_options"] = ph
    settings = Settings(args.seeds, args.free_steps, args.drift_start, args.post, args.level_shift, options)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown drift kind(s) {unknown}; choose from {KINDS}")
    regimes = [r for r in args.regimes.split(",") if r]
    defaults = DriftDetector(8, ("cpu", "memory", "latency_ms", "error_rate"), **options).config
    print(
        f"drift_alarms: shop graph (8 services x 4 metrics), 5-minute steps, {settings.seeds} seed(s); detector "
        f"settings: reference {defaults['reference']}, recent {defaults['recent']}, every {defaults['every']}, "
        f"alpha {defaults['alpha']:g} (BH), persistence {defaults['persistence']}, inflation "
        f"{defaults['inflation'][0]:g}, Page-Hinkley {defaults['score_options']}; python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    started = time.perf_counter()
    out = run(settings, regimes, kinds)
    print()
    print(false_alarm_table(out["free"]))
    print()
    if out["drift"]:
        print(delay_table(out["drift"]))
    print(f"\ntarget: at most one false alarm per {TARGET_STEPS_PER_FALSE_ALARM:,} drift-free steps; "
          f"took {time.perf_counter() - started:.0f} s")  # fmt: skip
    if args.json:
        record = {
            "settings": asdict(settings),
            "detector": defaults,
            "free": [asdict(r) for r in out["free"]],
            "drift": [asdict(r) for r in out["drift"]],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
