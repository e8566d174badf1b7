"""The ``vae`` command: one module per command or close group, each parsing its options,
calling the Python API (``vaecli.api``) and printing through ``vaecli.console``."""

from __future__ import annotations

import os
import sys
from typing import Any

from . import catalog, draw, evaluate, explore, info, latent, push, quality, train  # noqa: F401  (each registers its commands)
from .app import app

__all__ = ["app", "main", "run"]


def run() -> None:
    """The ``vae`` command in this process, as ``sys.argv`` gives it; ends in ``SystemExit``
    with the command's exit code, the process left running (for callers that go on)."""
    from ..plugins import registry

    registry().add_commands(app)
    app()


def main() -> None:
    """Entry point of the ``vae`` console script and of ``python -m vaecli``: ``run``, then
    leave the process at once (``leave``)."""
    try:
        run()
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    leave(code)


def leave(code: Any) -> None:
    """End the process with ``code`` as ``sys.exit`` would, less the interpreter's teardown:
    threads joined, exit handlers run (logs flushed, temporary folders removed) and output
    flushed, then ``os._exit``. Tearing down torch's thousands of modules and objects took
    0.6 s at the end of every ``vae train``, with nothing left to write."""
    import atexit
    import threading

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said there
            pass
    os._exit(status & 0xFF)
