"""One writer per checkpoint: an advisory lock held for the whole of a run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import UsageError

__all__ = ["RunLock", "remove_stale"]


class RunLock:
    """``with RunLock(ckpt):`` holds ``CKPT.lock`` (``fcntl.flock``, the holder's process id in
    it) from before anything of the run is written until it ends, then removes it. A second run
    or resume writing the same checkpoint is refused, naming the process that holds it. The
    kernel drops the lock of a process that dies, so a killed run's lock is simply taken over.
    Without ``fcntl`` (Windows) there is no lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.fd: int = -1

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:
            return self
        for _ in range(10):  # the file may be removed by its holder between open and lock
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise UsageError(
                    f"{self.path} is being written by another vae train (process {holder}); wait for it to "
                    f"end, or write to another file with -o"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return self
            os.close(fd)
        raise UsageError(f"{self.lock_path}: could not take the lock of this checkpoint; try again")

    def __exit__(self, *exc: Any) -> None:
        if self.fd >= 0:
            try:
                os.unlink(self.lock_path)
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = -1


def remove_stale(path: Path, warn: Any) -> None:
    """Remove (under the lock) the temporary files a killed run left beside checkpoint ``path``
    and its metrics log, saying so with ``warn``."""
    from ..checkpoint import remove_stale_temps
    from .monitor import metrics_path

    stale = [name for p in (path, metrics_path(path)) for name in remove_stale_temps(p)]
    if stale:
        warn(
            f"removed {len(stale)} temporary file{'s' if len(stale) > 1 else ''} that a killed "
            f"run left beside {path}: {', '.join(stale)}"
        )
