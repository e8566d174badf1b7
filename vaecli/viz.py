"""Pictures: image grids (more to come: latent scatter, manifold, interpolation, animations)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import torch

from .errors import UsageError, VaeError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MIN_CELL = 64  # grids are scaled up (nearest neighbour) until each image is at least this wide


def check_output(path: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> Path:
    """An output path a picture can be written to, or a one-line error saying why not."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"-o {path}: the file name must end in one of {', '.join(suffixes)}")
    if path.is_dir():
        raise UsageError(f"-o {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"-o {path}: the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"-o {path}: the folder {path.parent} is not writable")
    return path


def grid(images: torch.Tensor, nrow: Optional[int] = None, scale: Optional[int] = None) -> torch.Tensor:
    """Images ``(N, C, H, W)`` in [0, 1] -> one grid image ``(3, H', W')`` in [0, 1].

    ``nrow`` images per row (default: a square-ish grid); ``scale`` an integer upscaling
    (default: enough for each image to be at least ``MIN_CELL`` pixels wide).
    """
    from torchvision.utils import make_grid

    images = images.detach().float().cpu().clamp(0, 1)
    n, _, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    scale = scale or max(1, math.ceil(MIN_CELL / max(h, w)))
    if scale > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    return make_grid(images, nrow=nrow, padding=2 * scale, pad_value=0.5)


def save_image(image: torch.Tensor, path: Path) -> None:
    """Write a ``(C, H, W)`` image in [0, 1] (C = 1 or 3) with Pillow."""
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        array = array[:, :, 0]
    try:
        Image.fromarray(array).save(path)
    except OSError as exc:
        raise VaeError(f"could not write {path}: {exc.strerror or exc}") from None


def save_grid(images: torch.Tensor, path: Path, nrow: Optional[int] = None, scale: Optional[int] = None) -> tuple[int, int]:
    """Write images as a grid picture; returns its (width, height)."""
    picture = grid(images, nrow, scale)
    save_image(picture, path)
    return int(picture.shape[2]), int(picture.shape[1])
