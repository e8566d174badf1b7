"""Starting a run: fresh (``run``) or from a checkpoint (``resume``)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Optional

from .. import checkpoint
from ..config import TrainConfig
from ..data import split_dataset_name
from ..errors import UsageError
from .report import Reporter, Silent, TrainResult
from .trainer import Trainer

__all__ = ["run", "resume", "output_path"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


def output_path(config: TrainConfig) -> Path:
    """Where the checkpoint goes; checked before any work so that nothing fails late.

    Without ``out``: ``DATASET-ARCH.safetensors`` in the current folder, numbered (``-2``,
    ``-3``, ...) rather than overwriting. With ``out``: an existing file needs ``force``.
    """
    if config.out is None:
        name, argument = split_dataset_name(config.dataset)  # folder:PATH -> folder-NAME_OF_PATH
        dataset = "-".join([name, *(Path(v).expanduser().resolve().name for v in argument.values())])
        family = "" if config.model == TrainConfig().model else f"-{config.model}"  # the default family unnamed
        stem = _slug(f"{dataset}-{config.arch}{family}")
        path, n = Path(f"{stem}{checkpoint.SUFFIX}"), 2
        while path.exists():
            path, n = Path(f"{stem}-{n}{checkpoint.SUFFIX}"), n + 1
        return path
    path = Path(config.out).expanduser()
    if path.suffix != checkpoint.SUFFIX:
        raise UsageError(f"-o {path}: a checkpoint file must end in {checkpoint.SUFFIX}")
    checkpoint.check_target(path)
    if path.exists() and not config.force:
        raise UsageError(f"{path} already exists; pass --force to overwrite it, or choose another -o")
    return path


def run(config: TrainConfig, reporter: Optional[Reporter] = None) -> TrainResult:
    """Train as ``config`` says; returns the checkpoint path, the model and the metrics."""
    config.check()
    path = output_path(config)
    return Trainer(config, path, reporter or Silent()).fit()


def resume(
    path: Path | str,
    epochs: Optional[int] = None,
    *,
    data_dir: Optional[str] = None,
    download: bool = True,
    device: Optional[str] = None,
    precision: Optional[str] = None,
    compile: Optional[bool] = None,
    save_every: Optional[int] = None,
    max_memory: Optional[float] = None,
    reporter: Optional[Reporter] = None,
) -> TrainResult:
    """Continue the run recorded in checkpoint ``path`` up to ``epochs`` epochs in total (default:
    the epochs it was started with), writing to the same file. The dataset, model and training
    settings come from the checkpoint; the optimizer, the learning-rate schedule and the random
    number generators continue where they were, so that on the CPU k epochs, then a resume to
    N, give the same weights bit for bit as N epochs straight (for a schedule that does not
    depend on the total, such as the default constant one). ``device``, ``precision`` and
    ``compile`` may change (the run was started elsewhere): the arithmetic then changes, and the
    checkpoint records it; a run started with ``auto`` resolves them again here."""
    path = Path(path).expanduser()
    ckpt = checkpoint.read(path)
    recorded = dict(ckpt.meta["training"])
    if not ckpt.meta.get("optim"):
        raise UsageError(f"{path} holds no optimizer state, so its training cannot be resumed")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    settings = {k: v for k, v in recorded.items() if k in known}
    config = TrainConfig(**settings)
    done = ckpt.epoch
    config.epochs = int(epochs) if epochs is not None else int(recorded.get("epochs", done))
    if config.epochs < done or (config.epochs == done and not ckpt.meta.get("progress")):
        raise UsageError(
            f"{path} has already trained {done} epoch{'s' if done != 1 else ''}; "
            f"give --epochs more than {done} to train on"
        )
    config.out, config.force = str(path), True
    if data_dir is not None:
        config.data_dir = str(data_dir)
    config.download = download
    asked: dict = recorded["asked"] if isinstance(recorded.get("asked"), dict) else {}
    config.device = device or asked.get("device", config.device)  # resolved again on this machine
    config.precision = precision or asked.get("precision", config.precision)
    if compile is not None:
        config.compile = compile
    if save_every is not None:
        config.save_every = save_every
    if max_memory is not None:
        config.max_memory = max_memory
    config.check()
    checkpoint.check_target(path, "--resume")
    return Trainer(config, path, reporter or Silent(), ckpt).fit()
