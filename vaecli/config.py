"""The settings of a training run, each declared once.

A setting is one field of ``TrainConfig``, declared with ``setting(default, help, group, ...)``.
Everything else is generated from that declaration: the ``vae train`` option (its flag, help,
help panel and type), the checks of its value, the keys a recipe or a TOML recipe file may set,
and whether the line that repeats a run (``vae info``) shows it. Adding a setting is one field
here; the trainer then reads it from the config. The groups say who uses a setting:

- ``model``: what is built (dataset-independent parts and their sizes);
- ``objective``: what is minimised;
- ``optimiser``: how it is minimised;
- ``data``: what it is trained on;
- ``run``: the machine and the files of one run; never set by a recipe.

This module imports no torch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from . import schedules
from .errors import UsageError, unknown_name
from .options import seed64

__all__ = ["TrainConfig", "setting", "settings", "flag_of", "GROUPS", "Setting"]

GROUPS = ("model", "objective", "optimiser", "data", "run")
PANELS = {"model": "Model", "objective": "Objective", "optimiser": "Optimisation", "data": "Data", "run": "Run"}
MAX_IW_SAMPLES = 10_000  # samples per training example of the IWAE bound


@dataclass(frozen=True)
class Setting:
    """What a field's declaration says beyond its type and default."""

    name: str
    help: str
    group: str
    flag: str  # the vae train option ("--lr"), or DATASET for the argument; "" when there is none
    aliases: tuple = ()  # more names of the option ("-e", an old spelling)
    choices: tuple = ()  # the allowed values, checked with ``choice_name`` naming them in the error
    choice_name: str = ""  # what an unknown choice is called in the error ("model kind")
    minimum: Optional[float] = None  # the smallest value allowed (floats must also be finite)
    positive: bool = False  # a number above 0
    maximum: Optional[float] = None
    repeat: bool = True  # shown in the line that repeats a run (not where its files went)
    metavar: Optional[str] = None
    parent: str = ""  # the setting this one belongs to: a recipe's value is dropped when the user changes that one

    @property
    def recipe(self) -> bool:
        """Whether a recipe may set it (the run's machine and files are not a recipe's)."""
        return self.group != "run"

    @property
    def options(self) -> bool:
        """A table of a part's options (``--arch-option KEY=VALUE``, repeatable)."""
        return self.name.endswith("_options")


def setting(
    default: Any,
    help: str,
    group: str,
    *,
    flag: Optional[str] = None,
    aliases: tuple = (),
    choices: tuple = (),
    choice_name: str = "",
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    positive: bool = False,
    repeat: bool = True,
    metavar: Optional[str] = None,
    parent: str = "",
) -> Any:
    """A field of ``TrainConfig`` with what the command line, the checks and recipes need.
    ``flag`` defaults to ``--name-with-dashes`` (``--arch-option`` for ``arch_options``); ``""``
    declares a setting that has no option (it is recorded, not typed)."""
    assert group in GROUPS, group
    meta = {
        "help": help,
        "group": group,
        "flag": flag,
        "aliases": tuple(aliases),
        "choices": tuple(choices),
        "choice_name": choice_name,
        "minimum": minimum,
        "maximum": maximum,
        "positive": positive,
        "repeat": repeat,
        "metavar": metavar,
        "parent": parent,
    }
    if isinstance(default, (dict, list)):
        return field(default_factory=type(default), metadata={"vaecli": meta})
    return field(default=default, metadata={"vaecli": meta})


