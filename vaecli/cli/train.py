"""``vae train``: its options are generated from the settings declared in ``vaecli.config``."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any, List, Optional

import typer
from typing_extensions import Annotated

from ..config import PANELS, TrainConfig, settings
from ..console import err, escape, out, warn
from ..errors import UsageError
from ..header import fmt_scores, scores
from ..options import parse_pairs
from .app import ParameterSource, app
from .text import fmt_objective, fmt_options

# options of the command that are not settings of a run
COMMAND_OPTIONS = {
    "recipe": (
        Optional[str],
        None,
        typer.Option(
            "--recipe",
            help="Start from a recipe: a name from `vae recipes` (pythae-vae, burda-iwae, ...) or a NAME.toml file of the same form; the options you give win over it.",
            show_default=False,
        ),
    ),
    "config": (
        Optional[Path],
        None,
        typer.Option(
            "--config",
            help='Take the settings from a TOML file whose keys are these options (latent-dim = 2, [arch-option] hidden = [512], recipe = "pythae-vae"); the options you give win over it. `vae info CKPT --config` writes one.',
            show_default=False,
        ),
    ),
    "resume": (
        Optional[Path],
        None,
        typer.Option(
            "--resume",
            help="Continue the run in this checkpoint up to --epochs in total, writing to it; its dataset and settings are used (--data-dir, --no-download, --device and --save-every may be given again).",
            rich_help_panel=PANELS["run"],
            show_default=False,
        ),
    ),
    "nproc": (
        int,
        1,
        typer.Option(
            "--nproc",
            help="Train on N processes of this machine with DistributedDataParallel (torchrun; NCCL on GPUs, gloo on the CPU); each process takes its share of every batch.",
            rich_help_panel=PANELS["run"],
        ),
    ),
    "image_size": (
        Optional[int],
        None,
        typer.Option(
            "--image-size",
            help="folder: resize the shorter side to N and centre-crop N x N (the dataset option image_size).",
            rich_help_panel=PANELS["data"],
            show_default=False,
        ),
    ),
    "grayscale": (
        bool,
        False,
        typer.Option(
            "--grayscale",
            help="folder: convert the images to grey (the dataset option grayscale).",
            rich_help_panel=PANELS["data"],
        ),
    ),
}
RESUME_ALLOWED = {
    "resume",
    "epochs",
    "data_dir",
    "download",
    "device",
    "precision",
    "compile",
    "save_every",
    "max_memory",
}


def _parameter(s, defaults: TrainConfig, hints: dict) -> inspect.Parameter:
    """The typer parameter of a declared setting."""
    default = getattr(defaults, s.name)
    panel = PANELS[s.group]
    if s.flag == "DATASET":
        info: Any = typer.Argument(help=s.help, rich_help_panel=panel, metavar="DATASET")
        kind: Any = str
    else:
        decls = [s.flag, *s.aliases]
        show_default = default not in (None, {}, [])
        info = typer.Option(*decls, help=s.help, rich_help_panel=panel, show_default=show_default, metavar=s.metavar)
        if s.options:  # --arch-option KEY=VALUE, repeatable
            kind, default = Optional[List[str]], None
        elif isinstance(default, list):  # --lr-milestones 200,350
            kind, default = Optional[str], None
        else:
            kind = hints[s.name]
    return inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, info])


def _int_list(text: Optional[str], flag: str) -> list:
    """``"200,350"`` -> ``[200, 350]``; anything else is a one-line error."""
    if text is None:
        return []
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.lstrip("-").isdigit() for p in parts):
        raise UsageError(f"{flag} takes whole numbers separated by commas (e.g. 200,350), got {text!r}")
    return [int(p) for p in parts]


def config_from(values: dict) -> TrainConfig:
    """The ``TrainConfig`` of the command line's values."""
    fields = {}
    for s in settings():
        if not s.flag:
            continue
        value = values[s.name]
        if s.options:
            value = parse_pairs(value, s.flag)
        elif isinstance(getattr(_DEFAULTS, s.name), list):
            value = _int_list(value, s.flag)
        fields[s.name] = value
    for key, value, given in (
        ("image_size", values["image_size"], values["image_size"] is not None),
        ("grayscale", "true", values["grayscale"]),
    ):
        if given:
            if key in fields["dataset_options"]:
                raise UsageError(f"--{key.replace('_', '-')} and --dataset-option {key}= both given; use one")
            fields["dataset_options"][key] = str(value)
    return TrainConfig(**fields)


