"""A GRU for MTAD-GAT's CPU training: ``torch.nn.GRU``'s mathematics and parameters, a faster backward pass.

Why. On a laptop CPU the two GRUs (encoder over the window, VAE decoder) are most of an MTAD-GAT
training step. ``nn.GRU`` on CPU unrolls its cell through autograd: per time step a small matrix
product for the weight gradient, ``cat`` calls to re-join the three gates' gradients, and a fresh
buffer for every intermediate. Here one ``torch.autograd.Function`` per layer runs the input
projection and the recurrence with the gate equations written out, and a hand-derived backward
pass that

- keeps only what the backward needs (the gates, the local derivatives and the outputs,
  ``[W, B, H]`` each) and writes every step's values into buffers allocated once per call;
- forms the weight gradients as ONE product each after the loop (``dW_hh = sum_t dgh_t^T h_{t-1}``
  is ``[3H, W B] x [W B, H]``), instead of ``W`` small ones inside it;
- accepts an input that is the same at every step (the VAE decoder is fed its latent ``z`` at every
  step): its input projection ``W_ih z + b_ih`` is then computed once per window, ``[B, 3H]``,
  instead of once per step, ``[B, W, 3H]``, which removes about a fifth of the training step's
  arithmetic; its gradient is the sum over steps;
- reuses its large scratch buffers from one call to the next (:class:`_BufferPool`). A freshly
  allocated buffer of tens of MB comes from the operating system page by page: every 4 KiB page
  is faulted in and zeroed by the kernel on its first write, every training step. Measured here
  (2-core Xeon VM, one thread), writing ``[256, 150]`` into a fresh buffer took 100-180 us against
  20 us into one written before; the training step's system time was about a quarter of its CPU time.
  The pool lives as long as the module: :meth:`GRU.release_workspace` empties it when a run of calls
  ends (``MTADGAT.fit`` and ``score`` do), or 27 kept MTAD-GAT models hold 19 GB of scratch.

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

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


class _BufferPool:
    """Scratch tensors kept from one call to the next, by shape, dtype, device and inference mode.

    :meth:`take` hands out a free tensor of the shape asked (its values are garbage) or a new one;
    :meth:`give` takes tensors back. Only buffers that never leave :class:`_GRULayer` go through it:
    per-step scratch and what the backward pass reads (given back by :func:`_lent` when autograd
    frees what it saved), never an output or a gradient. At most ``per_key``
    free tensors of one kind are kept; the pool is emptied when its module moves (``.to``,
    ``.double()``) and is not copied or pickled with it.
    """

    def __init__(self, per_key: int = 8) -> None:
        self.per_key = per_key
        self._free: dict[tuple, list[Tensor]] = {}

    @staticmethod
    def _key(shape: tuple[int, ...], like: Tensor) -> tuple:
        # Inference tensors may not be written in place outside inference mode: keep them apart.
        return (tuple(shape), like.dtype, like.device, torch.is_inference_mode_enabled())

    def take(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        free = self._free.get(self._key(shape, like))
        return free.pop() if free else like.new_empty(shape)

    def give(self, *tensors: Tensor) -> None:
        for t in tensors:
            free = self._free.setdefault(self._key(t.shape, t), [])
            if len(free) < self.per_key:
                free.append(t)

    def clear(self) -> None:
        self._free.clear()

    def __deepcopy__(self, memo: dict) -> _BufferPool:
        return type(self)(self.per_key)

    def __getstate__(self) -> dict:
        return {"per_key": self.per_key}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["per_key"])


def _lent(pool: _BufferPool, buffer: Tensor) -> Tensor:
    """A view of a pooled ``buffer`` to save for the backward pass; ``buffer`` goes back to ``pool`` with the view.

    Autograd drops what a node saved right after its backward pass (unless ``retain_graph=True``),
    or when the graph is freed without one; the view's finalizer then gives the buffer back, so
    the next training step reuses it even while the caller still holds the previous loss.
    """
    view = buffer.view(buffer.shape)
    weakref.finalize(view, pool.give, buffer).atexit = False
    return view


class _GRULayer(torch.autograd.Function):
    """One GRU layer with its input projection: ``x [W, B, I]`` (or ``[B, I]`` every step) -> ``[W, B, H]``, ``[B, H]``.

    The second output is the last state (a view of the first): the gradient of an output nobody
    used is skipped, not a tensor of zeros.
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        h0: Tensor,
        w_ih: Tensor,
        b_ih: Tensor,
        w_hh: Tensor,
        b_hh: Tensor,
        steps: int,
        pool: _BufferPool,
        keep: bool,
    ) -> tuple[Tensor, Tensor]:
        # A gradient that autograd would fill with zeros arrives as None: the encoder uses only h_n.
        ctx.set_materialize_grads(False)
        constant = x.dim() == 2
        batch, hidden = h0.shape
        two, three = 2 * hidden, 3 * hidden
        scratch = []  # given back to the pool when the loop is done
        x_copy = None
        if constant:
            gi = torch.addmm(b_ih, x, w_ih.t())  # [B, 3H], the same at every step
        else:
            if not x.is_contiguous():  # a batch-first input seen time-major: one copy, kept for the backward
                x = x_copy = pool.take(x.shape, x).copy_(x)
                if not keep:
                    scratch.append(x_copy)
            gi = pool.take((steps, batch, three), h0)  # [W, B, 3H], one product for all steps
            torch.addmm(b_ih, x.view(steps * batch, -1), w_ih.t(), out=gi.view(steps * batch, three))
            scratch.append(gi)
        # hs[0] = h0, hs[t + 1] = h_t: the outputs and, shifted by one, the h_{t-1} the backward needs.
        hs = h0.new_empty(steps + 1, batch, hidden)
        hs[0] = h0
        gh, n, h_minus_n = pool.take((batch, three), h0), pool.take((batch, hidden), h0), pool.take((batch, hidden), h0)
        scratch += [gh, n, h_minus_n]
        if keep:
            # What the backward needs, the local derivatives, computed per step while the step's
            # [B, H] values are still in cache (passes over whole [W, B, H] tensors were slower).
            rz_all = pool.take((steps, batch, two), h0)
            d_n = pool.take((steps, batch, hidden), h0)  # dh_t/dn_t * tanh' = (1 - z) (1 - n^2)
            d_r = pool.take((steps, batch, hidden), h0)  # d(r * gh_n)/dr * sigmoid' = gh_n r (1 - r)
            d_z = pool.take((steps, batch, hidden), h0)  # dh_t/dz_t * sigmoid' = (h_{t-1} - n) z (1 - z)
            one = h0.new_ones(())
        else:
            rz_step = pool.take((batch, two), h0)
            scratch.append(rz_step)
        w_t = w_hh.t()
        for t in range(steps):
            g = gi if constant else gi[t]
            h = hs[t]
            torch.addmm(b_hh, h, w_t, out=gh)  # [B, 3H]
            rz = torch.add(g[:, :two], gh[:, :two], out=rz_all[t] if keep else rz_step).sigmoid_()
            r, z = rz[:, :hidden], rz[:, hidden:]
            gh_n = gh[:, two:]
            torch.addcmul(g[:, two:], r, gh_n, out=n).tanh_()
            torch.sub(h, n, out=h_minus_n)
            torch.addcmul(n, z, h_minus_n, out=hs[t + 1])  # (1 - z) * n + z * h_{t-1}
            if keep:
                # u (1 - v) as u - u v: two operations into the step's slice, no temporaries.
                dn = torch.addcmul(one, n, n, value=-1, out=d_n[t])
                torch.addcmul(dn, dn, z, value=-1, out=dn)
                dz = torch.mul(h_minus_n, z, out=d_z[t])
                torch.addcmul(dz, dz, z, value=-1, out=dz)
                dr = torch.mul(gh_n, r, out=d_r[t])
                torch.addcmul(dr, dr, r, value=-1, out=dr)
        pool.give(*scratch)
        if keep:
            if x_copy is not None:
                x = _lent(pool, x_copy)
            ctx.save_for_backward(x, w_ih, w_hh, hs, *(_lent(pool, b) for b in (rz_all, d_n, d_r, d_z)))
            ctx.pool, ctx.constant = pool, constant
        return hs[1:], hs[-1]

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor | None, d_last: Tensor | None):
        x, w_ih, w_hh, hs, rz_all, d_n, d_r, d_z = ctx.saved_tensors
        pool = ctx.pool
        steps, batch, hidden = d_n.shape
        two, three, rows = 2 * hidden, 3 * hidden, steps * batch
        # d_gh[t] = dLoss/d(gh_t) for (r, z, n): equal to dLoss/d(gi_t) for r and z; for n it is
        # r_t * dLoss/d(gi_n) (gh_n enters as r * gh_n), and dLoss/d(gi_n) is kept apart in d_gin.
        d_gh = pool.take((steps, batch, three), d_n)
        d_gin = pool.take((steps, batch, hidden), d_n)
        dh = d_last.clone() if d_last is not None else d_n.new_zeros(batch, hidden)
        spare = torch.empty_like(dh)
        for t in range(steps - 1, -1, -1):
            if d_out is not None:
                dh.add_(d_out[t])
            g = d_gh[t]
            dn = torch.mul(dh, d_n[t], out=d_gin[t])
            torch.mul(dn, d_r[t], out=g[:, :hidden])
            torch.mul(dh, d_z[t], out=g[:, hidden:two])
            torch.mul(dn, rz_all[t, :, :hidden], out=g[:, two:])
            # dh_{t-1} = z_t dh_t + dgh_t W_hh: one product over the three gates
            nxt = torch.mul(dh, rz_all[t, :, hidden:], out=spare).addmm_(g, w_hh)
            dh, spare = nxt, dh
        d_gh2 = d_gh.view(rows, three)
        ones = d_n.new_ones(rows)  # sums over rows as products: about twice as fast as .sum(0) here
        d_w_hh = d_gh2.t() @ hs[:-1].reshape(rows, hidden)
        d_b_hh = torch.mv(d_gh2.t(), ones)
        # dLoss/d(gi) = [d_rz, d_gin], used in two parts rather than copied into one [W B, 3H] tensor.
        d_rz, d_gin2 = d_gh2[:, :two], d_gin.view(rows, hidden)
        d_x = None
        if ctx.constant:
            d_gi = torch.cat([d_gh[..., :two].sum(0), d_gin.sum(0)], dim=1)  # [B, 3H], summed over steps
            if ctx.needs_input_grad[0]:
                d_x = d_gi @ w_ih
            d_w_ih = d_gi.t() @ x
            d_b_ih = d_gi.sum(0)
        else:
            x2 = x.view(rows, -1)
            if ctx.needs_input_grad[0]:
                d_x = torch.mm(d_rz, w_ih[:two]).addmm_(d_gin2, w_ih[two:]).view(steps, batch, -1)
            d_w_ih = torch.empty_like(w_ih)
            torch.mm(d_rz.t(), x2, out=d_w_ih[:two])
            torch.mm(d_gin2.t(), x2, out=d_w_ih[two:])
            d_b_ih = torch.cat([torch.mv(d_rz.t(), ones), torch.mv(d_gin2.t(), ones)])
        pool.give(d_gh, d_gin)
        return d_x, dh, d_w_ih, d_b_ih, d_w_hh, d_b_hh, None, None, None


