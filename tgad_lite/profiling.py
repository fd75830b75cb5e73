"""Timing and memory of one call, model-agnostic: every function takes a zero-argument callable.

``time_call`` / ``time_interleaved`` report the median and interquartile range of wall-clock
times (``time.perf_counter``), never the mean: a single step slowed by another process moves the
mean, not the median. ``peak_memory`` reports the most bytes that tensors allocated *during* the
call held at any one time (forward and backward included). Compare implementations through ratios
measured in the same run, never through absolute numbers: both depend on the machine and its load.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_MAX_REPEATS = 10_000


@dataclass(frozen=True)
class Timing:
    """Wall-clock times of ``n`` calls, in milliseconds: median and quartiles (``iqr = q3 - q1``).

    ``samples_ms`` keeps every time in call order (for plots); quartiles are the inclusive ones.
    """

    median_ms: float
    q1_ms: float
    q3_ms: float
    n: int
    samples_ms: tuple[float, ...]

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    def __str__(self) -> str:
        return f"{self.median_ms:.1f} ms (IQR {self.iqr_ms:.1f}, n={self.n})"

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float]) -> Timing:
        if not samples_ms:
            raise ValueError("a Timing needs at least one sample")
        s = sorted(float(v) for v in samples_ms)
        if len(s) == 1:
            q1 = q3 = s[0]
        else:
            q1, _, q3 = statistics.quantiles(s, n=4, method="inclusive")
        return cls(statistics.median(s), q1, q3, len(s), tuple(float(v) for v in samples_ms))


def time_interleaved(
    fns: Mapping[str, Callable[[], Any]],
    *,
    warmup: int = 3,
    repeats: int = 10,
    min_time_s: float = 0.0,
    max_time_s: float | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Timing]:
    """Time several callables in rounds ``A B C A B C ...`` so background load hits all alike.

    After ``warmup`` untimed rounds, each round times one call of every function still running.
    A function stops once it has ``repeats`` samples *and* ``min_time_s`` seconds of them (so fast
    calls get enough samples), or once it has ``max_time_s`` seconds of them (so a slow call does
    not hold up the run; it always gets at least one sample). The others keep alternating.
    Each function must block until its work is done (return a Python number, e.g. ``loss.item()``,
    so asynchronous GPU work is included), or pass ``device`` (a CUDA device): then the device is
    synchronised before and after every timed call, so queued kernels are neither left out nor
    charged to the next call.
    """
    if not fns:
        raise ValueError("time_interleaved needs at least one callable")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup must be >= 0 and repeats >= 1, got {warmup} and {repeats}")
    if max_time_s is not None and max_time_s <= 0:
        raise ValueError(f"max_time_s must be positive or None, got {max_time_s}")
    sync = _synchroniser(device)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    spent = dict.fromkeys(fns, 0.0)
    running = list(fns)
    while running:
        for name in running:
            sync()
            start = time.perf_counter()
            fns[name]()
            sync()
            elapsed = time.perf_counter() - start
            samples[name].append(elapsed * 1e3)
            spent[name] += elapsed
        running = [
            name
            for name in running
            if not (len(samples[name]) >= repeats and spent[name] >= min_time_s)
            and not (max_time_s is not None and spent[name] >= max_time_s)
            and len(samples[name]) < _MAX_REPEATS
        ]
    return {name: Timing.from_samples(s) for name, s in samples.items()}


def time_call(
    fn: Callable[[], Any],
    *,
    warmup: int = 3,
    repeats: int = 10,
    min_time_s: float = 0.0,
    max_time_s: float | None = None,
    device: str | torch.device | None = None,
) -> Timing:
    """Median and IQR of ``fn()``'s wall-clock time over at least ``repeats`` calls after ``warmup``.

    See :func:`time_interleaved` for ``min_time_s`` / ``max_time_s`` / ``device``.
    """
    return time_interleaved(
        {"fn": fn}, warmup=warmup, repeats=repeats, min_time_s=min_time_s, max_time_s=max_time_s, device=device
    )["fn"]


def _synchroniser(device: str | torch.device | None) -> Callable[[], None]:
    """A function that waits for ``device``'s queued work (a no-op for None or the CPU)."""
    if device is None:
        return lambda: None
    device = torch.device(device)
    if device.type == "cpu":
        return lambda: None
    if device.type != "cuda":
        raise ValueError(f"device must be None, 'cpu' or a CUDA device, got {str(device)!r}")
    return lambda: torch.cuda.synchronize(device)


# Lines torch's C++ side logs around profiling that say nothing about the user's code.
_PROFILER_NOISE = ("USDT:", "Memory block of unknown size was allocated before the profiling started")


# One redirection at a time: a second, nested or from another thread, would save the capture
# file as "the real stderr" and could restore it last, leaving fd 2 pointing at a deleted file.
_REDIRECT_LOCK = threading.RLock()
_redirect_depth = 0


