"""The ``vae`` application: error handling, the global options, and what the commands share
(option types, checks of numbers, where pictures go)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup
from typing_extensions import Annotated

from ..console import err, error_line, out
from ..errors import UsageError, VaeError, first_line
from ..version import __version__

try:  # newer typer vendors click as typer._click; older ones use click itself
    from typer._click.core import ParameterSource
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover
    from click.core import ParameterSource  # type: ignore[assignment]
    from click.exceptions import ClickException, NoArgsIsHelpError  # type: ignore[assignment]

__all__ = ["app", "ParameterSource"]

MAX_SAMPLES = 10_000
MAX_GRID = 256  # latents decoded into one picture unless -n says otherwise


def _debug_enabled(ctx: Any = None) -> bool:
    if ctx is not None and isinstance(ctx.obj, dict) and ctx.obj.get("debug"):
        return True
    return os.environ.get("VAECLI_DEBUG", "") not in ("", "0")


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
            error_line(exc.format_message() + hint)
            sys.exit(exc.exit_code)
        except typer.Abort:
            err.print("[yellow]aborted[/]")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    ORDER = (
        "train",
        "sample",
        "encode",
        "decode",
        "reconstruct",
        "interpolate",
        "plot-latent",
        "explore",
        "evaluate",
        "train-scorer",
        "info",
        "push",
        "recipes",
        "plugins",
    )

    def list_commands(self, ctx: Any) -> list:
        """The built-in commands in the order a user meets them, then those of plugins."""
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(self.ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except VaeError as exc:
            if _debug_enabled(ctx):
                raise
            error_line(str(exc))
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if _debug_enabled(ctx):
                raise
            err.print("[yellow]interrupted[/]")
            ctx.exit(130)
        except RuntimeError as exc:  # torch.OutOfMemoryError (a GPU's), by name: torch is not imported here
            if type(exc).__name__ != "OutOfMemoryError" or _debug_enabled(ctx):
                raise
            error_line(
                f"out of memory on the GPU ({first_line(exc)}); use a smaller --batch-size (-b), fewer "
                f"samples (-n, -k), or --device cpu"
            )
            ctx.exit(1)


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
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    ctx.obj = {"debug": debug}


# -- option types shared by the commands ---------------------------------------------------------


def _checkpoint(text: str) -> Path:
    """A CKPT argument: a file, or ``hf://OWNER/REPO[@REVISION][/FILE]`` fetched through the
    Hugging Face cache (``vaecli.hub``)."""
    from ..hub import resolve

    try:
        return resolve(text)
    except VaeError as exc:
        raise typer.BadParameter(str(exc)) from None


CKPT_HELP = (
    r"A checkpoint written by vae train: a file, or hf://OWNER/REPO\[@REVISION]\[/FILE] on the Hugging Face Hub."
)
CkptArg = Annotated[Path, typer.Argument(help=CKPT_HELP, show_default=False, metavar="CKPT", parser=_checkpoint)]
INPUT_HELP = "DATASET:SPLIT (mnist:test), DATASET:SPLIT:INDEX (mnist:test:7), an image file or a folder of images."
InputArg = Annotated[
    Optional[str],
    typer.Argument(help=INPUT_HELP + " Default: the test split of the checkpoint's dataset.", show_default=False),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
DataDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help="Where datasets live (default: the one the checkpoint was trained with, else ~/.cache/vaecli/data).",
    ),
]
NoDownloadOpt = Annotated[
    bool, typer.Option("--no-download", help="Never download a dataset; fail if its files are missing.")
]
ModeOpt = Annotated[
    str, typer.Option("--mode", help="mean: the decoder's mean image; sample: a draw from the likelihood.")
]
LabelOpt = Annotated[
    Optional[str],
    typer.Option("--label", help="A class-conditional model (cvae): decode as this class (an index or a class name)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print as JSON.")]


# -- checks and helpers shared by the commands ---------------------------------------------------


def positive(value: int, flag: str, maximum: Optional[int] = None) -> int:
    if value < 1:
        raise UsageError(f"{flag} must be at least 1, got {value}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{flag} must be at most {maximum}, got {value}")
    return value


def check_mode(mode: str) -> str:
    if mode not in ("mean", "sample"):
        raise UsageError(f"--mode must be 'mean' or 'sample', got {mode!r}")
    return mode


def model(ckpt: Path, device: str):
    """The trained model in a checkpoint (``vaecli.load``)."""
    from ..api import load

    return load(ckpt, device)


def inputs(model, text: Optional[str], data_dir: Optional[Path], no_download: bool, limit: Optional[int] = None):
    """The images an INPUT argument names (at most ``limit``), their warnings said; without one,
    the test split of the checkpoint's dataset."""
    from ..console import warn
    from ..inputs import load_input

    if text is None:
        text = f"{model.meta['data']['dataset']['name']}:test"
    found = load_input(text, model.meta, data_dir, download=not no_download, limit=limit)
    for w in found.warnings:
        warn(w)
    return found


def picture_out(output: Optional[Path], ckpt: Path, kind: str, suffixes=None, inputs=()) -> Path:
    """Where a picture goes: ``-o`` or ``CKPT-KIND.png``. Pictures are overwritten (they are
    cheap to remake), but never an image that is also an input of the command."""
    from .. import viz
    from ..hub import beside

    base = beside(ckpt)  # REPO.safetensors here for a checkpoint from the Hub
    path = viz.check_output(output or base.with_name(f"{base.stem}-{kind}.png"), suffixes or viz.IMAGE_SUFFIXES)
    for text in inputs:
        if text and path.exists() and Path(text).expanduser().is_file() and path.samefile(Path(text).expanduser()):
            raise UsageError(f"-o {path} is also the input image; choose another output file")
    return path


