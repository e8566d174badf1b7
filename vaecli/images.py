"""Images: reading files, and every conversion between pixel layouts, in one place.

Used by the ``folder:`` dataset, by the inputs of the commands (an image file or a folder),
and by the training loop (``to_unit``, ``binarize``). Images are uint8 tensors ``(N, C, H, W)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from . import datacache
from .errors import UsageError

__all__ = [
    "read_image",
    "image_files",
    "class_labels",
    "drop_alpha",
    "to_grey",
    "square",
    "centre_crop",
    "resize",
    "conform",
    "describe_shape",
    "binarize",
    "to_unit",
    "IMAGE_FILES",
    "BINARIZE",
    "BINARIZE_SEEDS",
]

IMAGE_FILES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
CHANNEL_NAMES = {1: "grey", 3: "RGB"}
BINARIZE = ("none", "static", "dynamic")
# The fixed Bernoulli draws of binarized models: the train split of a static one (seed 0), and the
# test split and command inputs of every binarized model (seed 1); the same on every device.
BINARIZE_SEEDS = {"train": 0, "test": 1}
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as Pillow's convert("L")


MAX_LISTED = 2_000_000  # files a folder INPUT may hold: a walk of / or ~ is refused, not endless


def image_files(folder: Path) -> list[Path]:
    """The files below ``folder``, recursively, sorted by their parts; dot-files and dot-folders
    ignored, symbolic links to folders not followed. Whether each is an image is found by
    reading it. The walk counts on a progress line and stops past ``MAX_LISTED`` files."""
    from .console import progress

    found: list[Path] = []
    with progress(None, f"listing {folder}") as update:
        for top, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found += [Path(top) / f for f in files if not f.startswith(".")]
            if len(found) > MAX_LISTED:
                raise UsageError(
                    f"{folder} holds more than {MAX_LISTED:,} files below it; give the folder of the images"
                )
            update(len(found))
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def class_labels(paths: list) -> tuple[Optional[list], Optional[list]]:
    """When every path (a tuple of parts below its folder) sits in a subfolder, the first
    subfolder is its class: ``(labels per path, sorted class names)``; else ``(None, None)``."""
    if not paths or not all(len(parts) >= 2 for parts in paths):
        return None, None
    names = sorted({parts[0] for parts in paths})
    index = {name: i for i, name in enumerate(names)}
    return [index[parts[0]] for parts in paths], names


def read_image(path: Path, warnings: Optional[list] = None) -> torch.Tensor:
    """One image file -> uint8 ``(1, C, H, W)`` with C = 1 (grey), 2, 3 (RGB) or 4 (alpha).
    EXIF rotation is applied; of an animation, the first frame is taken (with a warning)."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            frames = getattr(img, "n_frames", 1)
            img.load()
            if frames > 1 and warnings is not None:
                warnings.append(f"{path}: took the first of its {frames} frames")
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                raise UsageError(f"{path}: {img.mode} (16-bit or float) images are not supported; save it as 8-bit")
            if img.mode not in ("L", "LA", "RGB", "RGBA"):
                img = img.convert(
                    "RGBA" if "transparency" in img.info or img.mode == "PA" else ("L" if img.mode == "1" else "RGB")
                )
            array = np.asarray(img)
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    except Image.DecompressionBombError:
        raise UsageError(
            f"{path}: the image is too large to read safely ({Image.MAX_IMAGE_PIXELS} pixels at most)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = "not an image" if isinstance(exc, UnidentifiedImageError) else f"corrupt ({exc})"
        raise UsageError(f"{path}: cannot read it as an image: {reason}") from None
    tensor = torch.from_numpy(array.copy())
    tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)
    return tensor.unsqueeze(0).contiguous()


def drop_alpha(images: torch.Tensor) -> torch.Tensor:
    """Grey+alpha -> grey, RGBA -> RGB; other images unchanged."""
    return images[:, :-1] if images.shape[1] in (2, 4) else images


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """RGB -> one channel of luma (grey images unchanged)."""
    if images.shape[1] == 1:
        return images
    weights = torch.tensor(LUMA).view(1, 3, 1, 1)
    return (images.float() * weights).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)


def resize(images: torch.Tensor, size: tuple) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> ``(N, C, *size)``, bilinear with antialiasing."""
    out = torch.nn.functional.interpolate(
        images.float(), size=size, mode="bilinear", antialias=True, align_corners=False
    )
    return out.round_().clamp_(0, 255).to(torch.uint8)


def square(image: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, C, H, W)`` uint8 -> the shorter side resized to ``size`` (antialiased), then the
    centre ``size`` x ``size``."""
    _, _, h, w = image.shape
    if min(h, w) != size:
        scale = size / min(h, w)
        image = resize(image, (max(size, round(h * scale)), max(size, round(w * scale))))
    return centre_crop(image, size)


def centre_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The centre ``size`` x ``size`` of ``(N, C, H, W)`` images at least that large."""
    _, _, h, w = images.shape
    top, left = (h - size) // 2, (w - size) // 2
    return images[:, :, top : top + size, left : left + size]


def describe_shape(shape) -> str:
    c, h, w = shape
    return f"{h}x{w} {CHANNEL_NAMES.get(c, f'{c}-channel')}"


def conform(images: torch.Tensor, expected: tuple, what: str) -> tuple[torch.Tensor, list]:
    """uint8 images ``(N, C, H, W)`` -> the model's ``(C, H, W)``, or a UsageError saying what the
    model expects. Grey <-> RGB and alpha are converted; a size with the same aspect ratio is
    resized (antialiased), with a warning; anything else is refused."""
    c, h, w = expected
    images = drop_alpha(images)
    n, ci, hi, wi = images.shape
    warnings = []
    if ci != c:
        if ci == 1 and c == 3:
            images = images.expand(n, 3, hi, wi)
        elif ci == 3 and c == 1:
            images = to_grey(images)
        else:
            raise UsageError(f"{what}: the model expects {describe_shape(expected)} images; these have {ci} channels")
    if (hi, wi) != (h, w):
        if hi * w != wi * h:
            raise UsageError(
                f"{what}: the model expects {describe_shape(expected)} images; these are "
                f"{hi}x{wi}, a different aspect ratio (crop them first)"
            )
        images = resize(images, (h, w))
        warnings.append(f"{what}: resized {n} image(s) from {hi}x{wi} to {h}x{w}")
    return images.contiguous(), warnings


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1], on the same device. Counts the bytes read for
    the data cache, which hands mapped pages back every so often (``datacache.touched``)."""
    if images.dtype != torch.uint8:  # rows (and floats already in the data range) pass as they are
        return images.float()
    if images.device.type == "cpu":  # data on a GPU was copied there: no mapping is read
        datacache.touched(images.numel())
    return images.float().div_(255.0)


def binarize(images: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed binarization of uint8 images: each pixel is 255 with probability value/255, else
    0 (one Bernoulli draw, from a CPU generator seeded ``seed``, so every device draws the same).
    Returns uint8 on the images' device."""
    gen = torch.Generator().manual_seed(seed)
    flat = images.reshape(len(images), -1)
    rows = max(1, 2**22 // max(1, flat.shape[1]))  # about 16 MB of noise at a time
    parts = []
    for start in range(0, len(flat), rows):
        chunk = flat[start : start + rows].cpu()
        noise = torch.rand(chunk.shape, generator=gen)
        parts.append((noise * 255 < chunk).to(torch.uint8) * 255)
    out = torch.cat(parts) if parts else flat.cpu().clone()
    return out.view(images.shape).to(images.device)
