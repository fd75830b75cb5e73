"""The training loop's small shared pieces, each on hand-computed cases: warmup + cosine schedule,
gradient clipping, the positive-class weight, and mixed precision (a no-op on the CPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tgad_lite.train import AmpStep, autocast, clip_gradients, positive_weight, warmup_cosine

# ---------------------------------------------------------------- warmup_cosine


def lrs_over(n_steps: int, **kwargs) -> list[float]:
    """The learning rate each of ``n_steps`` optimiser steps uses (base rate 1)."""
    p = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = warmup_cosine(opt, **kwargs)
    seen = []
    for _ in range(n_steps):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return seen


def test_warmup_cosine_values_by_hand():
    c = math.cos(math.pi / 4)  # sqrt(2)/2
    # warmup 2: 1/3, 2/3; then cosine over the remaining 4 steps from 1 to 0.1: p = 0, 1/4, 1/2, 3/4;
    # after the last (step 6) the floor 0.1 is held.
    expected = [1 / 3, 2 / 3, 1.0, 0.1 + 0.45 * (1 + c), 0.55, 0.1 + 0.45 * (1 - c), 0.1, 0.1]
    assert lrs_over(8, warmup_steps=2, total_steps=6, min_factor=0.1) == pytest.approx(expected, rel=1e-12)


def test_warmup_cosine_without_warmup_starts_at_the_full_rate_and_decays_to_zero():
    assert lrs_over(5, warmup_steps=0, total_steps=4) == pytest.approx(
        [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 - math.cos(math.pi / 4)), 0.0]
    )


def test_warmup_cosine_scales_every_parameter_group_by_its_own_base_rate():
    a, b = torch.nn.Parameter(torch.zeros(())), torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}])
    warmup_cosine(opt, warmup_steps=3, total_steps=10)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.25, 0.025])


def test_warmup_cosine_refuses_bad_step_counts():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=1.0)
    with pytest.raises(ValueError, match=r"total_steps \(5\) must be greater than warmup_steps \(5\)"):
        warmup_cosine(opt, warmup_steps=5, total_steps=5)
    with pytest.raises(ValueError, match="warmup_steps must be an int >= 0"):
        warmup_cosine(opt, warmup_steps=-1, total_steps=5)
    with pytest.raises(ValueError, match="min_factor must be a number in"):
        warmup_cosine(opt, warmup_steps=1, total_steps=5, min_factor=1.5)


# ---------------------------------------------------------------- clip_gradients


def with_grads(*grads: list[float]) -> list[torch.nn.Parameter]:
    params = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros(len(g)))
        p.grad = torch.tensor(g)
        params.append(p)
    return params


def test_clip_gradients_returns_the_norm_before_clipping_and_clips_like_torch():
    params = with_grads([3.0], [0.0, 4.0])  # norm sqrt(9 + 16) = 5 across both tensors
    assert clip_gradients(params, 1.0) == pytest.approx(5.0)
    scale = 1.0 / (5.0 + 1e-6)
    torch.testing.assert_close(params[0].grad, torch.tensor([3.0 * scale]))
    torch.testing.assert_close(params[1].grad, torch.tensor([0.0, 4.0 * scale]))
    reference = with_grads([3.0], [0.0, 4.0])
    torch.nn.utils.clip_grad_norm_(reference, 1.0)
    for p, r in zip(params, reference, strict=True):
        assert torch.equal(p.grad, r.grad)


def test_clip_gradients_below_the_limit_or_without_one_only_measures():
    params = with_grads([3.0, 4.0])
    assert clip_gradients(params, 10.0) == pytest.approx(5.0)
    assert clip_gradients(params, None) == pytest.approx(5.0)
    assert torch.equal(params[0].grad, torch.tensor([3.0, 4.0]))
    assert clip_gradients(params[0], None) == pytest.approx(5.0)  # a single tensor, as torch accepts


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_clip_gradients_reports_a_non_finite_norm_and_leaves_the_gradients(bad):
    params = with_grads([bad, 1.0])
    norm = clip_gradients(params, 1.0)  # raises nothing: the caller decides
    assert not math.isfinite(norm)
    assert params[0].grad[1].item() == 1.0  # not scaled into NaN


def test_clip_gradients_without_gradients_and_bad_limits():
    p = torch.nn.Parameter(torch.ones(2))
    assert clip_gradients([p], 1.0) == 0.0
    for bad in (0.0, -1.0, "1", True):
        with pytest.raises(ValueError, match="max_norm must be a number > 0, or None"):
            clip_gradients([p], bad)


# ---------------------------------------------------------------- positive_weight


def test_positive_weight_is_negatives_over_positives_in_any_container():
    assert positive_weight([0, 0, 0, 1]) == 3.0
    assert positive_weight(torch.tensor([[True, False], [False, False]])) == 3.0
    assert positive_weight(np.array([0.0, 1.0, 1.0])) == 0.5


def test_positive_weight_balances_bce_with_logits():
    labels = torch.tensor([0.0, 0.0, 0.0, 1.0])
    w = positive_weight(labels)
    loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(w), reduction="none")(torch.zeros(4), labels)
    # At logit 0 every element costs log 2; the one positive, weighted 3, costs as much as the three negatives.
    torch.testing.assert_close(loss, torch.tensor([1.0, 1.0, 1.0, 3.0]) * math.log(2))
    assert loss[labels == 1].sum().item() == pytest.approx(loss[labels == 0].sum().item())


def test_positive_weight_refuses_one_class_and_non_binary_labels():
    with pytest.raises(ValueError, match=r"no positives \(1\) among 3.*undefined.*both classes"):
        positive_weight([0, 0, 0])
    with pytest.raises(ValueError, match=r"no negatives \(0\) among 2"):
        positive_weight(torch.ones(2))
    with pytest.raises(ValueError, match=r"must be 0 or 1 \(1 = positive\), found \[2\].*labels > 0"):
        positive_weight([0, 1, 2])
    with pytest.raises(ValueError, match=r"found \[nan\].*NaN is not a label"):
        positive_weight([0.0, 1.0, float("nan")])
    with pytest.raises(ValueError, match="labels is empty"):
        positive_weight([])
    with pytest.raises(ValueError, match="numbers 0/1 or booleans"):
        positive_weight(["0", "1"])


# ---------------------------------------------------------------- mixed precision: nothing on the CPU


def tiny_training(use_amp: bool) -> torch.nn.Linear:
    """Five clipped SGD steps of a linear regression, with AmpStep or written out by hand."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    amp = AmpStep(opt, "cpu", enabled=True)
    for _ in range(5):
        opt.zero_grad(set_to_none=True)
        if use_amp:
            with amp.autocast():
                loss = torch.nn.functional.mse_loss(model(x), y)
            norm, stepped = amp.step(loss, max_norm=0.5)
            assert stepped and math.isfinite(norm)
        else:
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()
    return model


