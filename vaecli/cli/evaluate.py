"""``vae evaluate``: numbers comparable with papers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from ..console import escape, out, progress
from ..errors import UsageError
from ..hub import shown
from ..options import seed_option
from .app import (
    CkptArg,
    DataDirOpt,
    DeviceOpt,
    InputArg,
    NoDownloadOpt,
    app,
    data_out,
    positive,
)
from .app import inputs as inputs_of
from .app import model as model_of
from .text import number_table


def _bits_note(model) -> str:
    """What the bits/dim of this model's likelihood can be compared with."""
    from ..data import preprocessing
    from ..plugins import registry

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
    input: InputArg = None,
    iw_samples: Annotated[
        int,
        typer.Option(
            "--iw-samples", "-k", help="Importance samples per image for the NLL estimate (Burda et al. 2015 use 5000)."
        ),
    ] = 100,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", "-b", help="Images per batch. Default: as many as fit in about 64 MB per tensor."),
    ] = 0,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            callback=seed_option,
            help="Seed of the posterior samples (the one vae train's test pass uses: -k 1 gives its test -ELBO).",
        ),
    ] = 1234,
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False,
    per_example: Annotated[
        Optional[Path],
        typer.Option(
            "--per-example",
            help="Also write each example's NLL and -ELBO (rows: and each column's term) to this .csv, one line per example in INPUT's order: an anomaly score per row.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --per-example file.")] = False,
    disentanglement: Annotated[
        bool,
        typer.Option(
            "--disentanglement",
            help="Measure the code against the factors of variation of INPUT (shapes, dsprites, 3dshapes, "
            "celeba, or a factors file): MIG, DCI, SAP, FactorVAE score, modularity, explicitness, "
            "seeded by --seed, instead of the likelihood numbers.",
        ),
    ] = False,
    fid: Annotated[
        bool,
        typer.Option(
            "--fid",
            help="Score samples against INPUT instead: Fréchet Inception Distance (needs --fid-weights or --scorer, and pip install 'vaecli\\[scores]').",
            rich_help_panel="Sample quality",
        ),
    ] = False,
    kid: Annotated[
        bool, typer.Option("--kid", help="Kernel Inception Distance of the samples.", rich_help_panel="Sample quality")
    ] = False,
    precision_recall: Annotated[
        bool,
        typer.Option(
            "--precision-recall", help="Precision and recall of the samples (k=3).", rich_help_panel="Sample quality"
        ),
    ] = False,
    fid_weights: Annotated[
        Optional[Path],
        typer.Option(
            "--fid-weights",
            help="The FID Inception-v3 weights as a safetensors file (default: $VAECLI_FID_WEIGHTS); docs/scores.md says where to get them.",
            rich_help_panel="Sample quality",
            show_default=False,
        ),
    ] = None,
    scorer: Annotated[
        Optional[Path],
        typer.Option(
            "--scorer",
            help="Score on the features of a scorer from vae train-scorer instead of Inception (offline; not comparable with papers).",
            rich_help_panel="Sample quality",
            show_default=False,
        ),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(
            "--samples", help="Samples to draw (0: as many as INPUT has images).", rich_help_panel="Sample quality"
        ),
    ] = 0,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
) -> None:
    """Numbers comparable with papers: -ELBO, IWAE NLL, bits/dim, active units; or FID, KID, precision and recall of samples.

    The negative ELBO with its reconstruction and KL parts, the importance-weighted estimate of the negative log-likelihood (Burda et al. 2015), in nats per example. With --fid, --kid or --precision-recall: the model's prior samples against INPUT's images, on Inception's features (--fid-weights) or a scorer's (--scorer).
    """
    import time

    from ..inputs import input_labels

    positive(iw_samples, "--iw-samples", 100_000)
    if batch_size:
        positive(batch_size, "--batch-size")
    model = model_of(ckpt, device)
    inputs = inputs_of(model, input, data_dir, no_download)
    started = time.perf_counter()
    if disentanglement:
        _disentanglement(model, inputs, ckpt, seed, as_json, started)
        return
    if fid or kid or precision_recall:
        from .quality import sample_quality

        sample_quality(
            model,
            inputs,
            ckpt,
            fid=fid,
            kid=kid,
            pr=precision_recall,
            fid_weights=None if fid_weights is None else str(fid_weights),
            scorer=scorer,
            samples=samples,
            seed=seed,
            batch_size=batch_size,
            as_json=as_json,
            started=started,
        )
        return
    if fid_weights or scorer or samples:
        raise UsageError("--fid-weights, --scorer and --samples go with --fid, --kid or --precision-recall")
    if per_example is not None:
        if per_example.suffix.lower() != ".csv":
            raise UsageError(f"--per-example {per_example}: the file name must end in .csv")
        data_out(per_example, ckpt, force)
    with progress(len(inputs), f"evaluating (k={iw_samples})", show=not as_json) as update:
        result = model.evaluate(
            inputs.images,
            iw_samples,
            batch_size,
            seed,
            labels=input_labels(model, inputs),
            progress=update,
            per_example=per_example is not None,
        )
    each = result.pop("per_example", None)
    result.update(input=inputs.source, checkpoint=shown(ckpt), seconds=time.perf_counter() - started)
    _check_finite(result)
    if per_example is not None and each is not None:
        _write_scores(per_example, each)
    if as_json:
        print(json.dumps(result, indent=2, allow_nan=False))
        return
    rows = "columns" in result
    what = "rows" if rows else "images"
    table = number_table(f"{shown(ckpt)} on {inputs.source} ({result['examples']} {what}), nats per example")
    if "nll" not in result:  # a family without a likelihood: its own terms
        for term in model.TERMS:
            what = "-log p(x|z), z the encoder's code" if term == "recon" else "a term of its loss"
            table.add_row(term, f"{result[term]:.2f}", what)
        table.add_row(
            "active units", f"{result['active_units']} / {result['latent_dim']}", "codes that vary (variance > 0.01)"
        )
        table.add_row("NLL", "-", f"--model {model.kind} has no likelihood of x to estimate")
    else:
        table.add_row("-ELBO", f"{result['nelbo']:.2f}", "reconstruction + KL")
        table.add_row("  reconstruction", f"{result['recon']:.2f}", escape(f"E_q[-log p(x|z)], {iw_samples} sample(s)"))
        closed = "closed form" if "kl_per_dim" in result else f"sampled, {iw_samples} sample(s)"
        table.add_row("  KL", f"{result['kl']:.2f}", f"KL(q(z|x) || p(z)), {closed}")
        table.add_row("NLL (IWAE)", f"{result['nll']:.2f}", f"-log p(x), k={iw_samples} (Burda et al. 2015)")
        if rows:
            table.add_row("  bits per row", f"{result['nll'] / math.log(2):.2f}", "NLL / ln 2")
        else:
            table.add_row(
                "bits/dim",
                f"{result['bits_per_dim']:.4f}",
                f"NLL / ({result['pixels']} pixels x ln 2)" + _bits_note(model),
            )
        table.add_row(
            "active units", f"{result['active_units']} / {result['latent_dim']}", escape("Cov_x E_q[z_u] > 0.01")
        )
    out.print(table)
    if rows:
        out.print(_columns_table(result["columns"]))
    if per_example is not None:
        out.print(f"Wrote {result['examples']} per-example scores to {per_example}.")
    out.print(f"[dim]{result['seconds']:.1f} s on {model.device}[/]")


