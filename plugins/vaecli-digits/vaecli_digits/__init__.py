"""vaecli plugin: the dataset ``digits``, the UCI handwritten digits bundled with scikit-learn.

1797 images of 8x8 pixels with values 0..16 and labels 0..9 (E. Alpaydin and C. Kaynak, UCI
Machine Learning Repository), read by ``sklearn.datasets.load_digits`` from a file that ships
with scikit-learn, so nothing is downloaded. The copy has no train/test split; a seeded,
stratified split holds out ``test_fraction`` of each class.

Importing this module stays cheap: scikit-learn, numpy and torch are imported by the loader.
"""

from __future__ import annotations

from dataclasses import dataclass

import vaecli
from vaecli.errors import DataUnavailableError, UsageError

N_IMAGES = 1797
CLASS_NAMES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class DigitsOptions:
    """``test_fraction``: the share of each class held out for the test split (the test split
    holds round(test_fraction * 1797) images); ``seed``: the seed of the split."""

    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie between 0 and 1 (exclusive), got {self.test_fraction}")


def n_test_images(n: int, test_fraction: float) -> int:
    """Images in the test split: test_fraction * n rounded half up."""
    return int(test_fraction * n + 0.5)


def split_indices(labels, test_fraction: float, seed: int):
    """Indices ``(train, test)`` into the examples, each sorted: a stratified split.

    Each example gets its rank within its class in a seeded permutation, as a quantile
    ``(rank + 0.5) / class size``; the ``n_test_images`` examples of lowest quantile are the test
    split. So every class gives its share of the test split (within one image), and the
    total is exactly ``n_test_images(n, test_fraction)``. A pure function of its arguments.
    """
    import torch

    labels = torch.as_tensor(labels)
    n = len(labels)
    n_test = n_test_images(n, test_fraction)
    if not 0 < n_test < n:
        low, high = 0.5 / n, (n - 0.5) / n
        raise UsageError(
            f"dataset 'digits': test_fraction={test_fraction} leaves an empty split of the {n} images; "
            f"it must lie between {low:.5f} and {high:.5f}"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    shuffled = labels[order]
    quantile = torch.empty(n, dtype=torch.float64)
    for c in shuffled.unique():
        where = (shuffled == c).nonzero().squeeze(1)
        quantile[where] = (torch.arange(len(where), dtype=torch.float64) + 0.5) / len(where)
    ranked = order[torch.argsort(quantile, stable=True)]
    return ranked[n_test:].sort().values, ranked[:n_test].sort().values


def load_digits(request: vaecli.DataRequest, options: DigitsOptions) -> vaecli.DatasetSplits:
    """The 8x8 digits as uint8 ``(N, 1, 8, 8)`` images, value v in 0..16 -> round(v * 255 / 16)."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DataUnavailableError(
            "the dataset 'digits' is read from scikit-learn, which is not installed; "
            "install it with: pip install scikit-learn"
        ) from None
    import numpy as np
    import torch

    bunch = sklearn_digits()
    images = torch.from_numpy(np.rint(bunch.images * 255 / 16).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train, test = split_indices(labels, options.test_fraction, options.seed)
    return vaecli.DatasetSplits(
        train=vaecli.Split(images[train].contiguous(), labels[train]),
        test=vaecli.Split(images[test].contiguous(), labels[test]),
        class_names=list(CLASS_NAMES),
    )


@vaecli.hookimpl
def register_datasets(register):
    register(
        vaecli.DatasetSpec(
            name="digits",
            help="UCI handwritten digits (8x8 grey, 1797 images, 10 classes) bundled with scikit-learn; "
            "no download. test_fraction of each class is held out (seeded).",
            load=load_digits,
            options=DigitsOptions,
        )
    )
