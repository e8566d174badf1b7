"""vaecli-compare: ``vae compare``, training runs side by side from their checkpoints.

    vae compare z2.safetensors z8.safetensors beta4.safetensors -o curves.png

Only each checkpoint's metadata is read (``vaecli.metadata``): no model is built. Rich and
matplotlib are imported when the command runs, so that ``vae --help`` stays fast. The pieces
are usable from Python too: ``load_runs``, ``summarize``, ``not_comparable``, ``plot_curves``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, List, Optional

import typer

import vaecli
from vaecli.errors import UsageError, unknown_name

__version__ = "0.1.0"

PLOT_SUFFIXES = (".png", ".pdf", ".svg")
DEFAULT_METRIC = "test_nelbo"
LABELS = {  # per-epoch metric -> how the table and the plot name it
    "train_nelbo": "train -ELBO",
    "test_nelbo": "test -ELBO",
    "train_recon": "train recon",
    "test_recon": "test recon",
    "train_kl": "train KL",
    "test_kl": "test KL",
    "train_objective": "train objective",
    "kl_weight": "KL weight",
    "lr": "learning rate",
}
NATS = ("nelbo", "loss", "recon", "kl", "objective")  # metrics named *_<one of these> are nats per example


def label(metric: str) -> str:
    return LABELS.get(metric, metric)


def in_nats(metric: str) -> bool:
    return metric.rsplit("_", 1)[-1] in NATS


def _number(value):
    """A finite number, or None (JSON has no NaN)."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


# -- reading ------------------------------------------------------------------------------------


def load_runs(paths: list) -> list[dict]:
    """Each checkpoint's metadata, in the order given. A file named twice, a file that is not
    a checkpoint or one with no metrics per epoch is a one-line ``VaeError``."""
    seen: dict = {}
    for path in paths:
        key = Path(path).expanduser().resolve()
        if key in seen:
            also = f" (as {seen[key]})" if str(seen[key]) != str(path) else ""
            raise UsageError(f"{path} is given twice{also}; name each checkpoint once")
        seen[key] = path
    metas = []
    for path in paths:
        meta = vaecli.metadata(path)
        if not meta.get("metrics"):
            raise UsageError(f"{path}: the checkpoint records no metrics per epoch; nothing to compare")
        metas.append(meta)
    return metas


def metric_names(metas: list[dict]) -> list[str]:
    """The numeric per-epoch metrics that every checkpoint records for every epoch."""
    common: Optional[set] = None
    for meta in metas:
        for m in meta["metrics"]:
            keys = {k for k, v in m.items() if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)}
            common = keys if common is None else common & keys
    return sorted(common or ())


def objective(kind: str, training: dict) -> str:
    """The training objective in a few words: ELBO, beta 4, IWAE k=5, ..."""
    if kind == "ae":
        return "reconstruction"
    k, beta = training.get("iw_samples", 1), training.get("beta", 1.0)
    parts = [f"IWAE k={k}" if k > 1 else "ELBO" if beta == 1 else f"beta {beta:g}"]
    if training.get("kl_warmup"):
        parts.append(f"warm-up {training['kl_warmup']:g}")
    if training.get("free_bits"):
        parts.append(f"free bits {training['free_bits']:g}")
    return ", ".join(parts)


def summarize(path, meta: dict, metric: str = DEFAULT_METRIC) -> dict:
    """One row of the comparison: how the run was set up and its numbers (nats per example).
    ``best`` is the lowest value of ``metric`` over the epochs, reached at ``best_epoch``."""
    model, data, metrics = meta["model"], meta["data"], meta["metrics"]
    scored = [m for m in metrics if _number(m.get(metric)) is not None]
    best = min(scored, key=lambda m: m[metric]) if scored else {}
    kind = model.get("kind", "vae")
    return {
        "file": str(path),
        "kind": kind,
        "latent_dim": model.get("latent_dim"),
        "objective": objective(kind, meta["training"]),
        "architecture": model.get("architecture", {}).get("name"),
        "likelihood": model.get("likelihood", {}).get("name"),
        "binarize": data.get("preprocessing", {}).get("binarize", "none"),
        "dataset": data.get("dataset", {}).get("name"),
        "input_shape": model.get("input_shape"),
        "epochs": meta.get("epoch", len(metrics)),
        "parameters": meta.get("parameters"),
        "final_train_nelbo": _number(metrics[-1].get("train_nelbo")),
        "final_test_nelbo": _number(metrics[-1].get("test_nelbo")),
        "metric": metric,
        "best": best.get(metric),
        "best_epoch": best.get("epoch"),
        "seconds": sum(_number(m.get("seconds")) or 0.0 for m in metrics),
    }


