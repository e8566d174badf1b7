"""The VAE: encoder q(z|x), standard normal prior p(z), decoder p(x|z), and its loss.

Kingma & Welling, "Auto-Encoding Variational Bayes" (2013): the negative ELBO

    -ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || p(z)),

estimated with one reparameterised sample z = mean + sigma * eps, eps ~ N(0, I), and the KL in
closed form for a diagonal Gaussian against N(0, I) (their Appendix B). Every number is in nats
per example: log-likelihoods are summed over pixels, then averaged over the batch.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import nn

from .images import to_unit
from .likelihood import Likelihood

MODEL_KINDS = ("vae", "ae", "cvae")  # cvae: encoder and decoder conditioned on the class


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 for sums over a dataset, except on Apple's MPS, which has no float64."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def kl_per_dim(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) of each latent dimension: ``(B, D)`` nats.

    Closed form (Kingma & Welling 2013, Appendix B): 1/2 * (mean^2 + var - 1 - log var).
    """
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over latent dimensions: ``(B,)`` nats."""
    return kl_per_dim(mean, logvar).sum(dim=-1)


def gaussian_noise(like: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """eps ~ N(0, I) shaped like ``like``, from ``generator`` when given (else the global RNG)."""
    if generator is None:
        return torch.randn_like(like)
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


class LossTerms(NamedTuple):
    """One batch: ``objective`` (the scalar minimised) and per-example ``recon`` and ``kl``
    (nats). ``recon + kl`` is the negative ELBO whatever the objective (beta, free bits and
    the IWAE bound change only ``objective``)."""

    objective: torch.Tensor
    recon: torch.Tensor  # (B,)  -log p(x|z)
    kl: torch.Tensor  # (B,)  KL(q(z|x) || p(z)); zeros for a plain auto-encoder


class VAE(nn.Module):
    """Encoder, decoder and likelihood composed into a VAE (``kind="vae"``), a
    class-conditional VAE (``kind="cvae"``, Sohn et al. 2015: q(z|x,y) and p(x|z,y) with a
    standard normal prior) or a plain deterministic auto-encoder (``kind="ae"``: z is the
    encoder mean, no KL term).

    Methods ``sample``, ``encode``, ``decode`` and ``reconstruct`` are for using a trained
    model: they take uint8 images or floats in the data range, run without gradients and
    return tensors on the model's device. Training goes through ``forward`` (the objective).
    ``labels`` are class indices ``(B,)``; a cvae needs them to encode, and decodes class
    ``i % K`` for row ``i`` when they are not given.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        latent_dim: int,
        input_shape: tuple[int, int, int],
        kind: str = "vae",
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if kind not in MODEL_KINDS:
            raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")
        if (kind == "cvae") != (num_classes > 0):
            raise ValueError("a cvae needs num_classes > 0, and only a cvae takes classes")
        self.num_classes = int(num_classes)
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = int(latent_dim)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.kind = kind
        self.meta: dict = {}  # checkpoint metadata, set by vaecli.checkpoint.load
        # (offset, total): this batch is rows offset.. of a global batch of total rows (training on
        # several processes); the noise is drawn for all of it, so that it is what one process draws
        self.noise_rows: Optional[tuple[int, int]] = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- the model ----------------------------------------------------------------------------

    def one_hot(self, labels: Optional[torch.Tensor], n: int, what: str = "encode") -> Optional[torch.Tensor]:
        """The class condition ``(n, K)`` of a cvae (None for other models). Without labels a
        cvae decodes class ``i % K`` for row ``i``; to encode it needs them."""
        if not self.num_classes:
            if labels is not None:
                raise ValueError(f"labels were given to a {self.kind}, which is not class-conditional")
            return None
        if labels is None:
            if what == "encode":
                raise ValueError("this model is class-conditional (cvae): give the images' labels")
            labels = torch.arange(n, device=self.device) % self.num_classes
        labels = torch.as_tensor(labels, device=self.device).long().reshape(-1)
        if labels.shape[0] != n:
            raise ValueError(f"got {labels.shape[0]} labels for {n} rows")
        # checked in use; training labels are checked once (no host synchronisation per step)
        checked = self.training or not labels.numel()
        if not checked and not (0 <= int(labels.min()) and int(labels.max()) < self.num_classes):
            raise ValueError(f"labels must be class indices 0 to {self.num_classes - 1}")
        return torch.nn.functional.one_hot(labels, self.num_classes).float()  # (n, K)

    def posterior(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) (q(z|x,y) for a cvae) as (mean, logvar), each ``(B, D)``."""
        y = self.one_hot(labels, x.shape[0])
        mean, logvar = self.encoder(x) if y is None else self.encoder(x, y)
        return mean.float(), logvar.float()  # float32 under mixed precision too

    def likelihood_params(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Decoder output as likelihood parameters ``(B, P, C, H, W)``."""
        y = self.one_hot(labels, z.shape[0], "decode")
        out = self.decoder(z) if y is None else self.decoder(z, y)  # (B, P*C, H, W)
        c, h, w = self.input_shape
        return out.float().view(out.shape[0], self.likelihood.params_per_pixel, c, h, w)

    def forward(
        self,
        x: torch.Tensor,
        beta: float = 1.0,
        generator: Optional[torch.Generator] = None,
        *,
        labels: Optional[torch.Tensor] = None,
        free_bits: float = 0.0,
        iw_samples: int = 1,
    ) -> LossTerms:
        """The training objective of a batch ``x`` ``(B, C, H, W)`` (preprocessed floats):

        - the negative ELBO with its KL weighted by ``beta`` (Higgins et al. 2017's beta-VAE;
          below 1 during a KL warm-up, Bowman et al. 2016, Sonderby et al. 2016);
        - with ``free_bits`` lambda > 0, the KL of each latent dimension, averaged over the
          batch, counts as at least lambda nats (Kingma et al. 2016, eq. 15), so that the
          optimiser gains nothing by pushing a dimension below lambda;
        - with ``iw_samples`` k > 1, the negative importance-weighted bound (Burda et al. 2015)
          in place of the ELBO.
        """
        if iw_samples > 1 and (beta != 1 or free_bits > 0):
            raise ValueError("the importance-weighted bound has no separate KL term to weight or free")
        mean, logvar = self.posterior(x, labels)  # (B, D), (B, D)
        if self.kind == "ae":
            kl = torch.zeros(mean.shape[0], device=mean.device, dtype=mean.dtype)
            recon = -self.likelihood.log_prob(x, self.likelihood_params(mean, labels))  # (B,)
            return LossTerms(recon.mean(), recon, kl)
        if iw_samples > 1:
            return self._iwae_loss(x, labels, mean, logvar, iw_samples, generator)
        z = mean + torch.exp(0.5 * logvar) * self._noise(mean, generator)  # reparameterised
        kl_dims = kl_per_dim(mean, logvar)  # (B, D)
        kl = kl_dims.sum(dim=-1)  # (B,)
        recon = -self.likelihood.log_prob(x, self.likelihood_params(z, labels))  # (B,)
        if free_bits > 0:
            penalty = kl_dims.mean(dim=0).clamp(min=free_bits).sum()  # sum_j max(lambda, E_batch KL_j)
            objective = recon.mean() + beta * penalty
        else:
            objective = (recon + beta * kl).mean()
        return LossTerms(objective, recon, kl)

    def _noise(self, like: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """The training noise of this batch: ``gaussian_noise``, or this shard's rows of the noise
        of the global batch (``noise_rows``)."""
        if self.noise_rows is None:
            return gaussian_noise(like, generator)
        offset, total = self.noise_rows
        full = torch.randn((total, *like.shape[1:]), generator=generator, device=like.device, dtype=like.dtype)
        return full[offset : offset + like.shape[0]]

    def _iwae_loss(self, x, labels, mean, logvar, k: int, generator) -> LossTerms:
        """-log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x) reparameterised (Burda et
        al. 2015, eq. 8), averaged over the batch; ``recon`` is averaged over the k samples."""
        b, d = mean.shape
        eps = self._noise(mean.unsqueeze(1).expand(b, k, d), generator)  # (B, k, D)
        log_w, log_px = self.log_weights(x, labels, mean, logvar, eps)  # (B, k), (B, k)
        bound = torch.logsumexp(log_w, dim=1) - math.log(k)  # (B,)
        return LossTerms(-bound.mean(), -log_px.mean(dim=1), kl_standard_normal(mean, logvar))

    def log_weights(
        self, x: torch.Tensor, labels, mean: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The importance weights of samples z = mean + sigma * eps ``(B, S, D)`` of q(z|x):
        (log p(x|z) + log p(z) - log q(z|x), log p(x|z)), each ``(B, S)`` (Burda et al. 2015).
        The one helper of the IWAE objective and of the importance-sampled NLL."""
        b, s, d = eps.shape
        z = mean.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps  # (B, S, D)
        xs = x.unsqueeze(1).expand(b, s, *x.shape[1:]).reshape(b * s, *x.shape[1:])
        ys = None if labels is None else torch.as_tensor(labels, device=x.device).repeat_interleave(s)
        log_px = self.likelihood.log_prob(xs, self.likelihood_params(z.reshape(b * s, d), ys)).view(b, s)
        return log_px + _log_weight_prior_ratio(z, eps, logvar), log_px

    # -- using a trained model ----------------------------------------------------------------

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (or floats already in the data range) -> floats on the model's device."""
        x = images.to(self.device)
        return to_unit(x) if x.dtype == torch.uint8 else x.float()

    def _check_latents(self, z: torch.Tensor) -> torch.Tensor:
        z = torch.as_tensor(z, dtype=torch.float32, device=self.device)
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"latents must have shape (N, {self.latent_dim}), got {tuple(z.shape)}")
        return z

    def _output(self, params: torch.Tensor, mode: str, generator: Optional[torch.Generator]) -> torch.Tensor:
        if mode == "mean":
            return self.likelihood.mean(params)
        if mode == "sample":
            return self.likelihood.sample(params, generator=generator)
        raise ValueError(f"mode must be 'mean' or 'sample', got {mode!r}")

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        mode: str = "mean",
        generator: Optional[torch.Generator] = None,
        labels: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Decode ``n`` draws z ~ N(0, temperature^2 I): images ``(n, C, H, W)`` (of the classes
        ``labels`` for a cvae)."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device) * temperature
        return self.decode(z, mode=mode, generator=generator, labels=labels)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior (mean, logvar) of images ``(N, C, H, W)``."""
        return self.posterior(self.prepare(images), labels)

    @torch.no_grad()
    def decode(
        self,
        z: torch.Tensor,
        mode: str = "mean",
        generator: Optional[torch.Generator] = None,
        labels: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Images ``(N, C, H, W)`` from latents ``(N, D)``: the likelihood mean, or a draw."""
        return self._output(self.likelihood_params(self._check_latents(z), labels), mode, generator)

    @torch.no_grad()
    def reconstruct(
        self, images: torch.Tensor, mode: str = "mean", labels: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Decode the posterior mean of each image."""
        mean, _ = self.encode(images, labels)
        return self.decode(mean, mode=mode, labels=labels)


def _log_weight_prior_ratio(z: torch.Tensor, eps: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log p(z) - log q(z|x) of samples z = mean + sigma * eps ``(B, S, D)``: ``(B, S)``."""
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    log_q = (-0.5 * eps.pow(2) - 0.5 * logvar.unsqueeze(1) - half_log_2pi).sum(-1)
    log_p = (-0.5 * z.pow(2) - half_log_2pi).sum(-1)
    return log_p - log_q
