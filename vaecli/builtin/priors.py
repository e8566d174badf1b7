"""Families with a richer prior or posterior than a diagonal Gaussian against N(0, I): the
VampPrior, normalizing-flow posteriors (planar, radial, IAF) and the Hamiltonian VAE. Their KL
has no closed form: they train on the sampled ELBO (``VAE.sampled_loss``) of their own
``log_weights``, which ``vae evaluate`` uses for the NLL too."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..model import HALF_LOG_2PI, VAE, full_precision, repeat_labels, repeat_rows


class Sampled(VAE):
    """A family trained on its sampled ELBO, or with ``--iw-samples`` on the IWAE bound."""

    OBJECTIVE_SETTINGS = ("beta", "kl_warmup", "iw_samples")
    loss = VAE.sampled_loss

    def kl_dims(self, mean: torch.Tensor, logvar: torch.Tensor) -> Optional[torch.Tensor]:
        return None


class VampPrior(Sampled):
    """p(z) = (1/K) sum_k q(z | u_k), the posterior of K learned pseudo-inputs u_k (Tomczak &
    Welling 2018). Pseudo-inputs start at N(0.05, 0.01) and are clipped to [0, 1], as theirs."""

    NORMAL_PRIOR = False

    def __init__(self, encoder, decoder, likelihood, latent_dim, input_shape, num_classes=0, options=None) -> None:
        super().__init__(encoder, decoder, likelihood, latent_dim, input_shape, num_classes, options)
        self.pseudo_inputs = nn.Parameter(0.05 + 0.01 * torch.randn(options.components, *self.input_shape))

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z|u_k), each ``(K, D)``."""
        mean, logvar = self.encoder(F.hardtanh(self.pseudo_inputs, 0.0, 1.0))
        return mean.float(), logvar.float()

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        with full_precision(z):
            return self._log_prior(z.float())

    def _log_prior(self, z: torch.Tensor) -> torch.Tensor:
        mean, logvar = self.components()  # (K, D)
        flat = z.reshape(-1, z.shape[-1])  # (M, D)
        inv = torch.exp(-logvar)
        # sum_d (z - m)^2 / v as matrix products, (M, K), without an (M, K, D) tensor
        quad = flat.pow(2) @ inv.T - 2 * flat @ (mean * inv).T + (mean.pow(2) * inv).sum(-1)
        log_n = -0.5 * quad - 0.5 * logvar.sum(-1) - z.shape[-1] * HALF_LOG_2PI  # (M, K)
        return (torch.logsumexp(log_n, dim=1) - math.log(mean.shape[0])).view(z.shape[:-1])

    def prior_sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        mean, logvar = self.components()
        k = torch.randint(mean.shape[0], (n,), generator=generator, device=self.device)
        eps = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        return mean[k] + torch.exp(0.5 * logvar[k]) * eps


# -- normalizing flows -------------------------------------------------------------------------


class Planar(nn.Module):
    """f(z) = z + u' tanh(w.z + b), u' constrained so that f is invertible (Rezende & Mohamed
    2015, appendix A); log |det df/dz| = log |1 + u'.psi(z)|."""

    def __init__(self, d: int) -> None:
        super().__init__()
        w = torch.randn(d) / math.sqrt(d)
        # w.u = log(e - 1), where the constraint leaves u as it is: u' = u - w (w.u) / |w|^2 ~ 0,
        # so that the flow starts near the identity
        self.w = nn.Parameter(w)
        self.u = nn.Parameter(w * math.log(math.e - 1) / w.pow(2).sum() + 0.01 * torch.randn(d))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wu = self.w @ self.u
        u = self.u + (F.softplus(wu) - 1 - wu) * self.w / self.w.pow(2).sum().clamp(min=1e-12)
        h = torch.tanh(z @ self.w + self.b)  # (N,)
        psi = (1 - h.pow(2)).unsqueeze(-1) * self.w  # (N, D)
        return z + h.unsqueeze(-1) * u, torch.log((1 + psi @ u).abs() + 1e-8)


