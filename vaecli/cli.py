"""The ``vae`` command: parse options, call the library, render with Rich.

Heavy imports (torch, torchvision) happen inside the commands that need them, so that
``vae --help`` and ``vae plugins`` start fast.
"""

from __future__ import annotations

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
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover
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
    err.print(f"[bold red]error:[/] {escape(message)}")


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
        )
        self.task = None
        self.started = False
        self.kind = "vae"
        self._last = 0.0

    def start(self, config, path, device, data) -> None:
        import torch

        self.kind = config.model
        err.print(
            f"Training a {config.model.upper()} ({config.arch}, {config.likelihood}, latent {config.latent_dim}) "
            f"on {config.dataset} ({len(data.splits.train)} train / {len(data.splits.test)} test images of "
            f"{'x'.join(map(str, data.input_shape))}) on {device}, torch {torch.__version__}",
        )
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

    def close(self) -> None:
        if self.started:
            self.progress.stop()


def _options_help(kind: str) -> str:
    return f"{kind} option KEY=VALUE (repeatable); `vae plugins --details` lists each part's options."


@app.command()
def train(
    dataset: Annotated[str, typer.Argument(help="Dataset name: shapes (built in, no download), mnist, or one from a plugin.")] = "shapes",
    arch: Annotated[str, typer.Option("--arch", "-a", help="Encoder/decoder architecture.")] = "mlp",
    likelihood: Annotated[str, typer.Option("--likelihood", "-l", help="Decoder likelihood: bernoulli, gaussian, ...")] = "bernoulli",
    model: Annotated[str, typer.Option("--model", help="vae, or ae for a plain deterministic auto-encoder.")] = "vae",
    latent_dim: Annotated[int, typer.Option("--latent-dim", "-z", help="Latent dimensions.")] = 20,
    epochs: Annotated[int, typer.Option("--epochs", "-e", help="Epochs to train.")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Examples per batch.")] = 128,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 1e-3,
    beta: Annotated[float, typer.Option("--beta", help="Weight of the KL term (1 is the ELBO; >1 a beta-VAE).")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of initialisation, batching and noise.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")] = "auto",
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where datasets live (MNIST in DIR/MNIST/raw). Default: ~/.cache/vaecli/data or $VAECLI_DATA_DIR.")] = None,
    no_download: Annotated[bool, typer.Option("--no-download", help="Never download; fail if the files are missing.")] = False,
    output: Annotated[Optional[Path], typer.Option("--out", "-o", help="Checkpoint file (.safetensors). Default: DATASET-ARCH.safetensors here, numbered rather than overwritten.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing -o checkpoint.")] = False,
    arch_option: Annotated[Optional[List[str]], typer.Option("--arch-option", help=_options_help("Architecture") + " E.g. hidden=512,256 activation=tanh.")] = None,
    likelihood_option: Annotated[Optional[List[str]], typer.Option("--likelihood-option", help=_options_help("Likelihood") + " E.g. learn_sigma=shared.")] = None,
    data_option: Annotated[Optional[List[str]], typer.Option("--data-option", help=_options_help("Dataset") + " E.g. n_train=5000.")] = None,
) -> None:
    """Train a VAE and write a checkpoint after every epoch.

    Prints the test negative ELBO (nats per example) after each epoch.
    """
    from .options import parse_pairs
    from .training import TrainConfig, run

    config = TrainConfig(
        dataset=dataset, dataset_options=parse_pairs(data_option, "--data-option"),
        arch=arch, arch_options=parse_pairs(arch_option, "--arch-option"),
        likelihood=likelihood, likelihood_options=parse_pairs(likelihood_option, "--likelihood-option"),
        model=model, latent_dim=latent_dim, epochs=epochs, batch_size=batch_size, lr=lr, beta=beta,
        seed=seed, device=device, data_dir=str(data_dir) if data_dir else None,
        download=not no_download, out=str(output) if output else None, force=force,
    )
    reporter = _ProgressReporter()
    try:
        result = run(config, reporter=reporter)
    finally:
        reporter.close()
    last = result.metrics[-1]
    out.print(f"Saved {result.path} after {last['epoch']} epochs: test -ELBO {last['test_loss']:.2f} nats per example.")
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
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """Decode draws from the prior into a grid of images."""
    _positive(n, "-n", MAX_SAMPLES)
    if nrow is not None:
        _positive(nrow, "--nrow")
    if not (math.isfinite(temperature) and temperature > 0):
        raise UsageError(f"--temperature must be a positive number, got {temperature}")
    if mode not in ("mean", "sample"):
        raise UsageError(f"--mode must be 'mean' or 'sample', got {mode!r}")
    import torch

    from . import load, viz

    model = load(ckpt, device)
    output = viz.check_output(output or ckpt.with_name(f"{ckpt.stem}-samples.png"))
    gen = torch.Generator(device=model.device).manual_seed(seed)
    images = model.sample(n, temperature=temperature, mode=mode, generator=gen)
    width, height = viz.save_grid(images, output, nrow)
    out.print(f"Wrote {n} samples to {output} ({width}x{height} px).")


# -- info -------------------------------------------------------------------------------------


def _fmt_options(opts: dict) -> str:
    if not opts:
        return ""
    return ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in opts.items())


def _fmt_provider(p: Optional[dict]) -> str:
    if not p:
        return ""
    return f"{p.get('distribution', '?')} {p.get('version', '')}".strip()


@app.command()
def info(
    ckpt: Annotated[Path, typer.Argument(help="A checkpoint written by vae train.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False,
) -> None:
    """Show how a checkpoint's model was built and trained, and its metrics per epoch."""
    from .checkpoint import read

    ckpt_data = read(ckpt)
    meta = dict(ckpt_data.meta)
    meta["epoch"] = ckpt_data.epoch
    n_params = sum(t.numel() for t in ckpt_data.section("model.").values())
    if as_json:
        meta["parameters"] = n_params
        print(json.dumps(meta, indent=2))
        return
    m, d, t = meta["model"], meta["data"], meta["training"]
    arch, lik, ds = m.get("architecture", {}), m.get("likelihood", {}), d.get("dataset", {})
    table = Table(title=f"{ckpt}", show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("model", f"{m.get('kind', 'vae').upper()}, latent dim {m.get('latent_dim')}, "
                  f"input {'x'.join(map(str, m.get('input_shape', [])))}, {n_params:,} parameters"),
        ("architecture", f"{arch.get('name')}  {_fmt_options(arch.get('options', {}))}  [dim]({_fmt_provider(arch.get('provider'))})[/]"),
        ("likelihood", f"{lik.get('name')}  {_fmt_options(lik.get('options', {}))}  [dim]({_fmt_provider(lik.get('provider'))})[/]"),
        ("dataset", f"{ds.get('name')}  {_fmt_options(ds.get('options', {}))}  [dim]({_fmt_provider(ds.get('provider'))})[/]  "
                    f"{d.get('n_train', '?')} train / {d.get('n_test', '?')} test"),
        ("classes", ", ".join(map(str, d.get("class_names") or [])) or "none"),
        ("preprocessing", _fmt_options(d.get("preprocessing", {}))),
        ("training", f"epochs {meta['epoch']}/{t.get('epochs')}, batch {t.get('batch_size')}, "
                     f"{t.get('optimizer', 'adam')} lr {t.get('lr')}, beta {t.get('beta')}, seed {t.get('seed')}, "
                     f"device {t.get('device')}"),
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
                          "help": r.spec.help, "options": opts.describe(r.spec.options)}
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
            for col in ("name", "help", "options (defaults)", "from"):
                dt.add_column(col)
            for name, r in sorted(parts.items()):
                dt.add_row(name, r.spec.help, opts.describe(r.spec.options), r.plugin.distribution)
            out.print(dt)


def main() -> None:
    """Entry point of the ``vae`` console script."""
    from .plugins import registry

    registry().add_commands(app)
    app()
