"""A checkpoint's header, read and checked without torch: its metadata, its tensors' names,
dtypes and shapes, and both hashes (the tensor hash over the file's raw bytes). ``vae info``
reads checkpoints through this alone; ``vaecli.checkpoint.read`` adds the tensors."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from . import schema
from .errors import CheckpointError
from .version import __version__

__all__ = [
    "read_header",
    "describe",
    "meta_hash",
    "upgrade_metrics",
    "fmt_scores",
    "scores",
    "FORMAT",
    "FORMAT_VERSION",
    "JSON_KEYS",
]

FORMAT = "vaecli"
FORMAT_VERSION = 3  # the newest this vaecli reads and writes
JSON_KEYS = ("model", "data", "training", "metrics", "optim", "versions", "progress", "mlflow")
# safetensors' dtypes: their names as torch prints them (the tensor hash hashes those) and sizes
DTYPES = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U8": ("uint8", 1),
    "U16": ("uint16", 2),
    "U32": ("uint32", 4),
    "U64": ("uint64", 8),
    "BOOL": ("bool", 1),
}
# metric keys of vaecli 0.5 and earlier, and their names now (the negative ELBO is "nelbo")
OLD_METRIC_KEYS = {"train_loss": "train_nelbo", "test_loss": "test_nelbo"}


def refuse(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: {why}")


def meta_hash(header: dict[str, str]) -> str:
    """sha256 over the metadata entries (strings), in key order, except the hash itself."""
    h = hashlib.sha256()
    for key in sorted(k for k in header if k != "meta_sha256"):
        h.update(f"{len(key)}:{key}|{len(header[key])}:{header[key]}|".encode())
    return h.hexdigest()


def safetensors_header(data: bytes) -> dict:
    """The JSON header of a safetensors file's bytes (``__metadata__`` holds the metadata);
    ValueError when there is none."""
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len]) if 8 <= len(data) and 8 + header_len <= len(data) else None
    if not isinstance(header, dict):
        raise ValueError("bad header")
    return header


def looks_pickled(data: bytes) -> bool:
    """A pickle (protocol 2 to 5 starts with 0x80 and the protocol) or a zip (PyTorch's .pt).
    Asked only of files that are not valid safetensors: a safetensors header length may start
    with the byte 0x80 too."""
    return (data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or data[:4] == b"PK\x03\x04"


def unreadable(path: Path, data: bytes, exc: BaseException) -> CheckpointError:
    """The error for bytes that are not a safetensors file."""
    if looks_pickled(data):
        return refuse(
            path,
            "looks like a pickle or PyTorch .pt file; vae reads only .safetensors "
            "checkpoints (pickles can run code, so they are never loaded)",
        )
    reason = "truncated or corrupt" if len(data) >= 8 else "too short"
    return refuse(path, f"is not a readable safetensors file ({reason}: {str(exc)[:120]})")


def _entries(header: dict, data_len: int) -> dict[str, tuple[str, tuple, int, int]]:
    """name -> (dtype, shape, begin, end) of every tensor, checked as safetensors checks them:
    known dtypes, sizes that fit the shapes, and offsets that tile the data exactly."""
    entries = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or entry.get("dtype") not in DTYPES:
            raise ValueError(f"tensor {name[:40]!r}: no known dtype")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (
            isinstance(shape, list) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
        ):
            raise ValueError(f"tensor {name[:40]!r}: bad shape")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ValueError(f"tensor {name[:40]!r}: bad data_offsets")
        begin, end = offsets
        if not 0 <= begin <= end <= data_len or end - begin != math.prod(shape) * DTYPES[entry["dtype"]][1]:
            raise ValueError(f"tensor {name[:40]!r}: data_offsets do not fit its shape and the file")
        entries[name] = (entry["dtype"], tuple(shape), begin, end)
    at = 0
    for _, _, begin, end in sorted(entries.values(), key=lambda e: (e[2], e[3])):
        if begin != at:
            raise ValueError("the tensors do not cover the data exactly")
        at = end
    if at != data_len:
        raise ValueError("the tensors do not cover the data exactly")
    return entries


def _raw_tensor_hash(entries: dict, body: memoryview) -> str:
    """``checkpoint.tensor_hash`` of the tensors, from the file's bytes (little-endian, as torch
    holds them on the machines vaecli runs on)."""
    h = hashlib.sha256()
    for name in sorted(entries):
        dtype, shape, begin, end = entries[name]
        h.update(f"{name}|torch.{DTYPES[dtype][0]}|{shape}|".encode())
        h.update(body[begin:end])
    return h.hexdigest()


def upgrade_metrics(metrics: Any) -> Any:
    """Per-epoch metrics with the keys of this version: files written by vaecli 0.5 and earlier
    called the negative ELBO ``train_loss`` and ``test_loss``."""
    if not isinstance(metrics, list):
        return metrics
    return [{OLD_METRIC_KEYS.get(k, k): v for k, v in m.items()} if isinstance(m, dict) else m for m in metrics]


TERM_NAMES = {"nelbo": "-ELBO", "recon": "recon", "kl": "KL", "objective": "objective"}


def scores(record: dict, split: str = "test") -> dict:
    """The numbers of one split in an epoch's metrics, by term: ``{"nelbo": .., "recon": ..}``."""
    head = split + "_"
    return {k[len(head) :]: v for k, v in record.items() if k.startswith(head) and isinstance(v, (int, float))}