class Radial(nn.Module):
    """f(z) = z + beta h(alpha, r) (z - z0), h = 1 / (alpha + r), r = |z - z0|, with alpha > 0
    and beta >= -alpha (Rezende & Mohamed 2015)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.z0 = nn.Parameter(0.01 * torch.randn(d))
        self.alpha = nn.Parameter(torch.zeros(()))
        self.beta = nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = F.softplus(self.alpha)
        beta = -alpha + F.softplus(self.beta)
        diff = z - self.z0
        r = diff.norm(dim=-1, keepdim=True)
        h = 1 / (alpha + r)
        logdet = (z.shape[-1] - 1) * torch.log1p(beta * h) + torch.log1p(beta * h - beta * r * h.pow(2))
        return z + beta * h * diff, logdet.squeeze(-1)


class MaskedLinear(nn.Linear):
    def __init__(self, d_in: int, d_out: int, mask: torch.Tensor) -> None:
        super().__init__(d_in, d_out)
        self.mask: torch.Tensor
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class IAFStep(nn.Module):
    """One step of inverse autoregressive flow (Kingma et al. 2016, eq. 11-14): a MADE gives
    (m, s) with output i depending on z_<i; sigma = sigmoid(s + 1), z' = sigma z + (1 - sigma) m,
    log |det| = sum log sigma. ``flip`` reverses the order of the dimensions first."""

    def __init__(self, d: int, hidden: int, flip: bool) -> None:
        super().__init__()
        self.flip = flip
        degrees_in = torch.arange(1, d + 1)
        degrees_h = torch.arange(hidden) % max(1, d - 1) + 1
        self.hidden = MaskedLinear(d, hidden, (degrees_h[:, None] >= degrees_in[None, :]).float())
        out_mask = (degrees_in[:, None] > degrees_h[None, :]).float()
        self.m = MaskedLinear(hidden, d, out_mask)
        self.s = MaskedLinear(hidden, d, out_mask)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.flip:
            z = z.flip(-1)
        h = F.elu(self.hidden(z))
        sigma = torch.sigmoid(self.s(h) + 1.0)
        out = sigma * z + (1 - sigma) * self.m(h)
        return (out.flip(-1) if self.flip else out), torch.log(sigma).sum(-1)


class Flow(Sampled):
    """q(z|x): a diagonal Gaussian pushed through a normalizing flow, log q(z_K|x) = log q(z_0|x)
    - sum_k log |det df_k/dz|. Its code (``encode``) is the flow applied to the Gaussian's mean."""

    def __init__(self, encoder, decoder, likelihood, latent_dim, input_shape, num_classes=0, options=None) -> None:
        super().__init__(encoder, decoder, likelihood, latent_dim, input_shape, num_classes, options)
        self.flow = nn.ModuleList(self.layers(self.latent_dim, options))

    def layers(self, d: int, options) -> list[nn.Module]:
        raise NotImplementedError

    def transform(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = z.float()
        logdet = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)
        with full_precision(z):  # a log-determinant summed over layers: in fp32 under mixed precision
            for layer in self.flow:
                z, ld = layer(z)
                logdet = logdet + ld
        return z, logdet

    def posterior(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = super().posterior(x, labels)
        return self.transform(mean)[0], logvar

    def log_weights(self, x, labels, samples, generator=None, posterior=None):
        mean, logvar = VAE.posterior(self, x, labels)  # q(z_0|x)
        b, d = mean.shape
        eps = self.noise(mean.unsqueeze(1).expand(b, samples, d), generator)  # (B, S, D)
        z0 = mean.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps
        z, logdet = self.transform(z0.reshape(b * samples, d))
        log_q = (-0.5 * eps.pow(2) - 0.5 * logvar.unsqueeze(1) - HALF_LOG_2PI).sum(-1).reshape(-1) - logdet
        log_px = self.log_px(repeat_rows(x, samples), z, repeat_labels(labels, samples))
        log_w = log_px + self.log_prior(z) - log_q
        return log_w.view(b, samples), log_px.view(b, samples)


class PlanarFlow(Flow):
    def layers(self, d: int, options) -> list[nn.Module]:
        return [Planar(d) for _ in range(options.flows)]


class RadialFlow(Flow):
    def layers(self, d: int, options) -> list[nn.Module]:
        return [Radial(d) for _ in range(options.flows)]


class IAF(Flow):
    def layers(self, d: int, options) -> list[nn.Module]:
        return [IAFStep(d, options.hidden, flip=i % 2 == 1) for i in range(options.flows)]


# -- Hamiltonian VAE ---------------------------------------------------------------------------


class HVAE(Sampled):
    """The Hamiltonian VAE (Caterini et al. 2018): z_0 ~ q(z|x) and a momentum rho_0 ~ N(0, I /
    beta_0) move by ``steps`` leapfrog steps of the potential -log p(x, z), the momentum tempered
    after each until beta = 1. The weight log p(x, z_K) + log N(rho_K; 0, I) - log q(z_0|x) -
    log N(gamma; 0, I) (rho_0 = gamma / sqrt(beta_0)) is an unbiased bound's summand; step sizes
    (one per dimension) and beta_0 are learned where ``learn`` is set."""

    def __init__(self, encoder, decoder, likelihood, latent_dim, input_shape, num_classes=0, options=None) -> None:
        super().__init__(encoder, decoder, likelihood, latent_dim, input_shape, num_classes, options)
        if options.learn:  # per-dimension step sizes and beta_0 (through a sigmoid), learned
            self.log_eps = nn.Parameter(torch.full((self.latent_dim,), math.log(options.step_size)))
            b0 = options.beta_zero
            self.raw_beta = nn.Parameter(torch.tensor(math.log(b0 / (1 - b0))))

    def steps_and_beta(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The leapfrog step sizes ``(D,)`` and sqrt(beta_0)."""
        if self.options.learn:
            return torch.exp(self.log_eps), torch.sqrt(torch.sigmoid(self.raw_beta))
        fixed = torch.full((self.latent_dim,), self.options.step_size, device=self.device)
        return fixed, torch.tensor(math.sqrt(self.options.beta_zero), device=self.device)

    def _potential_grad(self, x, z, labels, keep: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(x|z) ``(N,)``, d/dz of -log p(x|z) - log p(z) ``(N, D)``)."""
        if not z.requires_grad:
            z = z.detach().requires_grad_()
        log_px = self.log_px(x, z, labels)
        grad = torch.autograd.grad(-(log_px + self.log_prior(z)).sum(), z, create_graph=keep)[0]
        return log_px, grad

    def log_weights(self, x, labels, samples, generator=None, posterior=None):
        mean, logvar = VAE.posterior(self, x, labels)
        b, d = mean.shape
        eps = self.noise(mean.unsqueeze(1).expand(b, samples, d), generator)
        gamma = self.noise(eps, generator).reshape(b * samples, d)
        log_q = (-0.5 * eps.pow(2) - 0.5 * logvar.unsqueeze(1) - HALF_LOG_2PI).sum(-1).reshape(-1)
        log_gamma = (-0.5 * gamma.pow(2) - HALF_LOG_2PI).sum(-1)
        z = (mean.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps).reshape(b * samples, d)
        xs, ys = repeat_rows(x, samples), repeat_labels(labels, samples)
        keep = torch.is_grad_enabled()  # training: differentiate through the leapfrog steps
        step, sqrt_b0 = self.steps_and_beta()
        with torch.enable_grad():
            rho, prev = gamma / sqrt_b0, sqrt_b0
            log_px, grad = self._potential_grad(xs, z, ys, keep)
            steps = self.options.steps
            for k in range(1, steps + 1):
                rho = rho - 0.5 * step * grad
                z = z + step * rho
                log_px, grad = self._potential_grad(xs, z, ys, keep)
                rho = rho - 0.5 * step * grad
                sqrt_bk = 1 / ((1 - 1 / sqrt_b0) * (k / steps) ** 2 + 1 / sqrt_b0)  # 1 at k = steps
                rho, prev = rho * (prev / sqrt_bk), sqrt_bk
            if not keep:
                z, rho, log_px = z.detach(), rho.detach(), log_px.detach()
        log_rho = (-0.5 * rho.pow(2) - HALF_LOG_2PI).sum(-1)
        log_w = log_px + self.log_prior(z) + log_rho - log_q - log_gamma
        return log_w.view(b, samples), log_px.view(b, samples)