def train(ctx: typer.Context, **values: Any) -> None:
    """Train a VAE and write a checkpoint after every epoch.

    Prints the test negative ELBO (nats per example) after each epoch, and appends it to
    CKPT.metrics.jsonl beside the checkpoint. The checkpoint is replaced atomically, so a crash
    or a kill leaves the last one intact; Ctrl-C saves the run where it is and says how to
    continue it: vae train --resume CKPT --epochs N.
    """
    from ..api import resume as resume_run
    from ..api import train as run

    if values["nproc"] != 1:
        _launch_processes(ctx, values["nproc"])
        return
    explicit = {p for p in ctx.params if ctx.get_parameter_source(p) not in (ParameterSource.DEFAULT, None)}
    resume, recipe = values["resume"], values["recipe"]
    if resume is not None and recipe is not None:
        raise UsageError(
            "--recipe and --resume do not combine: a resumed run keeps the settings and the recipe "
            "recorded in its checkpoint; drop --recipe"
        )
    reporter = ProgressReporter()
    try:
        if resume is not None:
            given = [p for p in ctx.params if p in explicit and p not in RESUME_ALLOWED]
            if given:
                spelled = {
                    p.name: p.opts[0] if p.opts[0].startswith("-") else p.name.upper() for p in ctx.command.params
                }
                flags = ", ".join(spelled.get(p, p) for p in given)
                raise UsageError(
                    f"--resume continues a run with the settings in its checkpoint; {flags} "
                    f"cannot change them (only --epochs, --data-dir, --no-download, --device, --precision, "
                    f"--compile, --save-every and --max-memory can be given)"
                )
            result = resume_run(
                resume,
                **{
                    k: values[k]
                    for k in ("epochs", "device", "precision", "compile", "save_every", "max_memory")
                    if k in explicit
                },
                data_dir=values["data_dir"],
                download=values["download"],
                reporter=reporter,
            )
            viz_dir = None
        else:
            config = config_from(values)
            fields = {"dataset_options" if p in ("image_size", "grayscale") else p for p in explicit}
            if values["config"] is not None:
                from .. import config_file

                config, fields, from_file = config_file.apply(config, values["config"], fields)
                recipe = recipe or from_file
            if recipe is not None:
                from .. import recipes

                recipes.apply(config, recipes.resolve(recipe), fields)
            result = run(config, reporter=reporter)
            viz_dir = config.viz_dir
            if config.keep_best and result.main:
                from ..training.keep import best, best_path

                out.print(f"Best test loss after epoch {best(result.metrics)[0]}: {best_path(Path(result.path))}")
    finally:
        reporter.close()
    _trained(result, viz_dir)


_DEFAULTS, _HINTS = TrainConfig(), typing.get_type_hints(TrainConfig)
train.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    + [_parameter(s, _DEFAULTS, _HINTS) for s in settings() if s.flag]
    + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, info])
        for name, (kind, default, info) in COMMAND_OPTIONS.items()
    ]
)
app.command()(train)


def _launch_processes(ctx: typer.Context, nproc: int) -> None:
    """``--nproc N``: the same command line, less --nproc, under torchrun with N processes."""
    from ..training import distributed

    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}")
    if distributed.from_environment().distributed:
        raise UsageError(
            "--nproc launches torchrun; this process already runs under it (give the number of "
            "processes to torchrun's --nproc-per-node)"
        )
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
            elif param.secondary_opts:
                args.append(param.secondary_opts[0])
        elif isinstance(value, (list, tuple)):
            for v in value:
                args += [param.opts[0], str(v)]
        else:
            args += [param.opts[0], str(value)]
    code = distributed.launch(nproc, args, checkpoint=ctx.params.get("resume") or ctx.params.get("out"))
    if code:
        raise typer.Exit(code)


