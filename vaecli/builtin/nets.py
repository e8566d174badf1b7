"""Torch modules of the built-in architectures."""

from __future__ import annotations

import math

import torch
from torch import nn

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}


def _stack(sizes: list[int], activation: str) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(d_in, d_out), _ACTIVATIONS[activation]()]
    return layers


class MLPEncoder(nn.Module):
    """x (B, C, H, W) -> flatten -> hidden layers -> (mean, logvar), each (B, D)."""

    def __init__(self, input_shape, latent_dim: int, hidden, activation: str) -> None:
        super().__init__()
        d_x = math.prod(input_shape)
        self.body = nn.Sequential(nn.Flatten(), *_stack([d_x, *hidden], activation))
        self.head = nn.Linear(hidden[-1] if hidden else d_x, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.head(self.body(x)).chunk(2, dim=-1)  # (B, D), (B, D)
        return mean, logvar


class MLPDecoder(nn.Module):
    """z (B, D) -> hidden layers (reversed) -> likelihood parameters (B, P*C, H, W)."""

    def __init__(self, input_shape, latent_dim: int, params_per_pixel: int, hidden, activation: str) -> None:
        super().__init__()
        c, h, w = input_shape
        self.out_shape = (params_per_pixel * c, h, w)
        sizes = [latent_dim, *reversed(hidden)]
        self.body = nn.Sequential(*_stack(sizes, activation))
        self.head = nn.Linear(sizes[-1], math.prod(self.out_shape))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z)).view(z.shape[0], *self.out_shape)
