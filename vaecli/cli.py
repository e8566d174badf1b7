"""The ``vae`` command: parse options, call the library, render with Rich.

Heavy imports (torch, torchvision) happen inside the commands that need them, so that
``vae --help`` and ``vae plugins`` start fast.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup
from typing_extensions import Annotated

from . import __version__
from .errors import UsageError, VaeError

try:  # newer typer vendors click as typer._click; older ones use click itself
    from typer._click.core import ParameterSource
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover
    from click.core import ParameterSource
    from click.exceptions import ClickException, NoArgsIsHelpError
Abort = typer.Abort

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

MAX_SAMPLES = 10_000


def _debug_enabled(ctx: Any = None) -> bool:
    if ctx is not None and isinstance(ctx.obj, dict) and ctx.obj.get("debug"):
        return True
    return os.environ.get("VAECLI_DEBUG", "") not in ("", "0")


def _error_line(message: str) -> None:
    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    where = f" (rank {rank} of {world})" if rank not in ("", "0") else ""  # under torchrun, every rank may say it
    err.print(f"[bold red]error{where}:[/] {escape(message)}")


class _Group(TyperGroup):
    """Turns ``VaeError`` and click's usage errors into one red line and an exit code
    (2 for bad usage or input, 1 at run time); Ctrl-C into exit 130."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            _error_line(exc.format_message() + hint)
            sys.exit(exc.exit_code)
        except Abort:
            err.print("[yellow]aborted[/]")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except VaeError as exc:
            if _debug_enabled(ctx):
                raise
            _error_line(str(exc))
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if _debug_enabled(ctx):
                raise
            err.print("[yellow]interrupted[/]")
            ctx.exit(130)


