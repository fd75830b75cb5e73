"""minGRU: a gated recurrence whose gates read the input only (Feng et al. 2024, "Were RNNs All We
Needed?", arXiv 2410.01201).

Per step ``t``, from ``h_0 = 0``::

    z_t = sigmoid(W_z x_t + b_z)           update gate, from the input alone
    h~_t = W_h x_t + b_h                   candidate state, from the input alone
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

Why it is here: a GRU's or LSTM's gates read ``h_{t-1}``, so every step of the recurrence is a
product ``h W_hh``. The streaming monitor scores windows that each restart from a zero state, so with
those cells every new telemetry step costs the window's ``S - 1`` products again (on the project's
2-core machine, at 1000 services, about 1 ms of products and gate functions that no cache can
remove: ``benchmarks/monitor.py``'s floor row). With minGRU the coefficients ``a_t = 1 - z_t`` and
``b_t = z_t * h~_t`` depend on step ``t``'s input alone: the monitor computes them once, when the
step arrives, and a window's state needs only multiply-adds ``h <- a_t * h + b_t``, no product
(the monitor keeps the steps composed, ``tgad_lite.monitor``'s ``_SnapshotModel.advance``). The
price is expressiveness: the state cannot gate itself, so what the cell can learn from a window
is a data-dependent exponential average of projected inputs (enough for risk scores that follow
recent deviations; notebook 06 measures what it costs there).

:class:`MinGRU` is called like ``nn.GRU(batch_first=True)``: ``out, h_n = cell(x [B, S, I])``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MinGRU(nn.Module):
    """One minGRU layer, batch first (module docstring).

    Args:
        input_size: ``I``, features per step.
        hidden_size: ``D``, state width.

    ``forward(x [B, S, I])`` -> ``(out [B, S, D], h_n [1, B, D])``, as ``nn.GRU(batch_first=True)``
    (``h_n[0]`` is ``out[:, -1]``). ``linear`` maps ``I -> 2D``: the gate pre-activation, then the
    candidate.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.linear = nn.Linear(self.input_size, 2 * self.hidden_size)

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x [..., I]`` -> ``(a, b)``, each ``[..., D]``: ``h_t = a_t * h_{t-1} + b_t``."""
        gate, candidate = self.linear(x).split(self.hidden_size, dim=-1)
        z = torch.sigmoid(gate)
        return 1 - z, z * candidate

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must be [B, S, {self.input_size}] (batch first), got shape {tuple(x.shape)}")
        if x.shape[1] == 0:
            raise ValueError("x has no steps (S = 0); pass at least one step")
        a, b = self.coefficients(x)
        h = b[:, 0]  # h_1 = a_1 * 0 + b_1
        states = [h]
        for t in range(1, x.shape[1]):
            h = torch.addcmul(b[:, t], a[:, t], h)  # b_t + a_t * h: the monitor's arithmetic, step for step
            states.append(h)
        return torch.stack(states, dim=1), h.unsqueeze(0)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"
