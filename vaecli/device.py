"""Which device a command runs on."""

from __future__ import annotations

import torch

from .errors import UsageError, unknown_name

__all__ = ["resolve_device", "free_bytes", "require_memory", "gib", "cuda_index", "exact_fp32", "DEVICES"]

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
    if name.startswith("cuda:"):
        index = name.partition(":")[2]
        count = torch.cuda.device_count()
        if not (index.isdigit() and int(index) < count):
            raise UsageError(f"--device {name}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
        torch.cuda.set_device(int(index))  # what asks the "current" GPU asks this one
    if name.startswith("cuda"):
        exact_fp32()
    return torch.device(name)


def exact_fp32() -> None:
    """fp32 means IEEE fp32 on a GPU too: convolutions and matrix products not in TF32 (cuDNN's
    default lets convolutions use it on Ampere and later), so that the test pass, ``vae
    evaluate`` and ``--precision fp32`` training compute what a CPU computes, to rounding.
    bf16 and fp16 runs are not touched: autocast picks their arithmetic."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def cuda_index(device: torch.device) -> int:
    """The GPU ``device`` names (``cuda`` alone: the current one); torch before 2.5 takes only
    an index in ``mem_get_info`` and the like."""
    return device.index if device.index is not None else torch.cuda.current_device()


def free_bytes(device: torch.device) -> int:
    """Memory free for new tensors on ``device``: the GPU's free memory, or the host's available
    memory (Linux's MemAvailable; elsewhere physical memory, which overstates it)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(cuda_index(device))[0])
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
