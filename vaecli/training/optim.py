"""The optimisers of a run (the schedules are pure functions in ``vaecli.schedules``)."""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..config import TrainConfig
from ..errors import UsageError
from ..model import VAE, Loss

__all__ = ["make_optimizer", "parameter_groups", "backward"]


def _bare(method):
    """``method`` without torch's ``_disable_dynamo`` wrapper, whose first call imports the
    compiler (torch._dynamo: about 2 s of start-up) only to keep the compiler out of a function it
    is never asked to trace here: vaecli compiles the model's loss, never the optimizer."""
    return getattr(method, "__wrapped__", method)


def _without_compiler(kind: Any) -> Any:
    """A subclass of the optimizer ``kind`` whose methods skip that import: its bookkeeping
    (adding parameter groups, zeroing gradients, state dicts) unwrapped, and ``step`` the same
    arithmetic under the same grad mode, without the compiler's graph breaks around it."""
    names = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
    methods = {name: _bare(getattr(kind, name)) for name in names}
    arithmetic = _bare(kind.step)

    def step(self, closure=None):
        with torch.set_grad_enabled(self.defaults.get("differentiable", False)):
            return arithmetic(self, closure)

    return type(kind.__name__, (kind,), {**methods, "step": step, "__doc__": kind.__doc__})


_ADAM = {"adam": _without_compiler(torch.optim.Adam), "adamw": _without_compiler(torch.optim.AdamW)}


def make_optimizer(config: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    """Adam (weight decay as an L2 term) or AdamW (decoupled, Loshchilov & Hutter 2019); the
    fused implementation (one kernel for all parameters) where the device has it."""
    kind = _ADAM["adamw" if config.optimizer == "adamw" else "adam"]
    decay = config.weight_decay if config.weight_decay is not None else (0.01 if config.optimizer == "adamw" else 0.0)
    extra: dict[str, Any] = {"fused": True} if device.type in ("cpu", "cuda") else {}
    return kind(params, lr=config.lr, weight_decay=decay, **extra)


def parameter_groups(model: VAE, distributed: bool) -> Optional[list[dict]]:
    """The optimizer's parameter groups of a family with several objectives (``VAE.parameter_groups``,
    each group named), or None for one objective (all parameters, as a plain optimizer takes them)."""
    groups = model.parameter_groups()
    if len(groups) == 1:
        return None
    if distributed:
        raise UsageError(
            f"--model {model.kind} trains parameter groups on objectives of their own ({', '.join(groups)}), "
            "which the one gradient all-reduce of torchrun does not serve yet; train in one process"
        )
    return [{"params": params, "name": name} for name, params in groups.items()]


def backward(amp: Any, loss: Loss, groups: Optional[list[dict]], scale: float = 1.0) -> None:
    """The gradients of a batch: of ``loss.objective`` (times ``scale``), or of each group's
    objective for its own parameters only (``loss.objectives``)."""
    if groups is None:
        amp.backward(loss.objective if scale == 1.0 else loss.objective * scale)
        return
    objectives = loss.objectives or {}
    for j, group in enumerate(groups):
        amp.backward(objectives[group["name"]] * scale, inputs=group["params"], retain_graph=j < len(groups) - 1)
