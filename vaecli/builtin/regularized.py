"""Families that replace the KL term by another regulariser of the codes: WAE-MMD, InfoVAE
(MMD-VAE), the regularised auto-encoders RAE-L2 and RAE-GP, and VQ-VAE. A batch-level term
(an MMD, a weight norm) is reported per example as the batch's value, so that its mean over an
epoch is the mean over its batches."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..model import VAE, Loss, Step, kl_standard_normal


def mmd(z: torch.Tensor, prior: torch.Tensor, kernel: str = "imq", bandwidth: float = 1.0) -> torch.Tensor:
    """The unbiased estimate of MMD^2 between codes ``z`` and prior draws ``prior`` (each ``(N,
    D)``): an inverse multiquadratic kernel C / (C + |a - b|^2) summed over the scales C = 2 D
    s^2 {0.1, 0.2, 0.5, 1, 2, 5, 10} (Tolstikhin et al. 2018), or an RBF exp(-|a - b|^2 / C)."""
    n, d = z.shape
    scale = 2.0 * d * bandwidth**2

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        dist = torch.cdist(a, b).pow(2)
        if kernel == "rbf":
            return torch.exp(-dist / scale)
        return sum((s * scale) / (s * scale + dist) for s in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0))  # type: ignore[return-value]

    off = 1 - torch.eye(n, device=z.device, dtype=z.dtype)
    pairs = max(1, n * (n - 1))
    return (k(z, z) * off).sum() / pairs + (k(prior, prior) * off).sum() / pairs - 2 * k(z, prior).mean()


def per_example(value: torch.Tensor, n: int) -> torch.Tensor:
    """A batch-level scalar as a per-example term ``(n,)``."""
    return value.expand(n)


class Deterministic(VAE):
    """A code, not a posterior: z is the encoder's mean (its logvar is unused). No likelihood of
    x to estimate: ``vae evaluate`` reports the family's terms."""

    OBJECTIVE_SETTINGS = ()
    HAS_LIKELIHOOD = False
    STOCHASTIC = False

    def summary(self, means: dict) -> dict:
        return {}

    def kl_dims(self, mean: torch.Tensor, logvar: torch.Tensor) -> Optional[torch.Tensor]:
        return None


class WAE(Deterministic):
    """Wasserstein auto-encoder with the MMD penalty (Tolstikhin et al. 2018): -log p(x|z) +
    ``lam`` MMD(q(z), N(0, I)) over each batch."""

    TERMS = ("recon", "mmd")
    BATCH_TERM = "the MMD between the batch's codes and as many prior draws"
    OBJECTIVE = "reconstruction + lam*MMD(q(z), N(0, I))"

    def loss(self, x: torch.Tensor, step: Step, labels: Optional[torch.Tensor] = None) -> Loss:
        z, _ = self.posterior(x, labels)
        recon = -self.log_px(x, z, labels)
        o = self.options
        dist = mmd(z, self.noise(z, step.generator), o.kernel, o.bandwidth)
        return Loss(recon.mean() + o.lam * dist, {"recon": recon, "mmd": per_example(dist, len(z))})


class InfoVAE(VAE):
    """InfoVAE with the MMD divergence (Zhao et al. 2019, eq. 6): -log p(x|z) + (1 - alpha) KL +
    (alpha + lam - 1) MMD(q(z), N(0, I)); the ELBO and NLL are those of its Gaussian posterior."""

    TERMS = ("recon", "kl", "mmd")
    BATCH_TERM = "the MMD between the batch's codes and as many prior draws"
    OBJECTIVE = "reconstruction + (1-alpha)*KL + (alpha+lam-1)*MMD(q(z), N(0, I))"
    OBJECTIVE_SETTINGS = ()

    def loss(self, x: torch.Tensor, step: Step, labels: Optional[torch.Tensor] = None) -> Loss:
        mean, logvar = self.posterior(x, labels)
        z = mean + torch.exp(0.5 * logvar) * self.noise(mean, step.generator)
        recon, kl = -self.log_px(x, z, labels), kl_standard_normal(mean, logvar)
        o = self.options
        dist = mmd(z, self.noise(z, step.generator), o.kernel, o.bandwidth)
        objective = (recon + (1 - o.alpha) * kl).mean() + (o.alpha + o.lam - 1) * dist
        return Loss(objective, {"recon": recon, "kl": kl, "mmd": per_example(dist, len(z))})


