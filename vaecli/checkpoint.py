"""Checkpoints: one self-describing ``.safetensors`` file, written atomically, never pickled.

Tensors: the model's state dict under ``model.``; for resuming, the optimizer state under
``optim.``, the RNG states under ``rng.`` (``rng.train``: the training generator) and, inside an
epoch, ``progress.``. Metadata (string -> string, JSON inside):

=================  ==========================================================================
key                value
=================  ==========================================================================
format             ``"vaecli"``
format_version     ``"2"`` for a cvae or a binarized model (which format-1 readers would misuse),
                   else ``"1"``
model              kind, latent_dim, input_shape, architecture and likelihood (name, options,
                   provider: the plugin distribution and version)
data               dataset (name, options, provider), class_names, preprocessing
training           the settings of the run (epochs, batch_size, lr, beta, seed, device, ...)
metrics            one entry per completed epoch
epoch              completed epochs
progress           only in a checkpoint written inside an epoch (``--save-every``, Ctrl-C): the
                   epoch, the steps done in it and its seconds so far; its permutation and
                   running sums are the tensors ``progress.*``
optim              the optimizer's param_groups (when optimizer state is saved)
versions           vaecli, torch, python
created, updated   ISO 8601 times
tensor_sha256      a hash of every tensor's name, dtype, shape and bytes, checked on load
meta_sha256        a hash of all the other metadata entries, checked on load (absent before 0.4)
=================  ==========================================================================
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch

from .errors import UsageError, VaeError
from .header import (
    FORMAT,
    FORMAT_VERSION,
    JSON_KEYS,
    describe,
    meta_hash,
    read_bytes,
    read_header,
    refuse,
    safetensors_header,
    unreadable,
    upgrade_metrics,
)
from .version import __version__

__all__ = [
    "read",
    "save",
    "describe",
    "Checkpoint",
    "atomic_write",
    "check_target",
    "tensor_hash",
    "meta_hash",
    "upgrade_metrics",
    "refuse",
    "FORMAT",
    "FORMAT_VERSION",
    "JSON_KEYS",
    "SUFFIX",
    "safetensors_header",
]

TEMP_PATTERN = ".{name}.*.tmp"  # atomic_write's temporary files beside the file ``name``
SUFFIX = ".safetensors"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict:
    return {"vaecli": __version__, "torch": torch.__version__, "python": platform.python_version()}


# -- hashing ----------------------------------------------------------------------------------


def tensor_hash(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over each tensor's name, dtype, shape and raw bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# -- writing ----------------------------------------------------------------------------------


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """An optimizer's state as flat tensors ``optim.state.<param>.<key>`` and its param_groups."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if not torch.is_tensor(value):
                value = torch.tensor(value)
            tensors[f"optim.state.{idx}.{key}"] = value
    return tensors, sd["param_groups"]


def rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["rng.cuda"] = torch.cuda.get_rng_state()
    return out


def load_optimizer_state(optimizer: torch.optim.Optimizer, ckpt: Checkpoint) -> None:
    """Put the state that ``optimizer_tensors`` saved back into ``optimizer``."""
    groups = (ckpt.meta.get("optim") or {}).get("param_groups")
    if not groups:
        raise refuse(ckpt.path, "holds no optimizer state to resume from")
    state: dict[int, dict] = {}
    for name, value in ckpt.section("optim.state.").items():
        idx, _, key = name.partition(".")
        state.setdefault(int(idx), {})[key] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise refuse(ckpt.path, f"its optimizer state does not fit the model ({exc})") from None


def restore_rng(ckpt: Checkpoint, device: torch.device) -> None:
    """The global RNG states saved with the checkpoint: the CPU's; the GPU's only when the run
    resumes on one (a run resumed on the CPU leaves CUDA uninitialised)."""
    if "rng.torch" in ckpt.tensors:
        torch.set_rng_state(ckpt.tensors["rng.torch"])
    if "rng.cuda" in ckpt.tensors and device.type == "cuda":
        torch.cuda.set_rng_state(ckpt.tensors["rng.cuda"], device)


