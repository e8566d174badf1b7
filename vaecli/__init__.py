"""vaecli: a command-line workbench for variational auto-encoders.

The library behind the ``vae`` command::

    import vaecli
    result = vaecli.train(dataset="shapes", epochs=2, out="shapes.safetensors")
    model = vaecli.load("shapes.safetensors")
    images = model.sample(64)              # (64, 1, 32, 32) floats in [0, 1]
    mean, logvar = model.encode(images)
    vaecli.metadata("shapes.safetensors")  # how it was built and trained, its metrics

Plugin authors: ``vaecli.hookspecs`` is the contract, ``vaecli.testing`` checks it.

Nothing heavy (torch) is imported until a function that needs it is called.
"""

from __future__ import annotations

__version__ = "0.5.0"

from .errors import VaeError  # noqa: E402
from .hookspecs import (  # noqa: E402
    ArchitectureSpec,
    DataRequest,
    DatasetSpec,
    DatasetSplits,
    LikelihoodSpec,
    ModelShape,
    NoOptions,
    RecipeSpec,
    Split,
    hookimpl,
)

__all__ = [
    "__version__", "hookimpl", "load", "metadata", "train", "TrainConfig", "VaeError",
    "ArchitectureSpec", "LikelihoodSpec", "DatasetSpec", "DatasetSplits", "Split", "DataRequest",
    "ModelShape", "NoOptions", "RecipeSpec",
]


def load(path, device: str = "cpu"):
    """The trained model in a checkpoint (a ``vaecli.model.VAE`` in eval mode)."""
    from .checkpoint import load as _load
    from .training import resolve_device

    return _load(path, resolve_device(device))


def metadata(path) -> dict:
    """A checkpoint's metadata as a dict, as ``vae info --json`` prints it, without building the
    model: ``model``, ``data``, ``training``, ``metrics`` (one dict per epoch), ``versions``,
    ``epoch`` and ``parameters``. Raises ``VaeError`` for a file that is not a checkpoint."""
    from .checkpoint import describe

    return describe(path)


def train(config=None, reporter=None, *, recipe=None, **settings):
    """Train a model; ``settings`` are the fields of ``vaecli.TrainConfig``. With ``recipe`` (a
    name from ``vae recipes`` or a ``.toml`` file), its settings are used where ``settings``
    give none: ``vaecli.train(recipe="pytorch-example", epochs=3)``. Returns a ``TrainResult``
    with the checkpoint path, the model and the per-epoch metrics."""
    from .training import TrainConfig, run

    if config is None:
        if recipe is not None:
            from .recipes import config as recipe_config

            config = recipe_config(recipe, **settings)
        else:
            config = TrainConfig(**settings)
    elif settings or recipe is not None:
        raise TypeError("pass either a TrainConfig or keyword settings (and a recipe), not both")
    return run(config, reporter=reporter)


def __getattr__(name):
    if name == "TrainConfig":
        from .training import TrainConfig

        return TrainConfig
    raise AttributeError(f"module 'vaecli' has no attribute {name!r}")
