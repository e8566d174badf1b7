"""The optimisers of a run (the schedules are pure functions in ``vaecli.schedules``)."""

from __future__ import annotations

from typing import Any

import torch

from ..config import TrainConfig

__all__ = ["make_optimizer"]


def make_optimizer(config: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    """Adam (weight decay as an L2 term) or AdamW (decoupled, Loshchilov & Hutter 2019); the
    fused implementation (one kernel for all parameters) where the device has it."""
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    decay = config.weight_decay if config.weight_decay is not None else (0.01 if config.optimizer == "adamw" else 0.0)
    extra: dict[str, Any] = {"fused": True} if device.type in ("cpu", "cuda") else {}
    return kind(params, lr=config.lr, weight_decay=decay, **extra)
