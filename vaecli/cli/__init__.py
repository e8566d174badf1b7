"""The ``vae`` command: one module per command or close group, each parsing its options,
calling the Python API (``vaecli.api``) and printing through ``vaecli.console``."""

from __future__ import annotations

from . import catalog, draw, evaluate, explore, info, latent, push, quality, train  # noqa: F401  (each registers its commands)
from .app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``vae`` console script."""
    from ..plugins import registry

    registry().add_commands(app)
    app()
