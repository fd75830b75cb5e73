"""Seeded synthetic microservice telemetry with injected, cascading incidents.

The data behind the temporal-graph anomaly-detection notebooks: a service dependency graph and,
for every service and time step, four metrics (``METRICS``) plus ground-truth labels. NumPy only:
the data layer knows nothing about models. Everything random comes from one
``np.random.default_rng(seed)``, so the same arguments give the same arrays, bit for bit.

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
   At severity ``s`` (and shape 1) a kind does, per ``_SIGNATURES``:

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
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

METRICS: tuple[str, ...] = ("cpu", "memory", "latency_ms", "error_rate")
INCIDENT_KINDS: tuple[str, ...] = (
    "latency_spike",
    "error_burst",
    "cpu_saturation",
    "memory_leak",
    "dependency_timeout",
)
# The training-time kinds; memory_leak and dependency_timeout are left for drift experiments.
DEFAULT_INCIDENT_KINDS: tuple[str, ...] = ("latency_spike", "error_burst", "cpu_saturation")
MINUTES_PER_DAY = 24 * 60

# kind -> (cpu points, memory points, latency factor, error-rate points) at severity 1.
_SIGNATURES: dict[str, tuple[float, float, float, float]] = {
    "latency_spike": (0.0, 0.0, 3.0, 0.02),
    "error_burst": (0.0, 0.0, 0.5, 0.30),
    "cpu_saturation": (50.0, 0.0, 1.5, 0.03),
    "memory_leak": (5.0, 45.0, 1.0, 0.05),
    "dependency_timeout": (-10.0, 0.0, 6.0, 0.20),
}
_ENTRY_RPM = 1000.0
_AR_COEF = 0.9
# noise is a log-scale standard deviation: at 1 a metric already varies by a factor e per
# sigma. Far above it exp() overflows float32 (noise=60 gave inf), so larger values are refused.
MAX_NOISE = 1.0

SHOP_SERVICES: tuple[str, ...] = (
    "Frontend",
    "Auth",
    "Cart",
    "Order",
    "Payment",
    "Inventory",
    "Fraud",
    "Notification",
)
# (caller, callee): the caller depends on the callee.
SHOP_DEPENDENCIES: tuple[tuple[str, str], ...] = (
    ("Frontend", "Auth"),  # every page checks the session
    ("Frontend", "Cart"),  # basket view
    ("Frontend", "Order"),  # checkout
    ("Cart", "Inventory"),  # stock shown next to basket items
    ("Order", "Auth"),  # re-validates the user before charging
    ("Order", "Payment"),  # charge the card
    ("Order", "Inventory"),  # reserve the items
    ("Order", "Notification"),  # order confirmation mail
    ("Payment", "Fraud"),  # score the transaction before charging
    ("Payment", "Notification"),  # payment receipt
)


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    return int(value)


def _as_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


# --------------------------------------------------------------------------- dependency graph


@dataclass(frozen=True, eq=False)
class ServiceGraph:
    """Services and their call dependencies.

    ``edge_index`` is ``[2, E]`` int64: row 0 the caller, row 1 the callee (caller depends on
    callee). It is stored read-only. Cycles are allowed here (``is_acyclic`` says), but
    ``simulate`` needs a DAG.
    """

    names: list[str]
    edge_index: np.ndarray

    def __post_init__(self) -> None:
        names = [str(n) for n in self.names]
        if not names:
            raise ValueError("a ServiceGraph needs at least one service name")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"service names must be unique; repeated: {dupes}")
        ei = np.asarray(self.edge_index)
        if ei.size == 0:
            ei = np.zeros((2, 0), dtype=np.int64)
        if ei.ndim != 2 or ei.shape[0] != 2:
            raise ValueError(
                f"edge_index must have shape [2, E] (row 0 callers, row 1 callees), got "
                f"{ei.shape}; transpose an [E, 2] edge list with .T"
            )
        if not np.issubdtype(ei.dtype, np.integer):
            raise TypeError(f"edge_index must hold integer service indices, got dtype {ei.dtype}")
        ei = ei.astype(np.int64, copy=True)
        n = len(names)
        bad = (ei < 0) | (ei >= n)
        if bad.any():
            raise ValueError(
                f"edge_index refers to service {int(ei[bad][0])}, but there are only {n} "
                f"services (valid indices 0..{n - 1})"
            )
        loops = ei[0] == ei[1]
        if loops.any():
            raise ValueError(f"service {names[int(ei[0, loops][0])]!r} calls itself; drop self-loops")
        if np.unique(ei, axis=1).shape[1] != ei.shape[1]:
            raise ValueError("edge_index has a repeated (caller, callee) pair; list each dependency once")
        ei.flags.writeable = False
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "edge_index", ei)

    @property
    def num_nodes(self) -> int:
        return len(self.names)

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def _check(self, i: int) -> int:
        i = _as_int(i, "service index")
        if not 0 <= i < self.num_nodes:
            raise IndexError(f"service index {i} out of range 0..{self.num_nodes - 1}")
        return i

    def index(self, name: str) -> int:
        """Index of the service called ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no service named {name!r}; services are {self.names}") from None

    def callers_of(self, i: int) -> np.ndarray:
        """Sorted ``[k]`` int64 indices of the services that call service ``i``."""
        i = self._check(i)
        return np.sort(self.edge_index[0, self.edge_index[1] == i])

    def callees_of(self, i: int) -> np.ndarray:
        """Sorted ``[k]`` int64 indices of the services that service ``i`` calls."""
        i = self._check(i)
        return np.sort(self.edge_index[1, self.edge_index[0] == i])

    def topological_order(self) -> list[int]:
        """Service indices with every caller before its callees; raises ``ValueError`` on a cycle."""
        indeg = np.bincount(self.edge_index[1], minlength=self.num_nodes)
        callees = [self.callees_of(i) for i in range(self.num_nodes)]
        ready = deque(int(i) for i in np.flatnonzero(indeg == 0))
        order: list[int] = []
        while ready:
            u = ready.popleft()
            order.append(u)
            for v in callees[u]:
                indeg[v] -= 1
                if indeg[v] == 0:
                    ready.append(int(v))
        if len(order) < self.num_nodes:
            stuck = [self.names[i] for i in range(self.num_nodes) if indeg[i] > 0]
            raise ValueError(
                f"the service graph has a dependency cycle through {stuck}; it must be a DAG "
                "(caller -> callee): remove one dependency on each cycle"
            )
        return order

    def is_acyclic(self) -> bool:
        try:
            self.topological_order()
        except ValueError:
            return False
        return True

    def upstream_hops(self, i: int) -> dict[int, int]:
        """``{service: hops}`` for ``i`` (0 hops) and every service that transitively calls it.

        Hops are the length of the shortest caller path, the distance an incident at ``i``
        travels to reach that service.
        """
        i = self._check(i)
        hops = {i: 0}
        queue = deque([i])
        while queue:
            v = queue.popleft()
            for u in self.callers_of(v):
                u = int(u)
                if u not in hops:
                    hops[u] = hops[v] + 1
                    queue.append(u)
        return hops

    def to_igraph(self) -> Any:
        """A directed ``igraph.Graph`` (caller -> callee) with a ``name`` vertex attribute."""
        import igraph

        g = igraph.Graph(n=self.num_nodes, edges=self.edge_index.T.tolist(), directed=True)
        g.vs["name"] = list(self.names)
        return g