app = typer.Typer(
    cls=_Group,
    name="vae",
    help="A workbench for variational auto-encoders: train one, then sample and inspect it.\n\n"
         "Start with:  vae train --epochs 2  (the built-in shapes dataset, no download)",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        out.print(f"vae {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    ctx.obj = {"debug": debug}


def _positive(value: int, flag: str, maximum: Optional[int] = None) -> int:
    if value < 1:
        raise UsageError(f"{flag} must be at least 1, got {value}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{flag} must be at most {maximum}, got {value}")
    return value


# -- train ------------------------------------------------------------------------------------


class _ProgressReporter:
    """Draws a Rich progress bar during each epoch and a summary line after it."""

    REFRESH_S = 0.25  # how often the running loss is read back from the device

    def __init__(self) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,  # no bar (nor its blank line) in logs and pipes
        )
        self.task = None
        self.started = False
        self.kind = "vae"
        self._last = 0.0

    def start(self, config, path, device, data) -> None:
        import torch

        self.kind = config.model
        objective = _fmt_objective(dataclasses.asdict(config)) if config.model != "ae" else ""
        extras = [x for x in (objective if objective != "ELBO" else "",
                              f"binarized {config.binarize}" if config.binarize != "none" else "") if x]
        err.print(
            f"Training {'an' if config.model == 'ae' else 'a'} {config.model.upper()} ({config.arch}, {config.likelihood}, latent {config.latent_dim}"
            f"{'; ' + ', '.join(extras) if extras else ''}) "
            f"on {config.dataset} ({len(data.splits.train)} train / {len(data.splits.test)} test images of "
            f"{'x'.join(map(str, data.input_shape))}) on {device}"
            f"{'' if config.precision == 'fp32' else f' in {config.precision} mixed precision'}"
            f"{', compiled' if config.compile else ''}, torch {torch.__version__}",
        )
        if config.recipe:
            from .recipes import changes

            rec = config.recipe
            changed = [k for k in changes(dataclasses.asdict(config)) if k in rec["settings"]]
            err.print(escape(f"Recipe: {rec['name']}" + (f" ({rec['file']})" if rec.get("file") else "")
                             + (f"; changed by your options: {', '.join(changed)}" if changed else "")))
        err.print(f"Checkpoint: {path}")
        self.progress.start()
        self.started = True

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        import time

        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task("train", total=batches, epoch=f"{epoch}/{epochs}", loss="…")
        self._last = time.perf_counter()

    def step(self, done: int, loss) -> None:
        import time

        now = time.perf_counter()
        fields = {}
        if now - self._last >= self.REFRESH_S:
            fields["loss"] = f"{loss.item():.2f}"
            self._last = now
        self.progress.update(self.task, completed=done, **fields)

    def epoch_end(self, m: dict) -> None:
        if self.kind == "ae":
            summary = f"test recon [bold]{m['test_recon']:.2f}[/] nats"
        else:
            summary = (f"test -ELBO [bold]{m['test_loss']:.2f}[/] nats "
                       f"(recon {m['test_recon']:.2f} + KL {m['test_kl']:.2f})")
        self.progress.console.print(
            f"epoch {m['epoch']:>3}  train {m['train_loss']:.2f}  {summary}  {m['seconds']:.1f} s"
        )

    def warn(self, message: str) -> None:
        self.progress.console.print(f"[yellow]vae: warning:[/] {escape(message)}")

    def close(self) -> None:
        if self.started:
            self.progress.stop()


def _options_help(kind: str) -> str:
    return f"{kind} option KEY=VALUE (repeatable); `vae plugins --details` lists each part's options."


@app.command()
def train(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="Dataset: shapes (built in, no download), mnist, fashion-mnist, kmnist, emnist, cifar10, folder:PATH (a tree of images), tensor:PATH (.npy/.npz/.safetensors), or one from a plugin.")] = "shapes",
    arch: Annotated[str, typer.Option("--arch", "-a", help="Encoder/decoder architecture: mlp, conv, ...")] = "mlp",
    likelihood: Annotated[str, typer.Option("--likelihood", "-l", help="Decoder likelihood: bernoulli, continuous-bernoulli, gaussian, logistic, ...")] = "bernoulli",
    model: Annotated[str, typer.Option("--model", help="vae; cvae, conditioned on the class (sample --label draws one); ae, a plain deterministic auto-encoder.")] = "vae",
    latent_dim: Annotated[int, typer.Option("--latent-dim", "-z", help="Latent dimensions.")] = 20,
    epochs: Annotated[int, typer.Option("--epochs", "-e", help="Epochs to train.")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Examples per batch.")] = 128,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.", rich_help_panel="Optimisation")] = 1e-3,
    optimizer: Annotated[str, typer.Option("--optimizer", help="adam, or adamw (decoupled weight decay).", rich_help_panel="Optimisation")] = "adam",
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", help="Weight decay. Default: 0 for adam, 0.01 for adamw.", rich_help_panel="Optimisation", show_default=False)] = None,
    lr_schedule: Annotated[str, typer.Option("--lr-schedule", help="constant; cosine (to 0 over the run); step (times --lr-gamma every --lr-step epochs); multistep (times --lr-gamma after each of --lr-milestones); burda (3^i epochs at --lr times 10^(-i/7), i=0..7: 3280 epochs, Burda et al. 2015).", rich_help_panel="Optimisation")] = "constant",
    lr_step: Annotated[int, typer.Option("--lr-step", help="Epochs between the steps of --lr-schedule step.", rich_help_panel="Optimisation")] = 0,
    lr_gamma: Annotated[float, typer.Option("--lr-gamma", help="Factor of each step of --lr-schedule step or multistep.", rich_help_panel="Optimisation")] = 0.1,
    lr_milestones: Annotated[Optional[str], typer.Option("--lr-milestones", help="Epochs after which --lr-schedule multistep multiplies the rate by --lr-gamma, e.g. 200,350.", rich_help_panel="Optimisation", show_default=False)] = None,
    grad_clip: Annotated[float, typer.Option("--grad-clip", help="Clip the gradient norm to this (0: no clipping).", rich_help_panel="Optimisation")] = 0.0,
    recipe: Annotated[Optional[str], typer.Option("--recipe", help="Start from a recipe: a name from `vae recipes` (pythae-vae, burda-iwae, ...) or a NAME.toml file of the same form; the options you give win over it.", show_default=False)] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the run in this checkpoint up to --epochs in total, writing to it; its dataset and settings are used (--data-dir, --no-download, --device and --save-every may be given again).", rich_help_panel="Checkpoints", show_default=False)] = None,
    save_every: Annotated[int, typer.Option("--save-every", help="Also write the checkpoint every this many optimisation steps inside an epoch (0: after each epoch only).", rich_help_panel="Checkpoints")] = 0,
    beta: Annotated[float, typer.Option("--beta", help="Weight of the KL term (1 is the ELBO; >1 a beta-VAE).", rich_help_panel="Objective")] = 1.0,
    kl_warmup: Annotated[float, typer.Option("--kl-warmup", help="Raise the KL weight linearly from 0 to --beta over this many epochs.", rich_help_panel="Objective")] = 0.0,
    free_bits: Annotated[float, typer.Option("--free-bits", help="Free bits: nats of KL per latent dimension that cost nothing (Kingma et al. 2016).", rich_help_panel="Objective")] = 0.0,
    iw_samples: Annotated[int, typer.Option("--iw-samples", "-k", help="Train on the importance-weighted bound with K samples (IWAE, Burda et al. 2015); 1 is the ELBO.", rich_help_panel="Objective")] = 1,
    binarize: Annotated[str, typer.Option("--binarize", help="For bernoulli: none (grey levels), static (one fixed draw) or dynamic (a new draw every batch, the standard for NLLs).", rich_help_panel="Objective")] = "none",
    seed: Annotated[int, typer.Option("--seed", help="Seed of initialisation, batching and noise.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="Arithmetic of the training steps: fp32; bf16 or fp16 mixed precision (weights, optimizer and loss stay fp32; fp16 with loss scaling); auto: bf16 where the GPU or CPU has it natively, else fp32.", rich_help_panel="Speed")] = "auto",
    nproc: Annotated[int, typer.Option("--nproc", help="Train on N processes of this machine with DistributedDataParallel (torchrun; NCCL on GPUs, gloo on the CPU); each process takes its share of every batch.", rich_help_panel="Speed")] = 1,
    compile_model: Annotated[bool, typer.Option("--compile", help="Compile the model's loss with torch.compile (a C++ compiler on the CPU, Triton on GPUs); pays off on long runs.", rich_help_panel="Speed")] = False,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where datasets live (MNIST in DIR/MNIST/raw). Default: ~/.cache/vaecli/data or $VAECLI_DATA_DIR.")] = None,
    no_download: Annotated[bool, typer.Option("--no-download", help="Never download; fail if the files are missing.")] = False,
    output: Annotated[Optional[Path], typer.Option("--out", "-o", help="Checkpoint file (.safetensors). Default: DATASET-ARCH.safetensors here, numbered rather than overwritten.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing -o checkpoint.")] = False,
    arch_option: Annotated[Optional[List[str]], typer.Option("--arch-option", help=_options_help("Architecture") + " E.g. hidden=512,256 activation=tanh.")] = None,
    likelihood_option: Annotated[Optional[List[str]], typer.Option("--likelihood-option", help=_options_help("Likelihood") + " E.g. learn_sigma=shared.")] = None,
    data_option: Annotated[Optional[List[str]], typer.Option("--data-option", help=_options_help("Dataset") + " E.g. n_train=5000.")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="folder: resize the shorter side to N and centre-crop N x N (the dataset option image_size).", show_default=False)] = None,
    grayscale: Annotated[bool, typer.Option("--grayscale", help="folder: convert the images to grey (the dataset option grayscale).")] = False,
    viz_dir: Annotated[Optional[Path], typer.Option("--viz-dir", help="Write pictures of every epoch here (reconstructions, prior samples, latent scatter) and training.gif at the end.")] = None,
    tensorboard: Annotated[Optional[Path], typer.Option("--tensorboard", help="Log metrics and pictures for TensorBoard into this folder (pip install tensorboard).")] = None,
) -> None:
    """Train a VAE and write a checkpoint after every epoch.

    Prints the test negative ELBO (nats per example) after each epoch, and appends it to
    CKPT.metrics.jsonl beside the checkpoint. The checkpoint is replaced atomically, so a crash
    or a kill leaves the last one intact; Ctrl-C saves the run where it is and says how to
    continue it: vae train --resume CKPT --epochs N.
    """
    from .options import parse_pairs
    from .training import TrainConfig, run
    from .training import resume as resume_run

    if nproc != 1:
        _launch_processes(ctx, nproc)
        return
    explicit = {p for p in ctx.params if ctx.get_parameter_source(p) not in (ParameterSource.DEFAULT, None)}
    if resume is not None and recipe is not None:
        raise UsageError("--recipe and --resume do not combine: a resumed run keeps the settings and the recipe "
                         "recorded in its checkpoint; drop --recipe")
    if resume is not None:
        allowed = {"resume", "epochs", "data_dir", "no_download", "device", "save_every"}
        given = [p for p in ctx.params if p in explicit and p not in allowed]
        if given:
            spelled = {p.name: p.opts[0] if p.opts[0].startswith("-") else p.name.upper() for p in ctx.command.params}
            flags = ", ".join(spelled.get(p, p) for p in given)
            raise UsageError(f"--resume continues a run with the settings in its checkpoint; {flags} "
                             f"cannot change them (only --epochs, --data-dir, --no-download, --device "
                             f"and --save-every can be given)")
        reporter = _ProgressReporter()
        try:
            result = resume_run(resume, epochs if "epochs" in explicit else None,
                                data_dir=str(data_dir) if data_dir else None, download=not no_download,
                                device=device if "device" in explicit else None,
                                save_every=save_every if "save_every" in explicit else None, reporter=reporter)
        finally:
            reporter.close()
        _trained(result, result.model.kind, None)
        return

    dataset_options = parse_pairs(data_option, "--data-option")
    for key, value, given in (("image_size", image_size, image_size is not None), ("grayscale", "true", grayscale)):
        if given:
            if key in dataset_options:
                raise UsageError(f"--{key.replace('_', '-')} and --data-option {key}= both given; use one")
            dataset_options[key] = str(value)
    config = TrainConfig(
        dataset=dataset, dataset_options=dataset_options,
        arch=arch, arch_options=parse_pairs(arch_option, "--arch-option"),
        likelihood=likelihood, likelihood_options=parse_pairs(likelihood_option, "--likelihood-option"),
        model=model, latent_dim=latent_dim, epochs=epochs, batch_size=batch_size, lr=lr, beta=beta,
        kl_warmup=kl_warmup, free_bits=free_bits, iw_samples=iw_samples, binarize=binarize,
        optimizer=optimizer, weight_decay=weight_decay, lr_schedule=lr_schedule, lr_step=lr_step,
        lr_gamma=lr_gamma, lr_milestones=_int_list(lr_milestones, "--lr-milestones"), grad_clip=grad_clip,
        save_every=save_every, precision=precision, compile=compile_model,
        seed=seed, device=device, data_dir=str(data_dir) if data_dir else None,
        download=not no_download, out=str(output) if output else None, force=force,
        viz_dir=str(viz_dir) if viz_dir else None, tensorboard=str(tensorboard) if tensorboard else None,
    )
    if recipe is not None:
        from . import recipes

        recipes.apply(config, recipes.resolve(recipe), {_PARAM_FIELDS.get(p, p) for p in explicit})
    reporter = _ProgressReporter()
    try:
        result = run(config, reporter=reporter)
    finally:
        reporter.close()
    _trained(result, config.model, config.viz_dir)


