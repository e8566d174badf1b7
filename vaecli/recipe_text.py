"""How recipes and recorded runs are written: one line of what a recipe trains, its published
figure, a recipe as TOML, and the ``vae train`` line that repeats a recorded run."""

from __future__ import annotations

import copy
import json
import math
import re
import shlex
from typing import Any, Optional

from .config import TrainConfig, flag_of
from .config import settings as config_settings
from .hookspecs import RecipeSpec

# A recipe's settings that belong to another of its settings: dropped when the user chooses
# another value of that one (the options of the recipe's architecture do not fit another).
PARENT = {s.name: s.parent for s in config_settings() if s.parent}


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


def one_line(settings: dict) -> str:
    """One line of what a recipe trains, from the settings it sets."""
    s = settings
    parts = []
    data = s.get("dataset", "")
    if s.get("binarize") not in (None, "none"):
        data += f" ({s['binarize']} binarization)"
    parts.append(data)
    net = " ".join(
        x
        for x in (
            s.get("model", "") if s.get("model") not in (None, "vae") else "",
            s.get("arch", ""),
            " ".join(_short(v) for v in (s.get("arch_options") or {}).values()),
        )
        if x
    )
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
    lines = [
        f"# vae recipes {spec.name} > {spec.name}.toml, edit, then: vae train --recipe {spec.name}.toml",
        f"name = {_toml_value(spec.name)}",
        f"help = {_toml_value(spec.help)}",
        f"source = {_toml_value(spec.source)}",
        "",
        *_table("settings", spec.settings),
    ]
    if spec.published:
        lines += ["", *_table("published", spec.published)]
    return "\n".join(lines) + "\n"


# -- repeating a run --------------------------------------------------------------------------


def _base(training: dict):
    """The settings a run starts from before its flags: the defaults with its recipe applied."""
    base = TrainConfig()
    settings = (training.get("recipe") or {}).get("settings") or {}
    for key, value in settings.items():
        if hasattr(base, key):
            setattr(base, key, copy.deepcopy(value))
    return base, settings


def _same(a: Any, b: Any) -> bool:
    if (
        isinstance(a, (int, float))
        and isinstance(b, (int, float))
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return _value(a) == _value(b)
    return a == b or _value(a) == _value(b)


def changes(training: dict) -> dict:
    """The settings of a recorded run that differ from what its recipe (or the defaults) set:
    name -> (the recipe's or default value, the run's value)."""
    base, recipe_settings = _base(training)
    defaults = TrainConfig()
    out = {}
    for s in config_settings():
        key = s.name
        if not s.repeat or key not in training:
            continue
        then = getattr(base, key)
        parent = PARENT.get(key)
        if (
            key in recipe_settings
            and parent is not None
            and not _same(training.get(parent), recipe_settings.get(parent, getattr(defaults, parent)))
        ):
            then = getattr(defaults, key)  # another arch (schedule, ...) than the recipe's: its options did not apply
        now = training[key]
        if s.options:
            then, now = dict(then or {}), dict(now or {})
            diff = {k: v for k, v in now.items() if k not in then or not _same(then[k], v)}
            if diff:
                out[key] = (then, diff)
        elif not _same(then, now):
            out[key] = (then, now)
    return out


def as_given(training: dict) -> dict:
    """A run's recorded settings with the device and precision it was given (``auto``), not
    what they resolved to on its machine: what repeats it on another."""
    asked = training.get("asked")
    if not isinstance(asked, dict):
        return training
    return {**training, **{k: v for k, v in asked.items() if k in ("device", "precision")}}


def repeat_command(training: dict) -> str:
    """The ``vae train`` line that repeats a recorded run (``training``: a checkpoint's training
    metadata): its recipe and every setting that differs from it, device and precision as given
    (``auto`` where the run resolved it);
    not where the data and the files were."""
    training = as_given(training)
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
        if key.endswith("_options"):
            for k, v in now.items():
                words += [flag_of(key), f"{k}={_value(v)}"]
        elif isinstance(now, bool):
            if key == "compile" and now:
                words.append("--compile")
        elif now is not None:
            words += [flag_of(key), _value(now)]
    return shlex.join(words)
