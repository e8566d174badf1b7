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


# The network and training of disentanglement_lib's dSprites study (Locatello et al. 2019,
# appendix, Table 1): conv 4x4 stride 2 with 32, 32, 64, 64 channels, a dense 256, 10 latent
# dimensions, Bernoulli, Adam 1e-4, batch 64, 300,000 steps (29 epochs of the 90% kept for
# training here; they train on all of dSprites and score on samples of it).
_LOCATELLO = {
    "dataset": "dsprites",
    "arch": "conv",
    "arch_options": {"channels": [32, 32, 64, 64], "hidden": [256], "activation": "relu"},
    "likelihood": "bernoulli",
    "latent_dim": 10,
    "batch_size": 64,
    "optimizer": "adam",
    "lr": 1e-4,
    "epochs": 29,
}
_SOURCE = (
    "Locatello et al. 2019, Challenging Common Assumptions in the Unsupervised Learning of "
    "Disentangled Representations, appendix (disentanglement_lib's dSprites network and training: "
    "conv 32-32-64-64, dense 256, 10 latents, Bernoulli, Adam 1e-4, batch 64, 300k steps); {what}. "
    "Differs in holding out 10% of dSprites as a test split and in PyTorch's initialisation"
)
RECIPES = (
    ("locatello-betavae", "beta-VAE, beta=4 (Higgins et al. 2017)", "vae", {}, {"beta": 4.0}),
    (
        "locatello-annealedvae",
        "capacity annealing to 25 nats over 100,000 steps, gamma=1000 (Burgess et al. 2018, section 5)",
        "annealedvae",
        {"gamma": 1000.0, "c_max": 25.0, "iterations": 100_000},
        {},
    ),
    (
        "locatello-btcvae",
        "beta-TC-VAE, beta=6 (Chen et al. 2018's dSprites setting)",
        "btcvae",
        {"beta": 6.0, "dataset_size": 663_552},
        {},
    ),
    ("locatello-factorvae", "FactorVAE, gamma=35 (Kim & Mnih 2018)", "factorvae", {"gamma": 35.0}, {}),
    (
        "locatello-dipvae-i",
        "DIP-VAE-I, lambda_od=10, lambda_d=100 (Kumar et al. 2018)",
        "dipvae",
        {"kind": "i", "lambda_od": 10.0, "lambda_d_factor": 10.0},
        {},
    ),
    (
        "locatello-dipvae-ii",
        "DIP-VAE-II, lambda_od=lambda_d=10 (disentanglement_lib's lambda_d_factor 1)",
        "dipvae",
        {"kind": "ii", "lambda_od": 10.0, "lambda_d_factor": 1.0},
        {},
    ),
)


@vaecli.hookimpl
def register_recipes(register):
    for name, what, model, options, extra in RECIPES:
        register(
            vaecli.RecipeSpec(
                name=name,
                help=f"dSprites, {what}, on disentanglement_lib's conv network, 29 epochs.",
                source=_SOURCE.format(what=what),
                settings={**_LOCATELLO, "model": model, "model_options": dict(options), **extra},
            )
        )
