"""MTAD-GAT (Zhao et al. 2020, arXiv 2009.02040): graph attention + GRU, forecasting and a VAE.

One window ``x [B, W, F]`` goes through:

1. a 1-D convolution over time (kernel 7, same padding, ReLU), features as channels;
2. feature-oriented and time-oriented graph attention on the convolved window, in parallel;
3. the concatenation ``[x_conv, h_feature, h_time]`` (``3F`` per step) into a GRU; its last hidden
   state ``h [B, H]`` feeds two heads:
4. forecasting: fully connected layers predict the next step ``y_hat [B, F]``;
5. reconstruction: a VAE. ``h`` -> ``(mu, logvar) [B, L]``, ``z`` reparameterised, a GRU decoder fed
   ``z`` repeated once per step (``expand``: each sample's own ``z`` at every step; the popular port's
   ``repeat_interleave(W, dim=1).view(B, W, -1)`` instead hands step ``t`` a slice of the hidden units
   of each step), then per-step Gaussian ``(mu_x, logvar_x) [B, W, F]`` so ``p(x | z)`` exists.

Dropout (``dropout``, paper 0.3) acts on the attention weights of both graph layers, between the
forecasting layers, and between stacked GRU layers when ``gru_layers > 1``.

Inference score per feature (paper): ``(err + gamma * (1 - p)) / (1 + gamma)`` with
``err = (y - y_hat)^2`` and ``p`` the reconstruction probability of the observed value, defined here as
the two-sided tail probability under the decoder's Gaussian,
``p = P(|X - mu_x| >= |x - mu_x|) = erfc(|x - mu_x| / (sigma_x sqrt 2))`` in ``(0, 1]``: 1 at the mean,
0.317 one standard deviation away, 0.0027 at three; averaged over ``samples`` draws of ``z``.
A density would not do: it exceeds 1 for a narrow Gaussian, so ``1 - p`` would have no fixed range.

**Target features.** ``target_features`` (default ``None``: all ``F``) picks the ``F_t`` columns the
heads forecast, reconstruct and score; the encoder still reads all ``F``. The popular port does this
for MSL and SMAP (``target_dims = [0]``): column 0 is the telemetry the labels describe, the other
columns one-hot commands. On a column that is almost always 0 a trained decoder learns a tiny
variance, so every command toggle scores ``1 - p`` near 1 there, in normal stretches as well.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tgad_lite.mtad.gru import GRU
from tgad_lite.mtad.layers import GAT_CHOICES, FeatureAttention, TimeAttention, _positive_int

MODE_CHOICES = ("forecasting", "reconstruction", "both")
LOGVAR_RANGE = (-10.0, 10.0)  # decoder log-variance clamp: sigma in [0.0067, 148]; keeps the NLL finite


def reconstruction_probability(x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """``P(|X - mu| >= |x - mu|)`` for ``X ~ N(mu, exp(logvar))``, elementwise, in ``(0, 1]``; any shape."""
    sigma = torch.exp(0.5 * logvar)
    return torch.special.erfc((x - mu).abs() / (sigma * math.sqrt(2.0)))


def gaussian_nll(x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """``-log N(x; mu, exp(logvar))`` elementwise (natural log, with the ``log 2 pi`` term); any shape."""
    return 0.5 * (math.log(2 * math.pi) + logvar + (x - mu) ** 2 * torch.exp(-logvar))


def _check_targets(target_features: object, n_features: int) -> list[int] | None:
    """``None`` or a list of distinct column indices in ``[0, n_features)``, in the order given."""
    if target_features is None:
        return None
    if isinstance(target_features, str | bytes) or not hasattr(target_features, "__iter__"):
        raise ValueError(
            f"target_features must be None (all features) or a list of column indices, got {target_features!r}; "
            "for MSL/SMAP telemetry pass [0]"
        )
    targets = list(target_features)
    if not targets or any(isinstance(t, bool) or not isinstance(t, int) for t in targets):
        raise ValueError(
            f"target_features must be a non-empty list of int column indices, got {target_features!r}; "
            "pass None to forecast, reconstruct and score every feature"
        )
    bad = [t for t in targets if not 0 <= t < n_features]
    if bad or len(set(targets)) != len(targets):
        raise ValueError(
            f"target_features must be distinct indices in [0, {n_features - 1}] (n_features={n_features}), "
            f"got {targets}" + (f"; out of range: {bad}" if bad else "; repeated indices")
        )
    return [int(t) for t in targets]


class MTADGATModel(nn.Module):
    """MTAD-GAT network on windows ``x [B, W, F]``; paper settings as defaults.

    Args:
        n_features: ``F``.
        window: ``W`` (paper 100).
        kernel_size: 1-D convolution kernel over time (paper 7); same padding.
        gat: ``"gat"`` (decomposed scores, default) or ``"gatv2"`` (pairwise, chunked by ``chunk_size``).
        gru_hidden: GRU hidden size ``H`` (paper 150); ``gru_layers`` stacked layers (paper 1).
        forecast_hidden / forecast_layers: the forecasting MLP, ``forecast_layers`` linear layers in all
            (paper: three of width 150: ``H -> 150 -> 150 -> F``; the port stacks one more).
        recon_hidden: decoder GRU hidden size (paper 150).
        latent_dim: ``L``, the VAE latent size (the paper gives none; 150 to match the other widths).
        dropout: see the module docstring (paper 0.3).
        negative_slope: LeakyReLU slope in the graph layers (0.2).
        mode: ``"forecasting"``, ``"reconstruction"`` or ``"both"`` (paper: both, joint loss).
        chunk_size: GATv2 windows per chunk (``None``: whole batch).
        attention_bias: the learnt ``[K, K]`` score bias of the port.
        target_features: columns the heads forecast, reconstruct and score, ``F_t`` distinct indices in
            ``[0, F)`` (``None``: all ``F``, the paper; ``[0]``: MSL/SMAP telemetry, as the port).
    """

    def __init__(
        self,
        n_features: int,
        window: int = 100,
        kernel_size: int = 7,
        gat: str = "gat",
        gru_hidden: int = 150,
        gru_layers: int = 1,
        forecast_hidden: int = 150,
        forecast_layers: int = 3,
        recon_hidden: int = 150,
        latent_dim: int = 150,
        dropout: float = 0.3,
        negative_slope: float = 0.2,
        mode: str = "both",
        chunk_size: int | None = None,
        attention_bias: bool = True,
        target_features: list[int] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("n_features", n_features),
            ("window", window),
            ("kernel_size", kernel_size),
            ("gru_hidden", gru_hidden),
            ("gru_layers", gru_layers),
            ("forecast_hidden", forecast_hidden),
            ("forecast_layers", forecast_layers),
            ("recon_hidden", recon_hidden),
            ("latent_dim", latent_dim),
        ):
            _positive_int(name, value)
        if mode not in MODE_CHOICES:
            raise ValueError(f"mode must be one of {'|'.join(MODE_CHOICES)}, got {mode!r}")
        if gat not in GAT_CHOICES:
            raise ValueError(f"gat must be one of {'|'.join(GAT_CHOICES)}, got {gat!r}")
        if not isinstance(dropout, int | float) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r} (paper 0.3; 0 turns it off)")
        targets = _check_targets(target_features, n_features)
        self.n_features, self.window, self.mode, self.gat = n_features, window, mode, gat
        self.n_targets = n_features if targets is None else len(targets)
        # None keeps the all-features path free of an index copy; a buffer follows the model to its device.
        self.register_buffer(
            "target_index", None if targets is None else torch.tensor(targets, dtype=torch.long), persistent=False
        )
        self.config = dict(
            n_features=n_features,
            window=window,
            kernel_size=kernel_size,
            gat=gat,
            gru_hidden=gru_hidden,
            gru_layers=gru_layers,
            forecast_hidden=forecast_hidden,
            forecast_layers=forecast_layers,
            recon_hidden=recon_hidden,
            latent_dim=latent_dim,
            dropout=dropout,
            negative_slope=negative_slope,
            mode=mode,
            chunk_size=chunk_size,
            attention_bias=attention_bias,
            target_features=targets,
        )

        self.conv = nn.Conv1d(n_features, n_features, kernel_size, padding="same")
        graph = dict(
            gat=gat, negative_slope=negative_slope, dropout=dropout, bias=attention_bias, chunk_size=chunk_size
        )
        self.feature_attention = FeatureAttention(n_features, window, **graph)
        self.time_attention = TimeAttention(n_features, window, **graph)
        self.gru = GRU(
            3 * n_features, gru_hidden, gru_layers, batch_first=True, dropout=dropout if gru_layers > 1 else 0.0
        )

        self.forecaster: nn.Sequential | None = None
        if mode in ("forecasting", "both"):
            layers: list[nn.Module] = []
            width = gru_hidden
            for _ in range(forecast_layers - 1):
                layers += [nn.Linear(width, forecast_hidden), nn.ReLU(), nn.Dropout(dropout)]
                width = forecast_hidden
            layers.append(nn.Linear(width, self.n_targets))
            self.forecaster = nn.Sequential(*layers)

        self.encoder: nn.Linear | None = None
        self.decoder: GRU | None = None
        self.decoder_out: nn.Linear | None = None
        if mode in ("reconstruction", "both"):
            self.encoder = nn.Linear(gru_hidden, 2 * latent_dim)  # -> (mu, logvar)
            self.decoder = GRU(latent_dim, recon_hidden, batch_first=True)
            # One pool for both GRUs: a buffer the encoder gave back (its input projection after its
            # forward, its gradients after its backward) serves the decoder, and the other way round,
            # instead of each keeping its own set (MSL, hidden 150, one thread: training peak RSS 0.90 -> 0.87 GB).
            self.decoder.workspace = self.gru.workspace
            self.decoder_out = nn.Linear(recon_hidden, 2 * self.n_targets)  # -> per-step (mu_x, logvar_x)

    def release_workspace(self) -> None:
        """Free the GRUs' scratch buffers; the estimator calls it when a training or a scoring pass ends.

        Reusing them from one batch to the next makes training faster, but a fitted model kept in a
        dict (one per channel, as notebook 05 keeps them) would otherwise hold a few hundred MB each.
        """
        for module in self.modules():
            if isinstance(module, GRU):
                module.release_workspace()

    # ------------------------------------------------------------------ validation
    def check_window(self, x: Tensor, name: str = "x") -> None:
        """Refuse anything but a finite floating ``[B, W, F]`` tensor matching this model."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor [B, W, F], got {type(x).__name__}; use torch.as_tensor")
        if x.dim() != 3:
            raise ValueError(
                f"{name} must be [B, W, F] = [batch, {self.window}, {self.n_features}], got {list(x.shape)}; "
                "add a batch dimension with x.unsqueeze(0) for one window"
            )
        if x.shape[1] != self.window:
            raise ValueError(
                f"{name} has window {x.shape[1]} but the model was built with window={self.window}; "
                "cut windows of that length or build the model with the data's window"
            )
        if x.shape[2] != self.n_features:
            raise ValueError(
                f"{name} has {x.shape[2]} features but the model was built with n_features={self.n_features}; "
                "select the same columns as in training or build a new model"
            )
        self._check_values(x, name)

    def _check_values(self, x: Tensor, name: str) -> None:
        if not torch.is_floating_point(x):
            raise TypeError(f"{name} must be a floating tensor, got {x.dtype}; convert with .float()")
        if x.shape[0] == 0:
            raise ValueError(f"{name} holds no windows (batch size 0)")
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).nonzero()[0].tolist()
            raise ValueError(
                f"{name} contains NaN or Inf (first at index {bad}); fill or drop missing values before the model"
            )

    def check_next(self, x: Tensor, y_next: Tensor) -> None:
        """Refuse ``y_next`` unless it is a finite ``[B, F]`` tensor for the ``B`` windows of ``x``."""
        if not isinstance(y_next, Tensor):
            raise TypeError(f"y_next must be a torch.Tensor [B, F], got {type(y_next).__name__}")
        if y_next.dim() != 2 or y_next.shape[0] != x.shape[0] or y_next.shape[1] != self.n_features:
            raise ValueError(
                f"y_next must be [B, F] = [{x.shape[0]}, {self.n_features}] (the step after each window), "
                f"got {list(y_next.shape)}"
            )
        self._check_values(y_next, "y_next")

    # ------------------------------------------------------------------ forward
    def targets(self, t: Tensor) -> Tensor:
        """The target columns of ``t [..., F]``: ``[..., F_t]`` (``t`` itself when every feature is a target)."""
        return t if self.target_index is None else t.index_select(-1, self.target_index)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """Shared trunk: ``x [B, W, F]`` -> ``h [B, H]`` and the attention ``[B, F, F]``, ``[B, W, W]``."""
        c = F.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # [B, W, F]; Conv1d wants [B, F, W]
        h_feat, a_feat = self.feature_attention(c, return_attention=True)
        h_time, a_time = self.time_attention(c, return_attention=True)
        _, h_n = self.gru(torch.cat([c, h_feat, h_time], dim=2))  # [B, W, 3F] -> h_n [layers, B, H]
        return {"h": h_n[-1], "feature_attention": a_feat, "time_attention": a_time}

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z [B, L]`` -> ``(mu_x, logvar_x)`` each ``[B, W, F_t]``; ``z`` is fed unchanged at every step."""
        # Sample b's own z at each of the W steps (as feeding z.unsqueeze(1).expand(-1, W, -1)); the
        # GRU computes the input projection of z once instead of W times (see tgad_lite.mtad.gru).
        out, _ = self.decoder.forward_repeated(z, self.window)
        mu, logvar = self.decoder_out(out).chunk(2, dim=-1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``x [B, W, F]`` -> dict; keys by mode.

        Always ``h [B, H]``, ``feature_attention [B, F, F]``, ``time_attention [B, W, W]``;
        forecasting: ``forecast [B, F_t]``; reconstruction: ``z_mu``, ``z_logvar``, ``z [B, L]`` and
        ``recon_mu``, ``recon_logvar [B, W, F_t]`` (``F_t = F`` unless ``target_features`` picks columns).
        ``z`` is a reparameterised draw in training mode and ``z_mu`` in eval mode (deterministic scores
        unless :meth:`score` asks for samples).
        """
        self.check_window(x)
        out = self.encode(x)
        if self.forecaster is not None:
            out["forecast"] = self.forecaster(out["h"])
        if self.encoder is not None:
            z_mu, z_logvar = self.encoder(out["h"]).chunk(2, dim=-1)
            z = self._sample(z_mu, z_logvar) if self.training else z_mu
            out["recon_mu"], out["recon_logvar"] = self.decode(z)
            out.update(z_mu=z_mu, z_logvar=z_logvar, z=z)
        return out

    @staticmethod
    def _sample(mu: Tensor, logvar: Tensor) -> Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    # ------------------------------------------------------------------ loss
    def loss(self, x: Tensor, y_next: Tensor) -> dict[str, Tensor]:
        """Joint training loss on windows ``x [B, W, F]`` and next steps ``y_next [B, F]``; scalars.

        ``forecast_rmse``: RMSE of the forecast (paper). ``recon_nll``: Gaussian negative log-likelihood
        of ``x`` per element; ``kl``: ``KL(q(z|x) || N(0, I))`` per window divided by ``W * F_t``, so
        ``recon_nll + kl`` is the negative ELBO per element. ``total`` sums the terms the mode has.
        With ``target_features`` the forecast and the reconstruction are of the target columns only.
        """
        self.check_next(x, y_next)
        out = self(x)
        zero = x.new_zeros(())
        terms = {"forecast_rmse": zero, "recon_nll": zero, "kl": zero}
        if "forecast" in out:
            terms["forecast_rmse"] = torch.sqrt(F.mse_loss(out["forecast"], self.targets(y_next)))
        if "recon_mu" in out:
            terms["recon_nll"] = gaussian_nll(self.targets(x), out["recon_mu"], out["recon_logvar"]).mean()
            mu, logvar = out["z_mu"], out["z_logvar"]
            kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(dim=1).mean()
            terms["kl"] = kl / (self.window * self.n_targets)
        terms["total"] = terms["forecast_rmse"] + terms["recon_nll"] + terms["kl"]
        return terms

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score(self, x: Tensor, y_next: Tensor, gamma: float = 1.0, samples: int = 0) -> Tensor:
        """Per-feature anomaly score of the step ``y_next [B, F]`` after each window ``x [B, W, F]``: ``[B, F_t]``.

        ``both``: ``(err + gamma * (1 - p)) / (1 + gamma)``; ``forecasting``: ``err``;
        ``reconstruction``: ``1 - p`` in ``[0, 1)``. ``err = (y_next - forecast)^2 >= 0``. ``p`` (see the
        module docstring) is taken for ``y_next`` as the last step of the window shifted by one,
        ``[x[:, 1:], y_next]``, so both terms judge the same time step. ``samples=0`` decodes ``z_mu``;
        ``samples=n`` averages ``p`` over ``n`` reparameterised draws of ``z``. Runs with the module's
        current train/eval state; call ``model.eval()`` first for scores without dropout.
        """
        self.check_window(x)
        self.check_next(x, y_next)
        self._check_score_args(gamma, samples)
        h_forecast = self.encode(x)["h"] if self.forecaster is not None else None
        h_recon = None
        if self.encoder is not None:
            shifted = torch.cat([x[:, 1:], y_next.unsqueeze(1)], dim=1)  # window ending at y_next
            h_recon = self.encode(shifted)["h"]
        return self._score(h_forecast, h_recon, y_next, gamma, samples)

    @torch.no_grad()
    def score_consecutive(self, windows: Tensor, gamma: float = 1.0, samples: int = 0) -> Tensor:
        """:meth:`score` for consecutive windows of one series, each encoded once: ``[B + 1, W, F]`` -> ``[B, F_t]``.

        ``windows[i + 1]`` must be ``windows[i]`` shifted by one step (``windows[i + 1][:-1] ==
        windows[i][1:]``), as sliding windows are. Row ``i`` of the result scores the step after
        ``windows[i]``, ``y = windows[i + 1][-1]``, and equals ``score(windows[:-1], windows[1:, -1])[i]``:
        the window that forecasts step ``i + 1`` is the one that, shifted, reconstructs it, so
        :meth:`score` would encode every window twice (once as ``x``, once as the shifted window).
        """
        self.check_window(windows, "windows")
        if windows.shape[0] < 2:
            raise ValueError(f"windows must hold at least 2 consecutive windows, got {windows.shape[0]}")
        if not torch.equal(windows[1:, :-1], windows[:-1, 1:]):
            raise ValueError(
                "windows are not consecutive (windows[i + 1] must be windows[i] shifted by one step); "
                "use score(x, y_next) for windows that are not sliding windows of one series"
            )
        self._check_score_args(gamma, samples)
        h = self.encode(windows)["h"]  # [B + 1, H]
        return self._score(h[:-1], h[1:], windows[1:, -1], gamma, samples)

    @staticmethod
    def _check_score_args(gamma: float, samples: int) -> None:
        if not isinstance(gamma, int | float) or isinstance(gamma, bool) or not gamma >= 0 or math.isinf(gamma):
            raise ValueError(f"gamma must be a finite number >= 0 (paper 1.0), got {gamma!r}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
            raise ValueError(f"samples must be an int >= 0 (0: decode the latent mean), got {samples!r}")

    def _score(self, h_forecast: Tensor | None, h_recon: Tensor | None, y_next: Tensor, gamma: float, samples: int):
        """The score from the encodings of the forecasting window and of the shifted window, ``[B, H]`` each."""
        y_next = self.targets(y_next)
        err = None
        if self.forecaster is not None:
            err = (y_next - self.forecaster(h_forecast)) ** 2
            if self.mode == "forecasting":
                return err
        z_mu, z_logvar = self.encoder(h_recon).chunk(2, dim=-1)
        if samples == 0:
            mu, logvar = self.decode(z_mu)
            p = reconstruction_probability(y_next, mu[:, -1], logvar[:, -1])
        else:
            # All draws in one batch [n * B, L]: the decoder runs once, no loop over draws.
            z = self._sample(z_mu.repeat(samples, 1), z_logvar.repeat(samples, 1))
            mu, logvar = self.decode(z)
            p = reconstruction_probability(y_next.repeat(samples, 1), mu[:, -1], logvar[:, -1])
            p = p.view(samples, *y_next.shape).mean(dim=0)
        if self.mode == "reconstruction":
            return 1 - p
        return (err + gamma * (1 - p)) / (1 + gamma)
