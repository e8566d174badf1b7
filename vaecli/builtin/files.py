"""The user's own images as datasets: ``folder:PATH`` (image files, recursively) and
``tensor:PATH`` (arrays in a ``.npy``, ``.npz`` or ``.safetensors`` file).

Both hold the images in memory as uint8 ``(N, C, H, W)``, like every built-in dataset. Without
a test split of their own they hold out ``test_fraction`` of the images (a seeded shuffle).
This module imports torch, numpy, PIL and safetensors only inside the loaders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import UsageError
from ..hookspecs import DataRequest, DatasetSplits, Split

TENSOR_SUFFIXES = (".npy", ".npz", ".safetensors")
MAX_CLASSES = 100_000  # label indices of a tensor: file
LISTED = 5  # names shown in a note before "and N more"
# (train images, test images, train labels, test labels), the usual names of ready-made splits
SPLIT_KEYS = (("x_train", "x_test", "y_train", "y_test"),
              ("train_images", "test_images", "train_labels", "test_labels"))
IMAGE_KEYS, LABEL_KEYS = ("images", "x"), ("labels", "y")
NUMPY_MAGIC = {".npy": b"\x93NUMPY", ".npz": (b"PK\x03\x04", b"PK\x05\x06")}  # .npz is a zip


def _resolved(path: str) -> str:
    """An absolute, resolved path, so that a checkpoint's options work from any folder."""
    return str(Path(path).expanduser().resolve()) if path else ""


def _check_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie between 0 and 1 (exclusive), got {test_fraction}")


@dataclass(frozen=True)
class FolderOptions:
    """``path``: the folder (stored absolute); ``image_size``: resize the shorter side to N and
    centre-crop N x N (0 keeps the size, which all images must then share); ``grayscale``: one
    channel (ITU-R 601 luma), else RGB when any image has colour; ``test_fraction`` and
    ``seed``: the held-out test split when the folder has no ``train/`` and ``test/``."""

    path: str = ""
    image_size: int = 0
    grayscale: bool = False
    test_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _resolved(self.path))
        if self.image_size < 0:
            raise ValueError(f"image_size must be 0 (keep the size) or a side in pixels, got {self.image_size}")
        _check_fraction(self.test_fraction)


@dataclass(frozen=True)
class TensorOptions:
    """``path``: the ``.npy``/``.npz``/``.safetensors`` file (stored absolute); ``test_fraction``
    and ``seed``: the held-out test split when the file has no train/test pair."""

    path: str = ""
    test_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _resolved(self.path))
        _check_fraction(self.test_fraction)


# -- shared helpers ---------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _listing(names: list) -> str:
    """``a, b, c`` — at most ``LISTED`` names, then ``and N more``."""
    shown = ", ".join(names[:LISTED])
    return shown + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def _need_path(path: str, dataset: str) -> Path:
    if not path:
        raise UsageError(f"dataset '{dataset}' needs its path: {dataset}:PATH")
    return Path(path)


