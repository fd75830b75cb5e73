"""MTAD-GAT network: graph layers against explicit concatenation, shapes, leak guard, loss, score, bad input.

Small F, W, B on CPU; comparisons in float64. The one CUDA test is skipped, with the reason, where
torch sees no GPU (run it with ``pytest -m cuda``).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from tgad_lite.mtad import (
    CompleteGraphAttention,
    FeatureAttention,
    MTADGATModel,
    TimeAttention,
    gaussian_nll,
    reconstruction_probability,
)
from tgad_lite.mtad.model import LOGVAR_RANGE

B, W, NF = 5, 12, 4
SMALL = dict(window=W, kernel_size=3, gru_hidden=8, forecast_hidden=8, recon_hidden=8, latent_dim=3)
MODES = ("forecasting", "reconstruction", "both")


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Non-zero values in every parameter (the score bias starts at zero), so every term is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)


def explicit_scores(layer: CompleteGraphAttention, v: torch.Tensor) -> torch.Tensor:
    """Scores from the literal [B, K, K, 2D] concatenation, as the popular port builds them."""
    k = v.shape[1]
    vi = v[:, :, None, :].expand(-1, -1, k, -1)  # query i along dim 1
    vj = v[:, None, :, :].expand(-1, k, -1, -1)  # neighbour j along dim 2
    if layer.gat == "gat":
        cat = torch.cat([layer.lin(vi), layer.lin(vj)], dim=-1)  # [B, K, K, 2E]
        e = F.leaky_relu((cat @ layer.a).squeeze(-1), layer.negative_slope)
    else:
        pair = F.leaky_relu(layer.lin(torch.cat([vi, vj], dim=-1)), layer.negative_slope)  # [B, K, K, E]
        e = (pair @ layer.a).squeeze(-1)
    return e + layer.bias


def explicit_layer(layer: CompleteGraphAttention, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    att = torch.softmax(explicit_scores(layer, v), dim=-1)
    values = v if layer.aggregate == "input" else layer.lin(v)
    return torch.sigmoid(att @ values), att


def small_model(mode: str = "both", gat: str = "gat", **kw) -> MTADGATModel:
    return MTADGATModel(NF, mode=mode, gat=gat, **{**SMALL, **kw})


# ---------------------------------------------------------------- graph layers


@pytest.mark.parametrize(
    "gat, aggregate, embed_dim",
    [("gat", "input", None), ("gat", "projected", 6), ("gat", "input", 9), ("gatv2", "input", None)],
)
def test_layer_equals_explicit_concatenation(float64, gat, aggregate, embed_dim):
    torch.manual_seed(0)
    layer = CompleteGraphAttention(7, 5, embed_dim=embed_dim, gat=gat, aggregate=aggregate).eval()
    randomise(layer, 1)
    v = torch.randn(3, 7, 5)
    h, att = layer(v, return_attention=True)
    h_ref, att_ref = explicit_layer(layer, v)
    assert h.shape == (3, 7, layer.out_dim) and att.shape == (3, 7, 7)
    assert torch.allclose(att, att_ref, atol=1e-10, rtol=0)
    assert torch.allclose(h, h_ref, atol=1e-10, rtol=0)
    assert torch.allclose(att.sum(-1), torch.ones(3, 7), atol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 2, 4])
def test_gatv2_chunked_equals_unchunked_values_and_gradients(float64, chunk_size):
    layer = CompleteGraphAttention(6, 4, gat="gatv2")
    randomise(layer, 2)
    v = torch.randn(5, 6, 4, requires_grad=True)
    h_full = layer(v)
    grads_full = torch.autograd.grad(h_full.square().sum(), [v, *layer.parameters()])
    layer.chunk_size = chunk_size  # 5 windows in chunks of 1, 2 (uneven tail) or 4
    h_chunk = layer(v)
    grads_chunk = torch.autograd.grad(h_chunk.square().sum(), [v, *layer.parameters()])
    assert torch.allclose(h_chunk, h_full, atol=1e-12, rtol=0)
    for g_c, g_f in zip(grads_chunk, grads_full, strict=True):
        assert torch.allclose(g_c, g_f, atol=1e-12, rtol=0)
    with torch.no_grad():
        assert torch.allclose(layer(v), h_full, atol=1e-12, rtol=0)


def test_feature_and_time_layers_orient_the_window(float64):
    x = torch.randn(B, W, NF)
    feat, time = FeatureAttention(NF, W).eval(), TimeAttention(NF, W).eval()
    randomise(feat, 3)
    randomise(time, 4)
    h_f, a_f = feat(x, return_attention=True)
    h_t, a_t = time(x, return_attention=True)
    assert h_f.shape == h_t.shape == (B, W, NF)
    assert a_f.shape == (B, NF, NF) and a_t.shape == (B, W, W)
    ref_f, _ = explicit_layer(feat, x.transpose(1, 2))  # nodes = features, each its W-long series
    ref_t, _ = explicit_layer(time, x)  # nodes = steps, each its F values
    assert torch.allclose(h_f, ref_f.transpose(1, 2), atol=1e-10, rtol=0)
    assert torch.allclose(h_t, ref_t, atol=1e-10, rtol=0)


def test_layer_rejects_bad_settings_and_shapes():
    with pytest.raises(ValueError, match="gat must be one of gat|gatv2"):
        CompleteGraphAttention(3, 4, gat="gat3")
    with pytest.raises(ValueError, match="aggregate='projected' is defined for gat='gat' only"):
        CompleteGraphAttention(3, 4, gat="gatv2", aggregate="projected")
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        CompleteGraphAttention(3, 4, gat="gatv2", chunk_size=0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        CompleteGraphAttention(3, 4, dropout=1.0)
    with pytest.raises(ValueError, match=r"nodes must be \[B, 3, 4\].*got \[2, 4, 3\]"):
        CompleteGraphAttention(3, 4)(torch.randn(2, 4, 3))


# ---------------------------------------------------------------- model


@pytest.mark.parametrize("gat", ["gat", "gatv2"])
@pytest.mark.parametrize("mode", MODES)
def test_model_output_shapes_per_mode(mode, gat):
    torch.manual_seed(0)
    model = small_model(mode, gat, chunk_size=2)
    out = model(torch.randn(B, W, NF))
    expected = {"h": (B, 8), "feature_attention": (B, NF, NF), "time_attention": (B, W, W)}
    if mode != "reconstruction":
        expected["forecast"] = (B, NF)
    if mode != "forecasting":
        expected.update(recon_mu=(B, W, NF), recon_logvar=(B, W, NF), z_mu=(B, 3), z_logvar=(B, 3), z=(B, 3))
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    assert torch.allclose(out["feature_attention"].sum(-1), torch.ones(B, NF), atol=1e-6)
    assert torch.allclose(out["time_attention"].sum(-1), torch.ones(B, W), atol=1e-6)


def test_paper_defaults():
    model = MTADGATModel(55)
    c = model.config
    assert (c["window"], c["kernel_size"], c["gru_hidden"], c["forecast_hidden"], c["forecast_layers"]) == (
        100,
        7,
        150,
        150,
        3,
    )
    assert (c["recon_hidden"], c["dropout"], c["gat"], c["mode"]) == (150, 0.3, "gat", "both")
    linears = [m for m in model.forecaster if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(150, 150), (150, 150), (150, 55)]


@pytest.mark.parametrize("gat", ["gat", "gatv2"])
def test_no_sample_leaks_into_another(float64, gat):
    torch.manual_seed(0)
    model = small_model("both", gat, chunk_size=2).eval()
    x = torch.randn(B, W, NF)
    out = model(x)
    x2 = x.clone()
    x2[2] += torch.randn(W, NF)  # change sample 2 only
    out2 = model(x2)
    keys = ("forecast", "recon_mu", "recon_logvar", "z_mu", "feature_attention", "time_attention")
    others = [0, 1, 3, 4]
    for key in keys:
        assert torch.allclose(out2[key][others], out[key][others], atol=1e-12, rtol=0), key
        assert not torch.allclose(out2[key][2], out[key][2]), key
    # Gradients: sample 0's reconstruction and forecast depend on sample 0's window alone.
    xg = x.clone().requires_grad_(True)
    o = model(xg)
    (grad,) = torch.autograd.grad(o["recon_mu"][0].sum() + o["forecast"][0].sum(), xg)
    assert grad[0].abs().sum() > 0
    assert torch.count_nonzero(grad[1:]) == 0


def test_decoder_gets_each_samples_latent_at_every_step(float64):
    torch.manual_seed(0)
    model = small_model("reconstruction").eval()
    seen = {}
    feed = model.decoder.forward_repeated
    model.decoder.forward_repeated = lambda z, steps: seen.update(z=z, steps=steps) or feed(z, steps)
    out = model(torch.randn(B, W, NF))
    assert seen["steps"] == W and torch.equal(seen["z"], out["z"])
    # What the decoder computes is a plain GRU fed [B, W, L] = each sample's z at every step (the port's
    # repeat_interleave(...).view(...) would scramble this), then the output layer.
    reference = torch.nn.GRU(3, model.decoder.hidden_size, batch_first=True).double()
    reference.load_state_dict(model.decoder.state_dict())
    steps, _ = reference(out["z"][:, None, :].expand(-1, W, -1))
    mu, logvar = model.decoder_out(steps).chunk(2, dim=-1)
    torch.testing.assert_close(out["recon_mu"], mu, atol=1e-12, rtol=0)
    torch.testing.assert_close(out["recon_logvar"], logvar.clamp(*LOGVAR_RANGE), atol=1e-12, rtol=0)


def sine_windows(n_windows: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows ``[n, W, F]`` and next steps ``[n, F]`` of F sines with different periods and phases."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n_windows + W + 1, dtype=torch.float32)
    periods = torch.tensor([8.0, 11.0, 15.0, 20.0])
    series = torch.sin(2 * math.pi * t[:, None] / periods + torch.rand(NF, generator=g) * 6)
    series = series + 0.05 * torch.randn(series.shape, generator=g)
    x = series.unfold(0, W, 1)[:n_windows].transpose(1, 2)  # [n, W, F]
    return x.contiguous(), series[W : W + n_windows]


@pytest.mark.parametrize("mode", MODES)
def test_loss_is_finite_and_decreases_on_sines(mode):
    torch.manual_seed(0)
    model = small_model(mode, dropout=0.0)
    x, y = sine_windows()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = []
    for _ in range(50):
        terms = model.loss(x, y)
        assert all(torch.isfinite(v) for v in terms.values())
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        history.append(terms["total"].item())
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    # 5%: in 50 steps the VAE alone only gets from its initial guess to the data's marginal (~10% down).
    assert last < 0.95 * first, (first, last)
    if mode == "forecasting":
        assert terms["recon_nll"] == 0 and terms["kl"] == 0
    if mode == "reconstruction":
        assert terms["forecast_rmse"] == 0


def test_loss_terms_match_their_definitions(float64):
    torch.manual_seed(0)
    model = small_model("both").eval()  # eval: z = z_mu, so the terms can be recomputed from forward
    x, y = torch.randn(B, W, NF), torch.randn(B, NF)
    terms, out = model.loss(x, y), model(x)
    rmse = ((out["forecast"] - y) ** 2).mean().sqrt()
    nll = -torch.distributions.Normal(out["recon_mu"], (0.5 * out["recon_logvar"]).exp()).log_prob(x).mean()
    q = torch.distributions.Normal(out["z_mu"], (0.5 * out["z_logvar"]).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1).mean() / (W * NF)
    assert torch.allclose(terms["forecast_rmse"], rmse, atol=1e-12)
    assert torch.allclose(terms["recon_nll"], nll, atol=1e-12)
    assert torch.allclose(terms["kl"], kl, atol=1e-12)
    assert torch.allclose(terms["total"], rmse + nll + kl, atol=1e-12)


def test_reconstruction_probability_hand_values(float64):
    mu, logvar = torch.zeros(4), torch.full((4,), math.log(4.0))  # sigma = 2
    p = reconstruction_probability(torch.tensor([0.0, 2.0, -4.0, 6.0]), mu, logvar)
    # two-sided normal tails at 0, 1, 2, 3 standard deviations
    assert torch.allclose(p, torch.tensor([1.0, 0.3173105078629141, 0.04550026389635842, 0.0026997960632601866]))
    ref = -torch.distributions.Normal(0.5, 2.0).log_prob(torch.tensor(1.7))
    assert torch.isclose(gaussian_nll(torch.tensor(1.7), torch.tensor(0.5), torch.tensor(math.log(4.0))), ref)


@pytest.mark.parametrize("mode", MODES)
def test_score_shape_range_and_formula(float64, mode):
    torch.manual_seed(0)
    model = small_model(mode).eval()
    x, y = torch.randn(B, W, NF), torch.randn(B, NF)
    gamma = 0.7
    s = model.score(x, y, gamma=gamma)
    assert s.shape == (B, NF) and torch.isfinite(s).all() and (s >= 0).all()
    err = (y - model(x)["forecast"]) ** 2 if mode != "reconstruction" else None
    if mode != "forecasting":
        shifted = model(torch.cat([x[:, 1:], y[:, None]], dim=1))  # the window ending at y
        p = reconstruction_probability(y, shifted["recon_mu"][:, -1], shifted["recon_logvar"][:, -1])
    expected = {"forecasting": err, "reconstruction": None, "both": None}[mode]
    if mode == "reconstruction":
        expected = 1 - p
        assert (s <= 1).all()
    elif mode == "both":
        expected = (err + gamma * (1 - p)) / (1 + gamma)
    assert torch.allclose(s, expected, atol=1e-12, rtol=0)
    sampled = model.score(x, y, gamma=gamma, samples=4)
    assert sampled.shape == (B, NF) and torch.isfinite(sampled).all() and (sampled >= 0).all()


def test_deterministic_under_manual_seed():
    def run() -> list[float]:
        torch.manual_seed(123)
        model = small_model("both", "gatv2", chunk_size=2)  # dropout 0.3 and z sampling both draw
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        x, y = sine_windows(16)
        losses = []
        for _ in range(3):
            loss = model.loss(x, y)["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses + model.eval().score(x, y, samples=2).flatten().tolist()

    assert run() == run()


def test_encoder_and_decoder_share_one_buffer_pool():
    model = small_model("both")  # gru_hidden == recon_hidden: the two GRUs' buffers have the same shapes
    assert model.decoder.workspace is model.gru.workspace
    clone = copy.deepcopy(model)
    assert clone.decoder.workspace is clone.gru.workspace and clone.gru.workspace is not model.gru.workspace
    x, y = sine_windows(16)
    model.loss(x, y)["total"].backward()
    hidden = SMALL["gru_hidden"]
    free = model.gru.workspace._free
    # The encoder's input projection [W, B, 3H], given back after its forward, is the buffer the
    # decoder's backward takes for its gate gradients, and the encoder's backward after it: one
    # buffer of that shape between them (two, one per GRU, if each kept its own pool).
    assert len(free[((W, 16, 3 * hidden), torch.float32, torch.device("cpu"), False)]) == 1
    model.release_workspace()
    assert not free


# ---------------------------------------------------------------- bad input


def test_bad_inputs_are_refused_with_the_fix():
    model = small_model("both")
    x, y = torch.randn(B, W, NF), torch.randn(B, NF)
    with pytest.raises(ValueError, match=r"3 features but the model was built with n_features=4; select"):
        model(torch.randn(B, W, 3))
    with pytest.raises(ValueError, match=r"window 10 but the model was built with window=12"):
        model(torch.randn(B, 10, NF))
    with pytest.raises(ValueError, match=r"x must be \[B, W, F\].*unsqueeze\(0\)"):
        model(torch.randn(W, NF))
    bad = x.clone()
    bad[1, 3, 2] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or Inf \(first at index \[1, 3, 2\]\)"):
        model(bad)
    with pytest.raises(TypeError, match="floating tensor"):
        model(torch.ones(B, W, NF, dtype=torch.long))
    with pytest.raises(ValueError, match=r"y_next must be \[B, F\] = \[5, 4\]"):
        model.loss(x, torch.randn(B, 3))
    y_bad = y.clone()
    y_bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="y_next contains NaN or Inf"):
        model.score(x, y_bad)
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
        model.score(x, y, gamma=-1.0)
    with pytest.raises(ValueError, match="samples must be an int >= 0"):
        model.score(x, y, samples=-2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="forecast"), "mode must be one of forecasting|reconstruction|both, got 'forecast'"),
        (dict(gat="gatv3"), "gat must be one of gat|gatv2"),
        (dict(dropout=1.5), r"dropout must be in \[0, 1\)"),
        (dict(window=0), "window must be a positive int"),
        (dict(gru_hidden=2.5), "gru_hidden must be a positive int"),
        (dict(forecast_layers=True), "forecast_layers must be a positive int"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MTADGATModel(NF, **{**SMALL, **kwargs})


# ---------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason=f"needs a CUDA GPU: torch {torch.__version__} sees none "
    f"(CUDA build: {torch.version.cuda or 'none, a CPU-only build'})",
)
@pytest.mark.parametrize("gat", ["gat", "gatv2"])
def test_forward_backward_score_on_cuda(gat):
    torch.manual_seed(0)
    model = small_model("both", gat, chunk_size=2).cuda()
    x, y = sine_windows(16)
    x, y = x.cuda(), y.cuda()
    terms = model.loss(x, y)
    terms["total"].backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    s = model.eval().score(x, y, samples=2)
    assert s.device.type == "cuda" and s.shape == (16, NF) and torch.isfinite(s).all()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("samples", [0, 3])
def test_score_consecutive_encodes_each_window_once_and_equals_score(mode, samples, float64):
    torch.manual_seed(0)
    model = small_model(mode).eval()
    series = torch.randn(W + 9, NF)
    windows = series.unfold(0, W, 1).transpose(1, 2)  # [10, W, F], consecutive
    calls = []
    encode = model.encode
    model.encode = lambda x: calls.append(x.shape[0]) or encode(x)
    torch.manual_seed(1)
    fast = model.score_consecutive(windows, gamma=0.5, samples=samples)
    assert calls == [10]  # one pass over the 10 windows, not 9 + 9
    torch.manual_seed(1)
    slow = model.score(windows[:-1].contiguous(), windows[1:, -1], gamma=0.5, samples=samples)
    torch.testing.assert_close(fast, slow, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="windows are not consecutive"):
        model.score_consecutive(windows.flip(0))
    with pytest.raises(ValueError, match="at least 2 consecutive windows"):
        model.score_consecutive(windows[:1])


# ---------------------------------------------------------------- target features


def test_target_features_forecast_reconstruct_and_score_only_those_columns(float64):
    torch.manual_seed(0)
    targets = [2, 0]  # any order: column j of the outputs is feature targets[j]
    model = small_model("both", target_features=targets)
    randomise(model, 1)
    model.eval()
    x, y = torch.randn(B, W, NF), torch.randn(B, NF)
    out = model(x)
    assert out["forecast"].shape == (B, 2) and out["recon_mu"].shape == (B, W, 2)
    terms = model.loss(x, y)
    rmse = ((out["forecast"] - y[:, targets]) ** 2).mean().sqrt()
    nll = -torch.distributions.Normal(out["recon_mu"], (0.5 * out["recon_logvar"]).exp()).log_prob(x[..., targets])
    q = torch.distributions.Normal(out["z_mu"], (0.5 * out["z_logvar"]).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1).mean() / (W * 2)
    assert torch.allclose(terms["forecast_rmse"], rmse, atol=1e-12)
    assert torch.allclose(terms["recon_nll"], nll.mean(), atol=1e-12)
    assert torch.allclose(terms["kl"], kl, atol=1e-12)
    gamma = 0.7
    s = model.score(x, y, gamma=gamma)
    shifted = model(torch.cat([x[:, 1:], y[:, None]], dim=1))
    p = reconstruction_probability(y[:, targets], shifted["recon_mu"][:, -1], shifted["recon_logvar"][:, -1])
    expected = ((y[:, targets] - out["forecast"]) ** 2 + gamma * (1 - p)) / (1 + gamma)
    assert s.shape == (B, 2) and torch.allclose(s, expected, atol=1e-12, rtol=0)
    windows = torch.cat([x, torch.cat([x[-1:, 1:], y[-1:, None]], dim=1)])  # not consecutive: use score()
    assert model.score(windows[:-1], y).shape == (B, 2)


def test_target_features_read_every_column_but_score_only_the_targets(float64):
    torch.manual_seed(0)
    model = small_model("forecasting", target_features=[0])
    randomise(model, 2)
    model.eval()
    x, y = torch.randn(B, W, NF), torch.randn(B, NF)
    base = model.score(x, y)
    other_next = y.clone()
    # A non-target column's next value is never judged (with a VAE it still enters the shifted window
    # the encoder reads, as every column of a window does) ...
    other_next[:, 1:] += 5.0
    assert torch.equal(model.score(x, other_next), base)
    other_input = x.clone()
    other_input[:, :, 3] += 5.0  # ... but the encoder reads every column of the window
    assert not torch.allclose(model.score(other_input, y), base)


def test_all_columns_as_targets_is_the_default_model(float64):
    x, y = torch.randn(B, W, NF), torch.randn(B, NF)
    outputs = []
    for targets in (None, list(range(NF))):
        torch.manual_seed(5)
        model = small_model("both", target_features=targets).eval()
        outputs.append((model.loss(x, y)["total"], model.score(x, y, gamma=0.5)))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])


@pytest.mark.parametrize(
    "targets, message",
    [
        ([], "non-empty list of int column indices"),
        ([True], "non-empty list of int column indices"),
        ([0.0], "non-empty list of int column indices"),
        ("0", r"None \(all features\) or a list of column indices"),
        (0, r"None \(all features\) or a list of column indices"),
        ([4], r"distinct indices in \[0, 3\] \(n_features=4\), got \[4\]; out of range: \[4\]"),
        ([-1, 0], r"out of range: \[-1\]"),
        ([1, 1], "repeated indices"),
    ],
)
def test_bad_target_features_are_refused(targets, message):
    with pytest.raises(ValueError, match=message):
        small_model(target_features=targets)
