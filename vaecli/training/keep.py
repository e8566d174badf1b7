"""``--keep-best`` and ``--early-stop``, decided from the per-epoch metrics alone (no state of
their own): a resumed run decides as the uninterrupted one would."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..checkpoint import atomic_write

__all__ = ["score", "best", "stalled", "best_path", "BestCheckpoint"]


def score(record: dict) -> Optional[float]:
    """The test loss an epoch is judged by: the negative ELBO, else the family's objective."""
    for key in ("test_nelbo", "test_objective"):
        if isinstance(record.get(key), (int, float)):
            return float(record[key])
    return None


def best(metrics: list) -> tuple[int, float]:
    """(epoch, test loss) of the best epoch so far; (0, inf) before any."""
    found = [(value, m["epoch"]) for m in metrics if (value := score(m)) is not None]
    if not found:
        return 0, float("inf")
    value, epoch = min(found)
    return int(epoch), float(value)


def stalled(metrics: list, patience: int) -> Optional[str]:
    """Why training stops early (the last ``patience`` epochs brought no better test loss), or
    None to go on."""
    if not patience or not metrics:
        return None
    epoch, value = best(metrics)
    last = metrics[-1]["epoch"]
    if last - epoch < patience:
        return None
    return f"the test loss has not improved for {last - epoch} epochs (best {value:.2f} nats after epoch {epoch})"


def best_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(f"{checkpoint.stem}.best.safetensors")


class BestCheckpoint:
    """A monitor: after an epoch whose test loss is the best so far, the checkpoint just written
    is kept as ``CKPT.best.safetensors`` (a hard link to it, renamed into place; a copy where
    the file system has no hard links)."""

    label = "best checkpoint"

    def __init__(self, checkpoint: Path, earlier: list) -> None:
        self.checkpoint, self.path = Path(checkpoint), best_path(Path(checkpoint))
        self.metrics = list(earlier)

    def epoch_end(self, epoch: int, model, record: dict) -> None:
        self.metrics.append(record)
        if best(self.metrics)[0] != epoch:
            return
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.link")
        try:
            if temp.exists():
                temp.unlink()
            os.link(self.checkpoint, temp)
            os.replace(temp, self.path)
        except OSError:
            atomic_write(self.path, self.checkpoint.read_bytes())

    def close(self, completed: bool = True) -> None:
        pass
