"""``vae train --config run.toml`` and ``vae info CKPT --config``: a run's settings as a TOML
file whose keys are the options of ``vae train`` (``latent-dim = 2``, ``lr = 3e-4``, a table
``[arch-option]`` of the architecture's options, ``recipe = "pythae-vae"``); field names with
underscores are accepted too. The options given on the command line win over the file, and the
file wins over its recipe.

A file is checked as a whole before anything runs: an unknown key is one line (with the closest
known one), a value of the wrong type too; the same reader and caps as recipe files (``recipes.read_toml``)."""

from __future__ import annotations

import copy
import difflib
import typing
from pathlib import Path
from typing import Any

from . import recipe_text
from .config import TrainConfig, by_name, settings
from .errors import UsageError
from .recipes import _checked, read_toml

__all__ = ["read", "to_toml", "apply"]

NOT_IN_A_FILE = {"force"}  # a run's file may not overwrite without the flag being typed


def _names() -> dict[str, str]:
    """Every spelling of a setting in a file -> its field name."""
    names: dict[str, str] = {}
    for s in settings():
        if s.name in NOT_IN_A_FILE:
            continue
        names[s.name] = names[s.name.replace("_", "-")] = s.name
        for flag in s.flag.split("/"):
            if flag.startswith("--") and not flag.startswith("--no-"):
                names[flag[2:]] = s.name
        for alias in s.aliases:
            if alias.startswith("--"):
                names[alias[2:]] = s.name
    return names


def read(path: str | Path) -> dict[str, Any]:
    """The settings of a config file, by field name (``recipe``: a recipe's name or file), each
    checked against ``TrainConfig``'s type; every problem one ``UsageError`` naming the file."""
    label = f"--config {path}"
    data = read_toml(path, label)
    names, hints = _names(), typing.get_type_hints(TrainConfig)
    out: dict[str, Any] = {}
    for key, value in data.items():
        negated = key.startswith("no-") and key[3:] in names and hints.get(names[key[3:]]) is bool
        name = names[key[3:]] if negated else names.get(key)
        if name is None:
            close = difflib.get_close_matches(key, list(names), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UsageError(f"{label}: unknown option '{key}'{hint}; the keys are vae train's options")
        if name in out:
            raise UsageError(f"{label}: '{key}' sets {name} a second time")
        if name == "recipe":
            if not isinstance(value, str):
                raise UsageError(f"{label}: recipe must be a recipe's name or file, got {value!r}")
            out[name] = value
            continue
        value = _checked(key, copy.deepcopy(value), hints[name], label)
        out[name] = (not value) if negated else value
    try:
        TrainConfig(**{k: copy.deepcopy(v) for k, v in out.items() if k != "recipe"}).check()
    except UsageError as exc:
        raise UsageError(f"{label}: {exc}") from None
    return out


def apply(config: TrainConfig, path: str | Path, given: set) -> tuple[TrainConfig, set, Any]:
    """``config`` with the file's settings in place of every setting not in ``given`` (those
    the user typed; an option table is merged, the typed options winning); returns the config,
    the settings now given (typed or from the file) and the file's recipe (or None)."""
    found = read(path)
    recipe = found.pop("recipe", None)
    for key, value in found.items():
        if key.endswith("_options"):
            setattr(config, key, {**value, **getattr(config, key)} if key in given else value)
        elif key not in given:
            setattr(config, key, value)
    return config, given | set(found), recipe


def to_toml(training: dict, source: str = "") -> str:
    """The config file that repeats a recorded run (``training``: a checkpoint's training
    metadata): its recipe and every option that differs from it, device and precision as given;
    not where the data and the files were."""
    training = recipe_text.as_given(training)
    rec = training.get("recipe") or {}
    spelled = {s.name: s.flag.split("/")[0][2:] if s.flag.startswith("--") else s.name for s in settings()}
    spelled["dataset"] = "dataset"
    lines = [f"# vae info {source} --config > run.toml, then: vae train --config run.toml".replace("  ", " ")]
    tables = []
    if rec:
        lines.append(f"recipe = {recipe_text._toml_value(rec.get('file') or rec.get('name', '?'))}")
    for key, (_, now) in recipe_text.changes(training).items():
        if not by_name()[key].repeat or now is None:
            continue
        if key.endswith("_options"):
            tables += [
                "",
                f"[{spelled[key]}]",
                *(f"{recipe_text._toml_key(k)} = {recipe_text._toml_value(v)}" for k, v in now.items()),
            ]
        else:
            lines.append(f"{spelled[key]} = {recipe_text._toml_value(list(now) if isinstance(now, tuple) else now)}")
    return "\n".join(lines + tables) + "\n"