def _holdout(n: int, fraction: float, seed: int, what: str):
    """Indices ``(train, test)`` of a seeded shuffle holding out ``fraction`` of ``n`` examples
    (at least one in each split), each in the original order."""
    import torch

    if n < 2:
        raise UsageError(f"{what} holds only {_plural(n, 'image')}; a dataset needs at least 2 (one to "
                         f"train on and one to test)")
    n_test = min(n - 1, max(1, round(n * fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_test:].sort().values, order[:n_test].sort().values


def _class_labels(paths: list) -> tuple[Optional[list], Optional[list]]:
    """When every path (a tuple of parts below its split's folder) sits in a subfolder, the
    first subfolder is its class: ``(labels per path, sorted class names)``; else ``(None, None)``."""
    if not paths or not all(len(parts) >= 2 for parts in paths):
        return None, None
    names = sorted({parts[0] for parts in paths})
    index = {name: i for i, name in enumerate(names)}
    return [index[parts[0]] for parts in paths], names


# -- folder:PATH ----------------------------------------------------------------------------------


def _image_files(folder: Path) -> list[Path]:
    """The files below ``folder``, recursively, sorted; dot-files and dot-folders ignored."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(top) / f for f in files if not f.startswith(".")]
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def _square(image, size: int):
    """``(1, C, H, W)`` uint8 -> the shorter side resized to ``size`` (antialiased), then the
    centre ``size`` x ``size``."""
    import torch

    _, _, h, w = image.shape
    if min(h, w) != size:
        scale = size / min(h, w)
        new = (max(size, round(h * scale)), max(size, round(w * scale)))
        image = torch.nn.functional.interpolate(image.float(), size=new, mode="bilinear", antialias=True,
                                                align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
        _, _, h, w = image.shape
    top, left = (h - size) // 2, (w - size) // 2
    return image[:, :, top:top + size, left:left + size]


class _FolderReader:
    """Reads the images of one or two split folders, remembering what it skipped."""

    def __init__(self, root: Path, options: FolderOptions) -> None:
        self.root, self.options = root, options
        self.skipped: list[str] = []
        self.animated: list[str] = []
        self.first_size: Optional[tuple] = None  # ((H, W), name) of the first image read

    def read(self, folder: Path) -> tuple[list, list]:
        """``(images (1, C, H, W) with C = 1 or 3, paths as parts below folder)``."""
        from ..data import read_image

        images, paths, skipped = [], [], 0
        for f in _image_files(folder):
            name = f.relative_to(self.root).as_posix()
            frames: list = []
            try:
                image = read_image(f, frames)
            except UsageError:
                self.skipped.append(name)
                skipped += 1
                continue
            if frames:
                self.animated.append(name)
            if image.shape[1] in (2, 4):  # drop the alpha channel
                image = image[:, :-1]
            if self.options.image_size:
                image = _square(image, self.options.image_size)
            self._check_size(image, name)
            images.append(image)
            paths.append(f.relative_to(folder).parts)
        if not images:
            others = f"{_plural(skipped, 'other file')}" if skipped else "it is empty"
            raise UsageError(f"{folder} holds no readable images ({others}); folder:PATH needs a folder of "
                             f"image files (PNG, JPEG, BMP, GIF, WebP, TIFF, PPM)")
        return images, paths

    def _check_size(self, image, name: str) -> None:
        size = tuple(int(s) for s in image.shape[2:])
        if self.first_size is None:
            self.first_size = (size, name)
        elif size != self.first_size[0]:
            (h0, w0), name0 = self.first_size
            raise UsageError(f"folder {self.root}: the images differ in size ({h0}x{w0} {name0}, {size[0]}x{size[1]} "
                             f"{name}); pass --image-size N to resize and centre-crop them all to NxN")

    def notes(self) -> list[str]:
        notes = []
        if self.skipped:
            notes.append(f"folder {self.root}: skipped {_plural(len(self.skipped), 'file')}: {_listing(self.skipped)}")
        if self.animated:
            notes.append(f"folder {self.root}: took the first frame of "
                         f"{_plural(len(self.animated), 'animated image')}: {_listing(self.animated)}")
        return notes


def _one_colour_mode(images: list, grayscale: bool) -> tuple[list, Optional[str]]:
    """All images to one channel count: grey with ``grayscale`` (ITU-R 601 luma, as Pillow's
    ``convert("L")``), else RGB when any image has colour, else grey. Returns a note when all
    the files are RGB but hold only grey."""
    import torch

    def is_colour(x) -> bool:
        return x.shape[1] == 3 and not (torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2]))

    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    if grayscale:
        return [x if x.shape[1] == 1 else
                (x.float() * weights).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
                for x in images], None
    if any(is_colour(x) for x in images):
        return [x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x for x in images], None
    all_rgb = all(x.shape[1] == 3 for x in images)  # then the user may expect RGB: say why not
    note = f"the {len(images)} images are stored as RGB but hold only grey; using one channel" if all_rgb else None
    return [x[:, :1] for x in images], note


def load_folder(request: DataRequest, options: FolderOptions) -> DatasetSplits:
    """``folder:PATH``: every image below PATH (see ``FolderOptions``)."""
    import torch

    root = _need_path(options.path, "folder")
    if not root.exists():
        raise UsageError(f"folder {root}: no such folder; give folder:PATH an existing folder of images")
    if not root.is_dir():
        hint = (f"; for an array file write tensor:{root}" if root.suffix.lower() in TENSOR_SUFFIXES
                else "; give folder:PATH a folder of images")
        raise UsageError(f"folder {root}: not a folder{hint}")
    reader = _FolderReader(root, options)
    beside: list = []
    if (root / "train").is_dir() and (root / "test").is_dir():
        parts = {which: reader.read(root / which) for which in ("train", "test")}
        images = parts["train"][0] + parts["test"][0]
        paths = parts["train"][1] + parts["test"][1]
        n_train = len(parts["train"][0])
        train_idx, test_idx = torch.arange(n_train), torch.arange(n_train, len(images))
        beside = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir()
                        if not p.name.startswith(".") and p.name not in ("train", "test"))
    else:
        images, paths = reader.read(root)
        train_idx, test_idx = _holdout(len(images), options.test_fraction, options.seed, f"folder {root}")
    notes = reader.notes()
    if beside:
        notes.append(f"folder {root}: read train/ and test/ only; ignored {len(beside)} other "
                     f"{'entry' if len(beside) == 1 else 'entries'}: {_listing(beside)}")
    images, grey_note = _one_colour_mode(images, options.grayscale)
    if grey_note:
        notes.append(f"folder {root}: {grey_note}")
    labels, class_names = _class_labels(paths)
    labels_t = None if labels is None else torch.tensor(labels, dtype=torch.int64)
    splits = [Split(torch.cat([images[i] for i in idx.tolist()]).contiguous(),  # (N, C, H, W)
                    None if labels_t is None else labels_t[idx])
              for idx in (train_idx, test_idx)]
    return DatasetSplits(train=splits[0], test=splits[1], class_names=class_names, notes=notes)


# -- tensor:PATH ----------------------------------------------------------------------------------


def _open_arrays(path: Path) -> tuple[list, Callable[[str], Any], Callable[[], None]]:
    """``(keys, get(key) -> numpy array, close)`` of a .npy, .npz or .safetensors file."""
    import zipfile

    import numpy as np

    suffix = path.suffix.lower()
    try:
        if suffix in NUMPY_MAGIC:
            with open(path, "rb") as f:
                head = f.read(8)
            if not head.startswith(NUMPY_MAGIC[suffix]):
                raise UsageError(f"tensor {path}: not a NumPy {suffix} file (a pickle, say, which is never "
                                 f"loaded); save the arrays with numpy.{'save' if suffix == '.npy' else 'savez'}")
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            if not isinstance(array, np.ndarray):
                raise ValueError("not a .npy array")
            return ["images"], lambda key: array, lambda: None
        if suffix == ".npz":
            archive = np.load(path, allow_pickle=False)
            if not hasattr(archive, "files"):
                raise ValueError("not an .npz archive")
            return list(archive.files), lambda key: archive[key], archive.close
        from safetensors import SafetensorError, safe_open
        try:
            handle = safe_open(str(path), framework="pt")
        except SafetensorError as exc:
            raise ValueError(str(exc)) from None

        def get(key: str):
            import torch

            try:
                tensor = handle.get_tensor(key)
            except SafetensorError as exc:
                raise ValueError(str(exc)) from None
            if tensor.is_floating_point() and tensor.dtype not in (torch.float16, torch.float32, torch.float64):
                tensor = tensor.float()  # bfloat16 and float8 have no numpy dtype
            return tensor.numpy()

        return list(handle.keys()), get, lambda: None
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise UsageError(f"tensor {path}: holds a pickled (object) array, which is never loaded; save "
                             f"plain uint8 or float arrays") from None
        raise UsageError(f"tensor {path}: cannot read it as {suffix} ({str(exc).strip()})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise UsageError(f"tensor {path}: cannot read it as {suffix} ({reason})") from None


def _array(get, key: str, path: Path):
    import numpy as np

    try:
        value = get(key)
    except ValueError as exc:  # an object array in an .npz: np.load refuses to unpickle it
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise UsageError(f"tensor {path}: {key} is a pickled (object) array, which is never loaded; save "
                             f"plain uint8 or float arrays") from None
        raise UsageError(f"tensor {path}: cannot read {key} ({str(exc).strip()})") from None
    value = np.asarray(value)
    if value.dtype.hasobject:
        raise UsageError(f"tensor {path}: {key} is an object array; save plain uint8 or float arrays")
    return value


def _images(a, key: str, path: Path, notes: list):
    """A numpy array -> uint8 torch ``(N, C, H, W)``, C = 1 or 3."""
    import numpy as np
    import torch

    shape = tuple(a.shape)
    if a.dtype.kind not in "buf" or (a.dtype.kind == "u" and a.dtype != np.uint8):
        raise UsageError(f"tensor {path}: {key} has dtype {a.dtype}; images must be uint8 (0 to 255), floats "
                         f"in [0, 1] or bool")
    expected = "expected (N, C, H, W) or (N, H, W, C) with C = 1, 3 or 4, or (N, H, W) for grey"
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4:
        first, last = shape[1] in (1, 3, 4), shape[3] in (1, 3, 4)
        if not (first or last):
            raise UsageError(f"tensor {path}: {key} has shape {shape}; {expected}")
        if first and last:  # (N, 3, 8, 3) or (N, 4, 5, 3): the fewer channels win, NCHW on a tie
            last = shape[3] < shape[1]
            notes.append(f"tensor {path}: {key} of shape {shape} read as "
                         f"{'(N, H, W, C)' if last else '(N, C, H, W)'}")
        if last:
            a = a.transpose(0, 3, 1, 2)
    else:
        raise UsageError(f"tensor {path}: {key} has {a.ndim} dimensions {shape}; {expected}")
    if a.size == 0:
        raise UsageError(f"tensor {path}: {key} holds no images (shape {shape})")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise UsageError(f"tensor {path}: {key} holds NaN or infinite values")
        low, high = float(a.min()), float(a.max())
        if low < 0 or high > 1:
            raise UsageError(f"tensor {path}: {key} holds values from {low:g} to {high:g}; float images must lie "
                             f"in [0, 1] (divide 0-255 values by 255, or save uint8)")
        scaled = a.astype(np.float64 if a.dtype == np.float64 else np.float32) * 255
        levels = np.rint(scaled)
        change = float(np.abs(scaled - levels).max())
        if change > max(1e-3, 255 * float(np.finfo(a.dtype).eps)):
            notes.append(f"tensor {path}: rounded the float values of {key} to the 256 levels of 8 bits "
                         f"(round(x*255); the largest change was {change / 255:.2g})")
        a = levels.astype(np.uint8)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    images = torch.from_numpy(np.ascontiguousarray(a))
    if images.shape[1] == 4:
        notes.append(f"tensor {path}: dropped the alpha channel of {key}")
        images = images[:, :3]
    return images.contiguous()


def _labels(a, key: str, n: int, path: Path):
    import numpy as np
    import torch

    if a.dtype.kind not in "iu":
        raise UsageError(f"tensor {path}: {key} has dtype {a.dtype}; labels must be integer class indices")
    if a.shape != (n,):
        raise UsageError(f"tensor {path}: {key} has shape {tuple(a.shape)} for {n} images; labels must be ({n},)")
    if n and int(a.min()) < 0:
        raise UsageError(f"tensor {path}: {key} holds {int(a.min())}; labels must be class indices from 0")
    return torch.from_numpy(a.astype(np.int64))


def _pick_keys(keys: list, path: Path) -> tuple[Optional[tuple], Optional[tuple]]:
    """``((train, test) image keys, (train, test) label keys or None)`` for a file with a split,
    else ``(None, (images key, labels key or None))``."""
    found = f"keys found: {', '.join(keys) or 'none'}"
    for x_train, x_test, y_train, y_test in SPLIT_KEYS:
        if x_train in keys or x_test in keys:
            if not (x_train in keys and x_test in keys):
                have, lack = (x_train, x_test) if x_train in keys else (x_test, x_train)
                raise UsageError(f"tensor {path}: has {have} but no {lack} ({found})")
            if (y_train in keys) != (y_test in keys):
                have, lack = (y_train, y_test) if y_train in keys else (y_test, y_train)
                raise UsageError(f"tensor {path}: has {have} but no {lack}; give labels for both splits or "
                                 f"for none ({found})")
            return (x_train, x_test), ((y_train, y_test) if y_train in keys else None)
    image_key = next((k for k in IMAGE_KEYS if k in keys), None)
    if image_key is None:
        raise UsageError(f"tensor {path}: no images: expected a key images or x (or x_train and x_test, or "
                         f"train_images and test_images); {found}")
    return None, (image_key, next((k for k in LABEL_KEYS if k in keys), None))


def load_tensor(request: DataRequest, options: TensorOptions) -> DatasetSplits:
    """``tensor:PATH``: images (and labels) from a ``.npy``, ``.npz`` or ``.safetensors`` file."""
    path = _need_path(options.path, "tensor")
    suffix = path.suffix.lower()
    if path.is_dir():
        raise UsageError(f"tensor {path}: is a folder; for a folder of images write folder:{path}")
    if suffix not in TENSOR_SUFFIXES:
        raise UsageError(f"tensor {path}: unknown suffix '{suffix or '(none)'}'; give a .npy, .npz or "
                         f".safetensors file")
    if not path.exists():
        raise UsageError(f"tensor {path}: no such file")
    keys, get, close = _open_arrays(path)
    notes: list = []
    try:
        pair, rest = _pick_keys(keys, path)
        if pair is not None:
            images = [_images(_array(get, k, path), k, path, notes) for k in pair]
            if images[0].shape[1:] != images[1].shape[1:]:
                raise UsageError(f"tensor {path}: {pair[0]} are {tuple(images[0].shape[1:])} (C, H, W) but "
                                 f"{pair[1]} are {tuple(images[1].shape[1:])}; both splits need one shape")
            labels = ([_labels(_array(get, k, path), k, len(x), path) for k, x in zip(rest, images)]
                      if rest is not None else [None, None])
        else:
            image_key, label_key = rest
            everything = _images(_array(get, image_key, path), image_key, path, notes)
            all_labels = (None if label_key is None else
                          _labels(_array(get, label_key, path), label_key, len(everything), path))
            train_idx, test_idx = _holdout(len(everything), options.test_fraction, options.seed, f"tensor {path}")
            images = [everything[idx].contiguous() for idx in (train_idx, test_idx)]
            labels = [None if all_labels is None else all_labels[idx] for idx in (train_idx, test_idx)]
    finally:
        close()
    class_names = None
    if labels[0] is not None:
        top = max(int(y.max()) for y in labels if len(y))
        if top >= MAX_CLASSES:
            raise UsageError(f"tensor {path}: labels go up to {top}; labels are class indices 0 to "
                             f"{MAX_CLASSES - 1} at most (renumber them from 0)")
        class_names = [str(k) for k in range(top + 1)]
    return DatasetSplits(train=Split(images[0], labels[0]), test=Split(images[1], labels[1]),
                         class_names=class_names, notes=notes)
