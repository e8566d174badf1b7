"""Commands on a model's latent space: encode, plot-latent."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from ..console import out, progress
from ..errors import UsageError
from ..hub import shown
from .app import (
    INPUT_HELP,
    CkptArg,
    DataDirOpt,
    DeviceOpt,
    InputArg,
    NoDownloadOpt,
    app,
    data_out,
    picture_out,
    positive,
)
from .app import inputs as inputs_of
from .app import model as model_of


@app.command()
def encode(
    ckpt: CkptArg,
    input: Annotated[str, typer.Argument(help=INPUT_HELP, show_default=False)],
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="Output: .npy (posterior means [N, D]), .safetensors (mean, logvar, labels) or .csv (a table with labels). Default: CKPT-latents.npy.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per batch.")] = 1000,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
) -> None:
    """Encode images into their latent codes (the posterior means and log-variances)."""
    from .. import latents
    from ..inputs import input_labels

    positive(batch_size, "--batch-size")
    from ..hub import beside

    base = beside(ckpt)
    output = Path(output or base.with_name(f"{base.stem}-latents.npy")).expanduser()
    latents.check_suffix(output, "-o")
    data_out(output, ckpt, force)
    model = model_of(ckpt, device)
    inputs = inputs_of(model, input, data_dir, no_download)
    with progress(len(inputs), "encoding", show=len(inputs) > 5 * batch_size) as update:
        mean, logvar = model.encode_all(inputs.images, batch_size, input_labels(model, inputs), update)
    latents.write(
        output,
        mean,
        logvar if model.STOCHASTIC else None,
        inputs.labels,
        inputs.class_names,
        {"checkpoint": shown(ckpt), "input": inputs.source, "latent_dim": model.latent_dim},
    )
    out.print(
        f"Wrote the latent codes of {len(mean)} image{'s' if len(mean) != 1 else ''} "
        f"({model.latent_dim} dimensions) to {output}."
    )


@app.command("plot-latent")
def plot_latent(
    ckpt: CkptArg,
    input: InputArg = None,
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="Output picture (.png, .pdf, .svg). Default: CKPT-latent.png, CKPT-manifold.png or CKPT-traverse.png.",
        ),
    ] = None,
    manifold: Annotated[
        bool,
        typer.Option(
            "--manifold",
            help="Decode a grid over a latent plane, spaced by the inverse normal CDF (Kingma & Welling 2013, fig. 4).",
        ),
    ] = False,
    traverse: Annotated[
        bool,
        typer.Option(
            "--traverse",
            help="One row per latent dimension, ordered by its KL: that dimension swept, the others at the first input's code.",
        ),
    ] = False,
    factors: Annotated[
        bool,
        typer.Option(
            "--factors",
            help="A heat map of the mutual information of each latent dimension with each factor of variation of INPUT (over the factor's entropy).",
        ),
    ] = False,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="Scatter axes for more than 2 dimensions: pca (first two principal components) or dims (two latent dimensions, see --dims).",
        ),
    ] = "pca",
    dims: Annotated[
        Optional[str],
        typer.Option(
            "--dims",
            help="Two latent dimensions I,J for --method dims and --manifold. Default: the two with the largest KL.",
        ),
    ] = None,
    color_by: Annotated[
        Optional[str],
        typer.Option(
            "--color-by",
            help="label, or a factor of variation the dataset records (shapes: scale, orientation, pos_x, pos_y).",
        ),
    ] = None,
    max_points: Annotated[
        int, typer.Option("--max-points", help="Plot at most this many points (the first ones).")
    ] = 10_000,
    grid_size: Annotated[
        Optional[int],
        typer.Option(
            "--grid", help="Cells per side of --manifold (20); columns of --traverse (11).", show_default=False
        ),
    ] = None,
    extent: Annotated[
        Optional[float],
        typer.Option(
            "--range",
            help="--traverse sweeps each dimension over [-R, R] (3); --manifold spans [-R, R] instead of the inverse-CDF grid.",
            show_default=False,
        ),
    ] = None,
    label: Annotated[
        Optional[str],
        typer.Option(
            "--label",
            help="A class-conditional model (cvae): decode --manifold and --traverse as this class. Default: the class of the first input (class 0 for --manifold).",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
) -> None:
    """Picture the latent space: scatter, learned manifold, traversal or factor information.

    By default a scatter of the posterior means of INPUT coloured by label; --manifold decodes a
    grid over a latent plane; --traverse sweeps each dimension in turn (each row named after the
    factor it captures, where INPUT has factors); --factors maps what each dimension knows of
    each factor of variation.
    """
    from .. import pictures, viz
    from ..inputs import condition, input_labels
    from ..model import kl_per_dim

    if manifold + traverse + factors > 1:
        raise UsageError("--manifold, --traverse and --factors make different pictures; choose one")
    if method not in ("pca", "dims"):
        raise UsageError(f"--method must be pca or dims, got {method!r}")
    positive(max_points, "--max-points")
    if grid_size is not None:
        positive(grid_size, "--grid", 100)
    if extent is not None and not (math.isfinite(extent) and 0 < extent <= 100):
        raise UsageError(f"--range must be a number above 0 and at most 100, got {extent}")
    model = model_of(ckpt, device)
    kind = "manifold" if manifold else "traverse" if traverse else "factors" if factors else "latent"
    output = picture_out(output, ckpt, kind, viz.PLOT_SUFFIXES, (input,))
    if manifold and not model.NORMAL_PRIOR and extent is None:
        raise UsageError(
            f"--model {model.kind} has no N(0, I) prior for the inverse-CDF grid; give the "
            "extent of the grid with --range R"
        )
    chosen = _parse_dims(dims, model.latent_dim)
    if model.latent_dim < 2 and not (traverse or factors):
        raise UsageError("this model has a 1-dimensional latent space; use --traverse")
    need_inputs = traverse or not manifold or (chosen is None and model.latent_dim > 2)
    inputs = inputs_of(model, input, data_dir, no_download, limit=max_points) if need_inputs else None
    if inputs is not None:
        with progress(len(inputs), "encoding", show=len(inputs) > 5000) as update:
            mean, logvar = model.encode_all(inputs.images, labels=input_labels(model, inputs, label), progress=update)
        if model.STOCHASTIC:  # the KL to N(0, I) of each dimension
            kl = kl_per_dim(mean.double(), logvar.double()).mean(0)  # (D,)
        else:  # no posterior variance: rank by how much each code varies
            kl = mean.double().var(0, unbiased=False)
        by_kl = kl.argsort(descending=True).tolist()
    if chosen is None and model.latent_dim >= 2:
        chosen = (0, 1) if model.latent_dim == 2 else tuple(sorted(by_kl[:2]))
    cls = condition(model, label, 1)
    if model.num_classes and cls is None:  # the first input's class, else class 0
        known = input_labels(model, inputs, label) if inputs is not None else None
        first = known[:1] if known is not None else None
        cls = first if first is not None else condition(model, "0", 1)
    if manifold:
        size = pictures.manifold(model, output, chosen, grid_size or 20, extent or 0.0, cls)
    elif factors:
        size = pictures.factor_information(model, output, inputs, mean, kl, by_kl, model.STOCHASTIC)
    elif traverse:
        size = pictures.traverse(
            model, output, inputs, mean, kl, by_kl, grid_size or 11, extent or 3.0, cls, model.STOCHASTIC
        )
    else:
        size = pictures.scatter(model, output, inputs, mean, method, chosen, color_by)
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
            raise UsageError(
                f"--dims {text}: dimension {d} does not exist (the latent space has dimensions 0 to {latent_dim - 1})"
            )
    if i == j:
        raise UsageError(f"--dims {text}: give two different dimensions")
    return i, j
