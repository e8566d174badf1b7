"""Torch modules of the resnet architecture.

Each encoder stage halves the sides with a stride-2 3x3 convolution (which also sets the
stage's channel count, as in ResNet) and then runs its residual blocks at the smaller size;
each decoder stage runs its blocks and then upsamples to the exact size the encoder had there.
A 3x3 convolution with stride 2 and padding 1 maps a side s to ceil(s / 2), so 13x20 goes
7x10, 4x5, 2x3 and comes back 4x5, 7x10, 13x20.

With ``num_classes`` K = 0 the modules are called as ``encoder(x)`` / ``decoder(z)``; with K > 0
(``--model cvae``) as ``encoder(x, y)`` / ``decoder(z, y)``, ``y`` the one-hot labels (B, K),
appended to the flattened features before the encoder's linear layer and to z before the
decoder's. K = 0 builds exactly the layers of an unconditional model.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from vaecli.nets import with_labels


def stage_sides(height: int, width: int, channels) -> list[tuple[int, int]]:
    """The sizes ``[(H, W), ...]`` before and after each stage (``len(channels) + 1`` entries).
    ValueError, naming the most stages the image allows, when a stage would get a side below 2."""
    side, most = min(height, width), 0
    while side >= 2:
        side, most = (side + 1) // 2, most + 1
    if len(channels) > most:
        if most == 0:
            raise ValueError(
                f"{height}x{width} images are too small for a stride-2 stage (it needs both "
                f"sides at least 2); use the mlp architecture"
            )
        raise ValueError(
            f"{height}x{width} images allow at most {most} stage{'s' if most > 1 else ''}, one per "
            f"entry of channels, which has {len(channels)}; give fewer, e.g. "
            f"--arch-option channels={','.join(str(c) for c in channels[:most])}"
        )
    sides = [(height, width)]
    for _ in channels:
        h, w = sides[-1]
        sides.append(((h + 1) // 2, (w + 1) // 2))
    return sides


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(SiLU(norm(conv(SiLU(norm(x)))))). (B, c, H, W) -> (B, c, H, W)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels, groups),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels, groups),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to an exact size, then a 3x3 convolution. (B, c_in, h, w) -> (B, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = tuple(size)
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=self.size, mode="nearest"))


class ResNetEncoder(nn.Module):
    """x (B, C, H, W) -> stem -> stages -> norm, SiLU -> flatten [+ y] -> linear -> (mean, logvar), each (B, D)."""

    def __init__(self, input_shape, latent_dim: int, options, sides, num_classes: int = 0) -> None:
        super().__init__()
        channels, groups = options.channels, options.groups
        self.num_classes = int(num_classes)
        layers: list[nn.Module] = [nn.Conv2d(input_shape[0], channels[0], 3, padding=1)]  # (B, c0, H, W)
        for c_in, c_out in zip([channels[0], *channels[:-1]], channels):
            layers.append(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1))  # sides halved, rounded up
            layers += [ResBlock(c_out, groups) for _ in range(options.blocks)]
        layers += [_norm(channels[-1], groups), nn.SiLU()]
        self.convs = nn.Sequential(*layers)
        self.head = nn.Linear(channels[-1] * math.prod(sides[-1]) + self.num_classes, 2 * latent_dim)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.convs(x)  # (B, channels[-1], h, w): the last entry of sides
        h = with_labels(features.flatten(1), y, self.num_classes, "ResNetEncoder")  # (B, F + K)
        mean, logvar = self.head(h).chunk(2, dim=-1)  # (B, D), (B, D)
        return mean, logvar


class ResNetDecoder(nn.Module):
    """z (B, D) [+ y] -> linear -> feature map -> stages (residual blocks, upsample) -> norm,
    SiLU -> conv -> likelihood parameters (B, P*C, H, W)."""

    def __init__(
        self, input_shape, latent_dim: int, params_per_pixel: int, options, sides, num_classes: int = 0
    ) -> None:
        super().__init__()
        channels, groups = options.channels, options.groups
        self.num_classes = int(num_classes)
        self.feature_shape = (channels[-1], *sides[-1])  # the encoder's last feature map
        self.head = nn.Linear(latent_dim + self.num_classes, math.prod(self.feature_shape))
        layers: list[nn.Module] = []
        for i in reversed(range(len(channels))):  # stage i: blocks at sides[i + 1], then up to sides[i]
            layers += [ResBlock(channels[i], groups) for _ in range(options.blocks)]
            layers.append(Upsample(channels[i], channels[max(i - 1, 0)], sides[i]))
        layers += [
            _norm(channels[0], groups),
            nn.SiLU(),
            nn.Conv2d(channels[0], params_per_pixel * input_shape[0], 3, padding=1),
        ]
        self.convs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.head(with_labels(z, y, self.num_classes, "ResNetDecoder"))  # (B, F)
        return self.convs(h.view(z.shape[0], *self.feature_shape))  # (B, P*C, H, W)
