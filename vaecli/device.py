"""Which device a command runs on."""

from __future__ import annotations

import torch

from .errors import UsageError, unknown_name

__all__ = ["resolve_device", "free_bytes", "require_memory", "gib", "DEVICES"]

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an unavailable device is an error."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise unknown_name("device", name, list(DEVICES))
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA"
        raise UsageError(
            f"--device {name}: no CUDA GPU is available here (torch {torch.__version__}, "
            f"built with {build}); use --device cpu or auto"
        )
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
    return torch.device(name)


def free_bytes(device: torch.device) -> int:
    """Memory free for new tensors on ``device``: the GPU's free memory, or the host's available
    memory (Linux's MemAvailable; elsewhere physical memory, which overstates it)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    from .header import available_memory

    found = available_memory()
    if found:
        return found
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def gib(n: float) -> str:
    """A byte count in words: ``1.9 TB``, ``420 MB``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def require_memory(need: float, what: str, lower: str, device: torch.device, max_memory_gib: float = 0.0) -> None:
    """Refuse, in one line, work whose estimated peak ``need`` (bytes) exceeds ``--max-memory``
    GiB or else the memory free on ``device`` now, naming ``what`` needs it and the options
    that ``lower`` it; called before anything of that size is allocated."""
    budget = max_memory_gib * 2**30 if max_memory_gib else free_bytes(device)
    if need > budget:
        where = "free on the GPU" if device.type == "cuda" else "available"
        have = f"--max-memory allows {gib(budget)}" if max_memory_gib else f"{gib(budget)} is {where}"
        raise UsageError(f"{what} needs about {gib(need)} of memory but {have}; {lower}")
