"""vaecli-disentangle: beta-TC-VAE and FactorVAE as vaecli model families."""

from __future__ import annotations

from dataclasses import dataclass

import vaecli


@dataclass(frozen=True)
class TCOptions:
    """``beta``: the weight of the total correlation (1 is the VAE); ``dataset_size``: N of the
    minibatch-weighted estimate of log q(z)."""

    beta: float = 6.0
    dataset_size: int = 60000

    def __post_init__(self) -> None:
        if not (self.beta >= 0 and self.dataset_size >= 1):
            raise ValueError("beta must be >= 0 and dataset_size at least 1")


@dataclass(frozen=True)
class FactorOptions:
    """``gamma``: the weight of the total correlation; ``hidden``: the discriminator's layers."""

    gamma: float = 10.0
    hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        if not (self.gamma >= 0 and self.hidden and all(h >= 1 for h in self.hidden)):
            raise ValueError("gamma must be >= 0 and hidden one or more positive sizes")


@vaecli.hookimpl
def register_models(register):
    register(
        vaecli.ModelSpec(
            "btcvae",
            "beta-TC-VAE: the ELBO with its total correlation weighted by beta (Chen et al. 2018).",
            "vaecli_disentangle.families:BetaTCVAE",
            TCOptions,
        )
    )
    register(
        vaecli.ModelSpec(
            "factorvae",
            "FactorVAE: the ELBO plus gamma times a discriminator's total correlation (Kim & Mnih 2018).",
            "vaecli_disentangle.families:FactorVAE",
            FactorOptions,
        )
    )