MAX_ROWS = 10_000_000  # rows one command may decode (in chunks)


def layout(model):
    """The layout of a model of rows (``vaecli.kinds.Layout``), None for images."""
    return getattr(model.likelihood, "layout", None)


def examples_out(model, output: Optional[Path], ckpt: Path, kind: str, suffixes=None, inputs=()) -> Path:
    """Where decoded examples go: a picture for a model of images (``picture_out``); for rows a
    file of rows, ``-o`` or ``CKPT-KIND.csv``, never one that is also an input."""
    rows = layout(model)
    if rows is None:
        return picture_out(output, ckpt, kind, suffixes, inputs)
    from ..hub import beside
    from ..rows import check_rows_output

    base = beside(ckpt)
    path = check_rows_output(output or base.with_name(f"{base.stem}-{kind}.csv"))
    for text in inputs:
        given = Path(str(text).partition(":")[2] if str(text).startswith(("table:", "tensor:")) else str(text))
        if text and path.exists() and given.expanduser().is_file() and path.samefile(given.expanduser()):
            raise UsageError(f"-o {path} is also the input; choose another output file")
    return path


def write_examples(model, values, path: Path, nrow: Optional[int] = None, extra: Optional[dict] = None) -> str:
    """Decoded examples (the model's outputs) written where ``examples_out`` said: a grid
    picture, or rows in the data's own columns, types and units. Returns what was written, as
    ``(280x280 px)`` or ``(64 rows of 6 columns)``."""
    rows = layout(model)
    if rows is None:
        from .. import viz

        width, height = viz.save_grid(values, path, nrow)
        return f"({width}x{height} px)"
    from ..kinds import from_model
    from ..rows import write_rows

    write_rows(path, rows, from_model(rows, values), extra)
    return f"({len(values)} rows of {len(rows.columns)} columns)"


def data_out(output: Path, ckpt: Path, force: bool) -> None:
    """A data file (not a picture) may replace an existing one only with --force, and never the
    checkpoint itself."""
    from ..checkpoint import check_target

    check_target(output)
    if output.exists():
        if output.resolve() == Path(ckpt).expanduser().resolve():
            raise UsageError(f"-o {output} is the checkpoint itself; choose another file")
        if not force:
            raise UsageError(f"{output} already exists; pass --force to overwrite it, or choose another -o")


def decoded(model, z, mode: str, gen, labels=None):
    """``model.decode`` of many codes, a chunk at a time (rows may be millions)."""
    import torch

    chunk = 65_536
    if len(z) <= chunk:
        return model.decode(z, mode=mode, generator=gen, labels=labels)
    parts = [
        model.decode(
            z[i : i + chunk], mode=mode, generator=gen, labels=None if labels is None else labels[i : i + chunk]
        ).cpu()
        for i in range(0, len(z), chunk)
    ]
    return torch.cat(parts)


def impute(model, inputs, output: Path, mode: str) -> None:
    """Rows with their missing cells replaced by the decoded posterior mean's (HI-VAE's
    imputation); the observed cells are kept as they are."""
    import torch

    from ..inputs import input_labels
    from ..kinds import from_model
    from ..rows import write_rows

    rows = layout(model)
    labels = input_labels(model, inputs)
    parts = []
    for i in range(0, len(inputs), 65_536):
        part = inputs.images[i : i + 65_536]
        parts.append(
            from_model(
                rows, model.reconstruct(part, mode=mode, labels=None if labels is None else labels[i : i + 65_536])
            )
        )
    recon = torch.cat(parts)
    raw = inputs.rows.clone()
    missing = torch.isnan(raw)
    raw[missing] = recon[missing]
    write_rows(output, rows, raw)
    filled = int(missing.sum())
    out.print(
        f"Wrote {len(raw)} rows to {output} with {filled} missing cell{'s' if filled != 1 else ''} filled "
        f"({'reconstruction means' if mode == 'mean' else 'draws'})."
    )


def plot_rows(model, values, plot: Path, data_dir, no_download) -> None:
    """``--plot``: the generated rows against the training rows."""
    from .. import viz
    from ..kinds import from_model
    from ..rowplots import compare

    rows = layout(model)
    path = viz.check_output(plot, (".png", ".svg", ".pdf"))
    real = inputs(model, f"{model.meta['data']['dataset']['name']}:train", data_dir, no_download, limit=100_000)
    width, height = compare(
        rows,
        real.rows,
        from_model(rows, values),
        path,
        f"{len(values)} generated rows against {len(real)} training rows",
    )
    out.print(f"Wrote the comparison with the training rows to {path} ({width}x{height} px).")


def fitted_sampler(model, ckpt, name, option_pairs, fit_on, refit, data_dir, no_download):
    """The sampler ``name``, fitted (or reused) with a progress bar."""
    from ..console import progress
    from ..options import parse_pairs
    from ..sampling import fitted

    options = parse_pairs(option_pairs or [], "--sampler-option")

    def images():
        text = fit_on or f"{model.meta['data']['dataset']['name']}:train"
        found = inputs(model, text, data_dir, no_download)
        from ..inputs import input_labels

        return found.images, input_labels(model, found), found.source

    bars: dict = {}  # stage -> (its bar, its update)

    def report(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            for bar, _ in bars.values():  # one bar at a time: encoding, then fitting
                bar.__exit__()
            bar = progress(total, stage)
            bars[stage] = (bar, bar.__enter__())
        bars[stage][1](done)

    try:
        return fitted(model, ckpt, name, options, images, refit, report)
    finally:
        for bar, _ in bars.values():
            bar.__exit__()
