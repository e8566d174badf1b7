"""Commands that draw images from a model: sample, decode, reconstruct, interpolate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from ..console import out, warn
from ..errors import UsageError
from ..options import seed_option
from .app import (
    INPUT_HELP,
    MAX_GRID,
    MAX_ROWS,
    MAX_SAMPLES,
    CkptArg,
    DataDirOpt,
    DeviceOpt,
    InputArg,
    LabelOpt,
    ModeOpt,
    NoDownloadOpt,
    app,
    check_mode,
    decoded,
    examples_out,
    fitted_sampler,
    impute,
    layout,
    plot_rows,
    positive,
    write_examples,
)
from .app import inputs as inputs_of
from .app import model as model_of


@app.command()
def sample(
    ckpt: CkptArg,
    n: Annotated[int, typer.Option("-n", help="How many samples.")] = 64,
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="Output image (.png), or for a model of rows a .csv, .parquet or .npy of rows. Default: CKPT-samples.png (.csv).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", callback=seed_option, help="Seed of the prior draws.")] = 0,
    temperature: Annotated[
        float, typer.Option("--temperature", "-t", help="Scale of the prior draws (below 1: cleaner, less varied).")
    ] = 1.0,
    nrow: Annotated[Optional[int], typer.Option("--nrow", help="Images per row. Default: a square grid.")] = None,
    mode: Annotated[
        Optional[str],
        typer.Option(
            "--mode",
            help="mean: the decoder's mean image (rows: the mean, the most probable category); sample: a draw from the likelihood. Default: mean for images, sample for rows (synthetic data).",
        ),
    ] = None,
    label: Annotated[
        Optional[str],
        typer.Option(
            "--label",
            help="A class-conditional model (cvae): draw this class (an index or a class name). Default: one class per column.",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")] = "auto",
    sampler: Annotated[
        str,
        typer.Option(
            "--sampler",
            help="Where the codes come from: prior (the family's own), or a density fitted to the training codes: gmm, two-stage, maf, pixelcnn (VQ-VAE), ... (`vae plugins` lists them). Fitted once, saved beside CKPT, reused.",
        ),
    ] = "prior",
    sampler_option: Annotated[
        Optional[List[str]],
        typer.Option("--sampler-option", metavar="KEY=VALUE", help="Sampler option (repeatable), e.g. components=20."),
    ] = None,
    fit_on: Annotated[
        Optional[str],
        typer.Option(
            "--fit-on",
            metavar="INPUT",
            help="Images to fit the sampler on. Default: the training split it was trained on.",
        ),
    ] = None,
    refit: Annotated[
        bool, typer.Option("--refit", help="Fit the sampler again even if a fitted one is saved.")
    ] = False,
    plot: Annotated[
        Optional[Path],
        typer.Option(
            "--plot",
            help="Rows: also draw the generated rows against the training rows, column by column, with the difference of their correlations (.png).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
) -> None:
    """Decode draws from the prior (or a fitted sampler of codes): a grid of images, or rows of
    synthetic data in the table's own columns."""
    from ..inputs import class_name, condition

    if nrow is not None:
        positive(nrow, "--nrow")
    if not (math.isfinite(temperature) and temperature > 0):
        raise UsageError(f"--temperature must be a positive number, got {temperature}")
    if mode is not None:
        check_mode(mode)
    import torch

    model = model_of(ckpt, device)
    rows = layout(model)
    positive(n, "-n", MAX_SAMPLES if rows is None else MAX_ROWS)
    if plot is not None and rows is None:
        raise UsageError("--plot draws generated rows against real ones: it is for models of rows (tables, vectors)")
    mode = mode or ("mean" if rows is None else "sample")
    output = examples_out(model, output, ckpt, "samples")
    gen = torch.Generator(device=model.device).manual_seed(seed)
    labels = condition(model, label, n)
    if model.num_classes and label is None and nrow is None and model.num_classes <= 32:
        k = model.num_classes  # image i is of class i % K: a multiple of K columns, one class per column
        nrow = k * max(1, round(math.sqrt(n) / k))
    if sampler == "prior":
        z = model.prior_sample(n, gen) * temperature
        done = ""
    else:
        if temperature != 1.0:
            raise UsageError("--temperature scales the prior's draws: it is for --sampler prior")
        from ..hub import beside

        fitted, done = fitted_sampler(
            model, beside(ckpt), sampler, sampler_option, fit_on, refit, data_dir, no_download
        )
        z = fitted.sample(n, torch.Generator().manual_seed(seed), model)
    images = decoded(model, z, mode, gen, labels)
    size = write_examples(model, images, output, nrow)
    what = f" of class {class_name(model, int(labels[0]))}" if labels is not None else ""
    source = f" from sampler {sampler} ({done})" if done else ""
    out.print(f"Wrote {n} samples{what}{source} to {output} {size}.")
    if plot is not None:
        plot_rows(model, images, plot, data_dir, no_download)


