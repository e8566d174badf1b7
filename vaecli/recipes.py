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

Nothing here imports torch until a recipe is checked against ``TrainConfig``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import re
import shlex
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .errors import UsageError, unknown_name
from .hookspecs import RecipeSpec

FILE_KEYS = ("name", "help", "source", "settings", "published")

# Settings of the machine and the files of one run: given when training, never by a recipe.
RUN_SETTINGS = ("device", "precision", "compile", "data_dir", "download", "out", "force", "save_every",
                "viz_dir", "tensorboard", "recipe")

# A recipe's settings that belong to another of its settings: dropped when the user chooses
# another value of that one (the options of the recipe's architecture do not fit another).
DEPENDENTS = {
    "dataset": ("dataset_options",),
    "arch": ("arch_options",),
    "likelihood": ("likelihood_options",),
    "lr_schedule": ("lr_step", "lr_gamma", "lr_milestones"),
}
PARENT = {child: parent for parent, children in DEPENDENTS.items() for child in children}
OPTION_TABLES = {"dataset_options": "--data-option", "arch_options": "--arch-option",
                 "likelihood_options": "--likelihood-option"}

# Settings left out of the line that repeats a run: where its files went, not what it trained.
NOT_REPEATED = ("out", "force", "data_dir", "download", "viz_dir", "tensorboard", "save_every", "recipe")


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
        raise UsageError(f"{error}; or give a recipe file NAME.toml (`vae recipes {known[0] if known else 'NAME'}` "
                         f"prints one to start from)")
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


def read_file(path: str | Path) -> Recipe:
    """A recipe from a TOML file; every problem with it is one ``UsageError`` naming the file."""
    shown = str(path)
    label = f"recipe file {shown}"
    p = Path(path).expanduser()
    try:
        if not p.exists():
            raise UsageError(f"{label} does not exist")
        if p.is_dir():
            raise UsageError(f"{label} is a folder, not a TOML file")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{label} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{label} cannot be read: {exc.strerror or exc}") from None
    tomllib = _toml()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        first = (str(exc).strip().splitlines() or ["?"])[0]
        raise UsageError(f"{label} is not valid TOML: {first}") from None
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise UsageError(f"{label}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; a recipe file "
                         f"has name, help, source, a [settings] table and an optional [published] table")
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
    spec = RecipeSpec(name=name, help=data.get("help", ""), source=data.get("source", ""),
                      settings=data["settings"], published=data.get("published"))
    return Recipe(spec, file=str(p.resolve()))


# -- checking and applying ----------------------------------------------------------------------


def _flag(key: str) -> str:
    return {"out": "-o", "download": "--no-download", "dataset": "DATASET", "compile": "--compile"}.get(
        key, "--" + key.replace("_", "-"))


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
        ok = (isinstance(value, dict) and all(isinstance(k, str) for k in value)
              and all(_option_value(v) for v in value.values()))
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
    from .training import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    out = {}
    for key, value in recipe.spec.settings.items():
        if key in RUN_SETTINGS:
            given = "it is what --recipe applies" if key == "recipe" else f"give {_flag(key)} when you train"
            raise UsageError(f"{recipe.label}: '{key}' is a setting of the run, not of a recipe; {given}")
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            allowed = ", ".join(f for f in fields if f not in RUN_SETTINGS)
            raise UsageError(f"{recipe.label}: unknown setting '{key}'{hint}; a recipe sets these TrainConfig "
                             f"fields: {allowed}")
        out[key] = _checked(key, copy.deepcopy(value), hints[key], recipe.label)
    try:  # the recipe's values on their own (the names of parts are checked when they are built)
        TrainConfig(**copy.deepcopy(out)).check()
    except UsageError as exc:
        raise UsageError(f"{recipe.label}: {exc}") from None
    return out


def record(recipe: Recipe, settings: dict) -> dict:
    """What a checkpoint records about the recipe of its run (``training.recipe``)."""
    return {"name": recipe.name, "help": recipe.spec.help, "source": recipe.spec.source,
            "file": recipe.file, "provider": recipe.provider, "settings": copy.deepcopy(settings),
            "published": copy.deepcopy(recipe.spec.published)}


def apply(config, recipe: Recipe, given: set) -> Any:
    """``config`` (a ``TrainConfig``) with the recipe's settings in place of every setting not in
    ``given`` (the field names the user set), and the recipe recorded in ``config.recipe``."""
    settings = settings_of(recipe)
    defaults = type(config)()
    for key, value in settings.items():
        parent = PARENT.get(key)
        if parent in given and getattr(config, parent) != settings.get(parent, getattr(defaults, parent)):
            continue  # the user chose another architecture (schedule, ...): the recipe's options were for its own
        if key in OPTION_TABLES:
            setattr(config, key, {**value, **getattr(config, key)} if key in given else value)
        elif key not in given:
            setattr(config, key, value)
    config.recipe = record(recipe, settings)
    return config


def config(recipe: str, **settings: Any):
    """A ``TrainConfig`` from the recipe named ``recipe`` (or a ``.toml`` file), with ``settings``
    (``TrainConfig`` fields) winning over it: ``vaecli.train(recipe="pythae-vae", epochs=50)``."""
    from .training import TrainConfig

    return apply(TrainConfig(**settings), resolve(recipe), set(settings))


# -- describing -------------------------------------------------------------------------------


