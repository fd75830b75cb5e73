"""Online normalisation for the streaming monitor: the training normaliser, adapted by Welford statistics.

What the model expects. A :class:`~tgad_lite.temporal.TemporalGAT` is trained on ROBUST z-scores:
per service and metric ``z = (x - median) / (IQR / 1.349)`` with the median and IQR of the training
span (:func:`~tgad_lite.data.microservices.fit_service_normaliser`, applied by ``time_split`` and
``graph_windows``). The monitor must feed it the same kind of numbers. Welford's running mean and
standard deviation are not those numbers: on skewed metrics (latency, error rate) the mean sits
above the median and the standard deviation differs from the IQR-based scale, so a model fed
``(x - mean) / std`` would see inputs shifted from everything it was trained on.

So the robust normaliser is the ANCHOR and Welford statistics measure how far the stream has moved
from the reference data since. Per service ``n`` and metric ``f``, with ``c0, s0`` the training
normaliser's centre and scale, ``m0, v0`` the Welford mean and variance of the reference data and
``m_t, v_t`` those of the reference data plus every value learned from the stream so far::

    center_t = c0 + (m_t - m0)            scale_t = s0 * sqrt(v_t / v0)
    z_t      = (x_t - center_t) / scale_t

Before the stream has taught anything ``m_t = m0`` and ``v_t = v0`` exactly, so the monitor starts
with exactly the training normaliser (bit for bit: the batch pipeline's numbers). A level shift of
the stream by ``d`` moves the centre by ``d``; a change of spread by a factor ``k`` multiplies the
scale by ``k``: the model keeps seeing robust z-scores of the *new* normal.

Rules:

- **Welford, numerically stable**: West's weighted form of Welford's update (mean and the sum of
  squared deviations, never a sum of squares minus a squared sum), per (service, metric), in
  float64. ``memory=None`` (default) keeps all the history (the classic running statistics: the
  stream moves the centre by ``1/n`` of a new value's deviation); ``memory=m`` forgets old values
  exponentially (each value's weight decays by ``1 - 1/m`` per later observation). Choose ``m``
  well above a day of steps, or the statistics follow the daily cycle and normalise away the very
  pattern the model learned as normal.
- **Masked values are excluded**: an unobserved entry neither moves nor decays its statistics.
- **Freezing**: :meth:`OnlineNormaliser.update` takes ``learn [N]``; the monitor passes False for
  services it alarms on (all of them on a system alarm), so an incident does not become the new
  normal (``freeze_on_alarm``).
- **The reference must agree with the freezing.** A frozen stream learns only steps without an alarm,
  so its statistics describe normal telemetry; ``m0, v0`` must then describe normal telemetry too:
  pass the reference span's mask with incident steps set False (its labels are known). A reference
  that holds incidents has the larger variance, so ``v_t / v0`` falls below 1 as the stream learns,
  the scales shrink, normal steps look larger, more alarms freeze more learning, and the error feeds
  itself (notebook 07, full profile: PR-AUC 0.607 after a traffic drift against 0.995 with an
  incident-free reference). Freezing also needs alarms: a SPOT still calibrating raises none.
- A (service, metric) never observed in the reference data keeps the training normaliser (centre
  0, scale 1 from ``fit_service_normaliser``), unadapted: there is no reference to measure a move
  from. A pair constant in the reference (variance 0) keeps its training scale.
- ``adapt=False`` never updates: the monitor then normalises exactly as the batch pipeline does.

Each snapshot is normalised ONCE, when it arrives, with the statistics in force then (learned from
the steps before it); a window therefore holds snapshots normalised with slightly different
statistics. That is what lets the monitor encode each snapshot once (see ``monitor.py``); the
exactness test builds its batch reference the same way.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from tgad_lite.data.microservices.windows import ServiceNormaliser, fit_service_normaliser

__all__ = ["OnlineNormaliser", "WelfordStats"]


class WelfordStats:
    """Running weighted mean and variance per entry of an ``[N, F]`` array (West's Welford update).

    ``weight [N, F]`` total weight of the observations (their count when nothing is forgotten),
    ``mean [N, F]``, ``m2 [N, F]`` the weighted sum of squared deviations from the mean;
    ``variance = m2 / weight`` (population variance; NaN where nothing was observed).
    ``decay`` in ``(0, 1]``: the factor an entry's old weight is multiplied by when a new value of
    it arrives (1 = plain running statistics).
    """

    def __init__(self, shape: tuple[int, int], decay: float = 1.0) -> None:
        if not (isinstance(decay, numbers.Real) and 0.0 < float(decay) <= 1.0):
            raise ValueError(f"decay must be in (0, 1] (1 = keep all history), got {decay!r}")
        self.decay = float(decay)
        self.weight = np.zeros(shape, dtype=np.float64)
        self.mean = np.zeros(shape, dtype=np.float64)
        self.m2 = np.zeros(shape, dtype=np.float64)

    def update(self, x: np.ndarray, observed: np.ndarray) -> None:
        """Add one value per entry where ``observed [N, F]`` (bool) is True; others are untouched.

        ``x [N, F]`` may hold anything (NaN) where ``observed`` is False.
        """
        if self.decay != 1.0:
            # Forget first (only entries that get a new value), then add the value with weight 1.
            np.multiply(self.weight, np.where(observed, self.decay, 1.0), out=self.weight)
            np.multiply(self.m2, np.where(observed, self.decay, 1.0), out=self.m2)
        new_weight = self.weight + observed
        safe = np.where(observed, x, self.mean)  # unobserved: a zero deviation, so nothing moves
        delta = safe - self.mean
        # where observed, new_weight >= 1; elsewhere delta is 0 and the divisor only needs to be nonzero
        self.mean += delta / np.maximum(new_weight, 1.0)
        self.m2 += delta * (safe - self.mean)
        self.weight = new_weight

    def update_many(self, x: np.ndarray, observed: np.ndarray) -> None:
        """``update`` once per step of ``x [T, N, F]`` / ``observed [T, N, F]``, in order."""
        for t in range(x.shape[0]):
            self.update(x[t], observed[t])

    @property
    def variance(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.weight > 0, self.m2 / np.where(self.weight > 0, self.weight, 1.0), np.nan)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "weight": self.weight.copy(), "mean": self.mean.copy(), "m2": self.m2.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        arrays = {k: np.asarray(state[k], dtype=np.float64) for k in ("weight", "mean", "m2")}
        for k, v in arrays.items():
            if v.shape != self.weight.shape:
                raise ValueError(f"Welford state {k} has shape {v.shape}, expected {self.weight.shape}")
        if float(state["decay"]) != self.decay:
            raise ValueError(f"Welford state has decay {state['decay']}, this one {self.decay}")
        self.weight, self.mean, self.m2 = (arrays[k].copy() for k in ("weight", "mean", "m2"))


def _check_series(x: Any, mask: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf" or arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(f"{name} must be a numeric series [T, N, F] with T, N, F >= 1, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.float64)
    if mask is None:
        m = np.isfinite(arr)
    else:
        m = np.asarray(mask)
        if m.shape != arr.shape or m.dtype != np.bool_:
            raise ValueError(f"{name} mask must be bool, shaped like {name} {arr.shape}, got {m.dtype} {m.shape}")
        if (m & ~np.isfinite(arr)).any():
            raise ValueError(f"{name} is NaN or infinite where its mask says observed; set the mask False there")
    return arr, m


class OnlineNormaliser:
    """The training normaliser as an anchor, moved by Welford statistics of the stream (module docstring).

    Args:
        normaliser: the model's training normaliser (:class:`ServiceNormaliser`, ``center``/``scale``
            ``[N, F]``): what the model expects.
        reference: ``(x [T, N, F], mask [T, N, F] or None)`` raw reference data (e.g. the training
            span) whose Welford statistics are the anchor's ``m0, v0``. Required when ``adapt``.
        adapt: update the statistics online (False: the training normaliser, fixed).
        memory: ``None`` keeps all history; an int ``m >= 2`` forgets with decay ``1 - 1/m``.

    :meth:`from_reference` fits the robust normaliser and the Welford statistics on the same span.
    """

    def __init__(
        self,
        normaliser: ServiceNormaliser,
        reference: tuple[Any, Any] | None = None,
        *,
        adapt: bool = True,
        memory: int | None = None,
    ) -> None:
        if not isinstance(normaliser, ServiceNormaliser):
            raise ValueError(
                f"normaliser must be a ServiceNormaliser (fit_service_normaliser(x_train, mask_train), or the one "
                f"saved with the model), got {type(normaliser).__name__}"
            )
        if not isinstance(adapt, bool):
            raise ValueError(f"adapt must be True or False, got {adapt!r}")
        if memory is not None and (isinstance(memory, bool) or not isinstance(memory, numbers.Integral) or memory < 2):
            raise ValueError(f"memory must be None (keep all history) or an int >= 2 steps, got {memory!r}")
        center = np.asarray(normaliser.center, dtype=np.float64)
        scale = np.asarray(normaliser.scale, dtype=np.float64)
        if center.ndim != 2 or scale.shape != center.shape:
            raise ValueError(f"normaliser center and scale must both be [N, F], got {center.shape} and {scale.shape}")
        if not (np.isfinite(center).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("normaliser center must be finite and scale finite and > 0 everywhere")
        self.adapt, self.memory = adapt, None if memory is None else int(memory)
        self.anchor_center, self.anchor_scale = center.copy(), scale.copy()
        self.stats = WelfordStats(center.shape, 1.0 if memory is None else 1.0 - 1.0 / memory)
        if reference is not None:
            if not (isinstance(reference, tuple) and len(reference) == 2):
                raise ValueError("reference must be a pair (x [T, N, F], mask [T, N, F] or None)")
            x, m = _check_series(reference[0], reference[1], "reference")
            if x.shape[1:] != center.shape:
                raise ValueError(
                    f"reference has (N, F) = {x.shape[1:]} but the normaliser {center.shape}; use the reference "
                    "data of the same services and metrics (e.g. the span the normaliser was fitted on)"
                )
            self.stats.update_many(x, m)
        elif adapt:
            raise ValueError(
                "adapt=True needs reference data to measure how the stream moves from it: pass "
                "reference=(x_ref, mask_ref) (e.g. the training span), or adapt=False for the fixed training normaliser"
            )
        self.ref_mean = self.stats.mean.copy()
        self.ref_variance = self.stats.variance
        # Pairs with a reference mean and a positive reference variance adapt their centre / scale.
        self._adapt_center = self.stats.weight > 0
        self._adapt_scale = self._adapt_center & (np.nan_to_num(self.ref_variance, nan=0.0) > 0)
        self._ref_var_safe = np.where(self._adapt_scale, self.ref_variance, 1.0)
        self._refresh()

    @classmethod
    def from_reference(
        cls, x: Any, mask: Any = None, *, adapt: bool = True, memory: int | None = None
    ) -> OnlineNormaliser:
        """Fit the robust training normaliser AND the reference Welford statistics on ``x [T, N, F]``.

        The same normaliser as ``time_split`` / ``graph_windows`` fit on that span.
        """
        arr, m = _check_series(x, mask, "reference")
        return cls(fit_service_normaliser(arr, m), (arr, m), adapt=adapt, memory=memory)

    # -- the current normalisation ----------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.anchor_center.shape[0]), int(self.anchor_center.shape[1]))

    def _refresh(self) -> None:
        """Recompute ``center`` / ``scale`` from the statistics (module docstring's formulas)."""
        if not self.adapt:
            self.center, self.scale = self.anchor_center, self.anchor_scale
            return
        shift = np.where(self._adapt_center, self.stats.mean - self.ref_mean, 0.0)
        self.center = self.anchor_center + shift
        var = self.stats.m2 / np.maximum(self.stats.weight, 1e-300)
        # A variance collapsing to 0 (a metric stuck at one value) keeps a tiny positive scale.
        ratio = np.where(self._adapt_scale, np.maximum(var, 1e-24) / self._ref_var_safe, 1.0)
        self.scale = self.anchor_scale * np.sqrt(ratio)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``x [N, F]`` (raw, NaN where unobserved) -> float32 ``(x - center) / scale``; NaN stays NaN.

        The same expression as :meth:`ServiceNormaliser.transform` (float64 arithmetic, one cast),
        so with unchanged statistics the result equals the batch pipeline's bit for bit.
        """
        return ((x - self.center) / self.scale).astype(np.float32)

    def update(self, x: np.ndarray, observed: np.ndarray, learn: np.ndarray | None = None) -> None:
        """Learn from ``x [N, F]`` where ``observed [N, F]`` and the service may be learned from.

        ``learn [N]`` bool (None: every service): False freezes that service's statistics for this
        step. Does nothing with ``adapt=False``.
        """
        if not self.adapt:
            return
        use = observed if learn is None else observed & learn[:, None]
        self.stats.update(x, use)
        self._refresh()

    # -- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Arrays and plain values only (see ``state.py``)."""
        return {
            "adapt": self.adapt,
            "memory": self.memory,
            "anchor_center": self.anchor_center.copy(),
            "anchor_scale": self.anchor_scale.copy(),
            "ref_weight": np.where(self._adapt_center, 1.0, 0.0),
            "ref_mean": self.ref_mean.copy(),
            "ref_variance": np.nan_to_num(self.ref_variance, nan=0.0),
            "stats": self.stats.state_dict(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OnlineNormaliser:
        """An :class:`OnlineNormaliser` exactly as :meth:`state_dict` saw it."""
        try:
            base = ServiceNormaliser(
                center=np.asarray(state["anchor_center"], dtype=np.float64),
                scale=np.asarray(state["anchor_scale"], dtype=np.float64),
            )
            out = cls(base, None, adapt=False, memory=state["memory"])
            out.adapt = bool(state["adapt"])
            out.ref_mean = np.asarray(state["ref_mean"], dtype=np.float64).copy()
            ref_var = np.asarray(state["ref_variance"], dtype=np.float64)
            had_ref = np.asarray(state["ref_weight"], dtype=np.float64) > 0
            if out.ref_mean.shape != out.shape or ref_var.shape != out.shape or had_ref.shape != out.shape:
                raise ValueError("reference statistics do not have the normaliser's shape")
            out.ref_variance = np.where(had_ref, ref_var, np.nan)
            out._adapt_center = had_ref
            out._adapt_scale = had_ref & (ref_var > 0)
            out._ref_var_safe = np.where(out._adapt_scale, ref_var, 1.0)
            out.stats.load_state_dict(state["stats"])
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"not an OnlineNormaliser state (missing or malformed {exc}); save it with state_dict()"
            ) from None
        out._refresh()
        return out

    def __repr__(self) -> str:
        mode = "fixed" if not self.adapt else ("all history" if self.memory is None else f"memory={self.memory}")
        return f"OnlineNormaliser(N={self.shape[0]}, F={self.shape[1]}, {mode})"
