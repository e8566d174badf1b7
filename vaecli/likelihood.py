"""The base class of decoder likelihoods, for likelihood plugins (``register_likelihoods``)."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

__all__ = ["Likelihood", "gaussian_log_prob"]


class Likelihood(nn.Module):
    """A decoder likelihood p(x | params). Subclass it in a likelihood plugin.

    ``params`` has shape ``(B, P, C, H, W)`` with ``P = params_per_pixel``; ``x`` is
    ``(B, C, H, W)`` in the preprocessed data range. For rows (vectors, counts, tables) they are
    ``(B, P, F)`` and ``(B, F)``, and ``layout`` (set by ``bind``) describes the F inputs.
    """

    params_per_pixel: int = 1
    layout: Any = None

    def bind(self, layout: Any) -> None:
        """Called once the data is known, before training or loading weights: ``layout`` is the
        ``vaecli.kinds.Layout`` of rows, or None for images. A likelihood of rows may create
        parameters of the data's width here (a learned scale per feature)."""
        self.layout = layout

    def column_log_probs(self, x: torch.Tensor, params: torch.Tensor) -> Optional[torch.Tensor]:
        """log p(x_j | params) of each column j of rows: ``(B, columns)`` nats, summing to
        ``log_prob``; None where the likelihood has no per-column terms (images)."""
        return None

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
