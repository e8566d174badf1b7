"""``--ema DECAY``: an exponential moving average of the weights, updated after every optimizer
step; the test pass and the checkpoint use the averaged weights (so ``vae sample`` and every
command get them), and the checkpoint also keeps the live weights (``ema.live.*``) and the
number of updates (``ema.updates``) so that ``--resume`` continues exactly.

The decay warms up as TensorFlow's ``ExponentialMovingAverage`` with ``num_updates`` does:
``min(DECAY, (1 + t) / (10 + t))`` at update t, so that a short run's average is not stuck near
the random initialisation."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import torch

__all__ = ["Averaged"]


class Averaged:
    """The average of ``model``'s floating-point parameters and buffers (``decay`` 0: none, and
    every method a no-op). ``ckpt``: a checkpoint to resume from, whose ``model.*`` tensors (now
    in ``model``) are the average and whose ``ema.live.*`` are the weights to train on."""

    def __init__(self, model: torch.nn.Module, decay: float, ckpt: Optional[Any] = None) -> None:
        self.decay, self.updates = float(decay), 0
        self.names = [k for k, v in model.state_dict().items() if v.is_floating_point()] if decay else []
        state = model.state_dict()
        self.live = [state[k] for k in self.names]  # the model's own tensors, trained in place
        self.shadow = [t.detach().clone() for t in self.live]
        if decay and ckpt is not None and "ema.updates" in ckpt.tensors:
            with torch.no_grad():
                for k, t in zip(self.names, self.live):
                    t.copy_(ckpt.tensors[f"ema.live.{k}"].to(t.device, t.dtype))
            self.updates = int(ckpt.tensors["ema.updates"])

    @torch.no_grad()
    def update(self) -> None:
        if not self.decay:
            return
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [t.detach() for t in self.live], 1.0 - decay)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside, its live ones again after."""
        if not self.decay:
            yield
            return
        with torch.no_grad():
            kept = [t.detach().clone() for t in self.live]
            torch._foreach_copy_(self.live, self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.live, kept)

    def state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps besides the averaged weights: copies of the live ones (taken
        before ``applied`` puts the average in their place) and the count of updates."""
        if not self.decay:
            return {}
        out = {f"ema.live.{k}": t.detach().clone() for k, t in zip(self.names, self.live)}
        return {**out, "ema.updates": torch.tensor(self.updates, dtype=torch.int64)}
