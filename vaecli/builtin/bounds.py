"""Families that differ from the VAE in their bound: the deterministic auto-encoder, the
importance-weighted bounds (IWAE, MIWAE, PIWAE, CIWAE) and Burda et al.'s two stochastic layers."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

from ..hookspecs import ModelShape
from ..model import HALF_LOG_2PI, VAE, Loss, Step, kl_standard_normal, log_normal, repeat_labels, repeat_rows
from ..nets import mlp_layers


class AE(VAE):
    """A deterministic auto-encoder: the code is the encoder's mean (its logvar is unused), the
    loss -log p(x|code). There is no prior to sample nor a likelihood of x to estimate."""

    TERMS = ("recon",)
    OBJECTIVE = "reconstruction"
    OBJECTIVE_SETTINGS = ()
    HAS_LIKELIHOOD = False
    STOCHASTIC = False
    HAS_PRIOR = False  # `vae sample` decodes N(0, I) draws, which the loss never saw
    NORMAL_PRIOR = False

    def loss(self, x: torch.Tensor, step: Step, labels: Optional[torch.Tensor] = None) -> Loss:
        mean, _ = self.posterior(x, labels)
        recon = -self.log_px(x, mean, labels)
        return Loss(recon.mean(), {"recon": recon})

    def summary(self, means: dict) -> dict:
        return {}

    def kl_dims(self, mean: torch.Tensor, logvar: torch.Tensor) -> Optional[torch.Tensor]:
        return None


def iw_bounds(log_w: torch.Tensor, m: int, k: int) -> torch.Tensor:
    """``m`` importance-weighted bounds of ``k`` samples each from weights ``(B, m * k)``:
    log (1/k) sum_i w_i per group, ``(B, m)``."""
    return torch.logsumexp(log_w.view(log_w.shape[0], m, k), dim=2) - math.log(k)


class IWAE(VAE):
    """Trained on the importance-weighted bound of ``k`` samples (Burda et al. 2015, eq. 8);
    ``recon`` is averaged over the samples, ``kl`` in closed form (their sum is the ELBO)."""

    OBJECTIVE = "IWAE bound of k samples"
    OBJECTIVE_SETTINGS = ()

    def draws(self) -> tuple[int, int]:
        """(m, k): m bounds of k samples."""
        return 1, self.options.k

    def weights(self, x, step: Step, labels) -> tuple[torch.Tensor, dict]:
        mean, logvar = self.posterior(x, labels)
        m, k = self.draws()
        log_w, log_px = self.log_weights(x, labels, m * k, step.generator, (mean, logvar))
        return log_w, {"recon": -log_px.mean(dim=1), "kl": kl_standard_normal(mean, logvar)}

    def loss(self, x: torch.Tensor, step: Step, labels: Optional[torch.Tensor] = None) -> Loss:
        log_w, terms = self.weights(x, step, labels)
        m, k = self.draws()
        return Loss(-iw_bounds(log_w, m, k).mean(), terms)


class MIWAE(IWAE):
    """The mean of ``m`` IWAE bounds of ``k`` samples (Rainforth et al. 2018): a better
    signal-to-noise ratio for the encoder's gradient than one bound of m * k."""

    OBJECTIVE = "MIWAE: the mean of m IWAE bounds of k samples"

    def draws(self) -> tuple[int, int]:
        return self.options.m, self.options.k


class PIWAE(MIWAE):
    """The encoder follows the MIWAE bound (m of k), the decoder and likelihood the IWAE bound
    of all m * k samples (Rainforth et al. 2018): two parameter groups, two objectives."""

    OBJECTIVE = "PIWAE: the encoder on the MIWAE bound, the decoder on the IWAE bound of m*k samples"

    def parameter_groups(self) -> dict:
        encoder = [p for n, p in self.named_parameters() if n.startswith("encoder.")]
        return {"encoder": encoder, "decoder": [p for p in self.parameters() if all(p is not q for q in encoder)]}

    def loss(self, x: torch.Tensor, step: Step, labels: Optional[torch.Tensor] = None) -> Loss:
        log_w, terms = self.weights(x, step, labels)
        m, k = self.draws()
        iwae = -iw_bounds(log_w, 1, m * k).mean()
        miwae = -iw_bounds(log_w, m, k).mean()
        return Loss(iwae, terms, {"encoder": miwae, "decoder": iwae})