def _launch_processes(ctx: typer.Context, nproc: int) -> None:
    """``--nproc N``: the same command line, less --nproc, under torchrun with N processes."""
    from . import distributed

    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}")
    if distributed.from_environment().distributed:
        raise UsageError("--nproc launches torchrun; this process already runs under it (give the number of "
                         "processes to torchrun's --nproc-per-node)")
    args: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name == "nproc" or ctx.get_parameter_source(param.name) in (ParameterSource.DEFAULT, None):
            continue
        if isinstance(param, typer.core.TyperArgument):
            args.insert(0, str(value))
        elif getattr(param, "is_flag", False):
            if value:
                args.append(param.opts[0])
        elif isinstance(value, (list, tuple)):
            for v in value:
                args += [param.opts[0], str(v)]
        else:
            args += [param.opts[0], str(value)]
    code = distributed.launch(nproc, args)
    if code:
        raise typer.Exit(code)


# `vae train` parameters whose TrainConfig field has another name
_PARAM_FIELDS = {"arch_option": "arch_options", "likelihood_option": "likelihood_options",
                 "data_option": "dataset_options", "image_size": "dataset_options", "grayscale": "dataset_options",
                 "compile_model": "compile", "output": "out", "no_download": "download"}


def _int_list(text: Optional[str], flag: str) -> list:
    """``"200,350"`` -> ``[200, 350]``; anything else is a one-line error."""
    if text is None:
        return []
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.lstrip("-").isdigit() for p in parts):
        raise UsageError(f"{flag} takes whole numbers separated by commas (e.g. 200,350), got {text!r}")
    return [int(p) for p in parts]


def _trained(result, kind: str, viz_dir: Optional[str]) -> None:
    if not result.main:
        return  # rank 0 says it
    last = result.metrics[-1]
    score = (f"test reconstruction {last['test_recon']:.2f}" if kind == "ae"
             else f"test -ELBO {last['test_loss']:.2f}")
    out.print(f"Saved {result.path} after {last['epoch']} epoch{'s' if last['epoch'] != 1 else ''}: "
              f"{score} nats per example.")
    if viz_dir:
        out.print(f"Pictures of each epoch and the animation: {Path(viz_dir) / 'training.gif'}")
    out.print(f"Next: vae sample {result.path} -o samples.png   |   vae info {result.path}")


# -- sample -----------------------------------------------------------------------------------


