"""The families: the VAE (``vaecli.VAE``) with a total-correlation penalty."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

import vaecli
from vaecli.model import HALF_LOG_2PI, kl_standard_normal
from vaecli.nets import mlp_layers


def total_correlation(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, dataset_size: int) -> torch.Tensor:
    """TC = log q(z) - sum_d log q(z_d) of each code ``z`` ``(B, D)``, q(z) = (1/N) sum_n q(z|x_n)
    the aggregate posterior of a data set of N = ``dataset_size`` images, estimated on the batch
    by minibatch stratified sampling (Chen et al. 2018, appendix C.2): the code's own image
    weighs 1/N, each other image of the batch (N - 1) / (N (B - 1))."""
    b, n = z.shape[0], max(dataset_size, z.shape[0])
    # log q(z_i,d | x_j) for every pair: (B, B, D)
    log_q = -0.5 * (z.unsqueeze(1) - mean.unsqueeze(0)).pow(2) * torch.exp(-logvar.unsqueeze(0))
    log_q = log_q - 0.5 * logvar.unsqueeze(0) - HALF_LOG_2PI
    other = math.log((n - 1) / (n * (b - 1))) if b > 1 else -math.inf
    log_w = torch.full((b, b), other, device=z.device, dtype=z.dtype)
    log_w.fill_diagonal_(-math.log(n) if b > 1 else 0.0)
    joint = torch.logsumexp(log_q.sum(-1) + log_w, dim=1)
    marginals = torch.logsumexp(log_q + log_w.unsqueeze(-1), dim=1).sum(-1)
    return joint - marginals


def elbo_parts(model: vaecli.VAE, x: torch.Tensor, step: vaecli.Step, labels: Optional[torch.Tensor]):
    """``(mean, logvar, z, recon, kl)`` of a batch: the posterior, one reparameterised code, its
    -log p(x|z) and the closed-form KL, each per example: what every family here adds to."""
    mean, logvar = model.posterior(x, labels)
    z = mean + torch.exp(0.5 * logvar) * model.noise(mean, step.generator)
    return mean, logvar, z, -model.log_px(x, z, labels), kl_standard_normal(mean, logvar)


class BetaTCVAE(vaecli.VAE):
    """-ELBO + (beta - 1) TC: the KL's total-correlation part weighted by beta, its mutual
    information and dimension-wise parts by 1 (Chen et al. 2018 with alpha = gamma = 1)."""

    TERMS = ("recon", "kl", "tc")
    BATCH_TERM = "the total correlation, estimated from the batch's codes (minibatch-stratified sampling)"
    OBJECTIVE = "ELBO + (beta-1)*TC"
    OBJECTIVE_SETTINGS = ()

    def loss(self, x: torch.Tensor, step: vaecli.Step, labels: Optional[torch.Tensor] = None) -> vaecli.Loss:
        mean, logvar, z, recon, kl = elbo_parts(self, x, step, labels)
        tc = total_correlation(z, mean, logvar, self.options.dataset_size)
        objective = (recon + kl + (self.options.beta - 1) * tc).mean()
        return vaecli.Loss(objective, {"recon": recon, "kl": kl, "tc": tc})


class FactorVAE(vaecli.VAE):
    """-ELBO + gamma TC, TC = E log D(z) / (1 - D(z)) from a discriminator trained to tell codes
    from codes whose dimensions are shuffled across the batch (Kim & Mnih 2018). The
    discriminator is a second parameter group with an objective of its own."""

    TERMS = ("recon", "kl", "tc", "discriminator")
    BATCH_TERM = "the dimensions of the codes shuffled across the batch for the discriminator"
    OBJECTIVE = "ELBO + gamma*TC; the discriminator on its own"
    OBJECTIVE_SETTINGS = ()

    def __init__(self, encoder, decoder, likelihood, latent_dim, input_shape, num_classes=0, options=None) -> None:
        super().__init__(encoder, decoder, likelihood, latent_dim, input_shape, num_classes, options)
        sizes = [self.latent_dim, *options.hidden]
        self.critic = nn.Sequential(*mlp_layers(sizes, "leaky_relu"), nn.Linear(sizes[-1], 1))

    def parameter_groups(self) -> dict:
        critic = list(self.critic.parameters())
        return {"model": [p for p in self.parameters() if all(p is not q for q in critic)], "discriminator": critic}

    def shuffled(self, z: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """Each dimension of ``z`` permuted across the batch on its own: samples of prod_d q(z_d)."""
        keys = self.noise(z, generator)  # a permutation per dimension from the training noise
        return torch.gather(z, 0, keys.argsort(dim=0))

    def loss(self, x: torch.Tensor, step: vaecli.Step, labels: Optional[torch.Tensor] = None) -> vaecli.Loss:
        mean, logvar, z, recon, kl = elbo_parts(self, x, step, labels)
        tc = self.critic(z).squeeze(-1).float()  # the logit: log D / (1 - D)
        joint = self.critic(z.detach()).squeeze(-1).float()
        product = self.critic(self.shuffled(z.detach(), step.generator)).squeeze(-1).float()
        critic = F.binary_cross_entropy_with_logits(joint, torch.ones_like(joint), reduction="none")
        critic = critic + F.binary_cross_entropy_with_logits(product, torch.zeros_like(product), reduction="none")
        objective = (recon + kl + self.options.gamma * tc).mean()
        terms = {"recon": recon, "kl": kl, "tc": tc, "discriminator": critic}
        return vaecli.Loss(objective, terms, {"model": objective, "discriminator": critic.mean()})


class AnnealedVAE(vaecli.VAE):
    """recon + gamma |KL - C|, the capacity C raised linearly from 0 to ``c_max`` nats over
    ``iterations`` training steps (Burgess et al. 2018, eq. 8). The steps taken are a buffer of
    the model, saved in checkpoints, so a resumed run continues the schedule."""

    TERMS = ("recon", "kl", "capacity")
    OBJECTIVE = "recon + gamma*|KL - C|, C annealed"
    OBJECTIVE_SETTINGS = ()

    def __init__(self, encoder, decoder, likelihood, latent_dim, input_shape, num_classes=0, options=None) -> None:
        super().__init__(encoder, decoder, likelihood, latent_dim, input_shape, num_classes, options)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def loss(self, x: torch.Tensor, step: vaecli.Step, labels: Optional[torch.Tensor] = None) -> vaecli.Loss:
        mean, logvar, z, recon, kl = elbo_parts(self, x, step, labels)
        o = self.options
        capacity = o.c_max * torch.clamp(self.steps.float() / max(1, o.iterations), max=1.0)
        if self.training:
            self.steps += 1
        objective = (recon + o.gamma * (kl - capacity).abs()).mean()
        return vaecli.Loss(objective, {"recon": recon, "kl": kl, "capacity": capacity.expand_as(kl)})


def dip_penalty(mean: torch.Tensor, logvar: torch.Tensor, kind: str, lambda_od: float, lambda_d: float):
    """Kumar et al. 2018, eqs. 6 and 7: the covariance of the batch's posterior means (DIP-VAE-I)
    or of the aggregate posterior, E[Sigma(x)] + Cov[mu(x)] (DIP-VAE-II), pushed towards I:
    lambda_od on the squared off-diagonal entries, lambda_d on the squared (diagonal - 1)."""
    centred = mean - mean.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / max(1, mean.shape[0])
    if kind == "ii":
        cov = cov + torch.diag(logvar.exp().mean(dim=0))
    diagonal = torch.diagonal(cov)
    off = cov - torch.diag(diagonal)
    return lambda_od * off.pow(2).sum() + lambda_d * (diagonal - 1).pow(2).sum()


class DIPVAE(vaecli.VAE):
    """-ELBO + a penalty that pushes the covariance of the codes towards the identity
    (``dip_penalty``; Kumar et al. 2018, DIP-VAE-I or -II by ``kind``)."""

    TERMS = ("recon", "kl", "dip")
    BATCH_TERM = "the covariance of the batch's codes"
    OBJECTIVE = "ELBO + DIP covariance penalty"
    OBJECTIVE_SETTINGS = ()

    def loss(self, x: torch.Tensor, step: vaecli.Step, labels: Optional[torch.Tensor] = None) -> vaecli.Loss:
        mean, logvar, z, recon, kl = elbo_parts(self, x, step, labels)
        o = self.options
        penalty = dip_penalty(mean, logvar, o.kind, o.lambda_od, o.lambda_d_factor * o.lambda_od)
        objective = (recon + kl).mean() + penalty
        return vaecli.Loss(objective, {"recon": recon, "kl": kl, "dip": penalty.expand_as(kl)})