@contextlib.contextmanager
def _native_stderr_filtered(drop: tuple[str, ...] = _PROFILER_NOISE) -> Iterator[None]:
    """Capture file descriptor 2 (C++ logging) for the duration, then re-emit every line but ``drop``'s.

    Some torch builds log a line to native stderr each time the profiler starts and stops, and
    one when a block allocated before profiling is freed during it; that would bury a
    benchmark's table or a runner's one-line-per-notebook report. Anything else written to
    fd 2 meanwhile (a Python warning in a terminal, a real C++ error) is written back afterwards.

    The redirection covers only the ``with`` block and is undone on every exit, an exception
    included, before the captured lines are written back; a nested use (or one from another
    thread while the first runs) waits or passes through instead of stacking redirections. If fd 2
    is not open, nothing is redirected.
    """
    global _redirect_depth
    # Descriptor 2 itself, not sys.stderr.fileno(): in a Jupyter kernel sys.stderr is a captured
    # stream without a descriptor, while the C++ logging still writes to fd 2.
    fd = 2
    with _REDIRECT_LOCK:
        if _redirect_depth:  # already captured by an outer block of this thread: it filters for us
            _redirect_depth += 1
            try:
                yield
            finally:
                _redirect_depth -= 1
            return
        _flush_stderr()
        try:
            saved = os.dup(fd)
        except OSError:  # fd 2 closed (a daemon): nothing to protect, nothing to filter
            saved = None
        if saved is None:
            yield
            return
        capture = tempfile.TemporaryFile(mode="w+b")
        try:
            os.dup2(capture.fileno(), fd)
            _redirect_depth = 1
            yield
        finally:
            _redirect_depth = 0
            _flush_stderr()
            os.dup2(saved, fd)  # first, so whatever happens next goes to the real stderr
            os.close(saved)
            try:  # re-emit even when the block raised: a real error message must not be lost
                capture.seek(0)
                kept = [
                    line
                    for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                    if not any(pattern in line for pattern in drop)
                ]
                if kept:
                    os.write(fd, "".join(kept).encode())
            finally:
                capture.close()


def _flush_stderr() -> None:
    # Python-level text still buffered must reach the descriptor it was written for.
    if sys.stderr is not None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):  # closed or broken stream: nothing to keep
            pass


def _cpu_allocation_events(prof: torch.profiler.profile) -> list[tuple[int, int, int]]:
    """``(time_ns, ptr, bytes)`` of every CPU allocation (bytes > 0) and free (< 0), in time order."""
    try:
        from torch._C._profiler import _EventType

        tree = prof.profiler.kineto_results.experimental_event_tree()
    except (ImportError, AttributeError) as exc:  # private API: fail loudly if a release moves it
        raise RuntimeError(
            f"peak_memory reads allocation events from torch.profiler internals that torch "
            f"{torch.__version__} does not provide ({exc}); pin the torch version in pyproject.toml"
        ) from exc
    events = []
    stack = list(tree)
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            fields = event.extra_fields
            events.append((event.start_time_ns, fields.ptr, fields.alloc_size))
    events.sort(key=lambda e: e[0])
    return events


def _peak_live_bytes(events: Sequence[tuple[int, int, int]]) -> int:
    """Running sum of allocations minus frees *of blocks allocated in ``events``*; its maximum."""
    live: dict[int, int] = {}
    held = peak = 0
    for _, ptr, nbytes in events:
        if nbytes > 0:
            held += nbytes - live.get(ptr, 0)
            live[ptr] = nbytes
            peak = max(peak, held)
        elif ptr in live:
            held -= live.pop(ptr)
    return peak


def peak_memory(fn: Callable[[], Any], *, device: str | torch.device = "cpu", warmup: int = 1) -> int:
    """Peak bytes held by tensors allocated during one ``fn()`` call (after ``warmup`` plain calls).

    Tensors that existed before the call do not count, even if the call frees them; tensors the
    call allocates and keeps (gradients, optimizer state) count until the end. ``warmup`` calls
    first let one-off allocations (optimizer state, caches) happen outside the measurement.

    On CPU this replays the allocation and free events of ``torch.profiler`` (``profile_memory``)
    in time order. A free is matched to its allocation by address and counted only when that
    allocation happened inside this call: PyTorch's CPU allocator keeps the sizes of blocks
    allocated under an earlier profiling session and reports their frees in a later one, which a
    plain running sum would subtract. Memory allocated outside PyTorch's allocator (BLAS/MKL
    scratch space, Python objects) is invisible. On CUDA it is
    ``torch.cuda.max_memory_allocated`` minus the memory allocated before the call.
    """
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    if device.type != "cpu":
        raise ValueError(f"peak_memory measures 'cpu' or 'cuda' devices, got {device.type!r}")
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
    with _native_stderr_filtered():
        prof.start()
        try:
            fn()
        finally:
            prof.stop()
    return _peak_live_bytes(_cpu_allocation_events(prof))


