"""The training loop: batches from the device-resident dataset, Adam, a test pass and an
atomically written checkpoint after every epoch."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import shlex
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol

import torch

from . import checkpoint, distributed, monitor
from . import options as opts
from .data import (BINARIZE, BINARIZE_SEEDS, LoadedDataset, binarize, load_dataset, split_dataset_name,
                   to_unit)
from .errors import Interrupted, Terminated, TrainingError, UsageError, VaeError, unknown_name
from .model import MODEL_KINDS, VAE, accumulator_dtype, check_kind, evaluate, from_config
from .plugins import registry

DEVICES = ("auto", "cpu", "cuda", "mps")
OPTIMIZERS = ("adam", "adamw")
MAX_IW_SAMPLES = 10_000  # samples per training example of the IWAE bound
LR_SCHEDULES = ("constant", "cosine", "step", "multistep", "burda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CHECK_STEPS = 200  # steps between looks at the running loss for non-finite values (a host sync)


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
    lr_milestones: list = field(default_factory=list)  # epochs at which multistep multiplies by lr_gamma
    grad_clip: float = 0.0  # max gradient norm; 0: no clipping
    save_every: int = 0  # optimisation steps between checkpoints inside an epoch; 0: at epoch ends only
    precision: str = "auto"  # of the training steps: fp32, bf16 or fp16 mixed precision; auto: bf16 where native
    compile: bool = False  # torch.compile the model's loss
    seed: int = 0
    device: str = "auto"
    data_dir: Optional[str] = None
    download: bool = True
    out: Optional[str] = None
    force: bool = False
    viz_dir: Optional[str] = None
    tensorboard: Optional[str] = None
    recipe: Optional[dict] = None  # the recipe the settings came from (vaecli.recipes.record), as recorded

    def check(self) -> None:
        """Each setting on its own and in combination; names are checked against the registry
        later (``model_config``)."""
        for name, kind, choices in (("model", "model kind", MODEL_KINDS), ("binarize", "binarization", BINARIZE),
                                    ("optimizer", "optimizer", OPTIMIZERS),
                                    ("lr_schedule", "learning-rate schedule", LR_SCHEDULES),
                                    ("precision", "precision", PRECISIONS)):
            if getattr(self, name) not in choices:
                raise unknown_name(kind, getattr(self, name), list(choices))
        for name, low in (("epochs", 1), ("batch_size", 1), ("latent_dim", 1), ("iw_samples", 1), ("lr_step", 0), ("save_every", 0)):
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
        milestones = self.lr_milestones
        if not isinstance(milestones, (list, tuple)) or not all(
                isinstance(m, int) and not isinstance(m, bool) for m in milestones):
            raise UsageError(f"--lr-milestones must be a list of epochs, got {milestones!r}")
        if self.lr_schedule == "multistep" and not milestones:
            raise UsageError("--lr-schedule multistep needs --lr-milestones EPOCHS (e.g. 200,350: the epochs "
                             "after which the rate is multiplied by --lr-gamma)")
        if self.lr_schedule != "multistep" and milestones:
            raise UsageError(f"--lr-milestones is for --lr-schedule multistep (not {self.lr_schedule})")
        if any(m < 1 for m in milestones) or any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise UsageError(f"--lr-milestones must be increasing epochs of at least 1, got "
                             f"{','.join(map(str, milestones))}")
        if not 0 < self.lr_gamma <= 1:
            raise UsageError(f"--lr-gamma must be in (0, 1], got {self.lr_gamma}")

    def kl_weight(self, step: int, batches: int) -> float:
        """beta after ``step`` optimisation steps: linear from 0 to beta over ``kl_warmup``
        epochs (Bowman et al. 2016; Sonderby et al. 2016), then beta."""
        if not self.kl_warmup:
            return self.beta
        return self.beta * min(1.0, step / (self.kl_warmup * batches))

    def learning_rate(self, step: int, batches: int) -> float:
        """The learning rate of step ``step`` (0-based): constant; cosine from lr to 0 over the
        whole run (Loshchilov & Hutter 2017, without restarts); times lr_gamma every lr_step
        epochs (step); times lr_gamma at each of lr_milestones, counted in completed epochs
        (multistep, as torch's MultiStepLR); or burda. A pure function of the step, so a resumed
        run continues it exactly.

        burda (Burda et al. 2015, section 5): 3^i epochs at lr * 10^(-i/7) for i = 0, 1, ..., 7,
        3280 epochs in all (epoch 0; 1-3; 4-12; 13-39; 40-120; 121-363; 364-1092; 1093-3279,
        counted from 0); a longer run goes on in the same way (i = 8 from epoch 3280)."""
        if self.lr_schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * step / (self.epochs * batches)))
        if self.lr_schedule == "step":
            return self.lr * self.lr_gamma ** (step // batches // self.lr_step)
        if self.lr_schedule == "multistep":
            epoch = step // batches
            return self.lr * self.lr_gamma ** sum(1 for m in self.lr_milestones if epoch >= m)
        if self.lr_schedule == "burda":
            return self.lr * 10 ** (-burda_stage(step // batches) / 7)
        return self.lr

    def make_optimizer(self, params, device: torch.device) -> torch.optim.Optimizer:
        """Adam (weight decay as an L2 term) or AdamW (decoupled, Loshchilov & Hutter 2019);
        the fused implementation (one kernel for all parameters) where the device has it."""
        kind = torch.optim.AdamW if self.optimizer == "adamw" else torch.optim.Adam
        decay = self.weight_decay if self.weight_decay is not None else (0.01 if self.optimizer == "adamw" else 0.0)
        fused = device.type in ("cpu", "cuda")
        return kind(params, lr=self.lr, weight_decay=decay, **({"fused": True} if fused else {}))


def burda_stage(epoch: int) -> int:
    """The stage i of Burda et al.'s schedule that epoch ``epoch`` (0-based) is in: stage i holds
    the 3^i epochs from (3^i - 1) / 2 on."""
    i = 0
    while (3 ** (i + 1) - 1) // 2 <= epoch:
        i += 1
    return i


def native_bf16(device: torch.device) -> bool:
    """Whether matrix products in bfloat16 run on hardware made for them (and so faster than
    fp32): a CUDA GPU of compute capability 8.0 or later, or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        cpu = torch.cpu
        return any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` is bf16 where the hardware has it natively (``native_bf16``), else fp32."""
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError(f"--precision bf16: this GPU ({torch.cuda.get_device_name(device)}) has no bfloat16; "
                         f"use --precision fp16 or fp32")
    return name


class MixedPrecision:
    """The arithmetic of the training steps. ``fp32``: plain float32. ``bf16`` and ``fp16``:
    automatic mixed precision (torch.autocast): matrix products and convolutions in 16 bits,
    while the weights, the optimizer state and the likelihood and KL terms stay in float32
    (the model casts the encoder's and the decoder's outputs back). fp16 adds a dynamic loss
    scale (torch.amp.GradScaler, Micikevicius et al. 2018), saved in checkpoints so that
    resuming continues it."""

    def __init__(self, name: str, device: torch.device) -> None:
        self.name = resolve_precision(name, device)
        self.device_type = device.type
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)
        self.scaler = torch.amp.GradScaler(device.type) if self.name == "fp16" else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Gradients at their true size (before clipping)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer's step; with fp16, skipped when the scaled gradients overflowed."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def state(self) -> dict[str, torch.Tensor]:
        """The loss scale as checkpoint tensors (none without fp16)."""
        if self.scaler is None or not self.scaler.is_enabled():
            return {}
        sd = self.scaler.state_dict()
        if not sd:  # no step taken yet
            return {}
        return {"amp.scale": torch.tensor(float(sd["scale"]), dtype=torch.float64),
                "amp.growth_tracker": torch.tensor(int(sd["_growth_tracker"]), dtype=torch.int64)}

    def restore(self, tensors: dict) -> None:
        if self.scaler is not None and "amp.scale" in tensors:
            sd = self.scaler.state_dict()
            sd.update(scale=float(tensors["amp.scale"]), _growth_tracker=int(tensors["amp.growth_tracker"]))
            self.scaler.load_state_dict(sd)


class _Compiled:
    """``model``'s loss through torch.compile; the model itself is untouched (parameter names
    stay those of the checkpoint). A compiler failure, found at the first call, is one line."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.call = torch.compile(model)
        self.compiled = False

    def __call__(self, *args: Any, **kwargs: Any):
        if self.compiled:
            return self.call(*args, **kwargs)
        try:
            out = self.call(*args, **kwargs)
        except Exception as exc:  # inductor needs a C++ compiler on the CPU, Triton on GPUs
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise UsageError(f"--compile: torch.compile failed ({type(exc).__name__}: {first}); "
                             f"train without --compile") from None
        self.compiled = True
        return out


@dataclass
class TrainResult:
    path: Path
    model: VAE
    metrics: list
    main: bool = True  # False on the ranks other than 0 of a run on several processes


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


class _Quiet(_Silent):
    """The reporter of ranks other than 0: rank 0 says everything once."""

    def warn(self, message: str) -> None: ...


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
    config.check()
    path = output_path(config)
    return _Trainer(config, path, reporter or _Silent()).fit()


def resume(path: Path | str, epochs: Optional[int] = None, *, data_dir: Optional[str] = None,
           download: bool = True, device: Optional[str] = None, save_every: Optional[int] = None,
           reporter: Optional[Reporter] = None) -> TrainResult:
    """Continue the run recorded in checkpoint ``path`` up to ``epochs`` epochs in total (default:
    the epochs it was started with), writing to the same file. The dataset, model and training
    settings come from the checkpoint; the optimizer, the learning-rate schedule and the random
    number generators continue where they were, so that on the CPU k epochs, then a resume to
    N, give the same weights bit for bit as N epochs straight (for a schedule that does not
    depend on the total, such as the default constant one)."""
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
        raise UsageError(f"{path} has already trained {done} epoch{'s' if done != 1 else ''}; "
                         f"give --epochs more than {done} to train on")
    config.out, config.force = str(path), True
    if data_dir is not None:
        config.data_dir = str(data_dir)
    config.download = download
    if device is not None:
        config.device = device
    if save_every is not None:
        config.save_every = save_every
    config.check()
    checkpoint.check_target(path, "--resume")
    return _Trainer(config, path, reporter or _Silent(), ckpt).fit()


class _StopSignal:
    """While training: the first Ctrl-C (SIGINT) or SIGTERM asks the loop to save a checkpoint at
    the end of its current step and stop; a second Ctrl-C stops at once (KeyboardInterrupt)."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.received: Optional[str] = None
        self._previous: dict = {}

    def __enter__(self) -> "_StopSignal":
        if threading.current_thread() is threading.main_thread():  # signal handlers live there
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(number).name

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


class _Trainer:
    """One run, fresh or resumed from a checkpoint: the data and the model on the device, the
    epochs, and the checkpoints (after every epoch, every ``save_every`` steps, and when stopped
    by Ctrl-C). All randomness of training (batch order, the reparameterisation noise, dynamic
    binarization) comes from one generator on the device, saved with every checkpoint."""

    def __init__(self, config: TrainConfig, path: Path, reporter: Reporter,
                 ckpt: Optional[checkpoint.Checkpoint] = None) -> None:
        self.config, self.path, self.reporter, self.ckpt = config, path, reporter, ckpt
        self.saved = ""  # what the checkpoint on disk holds, for messages ("" when none yet)
        self.epoch = 0  # the epoch being trained

    # -- setting up ---------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Join the other processes when torchrun started several (``distributed``), train, leave."""
        self.world, self.device = distributed.start(distributed.from_environment(), resolve_device(self.config.device))
        if not self.world.main:
            self.reporter = _Quiet()
        try:
            result = self._fit()
            self.world.barrier()  # every rank done before the group is taken down
            return result
        finally:
            self.loss = None  # DistributedDataParallel holds the process group: let go of it first
            distributed.stop(self.world)

    def _fit(self) -> TrainResult:
        config, reporter, ckpt, world = self.config, self.reporter, self.ckpt, self.world
        device = self.device
        if config.viz_dir:
            monitor.check_viz_dir(Path(config.viz_dir), config.force or ckpt is not None)
        if config.tensorboard:
            monitor.check_folder(Path(config.tensorboard), "--tensorboard")
            monitor.summary_writer()
        # unknown names and bad options fail before the data loads
        model_meta = model_config(config) if ckpt is None else dict(ckpt.meta["model"])
        provider = None if ckpt is None else ckpt.meta["data"].get("dataset", {}).get("provider")
        if not world.main:
            world.barrier()  # rank 0 downloads what is missing; the others read it after
        data = load_dataset(config.dataset, config.dataset_options, config.data_dir, config.download, provider)
        if world.main:
            world.barrier()
        if ckpt is None:
            model_meta["input_shape"] = list(data.input_shape)
        else:
            self._check_same_data(data)
        train_labels, test_labels = _class_labels(config, data, model_meta)
        for note in data.splits.notes:
            reporter.warn(note)
        if ckpt is None and config.kl_warmup > config.epochs:
            reporter.warn(f"--kl-warmup {config.kl_warmup:g} is longer than the run ({config.epochs} epochs): "
                          f"the KL weight ends at {config.kl_weight(config.epochs, 1):g}, not {config.beta:g}")
        stale = checkpoint.remove_stale_temps(self.path) if world.main else []
        if stale:
            reporter.warn(f"removed {len(stale)} temporary file{'s' if len(stale) > 1 else ''} that a killed "
                          f"run left beside {self.path}: {', '.join(stale)}")

        torch.manual_seed(config.seed)
        model = (from_config(model_meta) if ckpt is None else checkpoint.model_of(ckpt)).to(device)
        optimizer = config.make_optimizer(model.parameters(), device)
        self.amp = MixedPrecision(config.precision, device)
        config.precision = self.amp.name  # auto resolved: what the run uses and records
        gen = torch.Generator(device=device)
        gen.manual_seed(config.seed + 1)  # the training draws; the initialisation used torch.manual_seed(seed)
        if ckpt is not None:
            self._restore(optimizer, gen)
        model.train()
        self.model, self.optimizer, self.gen = model, optimizer, gen
        model.noise_rows = None
        self.loss = distributed.wrap(model, world, device)
        if config.compile:
            self.loss = _Compiled(self.loss)

        train_images, test_images = data.splits.train.images, data.splits.test.images
        if config.binarize == "static":  # one fixed draw of the training set
            train_images = binarize(train_images, BINARIZE_SEEDS["train"])
        if config.binarize != "none":  # the test set: one fixed draw, as `vae evaluate` makes it
            test_images = binarize(test_images, BINARIZE_SEEDS["test"])
        self.train = (train_images.to(device), None if train_labels is None else train_labels.to(device))
        self.test = (test_images.to(device), None if test_labels is None else test_labels.to(device))
        self.batches = math.ceil(len(train_images) / config.batch_size)

        settings = dataclasses.asdict(config)
        settings.update(device=str(device), out=str(self.path), distributed=world.describe())
        settings.pop("force")
        if ckpt is None:
            self.meta: dict[str, Any] = {"model": model_meta, "data": data.describe(config.binarize),
                                         "training": settings, "metrics": [], "epoch": 0,
                                         "created": checkpoint.now()}
        else:
            self.meta = {key: ckpt.meta[key] for key in ("model", "data", "metrics", "epoch", "created")
                         if key in ckpt.meta}
            self.meta["training"] = settings
            self.meta["epoch"] = ckpt.epoch
            self.saved = self._describe_saved(ckpt.epoch, (ckpt.meta.get("progress") or {}).get("step"))
        self.metrics: list[dict] = list(self.meta["metrics"])

        monitors: list = [monitor.MetricsLog(self.path, earlier=self.metrics)] if world.main else []
        if world.main and (config.viz_dir or config.tensorboard):
            pictures = monitor.EpochPictures(model, self.test[0], test_labels if test_labels is not None
                                             else data.splits.test.labels, data.splits.class_names,
                                             config.seed, conditional=config.model == "cvae")
            if config.viz_dir:
                monitors.append(monitor.TrainingPictures(Path(config.viz_dir), pictures, model.latent_dim))
            if config.tensorboard:
                monitors.append(monitor.TensorBoardLog(Path(config.tensorboard), pictures))
        reporter.start(config, self.path, device, data)

        first = len(self.metrics) + 1
        partial = None if ckpt is None else ckpt.meta.get("progress")
        try:
            with _StopSignal() as self.stop:
                for epoch in range(first, config.epochs + 1):
                    record = self._epoch(epoch, partial if epoch == first else None)
                    for m in list(monitors):
                        if not _guarded(m.epoch_end, m, reporter, epoch, model, record):
                            monitors.remove(m)  # a picture or log that fails never stops training
                            _guarded(m.close, m, reporter)
                    if world.any(self.stop.received is not None, device) and epoch < config.epochs:
                        raise self._stopped(f"after epoch {epoch}")
        except KeyboardInterrupt:  # a second Ctrl-C: no time to save
            raise Interrupted(f"interrupted in epoch {self.epoch}, before it could be saved; {self._kept()}"
                              + (f"; resume with: {self._resume_line()}" if self.saved else "")) from None
        finally:
            model.noise_rows = None
            for m in monitors:
                _guarded(m.close, m, reporter)
        model.eval()
        model.meta = self.meta
        return TrainResult(self.path, model, self.metrics, world.main)

    def _check_same_data(self, data: LoadedDataset) -> None:
        recorded = self.ckpt.meta["data"]
        then = (recorded.get("n_train"), recorded.get("n_test"), list(self.ckpt.meta["model"]["input_shape"]))
        now = (len(data.splits.train), len(data.splits.test), list(data.input_shape))
        if then != now:
            raise UsageError(f"--resume {self.path}: the dataset is not the one it was trained on "
                             f"({then[0]} train / {then[1]} test images of {'x'.join(map(str, then[2]))} then, "
                             f"{now[0]} / {now[1]} of {'x'.join(map(str, now[2]))} now)")

    def _restore(self, optimizer: torch.optim.Optimizer, gen: torch.Generator) -> None:
        """Optimizer and random states as the checkpoint left them (its weights are loaded)."""
        ckpt = self.ckpt
        checkpoint.load_optimizer_state(optimizer, ckpt)
        checkpoint.restore_rng(ckpt)
        self.amp.restore(ckpt.tensors)
        state = ckpt.tensors.get("rng.train")
        trained_on = str(ckpt.meta["training"].get("device", ""))
        if state is not None and torch.device(trained_on).type == self.device.type:
            gen.set_state(state)
        else:
            self.reporter.warn(f"resuming on {self.device}, not {trained_on or 'the device it was trained on'}: "
                               f"the random draws from here on differ from those of an uninterrupted run")

    # -- messages -----------------------------------------------------------------------------

    def _describe_saved(self, epochs: int, step: Optional[int] = None) -> str:
        if step:
            return f"epoch {epochs + 1} up to step {step} of {self.batches}"
        return f"{epochs} completed epoch{'s' if epochs != 1 else ''}" if epochs else ""

    def _kept(self) -> str:
        return f"{self.path} holds {self.saved}" if self.saved else "no checkpoint was written"

    def _resume_line(self) -> str:
        return f"vae train --resume {shlex.quote(str(self.path))} --epochs {self.config.epochs}"

    def _stopped(self, when: str) -> Interrupted:
        signal_name = self.stop.received or "SIGINT"
        why = "interrupted (Ctrl-C)" if signal_name == "SIGINT" else f"stopped by {signal_name}"
        kind = Interrupted if signal_name == "SIGINT" else Terminated
        return kind(f"{why} {when}; {self._kept()}; resume with: {self._resume_line()}")

    # -- one epoch ----------------------------------------------------------------------------

    def _epoch(self, epoch: int, partial: Optional[dict]) -> dict:
        """The batches (from step ``partial["step"]`` of a checkpoint written inside this
        epoch), the test pass, the metrics and the checkpoint."""
        config, model, optimizer, gen = self.config, self.model, self.optimizer, self.gen
        self.epoch = epoch
        train_images, train_labels = self.train
        device, batches, n = self.device, self.batches, len(train_images)
        acc = accumulator_dtype(device)
        world = self.world
        if partial:
            order = self.ckpt.tensors["progress.order"].to(device)
            sums = self.ckpt.tensors["progress.sums"].to(device=device, dtype=acc)
            if not world.main:
                sums.zero_()  # the sums of all ranks so far; rank 0 carries them
            done, elapsed = int(partial["step"]), float(partial["seconds"])
        else:
            order = torch.randperm(n, device=device, generator=gen)  # this epoch's batches
            sums = torch.zeros(3, device=device, dtype=acc)  # recon, KL, objective, summed over examples
            done, elapsed = 0, 0.0
        losses = torch.zeros(batches, device=device)  # each step's objective: names the first non-finite one
        self.reporter.epoch_start(epoch, config.epochs, batches)
        started = time.perf_counter() - elapsed
        step = (epoch - 1) * batches + done
        amp, loss_of = self.amp, self.loss
        for i, idx in enumerate(order.split(config.batch_size)[done:], start=done + 1):
            local, offset = world.shard(idx)  # this rank's part of the batch (all of it in one process)
            x = to_unit(train_images.index_select(0, idx))  # (B, C, H, W) in [0, 1]
            if config.binarize == "dynamic":  # a new draw every batch
                x = torch.bernoulli(x, generator=gen)
            if world.distributed:  # the whole batch was drawn, as one process draws it
                x = x[offset:offset + len(local)]
                model.noise_rows = (offset, len(idx))
            lr = config.learning_rate(step, batches)
            for group in optimizer.param_groups:
                group["lr"] = lr
            beta = config.kl_weight(step + 1, batches)
            with amp.autocast():
                terms = loss_of(x, beta, gen, labels=None if train_labels is None else train_labels.index_select(0, local),
                                free_bits=config.free_bits, iw_samples=config.iw_samples)
            optimizer.zero_grad(set_to_none=True)
            # the gradient of the batch's mean: ranks' shards may differ by one example
            amp.backward(terms.loss if not world.distributed else terms.loss * (world.size * len(local) / len(idx)))
            if config.grad_clip:
                amp.unscale(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            amp.step(optimizer)
            step += 1
            loss = terms.loss.detach()
            losses[i - 1] = loss
            sums += torch.stack((terms.recon.detach().sum(), terms.kl.detach().sum(), loss * len(local)))
            self.reporter.step(i, loss)
            if i % CHECK_STEPS == 0:
                self._check_finite(epoch, i, losses, sums)
            stop = self.stop.received is not None
            if world.distributed:  # all ranks stop at the same step: they agree every CHECK_STEPS
                stop = i % CHECK_STEPS == 0 and world.any(stop, device)
            if stop or (config.save_every and step % config.save_every == 0 and i < batches):
                self._save(epoch, (i, order, sums, time.perf_counter() - started), losses)
                if stop:
                    raise self._stopped(f"in epoch {epoch} at step {i} of {batches}")
        self._check_finite(epoch, batches, losses, sums)
        train_seconds = time.perf_counter() - started
        train_recon, train_kl, objective = (world.sum_(sums.clone()) / n).tolist()
        test = evaluate_split(model, *self.test)
        record = {
            "epoch": epoch,
            "train_loss": train_recon + train_kl,  # the negative ELBO, whatever the objective
            "train_objective": objective,  # what was minimised (beta, free bits, IWAE)
            "kl_weight": beta,  # the weight of the KL term at the end of the epoch (below --beta during warm-up)
            "lr": lr,  # the learning rate of the last step
            "train_recon": train_recon,
            "train_kl": train_kl,
            "test_loss": test["loss"],
            "test_recon": test["recon"],
            "test_kl": test["kl"],
            "seconds": train_seconds,
        }
        if not math.isfinite(test["loss"]):
            raise TrainingError(f"the test loss became non-finite after epoch {epoch}; {self._kept()}; "
                                f"try a smaller --lr or --grad-clip")
        self.meta["metrics"] = self.metrics + [record]
        self.meta["epoch"] = epoch
        self._save(epoch, None, losses)
        self.metrics.append(record)  # only once it is on disk
        self.reporter.epoch_end(record)
        return record

    def _check_finite(self, epoch: int, steps: int, losses: torch.Tensor, sums: torch.Tensor) -> None:
        """Stop with the first non-finite step named; a host synchronisation, so only every
        ``CHECK_STEPS`` steps and before each checkpoint."""
        if bool(torch.isfinite(self.world.sum_(sums.clone())).all()):  # the same answer on every rank
            return
        bad = (~torch.isfinite(losses[:steps])).nonzero()
        where = f"at step {int(bad[0]) + 1} of {self.batches}" if len(bad) else f"by step {steps} of {self.batches}"
        raise TrainingError(f"the training loss or its gradients became non-finite in epoch {epoch} {where}; "
                            f"{self._kept()}; try a smaller --lr or --grad-clip")

    def _save(self, epoch: int, partial: Optional[tuple], losses: torch.Tensor) -> None:
        """Write the checkpoint: after an epoch (``partial`` None, ``self.meta`` already holds its
        metrics) or inside one (``partial``: steps done, the epoch's order, running sums,
        seconds). Never over a good checkpoint with non-finite weights."""
        meta, extra = self.meta, {"rng.train": self.gen.get_state(), **self.amp.state()}
        if partial is not None:
            i, order, sums, seconds = partial
            self._check_finite(epoch, i, losses, sums)
            meta = {**meta, "progress": {"epoch": epoch, "step": i, "seconds": seconds}}
            extra.update({"progress.order": order, "progress.sums": self.world.sum_(sums.clone()).double()})
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise TrainingError(f"the weights became non-finite in epoch {epoch}; nothing of it was saved; "
                                f"{self._kept()}; try a smaller --lr or --grad-clip")
        if self.world.main:  # one writer
            checkpoint.save(self.path, self.model, meta, optimizer=self.optimizer, rng=True, extra=extra)
        self.saved = self._describe_saved(meta["epoch"], None if partial is None else partial[0])


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


