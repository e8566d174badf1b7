"""``vae train-scorer``: a small classifier trained on a labelled split, whose penultimate layer
is the feature network of ``vae evaluate --fid --scorer FILE`` where no Inception weights are at
hand (MNIST-like data, fully offline). Its FID is comparable only with FIDs of the same scorer
file, never with Inception FIDs of papers; the scores say so.

The file is a safetensors file: the network's tensors and, under ``vaecli_scorer``, JSON that
says what it was trained on, its input shape and its test accuracy."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from . import datacache
from .checkpoint import atomic_write
from .data import load_dataset
from .errors import CheckpointError, UsageError
from .images import to_unit
from .scores import FeatureNet, module_net

__all__ = ["Scorer", "train", "load", "KEY"]

KEY = "vaecli_scorer"
FEATURES = 128


class Scorer(nn.Module):
    """Two 3x3 convolutions (32, 64 channels), each with ReLU and 2x2 max-pooling, a
    ``FEATURES``-wide ReLU layer (the features), a linear classifier."""

    def __init__(self, input_shape: tuple, classes: int) -> None:
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * (h // 4) * (w // 4), FEATURES),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train(
    dataset: str,
    out: Path,
    *,
    options: Optional[dict] = None,
    data_dir: Optional[str] = None,
    download: bool = True,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    progress: Optional[Callable[[int, int, int], None]] = None,
) -> dict:
    """Train a scorer on the labelled train split of ``dataset`` and write it to ``out``;
    returns its description (with ``test_accuracy``). ``progress(epoch, done, total)``."""
    data = load_dataset(dataset, options, data_dir, download)
    train_split, test_split = data.splits.train, data.splits.test
    if train_split.labels is None or test_split.labels is None:
        raise UsageError(f"dataset '{dataset}' has no class labels to train a scorer on")
    c, h, w = data.input_shape
    if h < 4 or w < 4:
        raise UsageError(f"a scorer needs images of at least 4x4 pixels, not {h}x{w}")
    classes = int(max(int(train_split.labels.max()), int(test_split.labels.max())) + 1)
    torch.manual_seed(seed)
    net = Scorer((c, h, w), classes).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n, started = len(train_split), time.perf_counter()
    steps = math.ceil(n / batch_size)
    for epoch in range(1, epochs + 1):
        net.train()
        for i, idx in enumerate(torch.randperm(n, generator=gen).split(batch_size), start=1):
            x = to_unit(datacache.gather(train_split.images, idx)).to(device)
            loss = nn.functional.cross_entropy(net(x), train_split.labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if progress is not None:
                progress(epoch, i, steps)
    accuracy = _accuracy(net, test_split, device)
    section = data.section()
    info = {
        "dataset": data.name,
        "dataset_options": section["dataset"]["options"],
        "sha256": section["sha256"],
        "input_shape": [c, h, w],
        "classes": classes,
        "class_names": list(data.splits.class_names or []),
        "features": FEATURES,
        "epochs": epochs,
        "test_accuracy": accuracy,
        "seconds": time.perf_counter() - started,
    }
    save(net, info, out)
    return info


@torch.inference_mode()
def _accuracy(net: Scorer, split, device, batch: int = 1000) -> float:
    net.eval()
    right = 0
    for start in range(0, len(split), batch):
        idx = torch.arange(start, min(len(split), start + batch))
        x = to_unit(datacache.gather(split.images, idx)).to(device)
        right += int((net(x).argmax(1).cpu() == split.labels[idx]).sum())
    return right / max(1, len(split))


def save(net: Scorer, info: dict, out: Path) -> None:
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write(Path(out), save(tensors, metadata={KEY: json.dumps(info, default=str)}))


def load(path: Path, device: torch.device = torch.device("cpu")) -> tuple[FeatureNet, dict]:
    """The feature network of a scorer file (``--scorer FILE``) and its description."""
    from safetensors import safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"--scorer {path}: no such file (make one with vae train-scorer)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        info: Any = json.loads(meta[KEY])
        net = Scorer(tuple(info["input_shape"]), int(info["classes"]))
        net.load_state_dict(tensors)
    except (KeyError, ValueError, TypeError, RuntimeError, OSError) as exc:
        raise CheckpointError(
            f"--scorer {path}: not a scorer written by vae train-scorer ({type(exc).__name__})"
        ) from None
    net = net.to(device).eval().requires_grad_(False)
    name = f"vae scorer of {info.get('dataset', '?')} ({path.name}; not comparable with Inception FID)"
    return module_net(net.features, name, tuple(info["input_shape"])), info