def shop_graph() -> ServiceGraph:
    """The classic 8-service online shop (``SHOP_SERVICES``, ``SHOP_DEPENDENCIES``).

    Frontend is the only entry service; Auth, Inventory, Fraud and Notification are leaves.
    Fraud sits three hops below Frontend (Fraud <- Payment <- Order <- Frontend).
    """
    names = list(SHOP_SERVICES)
    edges = [(names.index(a), names.index(b)) for a, b in SHOP_DEPENDENCIES]
    return ServiceGraph(names, np.array(edges, dtype=np.int64).T)


def random_service_dag(num_services: int, *, edge_prob: float = 0.1, seed: int) -> ServiceGraph:
    """A random acyclic service graph; every service is reachable from the entry service 0.

    Service ``j > 0`` gets one caller drawn uniformly from ``0..j-1`` (so all are reachable
    from 0), and each further pair ``i < j`` becomes a dependency ``i -> j`` with probability
    ``edge_prob``. Edges only go from lower to higher index, so the graph is acyclic and the
    indices are a topological order. Names are ``svc-00``, ``svc-01``, ...
    """
    num_services = _as_int(num_services, "num_services")
    if num_services < 1:
        raise ValueError(f"num_services must be >= 1, got {num_services}")
    edge_prob = _as_float(edge_prob, "edge_prob")
    if not 0.0 <= edge_prob <= 1.0:
        raise ValueError(f"edge_prob is a probability and must lie in [0, 1], got {edge_prob}")
    seed = _as_int(seed, "seed")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    n = num_services
    adj = np.zeros((n, n), dtype=bool)
    if n > 1:
        children = np.arange(1, n)
        parents = np.floor(rng.random(n - 1) * children).astype(np.int64)
        adj[parents, children] = True
        iu, ju = np.triu_indices(n, k=1)
        extra = rng.random(iu.size) < edge_prob
        adj[iu[extra], ju[extra]] = True
    callers, callees = np.nonzero(adj)  # row-major: sorted by caller, then callee
    width = max(2, len(str(n - 1)))
    names = [f"svc-{i:0{width}d}" for i in range(n)]
    return ServiceGraph(names, np.stack([callers, callees]).astype(np.int64))


