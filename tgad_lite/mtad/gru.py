"""A GRU for MTAD-GAT's CPU training: ``torch.nn.GRU``'s mathematics and parameters, a faster backward pass.

Why. On a laptop CPU the two GRUs (encoder over the window, VAE decoder) are most of an MTAD-GAT
training step. ``nn.GRU`` on CPU unrolls its cell through autograd: per time step a small matrix
product for the weight gradient, ``cat`` calls to re-join the three gates' gradients, and a fresh
buffer for every intermediate. Here one ``torch.autograd.Function`` runs the recurrence with the
gate equations written out and a hand-derived backward pass that

- keeps only what the backward needs (the gates and outputs, ``[W, B, H]`` each) in preallocated
  buffers;
- forms the weight gradient ``dW_hh = sum_t dg_t^T h_{t-1}`` as ONE ``[3H, W B] x [W B, H]`` product
  after the loop, instead of ``W`` small ones inside it;
- accepts an input that is the same at every step (the VAE decoder is fed its latent ``z`` at every
  step): its input projection ``W_ih z + b_ih`` is then computed once per window, ``[B, 3H]``,
  instead of once per step, ``[B, W, 3H]``, which removes about a fifth of the training step's
  arithmetic; its gradient is the sum over steps.

Equations (PyTorch's gate order ``r, z, n``; ``gi = W_ih x_t + b_ih``, ``gh = W_hh h_{t-1} + b_hh``)::

    r_t = sigmoid(gi_r + gh_r)        z_t = sigmoid(gi_z + gh_z)
    n_t = tanh(gi_n + r_t * gh_n)     h_t = (1 - z_t) * n_t + z_t * h_{t-1}

:class:`GRU` subclasses ``nn.GRU``: same parameter names (``weight_ih_l0``, ...), same
initialisation, so a state dict moves between the two and a seed gives the same weights. On CUDA
(cuDNN's fused kernels are faster than any Python-level loop) and for anything this module does not
cover (bidirectional, projections, unbatched input) it runs ``nn.GRU``'s own forward. The tests
compare outputs and every gradient with ``nn.GRU`` in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _GRULayer(torch.autograd.Function):
    """One GRU layer over time-major gates: ``gi [W, B, 3H]`` (or ``[B, 3H]`` for every step) -> ``[W, B, H]``."""

    @staticmethod
    def forward(ctx, gi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor, steps: int) -> Tensor:
        constant = gi.dim() == 2
        batch, hidden = h0.shape
        keep = any(ctx.needs_input_grad)
        # hs[0] = h0, hs[t + 1] = h_t: the outputs and, shifted by one, the h_{t-1} the backward needs.
        hs = h0.new_empty(steps + 1, batch, hidden)
        hs[0] = h0
        if keep:
            # What the backward needs, the local derivatives, computed per step while the step's
            # [B, H] values are still in cache (passes over whole [W, B, H] tensors were slower).
            rz_all = h0.new_empty(steps, batch, 2 * hidden)
            d_n = h0.new_empty(steps, batch, hidden)  # dh_t/dn_t * tanh' = (1 - z) (1 - n^2)
            d_r = h0.new_empty(steps, batch, hidden)  # d(r * gh_n)/dr * sigmoid' = gh_n r (1 - r)
            d_z = h0.new_empty(steps, batch, hidden)  # dh_t/dz_t * sigmoid' = (h_{t-1} - n) z (1 - z)
        w_t = w_hh.t()
        for t in range(steps):
            g = gi if constant else gi[t]
            h = hs[t]
            gh = torch.addmm(b_hh, h, w_t)  # [B, 3H]
            rz = torch.add(g[:, : 2 * hidden], gh[:, : 2 * hidden], out=rz_all[t] if keep else None).sigmoid_()
            r, z = rz[:, :hidden], rz[:, hidden:]
            n = torch.addcmul(g[:, 2 * hidden :], r, gh[:, 2 * hidden :]).tanh_()
            h_minus_n = h - n
            torch.addcmul(n, z, h_minus_n, out=hs[t + 1])  # (1 - z) * n + z * h_{t-1}
            if keep:
                one_minus_z = 1 - z
                torch.mul(n, n, out=d_n[t]).neg_().add_(1).mul_(one_minus_z)
                torch.mul(h_minus_n, z, out=d_z[t]).mul_(one_minus_z)
                torch.mul(gh[:, 2 * hidden :], r, out=d_r[t]).mul_(1 - r)
        if keep:
            ctx.save_for_backward(w_hh, d_n, d_r, d_z, rz_all, hs)
        ctx.constant = constant
        return hs[1:]

    @staticmethod
    def backward(ctx, d_out: Tensor):
        w_hh, d_n, d_r, d_z, rz_all, hs = ctx.saved_tensors
        steps, batch, hidden = d_n.shape
        # d_gi[t] = dLoss/d(gi_t) for (r, z, n); dLoss/d(gh_t) equals it for r and z, and is r_t * d_gi_n
        # for n (gh_n enters as r * gh_n): that third is kept apart, d_ghn.
        d_gi = d_n.new_empty(steps, batch, 3 * hidden)
        d_ghn = d_n.new_empty(steps, batch, hidden)
        w_rz, w_n = w_hh[: 2 * hidden], w_hh[2 * hidden :]
        dh = d_out[steps - 1].clone()
        for t in range(steps - 1, -1, -1):
            if t < steps - 1:
                dh.add_(d_out[t])
            g = d_gi[t]
            dn = torch.mul(dh, d_n[t], out=g[:, 2 * hidden :])
            torch.mul(dn, d_r[t], out=g[:, :hidden])
            torch.mul(dh, d_z[t], out=g[:, hidden : 2 * hidden])
            ghn = torch.mul(dn, rz_all[t, :, :hidden], out=d_ghn[t])
            dh = torch.addmm(dh * rz_all[t, :, hidden:], g[:, : 2 * hidden], w_rz).addmm_(ghn, w_n)
        h_prev = hs[:-1].reshape(steps * batch, hidden)
        d_rz = d_gi[..., : 2 * hidden].reshape(steps * batch, 2 * hidden)
        d_w_hh = torch.cat([d_rz.t() @ h_prev, d_ghn.view(steps * batch, hidden).t() @ h_prev])
        d_b_hh = torch.cat([d_rz.sum(0), d_ghn.sum(dim=(0, 1))])
        d_input = None
        if ctx.needs_input_grad[0]:
            d_input = d_gi.sum(dim=0) if ctx.constant else d_gi
        return d_input, dh, d_w_hh, d_b_hh, None


class GRU(nn.GRU):
    """``nn.GRU`` (unidirectional, with biases) with a faster CPU training path; see the module docstring.

    ``forward(x [B, W, I] (batch_first) or [W, B, I], h0=None) -> (output, h_n)`` exactly as ``nn.GRU``;
    :meth:`forward_repeated` feeds the same input ``x [B, I]`` at every one of ``steps`` steps.
    """

    def _fast(self, x: Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dim() in (2, 3)
            and self.bias
            and not self.bidirectional
            and self.proj_size == 0
            and self.mode == "GRU"
        )

    def _layers(self, gi0: Tensor, h0: Tensor | None, steps: int) -> tuple[Tensor, Tensor]:
        """Run every layer from the first layer's gates ``gi0``; returns time-major ``[W, B, H]`` and ``h_n``."""
        batch = gi0.shape[-2]
        if h0 is None:
            h0 = gi0.new_zeros(self.num_layers, batch, self.hidden_size)
        w_hh, b_hh = self.weight_hh_l0, self.bias_hh_l0
        out = _GRULayer.apply(gi0, h0[0], w_hh, b_hh, steps)
        finals = [out[-1]]
        for layer in range(1, self.num_layers):
            x = F.dropout(out, self.dropout, self.training) if self.dropout > 0 else out
            gi = F.linear(x, getattr(self, f"weight_ih_l{layer}"), getattr(self, f"bias_ih_l{layer}"))
            w_hh, b_hh = getattr(self, f"weight_hh_l{layer}"), getattr(self, f"bias_hh_l{layer}")
            out = _GRULayer.apply(gi, h0[layer], w_hh, b_hh, steps)
            finals.append(out[-1])
        return out, torch.stack(finals)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:  # noqa: A002
        if not self._fast(input) or input.dim() != 3:
            return super().forward(input, hx)
        x = input.transpose(0, 1) if self.batch_first else input  # time-major [W, B, I]
        gi = F.linear(x, self.weight_ih_l0, self.bias_ih_l0)  # [W, B, 3H], one product for all steps
        out, h_n = self._layers(gi, hx, x.shape[0])
        return (out.transpose(0, 1) if self.batch_first else out), h_n

    def forward_repeated(self, x: Tensor, steps: int, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Feed ``x [B, I]`` at each of ``steps`` steps: ``(output [B, steps, H] (batch_first), h_n)``.

        Equal to ``forward(x.unsqueeze(1).expand(-1, steps, -1))``; on CPU the first layer's input
        projection is computed once instead of once per step.
        """
        if x.dim() != 2:
            raise ValueError(f"x must be [B, I] (one input per sequence, fed at every step), got {list(x.shape)}")
        if not self._fast(x):
            seq = x.unsqueeze(1 if self.batch_first else 0).expand(
                *((-1, steps, -1) if self.batch_first else (steps, -1, -1))
            )
            return super().forward(seq, hx)
        gi = F.linear(x, self.weight_ih_l0, self.bias_ih_l0)  # [B, 3H], the same at every step
        out, h_n = self._layers(gi, hx, steps)
        return (out.transpose(0, 1) if self.batch_first else out), h_n
