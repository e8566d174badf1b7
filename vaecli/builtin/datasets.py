"""Built-in datasets: ``shapes`` (drawn here, no download) and ``mnist`` (through torchvision)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataUnavailableError
from ..hookspecs import DataRequest, DatasetSpec, DatasetSplits, NoOptions, Split, hookimpl

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


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

    from .shapes import SHAPES, draw

    splits = []
    for n, seed in ((options.n_train, options.seed), (options.n_test, options.seed + 1)):
        images, labels, factors = draw(n, options.size, torch.Generator().manual_seed(seed))
        splits.append(Split(images, labels, factors))
    return DatasetSplits(train=splits[0], test=splits[1], class_names=list(SHAPES))


def _mnist_raw(data_dir: Path) -> Path:
    return data_dir / "MNIST" / "raw"


def load_mnist(request: DataRequest, options) -> DatasetSplits:
    raw = _mnist_raw(request.data_dir)
    missing = [f for f in MNIST_FILES if not (raw / f).exists()]
    if missing and not request.download:
        raise DataUnavailableError(
            f"MNIST files not found in {raw} (missing {', '.join(missing)}) and --no-download was "
            f"given; pass --data-dir to the folder that holds MNIST/raw, or allow the download"
        )
    from torchvision.datasets import MNIST

    try:
        train = MNIST(str(request.data_dir), train=True, download=request.download)
        test = MNIST(str(request.data_dir), train=False, download=request.download)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        raise DataUnavailableError(
            f"could not load or download MNIST into {raw} ({str(exc).strip() or type(exc).__name__}); "
            f"put the four IDX files there or pass --data-dir to where they are"
        ) from None
    return DatasetSplits(
        train=Split(train.data.unsqueeze(1).contiguous(), train.targets.long()),
        test=Split(test.data.unsqueeze(1).contiguous(), test.targets.long()),
        class_names=[str(d) for d in range(10)],
    )


@hookimpl
def register_datasets(register):
    register(DatasetSpec(
        name="shapes",
        help="dSprites-style squares, ellipses and hearts (32x32, drawn from a seed; no download).",
        load=load_shapes,
        options=ShapesOptions,
    ))
    register(DatasetSpec(
        name="mnist",
        help="MNIST handwritten digits (28x28 grey) through torchvision; downloads when missing.",
        load=load_mnist,
        options=NoOptions,
    ))
