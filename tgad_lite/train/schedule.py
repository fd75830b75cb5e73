"""Learning-rate warmup then cosine decay, stepped once per optimiser step."""

from __future__ import annotations

import math
import numbers

import torch
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_factor: float = 0.0) -> float:
    """The factor on the base learning rate for optimiser step ``step`` (0-based).

    Warmup: ``(step + 1) / (warmup_steps + 1)`` for ``step < warmup_steps``, so the first step
    already learns a little (a factor of exactly 0 would waste it) and the ramp meets 1 at
    ``step = warmup_steps``. Then cosine from 1 down to ``min_factor``:
    ``min_factor + (1 - min_factor) * (1 + cos(pi * p)) / 2`` with ``p = (step - warmup_steps) /
    (total_steps - warmup_steps)``, so the last of ``total_steps`` steps is one step above
    ``min_factor``, which is reached at ``step = total_steps`` and held after it.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    p = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * p))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_factor: float = 0.0
) -> LambdaLR:
    """A ``LambdaLR`` with linear warmup over ``warmup_steps`` then cosine decay to ``min_factor``.

    Call its ``step()`` after every ``optimizer.step()`` (not once per epoch): ``total_steps`` is the
    number of optimiser steps in the whole training (epochs x batches per epoch). Every parameter
    group's learning rate is its base rate times :func:`warmup_cosine_factor`; on creation the
    optimiser's rates are set to the first step's (``1 / (warmup_steps + 1)`` of the base rate,
    or the full rate without warmup).
    """
    for name, value in (("warmup_steps", warmup_steps), ("total_steps", total_steps)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if total_steps <= warmup_steps:
        raise ValueError(
            f"total_steps ({total_steps}) must be greater than warmup_steps ({warmup_steps}): the cosine part "
            "needs at least one step; count total_steps as epochs x batches per epoch, or shorten the warmup"
        )
    if not isinstance(min_factor, numbers.Real) or isinstance(min_factor, bool) or not 0.0 <= min_factor <= 1.0:
        raise ValueError(
            f"min_factor must be a number in [0, 1] (the final fraction of the base rate), got {min_factor!r}"
        )
    w, t, m = int(warmup_steps), int(total_steps), float(min_factor)
    return LambdaLR(optimizer, lambda step: warmup_cosine_factor(step, w, t, m))
