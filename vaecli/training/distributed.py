"""Training on several processes with torch.distributed, as launched by torchrun.

``torchrun --nproc-per-node N -m vaecli train ...`` starts N processes; each finds its rank and
the world size in the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, and
the rendezvous address). The batch of each step is the same global batch as in one process (the
epoch's permutation comes from the same seeded generator everywhere) cut into one contiguous
shard per rank; every rank also draws the noise of the whole batch and keeps its shard's rows,
so that N processes compute what one process computes, up to the order of floating-point sums.
Gradients are averaged by DistributedDataParallel (NCCL on GPUs, gloo on the CPU); the running
sums of the metrics are added across ranks; rank 0 alone reports progress and writes the
checkpoint, its metrics log and pictures.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

import torch

from ..errors import UsageError, VaeError, first_line


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict:
        """What the checkpoint records."""
        return {"world_size": self.size, "backend": self.backend or "none"}

    def shard(self, idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        """This rank's contiguous part of a global batch's indices, and where it starts."""
        if not self.distributed:
            return idx, 0
        sizes = [len(p) for p in idx.tensor_split(self.size)]
        start = sum(sizes[: self.rank])
        return idx[start : start + sizes[self.rank]], start

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over all ranks, in place."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` is true on some rank (every rank gets the same answer)."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        return bool(self.sum_(t).item() > 0)

    def barrier(self, loading: bool = False) -> None:
        """Every rank here before any goes on; ``loading``: on the loading group, which waits
        ``LOAD_TIMEOUT`` for a rank that downloads or caches the data."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier(group=_LOADING if loading else None)

    def in_turn(self, load: Callable[[], Any]) -> Any:
        """``load()`` on rank 0 first (it downloads or caches what is missing), then on the first
        rank of every other node (whose disk may not be rank 0's), then on the rest, which read
        what is there; so no two processes write the same files at once."""
        if not self.distributed:
            return load()
        turn = 0 if self.main else 1 if self.local_rank == 0 else 2
        result = None
        for t in range(3):
            if t == turn:
                result = load()
            self.barrier(loading=True)
        return result

    def agree(self, flag: bool, device: torch.device) -> bool:
        """A decision every rank takes alike (stop early, a non-finite test loss): true when
        rank 0 takes it, so that no rank goes on to a collective the others left."""
        if not self.distributed:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.broadcast(t, src=0)
        return bool(t.item() > 0)

    def same_order(self, order: torch.Tensor) -> torch.Tensor:
        """Rank 0's batch order of the epoch on every rank (the ranks' generators agree on GPUs
        of one model; rank 0's order makes sure they train on the same batches)."""
        if self.distributed:
            import torch.distributed as dist

            dist.broadcast(order, src=0)
        return order


def from_environment() -> World:
    """The world torchrun describes in the environment; one process when it says nothing."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (torchrun sets them)") from None
    if size <= 1:
        return World()
    if not 0 <= rank < size:
        raise UsageError(f"RANK {rank} is outside WORLD_SIZE {size}")
    return World(rank=rank, size=size, local_rank=local)


def start(world: World, device: torch.device) -> tuple[World, torch.device]:
    """Join the process group: NCCL when training on CUDA GPUs (each process on the GPU of its
    local rank), gloo on the CPU. Returns the world with its backend, and this rank's device."""
    if not world.distributed:
        return world, device
    import torch.distributed as dist

    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise UsageError(
                f"local rank {world.local_rank} has no GPU: this machine has "
                f"{torch.cuda.device_count()}; start at most that many processes per node"
            )
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise UsageError(
            f"training on several processes works on CUDA GPUs (NCCL) and on the CPU (gloo), not on {device.type}"
        )
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    global _LOADING
    _LOADING = dist.new_group(backend="gloo", timeout=LOAD_TIMEOUT)
    return World(world.rank, world.size, world.local_rank, backend), device


# how long ranks wait for others to download or cache the data set (NCCL's own timeout, 10
# minutes, and gloo's, 30, are for the collectives of the steps): on a gloo group of its own
LOAD_TIMEOUT = timedelta(hours=6)
_LOADING: Any = None


def stop(world: World) -> None:
    if world.distributed:
        import gc

        import torch.distributed as dist

        gc.collect()  # the DistributedDataParallel wrapper and its reducer, before their process group
        if dist.is_initialized():
            dist.destroy_process_group()


PEER_LOST = ("gloo", "nccl", "connection reset", "connection closed", "broken pipe", "socket")


# NCCL's failures of this machine, which every rank meets at once: not a peer that left
LOCAL_NCCL = ("unhandled system error", "unhandled cuda error", "invalid usage", "internal error", "shared memory")


