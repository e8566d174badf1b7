"""Torch modules of the built-in architectures, and helpers for architecture plugins:
``with_labels`` (append one-hot classes for a class-conditional module), ``mlp_layers``,
``conv_sides`` and ``max_conv_layers`` (the sizes a stack of stride-2 convolutions goes through),
``ACTIVATIONS`` (the activation functions by name).

Every module takes ``num_classes`` K: with K = 0 (unconditional) it is called with one argument,
``encoder(x)`` / ``decoder(z)``; with K > 0 (class-conditional, ``--model cvae``) as
``encoder(x, y)`` / ``decoder(z, y)`` with ``y`` the one-hot labels ``(B, K)``, concatenated
to the input of the first fully connected layer. K = 0 builds exactly the layers (and so the
parameter names and shapes) of an unconditional model.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "mlp_layers",
    "with_labels",
    "max_conv_layers",
    "conv_sides",
    "MLPEncoder",
    "MLPDecoder",
    "ConvEncoder",
    "ConvDecoder",
]

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}


def mlp_layers(sizes: list[int], activation: str) -> list[nn.Module]:
    """Linear layers ``sizes[0] -> sizes[1] -> ...``, each followed by ``activation``."""
    layers: list[nn.Module] = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(d_in, d_out), ACTIVATIONS[activation]()]
    return layers


def with_labels(h: torch.Tensor, y: Optional[torch.Tensor], num_classes: int, who: str) -> torch.Tensor:
    """``h`` (B, N) -> (B, N + K): the one-hot labels appended when the module is conditional."""
    if num_classes == 0:
        if y is not None:
            raise TypeError(f"{who} is unconditional (num_classes=0): call it without labels")
        return h
    if y is None:
        raise TypeError(
            f"{who} is class-conditional ({num_classes} classes): call it with the "
            f"one-hot labels y of shape (B, {num_classes}) as its second argument"
        )
    if y.dim() != 2 or y.shape[0] != h.shape[0] or y.shape[1] != num_classes:
        raise ValueError(
            f"{who}: labels y must be one-hot of shape ({h.shape[0]}, {num_classes}), got {tuple(y.shape)}"
        )
    return torch.cat([h, y.to(h.dtype)], dim=1)


class MLPEncoder(nn.Module):
    """x (B, C, H, W) or rows (B, F) -> flatten [+ y] -> hidden layers -> (mean, logvar), each (B, D)."""

    def __init__(self, input_shape, latent_dim: int, hidden, activation: str, num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.rows = len(input_shape) == 1  # rows may hold NaN for missing cells: read as 0
        d_in = math.prod(input_shape) + self.num_classes
        # body[0] (Flatten, no parameters) keeps the names of earlier checkpoints: body.1.weight, ...
        self.body = nn.Sequential(nn.Flatten(), *mlp_layers([d_in, *hidden], activation))
        self.head = nn.Linear(hidden[-1] if hidden else d_in, 2 * latent_dim)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rows:
            x = torch.nan_to_num(x, nan=0.0)
        h = with_labels(x.flatten(1), y, self.num_classes, "MLPEncoder")  # (B, C*H*W + K)
        mean, logvar = self.head(self.body(h)).chunk(2, dim=-1)  # (B, D), (B, D)
        return mean, logvar


class MLPDecoder(nn.Module):
    """z (B, D) [+ y] -> hidden layers (reversed) -> likelihood parameters (B, P*C, H, W)."""

    def __init__(
        self, input_shape, latent_dim: int, params_per_pixel: int, hidden, activation: str, num_classes: int = 0
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.out_shape = (params_per_pixel * input_shape[0], *input_shape[1:])  # (P*C, H, W) or rows' (P*F,)
        sizes = [latent_dim + self.num_classes, *reversed(hidden)]
        self.body = nn.Sequential(*mlp_layers(sizes, activation))
        self.head = nn.Linear(sizes[-1], math.prod(self.out_shape))

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = with_labels(z, y, self.num_classes, "MLPDecoder")  # (B, D + K)
        return self.head(self.body(h)).view(z.shape[0], *self.out_shape)  # (B, P*C, H, W)


# -- convolutional -----------------------------------------------------------------------------
# A Conv2d(kernel 4, stride 2, padding 1) maps a side s to floor(s / 2); the ConvTranspose2d
# with the same settings maps it back to 2 * floor(s / 2) + output_padding, so output_padding
# = s % 2 restores any side exactly.


def max_conv_layers(height: int, width: int) -> int:
    """How many stride-2 layers an image allows: each needs both sides at least 2."""
    side, most = min(height, width), 0
    while side >= 2:
        side, most = side // 2, most + 1
    return most


def conv_sides(height: int, width: int, channels) -> list[tuple[int, int]]:
    """The spatial sizes ``[(H, W), (H // 2, W // 2), ...]`` before and after each stride-2
    convolution (``len(channels) + 1`` entries). ValueError, naming the most layers the image
    allows, when a side would drop below 1."""
    layers, most = len(channels), max_conv_layers(height, width)
    if layers > most:
        if most == 0:
            raise ValueError(
                f"{height}x{width} images are too small for a stride-2 layer "
                f"(it needs both sides at least 2); use the mlp architecture"
            )
        raise ValueError(
            f"{height}x{width} images allow at most {most} stride-2 "
            f"layer{'s' if most > 1 else ''}; channels has {layers} "
            f"(for example channels={','.join(str(c) for c in channels[:most])})"
        )
    sides = [(height, width)]
    for _ in range(layers):
        h, w = sides[-1]
        sides.append((h // 2, w // 2))
    return sides


class ConvEncoder(nn.Module):
    """x (B, C, H, W) -> stride-2 convs -> flatten [+ y] -> hidden layers -> (mean, logvar), each (B, D)."""

    def __init__(self, input_shape, latent_dim: int, channels, hidden, activation: str, num_classes: int = 0) -> None:
        super().__init__()
        c, h, w = input_shape
        self.num_classes = int(num_classes)
        sides = conv_sides(h, w, channels)
        layers: list[nn.Module] = []
        for c_in, c_out in zip([c, *channels[:-1]], channels):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1), ACTIVATIONS[activation]()]
        self.convs = nn.Sequential(*layers)
        d_in = channels[-1] * math.prod(sides[-1]) + self.num_classes
        self.body = nn.Sequential(*mlp_layers([d_in, *hidden], activation))
        self.head = nn.Linear(hidden[-1] if hidden else d_in, 2 * latent_dim)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.convs(x)  # (B, channels[-1], H / 2^L, W / 2^L)
        h = with_labels(features.flatten(1), y, self.num_classes, "ConvEncoder")  # (B, F + K)
        mean, logvar = self.head(self.body(h)).chunk(2, dim=-1)  # (B, D), (B, D)
        return mean, logvar


class ConvDecoder(nn.Module):
    """z (B, D) [+ y] -> hidden layers (reversed) -> feature map -> transposed convs -> (B, P*C, H, W)."""

    def __init__(
        self,
        input_shape,
        latent_dim: int,
        params_per_pixel: int,
        channels,
        hidden,
        activation: str,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        self.num_classes = int(num_classes)
        sides = conv_sides(h, w, channels)
        self.feature_shape = (channels[-1], *sides[-1])  # the encoder's last feature map
        sizes = [latent_dim + self.num_classes, *reversed(hidden), math.prod(self.feature_shape)]
        self.body = nn.Sequential(*mlp_layers(sizes, activation))
        layers: list[nn.Module] = []
        outs = [*reversed(channels[:-1]), params_per_pixel * c]
        for i, (c_in, c_out) in enumerate(zip(reversed(channels), outs)):
            th, tw = sides[len(channels) - 1 - i]  # the side this layer restores
            layers.append(
                nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, output_padding=(th % 2, tw % 2))
            )
            if i < len(channels) - 1:
                layers.append(ACTIVATIONS[activation]())
        self.convs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.body(with_labels(z, y, self.num_classes, "ConvDecoder"))  # (B, F)
        return self.convs(h.view(z.shape[0], *self.feature_shape))  # (B, P*C, H, W)
