"""The console: where every ``vae`` command (built in or from a plugin) writes.

``out`` is standard output (results), ``err`` standard error (progress, warnings, errors).
``warn(message)`` prints one yellow warning line, ``error_line(message)`` one red error line,
and ``progress(total, label)`` is a transient progress bar over ``total`` items, drawn only on
a terminal::

    from vaecli.console import out, progress
    with progress(len(images), "scoring") as update:
        for i, image in enumerate(images):
            ...
            update(i + 1)
    out.print("Done.")

Messages are plain text: Rich markup in them is escaped.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from rich.console import Console
from rich.markup import escape

__all__ = ["out", "err", "warn", "error_line", "progress", "escape"]

out = Console(highlight=False, soft_wrap=True, emoji=False)  # cuda:x is not an emoji
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def warn(message: str, console: Optional[Console] = None) -> None:
    """One warning line on standard error (or on ``console``)."""
    (console or err).print(f"[yellow]vae: warning:[/] {escape(message)}")


def error_line(message: str) -> None:
    """One red error line on standard error; under torchrun it names the rank that says it."""
    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    where = f" (rank {rank} of {world})" if rank not in ("", "0") else ""
    err.print(f"[bold red]error{where}:[/] {escape(message)}")


class progress:
    """A transient progress bar over ``total`` items: ``with progress(n, "encoding") as update:``
    and ``update(done)``; a ``total`` of None counts without an end. Nothing is drawn unless
    ``show`` and standard error is a terminal."""

    def __init__(self, total: Optional[int], label: str, show: bool = True) -> None:
        self.total, self.label, self.show = total, label, show
        self.bar: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if not (self.show and err.is_terminal):
            return lambda done: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn(f"[bold]{escape(self.label)}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        self.bar.start()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda done: self.bar.update(task, completed=done)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
