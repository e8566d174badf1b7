"""Latent samplers: where ``vae sample --sampler NAME`` draws codes from. ``prior`` is the
family's own prior; the others are densities fitted after training to the codes of the training
images (Ghosh et al. 2020's ex-post density estimation; Dai & Wipf 2019's two-stage VAE; van
den Oord et al. 2017's autoregressive prior over discrete codes), then decoded by the model.

A sampler is a ``torch.nn.Module`` built from the model and its options alone (so that its saved
state loads into a new one); fitting fills its parameters and buffers."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn

from .model import VAE

__all__ = ["Sampler", "Prior", "train_density"]


class Sampler(nn.Module):
    """The base of latent samplers. Override ``fit`` and ``sample`` (and ``refuses`` and
    ``codes`` where the sampler needs something of the model, such as discrete codes)."""

    NEEDS_FIT = True  # False: nothing to fit (the prior)

    def __init__(self, model: VAE, options: Any) -> None:
        super().__init__()
        self.latent_dim = model.latent_dim
        self.options = options

    @classmethod
    def refuses(cls, model: VAE) -> Optional[str]:
        """Why this sampler does not fit ``model`` (one line naming what it needs), or None."""
        return None

    def codes(self, model: VAE, x: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        """What the sampler is fitted to for a batch of images: here the posterior means."""
        return model.posterior(x, labels)[0]

    def fit(
        self, codes: torch.Tensor, generator: torch.Generator, progress: Optional[Callable[[int, int], None]] = None
    ) -> dict:
        """Fit to the training codes; ``progress(done, total)`` as it goes. Returns numbers to
        report (such as the fitted density's mean log-likelihood of the codes)."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator, model: VAE) -> torch.Tensor:
        """``n`` latent codes ``(n, D)`` for ``model`` to decode. ``generator`` is a CPU
        generator whatever the model's device (``vae sample`` and ``vae explore`` alike); the
        codes may be on any device: the caller moves them to the model's."""
        raise NotImplementedError


class Prior(Sampler):
    """The family's prior (``VAE.prior_sample``): what the model was trained with."""

    NEEDS_FIT = False

    def sample(self, n: int, generator: torch.Generator, model: VAE) -> torch.Tensor:
        if generator.device != model.device:  # the model draws on its device: a generator there, seeded from this one
            seed = int(torch.randint(2**62, (1,), generator=generator))
            generator = torch.Generator(device=model.device).manual_seed(seed)
        return model.prior_sample(n, generator)


def train_density(
    module: nn.Module,
    loss: Callable[[torch.Tensor], torch.Tensor],
    data: torch.Tensor,
    epochs: int,
    generator: torch.Generator,
    progress: Optional[Callable[[int, int], None]] = None,
    batch_size: int = 256,
    lr: float = 1e-3,
) -> float:
    """Adam on ``loss(batch)`` (a mean) over shuffled batches of ``data`` for ``epochs``; the
    shared loop of samplers that are networks. Returns the mean loss of the last epoch."""
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    last = 0.0
    for epoch in range(epochs):
        order = torch.randperm(len(data), generator=generator)
        total = torch.zeros(())
        for idx in order.split(batch_size):
            value = loss(data[idx])
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            total += value.detach() * len(idx)
        last = total.item() / len(data)
        if progress is not None:
            progress(epoch + 1, epochs)
    return last