# --------------------------------------------------------------------------- incidents, drift


@dataclass(frozen=True)
class Incident:
    """A failure at service ``root`` during ``[start, start + duration)`` (steps).

    ``severity`` scales the kind's effect (1 = the full ``_SIGNATURES`` row); see the module
    docstring for how it cascades to callers.
    """

    root: int
    start: int
    duration: int
    kind: str
    severity: float

    def __post_init__(self) -> None:
        root = _as_int(self.root, "Incident.root")
        start = _as_int(self.start, "Incident.start")
        duration = _as_int(self.duration, "Incident.duration")
        severity = _as_float(self.severity, "Incident.severity")
        if root < 0:
            raise ValueError(f"Incident.root must be a service index >= 0, got {root}")
        if start < 0:
            raise ValueError(f"Incident.start must be >= 0, got {start}")
        if duration < 1:
            raise ValueError(f"Incident.duration must be >= 1 step, got {duration}")
        if severity <= 0:
            raise ValueError(f"Incident.severity must be > 0, got {severity}")
        if self.kind not in INCIDENT_KINDS:
            raise ValueError(f"unknown incident kind {self.kind!r}; choose one of {INCIDENT_KINDS}")
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "duration", duration)
        object.__setattr__(self, "severity", severity)


@dataclass(frozen=True)
class DriftConfig:
    """What changes from step ``start`` on (see the module docstring, "Drift")."""

    start: int
    traffic_scale: float = 1.0
    new_failure_mode: str | None = None
    new_failure_share: float = 0.5

    def __post_init__(self) -> None:
        start = _as_int(self.start, "DriftConfig.start")
        if start < 0:
            raise ValueError(f"DriftConfig.start must be a step >= 0, got {start}")
        scale = _as_float(self.traffic_scale, "DriftConfig.traffic_scale")
        if scale <= 0:
            raise ValueError(f"DriftConfig.traffic_scale multiplies traffic and must be > 0, got {scale}")
        share = _as_float(self.new_failure_share, "DriftConfig.new_failure_share")
        if not 0.0 < share <= 1.0:
            raise ValueError(f"DriftConfig.new_failure_share must lie in (0, 1], got {share}")
        if self.new_failure_mode is not None and self.new_failure_mode not in INCIDENT_KINDS:
            raise ValueError(
                f"unknown DriftConfig.new_failure_mode {self.new_failure_mode!r}; choose one of {INCIDENT_KINDS}"
            )
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "traffic_scale", scale)
        object.__setattr__(self, "new_failure_share", share)


