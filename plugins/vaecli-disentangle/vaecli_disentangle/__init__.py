"""vaecli-disentangle: beta-TC-VAE, FactorVAE, the capacity-annealed beta-VAE and DIP-VAE as vaecli
model families."""

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


@dataclass(frozen=True)
class CapacityOptions:
    """``gamma``: the weight of |KL - C|; ``c_max``: the capacity reached, in nats;
    ``iterations``: the training steps over which C rises from 0 to ``c_max``. The defaults are
    disentanglement_lib's dSprites setting (gamma 1000, C up to 25 nats over 100,000 steps)."""

    gamma: float = 1000.0
    c_max: float = 25.0
    iterations: int = 100_000

    def __post_init__(self) -> None:
        if not (self.gamma >= 0 and self.c_max >= 0 and self.iterations >= 1):
            raise ValueError("gamma and c_max must be >= 0 and iterations at least 1")


@dataclass(frozen=True)
class DIPOptions:
    """``kind``: ``i`` (the covariance of the posterior means) or ``ii`` (of the aggregate
    posterior); ``lambda_od``: the weight of the off-diagonal entries; ``lambda_d_factor``: the
    diagonal's weight as a multiple of it (10 for DIP-VAE-I, 1 for -II in the paper's dSprites
    runs, as in disentanglement_lib)."""

    kind: str = "i"
    lambda_od: float = 10.0
    lambda_d_factor: float = 10.0

    def __post_init__(self) -> None:
        if self.kind not in ("i", "ii"):
            raise ValueError(f"kind must be i or ii, got {self.kind!r}")
        if not (self.lambda_od >= 0 and self.lambda_d_factor >= 0):
            raise ValueError("lambda_od and lambda_d_factor must be >= 0")


@vaecli.hookimpl
def register_models(register):
    register(
        vaecli.ModelSpec(
            "annealedvae",
            "beta-VAE with capacity annealing: recon + gamma |KL - C|, C raised to c_max (Burgess et al. 2018).",
            "vaecli_disentangle.families:AnnealedVAE",
            CapacityOptions,
        )
    )
    register(
        vaecli.ModelSpec(
            "dipvae",
            "DIP-VAE-I or -II: the ELBO plus a penalty on the covariance of the codes (Kumar et al. 2018).",
            "vaecli_disentangle.families:DIPVAE",
            DIPOptions,
        )
    )
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
