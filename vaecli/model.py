"""The VAE: encoder q(z|x), standard normal prior p(z), decoder p(x|z), and its loss.

Kingma & Welling, "Auto-Encoding Variational Bayes" (2013): the negative ELBO

    -ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || p(z)),

estimated with one reparameterised sample z = mean + sigma * eps, eps ~ N(0, I), and the KL in
closed form for a diagonal Gaussian against N(0, I) (their Appendix B). Every number is in nats
per example: log-likelihoods are summed over pixels, then averaged over the batch.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import torch
from torch import nn

from .data import to_unit

MODEL_KINDS = ("vae", "ae", "cvae")  # cvae: encoder and decoder conditioned on the class
EVAL_SEED = 1234  # evaluation noise: the test pass of every training epoch and `vae evaluate` draw the same
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2015): a unit is active when Cov_x E_q[z_u] > 0.01


class Likelihood(nn.Module):
    """A decoder likelihood p(x | params). Subclass it in a likelihood plugin.

    ``params`` has shape ``(B, P, C, H, W)`` with ``P = params_per_pixel``; ``x`` is
    ``(B, C, H, W)`` in the preprocessed data range.
    """

    params_per_pixel: int = 1

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x | params) summed over pixels: ``(B,)`` nats."""
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x | params]: ``(B, C, H, W)``."""
        raise NotImplementedError

    def sample(self, params: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """A draw x ~ p(x | params): ``(B, C, H, W)``."""
        raise NotImplementedError


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
    """One batch: ``loss`` (scalar to minimise) and per-example ``recon`` and ``kl`` (nats).
    ``recon`` and ``kl`` are the two parts of the negative ELBO whatever the objective
    (beta, free bits and the IWAE bound change only ``loss``)."""

    loss: torch.Tensor
    recon: torch.Tensor  # (B,)  -log p(x|z)
    kl: torch.Tensor  # (B,)  KL(q(z|x) || p(z)); zeros for a plain auto-encoder


class VAE(nn.Module):
    """Encoder, decoder and likelihood composed into a VAE (``kind="vae"``), a
    class-conditional VAE (``kind="cvae"``, Sohn et al. 2015: q(z|x,y) and p(x|z,y) with a
    standard normal prior) or a plain deterministic auto-encoder (``kind="ae"``: z is the
    encoder mean, no KL term).

    Methods ``sample``, ``encode``, ``decode`` and ``reconstruct`` are for using a trained
    model: they take uint8 images or floats in the data range, run without gradients and
    return tensors on the model's device. Training goes through ``forward`` (the loss).
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
        """The training loss of a batch ``x`` ``(B, C, H, W)`` (preprocessed floats):

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
            loss = recon.mean() + beta * penalty
        else:
            loss = (recon + beta * kl).mean()
        return LossTerms(loss, recon, kl)

    def _noise(self, like: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """The training noise of this batch: ``gaussian_noise``, or this shard's rows of the noise
        of the global batch (``noise_rows``)."""
        if self.noise_rows is None:
            return gaussian_noise(like, generator)
        offset, total = self.noise_rows
        full = torch.randn((total, *like.shape[1:]), generator=generator, device=like.device, dtype=like.dtype)
        return full[offset:offset + like.shape[0]]

    def _iwae_loss(self, x, labels, mean, logvar, k: int, generator) -> LossTerms:
        """-log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x) reparameterised (Burda et
        al. 2015, eq. 8), averaged over the batch; ``recon`` is averaged over the k samples."""
        b, d = mean.shape
        eps = self._noise(mean.unsqueeze(1).expand(b, k, d), generator)  # (B, k, D)
        z = mean.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps  # (B, k, D)
        log_px = self._log_px_repeated(x, labels, z)  # (B, k)
        log_w = log_px + _log_weight_prior_ratio(z, eps, logvar)  # (B, k)
        bound = torch.logsumexp(log_w, dim=1) - math.log(k)  # (B,)
        return LossTerms(-bound.mean(), -log_px.mean(dim=1), kl_standard_normal(mean, logvar))

    def _log_px_repeated(self, x: torch.Tensor, labels, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z_s) for samples ``z`` ``(B, S, D)`` of each image of ``x``: ``(B, S)``."""
        b, s, d = z.shape
        xs = x.unsqueeze(1).expand(b, s, *x.shape[1:]).reshape(b * s, *x.shape[1:])
        ys = None if labels is None else torch.as_tensor(labels, device=x.device).repeat_interleave(s)
        return self.likelihood.log_prob(xs, self.likelihood_params(z.reshape(b * s, d), ys)).view(b, s)

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
        self, z: torch.Tensor, mode: str = "mean", generator: Optional[torch.Generator] = None,
        labels: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Images ``(N, C, H, W)`` from latents ``(N, D)``: the likelihood mean, or a draw."""
        return self._output(self.likelihood_params(self._check_latents(z), labels), mode, generator)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, mode: str = "mean", labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Decode the posterior mean of each image."""
        mean, _ = self.encode(images, labels)
        return self.decode(mean, mode=mode, labels=labels)


    @torch.inference_mode()
    def importance_sampled(
        self, x: torch.Tensor, k: int, generator: Optional[torch.Generator] = None, chunk: int = 0,
        labels: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The importance-weighted bound of Burda et al. (2015) with ``k`` samples z_i ~ q(z|x):

            log p(x) >= log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x),

        tighter as k grows. Samples are drawn ``chunk`` at a time (all at once by default), so
        that k = 5000 fits in memory. Returns (the bound ``(B,)``, the mean of log p(x|z_i)
        ``(B,)``), both in nats, for a batch ``x`` of preprocessed floats.
        """
        mean, logvar = self.posterior(x, labels)  # (B, D)
        std = torch.exp(0.5 * logvar)
        b, d = mean.shape
        chunk = chunk or k
        acc = accumulator_dtype(x.device)
        total = torch.full((b,), -math.inf, device=x.device, dtype=acc)
        recon = torch.zeros(b, device=x.device, dtype=acc)
        for start in range(0, k, chunk):
            s = min(chunk, k - start)
            eps = torch.randn((b, s, d), generator=generator, device=x.device, dtype=mean.dtype)
            z = mean.unsqueeze(1) + std.unsqueeze(1) * eps  # (B, S, D)
            log_px = self._log_px_repeated(x, labels, z)  # (B, S)
            log_w = (log_px + _log_weight_prior_ratio(z, eps, logvar)).to(acc)
            total = torch.logaddexp(total, torch.logsumexp(log_w, dim=1))
            recon += log_px.to(acc).sum(1)
        return total - math.log(k), recon / k


def _log_weight_prior_ratio(z: torch.Tensor, eps: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log p(z) - log q(z|x) of samples z = mean + sigma * eps ``(B, S, D)``: ``(B, S)``."""
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    log_q = (-0.5 * eps.pow(2) - 0.5 * logvar.unsqueeze(1) - half_log_2pi).sum(-1)
    log_p = (-0.5 * z.pow(2) - half_log_2pi).sum(-1)
    return log_p - log_q


