"""The VAE: encoder q(z|x), standard normal prior p(z), decoder p(x|z), and its loss.

Kingma & Welling, "Auto-Encoding Variational Bayes" (2013): the negative ELBO

    -ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || p(z)),

estimated with one reparameterised sample z = mean + sigma * eps, eps ~ N(0, I), and the KL in
closed form for a diagonal Gaussian against N(0, I) (their Appendix B). Every number is in nats
per example: log-likelihoods are summed over pixels, then averaged over the batch.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .gaussian import HALF_LOG_2PI, accumulator_dtype, kl_per_dim, kl_standard_normal, log_normal
from .images import to_unit
from .likelihood import Likelihood

__all__ = [
    "VAE",
    "Loss",
    "LossTerms",
    "Step",
    "log_normal",
    "kl_per_dim",
    "kl_standard_normal",
    "gaussian_noise",
    "full_precision",
    "repeat_rows",
    "repeat_labels",
    "accumulator_dtype",
    "HALF_LOG_2PI",
]


def full_precision(like: torch.Tensor):
    """A context in which autocast is off on ``like``'s device: for sums whose terms must not
    round to 16 bits under mixed precision (a mixture prior's quadratic forms, a flow's
    log-determinant)."""
    return torch.autocast(like.device.type, enabled=False)


def gaussian_noise(like: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """eps ~ N(0, I) shaped like ``like``, from ``generator`` when given (else the global RNG)."""
    if generator is None:
        return torch.randn_like(like)
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


class Step(NamedTuple):
    """What the trainer tells a model's ``loss`` about this step: the KL weight ``beta`` (below
    1 during a KL warm-up), ``free_bits`` and ``iw_samples`` (the objective settings of ``vae
    train``; a family uses those it names in ``OBJECTIVE_SETTINGS``), and the ``generator`` of
    the training noise."""

    beta: float = 1.0
    free_bits: float = 0.0
    iw_samples: int = 1
    generator: Optional[torch.Generator] = None


class Loss(NamedTuple):
    """One batch's loss: ``objective``, the scalar minimised; ``terms``, the family's named
    per-example values ``(B,)`` in nats (``TERMS``; logged as ``train_<name>``); and, for a
    family with several parameter groups (``parameter_groups``), ``objectives``: the scalar each
    group minimises (``objective`` is then what the progress bar shows)."""

    objective: torch.Tensor
    terms: dict
    objectives: Optional[dict] = None

    @property
    def recon(self) -> torch.Tensor:
        """-log p(x|z) per example."""
        return self.terms["recon"]

    @property
    def kl(self) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per example (a family without one has no ``kl``)."""
        return self.terms["kl"]


LossTerms = Loss  # the name before 0.6


