"""The built-in fitted samplers: a Gaussian mixture, a two-stage VAE, a masked autoregressive
flow and a causal-convolution prior over discrete codes."""

from __future__ import annotations

from typing import Any, Optional, cast

import torch
from torch import nn
from torch.nn import functional as F

from ..model import HALF_LOG_2PI, VAE
from ..samplers import Sampler, train_density
from .priors import MaskedLinear


class GaussianMixture(Sampler):
    """K Gaussians with full covariances, fitted by EM (scikit-learn's GaussianMixture, seeded)."""

    weights: torch.Tensor
    means: torch.Tensor
    scale_tril: torch.Tensor

    def __init__(self, model: VAE, options: Any) -> None:
        super().__init__(model, options)
        k, d = options.components, model.latent_dim
        self.register_buffer("weights", torch.full((k,), 1.0 / k))
        self.register_buffer("means", torch.zeros(k, d))
        self.register_buffer("scale_tril", torch.eye(d).repeat(k, 1, 1))

    def fit(self, codes, generator, progress=None) -> dict:
        try:
            from sklearn.mixture import GaussianMixture as EM
        except ImportError:
            from ..errors import UsageError

            raise UsageError('--sampler gmm needs scikit-learn: pip install "vaecli[samplers]"') from None
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        em = EM(self.options.components, covariance_type="full", random_state=seed, reg_covar=1e-5)
        em.fit(codes.double().numpy())
        self.weights.copy_(torch.as_tensor(em.weights_))
        self.means.copy_(torch.as_tensor(em.means_))
        self.scale_tril.copy_(torch.linalg.cholesky(torch.as_tensor(em.covariances_)))
        return {"log_likelihood": float(em.score(codes.double().numpy()))}

    def sample(self, n, generator, model) -> torch.Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.latent_dim, 1, generator=generator, dtype=self.means.dtype)
        return self.means[k] + (self.scale_tril[k] @ eps).squeeze(-1)


def _mlp(d_in: int, hidden: int, d_out: int, layers: int = 2) -> nn.Sequential:
    sizes = [d_in] + [hidden] * layers
    body: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        body += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*body, nn.Linear(sizes[-1], d_out))


class TwoStage(Sampler):
    """Dai & Wipf (2019)'s second stage: a VAE on the codes z, its Gaussian decoder's scale
    gamma learned; draws u ~ N(0, I) are decoded into codes. Codes are standardised first."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, model: VAE, options: Any) -> None:
        super().__init__(model, options)
        d, h = model.latent_dim, options.hidden
        self.encoder = _mlp(d, h, 2 * d, options.layers)
        self.decoder = _mlp(d, h, d, options.layers)
        self.log_gamma = nn.Parameter(torch.zeros(()))
        self.register_buffer("shift", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))

    def _loss(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean, logvar = self.encoder(z).chunk(2, dim=-1)
        u = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)
        gamma = torch.exp(self.log_gamma)
        recon = (0.5 * ((z - self.decoder(u)) / gamma).pow(2) + self.log_gamma + HALF_LOG_2PI).sum(-1)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
        return (recon + kl).mean()

    def fit(self, codes, generator, progress=None) -> dict:
        self.shift.copy_(codes.mean(0))
        self.scale.copy_(codes.std(0).clamp(min=1e-6))
        data = (codes - self.shift) / self.scale
        last = train_density(self, lambda z: self._loss(z, generator), data, self.options.epochs, generator, progress)
        return {"nelbo": last}

    def sample(self, n, generator, model) -> torch.Tensor:
        u = torch.randn(n, self.latent_dim, generator=generator)
        return self.decoder(u) * self.scale + self.shift


class MADE(nn.Module):
    """x (N, D) -> (mu, alpha), each output i a function of x_<i (Germain et al. 2015)."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        deg_in = torch.arange(1, d + 1)
        deg_h = torch.arange(hidden) % max(1, d - 1) + 1
        self.hidden = MaskedLinear(d, hidden, (deg_h[:, None] >= deg_in[None, :]).float())
        out_mask = (deg_in[:, None] > deg_h[None, :]).float()
        self.mu = MaskedLinear(hidden, d, out_mask)
        self.alpha = MaskedLinear(hidden, d, out_mask)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.silu(self.hidden(x))
        return self.mu(h), self.alpha(h).clamp(-7, 7)


