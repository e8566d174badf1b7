"""Typed option dataclasses of plugins: parsed from ``KEY=VALUE`` strings, stored as JSON.

Fields may be ``int``, ``float``, ``str``, ``bool`` or tuples of ints/floats (``hidden=512,256``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from .errors import UsageError

SEED_RANGE = 2**64  # what torch's generators take


def seed64(value: int) -> int:
    """A seed as torch's generators take it: any whole number, reduced modulo 2**64 (the seeds
    0 to 2**64 - 1 are themselves, -1 is 2**64 - 1, 2**64 + 5 is 5), so that every seed a user
    types draws, and the same number always draws the same."""
    return int(value) % SEED_RANGE


def seed_option(value: Any) -> Any:
    """The callback of every ``--seed`` option (``None`` stays ``None``)."""
    return None if value is None else seed64(value)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(value: Any, tp: Any, key: str, owner: str) -> Any:
    """Convert a string (from the command line) or a JSON value to the annotated type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key, owner)
    try:
        if origin is tuple:
            item = args[0] if args else str
            if isinstance(value, str):
                parts = [p for p in value.replace(" ", "").split(",") if p != ""]
            else:
                parts = list(value)
            return tuple(_convert(p, item, key, owner) for p in parts)
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"not an integer: {value!r}")
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{owner} option {key}: {exc}") from None
    return value


def describe(cls: type) -> str:
    """``key=default, ...`` for help texts and errors."""
    parts = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else "?"
        if isinstance(default, tuple):
            default = ",".join(str(v) for v in default)
        parts.append(f"{f.name}={default}")
    return ", ".join(parts) or "(none)"


def build(cls: type, values: dict[str, Any], owner: str) -> Any:
    """An options instance from ``values`` (strings or JSON values), checked against ``cls``."""
    if not isinstance(values, dict):
        raise UsageError(f"{owner} options must be a map of names to values, got {type(values).__name__}")
    types_ = _field_types(cls)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        shown = ", ".join(k if k.isprintable() else repr(k) for k in unknown)
        raise UsageError(f"{owner} has no option {shown}; its options: {describe(cls)}")
    converted = {k: _convert(v, types_[k], k, owner) for k, v in values.items()}
    if isinstance(converted.get("seed"), int) and not isinstance(converted["seed"], bool):
        converted["seed"] = seed64(converted["seed"])  # a plugin's seed option, as --seed
    try:
        return cls(**converted)
    except (TypeError, ValueError) as exc:  # a value it names may hold a line break: shown escaped
        raise UsageError(f"{owner} options: {exc}".replace("\n", "\\n")) from None


def parse_pairs(pairs: list[str] | None, flag: str) -> dict[str, str]:
    """``["hidden=512,256", "activation=tanh"]`` -> ``{"hidden": "512,256", ...}``."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} takes KEY=VALUE, got {pair!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def to_json(options: Any) -> dict[str, Any]:
    """The options as JSON-ready values (tuples become lists)."""
    return dataclasses.asdict(options)
