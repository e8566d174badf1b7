"""The data path: datasets from plugins, held as one uint8 tensor on the training device.

Each epoch draws batches through a permutation index on that device and converts them
(scaling to [0, 1]) per batch on the device: no DataLoader, no worker processes and no
per-sample Python for datasets that fit in memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from . import options as opts
from .errors import UsageError, VaeError
from .hookspecs import DataRequest, DatasetSplits, Split
from .plugins import Registered, registry

BINARIZE = ("none", "static", "dynamic")
# The fixed Bernoulli draws of binarized models: the train split of a static one (seed 0), and the
# test split and command inputs of every binarized model (seed 1); the same on every device.
BINARIZE_SEEDS = {"train": 0, "test": 1}


def default_data_dir() -> Path:
    """``$VAECLI_DATA_DIR``, else ``$XDG_CACHE_HOME/vaecli/data`` (``~/.cache/vaecli/data``)."""
    if os.environ.get("VAECLI_DATA_DIR"):
        return Path(os.environ["VAECLI_DATA_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "vaecli" / "data"


@dataclass
class LoadedDataset:
    name: str
    registered: Registered
    options: Any
    splits: DatasetSplits

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.splits.train.images.shape[1:])  # type: ignore[return-value]

    def describe(self, binarize: str = "none") -> dict:
        """The ``data`` section of a checkpoint's metadata."""
        return {
            "dataset": {
                "name": self.name,
                "options": opts.to_json(self.options),
                "provider": self.registered.plugin.provider(),
            },
            "class_names": self.splits.class_names,
            "preprocessing": {"divide_by": 255, "binarize": binarize},  # uint8 -> [0, 1] floats
            "n_train": len(self.splits.train),
            "n_test": len(self.splits.test),
        }


def _check_split(split: Split, which: str, owner: str) -> None:
    images = split.images
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4 or len(images) == 0:
        raise VaeError(f"{owner} returned a bad {which} split: images must be a non-empty uint8 "
                       f"tensor (N, C, H, W)")
    if split.labels is not None and tuple(split.labels.shape) != (images.shape[0],):
        raise VaeError(f"{owner} returned {which} labels of shape {tuple(split.labels.shape)} "
                       f"for {images.shape[0]} images")


def split_dataset_name(text: str) -> tuple[str, dict]:
    """``folder:PATH`` -> ``("folder", {"path": "PATH"})`` for a dataset registered with
    ``argument="path"``; a plain registered name -> ``(name, {})``."""
    reg = registry()
    if ":" in text and text not in reg.names("dataset"):
        name, _, value = text.partition(":")
        if name in reg.names("dataset"):
            spec = reg.get("dataset", name).spec
            if not spec.argument:
                raise UsageError(f"dataset '{name}' takes no argument (got {text!r}); write just {name}")
            if not value:
                raise UsageError(f"dataset '{name}' needs its {spec.argument}: {name}:{spec.argument.upper()}")
            return name, {spec.argument: value}
    return text, {}


def load_dataset(
    name: str,
    option_values: Optional[dict] = None,
    data_dir: Optional[Path | str] = None,
    download: bool = True,
    provider: Optional[dict] = None,
) -> LoadedDataset:
    """Load a registered dataset by name (``NAME`` or ``NAME:ARGUMENT``, as ``folder:PATH``),
    with its options given as strings or JSON values."""
    name, from_argument = split_dataset_name(name)
    registered = registry().get("dataset", name, provider)
    spec = registered.spec
    values = dict(option_values or {})
    clash = [k for k in from_argument if k in values and str(values[k]) != from_argument[k]]
    if clash:
        raise UsageError(f"dataset '{name}': {clash[0]} is given twice ({name}:{from_argument[clash[0]]} "
                         f"and --data-option {clash[0]}={values[clash[0]]})")
    values.update(from_argument)
    options = opts.build(spec.options, values, f"dataset '{name}'")
    request = DataRequest(Path(data_dir).expanduser() if data_dir else default_data_dir(), download)
    splits = spec.load(request, options)
    owner = f"dataset '{name}' ({registered.plugin.label})"
    _check_split(splits.train, "train", owner)
    _check_split(splits.test, "test", owner)
    if splits.train.images.shape[1:] != splits.test.images.shape[1:]:
        raise VaeError(f"{owner} returned train and test images of different shapes")
    return LoadedDataset(name, registered, options, splits)


