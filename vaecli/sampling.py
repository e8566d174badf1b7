"""Samplers of a trained model (``vae sample --sampler NAME``): the registered sampler built
for the model, fitted to the codes of the training images once and saved beside the checkpoint
(``CKPT.NAME.sampler.safetensors``), then reused while the checkpoint and the options are those
it was fitted for."""

from __future__ import annotations

import functools
import importlib
import json
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from . import checkpoint
from . import options as opts
from .errors import PluginMissingError, UsageError
from .model import VAE
from .plugins import registry
from .samplers import Sampler

__all__ = ["build", "fitted", "sampler_path", "FORMAT"]

FORMAT = "vaecli-sampler"
FIT_SEED = 1234  # the fit's randomness (batch order, noise, EM's start): the same fit every time


@functools.cache
def sampler_class(spec: Any) -> type[Sampler]:
    found = spec.sampler
    if isinstance(found, str):
        module, _, name = found.partition(":")
        try:
            found = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise PluginMissingError(f"sampler '{spec.name}': cannot import {spec.sampler} ({exc})") from None
    if not (isinstance(found, type) and issubclass(found, Sampler)):
        raise PluginMissingError(f"sampler '{spec.name}': {found!r} is not a subclass of vaecli.samplers.Sampler")
    return found


def build(model: VAE, name: str, options: Optional[dict] = None) -> Sampler:
    """Sampler ``name`` for ``model``, unfitted; one line when it does not fit the model."""
    spec = registry().get("sampler", name).spec
    cls = sampler_class(spec)
    why = cls.refuses(model)
    if why:
        raise UsageError(why)
    built = opts.build(spec.options, options or {}, f"sampler '{name}'")
    try:
        return cls(model, built)
    except ValueError as exc:
        raise UsageError(f"sampler '{name}': {exc}") from None


def sampler_path(ckpt: Path, name: str) -> Path:
    return Path(ckpt).with_name(f"{Path(ckpt).stem}.{name}.sampler.safetensors")


def _identity(model: VAE, name: str, sampler: Sampler) -> dict:
    """What a saved sampler must match to be reused: the sampler, its options, the checkpoint."""
    return {
        "sampler": name,
        "options": opts.to_json(sampler.options),
        "checkpoint": model.meta.get("tensor_sha256", ""),
    }


def fitted(
    model: VAE,
    ckpt: Path,
    name: str,
    options: Optional[dict],
    images: Callable[[], tuple[torch.Tensor, Optional[torch.Tensor], str]],
    refit: bool = False,
    progress: Optional[Callable[[str, int, int], None]] = None,
) -> tuple[Sampler, str]:
    """Sampler ``name`` of ``model`` ready to draw, and what was done: "" (nothing to fit),
    "reused PATH" or "fitted on SOURCE, saved to PATH". ``images()`` gives the uint8 images,
    labels and source to fit on, called only when fitting."""
    sampler = build(model, name, options)
    if not sampler.NEEDS_FIT:
        return sampler, ""
    path = sampler_path(ckpt, name)
    identity = _identity(model, name, sampler)
    if path.exists() and not refit:
        loaded = _load(path, identity)
        if loaded is not None:
            sampler.load_state_dict(loaded, strict=True)
            return sampler.eval(), f"reused {path}"
    x, labels, source = images()
    codes = _codes(model, sampler, x, labels, progress)
    gen = torch.Generator().manual_seed(FIT_SEED)
    with torch.enable_grad():
        report = sampler.train().fit(codes, gen, None if progress is None else functools.partial(progress, "fitting"))
    sampler.eval()
    _save(path, sampler, {**identity, "fitted_on": source, "codes": len(codes), "report": report})
    return sampler, f"fitted on {len(codes)} codes of {source}, saved to {path}"


@torch.no_grad()
def _codes(model, sampler, x, labels, progress, batch: int = 1000) -> torch.Tensor:
    model.eval()
    out = []
    for start in range(0, len(x), batch):
        y = None if labels is None else labels[start : start + batch]
        out.append(sampler.codes(model, model.prepare(x[start : start + batch]), y).cpu())
        if progress is not None:
            progress("encoding", min(len(x), start + batch), len(x))
    return torch.cat(out)


def _save(path: Path, sampler: Sampler, meta: dict) -> None:
    from safetensors.torch import save as st_save

    tensors = {k: v.detach().cpu().contiguous() for k, v in sampler.state_dict().items()}
    header = {"format": FORMAT, "sampler": json.dumps(meta)}
    checkpoint.atomic_write(path, st_save(tensors, metadata=header))


def _load(path: Path, identity: dict) -> Optional[dict]:
    """The saved state when the file is a sampler fitted for ``identity``, else None (refit)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        found = checkpoint.safetensors_header(path.read_bytes()).get("__metadata__") or {}
        if found.get("format") != FORMAT:
            return None
        meta = json.loads(found.get("sampler", "{}"))
        if {k: meta.get(k) for k in identity} != identity:
            return None
        return load_file(str(path))
    except (OSError, ValueError, SafetensorError):
        return None
