"""The streaming monitor: one telemetry step in, risk per service, a cascade score and alarms out.

``Monitor(model, edge_index, normaliser=..., window=S)`` keeps the last ``S`` steps and, per
:meth:`Monitor.step` ``(x_t [N, F], mask [N, F] or None)``:

1. **Checks** the step (shape ``[N, F]`` of the graph's ``N`` services and the model's ``F``
   metrics, bool mask, NaN only where the mask says unobserved) before changing anything: a
   refused step leaves the monitor as it was.
2. **Normalises** it with the online normaliser (``normaliser.py``: the model's robust training
   normaliser, moved by Welford statistics of the stream), once, with the statistics learned up
   to the previous step.
3. **Encodes the new snapshot only.** The graph encoder of :class:`~tgad_lite.temporal.TemporalGAT`
   (input projection, GATv2 layers, LayerNorm) works on each snapshot separately and is
   deterministic in eval mode, so a snapshot's encoding is the same in every window that holds it.
   The monitor encodes each arriving snapshot once, on the one-snapshot message edges built at
   construction, and keeps the result in a ring of ``S`` slots. It goes one step further than the
   encoder output: the recurrent layer's input projection (``W_ih h + b``) is per step too, so the
   ring holds those gate inputs ``[S, N, G]`` (``G = 4D`` for the LSTM, ``3D`` for the GRU; for a
   minGRU the step's recurrence coefficients ``[a | b]``, ``G = 2D``, so the window needs no product). The
   GATv2 layers run with the model's own weights on the target-sorted message edges (a softmax over
   each target's edges and one weighted ``embedding_bag`` per layer, see ``_SnapshotModel``; tested
   equal to PyG's ``GATv2Conv``), under ``torch.inference_mode()``; the ring, the recurrence's
   state and the input buffer are allocated once.
4. **Runs the recurrent layer over the window** (the ``S`` cached gate inputs, oldest first, from a
   zero state, exactly as ``TemporalGAT.forward`` does for that window; only the ``h W_hh`` part is
   left per step; each ``tanh`` computed as ``2 sigmoid(2 x) - 1``, see ``_SnapshotModel``; a minGRU's
   window state is one multiply-add of block aggregates kept up to date, ``_SnapshotModel.advance``)
   and the risk head on the last state: ``risk [N]``. Nothing is computed or
   returned for the first ``S - 1`` steps (``risk=None``): no window is full yet.
5. **Cascade score** :func:`~tgad_lite.anomaly.cascade.cascade_score` of the risk, from adjacency
   lists built once (the same arithmetic, tested equal).
6. **Alarms.** Service alarms from ONE streaming SPOT on the per-step maximum risk: alarm every
   service whose risk exceeds the SPOT threshold ``z_q``. Why the maximum and not a SPOT per
   service: (a) ``q`` then bounds what an operator sees, the probability that a normal step raises
   ANY alarm, instead of ``N q`` for ``N`` per-service SPOTs; (b) at most one tail refit per
   step instead of about ``N (1 - level)``: every new peak refits a GPD (about 1 ms with
   :func:`~tgad_lite.anomaly.threshold.fit_gpd`, 14 to 18 ms with scipy's ``genpareto.fit``), so
   per-service SPOTs at 1000 services (about 20 new peaks a step) would cost some 20 ms per step,
   20 times the step's target; (c) a per-service tail
   needs hundreds of calibration steps per service, while the model's risk is one probability scale
   for every service (one sigmoid head trained on all of them). The system alarm: a second SPOT on
   the cascade score. Either may instead be a fixed threshold (``risk_threshold=0.5``, e.g.
   ``TrainResult.threshold``). A SPOT calibrates on the first ``calibration`` scored steps (no alarms
   then), then alarms on ``score > z_q`` and learns from every step that is not an alarm
   (:class:`~tgad_lite.anomaly.threshold.SPOT`). The refits are the slow tail of the step
   latency (``benchmarks/monitor.py`` counts them); on a score stream that keeps rising, most steps
   are new peaks and each one pays a refit.
7. **Learns** the step into the normalisation statistics, except (``freeze_on_alarm``) for alarmed
   services, and for none on a system alarm: an incident must not become the new normal.
8. **Drift**: ``drift.update(step, x_t, mask, scores)`` of a drift detector when one is attached
   (``scores``: ``{"max_risk": ..., "cascade": ...}`` once the window is full, ``{}`` before),
   after the monitor's own step is complete. A detector for other services or metrics is refused
   when the monitor is built.

Exactness. The cached path is the batch model: ``step`` over a replay gives the risk of
``TemporalGAT.forward`` on ``make_windows`` of the same normalised series to float32 rounding
(tested to 1e-5), and ``fast=False`` runs that full forward over the window at every step (the
naive reference the benchmark compares with). The monitor reads the model's weights when built
(or swapped in): call :meth:`Monitor.swap_model` after changing them. It puts the model in eval mode.

State. :meth:`Monitor.state_dict` holds the raw and normalised window, the gate cache, the online
statistics, both thresholds' state, the step counter, the model version, the detector's own
``state_dict`` and fingerprints of the model (config + weight hash) and the graph;
:meth:`Monitor.save` writes it atomically, :meth:`Monitor.load` refuses a state of another model
or graph, and a restored monitor continues bit for bit as the uninterrupted one (a minGRU's window
aggregates are not stored: they are rebuilt from the gate cache by the same operations in the same
order, so they come back bit for bit).
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tgad_lite.anomaly.cascade import check_edge_index
from tgad_lite.anomaly.threshold import SPOT
from tgad_lite.checks import int_at_least as _int
from tgad_lite.data.microservices.telemetry import METRICS
from tgad_lite.data.microservices.windows import ServiceNormaliser
from tgad_lite.device import resolve_device
from tgad_lite.monitor.normaliser import OnlineNormaliser
from tgad_lite.monitor.state import (
    STATE_FORMAT,
    StateError,
    graph_fingerprint,
    load_state,
    model_fingerprint,
    save_state,
    spot_from_state,
    spot_state,
)

__all__ = ["Monitor", "StepResult", "replay_threshold"]


class DriftDetectorLike(Protocol):
    """What the monitor calls on a drift detector (``tgad_lite.monitor.drift.DriftDetector``)."""

    def update(self, step: int, values: np.ndarray, mask: np.ndarray | None, scores: Mapping[str, float]) -> Any: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@dataclass(frozen=True)
class StepResult:
    """What :meth:`Monitor.step` returns for one step.

    - ``step``: the monitor's step index (0 for the first step it saw).
    - ``risk``: ``[N]`` float64 risk per service at this step, ``None`` for the first ``S - 1`` steps.
    - ``cascade``: the cascade score in ``[0, 1]`` (``None`` with ``risk``).
    - ``alarms``: ``[N]`` bool, services alarmed at this step (all False while calibrating).
    - ``system_alarm``: the cascade score's alarm.
    - ``drift``: the detector's ``DriftStatus`` (``None`` without a detector).
    - ``model_version``: the version of the model that scored this step.
    - ``risk_threshold`` / ``cascade_threshold``: the thresholds in force at this step (``None``
      while a SPOT is still calibrating or before the window is full).
    """

    step: int
    risk: np.ndarray | None
    cascade: float | None
    alarms: np.ndarray
    system_alarm: bool
    drift: Any
    model_version: str | None
    risk_threshold: float | None = None
    cascade_threshold: float | None = None


# ----------------------------------------------------------------------------- thresholds


_LOGIT_CLIP = 1e-12  # risk is clipped to [c, 1 - c] before the logit: float64 sigmoid outputs reach 1.0 exactly


def _logit(p: float) -> float:
    p = min(max(p, _LOGIT_CLIP), 1.0 - _LOGIT_CLIP)
    return math.log(p) - math.log1p(-p)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


_LOG2E = 1.0 / math.log(2.0)  # exp(x) = exp2(x log2(e)): torch's exp2 is about 3x faster than its exp here


def _elu_(x: Tensor) -> Tensor:
    """ELU (alpha 1) of ``x``, overwriting ``x``: ``max(x, 0) + exp(min(x, 0)) - 1``, the exponential as
    ``exp2``. On the project's CPU (AMD EPYC, torch 2.13, float32 [1000, 32], one thread) ``F.elu``
    took 44-50 us, this 27-36 us, within 6e-8 of it (float64: 1e-15)."""
    negative = torch.clamp_max(x, 0.0).mul_(_LOG2E).exp2_().sub_(1.0)
    return x.clamp_min_(0.0).add_(negative)


class _StreamThreshold:
    """A fixed threshold, or a SPOT calibrated on the first ``calibration`` scores (alarm: ``score > threshold``).

    ``logit=True`` (the risk gate): SPOT works on ``logit(risk)`` and the threshold is reported back
    as a probability. Risk is bounded by 1 and piles up just below it during incidents, where a
    tail fitted in probability units is squeezed against the bound; in logit units the same
    ordering has room, and a fixed threshold is still compared in probability units.
    """

    def __init__(
        self, name: str, threshold: float | str, q: float, level: float, calibration: int, *, logit: bool = False
    ) -> None:
        self.name = name
        if isinstance(threshold, str):
            if threshold != "spot":
                raise ValueError(f"{name} must be 'spot' or a number, got {threshold!r}")
            SPOT(q, level)  # checks q and level now, not after the calibration steps
            self.fixed: float | None = None
        elif isinstance(threshold, numbers.Real) and not isinstance(threshold, bool) and math.isfinite(threshold):
            self.fixed = float(threshold)
        else:
            raise ValueError(f"{name} must be 'spot' (a streaming threshold) or a finite number, got {threshold!r}")
        self.q, self.level, self.calibration = float(q), float(level), int(calibration)
        self.logit = bool(logit)
        self.scores: list[float] = []
        self.spot: SPOT | None = None

    def _to_spot(self, score: float) -> float:
        return _logit(score) if self.logit else score

    def current(self) -> float | None:
        if self.fixed is not None:
            return self.fixed
        if self.spot is None:
            return None
        return _sigmoid(self.spot.threshold) if self.logit else self.spot.threshold

    def calibrate(self, scores: Any) -> None:
        """Fit the SPOT now on ``scores [K]`` (normal steps, e.g. validation steps outside incidents),
        instead of on the first ``calibration`` steps of the stream. Not for a fixed threshold."""
        if self.fixed is not None:
            raise ValueError(f"{self.name} is a fixed threshold ({self.fixed}); build the monitor with 'spot'")
        values = np.asarray(scores, dtype=np.float64).ravel()
        self.spot = SPOT(self.q, self.level).fit(np.array([self._to_spot(float(v)) for v in values]))
        self.scores = []

    def restart(self) -> None:
        """Back to calibrating (a SPOT fitted to another model's scores says nothing about a new one)."""
        if self.fixed is None:
            self.spot, self.scores = None, []

    def update(self, score: float) -> bool:
        """Alarm for ``score``; a SPOT then learns from it (a calibrating one just collects it)."""
        if self.fixed is not None:
            return score > self.fixed
        value = self._to_spot(score)
        if self.spot is None:
            self.scores.append(value)
            if len(self.scores) >= self.calibration:
                self.spot = SPOT(self.q, self.level).fit(np.asarray(self.scores))
                self.scores = []
            return False
        return self.spot.update(value)

    def state_dict(self) -> dict[str, Any]:
        return {
            "fixed": self.fixed,
            "q": self.q,
            "level": self.level,
            "calibration": self.calibration,
            "logit": self.logit,
            "scores": np.asarray(self.scores, dtype=np.float64),
            "spot": None if self.spot is None else spot_state(self.spot),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.fixed = None if state["fixed"] is None else float(state["fixed"])
        self.q, self.level, self.calibration = float(state["q"]), float(state["level"]), int(state["calibration"])
        self.logit = bool(state.get("logit", False))
        self.scores = [float(v) for v in np.asarray(state["scores"], dtype=np.float64)]
        self.spot = None if state["spot"] is None else spot_from_state(state["spot"])

    def settings(self) -> Any:
        return "spot" if self.fixed is None else self.fixed


def replay_threshold(
    scores: Any,
    *,
    q: float,
    level: float = 0.98,
    calibration: int = 576,
    fit_on: Any = None,
    logit: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """A monitor's streaming SPOT gate run over a logged score series ``scores [K]``, exactly as
    :meth:`Monitor.step` runs it: alarms ``[K]`` (bool) and the threshold in force at each step ``[K]``
    (score units; NaN while the gate is still calibrating).

    ``fit_on [M]`` given: the gate is calibrated on those scores first (:meth:`Monitor.calibrate`) and
    can alarm from the first score; else it calibrates on the first ``calibration`` scores (no alarm
    then). ``logit=True`` is the risk gate (SPOT on ``logit(risk)``, thresholds reported as
    probabilities). For comparing calibrations or ``q`` on the scores a replay logged, without
    replaying the model again.
    """
    gate = _StreamThreshold("threshold", "spot", q, level, calibration, logit=logit)
    if fit_on is not None:
        gate.calibrate(fit_on)
    values = np.asarray(scores, dtype=np.float64).ravel()
    alarms = np.zeros(values.size, dtype=bool)
    thresholds = np.full(values.size, np.nan)
    for k, score in enumerate(values):
        current = gate.current()
        if current is not None:
            thresholds[k] = current
        alarms[k] = gate.update(float(score))
    return alarms, thresholds


# ----------------------------------------------------------------------------- cascade


class _Cascade:
    """:func:`~tgad_lite.anomaly.cascade.cascade_score` for one step, adjacency built once.

    The same arithmetic in the same order as ``cascade_score(risk[None], edge_index)[0]``.
    """

    def __init__(self, edge_index: np.ndarray, num_nodes: int) -> None:
        ei = edge_index
        keep = ei[0] != ei[1]
        src = np.concatenate([ei[0, keep], ei[1, keep]])
        dst = np.concatenate([ei[1, keep], ei[0, keep]])
        self.n = num_nodes
        self.empty = src.size == 0
        if not self.empty:
            order = np.argsort(dst, kind="stable")
            self.src, dst = src[order], dst[order]
            self.targets, self.starts = np.unique(dst, return_index=True)

    def __call__(self, risk: np.ndarray) -> float:
        if self.empty:
            return 0.0
        block = risk[None]
        neighbour_max = np.maximum.reduceat(block[:, self.src], self.starts, axis=1)
        return float((block[:, self.targets] * neighbour_max).sum(axis=1)[0] / self.n)


# ----------------------------------------------------------------------------- the cached model path


def _fast_gatv2_ok(conv: nn.Module) -> bool:
    """The options :class:`TemporalGAT` builds its GATv2 layers with (anything else: PyG's own forward)."""
    return (
        getattr(conv, "concat", False)
        and getattr(conv, "res", None) is None
        and getattr(conv, "lin_edge", None) is None
        and not getattr(conv, "add_self_loops", True)
        and not getattr(conv, "share_weights", True)
        and getattr(conv, "bias", None) is not None
    )


class _SnapshotModel:
    """One model's per-snapshot encoder, gate cache and recurrence for ``N`` services, window ``S``.

    Built once per model (and graph): the message edges sorted by target (every target has its
    self loop: no empty segment); each layer's ``lin_l`` and ``lin_r`` as one matrix product, the
    first layer's folded with the input projection (``x_lr`` straight from the ``[N, 2F]`` input),
    each head widened by a constant column (1 after ``x_l``'s features, 0 after ``x_r``'s);
    ``x_l[src] + x_r[dst]`` as one ``embedding_bag``; the scores head-major ``[H, E']``, in base 2
    (``att`` times ``log2 e``, so the softmax's exponential is ``exp2``, about 3x faster than torch's
    ``exp`` here), shifted by each head's maximum (a target's own maximum only when exp would
    underflow, checked); the aggregation ``out[n, h] = sum_e w[e, h] [x_l[src_e, h], 1]`` as ONE
    weighted ``embedding_bag`` (a bag per target and head), whose constant column is the softmax's
    denominator, divided out at the end; ELU as ``exp2`` too (``_elu_``). The LSTM's gates
    reordered to ``i, f, o, g``, and the tanh gate's pre-activation doubled in the weights, so ONE
    sigmoid over a contiguous ``[N, 4D]`` buffer covers all four gates (``tanh(x) = 2 sigmoid(2 x)
    - 1``; torch's tanh costs about 6x its sigmoid on the project's CPU, see ``__init__``). A
    minGRU's gate weights negated, so one sigmoid gives ``a = 1 - z``, and its window state comes
    from block aggregates (``advance``): no product, three ``[N, D]`` operations on most steps.

    The LSTM and GRU recurrence restarts from a zero state in every window (as ``TemporalGAT.forward``
    does), so each step runs the window's ``S`` cell steps again on the cached gate inputs: the first from
    ``h = c = 0`` (no ``h W_hh`` product), then ``S - 1`` products, each followed by one sigmoid
    over the whole ``[N, 4D]`` gate buffer (before, two products into two buffers, a sigmoid on one
    and a tanh on the other, because a gate function on a strided column block is several times
    slower; with every gate a sigmoid neither is needed). Why not keep the
    ``S - 1`` unfinished windows as live states and advance them all in one batched cell step:
    the same arithmetic in fewer, larger calls, but its ``[S - 1, N, 4D]`` buffers (3.5 MB at
    N = 1000) do not fit in a core's L2 cache; timed after a full forward had evicted the caches
    (one run, N = 1000, one thread, shared machine) it took 2.5 ms against 2.1 ms for this loop
    over ``[N, 4D]`` buffers.
    """

    def __init__(self, model: nn.Module, edge_index: np.ndarray, num_nodes: int, window: int, device: torch.device):
        self.model, self.n, self.s, self.device = model, num_nodes, window, device
        d = model.hidden
        self.d = d
        self.lstm = model.recurrent == "lstm"
        self.mingru = model.recurrent == "mingru"
        with torch.inference_mode():
            self.fast_convs = False
            if model.graph:
                ei = torch.from_numpy(np.array(edge_index, dtype=np.int64)).to(device)
                msg = model.message_edges(ei, num_nodes)
                order = torch.argsort(msg[1], stable=True)
                self.msg = msg
                self.src, self.dst = msg[0, order].contiguous(), msg[1, order].contiguous()
                # Rows of x_lr [N, 2D] viewed [2N, D]: 2n is x_l[n], 2n + 1 is x_r[n]; one bag per edge.
                self.pairs = torch.stack([2 * self.src, 2 * self.dst + 1], dim=1).reshape(-1)
                self.bags = torch.arange(0, self.pairs.numel(), 2, device=device)  # given: not rebuilt per call
                self.lengths = torch.bincount(self.dst, minlength=num_nodes)
                self.fast_convs = all(_fast_gatv2_ok(c) for c in model.convs)
                if self.fast_convs:
                    self._build_layers()
            rnn = model.rnn
            like = {"device": device, "dtype": model.input_proj.weight.dtype}  # the model's (float64 in tests)
            if self.mingru:
                # Gate pre-activation and candidate from the snapshot alone: the ring holds each step's
                # coefficients a = 1 - z and b = z h~ as two planes, coef [2, S, N, D] (a contiguous
                # [N, D] block per step and plane); nothing to scale, no hidden weights.
                # The gate half negated (exact): its sigmoid is a = 1 - z = sigmoid(-gate) at once.
                sign = torch.ones(2 * d, **like)
                sign[:d] = -1.0
                self.w_ih_t = (rnn.linear.weight.detach() * sign[:, None]).t().contiguous()
                self.b_in = (rnn.linear.bias.detach() * sign).contiguous()
                self.coef = torch.zeros(2, window, num_nodes, d, **like)
                self.gates = torch.empty(num_nodes, 2 * d, **like)
                self.h = torch.zeros(num_nodes, d, **like)
                self.c = self.tmp = None  # no cell state, no scratch
                # The window's state from block aggregates (see advance): the current block's prefix
                # (its product of a's and its state from zero) and the last block's suffix states.
                self.prefix_a = torch.zeros(num_nodes, d, **like)
                self.prefix_b = torch.zeros(num_nodes, d, **like)
                self.suffix_b = torch.zeros(window, num_nodes, d, **like)
                self.suffix_a = torch.empty(num_nodes, d, **like)  # scratch: the running product of a's
            else:
                w_ih, w_hh = rnn.weight_ih_l0.detach(), rnn.weight_hh_l0.detach()
                if self.lstm:
                    # torch's order i, f, g, o -> i, f, o, g
                    perm = torch.cat([torch.arange(0, 2 * d), torch.arange(3 * d, 4 * d), torch.arange(2 * d, 3 * d)])
                    perm = perm.to(w_ih.device)
                    w_ih, w_hh = w_ih[perm], w_hh[perm]
                    b_in, b_hh = (rnn.bias_ih_l0.detach() + rnn.bias_hh_l0.detach())[perm], None
                else:
                    b_in, b_hh = rnn.bias_ih_l0.detach(), rnn.bias_hh_l0.detach()
                # tanh(x) = 2 sigmoid(2 x) - 1, and torch's tanh is slow on the project's CPU (AMD EPYC, torch
                # 2.13, float32 [1000, 32], one thread, two runs: tanh 82-109 us, sigmoid 15-18 us, the whole
                # identity 29-37 us, within 1.8e-7 of tanh): the tanh gate (LSTM g, GRU n) gets its
                # pre-activation doubled here, in the weights and biases (times 2 is exact in floating
                # point), so one sigmoid covers every gate.
                # gate_scale [G]: 2 on the tanh gate's rows, 1 elsewhere; the cache is stored with it applied
                # (state_dict divides it back out: saved states keep the layout of format 1).
                scale = torch.ones(w_ih.shape[0], dtype=w_ih.dtype, device=w_ih.device)
                scale[(3 if self.lstm else 2) * d :] = 2.0
                self.gate_scale = scale
                self.w_ih_t = (w_ih * scale[:, None]).t().contiguous()
                self.w_hh_t = (w_hh * scale[:, None]).t().contiguous()
                self.b_in = (b_in * scale).contiguous()
                self.b_hh = None if b_hh is None else (b_hh * scale).contiguous()
                g = (4 if self.lstm else 3) * d
                self.gates_ring = torch.zeros(window, num_nodes, g, **like)  # input gates per step, gate_scale applied
                self.gates = torch.empty(num_nodes, g, **like)
                self.h = torch.zeros(num_nodes, d, **like)
                self.c = torch.zeros(num_nodes, d, **like)
                self.tmp = torch.empty(num_nodes, d, **like)

    @property
    def ring_shape(self) -> tuple[int, int, int]:
        """``(S, N, G)``: the gate cache as :meth:`export_gates` gives it."""
        if self.mingru:
            return (self.s, self.n, 2 * self.d)
        return tuple(self.gates_ring.shape)

    def export_gates(self) -> Tensor:
        """The gate cache ``[S, N, G]`` as saved in a state: LSTM gates in the order i, f, o, g (GRU:
        r, z, n), input part plus folded biases, tanh gate NOT doubled (exact: a division by 2);
        minGRU: each step's coefficients ``[a | b]`` (``G = 2D``), as they are."""
        if self.mingru:
            return torch.cat([self.coef[0], self.coef[1]], dim=2)
        return self.gates_ring / self.gate_scale

    def import_gates(self, gates: Tensor) -> None:
        """Load a cache saved by :meth:`export_gates` (the inverse, exact). A minGRU's window
        aggregates are not in it: :meth:`restore` rebuilds them."""
        if self.mingru:
            gates = gates.to(self.coef)
            self.coef[0].copy_(gates[..., : self.d])
            self.coef[1].copy_(gates[..., self.d :])
            return
        torch.mul(gates.to(self.gates_ring), self.gate_scale, out=self.gates_ring)

    def _build_layers(self) -> None:
        """Per GATv2 layer: stacked ``lin_l``/``lin_r`` weights, each head widened by a constant
        column (see ``_gatv2``); the first layer's folded with the input projection; the bags of
        the aggregation (see ``_aggregate``)."""
        heads = self.model.heads
        n, dev = self.n, self.dst.device
        h_ids = torch.arange(heads, device=dev)
        # Bag n H + h: head h's weights of the edges into n, picking rows of x_lr [N, 2 H (C + 1)] viewed
        # [2 N H, C + 1]: x_l[src], head h is row 2 src H + h (no copy of x_l). Node-major bags, so the
        # sums come out [N, H, C + 1] and the division leaves them [N, D] (head-major bags would need no
        # gather of the weights, 10 us, but their transpose back cost 25 us more).
        bags = (self.dst[:, None] * heads + h_ids).reshape(-1)  # alpha[e, h] flattened, e major
        rows = (self.src[:, None] * (2 * heads) + h_ids).reshape(-1)
        order = torch.argsort(bags, stable=True)
        self.bag_rows = rows[order].contiguous()
        # The scores are head-major, alpha [H, E'] (see _gatv2): bag order lists alpha.reshape(-1)[h E' + e]
        # for the e-major position e H + h that order holds.
        self.bag_weights = ((order % heads) * self.dst.numel() + order // heads).contiguous()
        self.bag_offsets = torch.zeros(n * heads + 1, dtype=torch.long, device=dev)
        self.bag_offsets[1:] = torch.cumsum(torch.bincount(bags, minlength=n * heads), 0)
        self.lengths_h = self.lengths.expand(heads, -1).contiguous()  # [H, N] segments along dim 1
        self.layers = []
        proj = self.model.input_proj
        for index, conv in enumerate(self.model.convs):
            heads, c = conv.heads, conv.out_channels
            w_in = conv.lin_l.weight.shape[1]
            like = {"dtype": conv.lin_l.weight.dtype, "device": dev}
            # x_l and x_r, each head's C features then one constant: 1 after x_l's (so the aggregation's
            # column C sums the unnormalised attention weights: the softmax denominator), 0 after x_r's.
            w = torch.zeros(2, heads, c + 1, w_in, **like)
            b = torch.zeros(2, heads, c + 1, **like)
            for side, lin in enumerate((conv.lin_l, conv.lin_r)):
                w[side, :, :c] = lin.weight.detach().view(heads, c, w_in)
                b[side, :, :c] = lin.bias.detach().view(heads, c)
            b[0, :, c] = 1.0
            w_t, b = w.reshape(-1, w_in).t().contiguous(), b.reshape(-1)
            if index == 0:
                # x_lr = (x W_in^T + b_in) W + b = x (W_in^T W) + (b_in W + b): from the [N, 2F] input in
                # one small product instead of a [N, D] x [D, 2D'] one (the constant columns stay exact).
                w_in_t = proj.weight.detach().t()
                w_t, b = (w_in_t @ w_t).contiguous(), torch.addmv(b, w_t.t(), proj.bias.detach())
            # att . t for every head at once: ONE product with a block-diagonal [H, H (C + 1)] matrix (head
            # h's att in columns h (C + 1) .. h (C + 1) + C - 1 of row h, 0 on the constant); einsum took
            # twice as long.
            att = torch.zeros(heads, heads, c + 1, **like)
            # in base-2 units (times log2 e): the softmax's exponential is then one exp2
            att[h_ids, h_ids, :c] = conv.att.detach().reshape(heads, c) * _LOG2E
            att = att.reshape(heads, heads * (c + 1)).contiguous()
            self.layers.append((w_t, b, att, conv.bias.detach().view(heads, c), float(conv.negative_slope), c))
        self.proj_w_t = proj.weight.detach().t().contiguous()
        self.proj_b = proj.bias.detach().contiguous()

    # -- encoder ----------------------------------------------------------------------------------
    def _gatv2(self, index: int, h: Tensor) -> Tensor:
        """Graph layer ``index`` on one snapshot ``h [N, D_in]`` (for layer 0: the input ``[N, 2F]``,
        the input projection is folded in): ``GATv2Conv(h, message edges)``, PyG's arithmetic (the same
        scores and softmax, the sum of messages) to float rounding. The fast path only (``fast_convs``;
        :meth:`encode` calls PyG's layers otherwise)."""
        w, b, att, bias, slope, c = self.layers[index]
        heads = att.shape[0]
        n, width = h.shape[0], heads * (c + 1)
        x_lr = torch.addmm(b, h, w)  # [N, 2 H (C + 1)]: x_l then x_r, a constant column after each head
        # x_l[src] + x_r[dst] as ONE gather-and-sum (embedding_bag: half the time of two index_selects and an add)
        e = F.embedding_bag(self.pairs, x_lr.view(2 * n, width), self.bags, mode="sum")
        F.leaky_relu(e, slope, inplace=True)
        # Scores head-major, [H, E'] = att [H, D'] x e^T: MKL forms this orientation about 4x faster than
        # e [E', D'] x att^T [D', H] on the project's CPU (31 against 133 us at 4560 edges, one thread).
        score = torch.mm(att, e.t())
        # Softmax per target. Any constant per target cancels; PyG subtracts the target's max. One max
        # per head serves as well (no segment reductions, no gathers back to the edges) unless a whole
        # target's scores sit so far below it that exp underflows: its denominator then comes out
        # below 1e-20, and that layer is done again with the targets' own maxima.
        # (The scores are in base 2, see _build_layers: 2^(s log2 e - m log2 e) = e^(s - m).)
        top = score.amax(dim=1, keepdim=True)
        out = self._aggregate(score.sub(top).exp2_(), x_lr, n, heads, c)
        if bool(out[:, :, c].min() < 1e-20):
            top = torch.segment_reduce(score, "max", lengths=self.lengths_h, axis=1, unsafe=True)
            out = self._aggregate(score.sub_(top.index_select(1, self.dst)).exp2_(), x_lr, n, heads, c)
        # numerator / denominator + bias, [N, H, C]: the denominator is column C of the same sums
        # (a division, then the bias: a third faster than one addcdiv on these strided views)
        return torch.div(out[:, :, :c], out[:, :, c:]).add_(bias).view(n, heads * c)

    def _aggregate(self, weight: Tensor, x_lr: Tensor, n: int, heads: int, c: int) -> Tensor:
        """``[N, H, C + 1]``: per target and head, the sum of its edges' ``weight [H, E']`` times the
        source's ``x_l`` head (with its constant 1: column C is the sum of the weights). ONE weighted
        ``embedding_bag`` over ``x_lr`` viewed ``[2 N H, C + 1]``, a bag per (target, head): the
        product of a CSR matrix ``[N H, 2 N H]`` with that view, without building it. Against
        ``torch.sparse.mm`` on the CSR tensor (which allocates a zeroed output and copies it): 31
        against 61 us at 4560 edges, one thread."""
        table = x_lr.view(2 * n * heads, c + 1)
        out = F.embedding_bag(
            self.bag_rows, table, self.bag_offsets, mode="sum",
            per_sample_weights=weight.reshape(-1).index_select(0, self.bag_weights), include_last_offset=True,
        )  # fmt: skip
        return out.view(n, heads, c + 1)

    def encode(self, inputs: Tensor, slot: int) -> None:
        """Encode one snapshot ``inputs [N, 2F]`` (values with 0 where unobserved, then the mask)
        and store its recurrent gate inputs in ring ``slot`` (a minGRU: then call :meth:`advance`)."""
        m = self.model
        if self.fast_convs:
            h = torch.addmm(self.proj_b, inputs, self.proj_w_t)
            for i, norm in enumerate(m.norms):
                g = _elu_(self._gatv2(i, inputs if i == 0 else h))  # dropout: identity in eval mode
                h = F.layer_norm(g.add_(h), norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        else:
            h = m.input_proj(inputs)
            for i, norm in enumerate(m.norms):
                h = norm(h + F.elu(m.convs[i](h, self.msg)))
        if self.mingru:
            # MinGRU.coefficients, two operations: a = 1 - z = sigmoid(-gate) (the gate's weights are
            # negated), b = z * candidate = candidate - a * candidate (equal to float rounding)
            d = self.d
            g = torch.addmm(self.b_in, h, self.w_ih_t, out=self.gates)  # [-gate | candidate]
            a = torch.sigmoid(g[:, :d], out=self.coef[0, slot])
            torch.addcmul(g[:, d:], a, g[:, d:], value=-1.0, out=self.coef[1, slot])
            return
        torch.addmm(self.b_in, h, self.w_ih_t, out=self.gates_ring[slot])

    # -- recurrence over the window ---------------------------------------------------------------
    def advance(self, t: int) -> None:
        """After :meth:`encode` of step ``t``: a minGRU's window aggregates take step ``t`` in (no-op
        for the LSTM and GRU, whose windows need the products anyway).

        minGRU steps compose associatively: step ``(a, b)`` maps ``h`` to ``a h + b``, and two steps
        make one, ``(a2 a1, a2 b1 + b2)``. Cut time into blocks of ``S`` steps (step ``t`` is at
        offset ``r = t mod S``, its ring slot). The window ending at ``t`` is the last block's steps
        ``r + 1 .. S - 1`` followed by this block's ``0 .. r``, so its state from zero is
        ``prefix_a * suffix_b[r + 1] + prefix_b``, with ``(prefix_a, prefix_b)`` this block's steps
        so far composed (two operations per step) and ``suffix_b[j]`` the state from zero after the
        last block's steps ``j .. S - 1`` (all ``j`` at once when a block completes, from the ring,
        backwards: about ``2 S`` operations once per ``S`` steps). A window then costs three
        ``[N, D]`` operations on most steps instead of ``S - 1`` multiply-adds over the whole ring,
        and reads a fraction of it. The sums are grouped differently from ``MinGRU.forward``'s
        loop: equal to float rounding (tested to 1e-12 in float64).
        """
        if not self.mingru:
            return
        r = t % self.s
        a, b = self.coef[0, r], self.coef[1, r]
        if r == 0:
            self.prefix_a.copy_(a)
            self.prefix_b.copy_(b)
        else:
            self.prefix_a.mul_(a)
            torch.addcmul(b, a, self.prefix_b, out=self.prefix_b)
        if r == self.s - 1:
            self._suffixes(1)

    def _suffixes(self, first: int) -> None:
        """``suffix_b[j]`` for ``j = S - 1`` down to ``first`` from the ring's slots ``j .. S - 1``."""
        s, run = self.s, self.suffix_a
        self.suffix_b[s - 1].copy_(self.coef[1, s - 1])
        run.copy_(self.coef[0, s - 1])
        for j in range(s - 2, first - 1, -1):
            torch.addcmul(self.suffix_b[j + 1], run, self.coef[1, j], out=self.suffix_b[j])
            if j > first:
                run.mul_(self.coef[0, j])

    def restore(self, t: int) -> None:
        """Rebuild a minGRU's window aggregates for the ring as it stands after step ``t`` (after
        :meth:`import_gates` or re-encoding the window): the same operations in the same order as
        :meth:`advance` made them, so the values are the same bit for bit."""
        if not self.mingru or t < 0:
            return
        r = t % self.s
        if t >= self.s and r < self.s - 1:  # the last block's slots r + 1 .. S - 1 are still in the ring
            self._suffixes(r + 1)
        for k in range(t - r, t + 1):  # this block's prefix (a completed block's suffixes at its end)
            self.advance(k)

    def risk_logits(self, t: int) -> Tensor:
        """Logits ``[N]`` of the window ending at step ``t`` (gate inputs of steps ``t - S + 1 .. t``
        in their ring slots): its ``S`` cell steps from a zero state (a minGRU: its state from the
        window aggregates, see :meth:`advance`), then the risk head."""
        d, h, c, tmp, gates = self.d, self.h, self.c, self.tmp, self.gates
        if self.mingru:
            r = t % self.s
            if r == self.s - 1:  # the window is this block
                h = self.prefix_b
            else:
                torch.addcmul(self.prefix_b, self.prefix_a, self.suffix_b[r + 1], out=h)
            return self._head(h)
        ring = self.gates_ring
        slots = [(t - self.s + 1 + k) % self.s for k in range(self.s)]  # oldest first
        if self.lstm:
            # Gates i, f, o | 2g after one sigmoid: s_g = sigmoid(2 g), tanh(g) = 2 s_g - 1, so
            # c <- f c + i tanh(g) = f c + 2 i s_g - i  and  h <- o tanh(c) = o (2 sigmoid(2 c) - 1).
            # First step from h = c = 0: no product, and f c = 0.
            i, f, o, s_g = (gates[:, k * d : (k + 1) * d] for k in range(4))
            torch.sigmoid(ring[slots[0]], out=gates)
            torch.mul(i, s_g, out=c).mul_(2).sub_(i)
            for k, slot in enumerate(slots):
                if k:
                    torch.addmm(ring[slot], h, self.w_hh_t, out=gates).sigmoid_()
                    c.mul_(f).addcmul_(i, s_g, value=2).sub_(i)
                torch.mul(c, 2, out=tmp).sigmoid_().mul_(2).sub_(1)
                torch.mul(o, tmp, out=h)
        else:
            # Gate order r, z, n (torch.nn.GRU), n's rows doubled: n = tanh(x_n + r (W_hn h + b_hn))
            # = 2 sigmoid(2 x_n + r (2 W_hn h + 2 b_hn)) - 1, h = (1 - z) n + z h.
            h.zero_()
            for slot in slots:
                x = ring[slot]
                torch.addmm(self.b_hh, h, self.w_hh_t, out=gates)
                rz = gates[:, : 2 * d].add_(x[:, : 2 * d]).sigmoid_()
                n = gates[:, 2 * d :].mul_(rz[:, :d]).add_(x[:, 2 * d :]).sigmoid_().mul_(2).sub_(1)
                h.sub_(n).mul_(rz[:, d:]).add_(n)  # n + z (h - n)
        return self._head(h)

    def _head(self, h: Tensor) -> Tensor:
        """The risk head ``Linear(D, D) -> ELU -> Linear(D, 1)`` (dropout: identity in eval mode): ``[N]``."""
        first, last = self.model.head[0], self.model.head[3]
        hidden = _elu_(torch.addmm(first.bias, h, first.weight.t()))
        return torch.addmv(last.bias, hidden, last.weight[0])


def _check_state_fits(
    state: Any,
    where: str,
    model_fp: Mapping[str, str],
    graph_fp: Mapping[str, Any],
    window: int | None,
    metric_names: Sequence[str] | None,
    has_drift: bool,
) -> None:
    """Refuse a state of another model, graph or shape (StateError naming what differs and the fix)."""
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        raise StateError(f"{where} is not a monitor state (format {STATE_FORMAT!r}); save one with Monitor.save")
    graph = state.get("graph", {})
    if graph != dict(graph_fp):
        if graph.get("num_services") != graph_fp["num_services"]:
            what = f"{graph.get('num_services')} services, this graph has {graph_fp['num_services']}"
        else:
            what = (
                f"the same {graph_fp['num_services']} services but other edges "
                f"({graph.get('num_edges')} edges vs {graph_fp['num_edges']})"
            )
        raise StateError(
            f"{where} was saved for another graph ({what}); load it with the edge_index it was saved with, "
            "or start a new monitor for this graph"
        )
    model = state.get("model", {})
    version = state.get("model_version")
    if model.get("config") != model_fp["config"]:
        raise StateError(
            f"{where} was saved for a model with config {model.get('config')}, this model has {model_fp['config']}; "
            f"load the model it was saved with (model_version={version!r}), or start a new monitor"
        )
    if model.get("weights_sha256") != model_fp["weights_sha256"]:
        raise StateError(
            f"{where} was saved for a model of the same architecture but other weights (model_version={version!r}); "
            "load the weights it was saved with, or start a new monitor"
        )
    settings = state.get("settings", {})
    if window is not None and (
        settings.get("window") != window or settings.get("metric_names") != list(metric_names or ())
    ):
        raise StateError(
            f"{where} has window {settings.get('window')} and metrics {settings.get('metric_names')}, this monitor "
            f"{window} and {list(metric_names or ())}; rebuild it with Monitor.load(path, model, edge_index)"
        )
    if (state.get("drift") is None) == has_drift:
        has = "holds" if state.get("drift") is not None else "holds no"
        raise StateError(
            f"{where} {has} drift-detector state but the monitor has {'a' if has_drift else 'no'} detector; "
            "pass drift= a detector built with the same settings (or None) to match"
        )


# ----------------------------------------------------------------------------- the monitor


def _model_device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


class Monitor:
    """Streaming risk, cascade score and alarms, one telemetry step at a time (module docstring).

    Args:
        model: a trained :class:`~tgad_lite.temporal.TemporalGAT` (put in eval mode, moved to ``device``).
        edge_index: ``[2, E]`` caller -> callee ids of the watched services (array or tensor).
        normaliser: how raw telemetry becomes model input: an :class:`OnlineNormaliser` (e.g.
            ``OnlineNormaliser.from_reference(x_train, mask_train)``), or the model's training
            :class:`~tgad_lite.data.microservices.ServiceNormaliser` (then fixed, unless
            ``reference`` is given). Its ``N`` is the number of services the monitor watches.
        window: ``S``, steps per window: the window length the model was trained with.
        reference: ``(x [T, N, F], mask)`` raw reference data, with a ``ServiceNormaliser`` only:
            builds ``OnlineNormaliser(normaliser, reference)`` (Welford adaptation on).
        metric_names: the ``F`` metric names (default: the simulator's four when ``F == 4``).
        drift: a drift detector (``update`` / ``state_dict`` / ``load_state_dict``), or None.
        freeze_on_alarm: do not learn alarmed services' values into the statistics (all of them on
            a system alarm).
        risk_threshold, cascade_threshold: ``"spot"`` (streaming SPOT, see the module docstring) or a
            fixed number (alarm when the score exceeds it).
        spot_q, spot_level: SPOT's risk ``q`` (probability that a normal step alarms) and initial
            quantile ``level``; ``calibration``: scored steps each SPOT calibrates on.
        model_version: recorded in every :class:`StepResult`.
        device: where the model runs ("cpu", "cuda", "auto").
        fast: False runs the full ``TemporalGAT.forward`` over the window each step (the naive
            reference for tests and the benchmark; same outputs, much slower).
    """

    def __init__(
        self,
        model: nn.Module,
        edge_index: Any,
        *,
        normaliser: OnlineNormaliser | ServiceNormaliser,
        window: int,
        reference: tuple[Any, Any] | None = None,
        metric_names: Sequence[str] | None = None,
        drift: DriftDetectorLike | None = None,
        freeze_on_alarm: bool = True,
        risk_threshold: float | str = "spot",
        cascade_threshold: float | str = "spot",
        spot_q: float = 1e-3,
        spot_level: float = 0.98,
        calibration: int = 500,
        model_version: str | None = None,
        device: str | torch.device = "cpu",
        fast: bool = True,
    ) -> None:
        if isinstance(normaliser, ServiceNormaliser):
            normaliser = OnlineNormaliser(normaliser, reference, adapt=reference is not None)
        elif isinstance(normaliser, OnlineNormaliser):
            if reference is not None:
                raise ValueError(
                    "reference is for a ServiceNormaliser; an OnlineNormaliser already holds its reference statistics"
                )
        else:
            raise ValueError(
                "normaliser must be an OnlineNormaliser (e.g. OnlineNormaliser.from_reference(x_train, mask_train)) or "
                f"the model's training ServiceNormaliser, got {type(normaliser).__name__}; the model expects robust "
                "z-scores (see tgad_lite.monitor.normaliser)"
            )
        self.normaliser = normaliser
        self.num_services, self.num_features = normaliser.shape
        self.window = _int("window", window, 1)
        if not isinstance(freeze_on_alarm, bool) or not isinstance(fast, bool):
            raise ValueError("freeze_on_alarm and fast must be True or False")
        self.freeze_on_alarm, self.fast = freeze_on_alarm, fast
        if metric_names is None:
            metric_names = METRICS if self.num_features == len(METRICS) else [f"m{i}" for i in range(self.num_features)]
        self.metric_names = tuple(str(m) for m in metric_names)
        if len(self.metric_names) != self.num_features:
            raise ValueError(f"metric_names has {len(self.metric_names)} names for F = {self.num_features} metrics")
        try:
            self.edge_index = check_edge_index(edge_index, self.num_services)
        except ValueError as exc:
            raise ValueError(f"edge_index does not fit the normaliser's N = {self.num_services}: {exc}") from None
        self.calibration = _int("calibration", calibration, 1)
        spot = (spot_q, spot_level, self.calibration)
        self.risk_gate = _StreamThreshold("risk_threshold", risk_threshold, *spot, logit=True)
        self.cascade_gate = _StreamThreshold("cascade_threshold", cascade_threshold, *spot)
        self._check_detector(drift)
        self.drift = drift
        self.device = resolve_device(device)
        self._cascade = _Cascade(self.edge_index, self.num_services)
        # one tensor for the naive path: TemporalGAT caches its union graph per edge_index tensor
        self._edge_tensor = torch.from_numpy(self.edge_index.copy()).to(self.device)
        self._graph_fp = graph_fingerprint(self.edge_index, self.num_services)
        n, f, s = self.num_services, self.num_features, self.window
        # The rolling RAW window (what swap_model re-encodes from), its mask and its normalised form.
        self.raw = np.full((s, n, f), np.nan, dtype=np.float64)
        self.mask = np.zeros((s, n, f), dtype=bool)
        self.normalised = np.full((s, n, f), np.nan, dtype=np.float32)
        self._inputs = np.zeros((n, 2 * f), dtype=np.float32)  # reused every step
        self._inputs_t = torch.from_numpy(self._inputs)
        self.step_count = 0
        self.model_version: str | None = None
        self._set_model(model, model_version)

    def _check_detector(self, drift: Any) -> None:
        """A detector must watch these ``N`` services and metrics: found now, not halfway through a step."""
        if drift is None:
            return
        missing = [
            name for name in ("update", "state_dict", "load_state_dict") if not callable(getattr(drift, name, None))
        ]
        if missing:
            raise ValueError(
                f"drift must be a drift detector (update, state_dict, load_state_dict); it lacks {missing}"
            )
        n = getattr(drift, "num_services", self.num_services)
        names = tuple(getattr(drift, "metric_names", self.metric_names))
        if n != self.num_services or names != self.metric_names:
            raise ValueError(
                f"the drift detector watches {n} services and metrics {list(names)}, the monitor {self.num_services} "
                f"and {list(self.metric_names)}; build it as DriftDetector(N, metric_names) with the monitor's"
            )

    # -- model ------------------------------------------------------------------------------------
    def _set_model(self, model: nn.Module, version: str | None) -> None:
        want = getattr(model, "num_features", None)
        if want != self.num_features or not hasattr(model, "rnn"):
            raise ValueError(
                f"model must be a TemporalGAT reading F = {self.num_features} metrics per service (the normaliser's), "
                f"got {type(model).__name__} with num_features={want!r}"
            )
        if version is not None and not isinstance(version, str):
            raise ValueError(f"model_version must be a string (e.g. 'v0002') or None, got {version!r}")
        model.to(self.device).eval()
        self.model = model
        self.model_version = version
        self._model_fp = model_fingerprint(model)
        self._path = _SnapshotModel(model, self.edge_index, self.num_services, self.window, self.device)
        self._rebuild_cache()

    def _rebuild_cache(self) -> None:
        """Encode the snapshots of the current window again (after a model swap)."""
        with torch.inference_mode():
            for t in range(max(0, self.step_count - self.window), self.step_count):
                slot = t % self.window
                self._fill_inputs(self.normalised[slot], self.mask[slot])
                self._path.encode(self._inputs_t.to(self.device), slot)
            self._path.restore(self.step_count - 1)

    def swap_model(
        self, model: nn.Module, version: str, *, normaliser: OnlineNormaliser | None = None, recalibrate: bool = True
    ) -> None:
        """Score with ``model`` from the next step on, recorded as ``version``.

        The gate cache is rebuilt for the new model from the rolling window, so the next step's
        risk is what the new model gives on that window. ``normaliser``: a new
        :class:`OnlineNormaliser` (same ``[N, F]``) for a model trained on other statistics; the
        raw window is then normalised again with it. Without it the window keeps its normalised values.
        ``recalibrate`` (default): both SPOT thresholds start calibrating again on the new model's
        scores (a tail fitted to the old model's risk does not describe the new one's: kept, a
        retrained model alarmed on 288 of its first 289 steps in notebook 07's smoke run); call
        :meth:`calibrate` after the swap to fit them on known-normal scores at once instead.
        """
        if not isinstance(version, str) or not version:
            raise ValueError(f"version must be a non-empty string naming the model (e.g. 'v0002'), got {version!r}")
        if normaliser is not None:
            if not isinstance(normaliser, OnlineNormaliser) or normaliser.shape != self.normaliser.shape:
                raise ValueError(
                    f"normaliser must be an OnlineNormaliser of shape {self.normaliser.shape}, got {normaliser!r}"
                )
        old = (self.model, self.model_version, self._model_fp, self._path, self.normaliser, self.normalised.copy())
        try:
            if normaliser is not None:
                self.normaliser = normaliser
                for t in range(max(0, self.step_count - self.window), self.step_count):
                    slot = t % self.window
                    self.normalised[slot] = normaliser.transform(self.raw[slot])
            self._set_model(model, version)
        except Exception:
            self.model, self.model_version, self._model_fp, self._path, self.normaliser, self.normalised[:] = old
            raise
        if recalibrate:
            self.risk_gate.restart()
            self.cascade_gate.restart()

    def calibrate(self, *, risk: Any = None, cascade: Any = None) -> None:
        """Fit the SPOT thresholds now on known-normal scores instead of the stream's first steps.

        ``risk [K]``: per-step MAXIMUM risk over services on normal steps; ``cascade [K]``: cascade
        scores of normal steps (e.g. validation steps outside incidents: labels of the training
        period are known, and a SPOT calibrated on a span with incidents learns the incidents as its
        tail and then barely alarms).
        """
        if risk is not None:
            self.risk_gate.calibrate(risk)
        if cascade is not None:
            self.cascade_gate.calibrate(cascade)

    # -- one step ---------------------------------------------------------------------------------
    def _check_step(self, x_t: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
        """``x_t`` and ``mask`` as float64 ``[N, F]`` and bool ``[N, F]``, or a ValueError with the fix."""
        if isinstance(x_t, Tensor):
            x_t = x_t.detach().cpu().numpy()
        arr = np.asarray(x_t)
        n, f = self.num_services, self.num_features
        if arr.dtype.kind not in "iuf":
            raise ValueError(f"x_t must be a numeric array [N, F] = ({n}, {f}), got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise ValueError(
                f"x_t must be ONE step [N, F] = ({n}, {f}) (services, metrics), got shape {arr.shape}; "
                "feed a series [T, N, F] one step at a time: for x in series: monitor.step(x)"
            )
        if arr.shape[0] != n:
            raise ValueError(
                f"x_t has {arr.shape[0]} services but this monitor watches N = {n} (its graph and normaliser); "
                "an unknown or missing service is not guessed: send all N rows in the graph's order with mask False "
                "for services that did not report, or build a new monitor (and model normaliser) for the new topology"
            )
        if arr.shape[1] != f:
            raise ValueError(
                f"x_t has {arr.shape[1]} metrics per service but the model reads F = {f} "
                f"({', '.join(self.metric_names)}); "
                "send the same metrics in the same order, with mask False for any that are missing"
            )
        x = arr.astype(np.float64)
        finite = np.isfinite(x)
        if mask is None:
            if not finite.all():
                bad = int((~finite).sum())
                first = tuple(int(i) for i in np.argwhere(~finite)[0])
                raise ValueError(
                    f"x_t has {bad} NaN or infinite value(s) (first at [service, metric] {first}) and no mask; "
                    "pass mask=np.isfinite(x_t) (True = observed) so missing values reach the model as missing, "
                    "never as numbers"
                )
            return x, finite
        if isinstance(mask, Tensor):
            mask = mask.detach().cpu().numpy()
        m = np.asarray(mask)
        if m.shape != (n, f) or m.dtype != np.bool_:
            raise ValueError(
                f"mask must be a bool array [N, F] = ({n}, {f}) (True = observed), got {m.dtype} {m.shape}; "
                "e.g. mask=np.isfinite(x_t)"
            )
        bad = m & ~finite
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"x_t has {int(bad.sum())} NaN or infinite value(s) where mask says observed (first at "
                f"[service, metric] {first}); set mask False there (missing) or send real readings"
            )
        return x, m.copy()

    def _fill_inputs(self, z: np.ndarray, m: np.ndarray) -> None:
        """The model's input for one snapshot, ``[N, 2F]``: values (0 where unobserved), then the mask."""
        f = self.num_features
        np.copyto(self._inputs[:, :f], np.where(m, z, np.float32(0.0)))
        np.copyto(self._inputs[:, f:], m)

    def _window_slots(self) -> list[int]:
        t = self.step_count  # the step just stored
        return [(t - self.window + 1 + i) % self.window for i in range(self.window)]

    def _full_forward_logits(self) -> Tensor:
        """Logits ``[N]`` of ``TemporalGAT.forward`` on the window ending at the step just stored (``fast=False``)."""
        slots = self._window_slots()
        x = torch.from_numpy(self.normalised[slots][None]).to(self.device)
        m = torch.from_numpy(self.mask[slots][None]).to(self.device)
        return self.model(x, self._edge_tensor, m).logits[0]

    def step(self, x_t: Any, mask: Any = None) -> StepResult:
        """Feed one step ``x_t [N, F]`` (raw telemetry; NaN allowed only where ``mask [N, F]`` is False).

        Returns the :class:`StepResult` of this step. A step refused with a ValueError changes nothing.
        """
        x, m = self._check_step(x_t, mask)
        t, slot, n = self.step_count, self.step_count % self.window, self.num_services
        z = self.normaliser.transform(x)
        self.raw[slot], self.mask[slot], self.normalised[slot] = x, m, z
        full = t >= self.window - 1  # a whole window is in: a risk to report
        logits = risk = cascade = risk_thr = cascade_thr = None
        with torch.inference_mode():
            if self.fast:
                self._fill_inputs(z, m)
                self._path.encode(self._inputs_t.to(self.device), slot)
                self._path.advance(t)
                if full:
                    logits = self._path.risk_logits(t)
            elif full:
                logits = self._full_forward_logits()
        alarms = np.zeros(n, dtype=bool)
        system_alarm = False
        if full:
            risk = torch.sigmoid(logits.float()).double().cpu().numpy()
            cascade = self._cascade(risk)
            risk_thr = self.risk_gate.current()
            peak = float(risk.max())
            if self.risk_gate.update(peak):  # never while calibrating: then risk_thr is None
                alarms = risk > risk_thr
            cascade_thr = self.cascade_gate.current()
            system_alarm = self.cascade_gate.update(cascade)
        learn = None
        if self.freeze_on_alarm and (system_alarm or alarms.any()):
            learn = np.zeros(n, dtype=bool) if system_alarm else ~alarms
        self.normaliser.update(x, m, learn)
        self.step_count = t + 1  # the monitor's step is complete before the detector sees it
        drift = None
        if self.drift is not None:
            scores = {} if risk is None else {"max_risk": float(risk.max()), "cascade": float(cascade)}
            values = np.where(m, x, np.nan)
            drift = self.drift.update(t, values, m, scores)
        return StepResult(t, risk, cascade, alarms, system_alarm, drift, self.model_version, risk_thr, cascade_thr)

    def run(self, x: Any, mask: Any = None) -> list[StepResult]:
        """:meth:`step` over every step of ``x [T, N, F]`` (``mask [T, N, F]`` or None), in order."""
        arr = np.asarray(x)
        if arr.ndim != 3:
            raise ValueError(f"x must be a series [T, N, F], got shape {arr.shape}; use step() for one step")
        m = None if mask is None else np.asarray(mask)
        return [self.step(arr[i], None if m is None else m[i]) for i in range(arr.shape[0])]

    # -- state ------------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The constructor's settings (besides model, graph, normaliser, detector), as saved in the state."""
        return {
            "window": self.window,
            "metric_names": list(self.metric_names),
            "freeze_on_alarm": self.freeze_on_alarm,
            "risk_threshold": self.risk_gate.settings(),
            "cascade_threshold": self.cascade_gate.settings(),
            "spot_q": self.risk_gate.q,
            "spot_level": self.risk_gate.level,
            "calibration": self.calibration,
            "fast": self.fast,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (see the module docstring); arrays and plain values only."""
        return {
            "format": STATE_FORMAT,
            "settings": self.settings(),
            "model": dict(self._model_fp),
            "graph": dict(self._graph_fp),
            "model_version": self.model_version,
            "step": self.step_count,
            "raw": self.raw.copy(),
            "mask": self.mask.copy(),
            "normalised": self.normalised.copy(),
            "gates": self._path.export_gates().detach().cpu().numpy().copy(),
            "normaliser": self.normaliser.state_dict(),
            "risk_threshold": self.risk_gate.state_dict(),
            "cascade_threshold": self.cascade_gate.state_dict(),
            "drift": None if self.drift is None else self.drift.state_dict(),
        }

    def _check_fits(self, state: Mapping[str, Any], where: str) -> None:
        _check_state_fits(
            state, where, self._model_fp, self._graph_fp, self.window, self.metric_names, self.drift is not None
        )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`state_dict` of a monitor of the same model and graph).

        Refused (:class:`~tgad_lite.monitor.state.StateError`, nothing changed) for a state of
        another model, graph, window or metrics, or with/without a detector when this one differs.
        """
        self._check_fits(state, "the state")
        n, f, s = self.num_services, self.num_features, self.window
        raw = np.asarray(state["raw"], dtype=np.float64)
        mask = np.asarray(state["mask"])
        normalised = np.asarray(state["normalised"], dtype=np.float32)
        gates = np.asarray(state["gates"], dtype=np.float32)
        if raw.shape != (s, n, f) or mask.shape != (s, n, f) or mask.dtype != np.bool_ or normalised.shape != (s, n, f):
            raise StateError(f"the state's window arrays do not have shape {(s, n, f)}: a damaged state")
        if gates.shape != self._path.ring_shape:
            want = self._path.ring_shape
            raise StateError(f"the state's gate cache has shape {gates.shape}, expected {want}: a damaged state")
        normaliser = OnlineNormaliser.from_state(state["normaliser"])
        if normaliser.shape != (n, f):
            raise StateError(f"the state's normaliser is {normaliser.shape}, the monitor ({n}, {f})")
        risk_gate = _StreamThreshold("risk_threshold", "spot", 1e-3, 0.98, 1, logit=True)
        cascade_gate = _StreamThreshold("cascade_threshold", "spot", 1e-3, 0.98, 1)
        risk_gate.load_state_dict(state["risk_threshold"])
        cascade_gate.load_state_dict(state["cascade_threshold"])
        if self.drift is not None:
            self.drift.load_state_dict(state["drift"])  # refuses a state of another shape/config itself
        self.raw[:], self.mask[:], self.normalised[:] = raw, mask, normalised
        with torch.inference_mode():
            self._path.import_gates(torch.from_numpy(gates))
            self._path.restore(int(state["step"]) - 1)
        self.normaliser, self.risk_gate, self.cascade_gate = normaliser, risk_gate, cascade_gate
        self.step_count = int(state["step"])
        self.model_version = state["model_version"]

    def save(self, path: str | os.PathLike, *, extra: Mapping[str, Any] | None = None) -> Path:
        """Write :meth:`state_dict` to ``path`` (``.npz``) atomically (temporary file, then ``os.replace``).

        ``extra``: the caller's own notes (plain values), kept under the state's ``"extra"`` key
        (e.g. where in a series the monitor started); :meth:`load` ignores them.
        """
        return save_state(path, {**self.state_dict(), "extra": dict(extra or {})})

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        model: nn.Module,
        edge_index: Any,
        *,
        drift: DriftDetectorLike | None = None,
        device: str | torch.device = "cpu",
    ) -> Monitor:
        """A monitor continuing from the state saved at ``path``, scoring with ``model`` on ``edge_index``.

        Refuses (:class:`~tgad_lite.monitor.state.StateError`) a state saved for another model
        (config or weights) or another graph; ``drift``: the detector to restore (required exactly
        when the state holds one).
        """
        state = load_state(path)
        settings = dict(state.get("settings", {}))
        num_services = state.get("graph", {}).get("num_services")
        try:
            edges = check_edge_index(edge_index, int(num_services))
        except (TypeError, ValueError) as exc:
            raise StateError(f"{path} was saved for another graph ({exc})") from None
        graph_fp = graph_fingerprint(edges, int(num_services))
        _check_state_fits(state, str(path), model_fingerprint(model), graph_fp, None, None, drift is not None)
        normaliser = OnlineNormaliser.from_state(state["normaliser"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the thresholds are replaced by the saved ones below
            monitor = cls(
                model,
                edge_index,
                normaliser=normaliser,
                window=settings["window"],
                metric_names=settings["metric_names"],
                drift=drift,
                freeze_on_alarm=settings["freeze_on_alarm"],
                risk_threshold=settings["risk_threshold"],
                cascade_threshold=settings["cascade_threshold"],
                spot_q=settings["spot_q"],
                spot_level=settings["spot_level"],
                calibration=settings["calibration"],
                model_version=state.get("model_version"),
                device=device,
                fast=settings["fast"],
            )
        monitor._check_fits(state, str(path))
        monitor.load_state_dict(state)
        return monitor

    def __repr__(self) -> str:
        return (
            f"Monitor(N={self.num_services}, F={self.num_features}, window={self.window}, step={self.step_count}, "
            f"model_version={self.model_version!r}, normaliser={self.normaliser!r})"
        )
