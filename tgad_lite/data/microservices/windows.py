"""Sliding windows over service telemetry, leakage-free time splits, robust per-service normalisation.

A model that scores risk per service reads a *window* of the last ``S`` steps of every service and
predicts the label at the window's LAST step (the risk target): ``x [B, S, N, F]`` ->
``labels [B, N]``. This module cuts those windows out of a
:class:`~tgad_lite.data.microservices.Telemetry` without copying (strided views) and splits a series
into train / validation / test by time so that no window straddles a cut.

- :func:`make_windows`: windows of one span as a :class:`ServiceWindows`.
- :func:`time_split`: three disjoint time spans, windows inside each, normalised with statistics
  of the training span only (:class:`TimeSplit`).
- :func:`robust_center_scale`: NaN-aware median and a robust standard deviation (IQR or MAD
  based) along one axis; :func:`fit_service_normaliser` / :class:`ServiceNormaliser` use it per
  service and metric. The risk baselines and root-cause rules share it.

NumPy only, like the rest of the data layer; missing values stay NaN (never zero-filled) and the
mask travels with them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "ROBUST_METHODS",
    "ServiceNormaliser",
    "ServiceWindows",
    "TimeSplit",
    "fit_service_normaliser",
    "make_windows",
    "robust_center_scale",
    "time_split",
]

ROBUST_METHODS = ("iqr", "mad")
# Both scales are made consistent with the standard deviation of a normal distribution, so a
# robust z-score reads like an ordinary one: IQR = 1.349 sigma, MAD = sigma / 1.4826.
_IQR_TO_SIGMA = 1.0 / 1.3489795003921634
_MAD_TO_SIGMA = 1.482602218505602


# ----------------------------------------------------------------------------- robust statistics


def _sorted_quantile(sorted_values: np.ndarray, count: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` (linear interpolation, NumPy's default) along axis 0 of values sorted with
    NaN last, ``count`` finite values per column. Columns with ``count == 0`` give NaN."""
    pos = (np.maximum(count, 1) - 1) * q
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    v_lo = np.take_along_axis(sorted_values, lo[None], axis=0)[0]
    v_hi = np.take_along_axis(sorted_values, hi[None], axis=0)[0]
    out = v_lo + (v_hi - v_lo) * (pos - lo)
    return np.where(count > 0, out, np.nan)


