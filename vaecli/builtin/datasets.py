"""Built-in datasets: ``shapes`` (drawn here, no download); the torchvision family ``mnist``,
``fashion-mnist``, ``kmnist``, ``emnist`` (letters) and ``cifar10``; the data sets papers report
on (``papers.py``, ``celeba.py``); and the user's own images, ``folder:PATH`` and ``tensor:PATH``
(``files.py``, ``arrays.py``).

Importing this module stays cheap: torch, torchvision, numpy and PIL are imported by the
loaders when they are called.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from ..errors import DataUnavailableError
from ..hookspecs import DataRequest, DatasetSpec, DatasetSplits, NoOptions, Split, hookimpl
from ..options import seed64
from .arrays import TensorOptions, load_tensor
from .celeba import CelebAOptions, load_celeba
from .factor_data import FactorDataOptions, load_3dshapes, load_dsprites
from .files import FolderOptions, load_folder
from .papers import (
    BinarizedMnistOptions,
    Cifar100Options,
    load_binarized_mnist,
    load_cifar100,
    load_omniglot,
    load_svhn,
)
from .tables import TableOptions, load_table

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
EMNIST_SPLIT = "letters"
EMNIST_FILES = tuple(
    f"emnist-{EMNIST_SPLIT}-{split}-{kind}"
    for split in ("train", "test")
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
)
CIFAR10_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)
# The binary release of CIFAR-10 (raw bytes, read here); torchvision's class reads the Python
# release, whose files are pickles, and nothing in vaecli unpickles.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_RECORD = 1 + 3 * 32 * 32  # a label byte, then the red, green and blue planes, row by row


@dataclass(frozen=True)
class ShapesOptions:
    """``n_train``/``n_test``: images per split; ``size``: image side in pixels; ``seed``: the
    drawing seed (the test split uses seed + 1, so it does not change with n_train)."""

    n_train: int = 20000
    n_test: int = 2000
    size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_train < 1 or self.n_test < 1:
            raise ValueError("n_train and n_test must be at least 1")
        if not 8 <= self.size <= 256:
            raise ValueError(f"size must be between 8 and 256, got {self.size}")


def load_shapes(request: DataRequest, options: ShapesOptions) -> DatasetSplits:
    import torch

    from ..device import require_memory
    from .shapes import SHAPES, draw

    n = options.n_train + options.n_test
    require_memory(  # the images (and the copy training makes), labels and factors
        n * (2 * options.size**2 + 64),
        f"shapes: drawing {n:,} images of {options.size}x{options.size}",
        "lower n_train or n_test (--data-option)",
        torch.device("cpu"),
    )
    splits = []
    for n, seed in ((options.n_train, options.seed), (options.n_test, seed64(options.seed + 1))):
        images, labels, factors = draw(n, options.size, torch.Generator().manual_seed(seed))
        splits.append(Split(images, labels, factors))
    return DatasetSplits(train=splits[0], test=splits[1], class_names=list(SHAPES))


# -- the torchvision family: one table, one loader ------------------------------------------


@dataclass(frozen=True)
class Torchvision:
    """A dataset that torchvision reads (and downloads) into ``--data-dir``; CIFAR-10 is read
    here from its binary release, which torchvision only downloads.

    ``folder``: where torchvision keeps its files below the data dir; ``files``: the files it
    needs there (checked before torchvision is asked, so that ``--no-download`` can say what is
    missing); ``layout``: how its arrays become ``(N, C, H, W)`` uint8 and 0-based labels.
    """

    name: str
    title: str  # as messages name it
    torchvision_class: str
    folder: str
    files: tuple
    class_names: tuple
    files_hint: str  # "put {files_hint} there"
    help: str
    layout: str = "idx"  # "idx" (N, H, W), "emnist" (transposed, labels from 1), "cifar" (binary records)
    split: str = ""  # EMNIST's split argument


TORCHVISION = (
    Torchvision(
        "mnist",
        "MNIST",
        "MNIST",
        "MNIST/raw",
        MNIST_FILES,
        tuple(str(d) for d in range(10)),
        "the four IDX files",
        "MNIST handwritten digits (28x28 grey) through torchvision; downloads when missing.",
    ),
    Torchvision(
        "fashion-mnist",
        "Fashion-MNIST",
        "FashionMNIST",
        "FashionMNIST/raw",
        MNIST_FILES,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "the four IDX files",
        "Fashion-MNIST clothes (28x28 grey, 10 classes) through torchvision; downloads when missing.",
    ),
    Torchvision(
        "kmnist",
        "KMNIST",
        "KMNIST",
        "KMNIST/raw",
        MNIST_FILES,
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        "the four IDX files",
        "Kuzushiji-MNIST cursive Japanese (28x28 grey, 10 classes) through torchvision; downloads when missing.",
    ),
    Torchvision(
        "emnist",
        "EMNIST letters",
        "EMNIST",
        "EMNIST/raw",
        EMNIST_FILES,
        tuple(string.ascii_lowercase),
        f"the four emnist-{EMNIST_SPLIT}-* IDX files (unzipped)",
        "EMNIST handwritten letters a-z (28x28 grey, 26 classes) through torchvision; downloads "
        "when missing (a 560 MB archive).",
        layout="emnist",
        split=EMNIST_SPLIT,
    ),
    Torchvision(
        "cifar10",
        "CIFAR-10",
        "",
        "cifar-10-batches-bin",
        CIFAR10_FILES,
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        "the unpacked cifar-10-binary.tar.gz (data_batch_1.bin to 5, test_batch.bin)",
        "CIFAR-10 photos (32x32 RGB, 10 classes), the binary release; downloads when missing (163 MB).",
        layout="cifar",
    ),
)


def read_idx(path, ndim: int):
    """An IDX file of unsigned bytes (the MNIST format: a 4-byte magic, big-endian int32 sizes,
    then the bytes) as a uint8 tensor of those sizes, read straight into the tensor's memory:
    loading takes the data's size in memory once, and no more."""
    import struct

    import torch

    with open(path, "rb") as f:
        magic = f.read(4)
        if len(magic) < 4 or magic[:3] != b"\x00\x00\x08" or magic[3] != ndim:
            raise ValueError(f"{path.name} is not an IDX file of {ndim}-dimensional unsigned bytes")
        header = f.read(4 * ndim)
        if len(header) < 4 * ndim:
            raise ValueError(f"{path.name} ends inside its header")
        sizes = struct.unpack(f">{ndim}I", header)
        count = 1
        for size in sizes:
            count *= size
        stat = path.stat().st_size
        if stat != 4 + 4 * ndim + count:
            raise ValueError(f"{path.name} holds {stat - 4 - 4 * ndim} bytes of data, its header says {count}")
        buffer = bytearray(count)
        if f.readinto(buffer) != count:
            raise ValueError(f"{path.name} is shorter than its header says")
    if not count:
        return torch.zeros(sizes, dtype=torch.uint8)
    return torch.frombuffer(buffer, dtype=torch.uint8).view(sizes)


