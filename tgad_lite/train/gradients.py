"""Gradient norm and clipping in one call: the norm before clipping, for divergence checks and logs."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch
from torch.nn.utils import clip_grads_with_norm_, get_total_norm


def clip_gradients(params: torch.Tensor | Iterable[torch.Tensor], max_norm: float | None) -> float:
    """The L2 norm of all gradients of ``params`` together, before clipping; clip them to ``max_norm``.

    ``max_norm=None`` only measures. Gradients whose norm exceeds ``max_norm`` are scaled by
    ``max_norm / (norm + 1e-6)``, as :func:`torch.nn.utils.clip_grad_norm_` does. A NaN or infinite
    norm raises nothing and leaves the gradients untouched (scaling would only turn them all into
    NaN): the caller decides, e.g. stop training or skip the step. Parameters without a gradient
    are ignored; with none at all the norm is 0.0. One device sync (the returned float).
    """
    if max_norm is not None and (
        not isinstance(max_norm, numbers.Real) or isinstance(max_norm, bool) or not max_norm > 0
    ):
        raise ValueError(f"max_norm must be a number > 0, or None to measure without clipping; got {max_norm!r}")
    params = [params] if isinstance(params, torch.Tensor) else list(params)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = get_total_norm(grads, 2.0)
    norm = float(total)
    if max_norm is not None and math.isfinite(norm) and norm > max_norm:
        clip_grads_with_norm_([p for p in params if p.grad is not None], max_norm, total)
    return norm
