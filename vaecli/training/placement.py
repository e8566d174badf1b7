"""Where a run's training data lives: on the device once, when it fits; else in host memory,
each batch copied to the device ahead of the step that needs it.

On the CPU nothing moves (a memory-mapped data cache stays mapped and is read a batch at a
time). On a GPU both splits go there once when they fit beside the model and its batch (what
``--max-memory`` allows, else the GPU's free memory); otherwise the batches stream: rows are
gathered on the host (from the cache's mapping when it has one), pinned, and copied without a
host synchronisation while the GPU still works on the step before. The test split is copied a
batch at a time by the test pass (``VAE.prepare``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Optional

import torch

from .. import datacache
from ..device import free_bytes, gib

__all__ = ["Placed", "place", "fits_on_device", "nbytes"]

# of the GPU's free memory, what the data may take: the rest is for the allocator's slack and
# the evaluation buffers of the test pass
DEVICE_SHARE = 0.9


def nbytes(*tensors: Optional[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def fits_on_device(need: int, device: torch.device, reserved: int, max_memory_gib: float = 0.0) -> bool:
    """Whether ``need`` bytes of data fit on ``device`` beside the ``reserved`` bytes of the model
    and its batch (counted against ``--max-memory`` when given, else measured now, after the
    model was built). Always on the CPU, where nothing is copied."""
    if device.type == "cpu":
        return True
    if max_memory_gib:
        return need + reserved <= max_memory_gib * 2**30
    return need + reserved <= DEVICE_SHARE * free_bytes(device)


class Placed:
    """The training images (or rows) of a run and where they are; ``batches`` yields each
    step's rows on the device."""

    def __init__(self, images: torch.Tensor, device: torch.device, resident: bool) -> None:
        self.device, self.resident = device, resident
        self.images = images.to(device) if resident else images
        self.size = nbytes(images)

    def __len__(self) -> int:
        return len(self.images)

    def describe(self) -> str:
        """One line for the run's log where the data streams."""
        return (
            f"the training data ({gib(self.size)}) does not fit the memory free on {self.device} beside the "
            f"model: each batch is copied from host memory ahead of its step (slower than resident data)"
        )

    def batches(self, order: torch.Tensor, batch_size: int, done: int = 0) -> Iterator[tuple]:
        """``(index, rows)`` of each step from step ``done``: ``index`` on the device (the order
        of the epoch), ``rows`` its rows there (uint8 images or float rows)."""
        chunks = order.split(batch_size)[done:]
        if self.resident:
            for idx in chunks:
                yield idx, datacache.gather(self.images, idx)
            return
        hosts = order.cpu().split(batch_size)[done:]  # one synchronisation an epoch
        ahead = self._copy(hosts[0]) if hosts else None
        for j, idx in enumerate(chunks):
            rows = ahead
            if j + 1 < len(hosts):  # the next batch starts copying before this step runs
                ahead = self._copy(hosts[j + 1])
            yield idx, rows

    def _copy(self, index: torch.Tensor) -> torch.Tensor:
        rows = datacache.gather(self.images, index)
        if self.device.type == "cuda":
            return rows.pin_memory().to(self.device, non_blocking=True)
        return rows.to(self.device)


def place(
    images: tuple, labels: tuple, device: torch.device, reserved: int, max_memory_gib: float, warn: Optional[Callable]
):
    """``((Placed train, labels), (test, labels), bytes placed against --max-memory)``: labels
    on the device always; the images there once when both splits fit (``fits_on_device``),
    else kept on the host, which ``warn`` says."""
    train, test = images
    need = nbytes(train, test)
    resident = fits_on_device(need, device, reserved, max_memory_gib)
    on = [None if t is None else t.to(device) for t in labels]
    placed = Placed(train, device, resident)
    if not resident and warn is not None:
        warn(placed.describe())
    counted = need if resident and max_memory_gib and device.type != "cpu" else 0
    return (placed, on[0]), (test.to(device) if resident else test, on[1]), counted
