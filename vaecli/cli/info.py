"""``vae info``: how a checkpoint's model was built and trained."""

from __future__ import annotations

import json

import typer
from rich.table import Table
from typing_extensions import Annotated

from ..console import escape, out
from ..header import TERM_NAMES, scores
from ..hub import shown
from .app import CkptArg, app
from .text import fmt_objective, fmt_optimizer, fmt_options, fmt_provider, fmt_resumes, fmt_setting


def _recipe_rows(t: dict) -> list:
    """The rows of `vae info` that say which recipe a run started from and how its options
    changed it, every setting it ran with, and the line that repeats it."""
    from ..recipes import changes, published_text, repeat_command

    rows = []
    rec = t.get("recipe")
    if rec:
        origin = f"file {rec['file']}" if rec.get("file") else fmt_provider(rec.get("provider"))
        changed = {k: v for k, v in changes(t).items() if k in (rec.get("settings") or {})}
        what = "; ".join(f"{k} {fmt_setting(then)} -> {fmt_setting(now)}" for k, (then, now) in changed.items())
        rows.append(
            (
                "recipe",
                f"{escape(str(rec.get('name')))}  [dim]({escape(origin)})[/]"
                + (f"  changed by options: {escape(what)}" if what else ""),
            )
        )
        if rec.get("source"):
            rows.append(("  source", escape(rec["source"])))
        if rec.get("published"):
            rows.append(("  published", escape(published_text(rec["published"]))))
    else:
        rows.append(("recipe", "none"))
    shown = {k: v for k, v in t.items() if k != "recipe"}
    rows.append(("options", escape(", ".join(f"{k}={fmt_setting(v)}" for k, v in shown.items()))))
    rows.append(("repeat", escape(repeat_command(t))))
    return rows


@app.command()
def info(
    ckpt: CkptArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False,
    as_config: Annotated[
        bool, typer.Option("--config", help="Print the TOML file that repeats the run: vae train --config FILE.")
    ] = False,
) -> None:
    """Show how a checkpoint's model was built and trained, and its metrics per epoch."""
    from ..header import describe

    meta = describe(ckpt)
    n_params = meta["parameters"]
    if as_config:
        from ..config_file import to_toml

        print(to_toml(meta["training"], shown(ckpt)), end="")
        return
    if as_json:
        print(json.dumps(meta, indent=2))
        return
    m, d, t = meta["model"], meta["data"], meta["training"]
    arch, lik, ds = m.get("architecture", {}), m.get("likelihood", {}), d.get("dataset", {})
    table = Table(title=shown(ckpt), show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = [
        (
            "model",
            f"{m.get('kind', 'vae').upper()} {fmt_options((m.get('family') or {}).get('options', {}))}".rstrip()
            + f", latent dim {m.get('latent_dim')}, "
            + (f"{m['num_classes']} classes, " if m.get("num_classes") else "")
            + f"input {'x'.join(map(str, m.get('input_shape', [])))}, {n_params:,} parameters",
        ),
        (
            "architecture",
            f"{arch.get('name')}  {fmt_options(arch.get('options', {}))}  [dim]({fmt_provider(arch.get('provider'))})[/]",
        ),
        (
            "likelihood",
            f"{lik.get('name')}  {fmt_options(lik.get('options', {}))}  [dim]({fmt_provider(lik.get('provider'))})[/]",
        ),
        (
            "dataset",
            f"{ds.get('name')}  {fmt_options(ds.get('options', {}))}  [dim]({fmt_provider(ds.get('provider'))})[/]  "
            f"{d.get('n_train', '?')} train / {d.get('n_test', '?')} test",
        ),
        ("classes", ", ".join(map(str, d.get("class_names") or [])) or "none"),
        ("preprocessing", fmt_options(d.get("preprocessing", {}))),
        ("objective", _objective(t, m)),
        ("optimizer", fmt_optimizer(t)),
        (
            "training",
            f"epochs {meta['epoch']}/{t.get('epochs')}"
            + (
                f" and {meta['progress']['step']} steps of epoch {meta['progress']['epoch']}"
                if meta.get("progress")
                else ""
            )
            + f", batch {t.get('batch_size')}, seed {t.get('seed')}, device {t.get('device')}"
            + (f", {t['precision']}" if t.get("precision") else "")
            + (", compiled" if t.get("compile") else "")
            + (
                f", {t['distributed']['world_size']} processes ({t['distributed']['backend']})"
                if (t.get("distributed") or {}).get("world_size", 1) > 1
                else ""
            )
            + (f", checkpoint every {t['save_every']} steps" if t.get("save_every") else "")
            + (f"; {resumed}" if (resumed := fmt_resumes(t)) else ""),
        ),
        *_recipe_rows(t),
        ("versions", fmt_options(meta.get("versions", {}))),
        ("written", f"{meta.get('created', '?')} (updated {meta.get('updated', '?')})"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)
    metrics = meta.get("metrics") or []
    if metrics:
        mt = Table(title="metrics (nats per example)", title_justify="left")
        train = next(iter(scores(metrics[-1], "train")), "")  # the family's headline: nelbo, or its first term
        columns = [f"train_{train}"] * bool(train) + [f"test_{k}" for k in scores(metrics[-1], "test")]
        for col in ("epoch", *(_title(c) for c in columns), "seconds"):
            mt.add_column(col, justify="right")
        for r in metrics:
            mt.add_row(str(r["epoch"]), *(_number(r.get(c)) for c in columns), _number(r.get("seconds"), 1))
        out.print(mt)


def _title(key: str) -> str:
    split, _, term = key.partition("_")
    return f"{split} {TERM_NAMES.get(term, term)}"


def _number(value, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def _objective(settings: dict, model: dict) -> str:
    """The objective in words: the family's, with the settings that change the ELBO."""
    family = model.get("family") or {}
    said = family.get("objective") or "ELBO"
    weighted = fmt_objective(settings)
    if said == "ELBO":
        return weighted
    return said if weighted == "ELBO" else f"{said}; {weighted}"