def robust_center_scale(
    values: Any, axis: int = 0, method: Literal["iqr", "mad"] = "iqr", min_count: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """NaN-aware median and robust standard deviation of ``values`` along ``axis``.

    ``method="iqr"``: scale = interquartile range / 1.349; ``"mad"``: scale = 1.4826 * median
    absolute deviation from the median. Both equal the standard deviation for normal data and
    ignore a minority of outliers (incidents in a training span). NaN entries are missing and
    skipped. Returns ``(center, scale)`` float64, shaped like ``values`` without ``axis``; both
    are NaN where fewer than ``min_count`` values are finite. A constant column has scale 0:
    callers decide how to floor it. Sorting replaces ``np.nanmedian`` (a Python loop over
    columns, and a warning per all-NaN column).
    """
    v = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    if method not in ROBUST_METHODS:
        raise ValueError(f"method must be one of {'|'.join(ROBUST_METHODS)}, got {method!r}")
    if v.shape[0] == 0:
        raise ValueError("values has no entries along axis; robust statistics need at least one value")
    finite = np.isfinite(v)
    v = np.where(finite, v, np.nan)  # +-inf count as missing too: they have no location
    count = finite.sum(axis=0)
    ordered = np.sort(v, axis=0)  # NaN sort last
    center = _sorted_quantile(ordered, count, 0.5)
    if method == "iqr":
        scale = (_sorted_quantile(ordered, count, 0.75) - _sorted_quantile(ordered, count, 0.25)) * _IQR_TO_SIGMA
    else:
        dev = np.sort(np.abs(v - center), axis=0)
        scale = _sorted_quantile(dev, count, 0.5) * _MAD_TO_SIGMA
    enough = count >= max(int(min_count), 1)
    return np.where(enough, center, np.nan), np.where(enough, scale, np.nan)


@dataclass(frozen=True)
class ServiceNormaliser:
    """Per service and metric ``(x - center) / scale``, statistics from a training span.

    ``center [N, F]`` is the training median, ``scale [N, F]`` the IQR / 1.349 (a standard
    deviation for normal data). A (service, metric) never observed in training has center 0 and
    scale 1; one constant in training keeps scale 1 (centred, not scaled, as
    :class:`tgad_lite.anomaly.protocol.Normaliser` does), so a later change shows in raw units
    instead of dividing by zero. Build it with :func:`fit_service_normaliser`.
    """

    center: np.ndarray
    scale: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, F)``."""
        return (int(self.center.shape[0]), int(self.center.shape[1]))

    def transform(self, x: Any) -> np.ndarray:
        """``x [..., N, F]`` normalised, float32 (a new array); NaN stays NaN."""
        arr = np.asarray(x)
        if arr.ndim < 2 or arr.shape[-2:] != self.shape:
            raise ValueError(
                f"x must end in (N, F) = {self.shape} like the training span, got shape {arr.shape}; "
                "normalise telemetry of the same services and metrics, or fit a new normaliser"
            )
        return ((arr - self.center) / self.scale).astype(np.float32)

    __call__ = transform


def fit_service_normaliser(x: Any, mask: Any = None) -> ServiceNormaliser:
    """Fit a :class:`ServiceNormaliser` on ``x [T, N, F]`` (a training span only).

    ``mask [T, N, F]`` (True = observed; default: the finite entries) marks what counts; values
    outside it are ignored whatever they hold.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise ValueError(f"x must be [T, N, F] with T >= 1 steps, got shape {arr.shape}")
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != arr.shape or m.dtype != np.bool_:
            raise ValueError(f"mask must be a bool array shaped like x {arr.shape}, got {m.dtype} {m.shape}")
        arr = np.where(m, arr, np.nan)
    center, scale = robust_center_scale(arr, axis=0, method="iqr")
    never = np.isnan(center)
    constant = ~never & (scale <= 1e-12 * np.maximum(1.0, np.abs(center)))
    center = np.where(never, 0.0, center)
    scale = np.where(never | constant, 1.0, scale)
    return ServiceNormaliser(center=center, scale=scale)


# ----------------------------------------------------------------------------- windows