def lost_peer(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because another process left (killed, or
    stopped after its own error), rather than this process's own failure."""
    import torch.distributed as dist

    if isinstance(exc, VaeError) or not isinstance(exc, RuntimeError) or local_nccl(exc):
        return False
    return isinstance(exc, dist.DistError) or any(word in str(exc).lower() for word in PEER_LOST)


def local_nccl(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "nccl" in text and any(word in text for word in LOCAL_NCCL)


def failed(world: World, exc: BaseException, signalled: Optional[str] = None) -> None:
    """A collective of a distributed run failed: NCCL's own failure here is one line at once;
    a peer that left, a wait for the launcher (``await_stop``, which ``signalled`` passes)."""
    if not world.distributed:
        return
    if local_nccl(exc):
        raise VaeError(
            f"NCCL failed on this machine ({first_line(exc)}); check the GPUs' links and the size of "
            f"/dev/shm (Docker: --shm-size), with NCCL_DEBUG=INFO for details"
        ) from exc
    if lost_peer(exc):
        await_stop(world, exc, signalled=signalled)


def await_stop(world: World, exc: BaseException, seconds: float = 60.0, signalled: Optional[str] = None) -> None:
    """After a collective failed because a peer left: say nothing and wait for the launcher,
    which stops this process (SIGTERM) and reports the process that failed first. Waiting
    matters: a process that exits here could be reported in place of the one that failed.
    Where the launcher's signal came before the collective failed (``signalled``: the training
    loop held it to save at the end of its step), it takes effect now, as it would have then;
    waiting for another would last the launcher's 30 s grace. Without a launcher to stop it,
    one line after ``seconds``."""
    import signal
    import time

    if signalled in ("SIGTERM", "SIGINT"):
        number = getattr(signal, signalled)
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    time.sleep(seconds)
    raise VaeError(f"rank {world.rank} of {world.size} lost the other training processes: {first_line(exc)}") from exc


def wrap(model: torch.nn.Module, world: World, device: torch.device, warn: Callable[[str], None]):
    """The model as the training loop calls it: under DistributedDataParallel when distributed.
    A family with a term over the whole batch (``VAE.BATCH_TERM``) computes it per rank, over
    the rank's shard: ``warn`` says so once."""
    if not world.distributed:
        return model
    term = getattr(model, "BATCH_TERM", "")
    if term and world.main:
        warn(
            f"{type(model).__name__} computes {term} on each of the {world.size} processes over its "
            f"{world.size}th of the batch: an objective of smaller batches than one process's (raise "
            f"--batch-size to keep each process's part as large)"
        )
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def launch(nproc: int, args: list[str], checkpoint: Optional[str] = None) -> int:
    """``vae train --nproc N ARGS``: torchrun with N processes on this machine, each running
    ``vae train ARGS``; returns its exit code. The launcher runs in its own session, and a
    Ctrl-C or SIGTERM here is passed on to it once, so that the training processes get one
    signal (save and stop), as when torchrun is run by hand."""
    import signal
    import subprocess
    import sys

    env = dict(os.environ, VAECLI_LAUNCHED_CHECKPOINT=checkpoint or "")
    # torchrun sets 1 thread per process and prints a banner about it; share the cores instead
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    proc = subprocess.Popen([sys.executable, "-c", AGENT, str(nproc), *args], start_new_session=True, env=env)

    def forward(number, frame):
        proc.send_signal(number)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


AGENT = "import sys; from vaecli.training.distributed import agent; sys.exit(agent(sys.argv[1:]))"


def _kept(nproc: int) -> str:
    """What the user can resume from after a failed distributed run, in words."""
    from ..header import read_header

    name = os.environ.get("VAECLI_LAUNCHED_CHECKPOINT", "")
    if not name:
        return f"resume from the last checkpoint (named above) with vae train --resume CKPT --nproc {nproc}"
    try:
        meta, _ = read_header(name)
    except VaeError:
        return f"no checkpoint was saved at {name}"
    progress = meta.get("progress") or {}
    at = f"in epoch {progress['epoch']} at step {progress['step']}" if progress else f"after epoch {meta.get('epoch')}"
    return f"{name} is intact ({at}): resume with vae train --resume {name} --nproc {nproc}"


def _failed(exc: Any, nproc: int) -> int:
    """One message for a run that a process left: an error line when the process died without
    a word (killed), else a note under the process's own error line; the exit code."""
    from ..console import err, error_line

    rank, failure = exc.get_first_failure()
    if failure.exitcode < 0:
        error_line(
            f"training process {rank} of {nproc} was killed ({failure.signal_name()}); the others were "
            f"stopped; {_kept(nproc)}"
        )
        return 128 - failure.exitcode
    err.print(f"the other training processes were stopped; {_kept(nproc)}", markup=False, highlight=False)
    return failure.exitcode or 1


def agent(argv: list[str]) -> int:
    """torchrun's launcher for ``launch``: its failures become one message and an exit code,
    not tracebacks. torchrun stops the other processes when one fails (SIGTERM, which they
    heed without saving: a collective with a dead peer cannot complete)."""
    # the training processes say what failed, once, in one line; torchrun's own log would repeat it
    os.environ.setdefault("LOGLEVEL", "CRITICAL")
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)

    nproc, args = int(argv[0]), argv[1:]
    parsed = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "vaecli", "train", *args])
    try:
        run(parsed)
    except ChildFailedError as exc:
        return _failed(exc, nproc)
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0