def _batch(labels: Optional[torch.Tensor], start: int, size: int) -> Optional[torch.Tensor]:
    return None if labels is None else labels[start:start + size]


@torch.inference_mode()
def encode_all(
    model: VAE, images: torch.Tensor, batch_size: int = 1000, progress: Optional[Callable[[int], None]] = None,
    labels: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior (mean, logvar) ``(N, D)`` of many uint8 images, in batches, on the CPU."""
    model.eval()
    means, logvars = [], []
    for start in range(0, len(images), batch_size):
        mean, logvar = model.posterior(model.prepare(images[start:start + batch_size]),
                                       _batch(labels, start, batch_size))
        means.append(mean.float().cpu())
        logvars.append(logvar.float().cpu())
        if progress is not None:
            progress(min(len(images), start + batch_size))
    return torch.cat(means), torch.cat(logvars)


@torch.inference_mode()
def evaluate(
    model: VAE,
    images: torch.Tensor,
    iw_samples: int = 1,
    batch_size: int = 0,
    seed: int = EVAL_SEED,
    progress: Optional[Callable[[int], None]] = None,
    labels: Optional[torch.Tensor] = None,
) -> dict:
    """Test-set numbers of a trained model, in nats per example (Burda et al. 2015, section 5):

    ``loss`` the negative ELBO (reconstruction averaged over the ``iw_samples`` draws, KL in
    closed form) with its parts ``recon`` and ``kl``; ``nll`` the importance-weighted estimate of
    -log p(x) with ``iw_samples`` samples; ``bits_per_dim`` = nll / (pixels * ln 2);
    ``active_units``: latent dimensions whose posterior mean varies across the data
    (Cov_x E_q[z_u] > 0.01); ``kl_per_dim`` (D,). A plain auto-encoder gets ``recon`` only.
    ``progress(n)`` is called with the number of images done. With ``iw_samples=1`` and the
    default seed this is the test pass of each training epoch. Sums stay on the device until
    the end (no host synchronisation per batch, except for ``progress``).
    """
    was_training = model.training
    model.eval()
    device = model.device
    gen = torch.Generator(device=device).manual_seed(seed)
    n = len(images)
    pixels = math.prod(model.input_shape)
    k = max(1, int(iw_samples))
    # decoder rows per pass: about 64 MB per float tensor on a GPU; 8 MB on the CPU, where the
    # likelihood's elementwise passes then stay in cache (k=5000 on MNIST: 2.2x faster than 64 MB)
    rows = max(1, (2 ** 21 if torch.device(device).type == "cpu" else 2 ** 24) // pixels)
    batch = batch_size or max(1, min(1000, rows // k))
    chunk = max(1, min(k, rows // batch))
    acc = accumulator_dtype(device)
    nll = torch.zeros((), device=device, dtype=acc)
    recon = torch.zeros((), device=device, dtype=acc)
    kl_dims = torch.zeros(model.latent_dim, device=device, dtype=acc)
    # one buffer, not a list of small tensors that would pin the heap between the large ones
    means = torch.empty((n, model.latent_dim), device=device)
    for start in range(0, n, batch):
        x = model.prepare(images[start:start + batch])
        y = _batch(labels, start, batch)
        mean, logvar = model.posterior(x, y)
        means[start:start + len(mean)] = mean
        if model.kind == "ae":
            recon -= model.likelihood.log_prob(x, model.likelihood_params(mean, y)).to(acc).sum()
        else:
            bound, log_px = model.importance_sampled(x, k, gen, chunk, y)
            kl_dims += kl_per_dim(mean, logvar).to(acc).sum(0)
            nll -= bound.sum()
            recon -= log_px.sum()
        if progress is not None:
            progress(min(n, start + batch))
    model.train(was_training)
    result: dict[str, Any] = {"kind": model.kind, "examples": n, "pixels": pixels, "recon": recon.item() / n}
    if model.kind == "ae":
        return result
    activity = means.to(acc).var(dim=0, unbiased=False)  # Cov_x E_q[z_u]
    kl = kl_dims.sum().item() / n
    result.update(
        loss=result["recon"] + kl,
        kl=kl,
        nll=nll.item() / n,
        iw_samples=k,
        bits_per_dim=nll.item() / n / (pixels * math.log(2)),
        active_units=int((activity > ACTIVE_UNIT_THRESHOLD).sum().item()),
        latent_dim=model.latent_dim,
        kl_per_dim=(kl_dims / n).tolist(),
        activity_per_dim=activity.tolist(),
    )
    return result


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, sigma^2) elementwise."""
    return -0.5 * ((x - mean) * torch.exp(-log_sigma)).pow(2) - log_sigma - 0.5 * math.log(2 * math.pi)


def check_kind(kind: str, arch) -> None:
    """A cvae needs an architecture registered with ``conditional=True``."""
    from .errors import UsageError
    from .plugins import registry

    if kind == "cvae" and not arch.spec.conditional:
        reg = registry()
        able = [n for n in reg.names("architecture") if reg.get("architecture", n).spec.conditional]
        raise UsageError(f"architecture '{arch.spec.name}' cannot build a class-conditional model; "
                         f"--model cvae works with: {', '.join(able) or 'none installed'}")


def _sizes(values: Any, what: str, count: int, low: int) -> tuple:
    """``count`` whole numbers >= ``low`` (a model's recorded sizes), or a CheckpointError."""
    from .errors import CheckpointError

    ok = (isinstance(values, (list, tuple)) and len(values) == count
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in values))
    if not ok:
        raise CheckpointError(f"the model's {what} must be {count} whole number(s) of at least {low}, "
                              f"got {values!r}"[:300])
    return tuple(values)


