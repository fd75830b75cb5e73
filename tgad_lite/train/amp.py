"""Mixed precision on CUDA, and exactly the plain float32 step everywhere else.

On a GPU, ``float16`` autocast runs matrix products on tensor cores in half precision (about
twice the throughput, half the activation memory) while keeping weights, optimiser state and
reductions in float32; a ``GradScaler`` multiplies the loss before backward so that small
gradients do not underflow in float16, and skips a step whose gradients overflowed (lowering the
scale). On the CPU nothing changes: autocast there would use bfloat16, which most CPUs run no
faster and which changes results, so it is not used.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from contextlib import AbstractContextManager

import torch

from tgad_lite.device import resolve_device
from tgad_lite.train.gradients import clip_gradients

AMP_DTYPES = (torch.float16, torch.bfloat16)


def _amp_active(device: str | torch.device, enabled: bool, dtype: torch.dtype) -> tuple[torch.device, bool]:
    if dtype not in AMP_DTYPES:
        raise ValueError(f"dtype must be torch.float16 or torch.bfloat16 (the autocast precision), got {dtype!r}")
    dev = resolve_device(device)
    return dev, bool(enabled) and dev.type == "cuda"


def autocast(
    device: str | torch.device, enabled: bool = True, dtype: torch.dtype = torch.float16
) -> AbstractContextManager:
    """``torch.autocast("cuda", dtype)`` when ``device`` is a GPU and ``enabled``; otherwise a no-op context.

    Use it around the forward pass and the loss only (not around backward or the optimiser step).
    """
    dev, active = _amp_active(device, enabled, dtype)
    return torch.autocast(dev.type, dtype=dtype) if active else contextlib.nullcontext()


class AmpStep:
    """Backward, unscale, clip and optimiser step, with a ``GradScaler`` under float16 autocast on CUDA.

    ::

        amp = AmpStep(optimizer, device)             # enabled=False or a CPU device: the plain step
        optimizer.zero_grad(set_to_none=True)
        with amp.autocast():
            loss = criterion(model(x), y)
        grad_norm, stepped = amp.step(loss, max_norm=1.0)

    ``step`` returns the gradient norm before clipping, measured on the unscaled gradients (so it
    is comparable with and without AMP), and whether the optimiser stepped. A step whose gradient
    norm is NaN or infinite is skipped on every device (the scaler does this on CUDA; elsewhere it
    is done the same way, so both paths behave alike), with ``stepped=False``: under float16 an
    early overflow is expected while the scale settles, and the caller decides whether repeated
    skips mean divergence. On the CPU, or with ``enabled=False``, the step is exactly
    ``loss.backward(); clip_gradients(...); optimizer.step()`` and autocast is a no-op.
    ``dtype=torch.bfloat16`` autocasts to bfloat16 on CUDA, which needs no scaler.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        device: str | torch.device,
        enabled: bool = True,
        dtype: torch.dtype = torch.float16,
    ) -> None:
        self.device, self.active = _amp_active(device, enabled, dtype)
        self.optimizer, self.dtype = optimizer, dtype
        use_scaler = self.active and dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler) if use_scaler else None

    def autocast(self) -> AbstractContextManager:
        """Autocast for the forward pass and the loss (a no-op unless active)."""
        return torch.autocast(self.device.type, dtype=self.dtype) if self.active else contextlib.nullcontext()

    def step(
        self, loss: torch.Tensor, params: Iterable[torch.Tensor] | None = None, max_norm: float | None = None
    ) -> tuple[float, bool]:
        """Backward ``loss``, clip the gradients of ``params`` (default: the optimiser's) to ``max_norm``, step.

        Returns ``(grad_norm, stepped)``: the norm before clipping (unscaled) and whether the
        optimiser stepped (False when that norm was NaN/inf).
        """
        if params is None:
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.scaler is None:
            loss.backward()
            norm = clip_gradients(params, max_norm)
            if not math.isfinite(norm):
                return norm, False
            self.optimizer.step()
            return norm, True
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)  # true gradients: clipping and the norm refer to them
        norm = clip_gradients(params, max_norm)
        self.scaler.step(self.optimizer)  # skipped by the scaler when any gradient is inf/NaN
        self.scaler.update()
        return norm, math.isfinite(norm)