def fmt_scores(record: dict, split: str = "test", bold: bool = False) -> str:
    """One split's numbers of an epoch, in words: ``test -ELBO 98.12 nats (recon 80.00 + KL
    18.12)``, or a family's own terms, ``test recon 80.00, mmd 0.12 nats``."""
    found = scores(record, split)
    first = (lambda v: f"[bold]{v:.2f}[/]") if bold else (lambda v: f"{v:.2f}")
    if {"nelbo", "recon", "kl"} <= set(found):
        return f"{split} -ELBO {first(found['nelbo'])} nats (recon {found['recon']:.2f} + KL {found['kl']:.2f})"
    named = [f"{TERM_NAMES.get(k, k)} {first(v) if i == 0 else f'{v:.2f}'}" for i, (k, v) in enumerate(found.items())]
    return f"{split} {', '.join(named)} nats"


OLD_OBJECTIVES = {"ae": "reconstruction"}  # what 0.5's model kinds minimised, where not the ELBO


def upgrade_model(model: dict) -> dict:
    """A model section with this version's keys: files written by vaecli 0.5 and earlier record
    no ``family`` (options, provider, objective)."""
    if "family" in model or not isinstance(model.get("kind", "vae"), str):
        return model
    return {**model, "family": {"options": {}, "objective": OLD_OBJECTIVES.get(model.get("kind", "vae"), "ELBO")}}


MAX_HEADER_BYTES = 64 << 20  # a checkpoint's JSON header (its metadata): far above any real one


def read_bytes(path: Path) -> bytes:
    """The whole file, read only once its header has been checked against the file's size: a
    file that declares more than it holds, or that is not a safetensors file at all, is refused
    after reading at most its header, whatever its size."""
    if not path.exists():
        raise refuse(path, "no such file")
    if path.is_dir():
        raise refuse(path, "is a folder, not a checkpoint file")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if not head:
                raise refuse(path, "is empty, not a checkpoint")
            declared = int.from_bytes(head, "little")
            if len(head) < 8 or declared > min(MAX_HEADER_BYTES, size - 8) or declared < 2:
                head += f.read(64)
                raise unreadable(path, head, ValueError(f"declares a header of {declared} bytes in a file of {size}"))
            text = f.read(declared)
            try:
                header = json.loads(text)
                if not isinstance(header, dict):
                    raise ValueError("the header is not a map")
                _entries(header, size - 8 - declared)
            except (ValueError, TypeError, RecursionError) as exc:
                raise unreadable(path, head + text[:64], exc) from None
            available = available_memory()
            if available and size > available:
                raise refuse(
                    path,
                    f"is {size / 2**30:.1f} GB, more than the {available / 2**30:.1f} GB of memory available to read it",
                )
            return head + text + f.read()
    except OSError as exc:
        raise refuse(path, f"cannot be read ({exc.strerror or exc})") from None