def cascade(
    graph: ServiceGraph,
    incident: Incident,
    *,
    hop_delay: int = 1,
    hop_decay: float = 0.6,
    severity_threshold: float = 0.15,
) -> list[tuple[int, int, int, float]]:
    """The services an incident hits: ``[(service, hop, onset_step, severity)]``, root first.

    ``onset_step = start + hop * hop_delay``; ``severity = incident.severity * hop_decay**hop``;
    only hops whose severity is ``>= severity_threshold`` are kept (the root always is, as
    ``simulate`` requires its severity to reach the threshold).
    """
    hops = graph.upstream_hops(incident.root)
    out = []
    for v, h in sorted(hops.items(), key=lambda kv: (kv[1], kv[0])):
        sev = incident.severity * hop_decay**h
        if h > 0 and sev < severity_threshold:
            continue
        out.append((v, h, incident.start + h * hop_delay, sev))
    return out


# --------------------------------------------------------------------------- telemetry


@dataclass(frozen=True)
class SimConfig:
    """The settings a ``Telemetry`` was generated with (``to_dict`` for run metadata)."""

    steps: int
    seed: int
    step_minutes: int
    num_incidents: int
    incident_kinds: tuple[str, ...]
    duration: tuple[int, int]
    severity: tuple[float, float]
    hop_delay: int
    hop_decay: float
    severity_threshold: float
    seasonality: float
    noise: float
    min_gap: int
    explicit_incidents: bool
    drift: DriftConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Telemetry:
    """A simulated series. ``T`` steps, ``N`` services, ``F = len(METRICS)`` metrics.

    - ``x``: ``[T, N, F]`` float32, metrics in physical units (cpu %, memory %, latency ms,
      error rate 0..1), in ``metric_names`` order.
    - ``labels``: ``[T, N]`` int8, 1 where a service is hit by an incident (root or cascade).
    - ``root_cause``: ``[T]`` int64, root service of the active incident, -1 when none.
    - ``load``: ``[T, N]`` float32, requests per minute reaching each service.
    """

    x: np.ndarray
    labels: np.ndarray
    root_cause: np.ndarray
    load: np.ndarray
    incidents: list[Incident]
    graph: ServiceGraph
    config: SimConfig
    metric_names: tuple[str, ...] = METRICS
    step_minutes: int = 5

    @property
    def num_steps(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[1])

    @property
    def steps_per_day(self) -> float:
        return MINUTES_PER_DAY / self.step_minutes

    def metric(self, name: str) -> np.ndarray:
        """The ``[T, N]`` slice of ``x`` for one metric name."""
        if name not in self.metric_names:
            raise KeyError(f"unknown metric {name!r}; metrics are {self.metric_names}")
        return self.x[:, :, self.metric_names.index(name)]

    def metadata(self) -> dict[str, Any]:
        """JSON-friendly description (settings, services, incidents) for ``write_metrics``."""
        return {
            "config": self.config.to_dict(),
            "services": list(self.graph.names),
            "num_edges": self.graph.num_edges,
            "incidents": [asdict(i) for i in self.incidents],
            "anomalous_fraction": float(self.labels.mean()),
        }


def _pair(value: Any, name: str, kind: type) -> tuple:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (low, high) pair, got {value!r}") from None
    conv = _as_int if kind is int else _as_float
    lo, hi = conv(lo, f"{name}[0]"), conv(hi, f"{name}[1]")
    if lo > hi:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {value!r}")
    return lo, hi


def _footprint(cas: list[tuple[int, int, int, float]], incident: Incident) -> int:
    """Last step (exclusive) any service is hit by this incident."""
    return max(onset for _, _, onset, _ in cas) + incident.duration


