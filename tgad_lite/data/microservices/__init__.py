"""Seeded synthetic microservice telemetry with injected, cascading incidents.

The data behind the temporal-graph anomaly-detection notebooks: a service dependency graph and,
for every service and time step, four metrics (``METRICS``) plus ground-truth labels. NumPy only:
the data layer knows nothing about models. Everything random comes from
``np.random.default_rng(seed)`` (the regime options below from their own streams
``default_rng([seed, k])``), so the same arguments give the same arrays, bit for bit.

Modules: ``graph`` (``ServiceGraph``, ``shop_graph``, ``random_service_dag``), ``incidents``
(``Incident``, ``cascade``, ``LoadSurge``, ``DriftConfig``), ``telemetry`` (``Telemetry``,
``SimConfig``, ``Telemetry.steps``), ``regimes`` (the easy/hard presets), ``simulator``
(``simulate``). Everything is importable from this package.
``windows`` (``make_windows``, ``time_split``, ``ServiceWindows``, ``fit_service_normaliser``)
cuts a series into model inputs ``[B, S, N, F]`` and leakage-free train/val/test spans.

Dependency graph
----------------
``ServiceGraph.edge_index`` is ``[2, E]``: row 0 is the caller, row 1 the callee (the caller
depends on the callee). Requests enter at services nobody calls (the entry services).

Telemetry model (``simulate``)
------------------------------
With ``T`` steps of ``step_minutes`` each and ``N`` services (``steps_per_day = 1440 / step_minutes``):

1. **Traffic.** Entry traffic is ``1000 rpm * share[v] * daily(t) * exp(ar(t))``: a daily sine
   (``1 + seasonality * sin(2*pi*t/steps_per_day - pi/2)``, quietest at midnight, busiest at
   noon) times a slow AR(1) wobble (coefficient 0.9, innovation std ``noise``). Load then flows
   along the edges in topological order: ``load[v] = external[v] + sum_u w[u, v] * load[u]`` over
   the callers ``u`` of ``v`` (``w`` = calls per request, drawn in [0.5, 1.5]); so a callee's
   traffic follows its callers' and every metric is correlated across the graph. A small
   per-service jitter (std ``noise / 2``, multiplicative) is added last. ``rel = load / nominal``
   is the load relative to the service's load at mean traffic (``rel`` is about 1 on average).
2. **Metrics** (per-service baselines drawn once per seed; ``z`` standard normal noise):

   - ``cpu`` (%):          ``cpu_base * rel * exp(noise * z)``, ``cpu_base`` in [10, 35]
   - ``memory`` (%):       ``(mem_base + 5 * (rel - 1)) * exp(0.3 * noise * z)``, ``mem_base`` in [30, 60]
   - ``latency_ms`` (ms):  ``lat_nom * (0.7 + 0.3 * rel**2) * exp(noise * z)`` where
     ``lat_nom = own + max(lat_nom of callees)`` (own time in [5, 40] ms; calls fan out in
     parallel, so a caller waits for its slowest dependency)
   - ``error_rate`` (0..1): ``err_base * (0.5 + 0.5 * rel**2) * exp(noise * z)``, ``err_base`` in [0.001, 0.01]

3. **Incidents.** ``Incident(root, start, duration, kind, severity)`` hits ``root`` during
   ``[start, start + duration)``. It propagates UPSTREAM, to the callers of the root, their
   callers, and so on: a service ``h`` hops away (shortest caller path) is hit during
   ``[start + h * hop_delay, start + h * hop_delay + duration)`` with severity
   ``severity * hop_decay**h``; the cascade stops at the first hop where that falls below
   ``severity_threshold``. Services that do not (transitively) call the root are never touched.
   At severity ``s`` (and shape 1) a kind does, per ``SIGNATURES``:

   ==================  =========  ============  ===============  ===================
   kind                cpu (pts)  memory (pts)  latency (x)      error rate (+)
   ==================  =========  ============  ===============  ===================
   latency_spike       0          0             1 + 3.0 s        0.02 s
   error_burst         0          0             1 + 0.5 s        0.30 s
   cpu_saturation      +50 s      0             1 + 1.5 s        0.03 s
   memory_leak         +5 s       +45 s         1 + 1.0 s        0.05 s
   dependency_timeout  -10 s      0             1 + 6.0 s        0.20 s
   ==================  =========  ============  ===============  ===================

   The root gets the whole row; callers get only the latency and error columns (what a caller
   sees of a sick dependency: slow or failed calls, not the dependency's CPU or memory).
   ``memory_leak`` ramps its shape linearly from ``1/duration`` to 1; every other kind is a step.
   Effects are applied on top of the noisy baseline; then cpu and memory are clipped to
   [0, 100] and the error rate to [0, 1].

   ``labels[t, v] = 1`` while ``v`` is hit (root or propagated). An incident is *active* from
   its ``start`` to the end of its last hit window (its footprint); ``root_cause[t]`` is the
   root of the active incident, -1 when none. Footprints never overlap, so at most one incident
   is active at a time. Random incidents (``num_incidents``) draw root (uniform over services),
   kind (uniform over ``incident_kinds``), severity (uniform in ``severity``) and duration
   (uniform integer in ``duration``) and are placed at random, in order, with at least
   ``min_gap`` quiet steps between footprints, entirely inside the series. Explicit
   ``incidents=`` must not overlap either; a cascade running past the last step is cut there.

4. **Drift** (``DriftConfig``), for drift experiments. From step ``drift.start`` on:

   - ``traffic_scale``: entry traffic (hence every service's load, since all load flows from
     the entry) is multiplied by ``traffic_scale``. So the load-driven part of cpu scales by
     it exactly, latency and error rate rise with the square of the load, memory by 5 points
     per unit of extra load.
   - ``new_failure_mode``: a kind the series never had before ``start`` replaces the kind of
     the first incident starting at or after ``start`` and then a ``new_failure_share``
     fraction of the later ones, spread evenly (share 1: all of them). Roots, times,
     severities and the cascade are unchanged; only what the incident does to the metrics.

   All random draws are made before drift is applied and in the same order, so everything
   before ``drift.start`` is identical to the run without drift (same seed). Only an incident
   that started earlier and is still running at ``start`` sees the new traffic level.

5. **Regime options** (``regimes``): each makes one shortcut of the simple root-cause rules
   fail, the way it fails on real systems. All are off in ``regime="easy"`` (the default, the
   generator as described above) and on in ``regime="hard"``; an explicit argument overrides the
   preset. Each draws from its own random stream, so turning one on changes nothing else.

   - ``hop_delay=0``, *simultaneous onset*: every hit service starts at the root's ``start``.
     Why: synchronous calls pass a slowdown up the chain within seconds, far below a
     1-5 minute scrape interval, so "the service whose symptoms start first is the root" ties.
   - ``amplification=(lo, hi)``, *retries and fan-out*: every service draws a factor
     ``a[v]`` in ``[lo, hi]`` (``Telemetry.amplification``); a caller at hop ``h`` shows the
     latency and error effects at severity ``severity * hop_decay**h * A[v]``, with
     ``A[v] = a[v] * max(A[w])`` over its callees ``w`` one hop closer (``A[root] = 1``), so
     callers' symptoms can exceed the root's. Which services are hit is unchanged. Why: a
     caller that retries a slow or failing call, or fans a request out to several replicas and
     waits for all, pays the callee's added latency (and its failures) several times over, and
     retries at every layer compound ("retry storms"): the loudest service is often not the
     broken one.
   - ``noise_spread=s``, *heterogeneous noise*: service ``v`` gets noise
     ``noise * exp(s * u[v])``, ``u[v]`` uniform in [-1, 1] (``Telemetry.noise_scale``), in its
     four metrics. Why: services differ in how steady their metrics are (batch-driven jobs, GC
     pauses, noisy shared hosts vs. cached, idle ones), so one threshold on raw deviations
     fires on the noisiest service, not the sick one.
   - *Partial observability*: ``unobserved_services`` (a count, a fraction in [0, 1), or a list
     of indices or names) report nothing at all; then ``missing_metric_fraction`` of the other
     (service, metric) pairs are never reported. Fixed for the whole series. ``Telemetry.mask``
     (``[T, N, F]`` bool, True = observed) says which; ``x`` holds NaN there, never a zero
     (a zero reads as an idle service). ``labels`` and ``load`` are ground truth and are not
     masked. Why: not every service is instrumented (no agent on a legacy box, a third-party
     API), and exporters differ (one service has no error-rate metric, a sidecar no memory).
   - ``uninstrumented_roots=p`` (a probability; True = 1), *a root without telemetry*: each
     service that is the root of an incident is, with probability ``p`` (one draw per
     service), a service that reports nothing (its whole series is masked) while the ground
     truth (``root``, labels) is unchanged; only roots whose cascade reaches at least one
     caller qualify, so someone sees the incident. Why: the
     component that fails is often the one nobody instruments (a managed database, DNS, a
     vendor API): only its callers show symptoms, and the root must be inferred from the graph.
   - ``load_surges=k``, *traffic bursts that are not incidents*: ``k`` ``LoadSurge`` s
     (``Telemetry.surges``), placed uniformly at random (they may overlap incidents and each
     other), multiply entry traffic, and so every service's load, by up to a height drawn in
     ``surge_height``, for a duration drawn in ``surge_duration`` steps (rising over the first
     quarter, falling over the last). CPU rises with the load, latency and error rate with its
     square; labels stay 0. Why: flash sales, marketing pushes, batch jobs and crawlers raise
     traffic everywhere at once, and a rule that flags any large deviation raises an alarm.

Streaming
---------
``Telemetry.steps(start=0, stop=None)`` replays a series one step at a time as
``TelemetryStep(t, x [N, F], mask [N, F], labels [N], root_cause, load [N])`` with read-only
views, the interface a live monitor consumes. The series is simulated up front: ``simulate``
makes N=1000 services x 10,000 steps in seconds, so chunked generation is not needed.
"""

