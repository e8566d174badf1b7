"""``tensor:PATH`` of rows: an (N, D) array is real vectors (floats; NaN where a value is
missing) or counts (integers), its features named x0, x1, ...; labels as for images. Read
whole (the file's size in memory), not through the image cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import UsageError
from ..hookspecs import Column, DatasetSplits, Split
from .arrays import TensorOptions, _Array, _labels
from .files import holdout


def values_of(path: Path, key: str, a: _Array):
    """An (N, D) array as float32 rows, and whether it holds counts (integers)."""
    import numpy as np
    import torch

    if a.dtype.kind not in "biuf":
        raise UsageError(f"tensor {path}: {key} has dtype {a.dtype}; rows must be numbers (floats, or integer counts)")
    if 0 in a.shape:
        raise UsageError(f"tensor {path}: {key} holds no rows (shape {a.shape})")
    values = a.whole()
    counts = values.dtype.kind in "biu"
    if counts and int(values.min()) < 0:
        raise UsageError(f"tensor {path}: {key} holds {int(values.min())}; integer rows are counts, from 0")
    if not counts and np.isinf(values).any():
        raise UsageError(f"tensor {path}: {key} holds infinite values (NaN marks a missing value)")
    return torch.from_numpy(np.array(values, dtype=np.float32)), counts


def rows(path: Path, options: TensorOptions, array: Callable, pair: Optional[tuple], rest: Any) -> DatasetSplits:
    """The splits of an (N, D) array (see the module's text)."""
    held_out = None
    if pair is not None:
        (train, c1), (test, c2) = (values_of(path, k, array(k)) for k in pair)
        if train.shape[1] != test.shape[1]:
            raise UsageError(f"tensor {path}: {pair[0]} has {train.shape[1]} features but {pair[1]} {test.shape[1]}")
        counts = c1 and c2
        labels = (
            [_labels(array(k).whole(), k, len(x), path) for k, x in zip(rest, (train, test))] if rest else [None, None]
        )
    else:
        everything, counts = values_of(path, rest[0], array(rest[0]))
        all_labels = None if rest[1] is None else _labels(array(rest[1]).whole(), rest[1], len(everything), path)
        held_out = holdout(len(everything), options.test_fraction, options.seed, f"tensor {path}")
        train, test = everything[~held_out], everything[held_out]
        labels = [None if all_labels is None else all_labels[r] for r in (~held_out, held_out)]
    kind, type_ = ("counts", "count") if counts else ("vector", "numeric")
    columns = [Column(f"x{j}", type_) for j in range(train.shape[1])]
    class_names = None
    if labels[0] is not None and labels[1] is not None:
        top = max(int(y.max()) for y in (labels[0], labels[1]) if len(y))
        class_names = [str(k) for k in range(top + 1)]
    return DatasetSplits(
        Split(train, labels[0]),
        Split(test, labels[1]),
        class_names=class_names,
        columns=columns,
        kind=kind,
        held_out=held_out,
    )