def _to_split(data, targets, layout: str) -> Split:
    """IDX arrays -> ``Split``: uint8 ``(N, C, H, W)``, int64 labels from 0."""
    if layout == "emnist":  # stored transposed (W, H), labels 1..26
        images = data.transpose(1, 2).unsqueeze(1)
        labels = targets.long() - 1
    else:
        images = data.unsqueeze(1)
        labels = targets.long()
    return Split(images.contiguous(), labels)


def load_torchvision(request: DataRequest, options, table: Torchvision) -> DatasetSplits:
    """Any dataset of the ``TORCHVISION`` table."""
    where = request.data_dir / table.folder
    missing = [f for f in table.files if not (where / f).exists()]
    if missing and not request.download:
        raise DataUnavailableError(
            f"{table.title} files not found in {where} (missing {', '.join(missing)}) and --no-download was "
            f"given; pass --data-dir to the folder that holds {table.folder}, or allow the download"
        )
    try:
        if table.layout == "cifar":
            if missing:
                from torchvision.datasets.utils import download_and_extract_archive

                download_and_extract_archive(CIFAR10_URL, str(request.data_dir), md5=CIFAR10_MD5)
            splits = [_read_cifar(where, table.files[:5]), _read_cifar(where, table.files[5:])]
        else:
            if missing:  # torchvision downloads and unpacks them
                import torchvision.datasets

                cls = getattr(torchvision.datasets, table.torchvision_class)
                extra = {"split": table.split} if table.split else {}
                for train in (True, False):
                    cls(str(request.data_dir), train=train, download=True, **extra)
            # read here: one copy in memory, and no torchvision import when the files are there
            splits = [
                _to_split(read_idx(where / images, 3), read_idx(where / labels, 1), table.layout)
                for images, labels in (table.files[:2], table.files[2:])
            ]
    except (OSError, RuntimeError, ValueError, TypeError, AssertionError, EOFError) as exc:
        # URLError is an OSError; damaged IDX files fail asserts
        raise DataUnavailableError(
            f"could not load or download {table.title} into {where} ({str(exc).strip() or type(exc).__name__}); "
            f"put {table.files_hint} there or pass --data-dir to where they are"
        ) from None
    k = len(table.class_names)
    for split in splits:
        if (
            split.labels is not None
            and len(split.labels)
            and not (0 <= int(split.labels.min()) and int(split.labels.max()) < k)
        ):
            raise DataUnavailableError(
                f"{table.title} files in {where} hold labels outside the {k} classes; they are not "
                f"{table.title} or are damaged: delete them to download them again"
            )
    return DatasetSplits(train=splits[0], test=splits[1], class_names=list(table.class_names))