def remove_stale_temps(path: Path) -> list[str]:
    """Delete the temporary files a killed writer of ``path`` left beside it; their names."""
    path = Path(path)
    removed = []
    for tmp in sorted(path.parent.glob(TEMP_PATTERN.format(name=path.name))):
        try:
            tmp.unlink()
            removed.append(tmp.name)
        except OSError:
            pass
    return removed


def check_target(path: Path, flag: str = "-o") -> Path:
    """A file path that can be written: not a folder, in a folder that exists and is writable.
    (Whether an existing file may be replaced is the caller's rule.)"""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"{flag} {path}: the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"{flag} {path}: the folder {path.parent} is not writable")
    return path


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, rename it over ``path``.

    A crash at any moment leaves either the old file or the new one, never a mix.
    """
    path = Path(path)
    prefix, _, suffix = TEMP_PATTERN.format(name=path.name).partition("*")
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


OLD_FAMILIES = ("vae", "cvae", "ae")  # the model kinds vaecli 0.5 builds (format 2)


def format_version(meta: dict[str, Any]) -> int:
    """The oldest format that describes the model, so that an older vaecli says "upgrade"
    instead of misusing it: 3 for a family 0.5 did not have (or family options), 2 for what
    format 1 lacks (class conditioning, binarized inputs), else 1, which all versions read."""
    model = meta.get("model", {})
    if model.get("kind", "vae") not in OLD_FAMILIES or (model.get("family") or {}).get("options"):
        return 3
    needs_2 = (
        bool(model.get("num_classes"))
        or meta.get("data", {}).get("preprocessing", {}).get("binarize", "none") != "none"
    )
    return 2 if needs_2 else 1


def save(
    path: Path,
    model: torch.nn.Module,
    meta: dict[str, Any],
    optimizer: Optional[torch.optim.Optimizer] = None,
    rng: bool = False,
    extra: Optional[dict[str, torch.Tensor]] = None,
) -> None:
    """Write ``model`` (and optionally optimizer and RNG state, and ``extra`` tensors such as
    the training generator's state) with ``meta`` to ``path``."""
    from safetensors.torch import save as st_save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = dict(meta)
    if optimizer is not None:
        optim_tensors, groups = optimizer_tensors(optimizer)
        tensors.update({k: v.detach().cpu().contiguous() for k, v in optim_tensors.items()})
        meta["optim"] = {"class": type(optimizer).__name__, "param_groups": groups}
    if rng:
        tensors.update(rng_tensors())
    tensors.update({k: v.detach().cpu().contiguous() for k, v in (extra or {}).items()})
    meta.setdefault("created", now())
    meta["updated"] = now()
    meta["versions"] = versions()
    header = {"format": FORMAT, "format_version": str(format_version(meta)), "tensor_sha256": tensor_hash(tensors)}
    for key, value in meta.items():
        if key not in header and key != "meta_sha256":  # what save computes is never taken from meta
            header[key] = json.dumps(value) if key in JSON_KEYS else str(value)
    header["meta_sha256"] = meta_hash(header)
    try:
        atomic_write(Path(path), st_save(tensors, metadata=header))
    except OSError as exc:
        raise VaeError(f"could not write {path}: {exc.strerror or exc}") from None


# -- reading ----------------------------------------------------------------------------------


class Checkpoint:
    """A checkpoint read from disk: decoded metadata and its tensors (on the CPU)."""

    def __init__(self, path: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.path = path
        self.meta = meta
        self.tensors = tensors

    def section(self, prefix: str) -> dict[str, torch.Tensor]:
        n = len(prefix)
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix)}

    @property
    def epoch(self) -> int:
        return int(self.meta.get("epoch", 0))


def read(path: Path | str) -> Checkpoint:
    """Read and check a checkpoint (``vaecli.header.read_header``) and its tensors; anything that
    is not an intact vaecli checkpoint is a ``CheckpointError`` saying what it is instead. Nothing
    is ever unpickled."""
    from safetensors.torch import load as st_load

    path = Path(path)
    data = read_bytes(path)
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises its own error type for any malformed file
        raise unreadable(path, data, exc) from None
    meta, _ = read_header(path, data)
    return Checkpoint(path, meta, tensors)