def train_step_fn(
    model: nn.Module,
    x: Any,
    edge_index: Tensor | Sequence[Tensor],
    targets: Tensor,
    y: Tensor,
    optimizer: torch.optim.Optimizer,
    num_targets: Sequence[int] | None = None,
) -> Callable[[], float]:
    """A zero-argument callable running one training step; it returns the loss as a float.

    ``model(x, edge_index) -> logits [N, K]``; ``targets`` (``[N]`` bool mask or ``[t]`` indices)
    picks the output rows the cross-entropy is taken on, against ``y [N]`` at the same rows. For a
    receptive field pass ``rf.select(x)``, ``rf.layer_edges``, ``rf.targets``, ``y[rf.nodes]`` and
    ``num_targets=rf.layer_targets`` (then ``model(x, edge_index, num_targets)`` is called).
    """
    if targets.dtype == torch.bool:
        if targets.size(0) != y.size(0):
            raise ValueError(
                f"a boolean targets mask needs one entry per row of y ({y.size(0)}), got {targets.size(0)}"
            )
    elif targets.numel() and int(targets.max()) >= y.size(0):
        raise ValueError(f"targets index row {int(targets.max())} but y has only {y.size(0)} rows")
    y_targets = y[targets]

    def step() -> float:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        out = model(x, edge_index) if num_targets is None else model(x, edge_index, num_targets)
        loss = F.cross_entropy(out[targets], y_targets)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def random_graph(num_nodes: int, avg_degree: float, num_features: int, *, seed: int) -> tuple[Tensor, Tensor]:
    """Uniform random undirected graph and Gaussian features: ``x [N, F]``, ``edge_index [2, E]``.

    ``E = 2 * round(N * avg_degree / 2)`` (both directions of each undirected edge), coalesced
    (sorted, no duplicates) and without self loops, so every node's degree averages ``avg_degree``.
    The same ``seed`` gives the same graph; no global random state is touched.
    """
    if num_nodes < 2 or num_features < 1 or avg_degree < 0:
        raise ValueError(
            f"need num_nodes >= 2, num_features >= 1, avg_degree >= 0; got {num_nodes}, {num_features}, {avg_degree}"
        )
    target = round(num_nodes * avg_degree / 2)
    if target > num_nodes * (num_nodes - 1) // 2:
        raise ValueError(f"avg_degree {avg_degree} needs more edges than a simple graph on {num_nodes} nodes has")
    gen = torch.Generator().manual_seed(seed)
    keys = torch.empty(0, dtype=torch.long)  # undirected edge (u < v) as u * N + v
    while keys.numel() < target:
        # Draw a few more than needed; self loops and repeats are dropped, then a random subset kept.
        draw = max(16, int(1.1 * (target - keys.numel())))
        u, v = torch.randint(num_nodes, (2, draw), generator=gen)
        ok = u != v
        lo, hi = torch.minimum(u[ok], v[ok]), torch.maximum(u[ok], v[ok])
        keys = torch.cat([keys, torch.unique(lo * num_nodes + hi)]).unique()
    keys = keys[torch.randperm(keys.numel(), generator=gen)[:target]]
    lo, hi = keys // num_nodes, keys % num_nodes
    edge_index = torch.stack([torch.cat([lo, hi]), torch.cat([hi, lo])])
    # Coalesce: sort by (source, target), as torch_geometric.utils.coalesce does.
    edge_index = edge_index[:, torch.argsort(edge_index[0] * num_nodes + edge_index[1])]
    x = torch.randn(num_nodes, num_features, generator=gen)
    return x, edge_index


DENSE_FLOAT_TENSORS_PER_HEAD = 6
"""``[N, N]`` float32 tensors per head a dense GAT layer holds at its training-step peak.

Saved for backward: the pre-LeakyReLU scores, the softmax output and the dropped-out attention;
alive beside them at the peak: the masked scores, the attention before dropout and the dropout's
random draw. Two ``[N, N]`` boolean masks (the adjacency and its negation) come on top. The tests
check the prediction against :func:`peak_memory` of a real dense layer.
"""


def dense_attention_bytes(num_nodes: int, heads: int) -> int:
    """Bytes of the ``[H, N, N]`` score/attention tensors a dense GAT layer holds in a training step.

    ``N^2 * (4 * 6 * H + 2)``: six float32 ``[H, N, N]`` tensors and two ``[N, N]`` bool masks.
    The layers of a model run one after the other, so a model's peak is about its widest layer's:
    pass that layer's ``heads`` (8 for the paper's Cora model). Use it to skip graph sizes whose
    dense layer would not fit a memory budget instead of running the machine out of memory; the
    O(N F) and O(E) parts are not included.
    """
    if num_nodes < 0 or heads < 1:
        raise ValueError(f"need num_nodes >= 0 and heads >= 1, got {num_nodes} and {heads}")
    return num_nodes * num_nodes * (4 * DENSE_FLOAT_TENSORS_PER_HEAD * heads + 2)
