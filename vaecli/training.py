"""The training loop: batches from the device-resident dataset, Adam, a test pass and an
atomically written checkpoint after every epoch."""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol

import torch

from . import checkpoint, monitor
from . import options as opts
from .data import LoadedDataset, batch_indices, load_dataset, to_unit
from .errors import Interrupted, TrainingError, UsageError, VaeError, unknown_name
from .model import MODEL_KINDS, VAE, accumulator_dtype, evaluate, from_config
from .plugins import registry

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class TrainConfig:
    """Everything that defines a training run (the CLI flags of ``vae train``)."""

    dataset: str = "shapes"
    dataset_options: dict = field(default_factory=dict)
    arch: str = "mlp"
    arch_options: dict = field(default_factory=dict)
    likelihood: str = "bernoulli"
    likelihood_options: dict = field(default_factory=dict)
    model: str = "vae"
    latent_dim: int = 20
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0
    seed: int = 0
    device: str = "auto"
    data_dir: Optional[str] = None
    download: bool = True
    out: Optional[str] = None
    force: bool = False
    viz_dir: Optional[str] = None
    tensorboard: Optional[str] = None

    def check(self) -> None:
        if self.model not in MODEL_KINDS:
            raise unknown_name("model kind", self.model, list(MODEL_KINDS))
        for name, low in (("epochs", 1), ("batch_size", 1), ("latent_dim", 1)):
            if int(getattr(self, name)) < low:
                raise UsageError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"--lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise UsageError(f"--beta must be a number >= 0, got {self.beta}")


@dataclass
class TrainResult:
    path: Path
    model: VAE
    metrics: list


class Reporter(Protocol):
    """What the training loop tells its caller (the CLI draws a progress bar from it)."""

    def start(self, config: TrainConfig, path: Path, device: torch.device, data: LoadedDataset) -> None: ...
    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None: ...
    def step(self, done: int, loss: torch.Tensor) -> None: ...
    def epoch_end(self, metrics: dict) -> None: ...
    def warn(self, message: str) -> None: ...


