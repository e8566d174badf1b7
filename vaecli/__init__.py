"""vaecli: a command-line workbench for variational auto-encoders.

The library behind the ``vae`` command (see ``vaecli.api``)::

    import vaecli
    result = vaecli.train(dataset="shapes", epochs=2, out="shapes.safetensors")
    model = vaecli.load("shapes.safetensors")
    images = model.sample(64)              # (64, 1, 32, 32) floats in [0, 1]
    mean, logvar = model.encode(images)
    model.evaluate(vaecli.read_inputs("shapes:test", model), iw_samples=100)
    vaecli.metadata("shapes.safetensors")  # how it was built and trained, its metrics

Plugin authors: ``vaecli.hookspecs`` is the contract, ``vaecli.testing`` checks it, and
``vaecli.VAE`` (the base of model families, with ``vaecli.Loss`` and ``vaecli.Step``),
``vaecli.Likelihood``, ``vaecli.console``, ``vaecli.inputs``, ``vaecli.viz`` and ``vaecli.nets``
are the toolbox the built-in parts and commands use.

Nothing heavy (torch) is imported until a function that needs it is called.
"""

from __future__ import annotations

from .errors import VaeError
from .hookspecs import (
    ArchitectureSpec,
    Column,
    DataRequest,
    DatasetSpec,
    DatasetSplits,
    LikelihoodSpec,
    ModelShape,
    ModelSpec,
    NoOptions,
    RecipeSpec,
    SamplerSpec,
    Split,
    hookimpl,
)
from .version import __version__

__all__ = [
    "__version__",
    "hookimpl",
    "load",
    "metadata",
    "train",
    "resume",
    "read_inputs",
    "TrainConfig",
    "VaeError",
    "Likelihood",
    "VAE",
    "Loss",
    "Step",
    "ModelSpec",
    "SamplerSpec",
    "ArchitectureSpec",
    "LikelihoodSpec",
    "DatasetSpec",
    "DatasetSplits",
    "Split",
    "Column",
    "DataRequest",
    "ModelShape",
    "NoOptions",
    "RecipeSpec",
]

_LAZY = {
    "load": "api",
    "metadata": "api",
    "train": "api",
    "resume": "api",
    "read_inputs": "api",
    "TrainConfig": "config",
    "Likelihood": "likelihood",
    "VAE": "model",
    "Loss": "model",
    "Step": "model",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'vaecli' has no attribute {name!r}")
