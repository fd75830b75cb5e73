"""A simulated series (``Telemetry``), the settings it came from (``SimConfig``), and a
step-by-step replay of it for streaming monitors (``Telemetry.steps``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from tgad_lite.data.microservices.graph import ServiceGraph
from tgad_lite.data.microservices.incidents import DriftConfig, Incident, LoadSurge

METRICS: tuple[str, ...] = ("cpu", "memory", "latency_ms", "error_rate")
MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True)
class SimConfig:
    """The settings a ``Telemetry`` was generated with (``to_dict`` for run metadata).

    The fields after ``drift`` are the regime options (see ``regimes``); their defaults are the
    easy regime, so a config built without them describes a series as it was before they existed.
    ``unobserved_services`` is the argument as given: a count, a fraction, or a tuple of indices.
    """

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
    regime: str = "easy"
    amplification: tuple[float, float] = (1.0, 1.0)
    noise_spread: float = 0.0
    unobserved_services: int | float | tuple[int, ...] = 0
    missing_metric_fraction: float = 0.0
    uninstrumented_roots: float = 0.0
    load_surges: int = 0
    surge_duration: tuple[int, int] = (6, 24)
    surge_height: tuple[float, float] = (1.5, 2.5)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TelemetryStep(NamedTuple):
    """One step of a series, as ``Telemetry.steps`` yields it (arrays are read-only views).

    ``x``, ``mask`` and ``load`` are what a monitor may look at; ``labels`` and ``root_cause``
    are the ground truth to score it against, not inputs.
    """

    t: int
    x: np.ndarray  # [N, F] float32, NaN where unobserved
    mask: np.ndarray  # [N, F] bool, True = observed
    labels: np.ndarray  # [N] int8
    root_cause: int  # root of the active incident, -1 when none
    load: np.ndarray  # [N] float32 requests per minute (simulator truth)


def _read_only_view(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class Telemetry:
    """A simulated series. ``T`` steps, ``N`` services, ``F = len(METRICS)`` metrics.

    - ``x``: ``[T, N, F]`` float32, metrics in physical units (cpu %, memory %, latency ms,
      error rate 0..1), in ``metric_names`` order; NaN where ``mask`` is False.
    - ``labels``: ``[T, N]`` int8, 1 where a service is hit by an incident (root or cascade),
      whether or not that service is observed.
    - ``root_cause``: ``[T]`` int64, root service of the active incident, -1 when none.
    - ``load``: ``[T, N]`` float32, requests per minute reaching each service. The simulator's
      truth, never masked: it is not one of the observed metrics.
    - ``mask``: ``[T, N, F]`` bool, True where the value in ``x`` was observed (default: all).
    - ``surges``: the ``LoadSurge`` s in the series (traffic bursts that are not incidents).
    - ``amplification``: ``[N]`` float64 per-service retry/fan-out factor (1 = none).
    - ``noise_scale``: ``[N]`` float64 per-service multiplier of ``config.noise`` (1 = none).
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
    mask: np.ndarray | None = None
    surges: tuple[LoadSurge, ...] = ()
    amplification: np.ndarray | None = None
    noise_scale: np.ndarray | None = None

    def __post_init__(self) -> None:
        t, n, f = self.x.shape
        if self.mask is None:
            object.__setattr__(self, "mask", np.ones((t, n, f), dtype=bool))
        elif self.mask.shape != self.x.shape or self.mask.dtype != np.bool_:
            raise ValueError(
                f"mask must be a bool array shaped like x {self.x.shape} (True = observed), got "
                f"{self.mask.dtype} {self.mask.shape}"
            )
        for name in ("amplification", "noise_scale"):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, np.ones(n))
            elif np.shape(value) != (n,):
                raise ValueError(f"{name} must hold one factor per service, shape ({n},), got {np.shape(value)}")
        object.__setattr__(self, "surges", tuple(self.surges))

    @property
    def num_steps(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[1])

    @property
    def steps_per_day(self) -> float:
        return MINUTES_PER_DAY / self.step_minutes

    @property
    def observed_services(self) -> np.ndarray:
        """``[N]`` bool: True for services with at least one observed value."""
        return self.mask.any(axis=(0, 2))

    @property
    def surge_steps(self) -> np.ndarray:
        """``[T]`` bool: True during a load surge."""
        out = np.zeros(self.num_steps, dtype=bool)
        for s in self.surges:
            out[s.start : s.start + s.duration] = True
        return out

    def metric(self, name: str) -> np.ndarray:
        """The ``[T, N]`` slice of ``x`` for one metric name."""
        if name not in self.metric_names:
            raise KeyError(f"unknown metric {name!r}; metrics are {self.metric_names}")
        return self.x[:, :, self.metric_names.index(name)]

    def steps(self, start: int = 0, stop: int | None = None) -> Iterator[TelemetryStep]:
        """Replay steps ``start .. stop - 1`` one at a time, as a live monitor would see them.

        Yields ``TelemetryStep(t, x [N, F], mask [N, F], labels [N], root_cause, load [N])``
        with read-only views (no copies), so a monitor cannot peek ahead or alter the series.
        The whole series is generated up front (``simulate`` is fast: see its docstring);
        iterating is the streaming interface, e.g. ``for step in tel.steps(start=split): ...``.
        """
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
            raise TypeError(f"start must be an int step, got {start!r}")
        stop = self.num_steps if stop is None else stop
        if isinstance(stop, bool) or not isinstance(stop, (int, np.integer)):
            raise TypeError(f"stop must be an int step or None, got {stop!r}")
        if not 0 <= start <= stop <= self.num_steps:
            raise ValueError(
                f"steps(start={start}, stop={stop}) needs 0 <= start <= stop <= {self.num_steps} (the series length)"
            )
        x, mask, labels, load = (_read_only_view(a) for a in (self.x, self.mask, self.labels, self.load))
        for t in range(int(start), int(stop)):
            yield TelemetryStep(t, x[t], mask[t], labels[t], int(self.root_cause[t]), load[t])

    def metadata(self) -> dict[str, Any]:
        """JSON-friendly description (settings, services, incidents) for ``write_metrics``."""
        hidden = np.flatnonzero(~self.observed_services)
        return {
            "config": self.config.to_dict(),
            "services": list(self.graph.names),
            "num_edges": self.graph.num_edges,
            "incidents": [asdict(i) for i in self.incidents],
            "anomalous_fraction": float(self.labels.mean()),
            "observed_fraction": float(self.mask.mean()),
            "unobserved_services": [self.graph.names[int(v)] for v in hidden],
            "surges": [asdict(s) for s in self.surges],
        }
