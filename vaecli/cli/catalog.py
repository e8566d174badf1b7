"""What is installed: ``vae recipes`` and ``vae plugins``."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer
from rich.table import Table
from typing_extensions import Annotated

from ..console import escape, out
from .app import JsonOpt, app
from .text import fmt_provider, fmt_setting

# -- recipes ----------------------------------------------------------------------------------


@app.command(name="recipes")
def recipes_command(
    recipe: Annotated[
        Optional[str],
        typer.Argument(
            help="A recipe (a name, or a NAME.toml file to check): print it as TOML, to copy and edit.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the training recipes (vae train --recipe NAME), or print one as a TOML file.

    A recipe is a named set of vae train options, with the paper or code it comes from and the
    figure published there. `vae recipes NAME > my.toml` writes one to edit; `vae train
    --recipe my.toml` trains from the edited file.
    """
    from .. import recipes

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
    table = Table(
        title="vae recipes  (vae train --recipe NAME; vae recipes NAME prints one as TOML)", title_justify="left"
    )
    plugins = any((r.provider or {}).get("distribution") != "vaecli" for r in every)
    for col in ("recipe", "trains", "source", "published", *(["from"] if plugins else [])):
        table.add_column(col, overflow="fold", no_wrap=col == "recipe")
    for r in every:
        table.add_row(
            r.name,
            escape(recipes.one_line(r.spec.settings)),
            escape(recipes.citation(r.spec.source)),
            escape(recipes.published_text(r.spec.published)) or "-",
            *([fmt_provider(r.provider)] if plugins else []),
        )
    out.print(table)
    out.print("[dim]vae recipes NAME prints one as TOML, with its full source and how it differs from it.[/]")


# -- plugins ----------------------------------------------------------------------------------


@app.command()
def plugins(
    as_json: JsonOpt = False,
    details: Annotated[bool, typer.Option("--details", help="Also list every part with its help and options.")] = False,
) -> None:
    """List plugins, built-in and installed, with what each registers and any load error."""
    from ..plugins import registry

    reg = registry()
    reg.add_commands(app)
    if as_json:
        parts = {
            kind: {
                name: {
                    "plugin": r.plugin.name,
                    "distribution": r.plugin.distribution,
                    "help": r.spec.help,
                    "options": _part_options(kind, r.spec),
                }
                for name, r in sorted(table.items())
            }
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
        table.add_row(
            p.name + (" (built-in)" if p.builtin else ""), p.distribution, p.version, "\n".join(regs) or "-", status
        )
    out.print(table)
    if details:
        for kind, named in reg.parts.items():
            dt = Table(title=f"{kind}s", title_justify="left")
            for col in ("name", "help", "settings" if kind == "recipe" else "options (defaults)", "from"):
                dt.add_column(col)
            for name, r in sorted(named.items()):
                dt.add_row(name, escape(r.spec.help), escape(_part_options(kind, r.spec)), r.plugin.distribution)
            out.print(dt)


def _part_options(kind: str, spec: Any) -> str:
    """A part's options with their defaults; a recipe's settings."""
    from .. import options as opts

    if kind == "recipe":
        return ", ".join(f"{k}={fmt_setting(v)}" for k, v in spec.settings.items()) or "(none)"
    return opts.describe(spec.options)