def from_config(config: dict) -> VAE:
    """Build an (untrained) model from the ``model`` section of a checkpoint's metadata,
    through the plugin registry. A part whose plugin is missing names the distribution."""
    from . import options
    from .errors import CheckpointError, UsageError
    from .hookspecs import ModelShape
    from .plugins import registry

    reg = registry()
    arch_cfg, lik_cfg = config["architecture"], config["likelihood"]
    for what, section in (("architecture", arch_cfg), ("likelihood", lik_cfg)):
        if not isinstance(section, dict) or not isinstance(section.get("name"), str):
            raise CheckpointError(f"the model's {what} must be a map with a name")
    input_shape = _sizes(config["input_shape"], "input_shape", 3, low=1)
    latent_dim = _sizes([config["latent_dim"]], "latent_dim", 1, low=1)[0]
    num_classes = _sizes([config.get("num_classes", 0)], "num_classes", 1, low=0)[0]
    arch = reg.get("architecture", arch_cfg["name"], arch_cfg.get("provider"))
    lik = reg.get("likelihood", lik_cfg["name"], lik_cfg.get("provider"))
    arch_opts = options.build(arch.spec.options, arch_cfg.get("options", {}), f"architecture '{arch.spec.name}'")
    lik_opts = options.build(lik.spec.options, lik_cfg.get("options", {}), f"likelihood '{lik.spec.name}'")
    kind = config.get("kind", "vae")
    check_kind(kind, arch)
    likelihood = lik.spec.build(lik_opts)
    shape = ModelShape(input_shape, latent_dim, likelihood.params_per_pixel, num_classes)
    try:
        encoder, decoder = arch.spec.build(shape, arch_opts)
    except ValueError as exc:
        raise UsageError(f"architecture '{arch.spec.name}': {exc}") from None
    return VAE(encoder, decoder, likelihood, latent_dim, input_shape, kind=kind, num_classes=num_classes)