def test_amp_changes_nothing_on_the_cpu():
    amp_model, plain = tiny_training(True), tiny_training(False)
    for a, b in zip(amp_model.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b)  # bit for bit: no bfloat16 autocast, no scaler
    amp = AmpStep(torch.optim.SGD(amp_model.parameters(), lr=0.1), "cpu")
    assert not amp.active and amp.scaler is None
    with autocast("cpu"), amp.autocast():
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.randn(2, 3) @ torch.randn(3, 2)).dtype == torch.float32


def test_amp_step_skips_a_step_with_non_finite_gradients_on_the_cpu_too():
    model = torch.nn.Linear(2, 1)
    before = [p.detach().clone() for p in model.parameters()]
    amp = AmpStep(torch.optim.SGD(model.parameters(), lr=0.1), "cpu")
    loss = model(torch.tensor([[math.inf, 1.0]])).sum()
    norm, stepped = amp.step(loss)
    assert not math.isfinite(norm) and stepped is False
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b)
    with pytest.raises(ValueError, match="dtype must be torch.float16 or torch.bfloat16"):
        AmpStep(amp.optimizer, "cpu", dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown device"):
        autocast("tpu")


CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason=f"needs a CUDA GPU: torch {torch.__version__} sees none "
    f"(CUDA build: {torch.version.cuda or 'none, a CPU-only build'})",
)


@pytest.mark.cuda
@CUDA
def test_amp_on_cuda_autocasts_to_half_scales_the_loss_and_skips_overflowing_steps():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)).cuda()
    x = torch.randn(256, 16, device="cuda")
    y = x[:, :1] * 2.0 - x[:, 1:2]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    amp = AmpStep(opt, "cuda")
    assert amp.active and amp.scaler.get_scale() == 65536.0
    losses = []
    for _ in range(50):
        opt.zero_grad(set_to_none=True)
        with amp.autocast():
            out = model(x)
            assert out.dtype == torch.float16  # the products ran in half precision
            loss = torch.nn.functional.mse_loss(out.float(), y)
        norm, _ = amp.step(loss, max_norm=10.0)
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay float32
    # The norm is that of the true (unscaled) gradients: compare with a float32 pass.
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.mse_loss(model(x), y).backward()
    fp32 = clip_gradients(model.parameters(), None)
    opt.zero_grad(set_to_none=True)
    with amp.autocast():
        loss = torch.nn.functional.mse_loss(model(x).float(), y)
    before = [p.detach().clone() for p in model.parameters()]
    scale = amp.scaler.get_scale()
    norm, stepped = amp.step(loss * math.inf)  # overflow: the scaler skips the step, lowers the scale
    assert not stepped and not math.isfinite(norm) and amp.scaler.get_scale() == scale / 2
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b)
    opt.zero_grad(set_to_none=True)
    with amp.autocast():
        loss = torch.nn.functional.mse_loss(model(x).float(), y)
    norm, stepped = amp.step(loss)
    assert stepped and norm == pytest.approx(fp32, rel=5e-2)
