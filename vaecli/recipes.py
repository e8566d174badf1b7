"""Recipes: named sets of training settings (``vae train --recipe NAME`` or ``--recipe FILE.toml``).

A recipe is data: a ``RecipeSpec`` registered through the ``register_recipes`` hook (the built-ins
in ``vaecli.builtin.recipes``), or a TOML file of the same form::

    name = "my-vae"
    help = "One line: what it trains."
    source = "Where the settings come from, and how they differ from it."

    [settings]            # vaecli.TrainConfig fields, as `vae train` flags name them
    dataset = "mnist"
    latent_dim = 40
    lr = 1e-4

    [settings.arch_options]
    hidden = [400]
    activation = "relu"

    [published]           # optional: the figure the source reports
    nll = 89.78
    iw_samples = 200
    epochs = 500

Applying one (``apply``): the recipe's settings replace the defaults, and settings the user gave
win. Option tables merge key by key (``--arch-option hidden=32`` keeps the recipe's activation),
except that a user who chooses another architecture, likelihood, dataset or learning-rate schedule
than the recipe's drops the recipe's options for it. The checkpoint records the recipe (``record``)
beside the full settings, and ``repeat_command`` gives the ``vae train`` line that repeats a run.

Which settings a recipe may set, and which belong to which, is declared with the settings
(``vaecli.config``). Nothing here imports torch.
"""

from __future__ import annotations

import copy
import difflib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .config import TrainConfig, flag_of, settings
from .errors import UsageError, first_line, unknown_name
from .hookspecs import RecipeSpec
from .recipe_text import PARENT, changes, citation, one_line, published_text, repeat_command, to_toml
from .schema import check_depth

__all__ = [
    "Recipe",
    "resolve",
    "registered",
    "read_file",
    "settings_of",
    "apply",
    "record",
    "config",
    "changes",
    "citation",
    "one_line",
    "published_text",
    "repeat_command",
    "to_json",
    "to_toml",
]

FILE_KEYS = ("name", "help", "source", "settings", "published")


@dataclass(frozen=True)
class Recipe:
    """A recipe and where it came from: ``file``, the TOML file it was read from, or
    ``provider``, the plugin distribution that registered it."""

    spec: RecipeSpec
    file: Optional[str] = None
    provider: Optional[dict] = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        """How errors name it."""
        return f"recipe file {self.file}" if self.file else f"recipe '{self.spec.name}'"


# -- finding a recipe -------------------------------------------------------------------------


def is_file(text: str) -> bool:
    """``--recipe`` takes a file when the value ends in ``.toml``, else a registered name."""
    return str(text).lower().endswith(".toml")


def resolve(text: str) -> Recipe:
    """The recipe ``text`` names: a ``.toml`` file, or a name a plugin registered."""
    text = str(text)
    if is_file(text):
        return read_file(text)
    from .plugins import registry

    reg = registry()
    found = reg.parts["recipe"].get(text)
    if found is None:
        known = reg.names("recipe")
        error = unknown_name("recipe", text, known)
        raise UsageError(
            f"{error}; or give a recipe file NAME.toml (`vae recipes {known[0] if known else 'NAME'}` "
            f"prints one to start from)"
        )
    return Recipe(found.spec, provider=found.plugin.provider())


def registered() -> list[Recipe]:
    """Every registered recipe, in the order they were registered (built-ins first)."""
    from .plugins import registry

    return [Recipe(r.spec, provider=r.plugin.provider()) for r in registry().parts["recipe"].values()]


def _toml():
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


MAX_FILE_BYTES = 1 << 20


def read_toml(path: str | Path, label: str) -> dict:
    """A short TOML file (a recipe or a config) as a dict; every problem with it (missing, a
    folder, over 1 MB, not UTF-8, not TOML, nested over 8 levels) one ``UsageError`` starting
    with ``label``."""
    p = Path(path).expanduser()
    try:
        if not p.exists():
            raise UsageError(f"{label} does not exist")
        if p.is_dir():
            raise UsageError(f"{label} is a folder, not a TOML file")
        if p.stat().st_size > MAX_FILE_BYTES:
            raise UsageError(f"{label} holds {p.stat().st_size:,} bytes; it should be a short TOML file (at most 1 MB)")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{label} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{label} cannot be read: {exc.strerror or exc}") from None
    tomllib = _toml()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{label} is not valid TOML: {first_line(exc)}") from None
    except RecursionError:
        raise UsageError(f"{label} nests its values deeper than 8 levels") from None
    deep = check_depth(data, limit=8)
    if deep:
        raise UsageError(f"{label} {deep}; settings are values, lists and tables of options")
    return data


