"""The arithmetic of the training steps: fp32, or bf16/fp16 mixed precision; and torch.compile."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from ..device import cuda_index
from ..errors import UsageError, first_line

__all__ = ["MixedPrecision", "Compiled", "native_bf16", "resolve_precision"]


def native_bf16(device: torch.device) -> bool:
    """Whether matrix products in bfloat16 run on hardware made for them (and so faster than
    fp32): a CUDA GPU of compute capability 8.0 or later, or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return cuda_bf16(device)
    if device.type == "cpu":
        cpu = torch.cpu
        return any(
            getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        )
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` is bf16 where the hardware has it natively (``native_bf16``), else fp32."""
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if name == "bf16" and device.type == "cuda" and not cuda_bf16(device):
        major, minor = torch.cuda.get_device_capability(cuda_index(device))
        raise UsageError(
            f"--precision bf16: this GPU ({torch.cuda.get_device_name(cuda_index(device))}, compute capability "
            f"{major}.{minor}) has no bfloat16 arithmetic (8.0 and later have it); use --precision fp16 or fp32"
        )
    return name


def cuda_bf16(device: torch.device) -> bool:
    """Whether the GPU ``device`` names (not the current one) computes in bfloat16 natively:
    compute capability 8.0 (Ampere) or later. Asked of the capability itself, the same on every
    torch (``is_bf16_supported`` took no ``including_emulation`` before 2.4 and, since, says yes
    to emulated bf16 on older GPUs by default)."""
    return torch.cuda.get_device_capability(cuda_index(device)) >= (8, 0)


class MixedPrecision:
    """The arithmetic of the training steps. ``fp32``: plain float32. ``bf16`` and ``fp16``:
    automatic mixed precision (torch.autocast): matrix products and convolutions in 16 bits,
    while the weights, the optimizer state and the likelihood and KL terms stay in float32
    (the model casts the encoder's and the decoder's outputs back). fp16 adds a dynamic loss
    scale (torch.amp.GradScaler, Micikevicius et al. 2018), saved in checkpoints so that
    resuming continues it."""

    def __init__(self, name: str, device: torch.device) -> None:
        self.name = resolve_precision(name, device)
        self.device_type = device.type
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)
        self.scaler = torch.amp.GradScaler(device.type) if self.name == "fp16" else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """``loss.backward(**kwargs)``, the loss scaled under fp16 (under --compile the backward
        graph compiles at its first call: a failure there is one line too)."""
        with compiler_failures():
            (loss if self.scaler is None else self.scaler.scale(loss)).backward(**kwargs)

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Gradients at their true size (before clipping)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer's step; with fp16, skipped when the scaled gradients overflowed."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def state(self) -> dict[str, torch.Tensor]:
        """The loss scale as checkpoint tensors (none without fp16)."""
        if self.scaler is None or not self.scaler.is_enabled():
            return {}
        sd = self.scaler.state_dict()
        if not sd:  # no step taken yet
            return {}
        return {
            "amp.scale": torch.tensor(float(sd["scale"]), dtype=torch.float64),
            "amp.growth_tracker": torch.tensor(int(sd["_growth_tracker"]), dtype=torch.int64),
        }

    def restore(self, tensors: dict) -> None:
        if self.scaler is not None and "amp.scale" in tensors:
            sd = self.scaler.state_dict()
            sd.update(scale=float(tensors["amp.scale"]), _growth_tracker=int(tensors["amp.growth_tracker"]))
            self.scaler.load_state_dict(sd)


class Compiled:
    """``model``'s loss through torch.compile; the model itself is untouched (parameter names
    stay those of the checkpoint). A compiler failure, found at the first call, is one line."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.call = torch.compile(model)
        self.compiled = False

    def __call__(self, *args: Any, **kwargs: Any):
        if self.compiled:  # a recompile (a new batch size, ...) may fail too
            with compiler_failures():
                return self.call(*args, **kwargs)
        try:
            out = self.call(*args, **kwargs)
        except Exception as exc:  # inductor needs a C++ compiler on the CPU, Triton on GPUs
            raise compile_failed(exc) from None
        self.compiled = True
        return out


def compile_failed(exc: BaseException) -> UsageError:
    return UsageError(
        f"--compile: torch.compile failed ({type(exc).__name__}: {first_line(exc)}); train without --compile"
        " (--resume takes --no-compile)"
    )


@contextlib.contextmanager
def compiler_failures():
    """An exception of the compiler (dynamo, inductor, Triton) as one line; any other passes."""
    try:
        yield
    except Exception as exc:
        if not type(exc).__module__.startswith(("torch._dynamo", "torch._inductor", "triton")):
            raise
        raise compile_failed(exc) from None
