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
from .data import (BINARIZE, BINARIZE_SEEDS, LoadedDataset, batch_indices, binarize, load_dataset,
                   split_dataset_name, to_unit)
from .errors import Interrupted, TrainingError, UsageError, VaeError, unknown_name
from .model import MODEL_KINDS, VAE, accumulator_dtype, check_kind, evaluate, from_config
from .plugins import registry

DEVICES = ("auto", "cpu", "cuda", "mps")
OPTIMIZERS = ("adam", "adamw")
MAX_IW_SAMPLES = 10_000  # samples per training example of the IWAE bound
LR_SCHEDULES = ("constant", "cosine", "step")


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
    kl_warmup: float = 0.0  # epochs over which the KL weight rises linearly from 0 to beta
    free_bits: float = 0.0  # nats per latent dimension (Kingma et al. 2016)
    iw_samples: int = 1  # k > 1: train on the importance-weighted bound (Burda et al. 2015)
    binarize: str = "none"  # none, static or dynamic
    optimizer: str = "adam"
    weight_decay: Optional[float] = None  # None: the optimizer's default (adam 0, adamw 0.01)
    lr_schedule: str = "constant"
    lr_step: int = 0  # epochs between the steps of the step schedule
    lr_gamma: float = 0.1  # factor of each step
    grad_clip: float = 0.0  # max gradient norm; 0: no clipping
    seed: int = 0
    device: str = "auto"
    data_dir: Optional[str] = None
    download: bool = True
    out: Optional[str] = None
    force: bool = False
    viz_dir: Optional[str] = None
    tensorboard: Optional[str] = None

    def check(self) -> None:
        """Each setting on its own and in combination; names are checked against the registry
        later (``model_config``)."""
        for name, kind, choices in (("model", "model kind", MODEL_KINDS), ("binarize", "binarization", BINARIZE),
                                    ("optimizer", "optimizer", OPTIMIZERS),
                                    ("lr_schedule", "learning-rate schedule", LR_SCHEDULES)):
            if getattr(self, name) not in choices:
                raise unknown_name(kind, getattr(self, name), list(choices))
        for name, low in (("epochs", 1), ("batch_size", 1), ("latent_dim", 1), ("iw_samples", 1), ("lr_step", 0)):
            if int(getattr(self, name)) < low:
                raise UsageError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(self, name)}")
        if self.iw_samples > MAX_IW_SAMPLES:
            raise UsageError(f"--iw-samples must be at most {MAX_IW_SAMPLES}, got {self.iw_samples}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"--lr must be a positive number, got {self.lr}")
        for name in ("beta", "kl_warmup", "free_bits", "grad_clip", "weight_decay"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise UsageError(f"--{name.replace('_', '-')} must be a number >= 0, got {value}")
        if self.iw_samples > 1 and (self.beta != 1 or self.kl_warmup or self.free_bits):
            raise UsageError("--iw-samples trains on the importance-weighted bound, which has no separate "
                             "KL term: it does not combine with --beta, --kl-warmup or --free-bits")
        if self.model == "ae" and (self.beta != 1 or self.kl_warmup or self.free_bits or self.iw_samples > 1):
            raise UsageError("--model ae has no KL term: --beta, --kl-warmup, --free-bits and --iw-samples "
                             "are for vae and cvae")
        if self.lr_schedule == "step" and self.lr_step < 1:
            raise UsageError("--lr-schedule step needs --lr-step EPOCHS (how often the rate is multiplied by --lr-gamma)")
        if self.lr_schedule != "step" and self.lr_step:
            raise UsageError(f"--lr-step is for --lr-schedule step (not {self.lr_schedule})")
        if not 0 < self.lr_gamma <= 1:
            raise UsageError(f"--lr-gamma must be in (0, 1], got {self.lr_gamma}")

    def kl_weight(self, step: int, batches: int) -> float:
        """beta after ``step`` optimisation steps: linear from 0 to beta over ``kl_warmup``
        epochs (Bowman et al. 2016; Sonderby et al. 2016), then beta."""
        if not self.kl_warmup:
            return self.beta
        return self.beta * min(1.0, step / (self.kl_warmup * batches))

    def learning_rate(self, step: int, batches: int) -> float:
        """The learning rate of step ``step`` (0-based): constant, cosine from lr to 0 over the
        whole run (Loshchilov & Hutter 2017, without restarts), or times lr_gamma every lr_step
        epochs. A pure function of the step, so a resumed run continues it exactly."""
        if self.lr_schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * step / (self.epochs * batches)))
        if self.lr_schedule == "step":
            return self.lr * self.lr_gamma ** (step // batches // self.lr_step)
        return self.lr

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        """Adam (weight decay as an L2 term) or AdamW (decoupled, Loshchilov & Hutter 2019)."""
        if self.optimizer == "adamw":
            decay = 0.01 if self.weight_decay is None else self.weight_decay
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=decay)
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay or 0.0)


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
        name, argument = split_dataset_name(config.dataset)  # folder:PATH -> folder-NAME_OF_PATH
        dataset = "-".join([name, *(Path(v).expanduser().resolve().name for v in argument.values())])
        stem = _slug(f"{dataset}-{config.arch}" + ("" if config.model == "vae" else f"-{config.model}"))
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
    check_kind(config.model, arch)
    check_data_range(lik.spec.name, lik.spec.data_range, config.binarize)
    return {
        "kind": config.model,
        "latent_dim": int(config.latent_dim),
        "input_shape": None,
        "architecture": {"name": config.arch, "options": opts.to_json(arch_opts),
                         "provider": arch.plugin.provider()},
        "likelihood": {"name": config.likelihood, "options": opts.to_json(lik_opts),
                       "provider": lik.plugin.provider()},
    }