def _columns_table(columns: dict):
    """Each column's reconstruction term, largest first: where the model explains the data least."""
    table = number_table("reconstruction by column, E_q[-log p(x_j|z)] in nats (one posterior draw)")
    shown_cols = sorted(columns.items(), key=lambda kv: -kv[1])
    for name, value in shown_cols[:40]:
        table.add_row(escape(name), f"{value:.3f}", "")
    if len(shown_cols) > 40:
        table.add_row(f"... {len(shown_cols) - 40} more", "", "--json lists every column")
    return table


def _write_scores(path: Path, each: dict) -> None:
    """One line per example: its index, NLL, -ELBO and column terms (atomically)."""
    import csv
    import os

    names = list(each)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["row", *names])
            columns = [each[k].tolist() for k in names]
            for i in range(len(columns[0])):
                w.writerow([i, *(f"{c[i]:.6g}" for c in columns)])
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _check_finite(result: dict) -> None:
    """No NaN or infinity is ever reported as a result: one line naming the numbers instead."""
    import math

    from ..errors import VaeError

    def numbers(value):
        if isinstance(value, float):
            yield value
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from numbers(v)

    bad = [k for k, v in result.items() if any(not math.isfinite(x) for x in numbers(v))]
    if bad:
        raise VaeError(
            f"the model's {', '.join(bad)} came out NaN or infinite on these images: its outputs overflow "
            f"(weights too large, or inputs unlike its training data); no numbers were reported"
        )


METRIC_NOTES = {
    "mig": "mutual information gap (Chen et al. 2018)",
    "dci_disentanglement": "DCI disentanglement (Eastwood & Williams 2018)",
    "dci_completeness": "DCI completeness",
    "dci_informativeness": "DCI informativeness: accuracy of the factors read from the code",
    "sap": "separated attribute predictability (Kumar et al. 2018)",
    "factorvae_score": "FactorVAE score (Kim & Mnih 2018); chance about 1 / factors",
    "modularity": "modularity (Ridgeway & Mozer 2018)",
    "explicitness": "explicitness (Ridgeway & Mozer 2018): ROC AUC, chance 0.5",
}


def _disentanglement(model, inputs, ckpt, seed: int, as_json: bool, started: float) -> None:
    """``vae evaluate --disentanglement``: the metrics, as a table or JSON."""
    import time

    from ..disentanglement import METRICS

    with (
        progress(len(inputs), "encoding", show=not as_json) as encoding,
        progress(5, "scoring", show=not as_json) as scoring,
    ):
        result = model.disentanglement(
            inputs, seed=seed, progress=lambda stage, done, total: (encoding if stage == "encoding" else scoring)(done)
        )
    result.update(input=inputs.source, checkpoint=shown(ckpt), seconds=time.perf_counter() - started)
    _check_finite(result)
    if as_json:
        print(json.dumps(result, indent=2, allow_nan=False))
        return
    title = f"{shown(ckpt)} on {inputs.source} ({result['examples']} images): the code against {', '.join(result['factors'])}"
    table = number_table(title)
    for metric in METRICS:
        table.add_row(metric, f"{result[metric]:.3f}", METRIC_NOTES[metric])
    out.print(table)
    if result["skipped"]:
        out.print(f"[dim]left out, one value only: {escape(', '.join(result['skipped']))}[/]")
    out.print(f"[dim]{result['seconds']:.1f} s; seed {seed}; vae plot-latent --factors draws the information matrix[/]")
