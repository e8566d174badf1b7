"""``tensor:PATH``: images (and labels) from arrays in a ``.npy``, ``.npz`` or ``.safetensors`` file,
held in memory as uint8 ``(N, C, H, W)``; without a train/test pair of its own, ``test_fraction``
of the images is held out (a seeded shuffle). numpy and safetensors are imported in the loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import UsageError
from ..hookspecs import DataRequest, DatasetSplits, Split
from .files import TENSOR_SUFFIXES, check_fraction, holdout, need_path, resolved

MAX_CLASSES = 100_000  # label indices of a tensor: file
# (train images, test images, train labels, test labels), the usual names of ready-made splits
SPLIT_KEYS = (
    ("x_train", "x_test", "y_train", "y_test"),
    ("train_images", "test_images", "train_labels", "test_labels"),
)
IMAGE_KEYS, LABEL_KEYS = ("images", "x"), ("labels", "y")
NUMPY_MAGIC: dict[str, Any] = {".npy": b"\x93NUMPY", ".npz": (b"PK\x03\x04", b"PK\x05\x06")}  # .npz is a zip


@dataclass(frozen=True)
class TensorOptions:
    """``path``: the ``.npy``/``.npz``/``.safetensors`` file (stored absolute); ``test_fraction``
    and ``seed``: the held-out test split when the file has no train/test pair."""

    path: str = ""
    test_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", resolved(self.path))
        check_fraction(self.test_fraction)


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
                raise UsageError(
                    f"tensor {path}: not a NumPy {suffix} file (a pickle, say, which is never "
                    f"loaded); save the arrays with numpy.{'save' if suffix == '.npy' else 'savez'}"
                )
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
        raise _refused(path, exc, "holds", f"it as {suffix}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise UsageError(f"tensor {path}: cannot read it as {suffix} ({reason})") from None


def _refused(path: Path, exc: ValueError, what: str, reading: str) -> UsageError:
    """The error for a ValueError of numpy or safetensors: a pickled (object) array, which numpy
    refuses to load, or another unreadable one."""
    if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
        return UsageError(
            f"tensor {path}: {what} a pickled (object) array, which is never loaded; save plain uint8 or float arrays"
        )
    return UsageError(f"tensor {path}: cannot read {reading} ({str(exc).strip()})")


def _array(get, key: str, path: Path):
    import numpy as np

    try:
        value = get(key)
    except ValueError as exc:  # an object array in an .npz: np.load refuses to unpickle it
        raise _refused(path, exc, f"{key} is", key) from None
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
        raise UsageError(
            f"tensor {path}: {key} has dtype {a.dtype}; images must be uint8 (0 to 255), floats in [0, 1] or bool"
        )
    expected = "expected (N, C, H, W) or (N, H, W, C) with C = 1, 3 or 4, or (N, H, W) for grey"
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4:
        first, last = shape[1] in (1, 3, 4), shape[3] in (1, 3, 4)
        if not (first or last):
            raise UsageError(f"tensor {path}: {key} has shape {shape}; {expected}")
        if first and last:  # (N, 3, 8, 3) or (N, 4, 5, 3): the fewer channels win, NCHW on a tie
            last = shape[3] < shape[1]
            notes.append(f"tensor {path}: {key} of shape {shape} read as {'(N, H, W, C)' if last else '(N, C, H, W)'}")
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
            raise UsageError(
                f"tensor {path}: {key} holds values from {low:g} to {high:g}; float images must lie "
                f"in [0, 1] (divide 0-255 values by 255, or save uint8)"
            )
        scaled = a.astype(np.float64 if a.dtype == np.float64 else np.float32) * 255
        levels = np.rint(scaled)
        change = float(np.abs(scaled - levels).max())
        if change > max(1e-3, 255 * float(np.finfo(a.dtype).eps)):
            notes.append(
                f"tensor {path}: rounded the float values of {key} to the 256 levels of 8 bits "
                f"(round(x*255); the largest change was {change / 255:.2g})"
            )
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


def _pick_keys(keys: list, path: Path) -> tuple[Optional[tuple], Any]:
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
                raise UsageError(
                    f"tensor {path}: has {have} but no {lack}; give labels for both splits or for none ({found})"
                )
            return (x_train, x_test), ((y_train, y_test) if y_train in keys else None)
    image_key = next((k for k in IMAGE_KEYS if k in keys), None)
    if image_key is None:
        raise UsageError(
            f"tensor {path}: no images: expected a key images or x (or x_train and x_test, or "
            f"train_images and test_images); {found}"
        )
    return None, (image_key, next((k for k in LABEL_KEYS if k in keys), None))


def load_tensor(request: DataRequest, options: TensorOptions) -> DatasetSplits:
    """``tensor:PATH``: images (and labels) from a ``.npy``, ``.npz`` or ``.safetensors`` file."""
    path = need_path(options.path, "tensor")
    suffix = path.suffix.lower()
    if path.is_dir():
        raise UsageError(f"tensor {path}: is a folder; for a folder of images write folder:{path}")
    if suffix not in TENSOR_SUFFIXES:
        raise UsageError(
            f"tensor {path}: unknown suffix '{suffix or '(none)'}'; give a .npy, .npz or .safetensors file"
        )
    if not path.exists():
        raise UsageError(f"tensor {path}: no such file")
    keys, get, close = _open_arrays(path)
    notes: list = []
    try:
        pair, rest = _pick_keys(keys, path)
        labels: list[Any]
        if pair is not None:
            images = [_images(_array(get, k, path), k, path, notes) for k in pair]
            if images[0].shape[1:] != images[1].shape[1:]:
                raise UsageError(
                    f"tensor {path}: {pair[0]} are {tuple(images[0].shape[1:])} (C, H, W) but "
                    f"{pair[1]} are {tuple(images[1].shape[1:])}; both splits need one shape"
                )
            labels = (
                [_labels(_array(get, k, path), k, len(x), path) for k, x in zip(rest, images)]
                if rest is not None
                else [None, None]
            )
        else:
            image_key, label_key = rest
            everything = _images(_array(get, image_key, path), image_key, path, notes)
            all_labels = (
                None if label_key is None else _labels(_array(get, label_key, path), label_key, len(everything), path)
            )
            train_idx, test_idx = holdout(len(everything), options.test_fraction, options.seed, f"tensor {path}")
            images = [everything[idx].contiguous() for idx in (train_idx, test_idx)]
            labels = [None if all_labels is None else all_labels[idx] for idx in (train_idx, test_idx)]
    finally:
        close()
    class_names = None
    if labels[0] is not None:
        top = max(int(y.max()) for y in labels if len(y))
        if top >= MAX_CLASSES:
            raise UsageError(
                f"tensor {path}: labels go up to {top}; labels are class indices 0 to "
                f"{MAX_CLASSES - 1} at most (renumber them from 0)"
            )
        class_names = [str(k) for k in range(top + 1)]
    return DatasetSplits(
        train=Split(images[0], labels[0]), test=Split(images[1], labels[1]), class_names=class_names, notes=notes
    )
