"""Anomaly labels as 0/1 per time step, and as ranges of consecutive anomalous steps.

Time-series anomaly data sets (SMD, MSL/SMAP, the microservice simulator) label every time step
0 (normal) or 1 (anomalous); a run of consecutive 1s is one anomaly *range* (an event). Plots
shade ranges and event-based metrics score them, so both :mod:`tgad_lite.viz` and
:mod:`tgad_lite.metrics` import these helpers; this module imports neither (nor torch).

Ranges are ``(start, end)`` pairs with an **inclusive** end, as the data sets publish them
(telemanom's ``labeled_anomalies.csv``, SMD's interpretation labels): ``[0, 1, 1, 0, 1]`` has the
ranges ``[(1, 2), (4, 4)]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["check_labels", "label_ranges", "ranges_to_labels"]


def _to_numpy(a: Any) -> np.ndarray:
    # Duck-typed so torch tensors (on any device) work without importing torch here.
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def check_labels(labels: Any, length: int | None = None, name: str = "labels") -> np.ndarray:
    """``labels`` (``[T]`` or ``[T, F]``; list, array or tensor of 0/1, bool or 0.0/1.0) as int8.

    Raises ``ValueError`` naming the offending value when anything is not 0 or 1 (scores,
    NaN, -1, 2, strings), and when ``length`` is given and the first axis is not that long.
    """
    lab = _to_numpy(labels)
    if lab.dtype.kind == "b":
        return lab.astype(np.int8)
    if lab.size and lab.dtype.kind not in "iuf":
        raise ValueError(
            f"{name} must be numbers 0/1 (1 = anomalous), got dtype {lab.dtype}; convert them, "
            "e.g. np.asarray(labels, dtype=int)"
        )
    if lab.size:
        ok = (lab == 0) | (lab == 1)  # NaN compares unequal to both, so it is caught here too
        if not ok.all():
            bad = lab[~ok].ravel()[0].item()
            raise ValueError(
                f"{name} must be 0/1 (1 = anomalous), found {bad!r} at position "
                f"{tuple(int(i) for i in np.argwhere(~ok)[0])}; threshold scores first "
                "(e.g. labels = (scores > threshold).astype(int))"
            )
    if length is not None and (lab.ndim == 0 or lab.shape[0] != length):
        steps = "no time axis" if lab.ndim == 0 else f"{lab.shape[0]} time steps"
        raise ValueError(f"{name} has {steps} but the values have {length}; pass one label per time step")
    return lab.astype(np.int8)


def label_ranges(labels: Any) -> list[tuple[int, int]]:
    """Maximal runs of 1s in ``labels [T]`` as ``[(start, end_inclusive), ...]`` in time order.

    ``[0, 1, 1, 0, 1] -> [(1, 2), (4, 4)]``; all zeros or empty gives ``[]``; all ones gives
    ``[(0, T - 1)]``. ``labels`` is 0/1 (int, float or bool; a tensor is fine); anything else, and
    a 2-D ``[T, F]`` array, is refused with a ``ValueError``.
    """
    lab = check_labels(labels)
    if lab.ndim != 1:
        raise ValueError(f"labels must be 1-D [T], got shape {lab.shape}; pass one column of a [T, F] array")
    # A 0 pad at both ends makes every run start with a +1 step and end with a -1 step.
    edges = np.diff(np.concatenate([[0], lab, [0]]).astype(np.int8))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def ranges_to_labels(ranges: Iterable[tuple[int, int]], length: int) -> np.ndarray:
    """0/1 labels ``[T]`` (int8, ``T = length``) with 1 on every step of every ``(start, end)`` range.

    Ends are inclusive (the inverse of :func:`label_ranges`); overlapping or touching ranges
    simply merge. Refused with a ``ValueError`` naming the range: a non-integer bound,
    ``start > end``, or a bound outside ``0 .. length - 1``.
    """
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 0:
        raise ValueError(f"length must be a non-negative int (the number of time steps), got {length!r}")
    labels = np.zeros(int(length), dtype=np.int8)
    for i, item in enumerate(ranges):
        try:
            start, end = item
        except (TypeError, ValueError):
            raise ValueError(f"range {i} is {item!r}; each range must be a (start, end_inclusive) pair") from None
        for bound in (start, end):
            if isinstance(bound, bool) or not isinstance(bound, int | np.integer):
                raise ValueError(f"range {i} {item!r}: bounds must be whole time-step indices, got {bound!r}")
        if start > end:
            raise ValueError(f"range {i} {item!r}: start > end; ranges are (start, end_inclusive) with start <= end")
        if start < 0 or end >= length:
            raise ValueError(
                f"range {i} {item!r} lies outside the series: steps run 0..{length - 1} "
                f"(length {length}); check the range or the length"
            )
        labels[int(start) : int(end) + 1] = 1
    return labels
