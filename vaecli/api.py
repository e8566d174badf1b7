"""The Python API: everything a ``vae`` command does, as functions.

>>> import vaecli
>>> result = vaecli.train(dataset="shapes", epochs=1, out=str(tmp / "shapes.safetensors"),
...                       dataset_options={"n_train": 256, "n_test": 64, "size": 16}, device="cpu")
>>> model = vaecli.load(result.path)
>>> model.sample(8).shape                  # decoded prior draws, floats in [0, 1]
torch.Size([8, 1, 16, 16])
>>> inputs = vaecli.read_inputs("shapes:test", model)
>>> mean, logvar = model.encode(inputs.images[:5])
>>> tuple(mean.shape)
(5, 20)
>>> numbers = model.evaluate(inputs, iw_samples=10)
>>> sorted(k for k in numbers if k in ("nelbo", "nll", "kl", "recon"))
['kl', 'nelbo', 'nll', 'recon']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch

from . import factory, header
from .config import TrainConfig
from .device import resolve_device
from .evaluation import EVAL_SEED, encode_all, evaluate
from .inputs import Inputs, input_labels, load_input
from .model import VAE
from .training import Reporter, TrainResult
from .training import resume as _resume
from .training import run as _run

__all__ = ["Model", "load", "train", "resume", "read_inputs", "metadata"]


class Model(VAE):
    """A trained model, as ``load`` returns it: its family's class (a ``VAE``: ``sample``,
    ``encode``, ``decode``, ``reconstruct``) with ``evaluate`` and ``encode_all`` for many
    images, and ``meta``, its checkpoint's metadata."""

    def evaluate(
        self,
        images: Union[Inputs, torch.Tensor],
        iw_samples: int = 1,
        batch_size: int = 0,
        seed: int = EVAL_SEED,
        labels: Optional[torch.Tensor] = None,
        progress: Optional[Callable[[int], None]] = None,
        per_example: bool = False,
    ) -> dict:
        """Numbers comparable with papers, in nats per example (``vaecli.evaluation.evaluate``):
        ``nelbo``, ``recon``, ``kl``, ``nll`` (importance-weighted, ``iw_samples`` samples),
        ``bits_per_dim``, ``active_units``; for rows ``columns`` (each column's reconstruction
        term). ``images``: uint8 ``(N, C, H, W)``, rows as the model takes them, or ``Inputs``.
        ``per_example``: also each example's ``nll`` and ``nelbo`` (and column terms), tensors."""
        x, labels = _images_and_labels(self, images, labels)
        return evaluate(self, x, iw_samples, batch_size, seed, progress, labels, per_example)

    def encode_all(
        self,
        images: Union[Inputs, torch.Tensor],
        batch_size: int = 1000,
        labels: Optional[torch.Tensor] = None,
        progress: Optional[Callable[[int], None]] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior (mean, logvar) ``(N, D)`` of many images, in batches, on the CPU."""
        x, labels = _images_and_labels(self, images, labels)
        return encode_all(self, x, batch_size, progress, labels)

    def disentanglement(
        self,
        images: Union[Inputs, torch.Tensor],
        factors: Optional[dict] = None,
        seed: int = 0,
        progress: Optional[Callable[[str, int, int], None]] = None,
    ) -> dict:
        """MIG, DCI, SAP, the FactorVAE score, modularity and explicitness of the posterior
        means of ``images`` against their ``factors`` (name -> ``(N,)``; an ``Inputs`` of a
        dataset that records them brings its own): ``vaecli.disentanglement.scores``.
        ``progress(stage, done, total)``."""
        import numpy as np

        from .disentanglement import scores
        from .errors import UsageError

        if factors is None:
            factors = images.factors if isinstance(images, Inputs) else {}
        if not factors:
            source = images.source if isinstance(images, Inputs) else "these images"
            raise UsageError(
                f"{source} has no factors of variation to measure the code against; the datasets "
                f"shapes, dsprites, 3dshapes and celeba record them, and a folder: or tensor: dataset "
                f"takes them from a factors file beside it (README, 'Disentanglement')"
            )
        encoding = None if progress is None else (lambda done: progress("encoding", done, len(images)))
        mean, _ = self.encode_all(images, progress=encoding)
        values = {k: np.asarray(v.numpy() if torch.is_tensor(v) else v) for k, v in factors.items()}
        scoring = None if progress is None else (lambda done, total: progress("scoring", done, total))
        return scores(mean.numpy(), values, seed, scoring)


def _images_and_labels(
    model: VAE, images: Union[Inputs, torch.Tensor], labels: Optional[torch.Tensor]
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The uint8 images, and the classes a class-conditional model is conditioned on."""
    if isinstance(images, Inputs):
        return images.images, labels if labels is not None else input_labels(model, images)
    return images, labels


def load(path: Union[str, Path], device: str = "cpu") -> Model:
    """The trained model in a checkpoint, in eval mode, on ``device`` (auto, cpu, cuda, mps).
    ``path`` may name a checkpoint on the Hugging Face Hub: ``"hf://OWNER/REPO[@REVISION][/FILE]"``
    (the ``hub`` extra; fetched through its cache)."""
    if isinstance(path, str):
        from .hub import resolve

        path = resolve(path)
    return factory.load(path, resolve_device(device), mixin=Model)  # type: ignore[return-value]


def train(
    config: Optional[TrainConfig] = None,
    reporter: Optional[Reporter] = None,
    *,
    recipe: Optional[str] = None,
    **settings: Any,
) -> TrainResult:
    """Train a model; ``settings`` are the fields of ``vaecli.TrainConfig``. With ``recipe`` (a
    name from ``vae recipes`` or a ``.toml`` file), its settings are used where ``settings``
    give none: ``vaecli.train(recipe="pytorch-example", epochs=3)``. Returns a ``TrainResult``
    with the checkpoint path, the model and the per-epoch metrics."""
    if config is None:
        if recipe is not None:
            from .recipes import config as recipe_config

            config = recipe_config(recipe, **settings)
        else:
            config = TrainConfig(**settings)
    elif settings or recipe is not None:
        raise TypeError("pass either a TrainConfig or keyword settings (and a recipe), not both")
    return _run(config, reporter=reporter)


def resume(path: Union[str, Path], epochs: Optional[int] = None, **kwargs: Any) -> TrainResult:
    """Continue the run in checkpoint ``path`` up to ``epochs`` in total (``vae train --resume``)."""
    return _resume(path, epochs, **kwargs)


def read_inputs(
    text: str,
    model: Optional[VAE] = None,
    data_dir: Optional[Union[str, Path]] = None,
    download: bool = True,
    limit: Optional[int] = None,
) -> Inputs:
    """The images that an INPUT of the commands names: ``mnist:test``, ``mnist:test:7``, an image
    file or a folder; converted to ``model``'s input shape when a model is given."""
    return load_input(text, None if model is None else model.meta, data_dir, download, limit)


def metadata(path: Union[str, Path]) -> dict:
    """A checkpoint's metadata as a dict, as ``vae info --json`` prints it, without building the
    model: ``model``, ``data``, ``training``, ``metrics`` (one dict per epoch), ``versions``,
    ``epoch`` and ``parameters``. Raises ``VaeError`` for a file that is not a checkpoint."""
    return header.describe(path)
