"""Pictures: image grids, plots (matplotlib, no pyplot state) and GIFs (Pillow).

Every function takes tensors and a path and writes one file; a path that cannot be written is a
one-line ``VaeError``. Images are floats in [0, 1], ``(N, C, H, W)``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import torch

from .errors import UsageError, VaeError

__all__ = [
    "check_output",
    "tile",
    "grid",
    "above",
    "save_image",
    "save_grid",
    "save_gif",
    "write_file",
    "to_pil",
    "scatter",
    "image_table",
    "panels",
    "IMAGE_SUFFIXES",
    "ANIMATION_SUFFIXES",
    "PLOT_SUFFIXES",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
ANIMATION_SUFFIXES = (".gif",)
PLOT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".pdf", ".svg")
MIN_CELL = 64  # grids are scaled up (nearest neighbour) until each image is at least this wide
MAX_PIXELS = 100_000_000  # no picture larger than this (about 300 MB in memory)
MAX_SIDE = 16_383  # the largest side every format here can hold (WebP's limit)


def check_output(path: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> Path:
    """An output path a picture can be written to, or a one-line error saying why not."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"-o {path}: the file name must end in one of {', '.join(suffixes)}")
    from .checkpoint import check_target

    return check_target(path)


def tile(images: torch.Tensor, nrow: int, padding: int, pad_value: float) -> torch.Tensor:
    """Images ``(N, C, H, W)`` -> one ``(3, H', W')`` picture, ``nrow`` to a row, ``padding``
    pixels of ``pad_value`` around each (one image alone: itself, unpadded). Grey becomes RGB.
    The layout of torchvision's ``make_grid``, without importing torchvision (1.5 s)."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    n, c, h, w = images.shape
    if n == 1:
        return images[0].clone()
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    cells = images.new_full((rows * cols, c, h + padding, w + padding), pad_value)
    cells[:n, :, padding:, padding:] = images
    picture = cells.view(rows, cols, c, h + padding, w + padding).permute(2, 0, 3, 1, 4)
    picture = picture.reshape(c, rows * (h + padding), cols * (w + padding))
    out = images.new_full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value)
    out[:, : rows * (h + padding), : cols * (w + padding)] = picture
    return out


def grid(images: torch.Tensor, nrow: Optional[int] = None, scale: Optional[int] = None) -> torch.Tensor:
    """Images ``(N, C, H, W)`` in [0, 1] -> one grid image ``(3, H', W')`` in [0, 1].

    ``nrow`` images per row (default: a square-ish grid); ``scale`` an integer upscaling
    (default: enough for each image to be at least ``MIN_CELL`` pixels wide).
    """
    images = images.detach().float().cpu().clamp(0, 1)
    n, _, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    scale = scale or max(1, math.ceil(MIN_CELL / max(h, w)))
    cols, rows = min(nrow, n), math.ceil(n / nrow)
    pad = 2 * scale
    width, height = cols * (w * scale + pad) + pad, rows * (h * scale + pad) + pad
    if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        raise UsageError(
            f"{n} images in rows of {nrow} would make a {width}x{height} px picture, too "
            f"large to write; ask for fewer images (or other --nrow)"
        )
    if scale > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    return tile(images, nrow, 2 * scale, 0.5)


def above(top: torch.Tensor, bottom: torch.Tensor, nrow: int) -> torch.Tensor:
    """Interleave rows of ``nrow`` images: a row of ``top``, then the same columns of ``bottom``
    (inputs above their reconstructions). A short last row is padded with blanks when there is
    more than one row, so that the columns stay aligned."""
    rows = []
    for start in range(0, len(top), nrow):
        a, b = top[start : start + nrow], bottom[start : start + nrow]
        if len(a) < nrow and len(top) > nrow:
            blank = torch.ones((nrow - len(a), *a.shape[1:]), device=a.device, dtype=a.dtype)
            a, b = torch.cat([a, blank]), torch.cat([b, blank])
        rows += [a, b]
    return torch.cat(rows)


def write_file(path: Path, render) -> None:
    """``render(buffer)`` writes a picture into a buffer; the bytes then replace ``path``
    atomically, so that a failure never leaves a half-written or empty file."""
    import io

    from .checkpoint import atomic_write

    buffer = io.BytesIO()
    try:
        render(buffer)
        atomic_write(Path(path), buffer.getvalue())
    except (OSError, ValueError) as exc:  # Pillow: ValueError for sizes a format cannot hold
        raise VaeError(f"could not write {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _format(path: Path) -> str:
    return {".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(path).suffix.lower(), Path(path).suffix[1:].upper())


def save_image(image: torch.Tensor, path: Path) -> None:
    """Write a ``(C, H, W)`` image in [0, 1] (C = 1 or 3) with Pillow."""
    picture = to_pil(image)
    write_file(path, lambda buf: picture.save(buf, format=_format(path)))


def save_grid(
    images: torch.Tensor, path: Path, nrow: Optional[int] = None, scale: Optional[int] = None
) -> tuple[int, int]:
    """Write images as a grid picture; returns its (width, height)."""
    picture = grid(images, nrow, scale)
    save_image(picture, path)
    return int(picture.shape[2]), int(picture.shape[1])


def to_pil(image: torch.Tensor):
    """A ``(C, H, W)`` image in [0, 1] -> a Pillow image (grey or RGB)."""
    from PIL import Image

    array = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def save_gif(frames: list, path: Path, frame_ms: int = 120, last_ms: Optional[int] = None) -> int:
    """Write Pillow images or ``(C, H, W)`` tensors as a looping GIF; returns the number of
    frames in the file (identical consecutive frames are merged into one)."""
    pictures = [f if not torch.is_tensor(f) else to_pil(f) for f in frames]
    pictures = [p.convert("RGB") for p in pictures]
    durations = [frame_ms] * len(pictures)
    if last_ms is not None:
        durations[-1] = last_ms
    write_file(
        path,
        lambda buf: pictures[0].save(
            buf,
            format="GIF",
            save_all=True,
            append_images=pictures[1:],
            duration=durations,
            loop=0,
            optimize=False,
            disposal=1,
        ),
    )
    from PIL import Image

    with Image.open(path) as written:  # Pillow merges identical consecutive frames
        return written.n_frames


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save_figure(fig, path: Path) -> tuple[int, int]:
    write_file(path, lambda buf: fig.savefig(buf, format=Path(path).suffix[1:].lower().replace("jpg", "jpeg")))
    w, h = fig.get_size_inches() * fig.dpi
    return int(round(w)), int(round(h))


def _show(ax, picture: torch.Tensor) -> None:
    array = picture.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        ax.imshow(array[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(array, interpolation="nearest")


def scatter(
    points: torch.Tensor,
    path: Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    labels: Optional[torch.Tensor] = None,
    class_names: Optional[list] = None,
    values: Optional[torch.Tensor] = None,
    value_name: str = "",
    limits: Optional[float] = None,
) -> tuple[int, int]:
    """A scatter of 2-D points coloured by class (with a legend) or by a continuous value (with
    a colour bar). ``limits``: fixed axes [-limits, limits] (so that animation frames align)."""
    fig = _figure(7.5, 6.5)
    ax = fig.add_subplot()
    xy = points.detach().double().cpu().numpy()
    size = 4 if len(xy) > 2000 else 10
    if labels is not None:
        labels_np = labels.cpu().numpy()
        classes = sorted(set(labels_np.tolist()))
        cmap = _class_colours(len(class_names or classes))
        for c in classes:
            sel = labels_np == c
            name = class_names[c] if class_names and 0 <= c < len(class_names) else str(c)
            ax.scatter(
                xy[sel, 0], xy[sel, 1], s=size, alpha=0.7, color=cmap(c), label=name, linewidths=0, rasterized=True
            )
        ax.legend(
            title="class", markerscale=12 / size * 1.2, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False
        )
    elif values is not None:
        sc = ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=size,
            alpha=0.8,
            c=values.double().cpu().numpy(),
            cmap="viridis",
            linewidths=0,
            rasterized=True,
        )
        fig.colorbar(sc, ax=ax, label=value_name)
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, alpha=0.6, color="tab:blue", linewidths=0, rasterized=True)
    if limits is not None:
        ax.set_xlim(-limits, limits)
        ax.set_ylim(-limits, limits)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.25)
    ax.set_aspect("equal" if limits is not None else "auto")
    return _save_figure(fig, path)


def _class_colours(n: int):
    from matplotlib import colormaps

    if n <= 10:
        return colormaps["tab10"]
    if n <= 20:
        return colormaps["tab20"]
    cmap = colormaps["turbo"]
    return lambda c: cmap(c / max(1, n - 1))


def image_table(
    images: torch.Tensor,
    rows: int,
    path: Path,
    *,
    title: str,
    row_labels: list,
    col_labels: list,
    xlabel: str = "",
    ylabel: str = "",
) -> tuple[int, int]:
    """Images ``(rows * cols, C, H, W)`` laid out row by row, with a label on each row and
    column: the manifold and latent-traversal figures."""
    n, _, h, w = images.shape
    cols = n // rows
    pad = 1
    picture = tile(images.detach().float().cpu().clamp(0, 1), cols, pad, 1.0)
    cell_w, cell_h = w + pad, h + pad
    scale = max(0.35, min(0.9, 10 / max(cols, rows)))  # inches per cell
    fig = _figure(cols * scale + 2.2, rows * scale * h / w + 1.2)
    ax = fig.add_subplot()
    _show(ax, picture)
    ax.set_xticks([pad + cell_w * i + w / 2 for i in range(cols)], col_labels, fontsize=8)
    ax.set_yticks([pad + cell_h * i + h / 2 for i in range(rows)], row_labels, fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _save_figure(fig, path)


def heatmap(
    matrix: Any, path: Path, *, title: str, row_labels: list, col_labels: list, value_name: str
) -> tuple[int, int]:
    """A matrix as coloured cells (0 to 1), each with its value written in it."""
    import numpy as np

    values = np.asarray(matrix, dtype=float)
    rows, cols = values.shape
    fig = _figure(max(4.5, 1.0 * cols + 2.5), max(3.0, 0.38 * rows + 1.6))
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="magma", vmin=0, vmax=1, aspect="auto")
    for i in range(rows):
        for j in range(cols):
            v = values[i, j]
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="black" if v > 0.6 else "white")
    ax.set_xticks(range(cols), col_labels, fontsize=9)
    ax.set_yticks(range(rows), row_labels, fontsize=8)
    ax.tick_params(length=0)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=value_name)
    return _save_figure(fig, path)


def panels(pictures: list, captions: list, header: str, height: int = 360):
    """Pillow images side by side, scaled to one ``height``, each with a caption, under a header
    line: one frame of the training animation."""
    from PIL import Image, ImageDraw

    scaled = [
        p.convert("RGB").resize((round(p.width * height / p.height), height), Image.Resampling.LANCZOS)
        for p in pictures
    ]
    gap, top = 12, 44
    width = sum(p.width for p in scaled) + gap * (len(scaled) + 1)
    frame = Image.new("RGB", (width, height + top + gap), "white")
    draw = ImageDraw.Draw(frame)
    draw.text((gap, 6), header, fill="black", font_size=16)
    x = gap
    for p, caption in zip(scaled, captions):
        draw.text((x, 26), caption, fill=(60, 60, 60), font_size=13)
        frame.paste(p, (x, top))
        x += p.width + gap
    return frame