def binarize(images: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed binarization of uint8 images: each pixel is 255 with probability value/255, else
    0 (one Bernoulli draw, from a CPU generator seeded ``seed``, so every device draws the same).
    Returns uint8 on the images' device."""
    gen = torch.Generator().manual_seed(seed)
    flat = images.reshape(len(images), -1)
    rows = max(1, 2 ** 22 // max(1, flat.shape[1]))  # about 16 MB of noise at a time
    parts = []
    for start in range(0, len(flat), rows):
        chunk = flat[start:start + rows].cpu()
        noise = torch.rand(chunk.shape, generator=gen)
        parts.append((noise * 255 < chunk).to(torch.uint8) * 255)
    out = torch.cat(parts) if parts else flat.cpu().clone()
    return out.view(images.shape).to(images.device)


def preprocessing(meta: dict) -> str:
    """The binarization a checkpoint's model was trained with: none, static or dynamic."""
    return meta.get("data", {}).get("preprocessing", {}).get("binarize", "none")


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1], on the same device."""
    return images.float().div_(255.0)


def batch_indices(
    n: int, batch_size: int, device: torch.device, generator: Optional[torch.Generator] = None,
    shuffle: bool = True,
) -> Iterator[torch.Tensor]:
    """Index tensors of the batches of one epoch, drawn from a permutation made on ``device``."""
    if shuffle:
        order = torch.randperm(n, device=device, generator=generator)
    else:
        order = torch.arange(n, device=device)
    yield from order.split(batch_size)


# -- inputs of the commands: DATASET:SPLIT[:INDEX], an image file or a folder of images ------

SPLITS = ("train", "test")
IMAGE_FILES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
CHANNEL_NAMES = {1: "grey", 3: "RGB"}


@dataclass
class Inputs:
    """Images named by the user, already converted to what the model expects."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: Optional[torch.Tensor]  # (N,) int64, or None
    class_names: Optional[list]
    factors: dict  # name -> (N,) tensor (the shapes dataset's factors of variation)
    source: str
    warnings: list
    binarize_seed: Optional[int] = BINARIZE_SEEDS["test"]  # None: already binarized (dataset splits)

    def __len__(self) -> int:
        return len(self.images)


def describe_shape(shape) -> str:
    c, h, w = shape
    return f"{h}x{w} {CHANNEL_NAMES.get(c, f'{c}-channel')}"


def _parse_dataset_input(text: str) -> Optional[tuple[str, str, Optional[int]]]:
    """``NAME:SPLIT`` or ``NAME:SPLIT:INDEX`` (parsed from the right, so a NAME may hold ':')."""
    parts = text.split(":")
    index = None
    if len(parts) >= 3 and parts[-1].lstrip("-").isdigit():
        index = int(parts.pop())
    if len(parts) >= 2 and parts[-1] in SPLITS:
        return ":".join(parts[:-1]), parts[-1], index
    return None


def load_input(
    text: str, meta: dict, data_dir: Optional[Path | str] = None, download: bool = True, limit: Optional[int] = None
) -> Inputs:
    """Resolve an INPUT argument for a model whose checkpoint metadata is ``meta``.

    ``mnist:test`` and ``mnist:test:7`` name a dataset split or one image of it (the
    checkpoint's own dataset is loaded with its recorded options); anything else is an image
    file or a folder of images. Images are converted to the model's input shape when that is
    unambiguous (grey <-> RGB; a resize keeping the aspect ratio, with a warning). ``limit``:
    at most that many images (the first ones). For a model trained on binarized images, the
    inputs are binarized by the same fixed draw as in training (``BINARIZE_SEEDS``).
    """
    inputs = _load_input(text, meta, data_dir, download, limit)
    if preprocessing(meta) != "none" and inputs.binarize_seed is not None:
        inputs.images = binarize(inputs.images, inputs.binarize_seed)
        inputs.binarize_seed = None
    return inputs


def _load_input(text, meta, data_dir, download, limit) -> Inputs:
    expected = tuple(int(s) for s in meta["model"]["input_shape"])
    if not text.strip():
        raise UsageError("INPUT is empty; give DATASET:SPLIT, an image file or a folder")
    path = Path(text).expanduser()
    if path.is_dir():
        return _load_folder(path, expected, limit)
    if path.is_file():
        warnings: list = []
        images, notes = conform(read_image(path, warnings), expected, str(path))
        return Inputs(images, None, None, {}, str(path), warnings + notes)
    parsed = _parse_dataset_input(text)
    if parsed is None:
        known = registry().names("dataset")
        if text in known:
            raise UsageError(f"INPUT {text}: say which split, e.g. {text}:test or {text}:train:0")
        if path.suffix.lower() in IMAGE_FILES:
            raise UsageError(f"INPUT {text}: no such file")
        raise UsageError(f"INPUT {text!r} is not a file, a folder or DATASET:SPLIT[:INDEX] "
                         f"(datasets: {', '.join(sorted(known))})")
    name, split_name, index = parsed
    trained_on = meta.get("data", {}).get("dataset", {})
    base, argument = split_dataset_name(name)
    same = trained_on.get("name") == base and all(
        _same_value(trained_on.get("options", {}).get(k), v) for k, v in argument.items())
    if data_dir is None:
        recorded = meta.get("training", {}).get("data_dir")
        data_dir = recorded if recorded and Path(recorded).is_dir() else None
    if same:  # the checkpoint's own dataset, with the options it was trained with
        loaded = load_dataset(base, trained_on.get("options"), data_dir, download, trained_on.get("provider"))
    else:
        loaded = load_dataset(name, None, data_dir, download)
    split = getattr(loaded.splits, split_name)
    images, labels, factors = split.images, split.labels, dict(split.factors or {})
    drawn = preprocessing(meta) != "none" and tuple(images.shape[1:]) == expected
    if drawn:  # the whole split, so that it is training's draw (else after conform, in load_input)
        images = binarize(images, BINARIZE_SEEDS[split_name])
    if index is not None:
        if not 0 <= index < len(images):
            raise UsageError(f"INPUT {text}: index {index} is out of range; {name}:{split_name} "
                             f"has {len(images)} images (0 to {len(images) - 1})")
        sel = slice(index, index + 1)
        images = images[sel]
        labels = None if labels is None else labels[sel]
        factors = {k: v[sel] for k, v in factors.items()}
    if limit is not None:
        images, labels = images[:limit], None if labels is None else labels[:limit]
        factors = {k: v[:limit] for k, v in factors.items()}
    images, warnings = conform(images, expected, text)
    return Inputs(images, labels, loaded.splits.class_names, factors, text, list(loaded.splits.notes) + warnings,
                  binarize_seed=None if drawn else BINARIZE_SEEDS[split_name])


def _same_value(recorded: Any, given: str) -> bool:
    """Whether an argument (``folder:PATH``) names what the checkpoint recorded."""
    if recorded is None:
        return False
    if str(recorded) == given:
        return True
    try:
        return Path(given).expanduser().resolve() == Path(str(recorded)).expanduser().resolve()
    except OSError:
        return False


def conform(images: torch.Tensor, expected: tuple, what: str) -> tuple[torch.Tensor, list]:
    """uint8 images ``(N, C, H, W)`` -> the model's ``(C, H, W)``, or a UsageError saying what the
    model expects. Grey <-> RGB and alpha are converted; a size with the same aspect ratio is
    resized (antialiased), with a warning; anything else is refused."""
    c, h, w = expected
    n, ci, hi, wi = images.shape
    warnings = []
    if ci in (2, 4):  # drop the alpha channel
        images, ci = images[:, : ci - 1], ci - 1
    if ci != c:
        if ci == 1 and c == 3:
            images = images.expand(n, 3, hi, wi)
        elif ci == 3 and c == 1:  # ITU-R 601-2 luma, as Pillow's convert("L")
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise UsageError(f"{what}: the model expects {describe_shape(expected)} images; these have "
                             f"{ci} channels")
    if (hi, wi) != (h, w):
        if hi * w != wi * h:
            raise UsageError(f"{what}: the model expects {describe_shape(expected)} images; these are "
                             f"{hi}x{wi}, a different aspect ratio (crop them first)")
        images = torch.nn.functional.interpolate(images.float(), size=(h, w), mode="bilinear",
                                                 antialias=True, align_corners=False)
        images = images.round().clamp(0, 255).to(torch.uint8)
        warnings.append(f"{what}: resized {n} image(s) from {hi}x{wi} to {h}x{w}")
    return images.contiguous(), warnings


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
                raise UsageError(f"{path}: {img.mode} (16-bit or float) images are not supported; "
                                 f"save it as 8-bit")
            if img.mode not in ("L", "LA", "RGB", "RGBA"):
                img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else
                                  ("L" if img.mode == "1" else "RGB"))
            array = np.asarray(img)
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    except Image.DecompressionBombError:
        raise UsageError(f"{path}: the image is too large to read safely ({Image.MAX_IMAGE_PIXELS} "
                         f"pixels at most)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = "not an image" if isinstance(exc, UnidentifiedImageError) else f"corrupt ({exc})"
        raise UsageError(f"{path}: cannot read it as an image: {reason}") from None
    tensor = torch.from_numpy(array.copy())
    tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)
    return tensor.unsqueeze(0).contiguous()


