"""A dSprites-style dataset drawn on the fly: a square, an ellipse or a heart at a random scale,
rotation and position on a black square, deterministic from a seed (Matthey et al. 2017 made
dSprites; this is a smaller, procedurally drawn stand-in that needs no download)."""

from __future__ import annotations

import math

import torch

SHAPES = ("square", "ellipse", "heart")
SUPERSAMPLE = 2  # each pixel is the mean of SUPERSAMPLE^2 points: anti-aliased edges
RADIUS = 0.25  # half-size of a shape at scale 1, as a fraction of the image side


def _inside(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Whether points (u, v) in a shape's own frame (unit size) lie inside it. (N, S, S)."""
    square = torch.maximum(u.abs(), v.abs()) <= 0.85
    ellipse = u.pow(2) + (v / 0.55).pow(2) <= 1.0
    hu, hv = 1.15 * u, -1.15 * v + 0.25  # the classic heart curve, point down, centred
    heart = (hu.pow(2) + hv.pow(2) - 1.0).pow(3) - hu.pow(2) * hv.pow(3) <= 0.0
    s = shape.view(-1, 1, 1)
    return torch.where(s == 0, square, torch.where(s == 1, ellipse, heart))


def draw(n: int, size: int, generator: torch.Generator, chunk: int = 1024):
    """``n`` images ``(n, 1, size, size)`` uint8, labels ``(n,)`` and the factors of variation."""
    shape = torch.randint(0, len(SHAPES), (n,), generator=generator)
    scale = 0.5 + 0.5 * torch.rand(n, generator=generator)
    orientation = 2 * math.pi * torch.rand(n, generator=generator)
    pos_x = 0.3 + 0.4 * torch.rand(n, generator=generator)
    pos_y = 0.3 + 0.4 * torch.rand(n, generator=generator)

    fine = size * SUPERSAMPLE
    grid = (torch.arange(fine, dtype=torch.float32) + 0.5) / fine  # (S,)
    images = torch.empty(n, 1, size, size, dtype=torch.uint8)
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        r = (RADIUS * scale[sl]).view(-1, 1, 1)
        cos, sin = orientation[sl].cos().view(-1, 1, 1), orientation[sl].sin().view(-1, 1, 1)
        dx = grid.view(1, 1, -1) - pos_x[sl].view(-1, 1, 1)  # (n, 1, S)
        dy = grid.view(1, -1, 1) - pos_y[sl].view(-1, 1, 1)  # (n, S, 1)
        u = (cos * dx + sin * dy) / r  # (n, S, S)
        v = (-sin * dx + cos * dy) / r
        mask = _inside(shape[sl], u, v).float().unsqueeze(1)  # (n, 1, S, S)
        coverage = torch.nn.functional.avg_pool2d(mask, SUPERSAMPLE)  # (n, 1, size, size)
        images[sl] = (coverage * 255).round_().to(torch.uint8)
    factors = {"shape": shape, "scale": scale, "orientation": orientation, "pos_x": pos_x, "pos_y": pos_y}
    return images, shape.long(), factors