@dataclass
class TrainConfig:
    """Everything that defines a training run; the options of ``vae train``."""

    # -- data --
    dataset: str = setting(
        "shapes",
        "Dataset: shapes (built in, no download), mnist, fashion-mnist, kmnist, emnist, cifar10, binarized-mnist, celeba, omniglot, svhn, cifar100, folder:PATH (a tree of images), tensor:PATH (.npy/.npz/.safetensors), or one from a plugin.",
        "data",
        flag="DATASET",
    )
    dataset_options: dict = setting(
        {},
        "Dataset option KEY=VALUE (repeatable); `vae plugins --details` lists each part's options. E.g. n_train=5000.",
        "data",
        aliases=("--data-option",),
        parent="dataset",
    )
    binarize: str = setting(
        "none",
        "For bernoulli: none (grey levels), static (one fixed draw) or dynamic (a new draw every batch, the standard for NLLs).",
        "data",
        choices=("none", "static", "dynamic"),
        choice_name="binarization",
    )
    # -- model --
    model: str = setting(
        "vae",
        "Model family: vae; cvae (conditioned on the class); ae; iwae, vamp, wae, vqvae, ... (`vae plugins` lists them).",
        "model",
    )
    model_options: dict = setting(
        {},
        "Model family option KEY=VALUE (repeatable); `vae plugins --details` lists each family's options. E.g. k=50.",
        "model",
        parent="model",
    )
    arch: str = setting("mlp", "Encoder/decoder architecture: mlp, conv, ...", "model", aliases=("-a",))
    arch_options: dict = setting(
        {},
        "Architecture option KEY=VALUE (repeatable); `vae plugins --details` lists each part's options. E.g. hidden=512,256 activation=tanh.",
        "model",
        parent="arch",
    )
    likelihood: str = setting(
        "auto",
        "Decoder likelihood: auto (the data's own: bernoulli for images, gaussian for vectors, negbin for counts, table for tables), bernoulli, continuous-bernoulli, gaussian, logistic, poisson, negbin, table, ...",
        "model",
        aliases=("-l",),
    )
    likelihood_options: dict = setting(
        {},
        "Likelihood option KEY=VALUE (repeatable); `vae plugins --details` lists each part's options. E.g. learn_sigma=shared.",
        "model",
        parent="likelihood",
    )
    latent_dim: int = setting(20, "Latent dimensions.", "model", aliases=("-z",), minimum=1)
    # -- objective --
    beta: float = setting(1.0, "Weight of the KL term (1 is the ELBO; >1 a beta-VAE).", "objective", minimum=0)
    kl_warmup: float = setting(
        0.0, "Raise the KL weight linearly from 0 to --beta over this many epochs.", "objective", minimum=0
    )
    free_bits: float = setting(
        0.0,
        "Free bits: nats of KL per latent dimension that cost nothing (Kingma et al. 2016).",
        "objective",
        minimum=0,
    )
    iw_samples: int = setting(
        1,
        "Train on the importance-weighted bound with K samples (IWAE, Burda et al. 2015); 1 is the ELBO.",
        "objective",
        aliases=("-k",),
        minimum=1,
        maximum=MAX_IW_SAMPLES,
    )
    # -- optimiser --
    epochs: int = setting(10, "Epochs to train.", "optimiser", aliases=("-e",), minimum=1)
    batch_size: int = setting(128, "Examples per batch.", "optimiser", aliases=("-b",), minimum=1)
    lr: float = setting(1e-3, "Learning rate.", "optimiser", positive=True)
    optimizer: str = setting(
        "adam",
        "adam, or adamw (decoupled weight decay).",
        "optimiser",
        choices=("adam", "adamw"),
        choice_name="optimizer",
    )
    weight_decay: Optional[float] = setting(
        None, "Weight decay. Default: 0 for adam, 0.01 for adamw.", "optimiser", minimum=0
    )
    lr_schedule: str = setting(
        "constant",
        "constant; cosine (to 0 over the run); step (times --lr-gamma every --lr-step epochs); multistep (times --lr-gamma after each of --lr-milestones); burda (3^i epochs at --lr times 10^(-i/7), i=0..7: 3280 epochs, Burda et al. 2015).",
        "optimiser",
        choices=schedules.LR_SCHEDULES,
        choice_name="learning-rate schedule",
    )
    lr_step: int = setting(
        0, "Epochs between the steps of --lr-schedule step.", "optimiser", minimum=0, parent="lr_schedule"
    )
    lr_gamma: float = setting(
        0.1, "Factor of each step of --lr-schedule step or multistep.", "optimiser", parent="lr_schedule"
    )
    lr_milestones: list = setting(
        [],
        "Epochs after which --lr-schedule multistep multiplies the rate by --lr-gamma, e.g. 200,350.",
        "optimiser",
        metavar="EPOCHS",
        parent="lr_schedule",
    )
    grad_clip: float = setting(0.0, "Clip the gradient norm to this (0: no clipping).", "optimiser", minimum=0)
    seed: int = setting(0, "Seed of initialisation, batching and noise.", "optimiser")
    # -- run --
    ema: float = setting(
        0.0,
        "Keep an exponential moving average of the weights with this decay (e.g. 0.999); the test loss and the checkpoint use the averaged weights (0: none).",
        "optimiser",
        minimum=0,
        maximum=0.999999,
    )
    early_stop: int = setting(
        0,
        "Stop when the test loss has not improved for this many epochs (0: never); with --keep-best the best checkpoint is kept.",
        "optimiser",
        minimum=0,
    )
    keep_best: bool = setting(
        False,
        "Keep the checkpoint of the best test loss as CKPT.best.safetensors beside the last one.",
        "run",
    )
    device: str = setting("auto", "auto, cpu, cuda or mps.", "run")
    precision: str = setting(
        "auto",
        "Arithmetic of the training steps: fp32; bf16 or fp16 mixed precision (weights, optimizer and loss stay fp32; fp16 with loss scaling); auto: bf16 where the GPU or CPU has it natively, else fp32.",
        "run",
        choices=("auto", "fp32", "bf16", "fp16"),
        choice_name="precision",
    )
    compile: bool = setting(
        False,
        "Compile the model's objective with torch.compile (a C++ compiler on the CPU, Triton on GPUs); pays off on long runs. --no-compile turns it off when resuming such a run.",
        "run",
        flag="--compile/--no-compile",
    )
    max_memory: float = setting(
        0.0,
        "GiB a training step may hold: a model and batch that need more are refused before they are built, and the importance samples of IWAE-type families get what is left (decoded in chunks and recomputed in backward, with the same result). 0: the memory free at the start.",
        "run",
        minimum=0,
        repeat=False,
    )
    save_every: int = setting(
        0,
        "Also write the checkpoint every this many optimisation steps inside an epoch (0: after each epoch only).",
        "run",
        minimum=0,
        repeat=False,
    )
    data_dir: Optional[str] = setting(
        None,
        "Where datasets live (MNIST in DIR/MNIST/raw). Default: ~/.cache/vaecli/data or $VAECLI_DATA_DIR.",
        "run",
        repeat=False,
    )
    download: bool = setting(
        True,
        "Download a dataset whose files are missing (--no-download: fail instead).",
        "run",
        flag="--download/--no-download",
        repeat=False,
    )
    out: Optional[str] = setting(
        None,
        "Checkpoint file (.safetensors). Default: DATASET-ARCH.safetensors here, numbered rather than overwritten.",
        "run",
        aliases=("-o",),
        repeat=False,
    )
    force: bool = setting(False, "Overwrite an existing -o checkpoint.", "run", repeat=False)
    viz_dir: Optional[str] = setting(
        None,
        "Write pictures of every epoch here (reconstructions, prior samples, latent scatter) and training.gif at the end.",
        "run",
        repeat=False,
    )
    tensorboard: Optional[str] = setting(
        None,
        "Log metrics and pictures for TensorBoard into this folder (pip install tensorboard).",
        "run",
        repeat=False,
    )
    mlflow: bool = setting(
        False,
        "Log the run to MLflow: settings, each epoch's metrics and pictures, the checkpoint.",
        "run",
        repeat=False,
    )
    mlflow_uri: Optional[str] = setting(
        None,
        "The MLflow store (implies --mlflow); default $MLFLOW_TRACKING_URI, else mlflow.db beside the checkpoint.",
        "run",
        repeat=False,
    )
    recipe: Optional[dict] = setting(
        None, "The recipe the settings came from, as recorded (--recipe chooses it).", "run", flag="", repeat=False
    )

    def check(self) -> None:
        """Each setting on its own (from its declaration) and in combination; the names of parts
        are checked against the registry when the model is built (``vaecli.factory``)."""
        for s in settings():
            check_value(s, getattr(self, s.name))
        if isinstance(self.seed, int) and not isinstance(self.seed, bool):
            self.seed = seed64(self.seed)  # any whole number: reduced modulo 2**64, as torch takes it
        if self.iw_samples > 1 and (self.beta != 1 or self.kl_warmup or self.free_bits):
            raise UsageError(
                "--iw-samples trains on the importance-weighted bound, which has no separate "
                "KL term: it does not combine with --beta, --kl-warmup or --free-bits"
            )
        schedules.check(self.lr_schedule, self.lr_step, self.lr_gamma, self.lr_milestones)

    def kl_weight(self, step: int, batches: int) -> float:
        """beta after ``step`` optimisation steps (see ``schedules.kl_weight``)."""
        return schedules.kl_weight(self.beta, self.kl_warmup, step, batches)

    def learning_rate(self, step: int, batches: int) -> float:
        """The learning rate of step ``step`` (see ``schedules.learning_rate``)."""
        return schedules.learning_rate(
            self.lr_schedule,
            self.lr,
            step,
            batches,
            epochs=self.epochs,
            gamma=self.lr_gamma,
            every=self.lr_step,
            milestones=self.lr_milestones,
        )