@app.command()
def sample(
    ckpt: Annotated[Path, typer.Argument(help="A checkpoint written by vae train.", show_default=False)],
    n: Annotated[int, typer.Option("-n", help="How many samples.")] = 64,
    output: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output image (.png). Default: CKPT-samples.png.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the prior draws.")] = 0,
    temperature: Annotated[float, typer.Option("--temperature", "-t", help="Scale of the prior draws (below 1: cleaner, less varied).")] = 1.0,
    nrow: Annotated[Optional[int], typer.Option("--nrow", help="Images per row. Default: a square grid.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="mean: the decoder's mean image; sample: a draw from the likelihood.")] = "mean",
    label: Annotated[Optional[str], typer.Option("--label", help="A class-conditional model (cvae): draw this class (an index or a class name). Default: one class per column.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """Decode draws from the prior into a grid of images."""
    _positive(n, "-n", MAX_SAMPLES)
    if nrow is not None:
        _positive(nrow, "--nrow")
    if not (math.isfinite(temperature) and temperature > 0):
        raise UsageError(f"--temperature must be a positive number, got {temperature}")
    _check_mode(mode)
    import torch

    from . import load, viz

    model = load(ckpt, device)
    output = viz.check_output(output or ckpt.with_name(f"{ckpt.stem}-samples.png"))
    gen = torch.Generator(device=model.device).manual_seed(seed)
    labels = _condition(model, label, n)
    if model.num_classes and label is None and nrow is None and model.num_classes <= 32:
        k = model.num_classes  # image i is of class i % K: a multiple of K columns, one class per column
        nrow = k * max(1, round(math.sqrt(n) / k))
    images = model.sample(n, temperature=temperature, mode=mode, generator=gen, labels=labels)
    width, height = viz.save_grid(images, output, nrow)
    what = f" of class {_class_name(model, int(labels[0]))}" if label is not None else ""
    out.print(f"Wrote {n} samples{what} to {output} ({width}x{height} px).")


# -- shared by the commands that use a trained model ---------------------------------------------

CkptArg = Annotated[Path, typer.Argument(help="A checkpoint written by vae train.", show_default=False)]
INPUT_HELP = ("DATASET:SPLIT (mnist:test), DATASET:SPLIT:INDEX (mnist:test:7), an image file or a "
              "folder of images.")
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="Where datasets live (default: the one the checkpoint was trained with, else ~/.cache/vaecli/data).")]
NoDownloadOpt = Annotated[bool, typer.Option("--no-download", help="Never download a dataset; fail if its files are missing.")]
ModeOpt = Annotated[str, typer.Option("--mode", help="mean: the decoder's mean image; sample: a draw from the likelihood.")]
MAX_GRID = 256  # latents decoded into one picture unless -n says otherwise
MAX_TRAVERSE_ROWS = 64


def _warn(message: str) -> None:
    err.print(f"[yellow]vae: warning:[/] {escape(message)}")


LabelOpt = Annotated[Optional[str], typer.Option("--label", help="A class-conditional model (cvae): decode as this class (an index or a class name).")]


def _class_name(model, index: int) -> str:
    names = model.meta.get("data", {}).get("class_names") or []
    return f"{index} ({names[index]})" if index < len(names) and names[index] != str(index) else str(index)


def _condition(model, label: Optional[str], n: int):
    """The class of each of ``n`` decoded rows: ``--label`` for all, or None (a cvae then
    decodes class i % K in row i). ``--label`` on an unconditional model is an error."""
    import torch

    if label is None:
        return None
    if not model.num_classes:
        raise UsageError(f"--label is for class-conditional models (vae train --model cvae); this is a {model.kind}")
    names = [str(c) for c in model.meta.get("data", {}).get("class_names") or []]
    if label in names:
        index = names.index(label)
    elif label.lstrip("-").isdigit() and 0 <= int(label) < model.num_classes:
        index = int(label)
    else:
        shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
        raise UsageError(f"--label {label}: not a class of this model; give 0 to {model.num_classes - 1}"
                         + (f" or a name: {shown}" if names else ""))
    return torch.full((n,), index, dtype=torch.long)


def _input_labels(model, inputs, label: Optional[str] = None):
    """The class of each input image, which a cvae's encoder is conditioned on (None for other
    models); the input's class names are matched to the model's by name. ``--label`` gives
    unlabelled inputs (image files) their class."""
    import torch

    if not model.num_classes:
        return None
    if inputs.labels is None and label is not None:
        return _condition(model, label, len(inputs))
    if inputs.labels is None:
        raise UsageError(f"{inputs.source}: a class-conditional model needs each image's class; give "
                         f"DATASET:SPLIT, a folder with one subfolder per class, or --label")
    names = [str(c) for c in model.meta.get("data", {}).get("class_names") or []]
    given = [str(c) for c in inputs.class_names or []]
    if not given or given == names:
        return inputs.labels
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise UsageError(f"{inputs.source}: class {unknown[0]!r} is not one of this model's classes "
                         f"({', '.join(names[:20])})")
    return torch.tensor([names.index(given[int(i)]) for i in inputs.labels])


def _check_mode(mode: str) -> str:
    if mode not in ("mean", "sample"):
        raise UsageError(f"--mode must be 'mean' or 'sample', got {mode!r}")
    return mode


def _model(ckpt: Path, device: str):
    from . import load

    return load(ckpt, device)


def _inputs(model, text: Optional[str], data_dir: Optional[Path], no_download: bool, limit: Optional[int] = None):
    """The images an INPUT argument names (at most ``limit``); without one, the test split of
    the checkpoint's dataset."""
    from .data import load_input

    if text is None:
        text = f"{model.meta['data']['dataset']['name']}:test"
    inputs = load_input(text, model.meta, data_dir, download=not no_download, limit=limit)
    for w in inputs.warnings:
        _warn(w)
    return inputs


def _picture_out(output: Optional[Path], ckpt: Path, kind: str, suffixes=None, inputs=()) -> Path:
    """Where a picture goes: ``-o`` or ``CKPT-KIND.png``. Pictures are overwritten (they are
    cheap to remake), but never an image that is also an input of the command."""
    from . import viz

    path = viz.check_output(output or ckpt.with_name(f"{ckpt.stem}-{kind}.png"), suffixes or viz.IMAGE_SUFFIXES)
    for text in inputs:
        if text and path.exists() and Path(text).expanduser().is_file() and path.samefile(Path(text).expanduser()):
            raise UsageError(f"-o {path} is also the input image; choose another output file")
    return path


class _Bar:
    """A transient Rich progress bar over images; ``with _Bar(n, "encoding") as update:``.
    Drawn only for work large enough to wait for."""

    def __init__(self, total: int, label: str, show: bool = True) -> None:
        self.total, self.label, self.show = total, label, show
        self.progress = None

    def __enter__(self):
        if not (self.show and err.is_terminal):
            return lambda done: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(), console=err, transient=True)
        self.progress.start()
        task = self.progress.add_task(self.label, total=self.total)
        return lambda done: self.progress.update(task, completed=done)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


# -- encode -----------------------------------------------------------------------------------


@app.command()
def encode(
    ckpt: CkptArg,
    input: Annotated[str, typer.Argument(help=INPUT_HELP, show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output: .npy (posterior means [N, D]), .safetensors (mean, logvar, labels) or .csv (a table with labels). Default: CKPT-latents.npy.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per batch.")] = 1000,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
) -> None:
    """Encode images into their latent codes (the posterior means and log-variances)."""
    from . import latents
    from .model import encode_all

    _positive(batch_size, "--batch-size")
    output = Path(output or ckpt.with_name(f"{ckpt.stem}-latents.npy")).expanduser()
    latents.check_suffix(output, "-o")
    _check_data_out(output, ckpt, force)
    model = _model(ckpt, device)
    inputs = _inputs(model, input, data_dir, no_download)
    with _Bar(len(inputs), "encoding", show=len(inputs) > 5 * batch_size) as update:
        mean, logvar = encode_all(model, inputs.images, batch_size, update, _input_labels(model, inputs))
    latents.write(output, mean, logvar if model.kind != "ae" else None, inputs.labels, inputs.class_names,
                  {"checkpoint": str(ckpt), "input": inputs.source, "latent_dim": model.latent_dim})
    out.print(f"Wrote the latent codes of {len(mean)} image{'s' if len(mean) != 1 else ''} "
              f"({model.latent_dim} dimensions) to {output}.")


def _check_data_out(output: Path, ckpt: Path, force: bool) -> None:
    from .checkpoint import check_target

    check_target(output)
    if output.exists():
        if output.resolve() == Path(ckpt).expanduser().resolve():
            raise UsageError(f"-o {output} is the checkpoint itself; choose another file")
        if not force:
            raise UsageError(f"{output} already exists; pass --force to overwrite it, or choose another -o")


# -- decode -----------------------------------------------------------------------------------


@app.command()
def decode(
    ckpt: CkptArg,
    latent_file: Annotated[Optional[Path], typer.Argument(metavar="LATENTS", help="A file from vae encode, or a .npy/.csv of shape [N, D].", show_default=False)] = None,
    z: Annotated[Optional[List[str]], typer.Option("--z", help="One latent code as comma-separated numbers (repeatable), e.g. --z 0.5,-1.2,...")] = None,
    n: Annotated[Optional[int], typer.Option("-n", help=f"Decode the first N codes. Default: all, at most {MAX_GRID}.")] = None,
    output: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output image (.png). Default: CKPT-decoded.png.")] = None,
    nrow: Annotated[Optional[int], typer.Option("--nrow", help="Images per row. Default: a square grid.")] = None,
    mode: ModeOpt = "mean",
    seed: Annotated[int, typer.Option("--seed", help="Seed of --mode sample.")] = 0,
    label: LabelOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Decode latent codes into a grid of images."""
    import torch

    from . import latents, viz

    if (latent_file is None) == (not z):
        raise UsageError("give either a LATENTS file or --z values, not both" if latent_file else
                         "give a LATENTS file (from vae encode) or --z 0.1,-2,... ")
    if n is not None:
        _positive(n, "-n", MAX_SAMPLES)
    if nrow is not None:
        _positive(nrow, "--nrow")
    _check_mode(mode)
    codes, file_labels = latents.read(latent_file) if latent_file else (latents.parse_rows(z), None)
    source = f"LATENTS {latent_file}" if latent_file else "--z"
    model = _model(ckpt, device)
    codes = latents.check(codes, model.latent_dim, source)
    output = _picture_out(output, ckpt, "decoded")
    if n is None and len(codes) > MAX_GRID:
        _warn(f"{source} holds {len(codes)} codes; decoding the first {MAX_GRID} (-n to choose)")
        n = MAX_GRID
    codes = codes[:n]
    gen = torch.Generator(device=model.device).manual_seed(seed)
    classes = _condition(model, label, len(codes))
    if classes is None and model.num_classes and file_labels is not None:  # as vae encode wrote them
        classes = file_labels[:len(codes)].long()
    images = model.decode(codes, mode=mode, generator=gen, labels=classes)
    width, height = viz.save_grid(images, output, nrow)
    out.print(f"Wrote {len(images)} decoded images to {output} ({width}x{height} px).")


# -- reconstruct ------------------------------------------------------------------------------


@app.command()
def reconstruct(
    ckpt: CkptArg,
    input: Annotated[Optional[str], typer.Argument(help=INPUT_HELP + " Default: the test split of the checkpoint's dataset.", show_default=False)] = None,
    n: Annotated[int, typer.Option("-n", help="How many images (the first N of INPUT).")] = 16,
    output: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output image (.png). Default: CKPT-reconstructions.png.")] = None,
    nrow: Annotated[int, typer.Option("--nrow", help="Images per row; each row of inputs has its reconstructions below it.")] = 8,
    mode: ModeOpt = "mean",
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
) -> None:
    """Show images above their reconstructions (decoded posterior means)."""
    from . import viz

    _positive(n, "-n", MAX_SAMPLES)
    _positive(nrow, "--nrow")
    _check_mode(mode)
    model = _model(ckpt, device)
    output = _picture_out(output, ckpt, "reconstructions", inputs=(input,))
    inputs = _inputs(model, input, data_dir, no_download, limit=n)
    originals = model.prepare(inputs.images)
    recon = model.reconstruct(inputs.images, mode=mode, labels=_input_labels(model, inputs))
    width, height = viz.save_grid(viz.above(originals, recon, nrow), output, min(nrow, len(originals)))
    count = f"{len(originals)} image{'s' if len(originals) != 1 else ''}"
    out.print(f"Wrote {count} and {'their reconstructions' if len(originals) != 1 else 'its reconstruction'} "
              f"to {output} ({width}x{height} px).")


# -- interpolate ------------------------------------------------------------------------------


@app.command()
def interpolate(
    ckpt: CkptArg,
    a: Annotated[Optional[str], typer.Argument(metavar="[A", help="Start: " + INPUT_HELP + " Without A and B: two draws from the prior.", show_default=False)] = None,
    b: Annotated[Optional[str], typer.Argument(metavar="B]", help="End, named like A.", show_default=False)] = None,
    steps: Annotated[int, typer.Option("--steps", "-s", help="Images along each path, both ends included.")] = 10,
    method: Annotated[str, typer.Option("--method", help="slerp (great circle, White 2016) or lerp (straight line).")] = "slerp",
    pairs: Annotated[int, typer.Option("--pairs", "-k", help="Paths, one per row: the first K images of A and B, or K pairs of prior draws.")] = 1,
    output: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output: .png (one row per path) or .gif (animated there and back). Default: CKPT-interpolation.png.")] = None,
    frame_ms: Annotated[int, typer.Option("--frame-ms", help="Milliseconds per frame of a .gif.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the prior draws.")] = 0,
    mode: ModeOpt = "mean",
    label: Annotated[Optional[str], typer.Option("--label", help="A class-conditional model (cvae): decode the paths as this class. Default: the class of A (with prior ends: class k for path k).")] = None,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
) -> None:
    """Decode the path between two latent codes: of two images, or of two prior draws."""
    import torch

    from . import latents, viz

    if (a is None) != (b is None):
        raise UsageError("give both A and B, or neither (then two prior draws are used)")
    _positive(steps, "--steps", 1000)
    if steps < 2:
        raise UsageError("--steps must be at least 2")
    _positive(pairs, "--pairs", 100)
    if steps * pairs > MAX_SAMPLES:
        raise UsageError(f"--steps {steps} x --pairs {pairs} = {steps * pairs} images; at most {MAX_SAMPLES}")
    _positive(frame_ms, "--frame-ms", 60_000)
    _check_mode(mode)
    if method not in ("slerp", "lerp"):
        raise UsageError(f"--method must be slerp or lerp, got {method!r}")
    model = _model(ckpt, device)
    output = _picture_out(output, ckpt, "interpolation", viz.IMAGE_SUFFIXES + viz.ANIMATION_SUFFIXES, (a, b))
    gen = torch.Generator(device=model.device).manual_seed(seed)
    if a is None and model.kind == "ae":
        raise UsageError("a plain auto-encoder (--model ae) has no prior to draw the ends from; give A and B")
    classes = _condition(model, label, pairs)
    if a is None:
        ends = torch.randn(2, pairs, model.latent_dim, generator=gen, device=model.device)
        start, end = ends[0], ends[1]
        if model.num_classes and classes is None:
            classes = torch.arange(pairs) % model.num_classes
    else:
        (start, a_labels), (end, _) = (_endpoints(model, text, pairs, data_dir, no_download, label)
                                       for text in (a, b))
        classes = a_labels if classes is None else classes
    path = latents.interpolate(start, end, steps, method)  # (K, S, D)
    row_labels = None if classes is None else torch.as_tensor(classes).repeat_interleave(steps)
    images = model.decode(path.reshape(-1, model.latent_dim), mode=mode, generator=gen, labels=row_labels)  # (K*S, C, H, W)
    if output.suffix.lower() == ".gif":
        per_step = images.view(pairs, steps, *images.shape[1:]).transpose(0, 1)  # (S, K, C, H, W)
        order = list(range(steps)) + list(range(steps - 2, 0, -1))  # there and back
        frames = [viz.grid(per_step[i], nrow=pairs) for i in order]
        count = viz.save_gif(frames, output, frame_ms)
        out.print(f"Wrote a {count}-frame animation of {pairs} path(s) of {steps} steps ({method}) to {output}.")
        return
    width, height = viz.save_grid(images, output, steps)
    out.print(f"Wrote {pairs} path(s) of {steps} steps ({method}) to {output} ({width}x{height} px).")


def _endpoints(model, text: str, pairs: int, data_dir, no_download, label=None):
    inputs = _inputs(model, text, data_dir, no_download, limit=pairs)
    if len(inputs) < pairs:
        raise UsageError(f"{text} holds {len(inputs)} image(s); --pairs {pairs} needs {pairs}")
    labels = _input_labels(model, inputs, label)
    labels = None if labels is None else labels[:pairs]
    mean, _ = model.encode(inputs.images[:pairs], labels)
    return mean, labels


# -- plot-latent ------------------------------------------------------------------------------


@app.command("plot-latent")
def plot_latent(
    ckpt: CkptArg,
    input: Annotated[Optional[str], typer.Argument(help=INPUT_HELP + " Default: the test split of the checkpoint's dataset.", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output picture (.png, .pdf, .svg). Default: CKPT-latent.png, CKPT-manifold.png or CKPT-traverse.png.")] = None,
    manifold: Annotated[bool, typer.Option("--manifold", help="Decode a grid over a latent plane, spaced by the inverse normal CDF (Kingma & Welling 2013, fig. 4).")] = False,
    traverse: Annotated[bool, typer.Option("--traverse", help="One row per latent dimension, ordered by its KL: that dimension swept, the others at the first input's code.")] = False,
    method: Annotated[str, typer.Option("--method", help="Scatter axes for more than 2 dimensions: pca (first two principal components) or dims (two latent dimensions, see --dims).")] = "pca",
    dims: Annotated[Optional[str], typer.Option("--dims", help="Two latent dimensions I,J for --method dims and --manifold. Default: the two with the largest KL.")] = None,
    color_by: Annotated[Optional[str], typer.Option("--color-by", help="label, or a factor of variation the dataset records (shapes: scale, orientation, pos_x, pos_y).")] = None,
    max_points: Annotated[int, typer.Option("--max-points", help="Plot at most this many points (the first ones).")] = 10_000,
    grid_size: Annotated[Optional[int], typer.Option("--grid", help="Cells per side of --manifold (20); columns of --traverse (11).", show_default=False)] = None,
    extent: Annotated[Optional[float], typer.Option("--range", help="--traverse sweeps each dimension over [-R, R] (3); --manifold spans [-R, R] instead of the inverse-CDF grid.", show_default=False)] = None,
    label: Annotated[Optional[str], typer.Option("--label", help="A class-conditional model (cvae): decode --manifold and --traverse as this class. Default: the class of the first input (class 0 for --manifold).")] = None,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
) -> None:
    """Picture the latent space: scatter, learned manifold or traversal.

    By default a scatter of the posterior means of INPUT coloured by label; --manifold decodes a
    grid over a latent plane; --traverse sweeps each dimension in turn.
    """
    from . import viz
    from .model import encode_all, kl_per_dim

    if manifold and traverse:
        raise UsageError("--manifold and --traverse make different pictures; choose one")
    if method not in ("pca", "dims"):
        raise UsageError(f"--method must be pca or dims, got {method!r}")
    _positive(max_points, "--max-points")
    if grid_size is not None:
        _positive(grid_size, "--grid", 100)
    if extent is not None and not (math.isfinite(extent) and 0 < extent <= 100):
        raise UsageError(f"--range must be a number above 0 and at most 100, got {extent}")
    model = _model(ckpt, device)
    kind = "manifold" if manifold else "traverse" if traverse else "latent"
    output = _picture_out(output, ckpt, kind, viz.PLOT_SUFFIXES, (input,))
    if manifold and model.kind == "ae" and extent is None:
        raise UsageError("a plain auto-encoder has no N(0, I) prior for the inverse-CDF grid; give the "
                         "extent of the grid with --range R")
    chosen = _parse_dims(dims, model.latent_dim)
    if model.latent_dim < 2 and not traverse:
        raise UsageError("this model has a 1-dimensional latent space; use --traverse")
    need_inputs = traverse or not manifold or (chosen is None and model.latent_dim > 2)
    inputs = _inputs(model, input, data_dir, no_download, limit=max_points) if need_inputs else None
    if inputs is not None:
        with _Bar(len(inputs), "encoding", show=len(inputs) > 5000) as update:
            mean, logvar = encode_all(model, inputs.images, progress=update, labels=_input_labels(model, inputs, label))
        if model.kind == "ae":  # no posterior variance: rank by how much each code varies
            kl = mean.double().var(0, unbiased=False)
        else:
            kl = kl_per_dim(mean.double(), logvar.double()).mean(0)  # (D,)
        by_kl = kl.argsort(descending=True).tolist()
    if chosen is None and model.latent_dim >= 2:
        chosen = (0, 1) if model.latent_dim == 2 else tuple(sorted(by_kl[:2]))
    condition = _condition(model, label, 1)
    if model.num_classes and condition is None:  # the first input's class, else class 0
        first = _input_labels(model, inputs, label)[:1] if inputs is not None else None
        condition = first if first is not None else _condition(model, "0", 1)
    if manifold:
        size = _manifold(model, output, chosen, grid_size or 20, extent or 0.0, condition)
    elif traverse:
        size = _traverse(model, output, inputs, mean, kl, by_kl, grid_size or 11, extent or 3.0, condition)
    else:
        size = _scatter(model, output, inputs, mean, method, chosen, color_by)
    out.print(f"Wrote {output} ({size[0]}x{size[1]} px).")


def _parse_dims(text: Optional[str], latent_dim: int):
    if text is None:
        return None
    try:
        i, j = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--dims {text!r}: give two latent dimensions as I,J, e.g. --dims 0,1") from None
    for d in (i, j):
        if not 0 <= d < latent_dim:
            raise UsageError(f"--dims {text}: dimension {d} does not exist (the latent space has "
                             f"dimensions 0 to {latent_dim - 1})")
    if i == j:
        raise UsageError(f"--dims {text}: give two different dimensions")
    return i, j


def _scatter(model, output, inputs, mean, method, chosen, color_by):
    from . import latents, viz

    labels = values = None
    value_name = ""
    if color_by is None:
        color_by = "label" if inputs.labels is not None else None
    if color_by == "label":
        if inputs.labels is None:
            raise UsageError(f"{inputs.source} has no labels to colour by")
        labels = inputs.labels
    elif color_by is not None:
        if color_by not in inputs.factors:
            known = ", ".join(["label"] + sorted(inputs.factors))
            raise UsageError(f"--color-by {color_by}: {inputs.source} records {known}")
        values, value_name = inputs.factors[color_by].float(), color_by
    d = model.latent_dim
    if d == 2 or method == "dims":
        i, j = chosen
        points = mean[:, [i, j]]
        xlabel, ylabel, how = f"z{i}", f"z{j}", ""
    else:
        points, share = latents.pca(mean)
        xlabel, ylabel = (f"PC{k + 1} ({100 * share[k]:.0f}% of variance)" for k in range(2))
        how = ", PCA"
    title = f"Posterior means of {len(mean)} images of {inputs.source} ({d}-D latent{how})"
    return viz.scatter(points, output, title=title, xlabel=xlabel, ylabel=ylabel, labels=labels,
                       class_names=inputs.class_names if color_by == "label" else None,
                       values=values, value_name=value_name)


def _decoded_as(model, condition) -> str:
    return "" if condition is None else f", class {_class_name(model, int(condition[0]))}"


def _manifold(model, output, chosen, size, extent, condition=None):
    import torch

    from . import latents, viz

    i, j = chosen
    values = latents.normal_grid(size, extent)
    z = torch.zeros(size, size, model.latent_dim, dtype=torch.float64)
    z[:, :, i] = values.view(1, size)  # columns: z_i left to right
    z[:, :, j] = values.flip(0).view(size, 1)  # rows: z_j top to bottom, largest first
    images = model.decode(z.view(-1, model.latent_dim),
                          labels=None if condition is None else condition.repeat(size * size))
    ticks = [f"{v:.2f}" if size <= 12 or k % max(1, size // 8) == 0 else "" for k, v in enumerate(values.tolist())]
    others = " (other dimensions at 0)" if model.latent_dim > 2 else ""
    spacing = "inverse normal CDF" if not extent else f"even over [-{extent:g}, {extent:g}]"
    return viz.image_table(images, size, output, title=f"Learned manifold: z{i} and z{j}, {spacing}{others}"
                                                      f"{_decoded_as(model, condition)}",
                           row_labels=list(reversed(ticks)), col_labels=ticks, xlabel=f"z{i}", ylabel=f"z{j}")


def _traverse(model, output, inputs, mean, kl, by_kl, steps, extent, condition=None):
    from . import latents, viz

    if len(by_kl) > MAX_TRAVERSE_ROWS:
        _warn(f"showing the {MAX_TRAVERSE_ROWS} of {len(by_kl)} latent dimensions with the largest "
              f"{'KL' if model.kind != 'ae' else 'variance'}")
        by_kl = by_kl[:MAX_TRAVERSE_ROWS]
    values = latents.normal_grid(steps, extent)
    base = mean[0].double()
    z = base.repeat(len(by_kl), steps, 1)  # (rows, S, D)
    for row, d in enumerate(by_kl):
        z[row, :, d] = values
    images = model.decode(z.view(-1, model.latent_dim),
                          labels=None if condition is None else condition.repeat(len(by_kl) * steps))
    measure = "KL" if model.kind != "ae" else "var"
    row_labels = [f"z{d}  {measure} {kl[d]:.2f}" for d in by_kl]
    col_labels = [f"{v:.1f}" for v in values.tolist()]
    base_name = inputs.source if len(inputs) == 1 else f"image 0 of {inputs.source}"
    return viz.image_table(images, len(by_kl), output,
                           title=f"Latent traversal from {base_name}, rows by "
                                 + ("KL (nats)" if model.kind != "ae" else "variance of the code"),
                           row_labels=row_labels, col_labels=col_labels, xlabel="value of the swept dimension")


# -- evaluate ---------------------------------------------------------------------------------


def _bits_note(model) -> str:
    """What the bits/dim of this model's likelihood can be compared with."""
    from .data import preprocessing
    from .plugins import registry

    lik = model.meta["model"]["likelihood"]
    data_range = registry().get("likelihood", lik["name"], lik.get("provider")).spec.data_range
    binarized = preprocessing(model.meta)
    if data_range in ("real", "unit"):
        return "; a density on pixels in [0, 1], not comparable with discrete NLLs"
    if data_range == "binary" and binarized == "none":
        return "; bernoulli on grey levels is a cross-entropy: train with --binarize for NLLs comparable with papers"
    if data_range == "binary":
        return f"; of {'statically' if binarized == 'static' else 'dynamically'} binarized images"
    return "; of the 8-bit images" if data_range == "8bit" else ""


@app.command()
def evaluate(
    ckpt: CkptArg,
    input: Annotated[Optional[str], typer.Argument(help=INPUT_HELP + " Default: the test split of the checkpoint's dataset.", show_default=False)] = None,
    iw_samples: Annotated[int, typer.Option("--iw-samples", "-k", help="Importance samples per image for the NLL estimate (Burda et al. 2015 use 5000).")] = 100,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per batch. Default: as many as fit in about 64 MB per tensor.")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the posterior samples (the one vae train's test pass uses: -k 1 gives its test -ELBO).")] = 1234,
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
) -> None:
    """Numbers comparable with papers: -ELBO, IWAE NLL, bits/dim, active units.

    The negative ELBO with its reconstruction and KL parts, the importance-weighted estimate of
    the negative log-likelihood (Burda et al. 2015), in nats per example.
    """
    import time

    from .model import evaluate as run_evaluation

    _positive(iw_samples, "--iw-samples", 100_000)
    if batch_size:
        _positive(batch_size, "--batch-size")
    model = _model(ckpt, device)
    inputs = _inputs(model, input, data_dir, no_download)
    started = time.perf_counter()
    with _Bar(len(inputs), f"evaluating (k={iw_samples})", show=not as_json) as update:
        result = run_evaluation(model, inputs.images, iw_samples, batch_size, seed, update,
                                _input_labels(model, inputs))
    result.update(input=inputs.source, checkpoint=str(ckpt), seconds=time.perf_counter() - started)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"{ckpt} on {inputs.source} ({result['examples']} images), nats per example",
                  title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    if result["kind"] == "ae":
        table.add_row("reconstruction", f"{result['recon']:.2f}", "-log p(x|z), z the encoder's code")
    else:
        table.add_row("-ELBO", f"{result['loss']:.2f}", "reconstruction + KL")
        table.add_row("  reconstruction", f"{result['recon']:.2f}", escape(f"E_q[-log p(x|z)], {iw_samples} sample(s)"))
        table.add_row("  KL", f"{result['kl']:.2f}", "KL(q(z|x) || p(z)), closed form")
        table.add_row("NLL (IWAE)", f"{result['nll']:.2f}", f"-log p(x), k={iw_samples} (Burda et al. 2015)")
        table.add_row("bits/dim", f"{result['bits_per_dim']:.4f}", f"NLL / ({result['pixels']} pixels x ln 2)"
                      + _bits_note(model))
        table.add_row("active units", f"{result['active_units']} / {result['latent_dim']}", escape("Cov_x E_q[z_u] > 0.01"))
    out.print(table)
    out.print(f"[dim]{result['seconds']:.1f} s on {model.device}[/]")


# -- info -------------------------------------------------------------------------------------


def _fmt_options(opts: dict) -> str:
    if not opts:
        return ""
    return ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in opts.items())


def _fmt_provider(p: Optional[dict]) -> str:
    if not p:
        return ""
    return f"{p.get('distribution', '?')} {p.get('version', '')}".strip()


def _fmt_objective(t: dict) -> str:
    """``-ELBO``, a beta-VAE, or the IWAE bound, with warm-up and free bits."""
    k, beta = t.get("iw_samples", 1), t.get("beta", 1.0)
    if k > 1:
        parts = [f"IWAE bound, k={k} (Burda et al. 2015)"]
    else:
        parts = ["ELBO" if beta == 1 else f"beta-VAE, beta {beta:g}"]
    if t.get("kl_warmup"):
        parts.append(f"KL warm-up over {t['kl_warmup']:g} epoch{'s' if t['kl_warmup'] != 1 else ''}")
    if t.get("free_bits"):
        parts.append(f"free bits {t['free_bits']:g} nats per dimension")
    return ", ".join(parts)


def _fmt_optimizer(t: dict) -> str:
    name = t.get("optimizer", "adam")
    decay = t.get("weight_decay")
    decay = (0.01 if name == "adamw" else 0.0) if decay is None else decay
    parts = [f"{name} lr {t.get('lr')}"]
    if decay:
        parts.append(f"weight decay {decay:g}")
    schedule = t.get("lr_schedule", "constant")
    if schedule == "step":
        every = "every epoch" if t.get("lr_step") == 1 else f"every {t.get('lr_step')} epochs"
        parts.append(f"step schedule (x{t.get('lr_gamma'):g} {every})")
    elif schedule == "multistep":
        at = ", ".join(map(str, t.get("lr_milestones") or []))
        parts.append(f"multistep schedule (x{t.get('lr_gamma'):g} after epochs {at})")
    elif schedule == "burda":
        parts.append("burda schedule (3^i epochs at lr x 10^(-i/7), Burda et al. 2015)")
    elif schedule != "constant":
        parts.append(f"{schedule} schedule")
    if t.get("grad_clip"):
        parts.append(f"gradient norm clipped at {t['grad_clip']:g}")
    return ", ".join(parts)


def _fmt_setting(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_fmt_setting(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(_fmt_setting, value))
    return str(value)


def _recipe_rows(t: dict) -> list:
    """The rows of `vae info` that say which recipe a run started from and how its options
    changed it, every setting it ran with, and the line that repeats it."""
    from .recipes import changes, published_text, repeat_command

    rows = []
    rec = t.get("recipe")
    if rec:
        origin = f"file {rec['file']}" if rec.get("file") else _fmt_provider(rec.get("provider"))
        changed = {k: v for k, v in changes(t).items() if k in (rec.get("settings") or {})}
        what = "; ".join(f"{k} {_fmt_setting(then)} -> {_fmt_setting(now)}" for k, (then, now) in changed.items())
        rows.append(("recipe", f"{escape(str(rec.get('name')))}  [dim]({escape(origin)})[/]"
                               + (f"  changed by options: {escape(what)}" if what else "")))
        if rec.get("source"):
            rows.append(("  source", escape(rec["source"])))
        if rec.get("published"):
            rows.append(("  published", escape(published_text(rec["published"]))))
    else:
        rows.append(("recipe", "none"))
    shown = {k: v for k, v in t.items() if k != "recipe"}
    rows.append(("options", escape(", ".join(f"{k}={_fmt_setting(v)}" for k, v in shown.items()))))
    rows.append(("repeat", escape(repeat_command(t))))
    return rows


@app.command()
def info(
    ckpt: Annotated[Path, typer.Argument(help="A checkpoint written by vae train.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False,
) -> None:
    """Show how a checkpoint's model was built and trained, and its metrics per epoch."""
    from .checkpoint import describe

    meta = describe(ckpt)
    n_params = meta["parameters"]
    if as_json:
        print(json.dumps(meta, indent=2))
        return
    m, d, t = meta["model"], meta["data"], meta["training"]
    arch, lik, ds = m.get("architecture", {}), m.get("likelihood", {}), d.get("dataset", {})
    table = Table(title=f"{ckpt}", show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("model", f"{m.get('kind', 'vae').upper()}, latent dim {m.get('latent_dim')}, "
                  + (f"{m['num_classes']} classes, " if m.get("num_classes") else "") +
                  f"input {'x'.join(map(str, m.get('input_shape', [])))}, {n_params:,} parameters"),
        ("architecture", f"{arch.get('name')}  {_fmt_options(arch.get('options', {}))}  [dim]({_fmt_provider(arch.get('provider'))})[/]"),
        ("likelihood", f"{lik.get('name')}  {_fmt_options(lik.get('options', {}))}  [dim]({_fmt_provider(lik.get('provider'))})[/]"),
        ("dataset", f"{ds.get('name')}  {_fmt_options(ds.get('options', {}))}  [dim]({_fmt_provider(ds.get('provider'))})[/]  "
                    f"{d.get('n_train', '?')} train / {d.get('n_test', '?')} test"),
        ("classes", ", ".join(map(str, d.get("class_names") or [])) or "none"),
        ("preprocessing", _fmt_options(d.get("preprocessing", {}))),
        ("objective", _fmt_objective(t) if m.get("kind") != "ae" else "reconstruction only"),
        ("optimizer", _fmt_optimizer(t)),
        ("training", f"epochs {meta['epoch']}/{t.get('epochs')}"
                     + (f" and {meta['progress']['step']} steps of epoch {meta['progress']['epoch']}"
                        if meta.get("progress") else "")
                     + f", batch {t.get('batch_size')}, seed {t.get('seed')}, device {t.get('device')}"
                     + (f", {t['precision']}" if t.get("precision") else "")
                     + (", compiled" if t.get("compile") else "")
                     + (f", {t['distributed']['world_size']} processes ({t['distributed']['backend']})"
                        if (t.get("distributed") or {}).get("world_size", 1) > 1 else "")
                     + (f", checkpoint every {t['save_every']} steps" if t.get("save_every") else "")),
        *_recipe_rows(t),
        ("versions", _fmt_options(meta.get("versions", {}))),
        ("written", f"{meta.get('created', '?')} (updated {meta.get('updated', '?')})"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)
    metrics = meta.get("metrics") or []
    if metrics:
        mt = Table(title="metrics (nats per example)", title_justify="left")
        for col in ("epoch", "train -ELBO", "test -ELBO", "test recon", "test KL", "seconds"):
            mt.add_column(col, justify="right")
        for r in metrics:
            mt.add_row(str(r["epoch"]), f"{r['train_loss']:.2f}", f"{r['test_loss']:.2f}",
                       f"{r['test_recon']:.2f}", f"{r['test_kl']:.2f}", f"{r['seconds']:.1f}")
        out.print(mt)


# -- recipes ----------------------------------------------------------------------------------


@app.command(name="recipes")
def recipes_command(
    recipe: Annotated[Optional[str], typer.Argument(help="A recipe (a name, or a NAME.toml file to check): print it as TOML, to copy and edit.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the training recipes (vae train --recipe NAME), or print one as a TOML file.

    A recipe is a named set of vae train options, with the paper or code it comes from and the
    figure published there. `vae recipes NAME > my.toml` writes one to edit; `vae train
    --recipe my.toml` trains from the edited file.
    """
    from . import recipes

    if recipe is not None:
        found = recipes.resolve(recipe)
        if found.file:
            recipes.settings_of(found)  # a file is checked when it is shown: its errors show now
        if as_json:
            print(json.dumps(recipes.to_json(found), indent=2))
        else:
            print(recipes.to_toml(found.spec), end="")
        return
    every = recipes.registered()
    if as_json:
        print(json.dumps([recipes.to_json(r) for r in every], indent=2))
        return
    table = Table(title="vae recipes  (vae train --recipe NAME; vae recipes NAME prints one as TOML)",
                  title_justify="left")
    plugins = any((r.provider or {}).get("distribution") != "vaecli" for r in every)
    for col in ("recipe", "trains", "source", "published", *(["from"] if plugins else [])):
        table.add_column(col, overflow="fold", no_wrap=col == "recipe")
    for r in every:
        table.add_row(r.name, escape(recipes.describe(r.spec.settings)), escape(recipes.citation(r.spec.source)),
                      escape(recipes.published_text(r.spec.published)) or "-",
                      *([_fmt_provider(r.provider)] if plugins else []))
    out.print(table)
    out.print("[dim]vae recipes NAME prints one as TOML, with its full source and how it differs from it.[/]")


# -- plugins ----------------------------------------------------------------------------------


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    details: Annotated[bool, typer.Option("--details", help="Also list every part with its help and options.")] = False,
) -> None:
    """List plugins, built-in and installed, with what each registers and any load error."""
    from . import options as opts
    from .plugins import registry

    reg = registry()
    reg.add_commands(app)
    if as_json:
        parts = {
            kind: {name: {"plugin": r.plugin.name, "distribution": r.plugin.distribution,
                          "help": r.spec.help, "options": _part_options(kind, r.spec)}
                   for name, r in sorted(table.items())}
            for kind, table in reg.parts.items()
        }
        print(json.dumps({"plugins": [p.to_json() for p in reg.plugins], "parts": parts}, indent=2))
        return
    table = Table(title="vae plugins", title_justify="left")
    for col in ("plugin", "distribution", "version", "registers", "status"):
        table.add_column(col)
    for p in reg.plugins:
        regs = [f"{kind}s: {', '.join(names)}" for kind, names in p.registers.items()]
        if p.commands:
            regs.append(f"commands: {', '.join(p.commands)}")
        status = "[red]" + "; ".join(p.errors).replace("[", r"\[") + "[/]" if p.errors else "[green]ok[/]"
        table.add_row(p.name + (" (built-in)" if p.builtin else ""), p.distribution, p.version,
                      "\n".join(regs) or "-", status)
    out.print(table)
    if details:
        for kind, parts in reg.parts.items():
            dt = Table(title=f"{kind}s", title_justify="left")
            for col in ("name", "help", "settings" if kind == "recipe" else "options (defaults)", "from"):
                dt.add_column(col)
            for name, r in sorted(parts.items()):
                dt.add_row(name, escape(r.spec.help), escape(_part_options(kind, r.spec)), r.plugin.distribution)
            out.print(dt)


def _part_options(kind: str, spec: Any) -> str:
    """A part's options with their defaults; a recipe's settings."""
    from . import options as opts

    if kind == "recipe":
        return ", ".join(f"{k}={_fmt_setting(v)}" for k, v in spec.settings.items()) or "(none)"
    return opts.describe(spec.options)


def main() -> None:
    """Entry point of the ``vae`` console script."""
    from .plugins import registry

    registry().add_commands(app)
    app()
