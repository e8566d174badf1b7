"""Datasets that papers report on, each read from its official files in ``--data-dir``:

- ``binarized-mnist``: the fixed binarization of MNIST (Larochelle & Murray 2011), the three
  ``.amat`` files, 50,000 / 10,000 / 10,000 images;
- ``omniglot``: the 28x28 Omniglot of the IWAE paper (Burda et al. 2015), ``chardata.mat``;
- ``svhn``: street-view house numbers, torchvision's ``train_32x32.mat`` and ``test_32x32.mat``;
- ``cifar100``: CIFAR-100, its binary release (nothing in vaecli unpickles);
- ``celeba`` is in ``celeba.py``.

A missing file is one line naming it and where it comes from; where the source allows it and
``--no-download`` is not given, it is downloaded. The ``.mat`` files need scipy
(``pip install "vaecli[datasets]"``). Heavy modules are imported by the loaders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataUnavailableError, UsageError
from ..hookspecs import DataRequest, DatasetSplits, Split

AMAT_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{split}.amat"
OMNIGLOT_URL = "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/chardata.mat"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"
CIFAR100_MD5 = "03b5dce01913d631647c71ecec9e9cb8"
CIFAR100_RECORD = 2 + 3 * 32 * 32  # coarse label, fine label, then the red, green and blue planes


def fetch(request: DataRequest, where: Path, files: tuple, title: str, source: str, download=None) -> None:
    """Make sure ``files`` are in ``where``: download them with ``download()`` when the user
    allows it and there is a way, else one line naming what is missing and where it comes from."""
    missing = [f for f in files if not (where / f).exists()]
    if not missing:
        return
    if download is not None and request.download:
        try:
            where.mkdir(parents=True, exist_ok=True)
            download()
        except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
            raise DataUnavailableError(
                f"could not download {title} into {where} ({str(exc).strip() or type(exc).__name__}); "
                f"get {', '.join(missing)} from {source} and put them there, or pass --data-dir"
            ) from None
        missing = [f for f in files if not (where / f).exists()]
        if not missing:
            return
    how = "" if download is None else (" (--no-download was given)" if not request.download else "")
    raise DataUnavailableError(
        f"{title}: {', '.join(missing)} not found in {where}{how}; they come from {source}: put them there "
        f"or pass --data-dir to the folder that holds them"
    )


def loadmat(path: Path, title: str) -> dict:
    """A MATLAB file's arrays, through scipy (an optional dependency)."""
    try:
        from scipy.io import loadmat as scipy_loadmat
    except ImportError:
        raise UsageError(f'{title} is a MATLAB file; reading it needs scipy: pip install "vaecli[datasets]"') from None
    try:
        return scipy_loadmat(str(path))
    except (OSError, ValueError, TypeError, NotImplementedError) as exc:
        raise DataUnavailableError(f"{path} is not a readable MATLAB file ({exc}); delete it to get it again") from None


def _damaged(path: Path, why: str) -> DataUnavailableError:
    return DataUnavailableError(f"{path}: {why}; it is damaged or not the official file: delete it to get it again")


# -- binarized-mnist ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BinarizedMnistOptions:
    """``train``: ``train`` (the 50,000 images of the published split) or ``train+valid`` (all
    60,000, as some papers train). The test split is the 10,000 of ``binarized_mnist_test.amat``."""

    train: str = "train"

    def __post_init__(self) -> None:
        if self.train not in ("train", "train+valid"):
            raise ValueError(f"train must be train or train+valid, got {self.train!r}")


def read_amat(path: Path):
    """A ``.amat`` file of the fixed binarization: one image a line, 784 values 0 or 1 separated
    by spaces -> uint8 ``(N, 1, 28, 28)`` of 0 and 255."""
    import numpy as np
    import torch

    raw = np.fromfile(path, dtype=np.uint8)
    digits = raw[(raw == ord("0")) | (raw == ord("1"))]
    lines = int(np.count_nonzero(raw == ord("\n")))
    other = np.setdiff1d(np.unique(raw), np.frombuffer(b"01 \n\r\t", dtype=np.uint8))
    if other.size or digits.size % 784 or digits.size // 784 not in (lines, lines + 1):
        raise _damaged(path, "not lines of 784 zeros and ones")
    images = torch.from_numpy((digits - ord("0")) * np.uint8(255)).view(-1, 1, 28, 28)
    return images.contiguous()


def load_binarized_mnist(request: DataRequest, options: BinarizedMnistOptions) -> DatasetSplits:
    import torch

    where = request.data_dir / "binarized_mnist"
    names = {s: f"binarized_mnist_{s}.amat" for s in ("train", "valid", "test")}

    def download() -> None:
        from torchvision.datasets.utils import download_url

        for split, name in names.items():
            if not (where / name).exists():
                download_url(AMAT_URL.format(split=split), str(where), name)

    fetch(
        request, where, tuple(names.values()), "binarized MNIST", AMAT_URL.format(split="{train,valid,test}"), download
    )
    parts = {s: read_amat(where / name) for s, name in names.items()}
    train = torch.cat([parts["train"], parts["valid"]]) if options.train == "train+valid" else parts["train"]
    notes = (
        []
        if options.train == "train+valid"
        else [
            f"binarized-mnist: the {len(parts['valid'])} validation images are left out "
            f"(--dataset-option train=train+valid trains on them too)"
        ]
    )
    return DatasetSplits(train=Split(train), test=Split(parts["test"]), notes=notes)