def _load_folder(folder: Path, expected: tuple, limit: Optional[int] = None) -> Inputs:
    """The images under ``folder`` (sorted; the first ``limit`` readable ones), each converted as
    it is read. Files that are not images are skipped, with one warning. When all images sit in
    subfolders, the subfolder names are the class labels."""
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    images, skipped, paths, warnings = [], [], [], []
    resized, first_reason = 0, ""
    for f in files:
        if limit is not None and len(images) >= limit:
            break
        notes: list = []
        try:
            image = read_image(f, notes)
        except UsageError as exc:
            skipped.append(f.relative_to(folder).as_posix())
            first_reason = first_reason or str(exc)
            continue
        tensor, resize_notes = conform(image, expected, str(f))  # an image that cannot be converted: refused
        images.append(tensor)
        paths.append(f)
        resized += bool(resize_notes)
        warnings += notes
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        warnings.insert(0, f"{folder}: skipped {len(skipped)} file(s) that are not readable images: {shown}")
    if not images:
        raise UsageError(f"INPUT {folder}: the folder holds no readable images"
                         + (f" ({len(skipped)} other file(s); first: {first_reason})" if skipped else ""))
    if resized:
        warnings.append(f"{folder}: resized {resized} of {len(paths)} image(s) to {expected[1]}x{expected[2]}")
    labels = class_names = None
    parents = [p.relative_to(folder).parts for p in paths]
    if all(len(parts) >= 2 for parts in parents):
        class_names = sorted({parts[0] for parts in parents})
        labels = torch.tensor([class_names.index(parts[0]) for parts in parents])
    return Inputs(torch.cat(images), labels, class_names, {}, str(folder), warnings)
