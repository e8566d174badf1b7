"""Families with a discriminator, trained on an objective of its own (a second parameter group,
``VAE.parameter_groups``): the adversarial auto-encoder and the VAE-GAN. Both groups step
together after each batch, from gradients of the same forward pass."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..model import VAE, Loss, Step, kl_standard_normal
from ..nets import mlp_layers


def discriminator(d_in: int, hidden: tuple) -> nn.Sequential:
    """An MLP from ``d_in`` numbers to one logit (leaky ReLU between layers)."""
    sizes = [d_in, *hidden]
    return nn.Sequential(*mlp_layers(sizes, "leaky_relu"), nn.Linear(sizes[-1], 1))


def real(logits: torch.Tensor) -> torch.Tensor:
    """-log D per example (the discriminator says "real")."""
    return F.binary_cross_entropy_with_logits(
        logits.squeeze(-1).float(), torch.ones_like(logits.squeeze(-1).float()), reduction="none"
    )


def fake(logits: torch.Tensor) -> torch.Tensor:
    """-log (1 - D) per example (the discriminator says "generated")."""
    return F.binary_cross_entropy_with_logits(
        logits.squeeze(-1).float(), torch.zeros_like(logits.squeeze(-1).float()), reduction="none"
    )


class Discriminated(VAE):
    """The model's parameters in group ``model``, the discriminator's in ``discriminator``."""

    critic: nn.Module

    def parameter_groups(self) -> dict:
        critic = list(self.critic.parameters())
        return {"model": [p for p in self.parameters() if all(p is not q for q in critic)], "discriminator": critic}


class AAE(Discriminated):
    """Adversarial auto-encoder (Makhzani et al. 2016), the deterministic variant: a
    discriminator learns to tell the codes z = encoder(x) from N(0, I) draws, and the encoder
    learns to fool it while the decoder reconstructs: -log p(x|z) + ``adversarial`` * -log D(z)."""

    TERMS = ("recon", "adversarial", "discriminator")
    OBJECTIVE = "reconstruction + adversarial*(-log D(z)); the discriminator on its own"
    OBJECTIVE_SETTINGS = ()
    HAS_LIKELIHOOD = False
    STOCHASTIC = False

    def __init__(self, encoder, decoder, likelihood, latent_dim, input_shape, num_classes=0, options=None) -> None:
        super().__init__(encoder, decoder, likelihood, latent_dim, input_shape, num_classes, options)
        self.critic = discriminator(self.latent_dim, options.hidden)

    def summary(self, means: dict) -> dict:
        return {}

    def kl_dims(self, mean: torch.Tensor, logvar: torch.Tensor) -> Optional[torch.Tensor]:
        return None

    def loss(self, x: torch.Tensor, step: Step, labels: Optional[torch.Tensor] = None) -> Loss:
        z, _ = self.posterior(x, labels)
        recon = -self.log_px(x, z, labels)
        fooled = real(self.critic(z))
        critic = real(self.critic(self.noise(z, step.generator))) + fake(self.critic(z.detach()))
        objective = (recon + self.options.adversarial * fooled).mean()
        terms = {"recon": recon, "adversarial": fooled, "discriminator": critic}
        return Loss(objective, terms, {"model": objective, "discriminator": critic.mean()})


class VAEGAN(Discriminated):
    """A VAE whose decoder also learns to fool an image discriminator (Larsen et al. 2016, with
    the pixel likelihood kept as the reconstruction term rather than their feature-space one):
    -ELBO + ``adversarial`` * -log D of its reconstructions and prior samples; the
    discriminator learns to tell those from the data. Its ELBO and NLL are those of the VAE."""

    TERMS = ("recon", "kl", "adversarial", "discriminator")
    OBJECTIVE = "ELBO + adversarial*(-log D(x~)); the discriminator on its own"
    OBJECTIVE_SETTINGS = ("beta", "kl_warmup")

    def __init__(self, encoder, decoder, likelihood, latent_dim, input_shape, num_classes=0, options=None) -> None:
        super().__init__(encoder, decoder, likelihood, latent_dim, input_shape, num_classes, options)
        self.critic = nn.Sequential(nn.Flatten(), discriminator(math.prod(self.input_shape), options.hidden))

    def loss(self, x: torch.Tensor, step: Step, labels: Optional[torch.Tensor] = None) -> Loss:
        mean, logvar = self.posterior(x, labels)
        z = mean + torch.exp(0.5 * logvar) * self.noise(mean, step.generator)
        params = self.likelihood_params(z, labels)
        recon, kl = -self.likelihood.log_prob(x, params), kl_standard_normal(mean, logvar)
        prior = self.likelihood_params(self.noise(mean, step.generator), labels)
        made = [self.likelihood.mean(params), self.likelihood.mean(prior)]  # what the decoder shows
        fooled = 0.5 * (real(self.critic(made[0])) + real(self.critic(made[1])))
        seen = x if getattr(self.likelihood, "layout", None) is None else torch.nan_to_num(x)  # missing cells: 0
        critic = real(self.critic(seen)) + 0.5 * (
            fake(self.critic(made[0].detach())) + fake(self.critic(made[1].detach()))
        )
        objective = (recon + step.beta * kl + self.options.adversarial * fooled).mean()
        terms = {"recon": recon, "kl": kl, "adversarial": fooled, "discriminator": critic}
        return Loss(objective, terms, {"model": objective, "discriminator": critic.mean()})