def read_file(path: str | Path) -> Recipe:
    """A recipe from a TOML file; every problem with it is one ``UsageError`` naming the file."""
    label = f"recipe file {path}"
    p = Path(path).expanduser()
    data = read_toml(p, label)
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise UsageError(
            f"{label}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; a recipe file "
            f"has name, help, source, a [settings] table and an optional [published] table"
        )
    name = data.get("name", p.stem)
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise UsageError(f"{label}: name must be a word without spaces, got {name!r}")
    for key in ("help", "source"):
        if not isinstance(data.get(key, ""), str):
            raise UsageError(f"{label}: {key} must be a string, got {data[key]!r}")
    if "settings" not in data:
        raise UsageError(f"{label} has no [settings] table (the TrainConfig settings it applies)")
    for key in ("settings", "published"):
        if key in data and not isinstance(data[key], dict):
            raise UsageError(f"{label}: {key} must be a table ([{key}]), got {data[key]!r}")
    spec = RecipeSpec(
        name=name,
        help=data.get("help", ""),
        source=data.get("source", ""),
        settings=data["settings"],
        published=data.get("published"),
    )
    return Recipe(spec, file=str(p.resolve()))


# -- checking and applying ----------------------------------------------------------------------


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _option_value(value: Any) -> bool:
    return _scalar(value) or (isinstance(value, list) and all(_scalar(v) for v in value))


def _checked(key: str, value: Any, hint: Any, owner: str) -> Any:
    """``value`` of setting ``key`` if it has the field's type (ints pass as floats)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        ok, what = isinstance(value, bool), "true or false"
    elif hint is int:
        ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif hint is float:
        ok, what = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        value = float(value) if ok else value
    elif hint is str:
        ok, what = isinstance(value, str), "a string"
    elif hint is dict:
        ok = (
            isinstance(value, dict)
            and all(isinstance(k, str) for k in value)
            and all(_option_value(v) for v in value.values())
        )
        what = "a table of options (KEY = VALUE, values numbers, strings, booleans or lists of them)"
    elif hint is list:
        ok, what = isinstance(value, list) and all(_scalar(v) for v in value), "a list"
    else:  # pragma: no cover - a TrainConfig field of a type recipes do not know yet
        ok, what = True, ""
    if not ok:
        raise UsageError(f"{owner}: {key} must be {what}, got {value!r}")
    return value


def settings_of(recipe: Recipe) -> dict:
    """The recipe's settings, checked against ``TrainConfig``'s fields and types (a copy)."""
    hints = typing.get_type_hints(TrainConfig)
    declared = {s.name: s for s in settings()}
    fields = list(declared)
    out = {}
    for key, value in recipe.spec.settings.items():
        if key in declared and not declared[key].recipe:
            given = "it is what --recipe applies" if key == "recipe" else f"give {flag_of(key)} when you train"
            raise UsageError(f"{recipe.label}: '{key}' is a setting of the run, not of a recipe; {given}")
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            allowed = ", ".join(f for f in fields if declared[f].recipe)
            raise UsageError(
                f"{recipe.label}: unknown setting '{key}'{hint}; a recipe sets these TrainConfig fields: {allowed}"
            )
        out[key] = _checked(key, copy.deepcopy(value), hints[key], recipe.label)
    try:  # the recipe's values on their own (the names of parts are checked when they are built)
        TrainConfig(**copy.deepcopy(out)).check()
    except UsageError as exc:
        raise UsageError(f"{recipe.label}: {exc}") from None
    return out


def record(recipe: Recipe, settings: dict) -> dict:
    """What a checkpoint records about the recipe of its run (``training.recipe``)."""
    return {
        "name": recipe.name,
        "help": recipe.spec.help,
        "source": recipe.spec.source,
        "file": recipe.file,
        "provider": recipe.provider,
        "settings": copy.deepcopy(settings),
        "published": copy.deepcopy(recipe.spec.published),
    }


def apply(config, recipe: Recipe, given: set) -> Any:
    """``config`` (a ``TrainConfig``) with the recipe's settings in place of every setting not in
    ``given`` (the field names the user set), and the recipe recorded in ``config.recipe``."""
    settings = settings_of(recipe)
    defaults = type(config)()
    for key, value in settings.items():
        parent = PARENT.get(key)
        if (
            parent is not None
            and parent in given
            and getattr(config, parent) != settings.get(parent, getattr(defaults, parent))
        ):
            continue  # the user chose another architecture (schedule, ...): the recipe's options were for its own
        if key.endswith("_options"):
            setattr(config, key, {**value, **getattr(config, key)} if key in given else value)
        elif key not in given:
            setattr(config, key, value)
    config.recipe = record(recipe, settings)
    return config


def config(recipe: str, **settings: Any):
    """A ``TrainConfig`` from the recipe named ``recipe`` (or a ``.toml`` file), with ``settings``
    (``TrainConfig`` fields) winning over it: ``vaecli.train(recipe="pythae-vae", epochs=50)``."""
    return apply(TrainConfig(**settings), resolve(recipe), set(settings))


def to_json(recipe: Recipe) -> dict:
    spec = recipe.spec
    return {
        "name": spec.name,
        "help": spec.help,
        "source": spec.source,
        "settings": spec.settings,
        "published": spec.published,
        "file": recipe.file,
        "provider": recipe.provider,
        "trains": one_line(spec.settings),
    }
