"""How many importance samples a training step may decode at once (``VAE.sample_rows``)."""

from __future__ import annotations

import ctypes
import math
import sys

import torch

from ..config import TrainConfig
from ..device import free_bytes, require_memory
from ..errors import VaeError
from ..factory import create_model
from ..model import VAE

__all__ = ["sample_rows", "return_large_buffers", "BYTES_PER_VALUE", "weights_need", "batch_need", "check_fits"]

# what a decoded row keeps for backward, per output value: the likelihood's parameters and the
# elementwise steps of its log-probability (about eight fp32 tensors of the output's size)
BYTES_PER_VALUE = 32


def sample_rows(max_memory_gib: float, device: torch.device, model: VAE, reserved: int = 0) -> int:
    """The decoder rows (examples x samples) a step may keep: what is left of ``max_memory_gib``
    GiB, or of half the memory free now, after the ``reserved`` bytes of the model and its batch,
    over what one row holds."""
    budget = max_memory_gib * 2**30 if max_memory_gib else free_bytes(device) / 2
    per_row = BYTES_PER_VALUE * model.likelihood.params_per_pixel * math.prod(model.input_shape)
    return max(1, int((budget - reserved) // per_row))


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


# per parameter in training: fp32 weights, gradients and two Adam moments, plus a bf16 copy
BYTES_PER_PARAMETER = 4 * 4 + 2
# per module output value of a batch: what backward keeps and the gradient flowing through it
# (measured: the estimate is within 2x above the peak of a conv net at batch 4000 on 32x32 and
# of the MLP at batch 20000)
BYTES_PER_ACTIVATION = 4


def weights_need(section: dict) -> int:
    """The bytes of the parameters of the model ``section`` describes, with their gradients and
    optimizer state; counted on the meta device, where nothing is allocated."""
    with torch.device("meta"):
        model = create_model(section)
    return BYTES_PER_PARAMETER * sum(p.numel() for p in model.parameters())


def batch_need(model: VAE, batch_size: int) -> tuple[int, int]:
    """``(batch bytes, row bytes)`` of a training step: every module's outputs for a batch
    (``BYTES_PER_ACTIVATION`` each), measured by encoding and decoding one example; and what
    one decoded row keeps for the likelihood (``sample_rows`` fits the importance samples into
    what is left)."""
    values = [0]

    def count(module: torch.nn.Module, inputs: object, output: object) -> None:
        outputs = output if isinstance(output, (tuple, list)) else [output]
        values[0] += sum(t.numel() for t in outputs if torch.is_tensor(t))

    handles = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    labels = torch.zeros(1, dtype=torch.long, device=model.device) if model.num_classes else None
    try:
        with torch.no_grad():
            model.posterior(torch.zeros((1, *model.input_shape), device=model.device), labels)
            model.likelihood_params(torch.zeros((1, model.latent_dim), device=model.device), labels)
    except (RuntimeError, ValueError, TypeError, IndexError, VaeError):
        values[0] = 0  # a family whose parts need more than this: its weights alone are counted
    finally:
        for h in handles:
            h.remove()
    row = BYTES_PER_VALUE * model.likelihood.params_per_pixel * math.prod(model.input_shape)
    return batch_size * BYTES_PER_ACTIVATION * values[0], row


def check_fits(need: int, config: TrainConfig, device: torch.device, batch: int = 0) -> None:
    """Refuse in one line a run whose model (and ``batch``) need more than ``--max-memory`` or
    the memory free on ``device``, naming the options that lower it."""
    lower = "--latent-dim or the architecture's sizes (--arch-option)" if batch <= need - batch else "--batch-size"
    require_memory(need, "training this model", f"lower {lower}, or set --max-memory", device, config.max_memory)