def _value(value: Any) -> str:
    """A value as a flag takes it: lists joined by commas, floats in full, booleans lowercase."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(_value(v) for v in value)
    if value is None:
        return "none"
    return str(value)


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else _value(value)


def describe(settings: dict) -> str:
    """One line of what a recipe trains, from the settings it sets."""
    s = settings
    parts = []
    data = s.get("dataset", "")
    if s.get("binarize") not in (None, "none"):
        data += f" ({s['binarize']} binarization)"
    parts.append(data)
    net = " ".join(x for x in (s.get("model", "") if s.get("model") not in (None, "vae") else "",
                              s.get("arch", ""),
                              " ".join(_short(v) for v in (s.get("arch_options") or {}).values())) if x)
    parts.append(net)
    if "latent_dim" in s:
        parts.append(f"latent {s['latent_dim']}")
    parts.append(s.get("likelihood", ""))
    if s.get("iw_samples", 1) > 1:
        parts.append(f"IWAE k={s['iw_samples']}")
    if s.get("beta", 1) != 1:
        parts.append(f"beta {_short(s['beta'])}")
    opt = s.get("optimizer", "")
    if "lr" in s:
        opt = f"{opt} {_short(s['lr'])}".strip()
    if s.get("lr_schedule") not in (None, "constant"):
        opt += f", {s['lr_schedule']} schedule"
    parts.append(opt)
    if "batch_size" in s:
        parts.append(f"batch {s['batch_size']}")
    if "epochs" in s:
        parts.append(f"{s['epochs']} epochs")
    return ", ".join(p for p in parts if p)


def published_text(published: Optional[dict]) -> str:
    """``NLL 89.78 (k=200, 500 epochs)``, or what else the source reports."""
    if not published:
        return ""
    p = dict(published)
    main = f"NLL {p.pop('nll')}" if "nll" in p else ""
    extra = []
    if "iw_samples" in p:
        extra.append(f"k={p.pop('iw_samples')}")
    if "epochs" in p:
        extra.append(f"{p.pop('epochs')} epochs")
    extra += [f"{k} {v}" for k, v in p.items()]
    return f"{main} ({', '.join(extra)})" if main and extra else main or ", ".join(extra)


def citation(source: str) -> str:
    """The short form of a recipe's source: up to its year (``Kingma & Welling 2013``), else up
    to its first colon."""
    found = re.match(r"^(.*?\b(?:19|20)\d\d\)?)", source)
    return found.group(1) if found else source.split(":")[0]


def to_json(recipe: Recipe) -> dict:
    spec = recipe.spec
    return {"name": spec.name, "help": spec.help, "source": spec.source, "settings": spec.settings,
            "published": spec.published, "file": recipe.file, "provider": recipe.provider,
            "trains": describe(spec.settings)}


# -- TOML -------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def _table(name: str, values: dict) -> list[str]:
    lines = [f"[{name}]"]
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items() if not (isinstance(v, dict) and v)]
    for k, v in values.items():
        if isinstance(v, dict) and v:
            lines += ["", *_table(f"{name}.{_toml_key(k)}", v)]
    return lines


def to_toml(spec: RecipeSpec) -> str:
    """The recipe as a TOML file that ``--recipe FILE.toml`` reads back to the same settings."""
    lines = [f"# vae recipes {spec.name} > {spec.name}.toml, edit, then: vae train --recipe {spec.name}.toml",
             f"name = {_toml_value(spec.name)}", f"help = {_toml_value(spec.help)}",
             f"source = {_toml_value(spec.source)}", "", *_table("settings", spec.settings)]
    if spec.published:
        lines += ["", *_table("published", spec.published)]
    return "\n".join(lines) + "\n"


# -- repeating a run --------------------------------------------------------------------------


def _base(training: dict):
    """The settings a run starts from before its flags: the defaults with its recipe applied."""
    from .training import TrainConfig

    base = TrainConfig()
    settings = (training.get("recipe") or {}).get("settings") or {}
    for key, value in settings.items():
        if hasattr(base, key):
            setattr(base, key, copy.deepcopy(value))
    return base, settings


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return _value(a) == _value(b)
    return a == b or _value(a) == _value(b)


def changes(training: dict) -> dict:
    """The settings of a recorded run that differ from what its recipe (or the defaults) set:
    name -> (the recipe's or default value, the run's value)."""
    from .training import TrainConfig

    base, settings = _base(training)
    defaults = TrainConfig()
    out = {}
    for f in dataclasses.fields(TrainConfig):
        key = f.name
        if key in NOT_REPEATED or key not in training:
            continue
        then = getattr(base, key)
        parent = PARENT.get(key)
        if (key in settings and parent is not None
                and not _same(training.get(parent), settings.get(parent, getattr(defaults, parent)))):
            then = getattr(defaults, key)  # another arch (schedule, ...) than the recipe's: its options did not apply
        now = training[key]
        if key in OPTION_TABLES:
            then, now = dict(then or {}), dict(now or {})
            diff = {k: v for k, v in now.items() if k not in then or not _same(then[k], v)}
            if diff:
                out[key] = (then, diff)
        elif not _same(then, now):
            out[key] = (then, now)
    return out


def repeat_command(training: dict) -> str:
    """The ``vae train`` line that repeats a recorded run (``training``: a checkpoint's training
    metadata): its recipe and every setting that differs from it, device and precision included;
    not where the data and the files were."""
    rec = training.get("recipe") or {}
    words = ["vae", "train"]
    changed = changes(training)
    if "dataset" in changed:
        words.append(str(training["dataset"]))
    if rec:
        words += ["--recipe", rec.get("file") or rec.get("name", "?")]
    for key, (_, now) in changed.items():
        if key == "dataset":
            continue
        if key in OPTION_TABLES:
            for k, v in now.items():
                words += [OPTION_TABLES[key], f"{k}={_value(v)}"]
        elif isinstance(now, bool):
            if key == "compile" and now:
                words.append("--compile")
        elif now is not None:
            words += [_flag(key), _value(now)]
    return shlex.join(words)
