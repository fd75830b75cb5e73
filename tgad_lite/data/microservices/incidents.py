"""What happens to the services: incidents and their upstream cascade, load surges, drift.

An ``Incident`` is a fault at one service (its ground-truth root cause); ``cascade`` says which
services it reaches, when and how strongly. A ``LoadSurge`` is a burst of traffic that is not a
fault. ``DriftConfig`` changes the series from a step on. ``simulate`` (module ``simulator``)
turns them into metrics; the module docstring of the package describes the whole model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tgad_lite.data.microservices._checks import as_float, as_int
from tgad_lite.data.microservices.graph import ServiceGraph

INCIDENT_KINDS: tuple[str, ...] = (
    "latency_spike",
    "error_burst",
    "cpu_saturation",
    "memory_leak",
    "dependency_timeout",
)
# The training-time kinds; memory_leak and dependency_timeout are left for drift experiments.
DEFAULT_INCIDENT_KINDS: tuple[str, ...] = ("latency_spike", "error_burst", "cpu_saturation")

# kind -> (cpu points, memory points, latency factor, error-rate points) at severity 1.
SIGNATURES: dict[str, tuple[float, float, float, float]] = {
    "latency_spike": (0.0, 0.0, 3.0, 0.02),
    "error_burst": (0.0, 0.0, 0.5, 0.30),
    "cpu_saturation": (50.0, 0.0, 1.5, 0.03),
    "memory_leak": (5.0, 45.0, 1.0, 0.05),
    "dependency_timeout": (-10.0, 0.0, 6.0, 0.20),
}


@dataclass(frozen=True)
class Incident:
    """A failure at service ``root`` during ``[start, start + duration)`` (steps).

    ``severity`` scales the kind's effect (1 = the full ``SIGNATURES`` row); see the package
    docstring for how it cascades to callers.
    """

    root: int
    start: int
    duration: int
    kind: str
    severity: float

    def __post_init__(self) -> None:
        root = as_int(self.root, "Incident.root")
        start = as_int(self.start, "Incident.start")
        duration = as_int(self.duration, "Incident.duration")
        severity = as_float(self.severity, "Incident.severity")
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
class LoadSurge:
    """A burst of traffic at the entry services during ``[start, start + duration)`` (steps).

    Entry traffic is multiplied by ``factors()``: it rises over the first quarter of the surge
    (at least one step), holds at ``height`` and falls over the last quarter. It is not an
    incident: labels stay 0.
    """

    start: int
    duration: int
    height: float

    def __post_init__(self) -> None:
        start = as_int(self.start, "LoadSurge.start")
        duration = as_int(self.duration, "LoadSurge.duration")
        height = as_float(self.height, "LoadSurge.height")
        if start < 0:
            raise ValueError(f"LoadSurge.start must be a step >= 0, got {start}")
        if duration < 1:
            raise ValueError(f"LoadSurge.duration must be >= 1 step, got {duration}")
        if height < 1.0:
            raise ValueError(f"LoadSurge.height multiplies traffic and must be >= 1 (a surge, not a dip), got {height}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "duration", duration)
        object.__setattr__(self, "height", height)

    def factors(self) -> np.ndarray:
        """``[duration]`` float64 traffic multipliers, trapezoid-shaped, peak ``height``."""
        ramp = max(1, self.duration // 4)
        k = np.arange(self.duration)
        up_hold_down = np.minimum(1.0, np.minimum((k + 1) / ramp, (self.duration - k) / ramp))
        return 1.0 + (self.height - 1.0) * up_hold_down


@dataclass(frozen=True)
class DriftConfig:
    """What changes from step ``start`` on (see the package docstring, "Drift")."""

    start: int
    traffic_scale: float = 1.0
    new_failure_mode: str | None = None
    new_failure_share: float = 0.5

    def __post_init__(self) -> None:
        start = as_int(self.start, "DriftConfig.start")
        if start < 0:
            raise ValueError(f"DriftConfig.start must be a step >= 0, got {start}")
        scale = as_float(self.traffic_scale, "DriftConfig.traffic_scale")
        if scale <= 0:
            raise ValueError(f"DriftConfig.traffic_scale multiplies traffic and must be > 0, got {scale}")
        share = as_float(self.new_failure_share, "DriftConfig.new_failure_share")
        if not 0.0 < share <= 1.0:
            raise ValueError(f"DriftConfig.new_failure_share must lie in (0, 1], got {share}")
        if self.new_failure_mode is not None and self.new_failure_mode not in INCIDENT_KINDS:
            raise ValueError(
                f"unknown DriftConfig.new_failure_mode {self.new_failure_mode!r}; choose one of {INCIDENT_KINDS}"
            )
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "traffic_scale", scale)
        object.__setattr__(self, "new_failure_share", share)


def hop_limit(severity: float, hop_decay: float, severity_threshold: float, num_nodes: int) -> int:
    """The most hops an incident of ``severity`` travels: the largest ``h`` with
    ``severity * hop_decay**h >= severity_threshold`` (0 when even one hop falls below it),
    capped at ``num_nodes - 1``, the longest possible caller path."""
    h = 0
    while h < num_nodes - 1 and severity * hop_decay ** (h + 1) >= severity_threshold:
        h += 1
    return h


def cascade(
    graph: ServiceGraph,
    incident: Incident,
    *,
    hop_delay: int = 1,
    hop_decay: float = 0.6,
    severity_threshold: float = 0.15,
    amplification: Sequence[float] | np.ndarray | None = None,
) -> list[tuple[int, int, int, float]]:
    """The services an incident hits: ``[(service, hop, onset_step, severity)]``, root first.

    ``onset_step = start + hop * hop_delay``; ``severity = incident.severity * hop_decay**hop``;
    only hops whose severity is ``>= severity_threshold`` are kept (the root always is, as
    ``simulate`` requires its severity to reach the threshold).

    ``amplification`` (``[N]`` per-service factors >= 1, ``Telemetry.amplification``) scales
    the severity of the latency and error effect a caller shows, not which services are hit:
    a caller ``v`` at hop ``h`` gets ``incident.severity * hop_decay**h * A[v]`` with
    ``A[root] = 1`` and ``A[v] = amplification[v] * max(A[w])`` over its callees ``w`` one hop
    closer to the root (retries compound up the call chain; a caller waits for its slowest
    sick dependency).
    """
    limit = hop_limit(incident.severity, hop_decay, severity_threshold, graph.num_nodes)
    hops = graph.upstream_hops(incident.root, max_hops=limit)
    out = []
    for v, h in sorted(hops.items(), key=lambda kv: (kv[1], kv[0])):
        sev = incident.severity * hop_decay**h
        if h > 0 and sev < severity_threshold:
            continue
        out.append((v, h, incident.start + h * hop_delay, sev))
    if amplification is None:
        return out
    amp = np.asarray(amplification, dtype=np.float64)
    if amp.shape != (graph.num_nodes,):
        raise ValueError(f"amplification must have one factor per service, shape ({graph.num_nodes},), got {amp.shape}")
    gain = {incident.root: 1.0}
    for v, h, _, _ in out[1:]:  # by hop, so every callee one hop closer already has its gain
        closer = [gain[w] for w in graph._callees[v].tolist() if hops.get(w) == h - 1]
        gain[v] = float(amp[v]) * max(closer)
    return [(v, h, onset, sev * gain[v]) for v, h, onset, sev in out]


def footprint_end(cas: list[tuple[int, int, int, float]], incident: Incident) -> int:
    """Last step (exclusive) any service is hit by this incident."""
    return max(onset for _, _, onset, _ in cas) + incident.duration


def apply_drift_kinds(incidents: list[Incident], drift: DriftConfig | None) -> list[Incident]:
    """The incidents with ``drift.new_failure_mode`` swapped in (see "Drift")."""
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
