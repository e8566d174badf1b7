"""``celeba``: the aligned CelebA faces (Liu et al. 2015) in torchvision's layout,
``DATA_DIR/celeba/``:

- ``img_align_celeba.zip`` (as distributed) or the folder ``img_align_celeba/``: 178x218 JPEGs;
- ``list_eval_partition.txt``: each image's split (0 train, 1 validation, 2 test);
- ``list_attr_celeba.txt``: the 40 binary attributes (1 / -1) of each image.

The standard preprocessing of VAE papers (PyTorch-VAE, WAE, ...): the centre 148x148, resized to
64x64 (``size=128`` for 128x128). The attributes are the images' factors (for latent plots and
disentanglement metrics) and, with ``label=NAME``, one of them is the class label (for ``--model
cvae``). The JPEGs are decoded once into a uint8 cache beside them (``vaecli-cache/``, one
safetensors file per split and preprocessing), rebuilt when the source files change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataUnavailableError
from ..hookspecs import DataRequest, DatasetSplits, Split
from .papers import fetch

SOURCE = "CelebA's site (mmlab.ie.cuhk.edu.hk/projects/CelebA.html), 'Align&Cropped Images' and 'Anno'"
PARTITION, ATTRIBUTES, ZIP, FOLDER = (
    "list_eval_partition.txt",
    "list_attr_celeba.txt",
    "img_align_celeba.zip",
    "img_align_celeba",
)
SPLITS = {"train": 0, "valid": 1, "test": 2}


@dataclass(frozen=True)
class CelebAOptions:
    """``size``: 64 or 128 (the side after the crop); ``crop``: the centre square taken first
    (148, as the papers); ``label``: an attribute (``Smiling``, ``Male``, ...) as the class label,
    or empty for none; ``n_train``/``n_test``: the first N images of a split (0: all)."""

    size: int = 64
    crop: int = 148
    label: str = ""
    n_train: int = 0
    n_test: int = 0

    def __post_init__(self) -> None:
        if self.size not in (64, 128):
            raise ValueError(f"size must be 64 or 128, got {self.size}")
        if not 16 <= self.crop <= 178:
            raise ValueError(f"crop must be between 16 and 178 (the aligned images are 178 wide), got {self.crop}")
        if self.n_train < 0 or self.n_test < 0:
            raise ValueError("n_train and n_test must be 0 (all) or more")


def read_table(path: Path, header_lines: int) -> tuple[list, list]:
    """``(column names, [(file name, [int values])])`` of a CelebA annotation file."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataUnavailableError(f"{path} cannot be read ({exc})") from None
    columns = lines[1].split() if header_lines == 2 and len(lines) > 1 else []
    rows = []
    for number, line in enumerate(lines[header_lines:], start=header_lines + 1):
        parts = line.split()
        if not parts:
            continue
        try:
            rows.append((parts[0], [int(v) for v in parts[1:]]))
        except ValueError:
            raise DataUnavailableError(f"{path}, line {number}: not a file name and whole numbers") from None
    return columns, rows


def _images(where: Path, names: list, options: CelebAOptions):
    """The named JPEGs, decoded, cropped and resized: uint8 ``(N, 3, size, size)``."""
    import io
    import zipfile

    import numpy as np
    import torch
    from PIL import Image

    from ..images import centre_crop, resize

    archive = None
    if (where / FOLDER).is_dir():

        def read(name: str) -> bytes:
            return (where / FOLDER / name).read_bytes()
    else:
        archive = zipfile.ZipFile(where / ZIP)

        def read(name: str) -> bytes:
            return archive.read(f"{FOLDER}/{name}")

    out = torch.empty((len(names), 3, options.size, options.size), dtype=torch.uint8)
    try:
        for i, name in enumerate(names):
            with Image.open(io.BytesIO(read(name))) as img:
                array = np.asarray(img.convert("RGB"))
            image = torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)
            if min(image.shape[2:]) < options.crop:
                raise DataUnavailableError(
                    f"CelebA image {name} is {image.shape[3]}x{image.shape[2]}, smaller "
                    f"than the {options.crop}x{options.crop} crop"
                )
            out[i] = resize(centre_crop(image, options.crop), (options.size, options.size))[0]
    except (KeyError, FileNotFoundError) as exc:
        raise DataUnavailableError(
            f"CelebA image missing from {where} ({exc}); the images do not match {PARTITION}"
        ) from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataUnavailableError(f"a CelebA image in {where} cannot be read ({exc})") from None
    finally:
        if archive is not None:
            archive.close()
    return out


def _cached(where: Path, split: str, names: list, options: CelebAOptions):
    """The split's images from the uint8 cache, decoded and written there first when it is
    missing or its source changed (the images' source file and the partition's sizes and times)."""
    import json

    from safetensors.torch import load_file, save_file

    source = where / (FOLDER if (where / FOLDER).is_dir() else ZIP)
    identity = json.dumps(
        [[p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in (source, where / PARTITION)]
        + [len(names), names[:1], names[-1:]]
    )
    cache = where / "vaecli-cache" / f"{split}-{options.size}-crop{options.crop}-{len(names)}.safetensors"
    if cache.exists():
        try:
            from safetensors import safe_open

            with safe_open(str(cache), "pt") as f:
                if (f.metadata() or {}).get("source") == identity:
                    return load_file(str(cache))["images"]
        except Exception:  # a damaged cache is rebuilt
            pass
    images = _images(where, names, options)
    try:
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        save_file({"images": images}, str(tmp), metadata={"source": identity})
        tmp.replace(cache)
    except OSError:
        pass  # a read-only data dir: decode every time
    return images


def load_celeba(request: DataRequest, options: CelebAOptions) -> DatasetSplits:
    import torch

    where = request.data_dir / "celeba"
    image_source = FOLDER if (where / FOLDER).is_dir() else ZIP
    fetch(request, where, (image_source, PARTITION, ATTRIBUTES), "CelebA", SOURCE)
    _, partition = read_table(where / PARTITION, 0)
    columns, attributes = read_table(where / ATTRIBUTES, 2)
    if len(columns) == 0 or any(len(v) != len(columns) for _, v in attributes):
        raise DataUnavailableError(f"{where / ATTRIBUTES}: every line needs one value per attribute of its header")
    by_name = dict(attributes)
    if options.label and options.label not in columns:
        raise DataUnavailableError(f"CelebA has no attribute '{options.label}'; its attributes: {', '.join(columns)}")
    splits: dict[str, Any] = {}
    for split, limit in (("train", options.n_train), ("test", options.n_test)):
        names = [name for name, (code, *_) in partition if code == SPLITS[split]]
        names = names[:limit] if limit else names
        if not names:
            raise DataUnavailableError(f"{where / PARTITION} lists no {split} images")
        missing = [n for n in names if n not in by_name]
        if missing:
            raise DataUnavailableError(f"{where / ATTRIBUTES} has no attributes of {missing[0]}")
        values = torch.tensor([by_name[n] for n in names]).gt(0).long()  # (N, 40): 1 where the face has it
        factors = {c: values[:, i] for i, c in enumerate(columns)}
        labels = factors[options.label] if options.label else None
        splits[split] = Split(_cached(where, split, names, options), labels, factors)
    class_names = [f"not {options.label}", options.label] if options.label else None
    return DatasetSplits(train=splits["train"], test=splits["test"], class_names=class_names)
