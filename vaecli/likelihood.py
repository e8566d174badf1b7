"""The base class of decoder likelihoods, for likelihood plugins (``register_likelihoods``)."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

__all__ = ["Likelihood", "gaussian_log_prob"]


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


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, sigma^2) elementwise."""
    return -0.5 * ((x - mean) * torch.exp(-log_sigma)).pow(2) - log_sigma - 0.5 * math.log(2 * math.pi)
