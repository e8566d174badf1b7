"""Diagonal Gaussians in nats: the KL to the standard normal, the log-density, and the dtype of
sums over a dataset. Re-exported by ``vaecli.model``, where plugins find them."""

from __future__ import annotations

import math

import torch

__all__ = ["HALF_LOG_2PI", "accumulator_dtype", "kl_per_dim", "kl_standard_normal", "log_normal"]

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


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


def log_normal(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, exp(logvar)) of a diagonal Gaussian, summed over the last dimension."""
    return (-0.5 * (z - mean).pow(2) * torch.exp(-logvar) - 0.5 * logvar - HALF_LOG_2PI).sum(-1)