def not_comparable(rows: list[dict]) -> list[str]:
    """Why the runs' nats per example do not measure the same thing (empty if they do)."""
    reasons = []
    for key, what in (
        ("dataset", "datasets"),
        ("input_shape", "image shapes"),
        ("likelihood", "likelihoods"),
        ("binarize", "binarizations"),
    ):
        values = list(
            dict.fromkeys("x".join(map(str, r[key])) if isinstance(r[key], list) else str(r[key]) for r in rows)
        )
        if len(values) > 1:
            reasons.append(f"different {what} ({', '.join(values)})")
    return reasons


# -- showing ------------------------------------------------------------------------------------


def _fmt(value, metric: str = "test_nelbo") -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if in_nats(metric) else f"{value:.4g}"


def table(rows: list[dict], metric: str):
    """A Rich table, one row per run; the lowest value of ``metric`` in bold green."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    lowest = min((r["best"] for r in rows if r["best"] is not None), default=None)
    unit = ", nats per example" if in_nats(metric) else ""
    t = Table(
        title=f"{len(rows)} run{'s' if len(rows) != 1 else ''}{unit}; the lowest {label(metric)} in green",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    cells = []
    for r in rows:
        best = _fmt(r["best"], metric)
        if r["best"] is not None and r["best"] == lowest:
            best = f"[bold green]{best}[/]"
        model = f"{r['kind'].upper()} z={r['latent_dim']}"
        if r["objective"] not in ("ELBO", "reconstruction"):
            model += f", {r['objective']}"
        binarized = f", binarized {r['binarize']}" if r["binarize"] != "none" else ""
        cells.append(
            [
                escape(r["file"]),
                escape(model),
                escape(str(r["architecture"])),
                escape(f"{r['likelihood']}{binarized}"),
                escape(str(r["dataset"])),
                str(r["epochs"]),
                f"{r['parameters']:,}",
                _fmt(r["final_train_nelbo"]),
                _fmt(r["final_test_nelbo"]),
                best,
                str(r["best_epoch"] or "-"),
                f"{r['seconds']:.1f}",
            ]
        )
    t.add_column("file", no_wrap=True)
    for name in ("model", "arch", "likelihood", "dataset"):
        t.add_column(name)
    for name in ("epochs", "params", "train\n-ELBO", "test\n-ELBO", f"best\n{label(metric)}", "at\nepoch", "seconds"):
        t.add_column(name, justify="right")
    for row in cells:
        t.add_row(*row)
    return t


def plot_curves(rows: list[dict], metas: list[dict], metric: str, path: Path, available: list[str]) -> None:
    """Learning curves, one colour per run: x the epoch, y ``metric`` (test solid, its train
    counterpart dashed when the checkpoints record one). Written atomically by suffix."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from vaecli import viz

    split, _, stem = metric.partition("_")
    if split in ("train", "test") and {"test_" + stem, "train_" + stem} <= set(available):
        keys = [("test_" + stem, "-"), ("train_" + stem, "--")]
    else:
        keys = [(metric, "-")]
    fig = Figure(figsize=(8, 4.5), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    handles = []
    longest = max(len(meta["metrics"]) for meta in metas)
    for i, (row, meta) in enumerate(zip(rows, metas)):
        colour = f"C{i % 10}"
        epochs = [m["epoch"] for m in meta["metrics"]]
        for key, style in keys:
            ax.plot(
                epochs,
                [m[key] for m in meta["metrics"]],
                linestyle=style,
                color=colour,
                marker="o" if longest <= 30 else None,
                markersize=3,
                linewidth=1.6,
            )
        handles.append(Line2D([], [], color=colour, label=row["file"]))
    if len(keys) == 2:
        handles.append(Line2D([], [], linestyle="none", label=" "))  # a gap between runs and styles
        handles += [Line2D([], [], color="0.35", linestyle=s, label=label(k)) for k, s in keys]
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example" if in_nats(metric) else label(metric))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    names = " and ".join(f"{label(k)} ({'solid' if s == '-' else 'dashed'})" for k, s in keys)
    ax.set_title(f"Learning curves: {names}" if len(keys) == 2 else f"Learning curves: {label(metric)}")
    fig.legend(handles=handles, loc="outside right upper", frameon=False)
    viz.write_file(path, lambda buf: fig.savefig(buf, format=path.suffix[1:].lower()))


# -- the command --------------------------------------------------------------------------------


def run(
    ckpts: list, output: Optional[Path] = None, metric: str = DEFAULT_METRIC, sort: bool = False, as_json: bool = False
) -> list[dict]:
    """What ``vae compare`` does; returns the rows."""

    from vaecli import viz
    from vaecli.console import out, warn

    if output is not None:
        target = Path(output).expanduser().resolve()
        if any(Path(p).expanduser().resolve() == target for p in ckpts):
            raise UsageError(f"-o {output} is one of the checkpoints being compared; give another file name")
        output = viz.check_output(output, PLOT_SUFFIXES)
    metas = load_runs(ckpts)
    available = metric_names(metas)
    if metric not in available:
        raise unknown_name("metric", metric, available)
    rows = [summarize(p, meta, metric) for p, meta in zip(ckpts, metas)]
    if sort:
        order = sorted(range(len(rows)), key=lambda i: (rows[i]["best"] is None, rows[i]["best"] or 0.0))
        rows, metas = [rows[i] for i in order], [metas[i] for i in order]
    reasons = not_comparable(rows)
    if reasons:
        warn("these runs' nats per example are not comparable: " + "; ".join(reasons))
    if output is not None:
        plot_curves(rows, metas, metric, output, available)
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        out.print(table(rows, metric))
        if output is not None:
            out.print(f"Wrote the learning curves of {len(rows)} run{'s' if len(rows) != 1 else ''} to {output}.")
    return rows


@vaecli.hookimpl
def register_commands(app: typer.Typer) -> None:
    @app.command()
    def compare(
        checkpoints: Annotated[
            List[Path],
            typer.Argument(
                metavar="CKPT", help="Checkpoints written by vae train, in the order to show them.", show_default=False
            ),
        ],
        output: Annotated[
            Optional[Path],
            typer.Option(
                "--out",
                "-o",
                help="Also draw the learning curves into this picture: .png, .pdf or .svg.",
                show_default=False,
            ),
        ] = None,
        metric: Annotated[
            str,
            typer.Option(
                "--metric",
                "-m",
                help="Per-epoch metric for the 'best' column and the plot: test_nelbo (the test -ELBO), test_recon, test_kl, train_nelbo, ...",
            ),
        ] = DEFAULT_METRIC,
        sort: Annotated[
            bool,
            typer.Option(
                "--sort", help="Order the runs by the best value of --metric, lowest first (default: as given)."
            ),
        ] = False,
        as_json: Annotated[
            bool,
            typer.Option(
                "--json", help="Print the rows as JSON (a list of objects, numbers as numbers) instead of the table."
            ),
        ] = False,
    ) -> None:
        """Compare training runs side by side from their checkpoints.

        One row per checkpoint: the model, objective, architecture, likelihood and dataset,
        epochs, parameters, the final train and test -ELBO, the best value of --metric with its
        epoch, and the training time. Losses are nats per example; the lowest is in green.
        With -o, the learning curves are drawn too: test solid, train dashed.

        Only the checkpoints' metadata is read, no model is built. Runs on different datasets,
        likelihoods or binarizations are shown with a warning: their nats are not comparable.

        Example:  vae compare z2.safetensors z8.safetensors -o curves.png
        """
        run(checkpoints, output, metric, sort, as_json)
