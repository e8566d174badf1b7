"""How many importance samples a training step may decode at once (``VAE.sample_rows``)."""

from __future__ import annotations

import math

import torch

from ..device import free_bytes
from ..model import VAE

__all__ = ["sample_rows", "BYTES_PER_VALUE"]

# what a decoded row keeps for backward, per output value: the likelihood's parameters and the
# elementwise steps of its log-probability (about eight fp32 tensors of the output's size)
BYTES_PER_VALUE = 32


def sample_rows(max_memory_gib: float, device: torch.device, model: VAE) -> int:
    """The decoder rows (examples x samples) a step may keep: ``max_memory_gib`` GiB, or half the
    memory free now, over what one row holds."""
    budget = max_memory_gib * 2**30 if max_memory_gib else free_bytes(device) / 2
    per_row = BYTES_PER_VALUE * model.likelihood.params_per_pixel * math.prod(model.input_shape)
    return max(1, int(budget // per_row))