# -- omniglot -----------------------------------------------------------------------------------


def _omniglot_split(mat: dict, images_key: str, target_key: str, path: Path) -> Split:
    """IWAE's layout: ``images_key`` holds one image a column, 784 values in [0, 1] in column-major
    (Fortran) order; ``target_key`` the one-hot alphabet of each."""
    import numpy as np
    import torch

    data = np.asarray(mat.get(images_key))
    if data.ndim != 2 or data.shape[0] != 784 or not np.issubdtype(data.dtype, np.number):
        raise _damaged(path, f"{images_key} is not 784 x N pixel values")
    data = data.astype(np.float64)
    if data.size and not (np.isfinite(data).all() and data.min() >= 0 and data.max() <= 1):
        raise _damaged(path, f"{images_key} holds values outside [0, 1]")
    images = np.rint(data.T.reshape(-1, 28, 28).transpose(0, 2, 1) * 255).astype(np.uint8)  # Fortran order
    labels = None
    target = mat.get(target_key)
    if target is not None and np.asarray(target).shape == (np.asarray(target).shape[0], data.shape[1]):
        labels = torch.from_numpy(np.asarray(target).argmax(0).astype(np.int64))
    return Split(torch.from_numpy(images).unsqueeze(1).contiguous(), labels)


def load_omniglot(request: DataRequest, options: Any) -> DatasetSplits:
    where = request.data_dir / "omniglot"

    def download() -> None:
        from torchvision.datasets.utils import download_url

        download_url(OMNIGLOT_URL, str(where), "chardata.mat")

    fetch(request, where, ("chardata.mat",), "Omniglot (IWAE's 28x28 split)", OMNIGLOT_URL, download)
    mat = loadmat(where / "chardata.mat", "Omniglot's chardata.mat")
    train = _omniglot_split(mat, "data", "target", where / "chardata.mat")
    test = _omniglot_split(mat, "testdata", "testtarget", where / "chardata.mat")
    names = None
    if train.labels is not None and test.labels is not None:
        names = [f"alphabet {i + 1}" for i in range(int(max(train.labels.max(), test.labels.max())) + 1)]
    else:
        train.labels = test.labels = None
    return DatasetSplits(train=train, test=test, class_names=names)


# -- svhn ---------------------------------------------------------------------------------------


def _svhn_split(path: Path) -> Split:
    """torchvision's SVHN file: ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1) with 10 for the digit 0."""
    import numpy as np
    import torch

    mat = loadmat(path, f"SVHN's {path.name}")
    x, y = np.asarray(mat.get("X")), np.asarray(mat.get("y"))
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise _damaged(path, "X is not 32 x 32 x 3 x N bytes")
    y = y.reshape(-1).astype(np.int64)
    if y.shape != (x.shape[3],) or (y.size and (y.min() < 1 or y.max() > 10)):
        raise _damaged(path, "y does not hold one digit 1-10 per image")
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
    return Split(images, torch.from_numpy(y % 10))


def load_svhn(request: DataRequest, options: Any) -> DatasetSplits:
    files = ("train_32x32.mat", "test_32x32.mat")

    def download() -> None:
        import torchvision.datasets

        for split in ("train", "test"):
            torchvision.datasets.SVHN(str(request.data_dir), split=split, download=True)

    fetch(request, request.data_dir, files, "SVHN", "http://ufldl.stanford.edu/housenumbers/", download)
    return DatasetSplits(
        train=_svhn_split(request.data_dir / files[0]),
        test=_svhn_split(request.data_dir / files[1]),
        class_names=[str(d) for d in range(10)],
    )


# -- cifar100 -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cifar100Options:
    """``labels``: ``fine`` (the 100 classes) or ``coarse`` (the 20 superclasses)."""

    labels: str = "fine"

    def __post_init__(self) -> None:
        if self.labels not in ("fine", "coarse"):
            raise ValueError(f"labels must be fine or coarse, got {self.labels!r}")


def _cifar100_split(path: Path, coarse: bool) -> Split:
    import numpy as np
    import torch

    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR100_RECORD:
        raise _damaged(path, f"not a whole number of {CIFAR100_RECORD}-byte CIFAR-100 records")
    records = torch.from_numpy(raw.reshape(-1, CIFAR100_RECORD))
    return Split(records[:, 2:].reshape(-1, 3, 32, 32).contiguous(), records[:, 0 if coarse else 1].long())


def load_cifar100(request: DataRequest, options: Cifar100Options) -> DatasetSplits:
    where = request.data_dir / "cifar-100-binary"
    coarse = options.labels == "coarse"

    def download() -> None:
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(CIFAR100_URL, str(request.data_dir), md5=CIFAR100_MD5)

    fetch(request, where, ("train.bin", "test.bin"), "CIFAR-100", CIFAR100_URL + " (unpacked)", download)
    splits = [_cifar100_split(where / name, coarse) for name in ("train.bin", "test.bin")]
    k = 20 if coarse else 100
    if any(len(s.labels) and int(s.labels.max()) >= k for s in splits if s.labels is not None):
        raise _damaged(where / "train.bin", f"labels outside the {k} classes")
    listed = where / f"{options.labels}_label_names.txt"
    names = [line.strip() for line in listed.read_text().splitlines() if line.strip()] if listed.exists() else []
    return DatasetSplits(train=splits[0], test=splits[1], class_names=names if len(names) == k else None)
