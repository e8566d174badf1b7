"""Errors a user can act on, and the one place their exit codes are decided.

The library raises a `VaeError` kind whose message says what was wrong and what to do.
`vaecli.cli` prints it as one red line on stderr and exits with `exit_code`; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "VaeError",
    "UsageError",
    "CheckpointError",
    "PluginMissingError",
    "DataUnavailableError",
    "TrainingError",
    "Interrupted",
    "Terminated",
    "unknown_name",
    "first_line",
]


class VaeError(Exception):
    """A failure at run time that is not a bug of vaecli (exit code 1)."""

    exit_code = 1


class UsageError(VaeError):
    """Bad options or bad input from the user: a wrong name, value or file (exit code 2)."""

    exit_code = 2


class CheckpointError(UsageError):
    """A file given as a checkpoint is not a valid, intact vaecli checkpoint."""


class PluginMissingError(VaeError):
    """A checkpoint needs a part whose plugin distribution is not installed."""


class DataUnavailableError(VaeError):
    """A dataset's files are missing and could not (or may not) be downloaded."""


class TrainingError(VaeError):
    """Training could not go on (for example the loss became NaN)."""


class Interrupted(VaeError):
    """The user pressed Ctrl-C (exit code 130, as for SIGINT)."""

    exit_code = 130


class Terminated(Interrupted):
    """SIGTERM (a scheduler's preemption, ``kill``) stopped training (exit code 143)."""

    exit_code = 143


def unknown_name(kind: str, name: str, known: list[str]) -> UsageError:
    """The error for a name that no plugin registered, listing the names that exist."""
    listed = ", ".join(sorted(known)) or "none"
    return UsageError(f"unknown {kind} '{name}'; known {kind}s: {listed}")


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, for a one-line error (PyTorch's and others' run on
    for lines); its type's name when it says nothing."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