class CIWAE(IWAE):
    """beta * ELBO + (1 - beta) * IWAE bound of the same ``k`` samples (Rainforth et al. 2018)."""

    OBJECTIVE = "CIWAE: beta*ELBO + (1-beta)*IWAE bound of k samples"

    def loss(self, x: torch.Tensor, step: Step, labels: Optional[torch.Tensor] = None) -> Loss:
        log_w, terms = self.weights(x, step, labels)
        beta = self.options.beta
        bound = beta * log_w.mean(dim=1) + (1 - beta) * iw_bounds(log_w, 1, self.options.k)[:, 0]
        return Loss(-bound.mean(), terms)


def _mlp(sizes: list[int], out: int) -> nn.Sequential:
    return nn.Sequential(*mlp_layers(sizes, "tanh"), nn.Linear(sizes[-1], out))


class TwoLayer(VAE):
    """Burda et al. (2015)'s model with two stochastic layers: q(z1|x) q(z2|z1) and
    p(z2) p(z1|z2) p(x|z1), all diagonal Gaussians but p(x|z1). The architecture builds the
    x <-> z1 networks; this family adds z1 <-> z2 (``hidden`` tanh layers). ``encode`` and
    ``sample`` work on the top latent z2 (``--latent-dim``); decoding z2 decodes the mean of
    p(z1|z2). Trained on the ELBO or, with ``--iw-samples``, the IWAE bound."""

    OBJECTIVE_SETTINGS = ("beta", "kl_warmup", "iw_samples")

    @classmethod
    def arch_shape(cls, shape: ModelShape, options: Any) -> ModelShape:
        return ModelShape(shape.input_shape, options.z1, shape.params_per_pixel, shape.num_classes)

    def __init__(self, encoder, decoder, likelihood, latent_dim, input_shape, num_classes=0, options=None) -> None:
        super().__init__(encoder, decoder, likelihood, latent_dim, input_shape, num_classes, options)
        z1, hidden = options.z1, list(options.hidden)
        self.up = _mlp([z1, *hidden], 2 * latent_dim)  # q(z2|z1)
        self.down = _mlp([latent_dim, *reversed(hidden)], 2 * z1)  # p(z1|z2)

    def _q2(self, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.up(z1).float().chunk(2, dim=-1)
        return mean, logvar

    def _p1(self, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.down(z2).float().chunk(2, dim=-1)
        return mean, logvar

    def posterior(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z2|x), taken as q(z2 | z1 = the mean of q(z1|x))."""
        mean1, _ = super().posterior(x, labels)
        return self._q2(mean1)

    def likelihood_params(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """p(x | z1 = the mean of p(z1|z2)) for a top latent z2."""
        return super().likelihood_params(self._p1(z)[0], labels)

    def kl_dims(self, mean: torch.Tensor, logvar: torch.Tensor) -> Optional[torch.Tensor]:
        return None

    def log_weights(self, x, labels, samples, generator=None, posterior=None):
        """log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1|x) - log q(z2|z1), ``(B, S)``."""
        mean1, logvar1 = super().posterior(x, labels)
        b, d1 = mean1.shape
        eps1 = self.noise(mean1.unsqueeze(1).expand(b, samples, d1), generator)
        z1 = (mean1.unsqueeze(1) + torch.exp(0.5 * logvar1).unsqueeze(1) * eps1).reshape(b * samples, d1)
        mean2, logvar2 = self._q2(z1)
        eps2 = self.noise(mean2.view(b, samples, -1), generator).reshape(mean2.shape)
        z2 = mean2 + torch.exp(0.5 * logvar2) * eps2
        params = VAE.likelihood_params(self, z1, repeat_labels(labels, samples))  # p(x|z1)
        log_px = self.likelihood.log_prob(repeat_rows(x, samples), params)
        log_pz1 = log_normal(z1, *self._p1(z2))
        log_q1 = (-0.5 * eps1.pow(2) - 0.5 * logvar1.unsqueeze(1) - HALF_LOG_2PI).sum(-1).reshape(-1)
        log_q2 = (-0.5 * eps2.pow(2) - 0.5 * logvar2 - HALF_LOG_2PI).sum(-1)
        log_w = log_px + log_pz1 + self.log_prior(z2) - log_q1 - log_q2
        return log_w.view(b, samples), log_px.view(b, samples)

    loss = VAE.sampled_loss