class GRU(nn.GRU):
    """``nn.GRU`` (unidirectional, with biases) with a faster CPU training path; see the module docstring.

    ``forward(x [B, W, I] (batch_first) or [W, B, I], h0=None) -> (output, h_n)`` exactly as ``nn.GRU``;
    :meth:`forward_repeated` feeds the same input ``x [B, I]`` at every one of ``steps`` steps.
    ``workspace`` is the buffer pool of the fast path; GRUs of one model may share one (the
    MTAD-GAT encoder and decoder do: they never run at the same time).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.workspace = _BufferPool()

    def _apply(self, fn, recurse=True):
        # Buffers of the old dtype or device would only hold memory.
        self.release_workspace()
        return super()._apply(fn, recurse)

    def release_workspace(self) -> None:
        """Free the scratch buffers kept for the next call (a few hundred MB at MTAD-GAT's sizes).

        Call it when a run of calls ends (a training, a scoring pass): a model kept afterwards would
        otherwise hold them for as long as it lives, one set per batch shape it has seen.
        """
        self._pool().clear()

    def _pool(self) -> _BufferPool:
        pool = self.__dict__.get("workspace")
        if pool is None:  # a GRU unpickled from before the pool existed
            pool = self.__dict__["workspace"] = _BufferPool()
        return pool

    def _fast(self, x: Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dim() in (2, 3)
            and self.bias
            and not self.bidirectional
            and self.proj_size == 0
            and self.mode == "GRU"
        )

    def _layers(self, x: Tensor, h0: Tensor | None, steps: int) -> tuple[Tensor, Tensor]:
        """Run every layer on ``x [W, B, I]`` (or ``[B, I]`` at every step); returns ``[W, B, H]`` and ``h_n``."""
        batch = x.shape[-2]
        if h0 is None:
            h0 = x.new_zeros(self.num_layers, batch, self.hidden_size)
        pool = self._pool()
        out, finals = x, []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0:
                out = F.dropout(out, self.dropout, self.training)
            weights = [getattr(self, f"{name}_l{layer}") for name in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")]
            # Keep what the backward needs only when there will be one (not under no_grad: scoring).
            keep = torch.is_grad_enabled() and any(t.requires_grad for t in (out, h0, *weights))
            out, last = _GRULayer.apply(out, h0[layer], *weights, steps, pool, keep)
            finals.append(last)
        return out, torch.stack(finals)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:  # noqa: A002
        if not self._fast(input) or input.dim() != 3:
            return super().forward(input, hx)
        x = input.transpose(0, 1) if self.batch_first else input  # time-major [W, B, I]
        out, h_n = self._layers(x, hx, x.shape[0])
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
        out, h_n = self._layers(x, hx, steps)
        return (out.transpose(0, 1) if self.batch_first else out), h_n
