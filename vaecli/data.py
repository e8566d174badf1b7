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
from .errors import VaeError
from .hookspecs import DataRequest, DatasetSplits, Split
from .plugins import Registered, registry

PREPROCESSING = {"divide_by": 255, "binarize": "none"}  # uint8 -> [0, 1] floats


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

    def describe(self) -> dict:
        """The ``data`` section of a checkpoint's metadata."""
        return {
            "dataset": {
                "name": self.name,
                "options": opts.to_json(self.options),
                "provider": self.registered.plugin.provider(),
            },
            "class_names": self.splits.class_names,
            "preprocessing": PREPROCESSING,
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


def load_dataset(
    name: str,
    option_values: Optional[dict] = None,
    data_dir: Optional[Path | str] = None,
    download: bool = True,
    provider: Optional[dict] = None,
) -> LoadedDataset:
    """Load a registered dataset by name, with its options given as strings or JSON values."""
    registered = registry().get("dataset", name, provider)
    spec = registered.spec
    options = opts.build(spec.options, option_values or {}, f"dataset '{name}'")
    request = DataRequest(Path(data_dir).expanduser() if data_dir else default_data_dir(), download)
    splits = spec.load(request, options)
    owner = f"dataset '{name}' ({registered.plugin.label})"
    _check_split(splits.train, "train", owner)
    _check_split(splits.test, "test", owner)
    if splits.train.images.shape[1:] != splits.test.images.shape[1:]:
        raise VaeError(f"{owner} returned train and test images of different shapes")
    return LoadedDataset(name, registered, options, splits)


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