# -- decode -----------------------------------------------------------------------------------


@app.command()
def decode(
    ckpt: CkptArg,
    latent_file: Annotated[
        Optional[Path],
        typer.Argument(
            metavar="LATENTS", help="A file from vae encode, or a .npy/.csv of shape [N, D].", show_default=False
        ),
    ] = None,
    z: Annotated[
        Optional[List[str]],
        typer.Option("--z", help="One latent code as comma-separated numbers (repeatable), e.g. --z 0.5,-1.2,..."),
    ] = None,
    n: Annotated[
        Optional[int], typer.Option("-n", help=f"Decode the first N codes. Default: all, at most {MAX_GRID}.")
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Output image (.png). Default: CKPT-decoded.png.")
    ] = None,
    nrow: Annotated[Optional[int], typer.Option("--nrow", help="Images per row. Default: a square grid.")] = None,
    mode: ModeOpt = "mean",
    seed: Annotated[int, typer.Option("--seed", callback=seed_option, help="Seed of --mode sample.")] = 0,
    label: LabelOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Decode latent codes into a grid of images (or rows of a table)."""
    import torch

    from .. import latents
    from ..inputs import condition

    if (latent_file is None) == (not z):
        raise UsageError(
            "give either a LATENTS file or --z values, not both"
            if latent_file
            else "give a LATENTS file (from vae encode) or --z 0.1,-2,... "
        )
    if n is not None:
        positive(n, "-n", MAX_ROWS)
    if nrow is not None:
        positive(nrow, "--nrow")
    check_mode(mode)
    codes, file_labels = latents.read(latent_file) if latent_file else (latents.parse_rows(z or []), None)
    source = f"LATENTS {latent_file}" if latent_file else "--z"
    model = model_of(ckpt, device)
    codes = latents.check(codes, model.latent_dim, source)
    output = examples_out(model, output, ckpt, "decoded")
    if n is None and len(codes) > MAX_GRID and layout(model) is None:
        warn(f"{source} holds {len(codes)} codes; decoding the first {MAX_GRID} (-n to choose)")
        n = MAX_GRID
    codes = codes[:n]
    gen = torch.Generator(device=model.device).manual_seed(seed)
    classes = condition(model, label, len(codes))
    if classes is None and model.num_classes and file_labels is not None:  # as vae encode wrote them
        classes = file_labels[: len(codes)].long()
    images = decoded(model, codes, mode, gen, classes)
    size = write_examples(model, images, output, nrow)
    what = "images" if layout(model) is None else "rows"
    out.print(f"Wrote {len(images)} decoded {what} to {output} {size}.")


# -- reconstruct ------------------------------------------------------------------------------


@app.command()
def reconstruct(
    ckpt: CkptArg,
    input: InputArg = None,
    n: Annotated[
        Optional[int],
        typer.Option("-n", help="How many images (the first N of INPUT; default 16), or rows (default: all)."),
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="Output image (.png). Default: CKPT-reconstructions.png. For rows: a .csv, .parquet or .npy of the rows with their missing cells filled (imputed), CKPT-reconstructions.csv.",
        ),
    ] = None,
    nrow: Annotated[
        int, typer.Option("--nrow", help="Images per row; each row of inputs has its reconstructions below it.")
    ] = 8,
    mode: ModeOpt = "mean",
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
) -> None:
    """Show images above their reconstructions (decoded posterior means); for rows, write them
    with every missing cell filled by the reconstruction (imputation)."""
    from .. import viz
    from ..inputs import input_labels

    positive(nrow, "--nrow")
    check_mode(mode)
    model = model_of(ckpt, device)
    rows = layout(model)
    if n is not None:
        positive(n, "-n", MAX_SAMPLES if rows is None else MAX_ROWS)
    output = examples_out(model, output, ckpt, "reconstructions", inputs=(input,))
    inputs = inputs_of(model, input, data_dir, no_download, limit=16 if n is None and rows is None else n)
    if rows is not None:
        impute(model, inputs, output, mode)
        return
    originals = model.prepare(inputs.images)
    recon = model.reconstruct(inputs.images, mode=mode, labels=input_labels(model, inputs))
    width, height = viz.save_grid(viz.above(originals, recon, nrow), output, min(nrow, len(originals)))
    count = f"{len(originals)} image{'s' if len(originals) != 1 else ''}"
    out.print(
        f"Wrote {count} and {'their reconstructions' if len(originals) != 1 else 'its reconstruction'} "
        f"to {output} ({width}x{height} px)."
    )


# -- interpolate ------------------------------------------------------------------------------


@app.command()
def interpolate(
    ckpt: CkptArg,
    a: Annotated[
        Optional[str],
        typer.Argument(
            metavar="[A",
            help="Start: " + INPUT_HELP + " Without A and B: two draws from the prior.",
            show_default=False,
        ),
    ] = None,
    b: Annotated[Optional[str], typer.Argument(metavar="B]", help="End, named like A.", show_default=False)] = None,
    steps: Annotated[int, typer.Option("--steps", "-s", help="Images along each path, both ends included.")] = 10,
    method: Annotated[
        str, typer.Option("--method", help="slerp (great circle, White 2016) or lerp (straight line).")
    ] = "slerp",
    pairs: Annotated[
        int,
        typer.Option(
            "--pairs", "-k", help="Paths, one per row: the first K images of A and B, or K pairs of prior draws."
        ),
    ] = 1,
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="Output: .png (one row per path) or .gif (animated there and back). Default: CKPT-interpolation.png.",
        ),
    ] = None,
    frame_ms: Annotated[int, typer.Option("--frame-ms", help="Milliseconds per frame of a .gif.")] = 100,
    seed: Annotated[int, typer.Option("--seed", callback=seed_option, help="Seed of the prior draws.")] = 0,
    mode: ModeOpt = "mean",
    label: Annotated[
        Optional[str],
        typer.Option(
            "--label",
            help="A class-conditional model (cvae): decode the paths as this class. Default: the class of A (with prior ends: class k for path k).",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
) -> None:
    """Decode the path between two latent codes: of two images, or of two prior draws."""
    import torch

    from .. import latents, viz
    from ..inputs import condition

    if (a is None) != (b is None):
        raise UsageError("give both A and B, or neither (then two prior draws are used)")
    positive(steps, "--steps", 1000)
    if steps < 2:
        raise UsageError("--steps must be at least 2")
    positive(pairs, "--pairs", 100)
    if steps * pairs > MAX_SAMPLES:
        raise UsageError(f"--steps {steps} x --pairs {pairs} = {steps * pairs} images; at most {MAX_SAMPLES}")
    positive(frame_ms, "--frame-ms", 60_000)
    check_mode(mode)
    if method not in ("slerp", "lerp"):
        raise UsageError(f"--method must be slerp or lerp, got {method!r}")
    model = model_of(ckpt, device)
    output = examples_out(model, output, ckpt, "interpolation", viz.IMAGE_SUFFIXES + viz.ANIMATION_SUFFIXES, (a, b))
    gen = torch.Generator(device=model.device).manual_seed(seed)
    if a is None and not model.HAS_PRIOR:
        raise UsageError(f"--model {model.kind} has no prior to draw the ends from; give A and B")
    classes = condition(model, label, pairs)
    if a is None:
        ends = model.prior_sample(2 * pairs, gen).view(2, pairs, model.latent_dim)
        start, end = ends[0], ends[1]
        if model.num_classes and classes is None:
            classes = torch.arange(pairs) % model.num_classes
    else:
        (start, a_labels), (end, _) = (
            _endpoints(model, str(text), pairs, data_dir, no_download, label) for text in (a, b)
        )
        classes = a_labels if classes is None else classes
    path = latents.interpolate(start, end, steps, method)  # (K, S, D)
    row_labels = None if classes is None else torch.as_tensor(classes).repeat_interleave(steps)
    images = model.decode(
        path.reshape(-1, model.latent_dim), mode=mode, generator=gen, labels=row_labels
    )  # (K*S, C, H, W)
    if layout(model) is not None:
        step = torch.arange(steps).repeat(pairs)
        path_index = torch.arange(pairs).repeat_interleave(steps)
        size = write_examples(model, images, output, extra={"path": path_index, "step": step})
        out.print(f"Wrote {pairs} path(s) of {steps} steps ({method}) to {output} {size}.")
        return
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
    from ..inputs import input_labels

    inputs = inputs_of(model, text, data_dir, no_download, limit=pairs)
    if len(inputs) < pairs:
        raise UsageError(f"{text} holds {len(inputs)} image(s); --pairs {pairs} needs {pairs}")
    labels = input_labels(model, inputs, label)
    labels = None if labels is None else labels[:pairs]
    mean, _ = model.encode(inputs.images[:pairs], labels)
    return mean, labels