class MAF(Sampler):
    """A masked autoregressive flow (Papamakarios et al. 2017): ``layers`` MADEs, the order of the
    dimensions reversed between them, fitted by maximum likelihood to the standardised codes;
    drawing inverts each layer one dimension at a time."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, model: VAE, options: Any) -> None:
        super().__init__(model, options)
        self.made = nn.ModuleList(MADE(model.latent_dim, options.hidden) for _ in range(options.layers))
        self.register_buffer("shift", torch.zeros(model.latent_dim))
        self.register_buffer("scale", torch.ones(model.latent_dim))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        logdet = torch.zeros(x.shape[0])
        for made in self.made:
            mu, alpha = made(x)
            x = ((x - mu) * torch.exp(-alpha)).flip(-1)
            logdet = logdet - alpha.sum(-1)
        return (-0.5 * x.pow(2) - HALF_LOG_2PI).sum(-1) + logdet

    def fit(self, codes, generator, progress=None) -> dict:
        self.shift.copy_(codes.mean(0))
        self.scale.copy_(codes.std(0).clamp(min=1e-6))
        data = (codes - self.shift) / self.scale
        last = train_density(self, lambda x: -self.log_prob(x).mean(), data, self.options.epochs, generator, progress)
        return {"log_likelihood": -last - float(torch.log(self.scale).sum())}

    def sample(self, n, generator, model) -> torch.Tensor:
        x = torch.randn(n, self.latent_dim, generator=generator)
        for made in reversed(self.made):
            x = x.flip(-1)
            out = torch.zeros_like(x)
            for i in range(self.latent_dim):  # x_i = u_i exp(alpha_i) + mu_i, given x_<i
                mu, alpha = made(out)
                out[:, i] = x[:, i] * torch.exp(alpha[:, i]) + mu[:, i]
            x = out
        return x * self.scale + self.shift


class CausalConv(nn.Conv1d):
    """A 1-d convolution that sees positions up to its own (``shift``: strictly before)."""

    def __init__(self, c_in: int, c_out: int, k: int, shift: bool) -> None:
        super().__init__(c_in, c_out, k)
        self.pad = k - 1 + int(shift)
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(F.pad(x, (self.pad, 0)))
        return out[..., : x.shape[-1]]


class PixelCNN(Sampler):
    """An autoregressive prior over a VQ-VAE's code indices (van den Oord et al. 2017), the
    sequence of the L = D / dim pieces of a code: causal 1-d convolutions (the first one strictly
    causal, as PixelCNN's mask A), trained by cross-entropy; drawing takes L passes."""

    def __init__(self, model: VAE, options: Any) -> None:
        super().__init__(model, options)
        self.codes_k = int(cast(Any, model).codebook.shape[0])
        h = options.hidden
        self.embed = nn.Embedding(self.codes_k, h)
        self.first = CausalConv(h, h, 3, shift=True)
        self.blocks = nn.ModuleList(CausalConv(h, h, 3, shift=False) for _ in range(options.layers))
        self.out = nn.Conv1d(h, self.codes_k, 1)

    @classmethod
    def refuses(cls, model: VAE) -> Optional[str]:
        if not isinstance(getattr(model, "codebook", None), torch.Tensor):
            return f"--sampler pixelcnn draws discrete codes: it is for vector-quantised models (--model vqvae), not a {model.kind}"
        return None

    def codes(self, model: VAE, x, labels) -> torch.Tensor:
        return cast(Any, model).indices(model.posterior(x, labels)[0])

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.first(self.embed(idx).transpose(1, 2)))
        for block in self.blocks:
            h = h + F.silu(block(h))
        return self.out(h)  # (N, K, L)

    def fit(self, codes, generator, progress=None) -> dict:
        loss = lambda idx: F.cross_entropy(self.logits(idx), idx)  # noqa: E731
        last = train_density(self, loss, codes.long(), self.options.epochs, generator, progress)
        return {"log_likelihood": -last * codes.shape[1]}

    def sample(self, n, generator, model) -> torch.Tensor:
        length = model.latent_dim // model.options.dim
        idx = torch.zeros(n, length, dtype=torch.long)
        for i in range(length):
            probs = torch.softmax(self.logits(idx)[:, :, i], dim=-1)
            idx[:, i] = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return cast(Any, model).codebook.detach()[idx.to(model.device)].reshape(n, -1).cpu()


__all__ = ["GaussianMixture", "TwoStage", "MAF", "PixelCNN"]