def available_memory() -> int:
    """Linux's MemAvailable in bytes, or 0 where unknown (no torch: ``vae info`` reads headers)."""
    try:
        with open("/proc/meminfo") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")), 0)
    except (OSError, ValueError, IndexError):
        return 0


def read_header(path: Path | str, data: bytes | None = None) -> tuple[dict[str, Any], dict]:
    """``(metadata, tensors' (dtype, shape, begin, end) by name)`` of a checkpoint, every check of
    ``checkpoint.read`` made (format, version, both hashes, the sections a model needs), or a
    ``CheckpointError`` saying what the file is instead."""
    path = Path(path)
    data = read_bytes(path) if data is None else data
    try:
        header = safetensors_header(data)
        start = 8 + int.from_bytes(data[:8], "little")
        entries = _entries(header, len(data) - start)
    except (ValueError, TypeError, RecursionError) as exc:
        raise unreadable(path, data, exc) from None
    raw_meta = header.get("__metadata__") or {}
    if not isinstance(raw_meta, dict) or not all(isinstance(v, str) for v in raw_meta.values()):
        raise refuse(path, "has malformed metadata (not a map of strings)")
    if raw_meta.get("format") != FORMAT:
        raise refuse(path, "is a safetensors file but not a vaecli checkpoint (no vaecli metadata)")
    try:
        version = int(raw_meta.get("format_version", "0"))
    except ValueError:
        raise refuse(path, "has a malformed format_version") from None
    if version > FORMAT_VERSION:
        raise refuse(
            path,
            f"was written in checkpoint format {version} by a newer vaecli; "
            f"this is vaecli {__version__} (format {FORMAT_VERSION}): upgrade vaecli",
        )
    if "meta_sha256" in raw_meta and meta_hash(raw_meta) != raw_meta["meta_sha256"]:
        raise refuse(path, "its metadata does not match the hash recorded when it was written: the file is damaged")
    meta: dict[str, Any] = {}
    for key, value in raw_meta.items():
        if key in JSON_KEYS:
            try:
                meta[key] = json.loads(value)
            except (TypeError, ValueError, RecursionError):
                raise refuse(path, f"has malformed metadata under '{key}'") from None
        else:
            meta[key] = value
    if _raw_tensor_hash(entries, memoryview(data)[start:]) != meta.get("tensor_sha256"):
        raise refuse(path, "its tensor data does not match the hash recorded when it was written: the file is damaged")
    for key in ("model", "data", "training"):
        if not isinstance(meta.get(key), dict):
            raise refuse(path, f"has no '{key}' metadata")
    if not str(meta.get("epoch", "0")).isdigit():
        raise refuse(path, f"has a malformed epoch count {str(meta.get('epoch'))[:40]!r}")
    if "metrics" in meta:
        meta["metrics"] = upgrade_metrics(meta["metrics"])
    meta["model"] = upgrade_model(meta["model"])
    problem = schema.check_metadata(meta)
    if problem:
        raise refuse(path, f"has malformed metadata: {problem[:200]}")
    return meta, entries


def describe(path: Path | str) -> dict[str, Any]:
    """A checkpoint's metadata (what ``vae info --json`` prints) without building its model, nor
    importing torch: the recorded sections plus ``epoch`` (epochs trained) and ``parameters``
    (model size)."""
    meta, entries = read_header(path)
    meta["epoch"] = int(meta.get("epoch", 0))
    meta["parameters"] = sum(
        math.prod(shape) for name, (_, shape, _, _) in entries.items() if name.startswith("model.")
    )
    return meta