def _apply_drift_kinds(incidents: list[Incident], drift: DriftConfig | None) -> list[Incident]:
    if drift is None or drift.new_failure_mode is None:
        return incidents
    out, k = [], 0
    for inc in incidents:
        if inc.start >= drift.start:
            # ceil steps by one exactly at the incidents we convert: the first, then every 1/share-th.
            take = math.ceil((k + 1) * drift.new_failure_share - 1e-9) > math.ceil(k * drift.new_failure_share - 1e-9)
            if take:
                inc = Incident(inc.root, inc.start, inc.duration, drift.new_failure_mode, inc.severity)
            k += 1
        out.append(inc)
    return out


def simulate(
    graph: ServiceGraph,
    *,
    steps: int,
    seed: int,
    step_minutes: int = 5,
    num_incidents: int | None = None,
    incidents: Sequence[Incident] | None = None,
    incident_kinds: Sequence[str] = DEFAULT_INCIDENT_KINDS,
    duration: tuple[int, int] = (3, 12),
    severity: tuple[float, float] = (0.5, 1.0),
    hop_delay: int = 1,
    hop_decay: float = 0.6,
    severity_threshold: float = 0.15,
    seasonality: float = 0.35,
    noise: float = 0.05,
    min_gap: int = 1,
    drift: DriftConfig | None = None,
) -> Telemetry:
    """Simulate ``steps`` steps of telemetry on ``graph`` (model: see the module docstring).

    Incidents are either drawn at random (``num_incidents``, default 6, with ``incident_kinds``,
    ``duration`` and ``severity`` ranges) or given explicitly with ``incidents=`` (then leave
    ``num_incidents`` unset). Returns a ``Telemetry`` whose ``x`` is ``[steps, N, 4]`` float32.

    Every argument is checked before anything is drawn (``noise`` must lie in [0, 1]); settings
    that would still push a metric beyond float32's range raise ValueError instead of
    returning inf.
    """
    # ---- validate everything before drawing anything
    if not isinstance(graph, ServiceGraph):
        raise TypeError(f"graph must be a ServiceGraph (e.g. shop_graph()), got {type(graph).__name__}")
    order = graph.topological_order()  # raises with the cycle named
    n = graph.num_nodes
    steps = _as_int(steps, "steps")
    if steps < 1:
        raise ValueError(f"steps must be > 0, got {steps}")
    seed = _as_int(seed, "seed")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    step_minutes = _as_int(step_minutes, "step_minutes")
    if not 1 <= step_minutes <= MINUTES_PER_DAY:
        raise ValueError(f"step_minutes must lie in 1..{MINUTES_PER_DAY}, got {step_minutes}")
    hop_delay = _as_int(hop_delay, "hop_delay")
    if hop_delay < 0:
        raise ValueError(f"hop_delay is a number of steps and must be >= 0, got {hop_delay}")
    hop_decay = _as_float(hop_decay, "hop_decay")
    if not 0.0 < hop_decay <= 1.0:
        raise ValueError(f"hop_decay multiplies severity per hop and must lie in (0, 1], got {hop_decay}")
    severity_threshold = _as_float(severity_threshold, "severity_threshold")
    if not 0.0 < severity_threshold <= 1.0:
        raise ValueError(f"severity_threshold must lie in (0, 1], got {severity_threshold}")
    seasonality = _as_float(seasonality, "seasonality")
    if not 0.0 <= seasonality < 1.0:
        raise ValueError(f"seasonality is the daily traffic amplitude and must lie in [0, 1), got {seasonality}")
    noise = _as_float(noise, "noise")
    if not 0 <= noise <= MAX_NOISE:
        raise ValueError(
            f"noise is a log-scale standard deviation and must lie in [0, {MAX_NOISE}] (at 1 a metric varies "
            f"by a factor e per sigma; the default is 0.05), got {noise}"
        )
    min_gap = _as_int(min_gap, "min_gap")
    if min_gap < 0:
        raise ValueError(f"min_gap must be >= 0 steps, got {min_gap}")
    kinds = tuple(incident_kinds)
    if isinstance(incident_kinds, str) or not kinds:
        raise ValueError(f"incident_kinds must be a non-empty sequence of kinds from {INCIDENT_KINDS}")
    unknown = [k for k in kinds if k not in INCIDENT_KINDS]
    if unknown or len(set(kinds)) != len(kinds):
        raise ValueError(f"incident_kinds must be distinct kinds from {INCIDENT_KINDS}, got {kinds}")
    dur_lo, dur_hi = _pair(duration, "duration", int)
    if dur_lo < 1:
        raise ValueError(f"duration must be at least 1 step, got {duration!r}")
    sev_lo, sev_hi = _pair(severity, "severity", float)
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
            prev, prev_end = inc, _footprint(cascade(graph, inc, **casc_kw), inc)
        num_incidents = len(explicit)
    else:
        num_incidents = 6 if num_incidents is None else _as_int(num_incidents, "num_incidents")
        if num_incidents < 0:
            raise ValueError(f"num_incidents must be >= 0, got {num_incidents}")
        # Worst case over roots at top severity, so whether a setting fits never depends on luck.
        max_hop = max(
            max(h for _, h, _, _ in cascade(graph, Incident(r, 0, 1, kinds[0], sev_hi), **casc_kw)) for r in range(n)
        )
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
        lengths = [_footprint(cascade(graph, inc, **casc_kw), inc) for inc in drawn]
        slack = steps - sum(lengths) - max(num_incidents - 1, 0) * min_gap
        offsets = np.sort(rng.integers(0, slack + 1, num_incidents))
        explicit, t0 = [], 0
        for inc, length, off in zip(drawn, lengths, offsets, strict=True):
            explicit.append(Incident(inc.root, t0 + int(off), inc.duration, inc.kind, inc.severity))
            t0 += length + min_gap

    final_incidents = _apply_drift_kinds(explicit, drift)
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

    is_entry = np.bincount(graph.edge_index[1], minlength=n) == 0
    load = np.zeros((steps, n))
    nominal = np.zeros(n)
    for v in order:
        if is_entry[v]:
            load[:, v] = _ENTRY_RPM * entry_share[v] * entry
            nominal[v] = _ENTRY_RPM * entry_share[v]
        into = np.flatnonzero(graph.edge_index[1] == v)
        for e in into:
            u = graph.edge_index[0, e]
            load[:, v] += call_weight[e] * load[:, u]
            nominal[v] += call_weight[e] * nominal[u]
    load *= np.exp(0.5 * noise * jitter)
    rel = load / nominal

    # ---- baseline metrics
    lat_nom = np.zeros(n)
    for v in reversed(order):
        below = graph.callees_of(v)
        lat_nom[v] = own_latency[v] + (lat_nom[below].max() if below.size else 0.0)
    cpu = cpu_base * rel * np.exp(noise * z[..., 0])
    mem = (mem_base + 5.0 * (rel - 1.0)) * np.exp(0.3 * noise * z[..., 1])
    lat = lat_nom * (0.7 + 0.3 * rel**2) * np.exp(noise * z[..., 2])
    err = err_base * (0.5 + 0.5 * rel**2) * np.exp(noise * z[..., 3])

    # ---- incidents and their cascades
    labels = np.zeros((steps, n), dtype=np.int8)
    root_cause = np.full(steps, -1, dtype=np.int64)
    for inc in final_incidents:
        d_cpu, d_mem, d_lat, d_err = _SIGNATURES[inc.kind]
        if inc.kind == "memory_leak":
            shape = np.arange(1, inc.duration + 1) / inc.duration
        else:
            shape = np.ones(inc.duration)
        cas = cascade(graph, inc, **casc_kw)
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
        root_cause[inc.start : min(_footprint(cas, inc), steps)] = inc.root

    with np.errstate(over="ignore", invalid="ignore"):  # checked just below
        columns = [np.clip(cpu, 0.0, 100.0), np.clip(mem, 0.0, 100.0), lat, np.clip(err, 0.0, 1.0)]
        x = np.stack(columns, axis=-1).astype(np.float32)
        load32 = load.astype(np.float32)
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
            f"(noise={noise}, seasonality={seasonality}, drift={drift}); lower noise or drift.traffic_scale"
        )
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
    )