def check_data_range(name: str, data_range: str, binarize_mode: str) -> None:
    """Refuse preprocessing outside the values a likelihood models (see ``LikelihoodSpec``)."""
    if binarize_mode != "none" and data_range != "binary":
        what = {"unit": "a density over [0, 1], unbounded on binary pixels",
                "8bit": "a distribution over the 256 levels of 8-bit pixels",
                "real": "a density over real values"}.get(data_range, f"data range {data_range!r}")
        raise UsageError(f"--binarize {binarize_mode} is for likelihoods over {{0, 1}} such as bernoulli; "
                         f"'{name}' is {what}")


def evaluate_split(model: VAE, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> dict:
    """The test pass of an epoch: negative ELBO (one sample, the same noise every epoch, so that
    epochs compare) and its parts, nats per example; ``vae evaluate -k 1`` gives the same."""
    result = evaluate(model, images, iw_samples=1, labels=labels)
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
    train_labels, test_labels = _class_labels(config, data, model_meta)
    for note in data.splits.notes:
        reporter.warn(note)
    if config.kl_warmup > config.epochs:
        reporter.warn(f"--kl-warmup {config.kl_warmup:g} is longer than the run ({config.epochs} epochs): "
                      f"the KL weight ends at {config.kl_weight(config.epochs, 1):g}, not {config.beta:g}")
    torch.manual_seed(config.seed)
    model = from_config(model_meta).to(device)
    model.train()
    optimizer = config.make_optimizer(model.parameters())

    train_images, test_images = data.splits.train.images, data.splits.test.images
    if config.binarize == "static":  # one fixed draw of the training set
        train_images = binarize(train_images, BINARIZE_SEEDS["train"])
    if config.binarize != "none":  # the test set: one fixed draw, as `vae evaluate` makes it
        test_images = binarize(test_images, BINARIZE_SEEDS["test"])
    train_images, test_images = train_images.to(device), test_images.to(device)  # uint8, moved once
    train_labels = None if train_labels is None else train_labels.to(device)
    test_labels = None if test_labels is None else test_labels.to(device)
    n = len(train_images)
    batches = math.ceil(n / config.batch_size)
    settings = dataclasses.asdict(config)
    settings.update(device=str(device), out=str(path))
    settings.pop("force")
    meta: dict[str, Any] = {"model": model_meta, "data": data.describe(config.binarize), "training": settings,
                            "metrics": [], "created": checkpoint.now()}
    metrics: list[dict] = []
    monitors: list = [monitor.MetricsLog(path)]
    if config.viz_dir or config.tensorboard:
        pictures = monitor.EpochPictures(model, test_images, test_labels if test_labels is not None
                                         else data.splits.test.labels, data.splits.class_names,
                                         config.seed, conditional=config.model == "cvae")
        if config.viz_dir:
            monitors.append(monitor.TrainingPictures(Path(config.viz_dir), pictures, model.latent_dim))
        if config.tensorboard:
            monitors.append(monitor.TensorBoardLog(Path(config.tensorboard), pictures))
    reporter.start(config, path, device, data)

    try:
        for epoch in range(1, config.epochs + 1):
            _train_epoch(epoch, config, model, optimizer, (train_images, train_labels),
                         (test_images, test_labels), batches, path, meta, metrics, reporter)
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


def _class_labels(config: TrainConfig, data: LoadedDataset, model_meta: dict):
    """The labels a cvae is conditioned on (train, test), with ``num_classes`` recorded in
    ``model_meta``; (None, None) for other models."""
    if config.model != "cvae":
        return None, None
    train, test = data.splits.train.labels, data.splits.test.labels
    if train is None or test is None:
        raise UsageError(f"--model cvae needs class labels, and dataset '{config.dataset}' has none")
    names = data.splits.class_names
    k = len(names) if names else int(max(train.max(), test.max())) + 1
    if min(int(train.min()), int(test.min())) < 0 or max(int(train.max()), int(test.max())) >= k:
        raise VaeError(f"dataset '{config.dataset}' has labels outside 0..{k - 1}")
    model_meta["num_classes"] = k
    return train.long(), test.long()


def _train_epoch(epoch, config, model, optimizer, train, test, batches, path, meta,
                 metrics, reporter) -> None:
    """One epoch: the batches, the test pass, the metrics and the checkpoint."""
    train_images, train_labels = train
    device = train_images.device
    n = len(train_images)
    reporter.epoch_start(epoch, config.epochs, batches)
    started = time.perf_counter()
    sum_recon = torch.zeros((), device=device, dtype=accumulator_dtype(device))
    sum_kl = torch.zeros((), device=device, dtype=accumulator_dtype(device))
    sum_objective = torch.zeros((), device=device, dtype=accumulator_dtype(device))
    step = (epoch - 1) * batches
    for i, idx in enumerate(batch_indices(n, config.batch_size, device), start=1):
        x = to_unit(train_images[idx])  # (B, C, H, W) in [0, 1]
        if config.binarize == "dynamic":  # a new draw every batch
            x = torch.bernoulli(x)
        lr = config.learning_rate(step, batches)
        for group in optimizer.param_groups:
            group["lr"] = lr
        beta = config.kl_weight(step + 1, batches)
        terms = model(x, beta, labels=None if train_labels is None else train_labels[idx],
                      free_bits=config.free_bits, iw_samples=config.iw_samples)
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        sum_recon += terms.recon.detach().sum()
        sum_kl += terms.kl.detach().sum()
        sum_objective += terms.loss.detach() * len(idx)
        reporter.step(i, terms.loss.detach())
    train_recon, train_kl = sum_recon.item() / n, sum_kl.item() / n
    train_seconds = time.perf_counter() - started
    test = evaluate_split(model, *test)
    finite = math.isfinite(train_recon + train_kl + test["loss"])
    if not (finite and all(torch.isfinite(p).all() for p in model.parameters())):
        raise TrainingError(
            f"the loss or the weights became non-finite in epoch {epoch}; nothing of this epoch "
            f"was saved" + (f" ({path} holds epoch {epoch - 1})" if epoch > 1 else "")
            + "; try a smaller --lr"
        )
    record = {
        "epoch": epoch,
        "train_loss": train_recon + train_kl,  # the negative ELBO, whatever the objective
        "train_objective": sum_objective.item() / n,  # what was minimised (beta, free bits, IWAE)
        "kl_weight": beta,  # the weight of the KL term at the end of the epoch (below --beta during warm-up)
        "lr": lr,  # the learning rate of the last step
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