def _trained(result, viz_dir: Optional[str]) -> None:
    if not result.main:
        return  # rank 0 says it
    last = result.metrics[-1]
    out.print(
        f"Saved {result.path} after {last['epoch']} epoch{'s' if last['epoch'] != 1 else ''}: {fmt_scores(last)} per example."
    )
    if viz_dir:
        out.print(f"Pictures of each epoch and the animation: {Path(viz_dir) / 'training.gif'}")
    tracked = getattr(result.model, "meta", {}).get("mlflow")
    if tracked:
        out.print(
            f"MLflow run {tracked['run_id']} in {tracked['uri']} (to browse: mlflow ui --backend-store-uri {tracked['uri']})"
        )
    picture = "samples.png" if getattr(result.model.likelihood, "layout", None) is None else "samples.csv"
    out.print(f"Next: vae sample {result.path} -o {picture}   |   vae info {result.path}")


class ProgressReporter:
    """Draws a Rich progress bar during each epoch and a summary line after it."""

    REFRESH_S = 0.25  # how often the running loss is read back from the device

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("objective {task.fields[objective]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,  # no bar (nor its blank line) in logs and pipes
        )
        self.task: Any = None
        self.started = False
        self._last = 0.0

    def start(self, config, path, device, data) -> None:
        import torch

        objective = fmt_objective(dataclasses.asdict(config))
        extras = [
            x
            for x in (
                fmt_options(config.model_options),
                objective if objective != "ELBO" else "",
                f"binarized {config.binarize}" if config.binarize != "none" else "",
            )
            if x
        ]
        err.print(
            f"Training {'an' if config.model[:1] in 'aeiou' else 'a'} {config.model.upper()} ({config.arch}, {config.likelihood}, latent {config.latent_dim}"
            f"{'; ' + ', '.join(extras) if extras else ''}) "
            f"on {config.dataset} ({len(data.splits.train)} train / {len(data.splits.test)} test {data.describe()}) "
            f"on {device}"
            f"{'' if config.precision == 'fp32' else f' in {config.precision} mixed precision'}"
            f"{', compiled' if config.compile else ''}, torch {torch.__version__}",
        )
        if config.recipe:
            from ..recipes import changes

            rec = config.recipe
            changed = [k for k in changes(dataclasses.asdict(config)) if k in rec["settings"]]
            err.print(
                escape(
                    f"Recipe: {rec['name']}"
                    + (f" ({rec['file']})" if rec.get("file") else "")
                    + (f"; changed by your options: {', '.join(changed)}" if changed else "")
                )
            )
        err.print(f"Checkpoint: {path}")
        self.progress.start()
        self.started = True

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        import time

        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task("train", total=batches, epoch=f"{epoch}/{epochs}", objective="…")
        self._last = time.perf_counter()

    def step(self, done: int, objective) -> None:
        import time

        now = time.perf_counter()
        fields: dict[str, Any] = {}
        if now - self._last >= self.REFRESH_S:
            fields["objective"] = f"{objective.item():.2f}"
            self._last = now
        self.progress.update(self.task, completed=done, **fields)

    def epoch_end(self, m: dict) -> None:
        train = next(iter(scores(m, "train").values()))  # the family's headline: -ELBO, or its first term
        self.progress.console.print(
            f"epoch {m['epoch']:>3}  train {train:.2f}  {fmt_scores(m, bold=True)}  {m['seconds']:.1f} s"
        )

    def warn(self, message: str) -> None:
        warn(message, self.progress.console)

    def close(self) -> None:
        if self.started:
            self.progress.stop()
