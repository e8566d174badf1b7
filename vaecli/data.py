"""Datasets by name, through the plugin registry, held as one uint8 tensor on the training device.

Each epoch draws batches through a permutation index on that device and converts them
(scaling to [0, 1]) per batch on the device: no DataLoader, no worker processes and no
per-sample Python for datasets that fit in memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from . import datacache, kinds
from . import options as opts
from .errors import UsageError, VaeError
from .hookspecs import Column, DataRequest, DatasetSplits, Split
from .images import BINARIZE, BINARIZE_SEEDS, binarize, to_unit
from .plugins import Registered, registry

__all__ = [
    "load_dataset",
    "split_dataset_name",
    "default_data_dir",
    "LoadedDataset",
    "preprocessing",
    "binarize",
    "to_unit",
    "BINARIZE",
    "BINARIZE_SEEDS",
]


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

    @property
    def kind(self) -> str:
        """image, or the kind of rows (vector, counts, table)."""
        return "image" if self.splits.columns is None else self.splits.kind

    def describe(self) -> str:
        """What one example is: ``images of 1x28x28``, ``rows of 15 columns (table)``."""
        if self.kind == "image":
            return f"images of {'x'.join(map(str, self.input_shape))}"
        return f"rows of {self.input_shape[0]} columns ({self.kind})"

    def learn_layout(self) -> Optional[kinds.Layout]:
        """The layout of rows, learned on the training split (None for images)."""
        if self.splits.columns is None:
            return None
        return kinds.learn(self.kind, list(self.splits.columns), self.splits.train.images)

    def check_same(self, meta: dict, who: str) -> None:
        """Refuse data other than a checkpoint's (``meta``): counts and image shape (rows: the
        columns), then the content's sha256 (files written before vaecli 0.7 record none)."""
        recorded = meta["data"]
        layout = kinds.layout_of(meta["model"])
        shape = list(meta["model"]["input_shape"]) if layout is None else [len(layout.columns)]
        then = (recorded.get("n_train"), recorded.get("n_test"), shape)
        now = (len(self.splits.train), len(self.splits.test), list(self.input_shape))
        if layout is not None and now == then and [c.name for c in self.splits.columns or []] != layout.names:
            raise UsageError(f"{who}: the table's columns are not the ones it was trained on")
        if then != now:
            raise UsageError(
                f"{who}: the dataset is not the one it was trained on "
                f"({then[0]} train / {then[1]} test images of {'x'.join(map(str, then[2]))} then, "
                f"{now[0]} / {now[1]} of {'x'.join(map(str, now[2]))} now)"
            )
        then_sha, now_sha = recorded.get("sha256"), datacache.digest(self.splits)
        if then_sha is not None and then_sha != now_sha:
            raise UsageError(
                f"{who}: the dataset's content changed since it was trained on (sha256 {then_sha[:12]} "
                f"then, {now_sha[:12]} now; same counts and shapes); restore the data it was trained "
                f"on, or train a new model"
            )

    def class_labels(self, conditional: bool, section: dict):
        """The labels a class-conditional model is conditioned on (train, test), with
        ``num_classes`` recorded in the model ``section``; (None, None) for other models."""
        if not conditional:
            return None, None
        train, test = self.splits.train.labels, self.splits.test.labels
        if train is None or test is None:
            raise UsageError(
                f"--model {section.get('kind')} is class-conditional: it needs class labels, and dataset '{self.name}' has none"
            )
        names = self.splits.class_names
        k = len(names) if names else int(max(train.max(), test.max())) + 1
        if min(int(train.min()), int(test.min())) < 0 or max(int(train.max()), int(test.max())) >= k:
            raise VaeError(f"dataset '{self.name}' has labels outside 0..{k - 1}")
        section["num_classes"] = k
        return train.long(), test.long()

    def section(self, binarize: str = "none") -> dict:
        """The ``data`` section of a checkpoint's metadata."""
        return {
            "dataset": {
                "name": self.name,
                "options": opts.to_json(self.options),
                "provider": self.registered.plugin.provider(),
            },
            "class_names": self.splits.class_names,
            "kind": self.kind,
            "preprocessing": {"divide_by": 255, "binarize": binarize}  # uint8 -> [0, 1] floats
            if self.kind == "image"
            else {"rows": "numeric columns standardised on the train split (model.layout)"},
            "n_train": len(self.splits.train),
            "n_test": len(self.splits.test),
            "sha256": datacache.digest(self.splits),
        }


def _check_rows(splits: DatasetSplits, owner: str) -> None:
    columns = splits.columns or []
    if splits.kind not in kinds.KINDS[1:]:
        raise VaeError(f"{owner} returned rows of kind {splits.kind!r}; rows are one of {', '.join(kinds.KINDS[1:])}")
    if not columns or not all(isinstance(c, Column) and c.type in kinds.COLUMN_TYPES for c in columns):
        raise VaeError(f"{owner} returned rows without a list of Column of types {', '.join(kinds.COLUMN_TYPES)}")
    if len({c.name for c in columns}) != len(columns):
        raise VaeError(f"{owner} returned two columns of one name")
    for which in ("train", "test"):
        split = getattr(splits, which)
        x = split.images
        if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() != 2 or x.shape[1] != len(columns):
            raise VaeError(
                f"{owner} returned a bad {which} split: rows must be a float tensor (N, {len(columns)}), one value per column"
            )
        if len(x) == 0:
            raise UsageError(f"{owner}: the {which} split holds no rows")
        if split.labels is not None and tuple(split.labels.shape) != (x.shape[0],):
            raise VaeError(
                f"{owner} returned {which} labels of shape {tuple(split.labels.shape)} for {x.shape[0]} rows"
            )


def _check_split(split: Split, which: str, owner: str) -> None:
    images = split.images
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4 or len(images) == 0:
        raise VaeError(f"{owner} returned a bad {which} split: images must be a non-empty uint8 tensor (N, C, H, W)")
    if split.labels is not None and tuple(split.labels.shape) != (images.shape[0],):
        raise VaeError(
            f"{owner} returned {which} labels of shape {tuple(split.labels.shape)} for {images.shape[0]} images"
        )


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
        raise UsageError(
            f"dataset '{name}': {clash[0]} is given twice ({name}:{from_argument[clash[0]]} "
            f"and --dataset-option {clash[0]}={values[clash[0]]})"
        )
    values.update(from_argument)
    options = opts.build(spec.options, values, f"dataset '{name}'")
    request = DataRequest(Path(data_dir).expanduser() if data_dir else default_data_dir(), download)
    splits = spec.load(request, options)
    owner = f"dataset '{name}' ({registered.plugin.label})"
    if getattr(splits, "columns", None) is not None:
        _check_rows(splits, owner)
        return LoadedDataset(name, registered, options, splits)
    _check_split(splits.train, "train", owner)
    _check_split(splits.test, "test", owner)
    if splits.train.images.shape[1:] != splits.test.images.shape[1:]:
        raise VaeError(f"{owner} returned train and test images of different shapes")
    return LoadedDataset(name, registered, options, splits)


def preprocessing(meta: dict) -> str:
    """The binarization a checkpoint's model was trained with: none, static or dynamic."""
    return meta.get("data", {}).get("preprocessing", {}).get("binarize", "none")
