"""``tensor:PATH``: images (and labels) from arrays in a ``.npy``, ``.npz`` or ``.safetensors`` file,
converted chunk by chunk into the data cache (memory-mapped uint8 ``(N, C, H, W)``); without a
train/test pair of its own, ``test_fraction`` of the images is held out (a seeded shuffle).
numpy and safetensors are imported in the loader."""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..errors import UsageError
from ..hookspecs import DataRequest, DatasetSplits
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


CHUNK_BYTES = 64 << 20  # read and converted at a time


class _Array:
    """One array of the file: its ``shape`` and numpy ``dtype`` from the header, its rows read
    in ``chunks`` (never the whole array at once, except a Fortran-ordered one) or ``whole``."""

    def __init__(self, shape: tuple, dtype: Any, chunks: Callable[[int], Iterator]) -> None:
        self.shape, self.dtype, self._chunks = tuple(int(s) for s in shape), dtype, chunks

    def chunks(self) -> Iterator:
        row = max(1, math.prod(self.shape[1:]) * self.dtype.itemsize)
        return self._chunks(max(1, CHUNK_BYTES // row))

    def whole(self):
        import numpy as np

        parts = list(self.chunks()) or [np.empty(self.shape, dtype=self.dtype)]  # no rows: empty
        return np.concatenate(parts) if len(parts) != 1 else parts[0]


def _object_array(path: Path, key: str, dtype: Any) -> None:
    if dtype.hasobject:
        raise UsageError(
            f"tensor {path}: {key} is a pickled (object) array, which is never loaded; save plain uint8 or float arrays"
        )


def _header(fmt: Any, version: tuple) -> Callable:
    return fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0


def _numpy_array(f, path: Path, key: str, reopen: Callable[[], Any], size: int) -> _Array:
    """The array of a .npy stream ``f`` of ``size`` bytes positioned at its start (``reopen()``
    another such stream): the header read here and checked against ``size`` before anything is
    allocated, the rows streamed from it."""
    import numpy as np

    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        shape, fortran, dtype = _header(fmt, version)(f)
    except ValueError as exc:
        raise UsageError(f"tensor {path}: cannot read {key} ({str(exc).strip()})") from None
    _object_array(path, key, dtype)
    declared, held = math.prod(shape) * dtype.itemsize, size - f.tell()
    if declared > held:
        raise UsageError(
            f"tensor {path}: {key} declares {shape} of {dtype} ({declared:,} bytes) but the file holds "
            f"{max(held, 0):,} (truncated or forged)"
        )

    def chunks(rows: int) -> Iterator:
        with reopen() as g:
            _header(fmt, fmt.read_magic(g))(g)
            if fortran:  # column-major: the rows are not contiguous in the file
                count = math.prod(shape)
                yield np.frombuffer(g.read(count * dtype.itemsize), dtype=dtype, count=count).reshape(shape, order="F")
                return
            row = math.prod(shape[1:]) * dtype.itemsize
            for start in range(0, shape[0] if shape else 1, rows):
                n = min(rows, shape[0] - start) if shape else 1
                data = g.read(n * row)
                if len(data) != n * row:
                    raise UsageError(f"tensor {path}: {key} is shorter than its header says (truncated?)")
                yield np.frombuffer(data, dtype=dtype).reshape((n, *shape[1:]) if shape else ())

    return _Array(shape, dtype, chunks)


def _open_arrays(path: Path) -> tuple[list, Callable[[str], _Array], Callable[[], None]]:
    """``(keys, array(key) -> _Array, close)`` of a .npy, .npz or .safetensors file."""
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
            with open(path, "rb") as f:
                array = _numpy_array(f, path, "images", lambda: open(path, "rb"), path.stat().st_size)
            return ["images"], lambda key: array, lambda: None
        if suffix == ".npz":
            archive = zipfile.ZipFile(path)
            members = [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]

            def member(key: str) -> _Array:
                with archive.open(key + ".npy") as f:
                    size = archive.getinfo(key + ".npy").file_size  # as the zip declares it
                    return _numpy_array(f, path, key, lambda: archive.open(key + ".npy"), size)

            return members, member, archive.close
        return _safetensors_arrays(path)
    except ValueError as exc:
        raise UsageError(f"tensor {path}: cannot read it as {suffix} ({str(exc).strip()})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise UsageError(f"tensor {path}: cannot read it as {suffix} ({reason})") from None


def _safetensors_arrays(path: Path) -> tuple[list, Callable[[str], _Array], Callable[[], None]]:
    import numpy as np
    import torch
    from safetensors import SafetensorError, safe_open

    try:
        handle = safe_open(str(path), framework="pt")
    except SafetensorError as exc:
        raise ValueError(str(exc)) from None

    def as_numpy(tensor):
        if tensor.is_floating_point() and tensor.dtype not in (torch.float16, torch.float32, torch.float64):
            tensor = tensor.float()  # bfloat16 and float8 have no numpy dtype
        return tensor.numpy()

    def array(key: str) -> _Array:
        try:
            sliced = handle.get_slice(key)
            shape = tuple(sliced.get_shape())
            dtype = as_numpy(sliced[0:0] if shape else handle.get_tensor(key)).dtype
        except SafetensorError as exc:
            raise UsageError(f"tensor {path}: cannot read {key} ({str(exc).strip()})") from None

        def chunks(rows: int) -> Iterator:
            if not shape:
                yield np.asarray(as_numpy(handle.get_tensor(key)))
                return
            for start in range(0, shape[0], rows):
                yield as_numpy(handle.get_slice(key)[start : start + rows])

        return _Array(shape, np.dtype(dtype), chunks)

    return list(handle.keys()), array, lambda: None


class _Images:
    """An images array, checked from its header (and, for floats, one pass over the values),
    converted chunk by chunk to uint8 ``(n, C, H, W)`` with C = 1 or 3; ``shape`` is (C, H, W)."""

    def __init__(self, a: _Array, key: str, path: Path, notes: list) -> None:
        import numpy as np

        self.key, self.path, self.notes, self.array = key, path, notes, a
        shape, dtype = a.shape, a.dtype
        if dtype.kind not in "buf" or (dtype.kind == "u" and dtype != np.uint8):
            raise UsageError(
                f"tensor {path}: {key} has dtype {dtype}; images must be uint8 (0 to 255), floats in [0, 1] or bool"
            )
        expected = "expected (N, C, H, W) or (N, H, W, C) with C = 1, 3 or 4, or (N, H, W) for grey"
        self.last = False
        if len(shape) == 4:
            first, last = shape[1] in (1, 3, 4), shape[3] in (1, 3, 4)
            if not (first or last):
                raise UsageError(f"tensor {path}: {key} has shape {shape}; {expected}")
            if first and last:  # (N, 3, 8, 3) or (N, 4, 5, 3): the fewer channels win, NCHW on a tie
                last = shape[3] < shape[1]
                notes.append(
                    f"tensor {path}: {key} of shape {shape} read as {'(N, H, W, C)' if last else '(N, C, H, W)'}"
                )
            self.last = last
        elif len(shape) != 3:
            raise UsageError(f"tensor {path}: {key} has {len(shape)} dimensions {shape}; {expected}")
        if math.prod(shape) == 0:
            raise UsageError(f"tensor {path}: {key} holds no images (shape {shape})")
        nchw = (
            (shape[0], 1, *shape[1:]) if len(shape) == 3 else (shape[0], shape[3], *shape[1:3]) if self.last else shape
        )
        self.n, self.shape = nchw[0], (min(nchw[1], 3), *nchw[2:])
        self.change = 0.0
        if dtype.kind == "f":
            self._check_floats()

    def _check_floats(self) -> None:
        import numpy as np

        low, high = math.inf, -math.inf
        for chunk in self.array.chunks():
            if not np.isfinite(chunk).all():
                raise UsageError(f"tensor {self.path}: {self.key} holds NaN or infinite values")
            low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
        if low < 0 or high > 1:
            raise UsageError(
                f"tensor {self.path}: {self.key} holds values from {low:g} to {high:g}; float images must lie "
                f"in [0, 1] (divide 0-255 values by 255, or save uint8)"
            )

    def chunks(self) -> Iterator:
        import numpy as np
        import torch

        for a in self.array.chunks():
            a = a[:, None] if a.ndim == 3 else a.transpose(0, 3, 1, 2) if self.last else a
            if a.dtype.kind == "f":
                scaled = a.astype(np.float64 if a.dtype == np.float64 else np.float32) * 255
                levels = np.rint(scaled)
                self.change = max(self.change, float(np.abs(scaled - levels).max()))
                a = levels.astype(np.uint8)
            elif a.dtype == np.bool_:
                a = a.astype(np.uint8) * 255
            yield torch.from_numpy(np.require(a[:, :3], requirements=["C", "W"]))

    def finish(self) -> None:
        """The notes of the conversion, once every chunk is through."""
        dtype, path, key = self.array.dtype, self.path, self.key
        import numpy as np

        if dtype.kind == "f" and self.change > max(1e-3, 255 * float(np.finfo(dtype).eps)):
            self.notes.append(
                f"tensor {path}: rounded the float values of {key} to the 256 levels of 8 bits "
                f"(round(x*255); the largest change was {self.change / 255:.2g})"
            )
        if (self.array.shape[3] if self.last else self.array.shape[1] if len(self.array.shape) == 4 else 1) == 4:
            self.notes.append(f"tensor {path}: dropped the alpha channel of {key}")


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
    """``tensor:PATH``: images (and labels) from a ``.npy``, ``.npz`` or ``.safetensors`` file,
    through the data cache: converted once into a memory-mapped uint8 cache (``vaecli.datacache``)
    and mapped again while the file keeps its size and modification time."""
    import dataclasses

    from .. import datacache

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
    from .factors_file import factors_file

    st = path.stat()
    key: dict[str, Any] = {"options": dataclasses.asdict(options), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    beside = factors_file(path)
    if beside is not None:
        key["factors"] = [beside.name, beside.stat().st_size, beside.stat().st_mtime_ns]
    cache = datacache.cache_folder(request.data_dir, "tensor", key)
    cached = datacache.open_cache(cache)
    if cached is not None:
        return cached
    keys, array, close = _open_arrays(path)
    try:
        pair, rest = _pick_keys(keys, path)
        if len(array(pair[0] if pair else rest[0]).shape) == 2:
            from .array_rows import rows

            return rows(path, options, array, pair, rest)
        return _build(cache, path, options, keys, array, beside)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # a member damaged past its header
        reason = str(exc).strip() or type(exc).__name__
        raise UsageError(f"tensor {path}: cannot read it as {suffix} ({reason})") from None
    finally:
        close()


def _build(
    cache: Path, path: Path, options: TensorOptions, keys: list, array: Callable, beside: Optional[Path]
) -> DatasetSplits:
    """Check the arrays from their headers, then write the cache chunk by chunk; the factors
    from the file ``beside`` the data, if any."""
    import torch

    from .. import datacache
    from ..console import progress
    from .factors_file import read_tensor_factors

    notes: list = []
    labels: list[Any]
    parts: list[tuple[_Images, str, Any]]
    pair, rest = _pick_keys(keys, path)
    if pair is not None:
        images = [_Images(array(k), k, path, notes) for k in pair]
        if images[0].shape != images[1].shape:
            raise UsageError(
                f"tensor {path}: {pair[0]} are {images[0].shape} (C, H, W) but "
                f"{pair[1]} are {images[1].shape}; both splits need one shape"
            )
        labels = [_labels(array(k).whole(), k, x.n, path) for k, x in zip(rest, images)] if rest else [None, None]
        parts = [(images[0], "train", None), (images[1], "test", None)]
        rows = torch.arange(images[0].n + images[1].n) >= images[0].n
    else:
        image_key, label_key = rest
        everything = _Images(array(image_key), image_key, path, notes)
        all_labels = None if label_key is None else _labels(array(label_key).whole(), label_key, everything.n, path)
        test_rows = holdout(everything.n, options.test_fraction, options.seed, f"tensor {path}")
        labels = [None if all_labels is None else all_labels[rows] for rows in (~test_rows, test_rows)]
        parts = [(everything, "", test_rows)]
        rows = test_rows
    factors = {} if beside is None else read_tensor_factors(beside, len(rows))
    split_factors = ({k: v[~rows] for k, v in factors.items()}, {k: v[rows] for k, v in factors.items()})
    class_names = None
    if labels[0] is not None:
        top = max(int(y.max()) for y in labels if len(y))
        if top >= MAX_CLASSES:
            raise UsageError(
                f"tensor {path}: labels go up to {top}; labels are class indices 0 to "
                f"{MAX_CLASSES - 1} at most (renumber them from 0)"
            )
        class_names = [str(k) for k in range(top + 1)]
    cache.parent.mkdir(parents=True, exist_ok=True)
    total = sum(source.n for source, *_ in parts)
    with datacache.Writer(cache, parts[0][0].shape) as writer, progress(total, f"caching {path.name}") as update:
        done = 0
        for source, split, test_rows in parts:
            start = 0
            for chunk in source.chunks():
                writer.add(chunk, split, None if test_rows is None else test_rows[start : start + len(chunk)])
                start += len(chunk)
                update(done + start)
            done += start
            source.finish()
        return writer.finish((labels[0], labels[1]), class_names, notes, split_factors)