from __future__ import annotations

from tgad_lite.data.microservices.graph import (
    SHOP_DEPENDENCIES,
    SHOP_SERVICES,
    ServiceGraph,
    random_service_dag,
    shop_graph,
)
from tgad_lite.data.microservices.incidents import (
    DEFAULT_INCIDENT_KINDS,
    INCIDENT_KINDS,
    SIGNATURES,
    DriftConfig,
    Incident,
    LoadSurge,
    cascade,
)
from tgad_lite.data.microservices.regimes import REGIME_NAMES, REGIMES, regime_config
from tgad_lite.data.microservices.simulator import MAX_NOISE, simulate
from tgad_lite.data.microservices.telemetry import METRICS, MINUTES_PER_DAY, SimConfig, Telemetry, TelemetryStep
from tgad_lite.data.microservices.windows import (
    ServiceNormaliser,
    ServiceWindows,
    TimeSplit,
    fit_service_normaliser,
    make_windows,
    robust_center_scale,
    time_split,
)

__all__ = [
    "DEFAULT_INCIDENT_KINDS",
    "INCIDENT_KINDS",
    "MAX_NOISE",
    "METRICS",
    "MINUTES_PER_DAY",
    "REGIMES",
    "REGIME_NAMES",
    "SHOP_DEPENDENCIES",
    "SHOP_SERVICES",
    "SIGNATURES",
    "DriftConfig",
    "Incident",
    "LoadSurge",
    "ServiceGraph",
    "ServiceNormaliser",
    "ServiceWindows",
    "SimConfig",
    "Telemetry",
    "TelemetryStep",
    "TimeSplit",
    "cascade",
    "fit_service_normaliser",
    "make_windows",
    "random_service_dag",
    "regime_config",
    "robust_center_scale",
    "shop_graph",
    "simulate",
    "time_split",
]
