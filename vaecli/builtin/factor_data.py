"""The data sets of disentanglement research, read from the files their authors publish, with
their factors of variation:

- ``dsprites`` (Matthey et al. 2017): ``DATA_DIR/dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``,
  737,280 binary 64x64 images of every combination of shape (3), scale (6), orientation (40),
  x (32) and y (32);
- ``3dshapes`` (Burgess & Kim 2018): ``DATA_DIR/3dshapes/3dshapes.h5``, 480,000 RGB 64x64
  images of every combination of floor, wall and object hue (10 each), scale (8), shape (4) and
  orientation (15); needs h5py (``pip install "vaecli[datasets]"``).

Neither has a test split: ``test_fraction`` of the images is held out by a seeded shuffle. The
factors are the index of each factor's value (as disentanglement_lib scores them); the label is
the shape. Both go through the data cache (``vaecli.datacache``): converted once, chunk by
chunk, then mapped or read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import DataUnavailableError, UsageError
from ..hookspecs import DataRequest, DatasetSplits
from .files import check_fraction, holdout

DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
DSPRITES_SOURCE = "github.com/google-deepmind/dsprites-dataset"
DSPRITES_FACTORS = ("color", "shape", "scale", "orientation", "pos_x", "pos_y")  # latents_classes' columns
SHAPES3D_FILE = "3dshapes.h5"
SHAPES3D_SOURCE = "github.com/google-deepmind/3d-shapes (the bucket storage.googleapis.com/3d-shapes)"
SHAPES3D_FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
CHUNK = 8192  # images converted at a time


@dataclass(frozen=True)
class FactorDataOptions:
    """``test_fraction`` and ``seed``: the held-out test split."""

    test_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        check_fraction(self.test_fraction)


def _source(request: DataRequest, folder: str, name: str, where: str) -> Path:
    path = request.data_dir / folder / name
    if not path.is_file():
        raise DataUnavailableError(
            f"{path} is missing; vaecli does not download it: get {name} from {where} and put it in {path.parent}"
        )
    return path


def _cached(
    request: DataRequest,
    kind: str,
    path: Path,
    options: FactorDataOptions,
    shape: tuple,
    n: int,
    chunks: Callable[[], Iterator],
    factors: dict,
    label: str,
    class_names: list,
) -> DatasetSplits:
    """The splits through the data cache: ``chunks()`` yields uint8 ``(n, C, H, W)`` images in
    file order, ``factors`` name -> ``(N,)`` int64 tensors, ``label`` the factor used as label."""
    import dataclasses

    from .. import datacache
    from ..console import progress

    st = path.stat()
    key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "options": dataclasses.asdict(options)}
    cache = datacache.cache_folder(request.data_dir, kind, key)
    cached = datacache.open_cache(cache)
    if cached is not None:
        return cached
    test_rows = holdout(n, options.test_fraction, options.seed, kind)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with datacache.Writer(cache, shape) as writer, progress(n, f"caching {kind}") as update:
        start = 0
        for images in chunks():
            writer.add(images, test_rows=test_rows[start : start + len(images)])
            start += len(images)
            update(start)
        if start != n:
            raise UsageError(f"{kind}: {path} holds {start} images where its factors say {n}")
        split = ({k: v[~test_rows] for k, v in factors.items()}, {k: v[test_rows] for k, v in factors.items()})
        labels = (split[0][label], split[1][label])
        return writer.finish(labels, class_names, [], split)


def load_dsprites(request: DataRequest, options: FactorDataOptions) -> DatasetSplits:
    """``dsprites``: the official .npz (its ``imgs`` of 0/1 pixels, shown as 0/255, and
    ``latents_classes``); its pickled ``metadata`` is never read."""
    import torch

    from .arrays import _open_arrays

    path = _source(request, "dsprites", DSPRITES_FILE, DSPRITES_SOURCE)
    keys, array, close = _open_arrays(path)
    try:
        missing = [k for k in ("imgs", "latents_classes") if k not in keys]
        if missing:
            raise UsageError(f"dsprites: {path} has no {' or '.join(missing)}; is it the file from {DSPRITES_SOURCE}?")
        imgs = array("imgs")
        classes = torch.from_numpy(array("latents_classes").whole().astype("int64"))
        if len(imgs.shape) != 3 or tuple(classes.shape) != (imgs.shape[0], len(DSPRITES_FACTORS)):
            raise UsageError(
                f"dsprites: {path}: imgs {imgs.shape} and latents_classes {tuple(classes.shape)} do not match"
            )

        def chunks() -> Iterator:
            for chunk in imgs.chunks():
                yield torch.from_numpy((chunk[:, None] > 0).astype("uint8") * 255)

        factors = {name: classes[:, j].contiguous() for j, name in enumerate(DSPRITES_FACTORS)}
        shape = (1, imgs.shape[1], imgs.shape[2])
        return _cached(
            request,
            "dsprites",
            path,
            options,
            shape,
            imgs.shape[0],
            chunks,
            factors,
            "shape",
            ["square", "ellipse", "heart"],
        )
    finally:
        close()


def load_3dshapes(request: DataRequest, options: FactorDataOptions) -> DatasetSplits:
    """``3dshapes``: the official .h5 (``images`` uint8 NHWC, ``labels`` the six factor values)."""
    import numpy as np
    import torch

    path = _source(request, "3dshapes", SHAPES3D_FILE, SHAPES3D_SOURCE)
    try:
        import h5py
    except ImportError:
        raise UsageError('3dshapes needs h5py: pip install "vaecli[datasets]"') from None
    try:
        handle: Any = h5py.File(path, "r")
    except OSError as exc:
        raise UsageError(f"3dshapes: cannot read {path} as HDF5 ({exc})") from None
    with handle:
        if "images" not in handle or "labels" not in handle:
            raise UsageError(f"3dshapes: {path} has no images or labels; is it the file from {SHAPES3D_SOURCE}?")
        images, values = handle["images"], np.asarray(handle["labels"][:])
        if images.ndim != 4 or images.shape[3] != 3 or values.shape != (images.shape[0], len(SHAPES3D_FACTORS)):
            raise UsageError(f"3dshapes: {path}: images {images.shape} and labels {values.shape} do not match")
        factors = {
            name: torch.from_numpy(np.unique(values[:, j], return_inverse=True)[1].reshape(-1).astype("int64"))
            for j, name in enumerate(SHAPES3D_FACTORS)
        }

        def chunks() -> Iterator:
            for start in range(0, images.shape[0], CHUNK):
                block = np.asarray(images[start : start + CHUNK])
                yield torch.from_numpy(np.ascontiguousarray(block.transpose(0, 3, 1, 2)))

        shape = (3, images.shape[1], images.shape[2])
        names = ["cube", "cylinder", "sphere", "capsule"]
        return _cached(request, "3dshapes", path, options, shape, images.shape[0], chunks, factors, "shape", names)