def settings() -> list[Setting]:
    """Every declared setting, in declaration order."""
    return list(_settings())


@functools.cache
def _settings() -> tuple[Setting, ...]:
    out = []
    for f in dataclasses.fields(TrainConfig):
        meta = dict(f.metadata["vaecli"])
        flag = meta.pop("flag")
        if flag is None:
            flag = "--" + (f.name[:-1] if f.name.endswith("_options") else f.name).replace("_", "-")
        out.append(Setting(name=f.name, flag=flag, **meta))
    return tuple(out)


@functools.cache
def _default(name: str) -> Any:
    """A setting's default value."""
    return getattr(TrainConfig(), name)


def by_name() -> dict[str, Setting]:
    return {s.name: s for s in settings()}


def flag_of(name: str) -> str:
    """How the command line spells a setting: ``--lr``, ``--no-download``, ``DATASET``."""
    s = by_name()[name]
    if s.flag.startswith("--") and "/" in s.flag:
        on, off = s.flag.split("/")
        return off if _default(name) else on  # the switch a user types to change it
    return s.flag or name


def check_value(s: Setting, value: Any) -> None:
    """One setting's value against its declaration (choices, bounds)."""
    flag = flag_of(s.name)
    if s.choices and value not in s.choices:
        raise unknown_name(s.choice_name or s.name, value, list(s.choices))
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, int) and isinstance(_default(s.name), int):
        if s.minimum is not None and value < s.minimum:
            raise UsageError(f"{flag} must be at least {int(s.minimum)}, got {value}")
        if s.maximum is not None and value > s.maximum:
            raise UsageError(f"{flag} must be at most {int(s.maximum)}, got {value}")
        return
    if s.positive and not (math.isfinite(value) and value > 0):
        raise UsageError(f"{flag} must be a positive number, got {value}")
    if s.minimum is not None and not (math.isfinite(value) and value >= s.minimum):
        raise UsageError(f"{flag} must be a number >= {s.minimum:g}, got {value}")