class VAE(nn.Module):
    """The VAE of Kingma & Welling: encoder, decoder and likelihood composed with a diagonal
    Gaussian posterior and a standard normal prior, trained on the (beta-weighted, free-bits,
    or importance-weighted) ELBO. It is the model family ``vae`` (and, with ``num_classes`` > 0,
    ``cvae``: Sohn et al. 2015's q(z|x,y) and p(x|z,y)), and the base class of every family: a
    family overrides what differs (see docs/models.md).

    Methods ``sample``, ``encode``, ``decode`` and ``reconstruct`` are for using a trained
    model: they take uint8 images or floats in the data range, run without gradients and
    return tensors on the model's device. Training goes through ``forward`` (the loss).
    ``labels`` are class indices ``(B,)``; a conditional model needs them to encode, and decodes
    class ``i % K`` for row ``i`` when they are not given.
    """

    TERMS: tuple = ("recon", "kl")  # the per-example terms of ``loss``, in order
    OBJECTIVE = "ELBO"  # what it minimises, in words (`vae info`); "ELBO": as --beta etc. make it
    # the objective settings of `vae train` this family uses (the others are refused)
    OBJECTIVE_SETTINGS: tuple = ("beta", "kl_warmup", "free_bits", "iw_samples")
    HAS_LIKELIHOOD = True  # log_weights estimates log p(x): the NLL of `vae evaluate`
    STOCHASTIC = True  # the encoder's logvar is a posterior variance (not ignored)
    HAS_PRIOR = True  # prior_sample draws from the prior the model was trained with
    NORMAL_PRIOR = True  # that prior is N(0, I) (the inverse-CDF grid of `plot-latent --manifold`)
    BATCH_TERM = ""  # a term over the whole batch, in words: under --nproc each rank's shard's (vae train says so)

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        latent_dim: int,
        input_shape: tuple[int, int, int],
        num_classes: int = 0,
        options: Any = None,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = int(latent_dim)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.options = options
        self.kind = "cvae" if num_classes else "vae"  # the family's registered name (set by the factory)
        self.meta: dict = {}  # checkpoint metadata, set by vaecli.checkpoint.load
        # (offset, total): this batch is rows offset.. of a global batch of total rows (training on
        # several processes); the noise is drawn for all of it, so that it is what one process draws
        self.noise_rows: Optional[tuple[int, int]] = None
        # the most decoder rows (examples x samples) whose activations a training step keeps at
        # once (None: no bound); beyond it ``log_weights`` decodes in chunks of samples, each
        # recomputed during backward (activation checkpointing): the same numbers in bounded memory
        self.sample_rows: Optional[int] = None

    @classmethod
    def arch_shape(cls, shape: Any, options: Any) -> Any:
        """The ``ModelShape`` the architecture is asked to build (a family with layers of its own
        between the architecture's latent and its top latent changes ``latent_dim``)."""
        return shape

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- the model ----------------------------------------------------------------------------

    def one_hot(self, labels: Optional[torch.Tensor], n: int, what: str = "encode") -> Optional[torch.Tensor]:
        """The class condition ``(n, K)`` of a conditional model (None for other models). Without
        labels a conditional model decodes class ``i % K`` for row ``i``; to encode it needs them."""
        if not self.num_classes:
            if labels is not None:
                raise ValueError(f"labels were given to a {self.kind}, which is not class-conditional")
            return None
        if labels is None:
            if what == "encode":
                raise ValueError(f"this model is class-conditional ({self.kind}): give the images' labels")
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
        """q(z|x) (q(z|x,y) for a conditional model) as (mean, logvar), each ``(B, D)``: what
        ``vae encode`` writes. A deterministic family's code is the mean."""
        y = self.one_hot(labels, x.shape[0])
        mean, logvar = self.encoder(x) if y is None else self.encoder(x, y)
        return mean.float(), logvar.float()  # float32 under mixed precision too

    def likelihood_params(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Decoder output as likelihood parameters ``(B, P, C, H, W)`` (rows: ``(B, P, F)``)."""
        y = self.one_hot(labels, z.shape[0], "decode")
        out = self.decoder(z) if y is None else self.decoder(z, y)  # (B, P*C, H, W)
        return out.float().view(out.shape[0], self.likelihood.params_per_pixel, *self.input_shape)

    def log_px(self, x: torch.Tensor, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """log p(x|z) ``(B,)`` of a batch ``x`` and latents ``z`` ``(B, D)``."""
        return self.likelihood.log_prob(x, self.likelihood_params(z, labels))

    def prior_sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` draws z ~ p(z) ``(n, D)``: here N(0, I)."""
        return torch.randn(n, self.latent_dim, generator=generator, device=self.device)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) summed over the last dimension: here log N(z; 0, I)."""
        return (-0.5 * z.pow(2) - HALF_LOG_2PI).sum(-1)

    def kl_dims(self, mean: torch.Tensor, logvar: torch.Tensor) -> Optional[torch.Tensor]:
        """KL(q(z|x) || p(z)) of each latent dimension ``(B, D)`` where it has a closed form
        (here: against N(0, I)), else None (the KL is then estimated from samples)."""
        return kl_per_dim(mean, logvar)

    def noise(self, like: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """eps ~ N(0, I) shaped like ``like`` (rows first): ``gaussian_noise``, or while training
        on several processes this shard's rows of the noise of the global batch (``noise_rows``),
        so that the draws are those of one process."""
        if self.noise_rows is None or not self.training:
            return gaussian_noise(like, generator)
        offset, total = self.noise_rows
        full = torch.randn((total, *like.shape[1:]), generator=generator, device=like.device, dtype=like.dtype)
        return full[offset : offset + like.shape[0]]

    def loss(self, x: torch.Tensor, step: Step, labels: Optional[torch.Tensor] = None) -> Loss:
        """The training loss of a batch ``x`` ``(B, C, H, W)`` (preprocessed floats):

        - the negative ELBO with its KL weighted by ``beta`` (Higgins et al. 2017's beta-VAE;
          below 1 during a KL warm-up, Bowman et al. 2016, Sonderby et al. 2016);
        - with ``free_bits`` lambda > 0, the KL of each latent dimension, averaged over the
          batch, counts as at least lambda nats (Kingma et al. 2016, eq. 15), so that the
          optimiser gains nothing by pushing a dimension below lambda;
        - with ``iw_samples`` k > 1, the negative importance-weighted bound (Burda et al. 2015)
          in place of the ELBO.

        ``terms``: ``recon`` -log p(x|z) and ``kl``, whose sum is the negative ELBO whatever the
        objective.
        """
        beta, free_bits, k, generator = step
        if k > 1 and (beta != 1 or free_bits > 0):
            raise ValueError("the importance-weighted bound has no separate KL term to weight or free")
        mean, logvar = self.posterior(x, labels)  # (B, D), (B, D)
        if k > 1:
            log_w, log_px = self.log_weights(x, labels, k, generator, (mean, logvar))  # (B, k)
            bound = torch.logsumexp(log_w, dim=1) - math.log(k)  # (B,)  Burda et al. 2015, eq. 8
            return Loss(-bound.mean(), {"recon": -log_px.mean(dim=1), "kl": kl_standard_normal(mean, logvar)})
        z = mean + torch.exp(0.5 * logvar) * self.noise(mean, generator)  # reparameterised
        kl_dims = kl_per_dim(mean, logvar)  # (B, D)
        kl = kl_dims.sum(dim=-1)  # (B,)
        recon = -self.log_px(x, z, labels)  # (B,)
        if free_bits > 0:
            penalty = kl_dims.mean(dim=0).clamp(min=free_bits).sum()  # sum_j max(lambda, E_batch KL_j)
            objective = recon.mean() + beta * penalty
        else:
            objective = (recon + beta * kl).mean()
        return Loss(objective, {"recon": recon, "kl": kl})

    def sampled_loss(self, x: torch.Tensor, step: Step, labels: Optional[torch.Tensor] = None) -> Loss:
        """The loss of a family whose KL has no closed form, from its ``log_weights``: the
        negative ELBO of one sample with the sampled KL log q(z|x) - log p(z) weighted by
        ``beta``, or with ``iw_samples`` k > 1 the negative IWAE bound of k samples."""
        k = max(1, step.iw_samples)
        log_w, log_px = self.log_weights(x, labels, k, step.generator)  # (B, k)
        recon, kl = -log_px.mean(dim=1), (log_px - log_w).mean(dim=1)
        if k > 1:
            return Loss(-(torch.logsumexp(log_w, dim=1) - math.log(k)).mean(), {"recon": recon, "kl": kl})
        return Loss((recon + step.beta * kl).mean(), {"recon": recon, "kl": kl})

    def forward(
        self,
        x: torch.Tensor,
        beta: float = 1.0,
        generator: Optional[torch.Generator] = None,
        *,
        labels: Optional[torch.Tensor] = None,
        free_bits: float = 0.0,
        iw_samples: int = 1,
    ) -> Loss:
        """``loss`` (the call the trainer makes, through DistributedDataParallel or torch.compile)."""
        return self.loss(x, Step(beta, free_bits, iw_samples, generator), labels)

    def summary(self, means: dict) -> dict:
        """Numbers derived from the mean ``TERMS`` of a pass, first in the metrics: here the
        negative ELBO, ``nelbo`` = recon + kl."""
        return {"nelbo": means["recon"] + means["kl"]}

    def test_terms(self, x: torch.Tensor, labels: Optional[torch.Tensor], generator: torch.Generator) -> dict:
        """The per-example ``TERMS`` of a test batch, for a family without a likelihood (the
        others are measured by ``log_weights``): the loss without its training options."""
        return self.loss(x, Step(generator=generator), labels).terms

    def parameter_groups(self) -> dict:
        """Parameters by the objective they follow: ``{"model": [...]}`` for one objective; a
        family with more (a discriminator) names each group and returns ``Loss.objectives``."""
        return {"model": list(self.parameters())}

    def log_weights(
        self,
        x: torch.Tensor,
        labels: Optional[torch.Tensor],
        samples: int,
        generator: Optional[torch.Generator] = None,
        posterior: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Importance weights of ``samples`` draws z_i ~ q(z|x), reparameterised:
        (log p(x|z_i) + log p(z_i) - log q(z_i|x), log p(x|z_i)), each ``(B, S)`` (Burda et al.
        2015). The one helper of the IWAE objective and of the importance-sampled NLL.
        ``posterior``: (mean, logvar) when already computed."""
        mean, logvar = posterior if posterior is not None else self.posterior(x, labels)
        b, d = mean.shape
        eps = self.noise(mean.unsqueeze(1).expand(b, samples, d), generator)  # (B, S, D)
        z = mean.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps  # (B, S, D)
        log_px = self.sample_log_px(x, labels, z)
        log_q = (-0.5 * eps.pow(2) - 0.5 * logvar.unsqueeze(1) - HALF_LOG_2PI).sum(-1)  # (B, S)
        return log_px + (self.log_prior(z) - log_q), log_px

    def sample_log_px(self, x: torch.Tensor, labels: Optional[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """log p(x|z_i) ``(B, S)`` of ``S`` latents per example ``z`` ``(B, S, D)``; while training
        with a bound on ``sample_rows``, decoded a chunk of samples at a time, each chunk's
        activations recomputed in backward instead of kept (the same values and gradients)."""
        b, samples, _ = z.shape
        rows = self.sample_rows
        if not rows or b * samples <= rows or not torch.is_grad_enabled():
            return self._decoded_log_px(x, labels, z)
        chunk = max(1, rows // b)
        parts = [
            checkpoint(self._decoded_log_px, x, labels, z[:, start : start + chunk], use_reentrant=False)
            for start in range(0, samples, chunk)
        ]
        return torch.cat(parts, dim=1)

    def _decoded_log_px(self, x: torch.Tensor, labels: Optional[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        b, samples, d = z.shape
        log_px = self.log_px(repeat_rows(x, samples), z.reshape(b * samples, d), repeat_labels(labels, samples))
        return log_px.view(b, samples)

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
        if not bool(torch.isfinite(params).all()):
            from .errors import VaeError

            raise VaeError(
                "the decoder's output is not finite (NaN or infinite) for these codes: the codes are "
                "too large for the model, or its weights overflow; nothing was written"
            )
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
        """Decode ``n`` draws z ~ p(z), scaled by ``temperature``: images ``(n, C, H, W)`` (of the
        classes ``labels`` for a conditional model)."""
        z = self.prior_sample(n, generator) * temperature
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


def repeat_rows(x: torch.Tensor, s: int) -> torch.Tensor:
    """Each row of ``x`` ``(B, ...)`` ``s`` times in a row: ``(B * s, ...)``."""
    return x.unsqueeze(1).expand(x.shape[0], s, *x.shape[1:]).reshape(x.shape[0] * s, *x.shape[1:])


def repeat_labels(labels: Optional[torch.Tensor], s: int) -> Optional[torch.Tensor]:
    return None if labels is None else torch.as_tensor(labels).repeat_interleave(s)