class _Silent:
    def start(self, *a: Any) -> None: ...
    def epoch_start(self, *a: Any) -> None: ...
    def step(self, *a: Any) -> None: ...
    def epoch_end(self, *a: Any) -> None: ...

    def warn(self, message: str) -> None:
        import warnings

        warnings.warn(message, stacklevel=2)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an unavailable device is an error."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise unknown_name("device", name, list(DEVICES))
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA"
        raise UsageError(f"--device {name}: no CUDA GPU is available here (torch {torch.__version__}, "
                         f"built with {build}); use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
    return torch.device(name)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


def output_path(config: TrainConfig) -> Path:
    """Where the checkpoint goes; checked before any work so that nothing fails late.

    Without ``out``: ``DATASET-ARCH.safetensors`` in the current folder, numbered (``-2``,
    ``-3``, ...) rather than overwriting. With ``out``: an existing file needs ``force``.
    """
    if config.out is None:
        stem = _slug(f"{config.dataset}-{config.arch}" + ("" if config.model == "vae" else f"-{config.model}"))
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


def model_config(config: TrainConfig) -> dict:
    """The ``model`` section of the checkpoint metadata, options checked against their specs;
    ``input_shape`` is filled in once the data is loaded."""
    reg = registry()
    arch = reg.get("architecture", config.arch)
    lik = reg.get("likelihood", config.likelihood)
    arch_opts = opts.build(arch.spec.options, config.arch_options, f"architecture '{config.arch}'")
    lik_opts = opts.build(lik.spec.options, config.likelihood_options, f"likelihood '{config.likelihood}'")
    return {
        "kind": config.model,
        "latent_dim": int(config.latent_dim),
        "input_shape": None,
        "architecture": {"name": config.arch, "options": opts.to_json(arch_opts),
                         "provider": arch.plugin.provider()},
        "likelihood": {"name": config.likelihood, "options": opts.to_json(lik_opts),
                       "provider": lik.plugin.provider()},
    }


def evaluate_split(model: VAE, images: torch.Tensor) -> dict:
    """The test pass of an epoch: negative ELBO (one sample, the same noise every epoch, so that
    epochs compare) and its parts, nats per example; ``vae evaluate -k 1`` gives the same."""
    result = evaluate(model, images, iw_samples=1)
    kl = result.get("kl", 0.0)  # a plain auto-encoder has no KL term
    return {"loss": result["recon"] + kl, "recon": result["recon"], "kl": kl}


def run(config: TrainConfig, reporter: Optional[Reporter] = None) -> TrainResult:
    """Train as ``config`` says; returns the checkpoint path, the model and the metrics."""
    reporter = reporter or _Silent()
    config.check()
    path = output_path(config)
    device = resolve_device(config.device)
    if config.viz_dir:
        monitor.check_viz_dir(Path(config.viz_dir), config.force)
    if config.tensorboard:
        monitor.check_folder(Path(config.tensorboard), "--tensorboard")
        monitor.summary_writer()
    model_meta = model_config(config)  # unknown names and bad options fail before the data loads
    data = load_dataset(config.dataset, config.dataset_options, config.data_dir, config.download)
    model_meta["input_shape"] = list(data.input_shape)
    torch.manual_seed(config.seed)
    model = from_config(model_meta).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    train_images = data.splits.train.images.to(device)  # uint8, moved once
    test_images = data.splits.test.images.to(device)
    n = len(train_images)
    batches = math.ceil(n / config.batch_size)
    settings = dataclasses.asdict(config)
    settings.update(device=str(device), optimizer="adam", out=str(path))
    settings.pop("force")
    meta: dict[str, Any] = {"model": model_meta, "data": data.describe(), "training": settings,
                            "metrics": [], "created": checkpoint.now()}
    metrics: list[dict] = []
    monitors: list = [monitor.MetricsLog(path)]
    if config.viz_dir or config.tensorboard:
        pictures = monitor.EpochPictures(model, data, config.seed)
        if config.viz_dir:
            monitors.append(monitor.TrainingPictures(Path(config.viz_dir), pictures, model.latent_dim))
        if config.tensorboard:
            monitors.append(monitor.TensorBoardLog(Path(config.tensorboard), pictures))
    reporter.start(config, path, device, data)

    try:
        for epoch in range(1, config.epochs + 1):
            _train_epoch(epoch, config, model, optimizer, train_images, test_images, batches, path,
                         meta, metrics, reporter)
            for m in list(monitors):
                if not _guarded(m.epoch_end, m, reporter, epoch, model, metrics[-1]):
                    monitors.remove(m)  # a picture or log that fails never stops training
                    _guarded(m.close, m, reporter)
    except KeyboardInterrupt:
        done = len(metrics)
        kept = f"{path} holds the {done} completed epoch(s)" if done else "no checkpoint was written"
        raise Interrupted(f"interrupted during epoch {done + 1}; {kept}") from None
    finally:
        for m in monitors:
            _guarded(m.close, m, reporter)
    model.eval()
    model.meta = meta
    return TrainResult(path, model, metrics)


def _guarded(call, m, reporter, *args) -> bool:
    """Run a monitor's method; a failure to write is a warning, not the end of training."""
    try:
        call(*args)
        return True
    except (OSError, VaeError) as exc:
        warn = getattr(reporter, "warn", _Silent().warn)
        warn(f"could not write the {m.label}: {getattr(exc, 'strerror', None) or exc}; training goes on without it")
        return False


def _train_epoch(epoch, config, model, optimizer, train_images, test_images, batches, path, meta,
                 metrics, reporter) -> None:
    """One epoch: the batches, the test pass, the metrics and the checkpoint."""
    device = train_images.device
    n = len(train_images)
    reporter.epoch_start(epoch, config.epochs, batches)
    started = time.perf_counter()
    sum_recon = torch.zeros((), device=device, dtype=accumulator_dtype(device))
    sum_kl = torch.zeros((), device=device, dtype=accumulator_dtype(device))
    for i, idx in enumerate(batch_indices(n, config.batch_size, device), start=1):
        x = to_unit(train_images[idx])  # (B, C, H, W) in [0, 1]
        terms = model(x, beta=config.beta)
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimizer.step()
        sum_recon += terms.recon.detach().sum()
        sum_kl += terms.kl.detach().sum()
        reporter.step(i, terms.loss.detach())
    train_recon, train_kl = sum_recon.item() / n, sum_kl.item() / n
    train_seconds = time.perf_counter() - started
    test = evaluate_split(model, test_images)
    finite = math.isfinite(train_recon + train_kl + test["loss"])
    if not (finite and all(torch.isfinite(p).all() for p in model.parameters())):
        raise TrainingError(
            f"the loss or the weights became non-finite in epoch {epoch}; nothing of this epoch "
            f"was saved" + (f" ({path} holds epoch {epoch - 1})" if epoch > 1 else "")
            + "; try a smaller --lr"
        )
    record = {
        "epoch": epoch,
        "train_loss": train_recon + train_kl,  # the negative ELBO, whatever --beta
        "train_objective": train_recon + config.beta * train_kl,
        "train_recon": train_recon,
        "train_kl": train_kl,
        "test_loss": test["loss"],
        "test_recon": test["recon"],
        "test_kl": test["kl"],
        "seconds": train_seconds,
    }
    meta["metrics"] = metrics + [record]
    meta["epoch"] = epoch
    checkpoint.save(path, model, meta, optimizer=optimizer, rng=True)
    metrics.append(record)  # only once it is on disk
    reporter.epoch_end(record)