@dataclass(frozen=True, eq=False)
class ServiceWindows:
    """``B`` windows of ``S`` steps over ``N`` services and ``F`` metrics.

    - ``x``: ``[B, S, N, F]`` float32, NaN where unobserved (``mask`` False).
    - ``mask``: ``[B, S, N, F]`` bool, True = observed.
    - ``labels``: ``[B, N]`` int8, each service's label at the window's LAST step (the risk target).
    - ``t_end``: ``[B]`` int64, the series step of each window's last step.

    From :func:`make_windows` the arrays are read-only strided views of the series (windows
    overlap and share memory, nothing is copied). :meth:`take` copies a batch into new,
    contiguous, writable arrays, which is what ``torch.from_numpy`` wants.
    """

    x: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    t_end: np.ndarray

    def __post_init__(self) -> None:
        if self.x.ndim != 4:
            raise ValueError(f"x must be [B, S, N, F], got shape {self.x.shape}")
        b, _, n, _ = self.x.shape
        if self.mask.shape != self.x.shape or self.mask.dtype != np.bool_:
            raise ValueError(f"mask must be a bool array shaped like x {self.x.shape}, got {self.mask.dtype}")
        if self.labels.shape != (b, n):
            raise ValueError(f"labels must be [B, N] = {(b, n)}, got {self.labels.shape}")
        if self.t_end.shape != (b,):
            raise ValueError(f"t_end must be [B] = ({b},), got {self.t_end.shape}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def window(self) -> int:
        """``S``, steps per window."""
        return int(self.x.shape[1])

    @property
    def num_services(self) -> int:
        return int(self.x.shape[2])

    @property
    def num_metrics(self) -> int:
        return int(self.x.shape[3])

    def take(self, indices: Any) -> ServiceWindows:
        """The windows at ``indices`` (ints or a bool mask over ``B``) as new contiguous arrays."""
        idx = np.asarray(indices)
        if idx.dtype == np.bool_:
            if idx.shape != (len(self),):
                raise ValueError(f"a bool selection must have one entry per window ({len(self)}), got {idx.shape}")
        elif idx.size and idx.dtype.kind not in "iu":
            raise ValueError(f"indices must be ints or a bool mask, got dtype {idx.dtype}")
        else:
            idx = idx.astype(np.int64).reshape(-1)
        # Fancy indexing copies, and np.ascontiguousarray makes the copy C-ordered.
        return ServiceWindows(
            x=np.ascontiguousarray(self.x[idx]),
            mask=np.ascontiguousarray(self.mask[idx]),
            labels=np.ascontiguousarray(self.labels[idx]),
            t_end=np.ascontiguousarray(self.t_end[idx]),
        )


def _as_step(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    return int(value)


def _series(telemetry: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x [T, N, F]``, ``mask [T, N, F]`` and ``labels [T, N]`` of a Telemetry-like object, checked."""
    try:
        x, mask, labels = telemetry.x, telemetry.mask, telemetry.labels
    except AttributeError:
        raise TypeError(
            f"telemetry must be a Telemetry (from simulate) or have .x [T, N, F], .mask and .labels [T, N], "
            f"got {type(telemetry).__name__}"
        ) from None
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"telemetry.x must be [T, N, F], got shape {x.shape}")
    mask = np.isfinite(x) if mask is None else np.asarray(mask)
    if mask.shape != x.shape or mask.dtype != np.bool_:
        raise ValueError(f"telemetry.mask must be a bool array shaped like x {x.shape}, got {mask.dtype} {mask.shape}")
    labels = np.asarray(labels)
    if labels.shape != x.shape[:2]:
        raise ValueError(f"telemetry.labels must be [T, N] = {x.shape[:2]}, got {labels.shape}")
    return x, mask, labels


def _windows_of(
    x: np.ndarray, mask: np.ndarray, labels: np.ndarray, window: int, stride: int, start: int, stop: int
) -> ServiceWindows:
    # sliding_window_view puts the window axis last ([T', N, F, S]) and is read-only; moving it to
    # axis 1 and striding are views too, so B windows cost no memory beyond the series.
    xs = np.lib.stride_tricks.sliding_window_view(x[start:stop], window, axis=0)
    ms = np.lib.stride_tricks.sliding_window_view(mask[start:stop], window, axis=0)
    xs = np.moveaxis(xs, -1, 1)[::stride]
    ms = np.moveaxis(ms, -1, 1)[::stride]
    lab = labels[start + window - 1 : stop : stride].view()
    lab.flags.writeable = False
    t_end = np.arange(start + window - 1, stop, stride, dtype=np.int64)
    return ServiceWindows(x=xs, mask=ms, labels=lab, t_end=t_end)


def make_windows(
    telemetry: Any, window: int, stride: int = 1, start: int = 0, stop: int | None = None
) -> ServiceWindows:
    """All windows of ``window`` steps lying entirely inside steps ``[start, stop)``.

    Window ``b`` covers steps ``[t_end[b] - window + 1, t_end[b]]`` with
    ``t_end = start + window - 1, start + window - 1 + stride, ...`` up to ``stop - 1``, so
    ``B = (stop - start - window) // stride + 1``. ``x`` keeps the telemetry's dtype (float32
    from ``simulate``) and its NaN; ``labels`` are each service's label at ``t_end``. No copy
    and no Python loop over windows: the arrays are strided views (see :class:`ServiceWindows`).
    """
    x, mask, labels = _series(telemetry)
    steps = x.shape[0]
    window, stride, start = _as_step(window, "window"), _as_step(stride, "stride"), _as_step(start, "start")
    stop = steps if stop is None else _as_step(stop, "stop")
    if window < 1:
        raise ValueError(f"window must be >= 1 step, got {window}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1 step, got {stride}")
    if not 0 <= start < stop <= steps:
        raise ValueError(f"make_windows(start={start}, stop={stop}) needs 0 <= start < stop <= {steps} (the series)")
    if stop - start < window:
        raise ValueError(
            f"steps [{start}, {stop}) hold {stop - start} steps, fewer than one window of {window}; "
            "lower window or widen the span"
        )
    return _windows_of(x, mask, labels, window, stride, start, stop)


@dataclass(frozen=True, eq=False)
class TimeSplit:
    """Train, validation and test windows from disjoint time spans (see :func:`time_split`).

    ``spans``: the three ``(start, stop)`` step spans (stop exclusive) the windows lie in.
    ``normaliser``: fitted on the training span only and applied to all three (``None`` when
    ``time_split(normalise=False)``).
    """

    train: ServiceWindows
    val: ServiceWindows
    test: ServiceWindows
    spans: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    normaliser: ServiceNormaliser | None


def time_split(
    telemetry: Any,
    window: int,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    *,
    stride: int = 1,
    normalise: bool = True,
) -> TimeSplit:
    """Split a series by time into train / validation / test windows, with no window straddling a cut.

    The ``T`` steps are cut at ``c1 = round(f_train * T)`` and ``c2 = round((f_train + f_val) * T)``
    into the spans ``[0, c1)``, ``[c1, c2)``, ``[c2, T)``, and each part gets the windows lying
    entirely inside its span (:func:`make_windows`). So the first ``window - 1`` steps after each
    cut are input context only, never a target: between the last training target ``c1 - 1`` and
    the first validation target ``c1 + window - 1`` a gap of ``window - 1`` target steps is
    dropped (likewise at ``c2``). A window that reached back across the cut would feed the model
    steps from the other part.

    ``normalise=True`` fits a :class:`ServiceNormaliser` on the observed training steps only and
    applies it to the whole series once (one float32 copy); the windows are views of that. Labels
    and the mask are never normalised.
    """
    x, mask, labels = _series(telemetry)
    steps = x.shape[0]
    window, stride = _as_step(window, "window"), _as_step(stride, "stride")
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1 step, got window={window}, stride={stride}")
    try:
        fr = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise TypeError(f"fractions must be three numbers (train, val, test), got {fractions!r}") from None
    if len(fr) != 3 or not all(math.isfinite(f) and f > 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three positive numbers (train, val, test) summing to 1, got {fractions!r}")
    c1 = int(round(fr[0] * steps))
    c2 = int(round((fr[0] + fr[1]) * steps))
    spans = ((0, c1), (c1, c2), (c2, steps))
    for part, (lo, hi) in zip(("train", "val", "test"), spans, strict=True):
        if hi - lo < window:
            raise ValueError(
                f"the {part} span [{lo}, {hi}) holds {hi - lo} steps, fewer than one window of {window}; "
                f"simulate more steps (T = {steps} now), raise its fraction or lower window"
            )
    normaliser = None
    if normalise:
        normaliser = fit_service_normaliser(x[:c1], mask[:c1])
        x = normaliser.transform(x)  # NaN where unobserved stays NaN
    train, val, test = (_windows_of(x, mask, labels, window, stride, lo, hi) for lo, hi in spans)
    return TimeSplit(train=train, val=val, test=test, spans=spans, normaliser=normaliser)
