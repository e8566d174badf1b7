"""What a resumed run changed: a run may continue on another machine in another arithmetic."""

from __future__ import annotations

__all__ = ["CHANGEABLE", "resumes"]

# the settings --resume may change: where and in which arithmetic the steps run, not what they compute
CHANGEABLE = ("device", "precision", "compile")


def resumes(before: dict, now: dict, epoch: int) -> list:
    """The checkpoint's list of resumes that changed the arithmetic, with this one added when it
    did: ``{"after_epoch": n, "precision": [was, now], ...}``."""
    done = list(before.get("resumes") or [])
    changed = {k: [before.get(k), now.get(k)] for k in CHANGEABLE if before.get(k) != now.get(k)}
    if changed:
        done.append({"after_epoch": epoch, **changed})
    return done
