"""How many importance samples a training step may decode at once (``VAE.sample_rows``)."""

from __future__ import annotations

import ctypes
import math
import sys

import torch

from ..device import free_bytes
from ..model import VAE

__all__ = ["sample_rows", "return_large_buffers", "BYTES_PER_VALUE"]

# what a decoded row keeps for backward, per output value: the likelihood's parameters and the
# elementwise steps of its log-probability (about eight fp32 tensors of the output's size)
BYTES_PER_VALUE = 32


def sample_rows(max_memory_gib: float, device: torch.device, model: VAE) -> int:
    """The decoder rows (examples x samples) a step may keep: ``max_memory_gib`` GiB, or half the
    memory free now, over what one row holds."""
    budget = max_memory_gib * 2**30 if max_memory_gib else free_bytes(device) / 2
    per_row = BYTES_PER_VALUE * model.likelihood.params_per_pixel * math.prod(model.input_shape)
    return max(1, int(budget // per_row))


def return_large_buffers() -> bool:
    """Have glibc give buffers of 4 MiB and more back to the system when freed (a fixed mmap
    threshold; by default the threshold grows with each large free, after which large buffers
    come from a heap that does not shrink). Chunked decoding frees one chunk's buffers after the
    other: with this its peak stays that of a few chunks (measured at k=2000, batch 128, 28x28:
    +369 MB against +978 MB); the default MNIST run is unchanged (about 720 MB either way).
    Process-wide; a no-op (False) where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    M_MMAP_THRESHOLD = -3
    return bool(mallopt(M_MMAP_THRESHOLD, 4 << 20))
