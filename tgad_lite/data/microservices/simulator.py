"""``simulate``: the telemetry generator (the model is described in the package docstring)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tgad_lite.data.microservices._checks import as_float, as_int, pair
from tgad_lite.data.microservices.graph import ServiceGraph
from tgad_lite.data.microservices.incidents import (
    DEFAULT_INCIDENT_KINDS,
    INCIDENT_KINDS,
    SIGNATURES,
    DriftConfig,
    Incident,
    LoadSurge,
    apply_drift_kinds,
    cascade,
    footprint_end,
    hop_limit,
)
from tgad_lite.data.microservices.regimes import REGIME_NAMES, regime_config
from tgad_lite.data.microservices.telemetry import METRICS, MINUTES_PER_DAY, SimConfig, Telemetry

_ENTRY_RPM = 1000.0
_AR_COEF = 0.9
# noise is a log-scale standard deviation: at 1 a metric already varies by a factor e per
# sigma. Far above it exp() overflows float32 (noise=60 gave inf), so larger values are refused.
MAX_NOISE = 1.0
MAX_NOISE_SPREAD = 3.0
MAX_AMPLIFICATION = 10.0
MAX_SURGE_HEIGHT = 10.0
# Nominal load beyond this cannot survive the daily peak, noise and float32 (max 3.4e38).
_MAX_NOMINAL_LOAD = 1e36

# The original draws come from default_rng(seed) in a fixed order. Each regime option draws
# from its own stream default_rng([seed, k]), so turning one on changes nothing else: the same
# seed gives the same traffic, noise and incidents with or without it.
_STREAM_AMPLIFICATION = 1
_STREAM_NOISE_SPREAD = 2
_STREAM_OBSERVABILITY = 3
_STREAM_UNINSTRUMENTED = 4
_STREAM_SURGES = 5


def _stream(seed: int, k: int) -> np.random.Generator:
    return np.random.default_rng([seed, k])


def _share(fraction: float, total: int) -> int:
    """``fraction`` of ``total`` items, rounded half up (0.25 of 10 is 3, not banker's 2)."""
    return int(math.floor(fraction * total + 0.5))


def _lognormal(scale: np.ndarray, z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``exp(scale * z)`` written into ``out`` ([T, N]; ``scale`` is [N])."""
    np.multiply(scale, z, out=out)
    return np.exp(out, out=out)


def _unobserved_argument(value: Any, graph: ServiceGraph) -> int | float | tuple[int, ...]:
    """Checks ``unobserved_services``: a count, a fraction in [0, 1), or indices / names."""
    n = graph.num_nodes
    fix = "pass a count (int), a fraction in [0, 1) (float) or a list of service indices or names"
    if isinstance(value, bool):
        raise TypeError(f"unobserved_services must not be a bool; {fix}")
    if isinstance(value, (int, np.integer)):
        if not 0 <= value <= n - 1:
            raise ValueError(
                f"unobserved_services={value} must lie in 0..{n - 1} (at least one of the {n} services stays "
                "observed); lower it"
            )
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = as_float(value, "unobserved_services")
        if not 0.0 <= value < 1.0:
            raise ValueError(f"unobserved_services={value} as a fraction must lie in [0, 1); {fix}")
        if _share(value, n) >= n:
            raise ValueError(f"unobserved_services={value} hides all {n} services, leaving none observed: lower it")
        return value
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(f"unobserved_services={value!r} is not understood; {fix}")
    chosen = []
    for item in value:
        if isinstance(item, str):
            chosen.append(graph.index(item))  # KeyError lists the service names
        else:
            i = as_int(item, "unobserved_services entry")
            if not 0 <= i < n:
                raise ValueError(f"unobserved_services entry {i} is not a service index 0..{n - 1}")
            chosen.append(i)
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"unobserved_services lists a service twice: {list(value)}; list each once")
    if len(chosen) >= n:
        raise ValueError(f"unobserved_services lists all {n} services; leave at least one observed")
    return tuple(sorted(chosen))


def _observation_mask(
    shape: tuple[int, int, int],
    graph: ServiceGraph,
    seed: int,
    unobserved: int | float | tuple[int, ...],
    missing_metric_fraction: float,
    uninstrumented_roots: float,
    incidents: list[Incident],
    cascades: list[list[tuple[int, int, int, float]]],
) -> np.ndarray:
    """``[T, N, F]`` bool, True = observed (see "Partial observability" in the package docstring)."""
    steps, n, f = shape
    observed = np.ones((n, f), dtype=bool)  # constant over time: instrumentation does not flicker
    rng = _stream(seed, _STREAM_OBSERVABILITY)
    if isinstance(unobserved, tuple):
        hidden = np.array(unobserved, dtype=np.int64)
    else:
        count = unobserved if isinstance(unobserved, int) else _share(unobserved, n)
        hidden = np.sort(rng.permutation(n)[:count])
    observed[hidden] = False
    if missing_metric_fraction > 0:
        pairs = np.flatnonzero(observed.ravel())
        k = _share(missing_metric_fraction, pairs.size)
        observed.ravel()[rng.choice(pairs, size=k, replace=False)] = False
    if uninstrumented_roots > 0:
        # One draw per service, not per incident, so a root that fails twice is uninstrumented
        # with probability p, like every other root. Only roots some caller notices qualify:
        # an unobserved root nobody calls would make an incident nobody can see.
        u = _stream(seed, _STREAM_UNINSTRUMENTED).random(n)
        for inc, cas in zip(incidents, cascades, strict=True):
            if u[inc.root] < uninstrumented_roots and len(cas) > 1:
                observed[inc.root] = False
    if not observed.any():
        raise ValueError(
            "no (service, metric) pair is left observed: lower unobserved_services, missing_metric_fraction "
            "or uninstrumented_roots"
        )
    return np.broadcast_to(observed, shape).copy()


def _draw_surges(
    seed: int, steps: int, count: int, duration: tuple[int, int], height: tuple[float, float]
) -> list[LoadSurge]:
    rng = _stream(seed, _STREAM_SURGES)
    durs = rng.integers(duration[0], duration[1] + 1, count)
    heights = rng.uniform(height[0], height[1], count)
    starts = rng.integers(0, steps - durs + 1)  # anywhere, overlapping incidents or each other
    surges = [LoadSurge(int(s), int(d), float(h)) for s, d, h in zip(starts, durs, heights, strict=True)]
    return sorted(surges, key=lambda s: s.start)


def simulate(
    graph: ServiceGraph,
    *,
    steps: int,
    seed: int,
    regime: str = "easy",
    step_minutes: int = 5,
    num_incidents: int | None = None,
    incidents: Sequence[Incident] | None = None,
    incident_kinds: Sequence[str] = DEFAULT_INCIDENT_KINDS,
    duration: tuple[int, int] = (3, 12),
    severity: tuple[float, float] = (0.5, 1.0),
    hop_delay: int | None = None,
    hop_decay: float = 0.6,
    severity_threshold: float = 0.15,
    seasonality: float = 0.35,
    noise: float = 0.05,
    min_gap: int = 1,
    drift: DriftConfig | None = None,
    amplification: tuple[float, float] | None = None,
    noise_spread: float | None = None,
    unobserved_services: int | float | Sequence[int | str] | None = None,
    missing_metric_fraction: float | None = None,
    uninstrumented_roots: bool | float | None = None,
    load_surges: int | None = None,
    surge_duration: tuple[int, int] | None = None,
    surge_height: tuple[float, float] | None = None,
) -> Telemetry:
    """Simulate ``steps`` steps of telemetry on ``graph`` (model: see the package docstring).

    Incidents are either drawn at random (``num_incidents``, default 6, with ``incident_kinds``,
    ``duration`` and ``severity`` ranges) or given explicitly with ``incidents=`` (then leave
    ``num_incidents`` unset). Returns a ``Telemetry`` whose ``x`` is ``[steps, N, 4]`` float32
    (NaN where ``Telemetry.mask`` is False).

    ``regime`` (``"easy"`` or ``"hard"``, see ``regimes``) fills every argument left at ``None``
    (``hop_delay`` and the options after ``drift``); an argument given explicitly wins. The
    easy regime is the original generator: same seed, same arrays, bit for bit.

    Every argument is checked before anything is drawn (``noise`` must lie in [0, 1]); settings
    that would still push a metric beyond float32's range raise ValueError instead of
    returning inf. Speed: N=1000 services (``random_service_dag(1000, edge_prob=0.005, seed=0)``,
    3,490 dependencies) and 10,000 steps took 1.7 s on one CPU core (1.9 s with ``regime="hard"``;
    a shared machine), half of it drawing the noise; about 0.9 GB at the peak.
    """
    # ---- validate everything before drawing anything
    if not isinstance(graph, ServiceGraph):
        raise TypeError(f"graph must be a ServiceGraph (e.g. shop_graph()), got {type(graph).__name__}")
    if not isinstance(regime, str) or regime not in REGIME_NAMES:
        raise ValueError(f"regime must be one of {'|'.join(REGIME_NAMES)}, got {regime!r}")
    preset = regime_config(regime)
    hop_delay = preset["hop_delay"] if hop_delay is None else hop_delay
    amplification = preset["amplification"] if amplification is None else amplification
    noise_spread = preset["noise_spread"] if noise_spread is None else noise_spread
    unobserved_services = preset["unobserved_services"] if unobserved_services is None else unobserved_services
    if missing_metric_fraction is None:
        missing_metric_fraction = preset["missing_metric_fraction"]
    uninstrumented_roots = preset["uninstrumented_roots"] if uninstrumented_roots is None else uninstrumented_roots
    load_surges = preset["load_surges"] if load_surges is None else load_surges
    surge_duration = preset["surge_duration"] if surge_duration is None else surge_duration
    surge_height = preset["surge_height"] if surge_height is None else surge_height

    order = graph.topological_order()  # raises with the cycle named
    n = graph.num_nodes
    steps = as_int(steps, "steps")
    if steps < 1:
        raise ValueError(f"steps must be > 0, got {steps}")
    seed = as_int(seed, "seed")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    step_minutes = as_int(step_minutes, "step_minutes")
    if not 1 <= step_minutes <= MINUTES_PER_DAY:
        raise ValueError(f"step_minutes must lie in 1..{MINUTES_PER_DAY}, got {step_minutes}")
    hop_delay = as_int(hop_delay, "hop_delay")
    if hop_delay < 0:
        raise ValueError(f"hop_delay is a number of steps and must be >= 0, got {hop_delay}")
    hop_decay = as_float(hop_decay, "hop_decay")
    if not 0.0 < hop_decay <= 1.0:
        raise ValueError(f"hop_decay multiplies severity per hop and must lie in (0, 1], got {hop_decay}")
    severity_threshold = as_float(severity_threshold, "severity_threshold")
    if not 0.0 < severity_threshold <= 1.0:
        raise ValueError(f"severity_threshold must lie in (0, 1], got {severity_threshold}")
    seasonality = as_float(seasonality, "seasonality")
    if not 0.0 <= seasonality < 1.0:
        raise ValueError(f"seasonality is the daily traffic amplitude and must lie in [0, 1), got {seasonality}")
    noise = as_float(noise, "noise")
    if not 0 <= noise <= MAX_NOISE:
        raise ValueError(
            f"noise is a log-scale standard deviation and must lie in [0, {MAX_NOISE}] (at 1 a metric varies "
            f"by a factor e per sigma; the default is 0.05), got {noise}"
        )
    min_gap = as_int(min_gap, "min_gap")
    if min_gap < 0:
        raise ValueError(f"min_gap must be >= 0 steps, got {min_gap}")
    kinds = tuple(incident_kinds)
    if isinstance(incident_kinds, str) or not kinds:
        raise ValueError(f"incident_kinds must be a non-empty sequence of kinds from {INCIDENT_KINDS}")
    unknown = [k for k in kinds if k not in INCIDENT_KINDS]
    if unknown or len(set(kinds)) != len(kinds):
        raise ValueError(f"incident_kinds must be distinct kinds from {INCIDENT_KINDS}, got {kinds}")
    dur_lo, dur_hi = pair(duration, "duration", int)
    if dur_lo < 1:
        raise ValueError(f"duration must be at least 1 step, got {duration!r}")
    sev_lo, sev_hi = pair(severity, "severity", float)
    if sev_lo < severity_threshold:
        raise ValueError(
            f"severity low end {sev_lo} is below severity_threshold={severity_threshold}, so such an "
            "incident would hit nothing: raise severity[0] or lower severity_threshold"
        )
    if drift is not None:
        if not isinstance(drift, DriftConfig):
            raise TypeError(f"drift must be a DriftConfig, got {type(drift).__name__}")
        if drift.start >= steps:
            raise ValueError(
                f"drift.start={drift.start} is not inside the series (steps={steps}): use a start below {steps}"
            )
    # ---- the regime options
    amp_lo, amp_hi = pair(amplification, "amplification", float)
    if not 1.0 <= amp_lo <= amp_hi <= MAX_AMPLIFICATION:
        raise ValueError(
            f"amplification={amplification!r} is the (low, high) range of per-service retry/fan-out factors and "
            f"must satisfy 1 <= low <= high <= {MAX_AMPLIFICATION:g}; (1, 1) turns it off"
        )
    noise_spread = as_float(noise_spread, "noise_spread")
    if not 0.0 <= noise_spread <= MAX_NOISE_SPREAD:
        raise ValueError(
            f"noise_spread={noise_spread} must lie in [0, {MAX_NOISE_SPREAD:g}]: per-service noise ranges from "
            "noise * exp(-noise_spread) to noise * exp(noise_spread); 0 turns it off"
        )
    if noise * math.exp(noise_spread) > MAX_NOISE:
        raise ValueError(
            f"noise={noise} with noise_spread={noise_spread} gives services noise up to "
            f"{noise * math.exp(noise_spread):.3g}, above the maximum {MAX_NOISE}: lower noise or noise_spread"
        )
    unobserved_services = _unobserved_argument(unobserved_services, graph)
    missing_metric_fraction = as_float(missing_metric_fraction, "missing_metric_fraction")
    if not 0.0 <= missing_metric_fraction < 1.0:
        raise ValueError(
            f"missing_metric_fraction={missing_metric_fraction} is the share of (service, metric) pairs never "
            "reported and must lie in [0, 1); 0 turns it off"
        )
    if isinstance(uninstrumented_roots, bool):
        uninstrumented_roots = float(uninstrumented_roots)
    uninstrumented_roots = as_float(uninstrumented_roots, "uninstrumented_roots")
    if not 0.0 <= uninstrumented_roots <= 1.0:
        raise ValueError(
            f"uninstrumented_roots={uninstrumented_roots} is the probability that an incident's root reports "
            "nothing and must lie in [0, 1] (True = 1, False = 0)"
        )
    load_surges = as_int(load_surges, "load_surges")
    if load_surges < 0:
        raise ValueError(f"load_surges is a number of traffic bursts and must be >= 0, got {load_surges}")
    srg_lo, srg_hi = pair(surge_duration, "surge_duration", int)
    if srg_lo < 1:
        raise ValueError(f"surge_duration must be at least 1 step, got {surge_duration!r}")
    if load_surges and srg_hi > steps:
        raise ValueError(
            f"surge_duration={surge_duration!r} allows surges longer than the series (steps={steps}): "
            f"pass surge_duration with a high end <= {steps}, or load_surges=0"
        )
    hgt_lo, hgt_hi = pair(surge_height, "surge_height", float)
    if not 1.0 <= hgt_lo <= hgt_hi <= MAX_SURGE_HEIGHT:
        raise ValueError(
            f"surge_height={surge_height!r} is the (low, high) range of peak traffic multipliers and must "
            f"satisfy 1 <= low <= high <= {MAX_SURGE_HEIGHT:g}"
        )
    casc_kw = dict(hop_delay=hop_delay, hop_decay=hop_decay, severity_threshold=severity_threshold)

    if incidents is not None:
        if num_incidents is not None:
            raise ValueError("pass either num_incidents (random incidents) or incidents=, not both")
        explicit = sorted(incidents, key=lambda i: i.start)
        prev_end, prev = 0, None
        for inc in explicit:
            if not isinstance(inc, Incident):
                raise TypeError(f"incidents must hold Incident objects, got {type(inc).__name__}")
            if inc.root >= n:
                raise ValueError(f"{inc} has root {inc.root}, but the graph has {n} services (0..{n - 1})")
            if inc.start + inc.duration > steps:
                raise ValueError(
                    f"{inc} runs past the end of the series (steps={steps}): start it by step "
                    f"{steps - inc.duration} or raise steps"
                )
            if inc.severity < severity_threshold:
                raise ValueError(
                    f"{inc} has severity below severity_threshold={severity_threshold} and would hit "
                    "nothing: raise its severity"
                )
            if prev is not None and inc.start < prev_end:
                raise ValueError(
                    f"incidents overlap: {inc} starts at {inc.start}, before the cascade of {prev} "
                    f"ends at step {prev_end}; move it to start at {prev_end} or later"
                )
            prev, prev_end = inc, footprint_end(cascade(graph, inc, **casc_kw), inc)
        num_incidents = len(explicit)
    else:
        num_incidents = 6 if num_incidents is None else as_int(num_incidents, "num_incidents")
        if num_incidents < 0:
            raise ValueError(f"num_incidents must be >= 0, got {num_incidents}")
        # Worst case over roots at top severity, so whether a setting fits never depends on luck:
        # the farthest any cascade reaches is the longest shortest caller path, capped where the
        # severity falls below the threshold.
        max_hop = graph.max_upstream_hops(limit=hop_limit(sev_hi, hop_decay, severity_threshold, n))
        worst = dur_hi + max_hop * hop_delay
        need = num_incidents * worst + max(num_incidents - 1, 0) * min_gap
        if need > steps:
            raise ValueError(
                f"num_incidents={num_incidents} need up to {need} steps (each up to {worst}: duration "
                f"up to {dur_hi} + {max_hop} hops x hop_delay={hop_delay}, and min_gap={min_gap} "
                f"between), but steps={steps}: raise steps, or lower num_incidents, duration or hop_delay"
            )
    if drift is not None and drift.new_failure_mode is not None:
        if incidents is None and drift.new_failure_mode in kinds:
            raise ValueError(
                f"drift.new_failure_mode={drift.new_failure_mode!r} is already in incident_kinds={kinds}, "
                "so it is not new: pick a kind outside incident_kinds"
            )

    # ---- all random draws, in a fixed order that no drift setting changes
    rng = np.random.default_rng(seed)
    cpu_base = rng.uniform(10.0, 35.0, n)
    mem_base = rng.uniform(30.0, 60.0, n)
    own_latency = rng.uniform(5.0, 40.0, n)
    err_base = rng.uniform(0.001, 0.01, n)
    entry_share = rng.uniform(0.5, 1.5, n)
    call_weight = rng.uniform(0.5, 1.5, graph.num_edges)
    ar_eps = rng.standard_normal(steps)
    jitter = rng.standard_normal((steps, n))
    z = rng.standard_normal((steps, n, len(METRICS)))
    if incidents is None:
        kind_idx = rng.integers(0, len(kinds), num_incidents)
        roots = rng.integers(0, n, num_incidents)
        sevs = rng.uniform(sev_lo, sev_hi, num_incidents)
        durs = rng.integers(dur_lo, dur_hi + 1, num_incidents)
        drawn = [
            Incident(int(r), 0, int(d), kinds[int(k)], float(s))
            for r, d, k, s in zip(roots, durs, kind_idx, sevs, strict=True)
        ]
        lengths = [footprint_end(cascade(graph, inc, **casc_kw), inc) for inc in drawn]
        slack = steps - sum(lengths) - max(num_incidents - 1, 0) * min_gap
        offsets = np.sort(rng.integers(0, slack + 1, num_incidents))
        explicit, t0 = [], 0
        for inc, length, off in zip(drawn, lengths, offsets, strict=True):
            explicit.append(Incident(inc.root, t0 + int(off), inc.duration, inc.kind, inc.severity))
            t0 += length + min_gap

    final_incidents = apply_drift_kinds(explicit, drift)
    if drift is not None and drift.new_failure_mode is not None:
        before = {i.kind for i in final_incidents if i.start < drift.start}
        if drift.new_failure_mode in before:
            raise ValueError(
                f"drift.new_failure_mode={drift.new_failure_mode!r} already occurs before "
                f"drift.start={drift.start}, so it is not new: pick another kind"
            )
        if not any(i.start >= drift.start for i in final_incidents):
            raise ValueError(
                f"drift.new_failure_mode={drift.new_failure_mode!r} never appears: no incident starts "
                f"at or after drift.start={drift.start}; lower drift.start or raise num_incidents"
            )
    # Regime draws, each from its own stream (see _STREAM_*): off means not drawn at all.
    amp_on = amp_hi > 1.0
    gain = _stream(seed, _STREAM_AMPLIFICATION).uniform(amp_lo, amp_hi, n) if amp_on else np.ones(n)
    spread = np.ones(n)
    if noise_spread > 0:
        spread = np.exp(noise_spread * _stream(seed, _STREAM_NOISE_SPREAD).uniform(-1.0, 1.0, n))
    surges = _draw_surges(seed, steps, load_surges, (srg_lo, srg_hi), (hgt_lo, hgt_hi)) if load_surges else []

    # ---- traffic: daily cycle x AR(1) wobble at the entry, then along the dependencies
    t = np.arange(steps)
    daily = 1.0 + seasonality * np.sin(2 * np.pi * t * step_minutes / MINUTES_PER_DAY - np.pi / 2)
    ar = np.empty(steps)
    ar[0] = noise * ar_eps[0] / math.sqrt(1 - _AR_COEF**2)  # start in the stationary state
    for k in range(1, steps):
        ar[k] = _AR_COEF * ar[k - 1] + noise * ar_eps[k]
    entry = daily * np.exp(ar)
    if drift is not None:
        entry[drift.start :] *= drift.traffic_scale
    for surge in surges:
        entry[surge.start : surge.start + surge.duration] *= surge.factors()

    is_entry = np.bincount(graph.edge_index[1], minlength=n) == 0
    in_edges, caller_of = graph._in_edges, graph.edge_index[0]
    nominal = np.zeros(n)
    for v in order:
        if is_entry[v]:
            nominal[v] = _ENTRY_RPM * entry_share[v]
        for e in in_edges[v]:
            nominal[v] += call_weight[e] * nominal[caller_of[e]]
    if not nominal.max() <= _MAX_NOMINAL_LOAD:
        v_big = int(np.argmax(nominal))
        raise ValueError(
            f"service {graph.names[v_big]!r} would receive {nominal[v_big]:.3g} requests per minute: load adds up "
            f"over every call path, and this graph ({n} services, {graph.num_edges} dependencies) has too many; "
            "use a sparser graph, e.g. random_service_dag(n, edge_prob=2 / n)"
        )
    # One row per service (contiguous in time), so each edge adds one contiguous vector.
    rows = np.zeros((n, steps))
    for v in order:
        if is_entry[v]:
            rows[v] = _ENTRY_RPM * entry_share[v] * entry
        for e in in_edges[v]:
            rows[v] += call_weight[e] * rows[caller_of[e]]
    load = np.ascontiguousarray(rows.T)  # [T, N], laid out like the noise it meets next
    del rows
    jitter *= 0.5 * noise  # in place from here on: fresh [T, N] arrays cost more than the arithmetic
    load *= np.exp(jitter, out=jitter)
    del jitter
    rel = load / nominal

    # ---- baseline metrics
    lat_nom = np.zeros(n)
    callees = graph._callees
    for v in reversed(order):
        below = callees[v]
        lat_nom[v] = own_latency[v] + (lat_nom[below].max() if below.size else 0.0)
    noise_v = noise * spread  # [N]; equal to noise everywhere when noise_spread is 0

    # The formulas of the package docstring, evaluated in place (products commute exactly, so
    # the values are those of the plain expressions, bit for bit).
    scratch = np.empty((steps, n))
    cpu = cpu_base * rel
    cpu *= _lognormal(noise_v, z[..., 0], scratch)
    mem = rel - 1.0
    mem *= 5.0
    mem += mem_base
    mem *= _lognormal(0.3 * noise_v, z[..., 1], scratch)
    lat = rel**2
    lat *= 0.3
    lat += 0.7
    lat *= lat_nom
    lat *= _lognormal(noise_v, z[..., 2], scratch)
    err = rel**2
    err *= 0.5
    err += 0.5
    err *= err_base
    err *= _lognormal(noise_v, z[..., 3], scratch)
    del z, rel, scratch

    # ---- incidents and their cascades
    labels = np.zeros((steps, n), dtype=np.int8)
    root_cause = np.full(steps, -1, dtype=np.int64)
    cascades = []
    for inc in final_incidents:
        d_cpu, d_mem, d_lat, d_err = SIGNATURES[inc.kind]
        if inc.kind == "memory_leak":
            shape = np.arange(1, inc.duration + 1) / inc.duration
        else:
            shape = np.ones(inc.duration)
        cas = cascade(graph, inc, **casc_kw, amplification=gain if amp_on else None)
        cascades.append(cas)
        for v, h, onset, sev in cas:
            stop = min(onset + inc.duration, steps)
            if onset >= stop:
                continue
            s = sev * shape[: stop - onset]
            if h == 0:
                cpu[onset:stop, v] += d_cpu * s
                mem[onset:stop, v] += d_mem * s
            lat[onset:stop, v] *= 1.0 + d_lat * s
            err[onset:stop, v] += d_err * s
            labels[onset:stop, v] = 1
        root_cause[inc.start : min(footprint_end(cas, inc), steps)] = inc.root

    # Written straight into float32 (same rounding as astype), without a float64 [T, N, F] copy.
    x = np.empty((steps, n, len(METRICS)), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below
        x[..., 0] = np.clip(cpu, 0.0, 100.0, out=cpu)
        x[..., 1] = np.clip(mem, 0.0, 100.0, out=mem)
        x[..., 2] = lat
        x[..., 3] = np.clip(err, 0.0, 1.0, out=err)
        load32 = load.astype(np.float32, order="C")
    del cpu, mem, lat, err, load
    bad_x, bad_load = ~np.isfinite(x), ~np.isfinite(load32)
    if bad_x.any() or bad_load.any():
        # Settings that each pass their own check can still combine into values beyond float32
        # (e.g. a huge drift.traffic_scale: latency grows with the square of the load).
        if bad_x.any():
            t_bad, v_bad, f_bad = (int(i) for i in np.argwhere(bad_x)[0])
            what = METRICS[f_bad]
        else:
            t_bad, v_bad = (int(i) for i in np.argwhere(bad_load)[0])
            what = "load"
        raise ValueError(
            f"these settings drive {what} of service {graph.names[v_bad]!r} at step {t_bad} beyond float32's range "
            f"(noise={noise}, seasonality={seasonality}, drift={drift}, load_surges={load_surges}); lower noise, "
            "drift.traffic_scale or surge_height"
        )

    observe = unobserved_services != 0 or missing_metric_fraction > 0 or uninstrumented_roots > 0
    mask = None
    if observe:
        mask = _observation_mask(
            x.shape,
            graph,
            seed,
            unobserved_services,
            missing_metric_fraction,
            uninstrumented_roots,
            final_incidents,
            cascades,
        )
        x[~mask] = np.nan  # missing, not zero: a zero would read as an idle service
    config = SimConfig(
        steps=steps,
        seed=seed,
        step_minutes=step_minutes,
        num_incidents=num_incidents,
        incident_kinds=kinds,
        duration=(dur_lo, dur_hi),
        severity=(sev_lo, sev_hi),
        hop_delay=hop_delay,
        hop_decay=hop_decay,
        severity_threshold=severity_threshold,
        seasonality=seasonality,
        noise=noise,
        min_gap=min_gap,
        explicit_incidents=incidents is not None,
        drift=drift,
        regime=regime,
        amplification=(amp_lo, amp_hi),
        noise_spread=noise_spread,
        unobserved_services=unobserved_services,
        missing_metric_fraction=missing_metric_fraction,
        uninstrumented_roots=uninstrumented_roots,
        load_surges=load_surges,
        surge_duration=(srg_lo, srg_hi),
        surge_height=(hgt_lo, hgt_hi),
    )
    return Telemetry(
        x=x,
        labels=labels,
        root_cause=root_cause,
        load=load32,
        incidents=final_incidents,
        graph=graph,
        config=config,
        metric_names=METRICS,
        step_minutes=step_minutes,
        mask=mask,
        surges=tuple(surges),
        amplification=gain,
        noise_scale=spread,
    )