class RAE(Deterministic):
    """Regularised auto-encoder (Ghosh et al. 2020): -log p(x|z) + ``beta`` |z|^2 / 2 + a
    regulariser of the decoder, here ``lam`` times the squared norm of its weights (RAE-L2).
    There is no prior to sample: fit one to the codes (a sampler), or decode N(0, I) draws."""

    TERMS = ("recon", "code", "decoder")
    OBJECTIVE = "reconstruction + beta*|z|^2/2 + lam*|decoder weights|^2"
    HAS_PRIOR = False
    NORMAL_PRIOR = False

    def decoder_penalty(self, z: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        """``(B,)``: the squared norm of the decoder's weights, for every example."""
        return per_example(sum(p.pow(2).sum() for p in self.decoder.parameters()), len(z))  # type: ignore[arg-type]

    def loss(self, x: torch.Tensor, step: Step, labels: Optional[torch.Tensor] = None) -> Loss:
        z, _ = self.posterior(x, labels)
        recon = -self.log_px(x, z, labels)
        code = 0.5 * z.pow(2).sum(-1)
        penalty = self.decoder_penalty(z, labels)
        o = self.options
        return Loss(
            (recon + o.beta * code + o.lam * penalty).mean(), {"recon": recon, "code": code, "decoder": penalty}
        )


class RAEGP(RAE):
    """RAE-GP: the decoder's regulariser is the squared norm of its gradient with respect to
    the code, |d decoder(z) / dz|^2 (of the summed likelihood parameters), per example."""

    OBJECTIVE = "reconstruction + beta*|z|^2/2 + lam*|d decoder/dz|^2"

    def decoder_penalty(self, z: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        keep = torch.is_grad_enabled()  # training: the penalty's own gradient is wanted
        with torch.enable_grad():
            z = z if z.requires_grad else z.detach().requires_grad_()  # evaluation: no graph to z yet
            params = self.likelihood_params(z, labels)
            grad = torch.autograd.grad(params.sum(), z, create_graph=keep)[0]
        return grad.pow(2).sum(-1) if keep else grad.pow(2).sum(-1).detach()


class VQVAE(Deterministic):
    """Vector-quantised auto-encoder (van den Oord et al. 2017): the code is cut into pieces of
    ``dim`` numbers, each replaced by the nearest of ``codes`` learned vectors; the decoder sees
    the quantised code (gradients pass straight through to the encoder). Loss -log p(x|z_q) +
    |sg(z) - z_q|^2 + ``commitment`` |z - sg(z_q)|^2. Its prior is uniform over the codebook."""

    TERMS = ("recon", "vq")
    OBJECTIVE = "reconstruction + codebook + commitment*|z - sg(z_q)|^2"
    NORMAL_PRIOR = False

    def __init__(self, encoder, decoder, likelihood, latent_dim, input_shape, num_classes=0, options=None) -> None:
        if latent_dim % options.dim:
            raise ValueError(f"the latent dimension ({latent_dim}) must be a multiple of dim ({options.dim})")
        super().__init__(encoder, decoder, likelihood, latent_dim, input_shape, num_classes, options)
        k = options.codes
        self.codebook = nn.Parameter(torch.empty(k, options.dim).uniform_(-1 / k, 1 / k))

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """The nearest codebook entry of each piece of ``z`` ``(N, D)``: ``(N, D / dim)``."""
        pieces = z.reshape(-1, self.options.dim)
        return torch.cdist(pieces, self.codebook.to(pieces.dtype)).argmin(-1).view(z.shape[0], -1)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        return self.codebook[self.indices(z)].reshape(z.shape).to(z.dtype)

    def likelihood_params(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Decode the quantised ``z`` (a code from ``encode`` or anywhere in latent space)."""
        return super().likelihood_params(self.quantize(z), labels)

    def prior_sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        pieces = self.latent_dim // self.options.dim
        idx = torch.randint(self.options.codes, (n, pieces), generator=generator, device=self.device)
        return self.codebook.detach()[idx].reshape(n, self.latent_dim)

    def loss(self, x: torch.Tensor, step: Step, labels: Optional[torch.Tensor] = None) -> Loss:
        z, _ = self.posterior(x, labels)
        zq = self.quantize(z)
        straight = z + (zq - z).detach()
        recon = -self.likelihood.log_prob(x, VAE.likelihood_params(self, straight, labels))
        vq = (z.detach() - zq).pow(2).sum(-1) + self.options.commitment * (z - zq.detach()).pow(2).sum(-1)
        return Loss((recon + vq).mean(), {"recon": recon, "vq": vq})
