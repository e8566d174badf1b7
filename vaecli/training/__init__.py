"""Training: the loop (``trainer``), its arithmetic (``precision``), optimisers (``optim``),
checkpoints and resuming (``run``), pictures and logs of every epoch (``monitor``) and training
on several processes (``distributed``). ``run(config)`` and ``resume(path)`` are the entry points."""

from __future__ import annotations

from ..config import TrainConfig
from ..schedules import burda_stage
from .optim import make_optimizer
from .precision import MixedPrecision, native_bf16, resolve_precision
from .report import Reporter, Silent, TrainResult
from .run import output_path, resume, run

__all__ = [
    "run",
    "resume",
    "output_path",
    "TrainConfig",
    "TrainResult",
    "Reporter",
    "Silent",
    "MixedPrecision",
    "make_optimizer",
    "native_bf16",
    "resolve_precision",
    "burda_stage",
]