def _read_cifar(folder, files) -> Split:
    """CIFAR-10 binary batches: records of a label byte and 3072 bytes, the red, green and blue
    32x32 planes (so already ``(C, H, W)``)."""
    import numpy as np
    import torch

    records = []
    for name in files:
        raw = np.fromfile(folder / name, dtype=np.uint8)
        if raw.size == 0 or raw.size % CIFAR10_RECORD:
            raise ValueError(f"{name} is not a whole number of {CIFAR10_RECORD}-byte CIFAR-10 records")
        records.append(raw.reshape(-1, CIFAR10_RECORD))
    data = torch.from_numpy(np.concatenate(records))
    return Split(data[:, 1:].reshape(-1, 3, 32, 32).contiguous(), data[:, 0].long())


def _loader(table: Torchvision):
    def load(request: DataRequest, options) -> DatasetSplits:
        return load_torchvision(request, options, table)

    load.__name__ = f"load_{table.name.replace('-', '_')}"
    load.__doc__ = f"{table.title} into ``--data-dir`` (downloaded through torchvision)."
    return load


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name="shapes",
            help="dSprites-style squares, ellipses and hearts (32x32, drawn from a seed; no download).",
            load=load_shapes,
            options=ShapesOptions,
        )
    )
    for table in TORCHVISION:
        register(
            DatasetSpec(
                name=table.name,
                help=table.help,
                load=_loader(table),
                options=NoOptions,
            )
        )
    for name, help, load, options in (
        (
            "binarized-mnist",
            "MNIST with the fixed binarization of Larochelle & Murray 2011 (the three .amat files; "
            "50k/10k/10k), the data of the IWAE, VampPrior and pythae NLL tables.",
            load_binarized_mnist,
            BinarizedMnistOptions,
        ),
        (
            "celeba",
            "CelebA aligned faces (the zip or folder, partition and attributes), the centre 148 resized to 64 "
            "(or 128); the 40 attributes as factors, one as the label with label=NAME.",
            load_celeba,
            CelebAOptions,
        ),
        (
            "dsprites",
            "dSprites (Matthey et al. 2017): 737,280 64x64 sprites, every combination of shape, scale, "
            "orientation, x and y, with those factors; the official .npz in DIR/dsprites (no download).",
            load_dsprites,
            FactorDataOptions,
        ),
        (
            "3dshapes",
            "3D Shapes (Burgess & Kim 2018): 480,000 64x64 RGB scenes, every combination of three hues, scale, "
            "shape and orientation, with those factors; the official .h5 in DIR/3dshapes (no download); needs h5py.",
            load_3dshapes,
            FactorDataOptions,
        ),
        (
            "omniglot",
            "Omniglot 28x28 as in the IWAE paper (chardata.mat, 24,345 / 8,070, 50 alphabets); downloads "
            "when missing; needs scipy.",
            load_omniglot,
            NoOptions,
        ),
        (
            "svhn",
            "SVHN house numbers (32x32 RGB, torchvision's train_32x32.mat and test_32x32.mat); downloads when "
            "missing; needs scipy.",
            load_svhn,
            NoOptions,
        ),
        (
            "cifar100",
            "CIFAR-100 photos (32x32 RGB, 100 classes or labels=coarse for 20), the binary release; "
            "downloads when missing (161 MB).",
            load_cifar100,
            Cifar100Options,
        ),
    ):
        register(DatasetSpec(name=name, help=help, load=load, options=options))
    register(
        DatasetSpec(
            name="folder",
            help="Your images: folder:PATH, read recursively (subfolders are classes; train/ and test/ "
            "subfolders are the splits, else test_fraction is held out).",
            load=load_folder,
            options=FolderOptions,
            argument="path",
        )
    )
    register(
        DatasetSpec(
            name="tensor",
            help="Your arrays: tensor:PATH, a .npy, .npz or .safetensors file of images (uint8, or floats in "
            "[0, 1]; NCHW, NHWC or NHW) or of rows (N, D): floats are vectors, integers counts; optional labels.",
            load=load_tensor,
            options=TensorOptions,
            argument="path",
        )
    )
    register(
        DatasetSpec(
            name="table",
            help="Your table: table:PATH, a CSV (any separator, header detected) or Parquet file of named "
            "columns, numeric, categorical, binary or count (inferred, or set: categorical=a,b); label=COLUMN.",
            load=load_table,
            options=TableOptions,
            argument="path",
        )
    )
