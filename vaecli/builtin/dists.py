"""Torch modules of the built-in likelihoods. Parameters arrive as (B, P, C, H, W)."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..model import Likelihood, gaussian_log_prob


class Bernoulli(Likelihood):
    """p(x|z) = prod Bernoulli(x; sigmoid(logits)); log-probability through the stable
    binary cross-entropy with logits, valid for grey values in [0, 1] too."""

    params_per_pixel = 1

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        logits = params[:, 0]  # (B, C, H, W)
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        return -bce.flatten(1).sum(dim=1)  # (B,)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params[:, 0])

    def sample(self, params: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return torch.bernoulli(self.mean(params), generator=generator)


class Gaussian(Likelihood):
    """p(x|z) = prod N(x; mu, sigma^2), sigma fixed, shared and learned, or per pixel.
    A learned sigma is exp(raw) + min_sigma, so it never reaches zero."""

    def __init__(self, sigma: float, learn_sigma: str, min_sigma: float) -> None:
        super().__init__()
        self.learn_sigma = learn_sigma
        self.params_per_pixel = 2 if learn_sigma == "pixel" else 1
        self.min_log_sigma = math.log(min_sigma)
        log_sigma = torch.tensor(math.log(sigma))
        if learn_sigma == "shared":
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    def _log_sigma(self, params: torch.Tensor) -> torch.Tensor:
        if self.learn_sigma == "no":
            return self.log_sigma
        raw = self.log_sigma
        if self.learn_sigma == "pixel":
            raw = params[:, 1] + raw  # the decoder predicts an offset from the initial sigma
        # sigma = exp(raw) + min_sigma: a soft floor that never stops the gradient
        return torch.logaddexp(raw, torch.full_like(raw, self.min_log_sigma))

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        lp = gaussian_log_prob(x, params[:, 0], self._log_sigma(params))
        return lp.flatten(1).sum(dim=1)  # (B,)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params[:, 0]

    def sample(self, params: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        mu = params[:, 0]
        sigma = self._log_sigma(params).exp().expand_as(mu)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + sigma * noise
