"""The shape of a checkpoint's metadata, checked on every load before any field is used: types,
ranges, lengths and nesting depth of each section, so that a file from elsewhere ends in one
line naming the field instead of a traceback where the field is first read. Keys the schema
does not name are allowed (a later vaecli of the same format may add some); the keys it names
must have the types written here. No torch: ``vae info`` reads headers without it."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

__all__ = ["check_metadata", "check_depth", "MAX_DEPTH"]

MAX_DEPTH = 12  # nesting of any metadata value: the model's options nest three or four levels
MAX_ITEMS = 1_000_000  # entries of one list or map (the header itself is capped at 64 MB)

Check = Callable[[Any, str], Optional[str]]  # (value, where) -> what is wrong, or None


def _kind(value: Any) -> str:
    return {bool: "true/false", int: "a whole number", float: "a number", str: "text", list: "a list"}.get(
        type(value), "a map" if isinstance(value, dict) else type(value).__name__
    )


def text(value: Any, where: str) -> Optional[str]:
    return None if isinstance(value, str) else f"{where} must be text, not {_kind(value)}"


def whole(low: int = 0) -> Check:
    def check(value: Any, where: str) -> Optional[str]:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{where} must be a whole number, not {_kind(value)}"
        return None if value >= low else f"{where} must be at least {low}, got {value}"

    return check


def number(value: Any, where: str) -> Optional[str]:
    if value is None:
        return None  # a term a run could not compute
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"{where} must be a number, not {_kind(value)}"
    return None if math.isfinite(value) else f"{where} must be finite, got {value}"


def optional(check: Check) -> Check:
    return lambda value, where: None if value is None else check(value, where)


def listing(item: Check, length: Optional[int] = None) -> Check:
    def check(value: Any, where: str) -> Optional[str]:
        if not isinstance(value, list):
            return f"{where} must be a list, not {_kind(value)}"
        if length is not None and len(value) != length:
            return f"{where} must hold {length} items, not {len(value)}"
        return next((e for i, v in enumerate(value) if (e := item(v, f"{where}[{i}]"))), None)

    return check


def either(*checks: Check) -> Check:
    """Passes when one of ``checks`` does (the first one's complaint otherwise)."""

    def check(value: Any, where: str) -> Optional[str]:
        problems = [c(value, where) for c in checks]
        return None if any(p is None for p in problems) else problems[0]

    return check


def mapping(fields: Optional[dict[str, Check]] = None, required: tuple = (), values: Optional[Check] = None) -> Check:
    """A map whose ``required`` keys are present, whose ``fields`` have their checks, and whose
    other values pass ``values`` (when given)."""
    fields = fields or {}

    def check(value: Any, where: str) -> Optional[str]:
        if not isinstance(value, dict):
            return f"{where} must be a map, not {_kind(value)}"
        missing = next((k for k in required if k not in value), None)
        if missing is not None:
            return f"{where} has no '{missing}'"
        for key, v in value.items():
            rule = fields.get(key, values)
            problem = rule(v, f"{where}.{key}") if rule is not None else None
            if problem:
                return problem
        return None

    return check


ANY_MAP = mapping()
PROVIDER = optional(mapping(values=optional(text)))
PART = mapping({"name": text, "options": ANY_MAP, "provider": PROVIDER}, required=("name",))
SECTIONS: dict[str, Check] = {
    "model": mapping(
        {
            "kind": text,
            "latent_dim": whole(1),
            "input_shape": optional(either(listing(whole(1), length=3), listing(whole(1), length=1))),
            "layout": optional(
                mapping(
                    {
                        "kind": text,
                        "columns": listing(mapping({"name": text, "type": text}, required=("name", "type"))),
                    },
                    required=("kind", "columns"),
                )
            ),
            "num_classes": whole(0),
            "family": mapping({"options": ANY_MAP, "objective": text, "provider": PROVIDER}),
            "architecture": PART,
            "likelihood": PART,
        },
        required=("latent_dim", "architecture", "likelihood"),
    ),
    "data": mapping(
        {
            "dataset": PART,
            "class_names": optional(listing(text)),
            "preprocessing": ANY_MAP,
            "n_train": whole(0),
            "n_test": whole(0),
            "sha256": text,
        }
    ),
    "training": ANY_MAP,  # its values are checked as options when a run resumes
    "metrics": listing(mapping({"epoch": whole(1)}, required=("epoch",), values=optional(number))),
    "optim": mapping({"class": text, "param_groups": listing(ANY_MAP)}),
    "versions": mapping(values=optional(text)),
    "progress": mapping({"epoch": whole(0), "step": whole(0), "seconds": number}),
    "mlflow": mapping({"uri": text, "run_id": text}),
}


def check_depth(value: Any, limit: int = MAX_DEPTH) -> Optional[str]:
    """What is wrong with the nesting or size of a decoded JSON value, or None (iterative: no
    recursion however deep the value)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth >= limit:
                return f"nests deeper than {limit} levels"
            if len(item) > MAX_ITEMS:
                return f"holds a list or map of {len(item):,} entries (at most {MAX_ITEMS:,})"
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return None


def check_metadata(meta: dict) -> Optional[str]:
    """What is wrong with a checkpoint's decoded metadata, in words (``metrics[3].test_nelbo must
    be a number, not text``), or None."""
    for key, rule in SECTIONS.items():
        if key not in meta:
            continue
        problem = check_depth(meta[key]) or rule(meta[key], key)
        if problem:
            return problem if problem.startswith(key) else f"{key} {problem}"
    return None
