"""What a run tells its caller (``Reporter``), what it returns (``TrainResult``), and how it
is asked to stop (``StopSignal``)."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

import torch

from ..config import TrainConfig
from ..data import LoadedDataset
from ..model import VAE

__all__ = ["TrainResult", "Reporter", "Silent", "Quiet", "StopSignal"]


@dataclass
class TrainResult:
    path: Path
    model: VAE
    metrics: list
    main: bool = True  # False on the ranks other than 0 of a run on several processes


class Reporter(Protocol):
    """What the training loop tells its caller (the CLI draws a progress bar from it)."""

    def start(self, config: TrainConfig, path: Path, device: torch.device, data: LoadedDataset) -> None: ...
    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None: ...
    def step(self, done: int, objective: torch.Tensor) -> None: ...
    def epoch_end(self, metrics: dict) -> None: ...
    def warn(self, message: str) -> None: ...


class Silent:
    """The reporter of a run from Python: warnings as Python warnings, nothing else."""

    def start(self, *a: Any) -> None: ...
    def epoch_start(self, *a: Any) -> None: ...
    def step(self, *a: Any) -> None: ...
    def epoch_end(self, *a: Any) -> None: ...

    def warn(self, message: str) -> None:
        import warnings

        warnings.warn(message, stacklevel=2)


class Quiet(Silent):
    """The reporter of ranks other than 0: rank 0 says everything once."""

    def warn(self, message: str) -> None: ...


class StopSignal:
    """While training: the first Ctrl-C (SIGINT) or SIGTERM asks the loop to save a checkpoint at
    the end of its current step and stop; a second Ctrl-C stops at once (KeyboardInterrupt)."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.received: Optional[str] = None
        self._previous: dict = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # signal handlers live there
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(number).name

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
