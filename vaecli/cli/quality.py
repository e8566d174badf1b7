"""Sample quality: ``vae evaluate --fid/--kid/--precision-recall`` and ``vae train-scorer``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from ..console import escape, out, progress
from ..errors import UsageError
from ..hub import shown
from ..options import seed_option
from .app import DataDirOpt, DeviceOpt, NoDownloadOpt, app, positive
from .text import number_table

MAX_SAMPLES = 100_000

NOTES = {
    "fid": "Fréchet distance of the features' Gaussians (Heusel et al. 2017); 0: the same statistics",
    "kid": "kernel (polynomial MMD²) distance, mean ± std over {subsets} subsets of {size} (Bińkowski et al. 2018)",
    "precision": "share of samples inside the real images' 3-nearest-neighbour balls (Kynkäänniemi et al. 2019)",
    "recall": "share of real images inside the samples' balls",
    "f_score": "their harmonic mean",
}


def sample_quality(
    model, inputs, ckpt, *, fid, kid, pr, fid_weights, scorer, samples, seed, batch_size, as_json, started
) -> None:
    """Samples of ``model`` against ``inputs``, on Inception's or a scorer's features."""
    import torch

    from .. import scores

    scores.require()
    if scorer is not None:
        from ..scorer import load

        net, info = load(scorer, model.device)
        shape = tuple(info["input_shape"])
        if tuple(inputs.images.shape[1:]) != shape:
            raise UsageError(
                f"--scorer {scorer} takes {'x'.join(map(str, shape))} images "
                f"(it was trained on {info.get('dataset')}); these are {'x'.join(map(str, inputs.images.shape[1:]))}"
            )
    else:
        net = scores.inception(fid_weights, model.device)
    n = samples or len(inputs)
    positive(n, "--samples", MAX_SAMPLES)
    gen = torch.Generator(device=model.device).manual_seed(seed)

    def drawn(start: int, stop: int) -> torch.Tensor:
        labels = None
        if model.num_classes:  # every class alike
            labels = torch.arange(start, stop, device=model.device) % model.num_classes
        return model.sample(stop - start, generator=gen, labels=labels).float()

    batch = batch_size or 200
    with progress(len(inputs), "features of the real images", show=not as_json) as update:
        real = scores.features_of(net, inputs.images, len(inputs), batch, update)
    with progress(n, "sampling, features of the samples", show=not as_json) as update:
        fake = scores.features_of(net, drawn, n, batch, update)
    result = scores.compare(real, fake, fid=fid, kid=kid, pr=pr, seed=seed)
    result.update(
        features=net.name,
        comparable_with_papers=net.comparable,
        samples=n,
        real=len(inputs),
        input=inputs.source,
        checkpoint=shown(ckpt),
        seed=seed,
        seconds=time.perf_counter() - started,
    )
    if as_json:
        print(json.dumps(result, indent=2, allow_nan=False))
        return
    table = number_table(
        f"{shown(ckpt)}: {n} samples against {inputs.source} ({len(inputs)} images), on the features of {net.name}"
    )
    if "fid" in result:
        table.add_row("FID", f"{result['fid']:.3f}", NOTES["fid"])
    if "kid_mean" in result:
        note = NOTES["kid"].format(subsets=scores.KID_SUBSETS, size=result["kid_subset_size"])
        table.add_row("KID", f"{result['kid_mean']:.5f} ± {result['kid_std']:.5f}", escape(note))
    for key, label in (("precision", "precision"), ("recall", "recall"), ("f_score", "F-score")):
        if key in result:
            table.add_row(label, f"{result[key]:.3f}", NOTES[key])
    out.print(table)
    out.print(f"[dim]{result['seconds']:.1f} s on {model.device}; seed {seed}[/]")


@app.command("train-scorer")
def train_scorer(
    dataset: Annotated[
        str, typer.Argument(help="A dataset with class labels (mnist, fashion-mnist, ...).", show_default=False)
    ],
    output: Annotated[Path, typer.Option("--out", "-o", help="The scorer file (.safetensors).")] = Path(
        "scorer.safetensors"
    ),
    epochs: Annotated[int, typer.Option("--epochs", "-e", help="Passes over the training split.")] = 3,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per step.")] = 128,
    seed: Annotated[
        int, typer.Option("--seed", callback=seed_option, help="Seed of the initialisation and the batch order.")
    ] = 0,
    dataset_option: Annotated[
        Optional[List[str]],
        typer.Option("--dataset-option", "--data-option", metavar="KEY=VALUE", help="Dataset option (repeatable)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --out file.")] = False,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
) -> None:
    """Train a small classifier on a labelled dataset: its features score samples offline.

    vae evaluate CKPT --fid --scorer FILE then measures FID, KID and precision/recall on its features instead of Inception's: nothing to download, but the numbers compare only with numbers of the same scorer file, never with the Inception FIDs of papers.
    """
    from ..device import resolve_device
    from ..options import parse_pairs
    from ..scorer import train

    positive(epochs, "--epochs", 1000)
    positive(batch_size, "--batch-size")
    if output.suffix != ".safetensors":
        raise UsageError(f"--out {output}: a scorer file must end in .safetensors")
    if output.exists() and not force:
        raise UsageError(f"{output} already exists; pass --force to overwrite it, or choose another --out")
    options = parse_pairs(dataset_option or [], "--dataset-option")
    with progress(epochs, "training the scorer (epochs)") as update:

        def report(epoch: int, done: int, total: int) -> None:
            if done == total:
                update(epoch)

        info = train(
            dataset,
            output,
            options=options,
            data_dir=None if data_dir is None else str(data_dir),
            download=not no_download,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            device=resolve_device(device),
            progress=report,
        )
    out.print(
        f"Wrote {output}: a scorer of {info['dataset']} ({info['features']} features), "
        f"test accuracy {100 * info['test_accuracy']:.2f}% after {epochs} epochs ({info['seconds']:.1f} s)."
    )
    out.print(f"Next: vae evaluate CKPT --fid --kid --precision-recall --scorer {output}")
