"""Built-in model families: their options and their registration (torch-free; each family's
class is imported from its path when a model is built).

| family | module | source |
| --- | --- | --- |
| vae, cvae | ``vaecli.model`` | Kingma & Welling 2013; Sohn et al. 2015 |
| ae, iwae, miwae, piwae, ciwae, vae2 | ``vaecli.builtin.bounds`` | Burda et al. 2015; Rainforth et al. 2018 |
| vamp, planar, radial, iaf, hvae | ``vaecli.builtin.priors`` | Tomczak & Welling 2018; Rezende & Mohamed 2015; Kingma et al. 2016; Caterini et al. 2018 |
| wae, infovae, rae-l2, rae-gp, vqvae | ``vaecli.builtin.regularized`` | Tolstikhin et al. 2018; Zhao et al. 2019; Ghosh et al. 2020; van den Oord et al. 2017 |
| aae, vaegan | ``vaecli.builtin.adversarial`` | Makhzani et al. 2016; Larsen et al. 2016 |
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hookspecs import ModelSpec, hookimpl


def _at_least(value: float, low: float, name: str) -> None:
    if not value >= low:
        raise ValueError(f"{name} must be at least {low:g}, got {value!r}")


@dataclass(frozen=True)
class IWAEOptions:
    """``k``: importance samples per example in the bound (Burda et al. 2015 used 5 and 50)."""

    k: int = 5

    def __post_init__(self) -> None:
        _at_least(self.k, 1, "k")


@dataclass(frozen=True)
class MIWAEOptions:
    """``m`` bounds of ``k`` importance samples each, averaged (Rainforth et al. 2018; PIWAE
    trains the decoder on the one bound of m * k samples)."""

    m: int = 8
    k: int = 8

    def __post_init__(self) -> None:
        _at_least(self.m, 1, "m")
        _at_least(self.k, 1, "k")


@dataclass(frozen=True)
class CIWAEOptions:
    """``beta`` * ELBO + (1 - ``beta``) * IWAE bound of ``k`` samples (Rainforth et al. 2018)."""

    beta: float = 0.5
    k: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.beta <= 1:
            raise ValueError(f"beta must be between 0 and 1, got {self.beta!r}")
        _at_least(self.k, 1, "k")


@dataclass(frozen=True)
class TwoLayerOptions:
    """Burda et al. (2015)'s second stochastic layer: the architecture maps x to and from
    ``z1`` latents; deterministic layers of ``hidden`` tanh units map z1 to and from the top
    latent (``--latent-dim``, 50 in the paper)."""

    z1: int = 100
    hidden: tuple[int, ...] = (100, 100)

    def __post_init__(self) -> None:
        _at_least(self.z1, 1, "z1")
        if not all(h >= 1 for h in self.hidden):
            raise ValueError("hidden sizes must be positive")


@dataclass(frozen=True)
class VampOptions:
    """``components``: K pseudo-inputs (Tomczak & Welling used 500)."""

    components: int = 500

    def __post_init__(self) -> None:
        _at_least(self.components, 1, "components")


@dataclass(frozen=True)
class FlowOptions:
    """``flows``: the number of flow layers."""

    flows: int = 10

    def __post_init__(self) -> None:
        _at_least(self.flows, 1, "flows")


@dataclass(frozen=True)
class IAFOptions:
    """``flows``: IAF steps (the order of the dimensions reversed between them); ``hidden``:
    units of each step's autoregressive network (MADE)."""

    flows: int = 2
    hidden: int = 128

    def __post_init__(self) -> None:
        _at_least(self.flows, 1, "flows")
        _at_least(self.hidden, 1, "hidden")


@dataclass(frozen=True)
class HVAEOptions:
    """``steps`` leapfrog steps of size ``step_size`` (one per dimension), the momentum tempered
    from ``beta_zero`` in (0, 1] to 1 (1: no tempering); ``learn``: learn the step sizes and
    beta_zero."""

    steps: int = 3
    step_size: float = 0.01
    beta_zero: float = 0.3
    learn: bool = True

    def __post_init__(self) -> None:
        _at_least(self.steps, 0, "steps")
        if not (self.step_size > 0 and 0 < self.beta_zero <= 1):
            raise ValueError("step_size must be positive and beta_zero in (0, 1]")
        if self.learn and self.beta_zero == 1:
            raise ValueError("beta_zero=1 (no tempering) is fixed: give learn=false, or a beta_zero below 1")


KERNELS = ("imq", "rbf")


@dataclass(frozen=True)
class MMDOptions:
    """``lam``: the weight of MMD(q(z), N(0, I)); ``kernel``: imq or rbf, of ``bandwidth``."""

    lam: float = 10.0
    kernel: str = "imq"
    bandwidth: float = 1.0

    def __post_init__(self) -> None:
        _at_least(self.lam, 0, "lam")
        if self.kernel not in KERNELS or not self.bandwidth > 0:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, bandwidth positive")


@dataclass(frozen=True)
class InfoOptions(MMDOptions):
    """(1 - ``alpha``) KL + (``alpha`` + ``lam`` - 1) MMD (Zhao et al.; alpha=0, lam=1 is the VAE)."""

    alpha: float = 0.0


@dataclass(frozen=True)
class RAEOptions:
    """``beta``: the weight of |z|^2 / 2; ``lam``: the weight of the decoder's regulariser."""

    beta: float = 1.0
    lam: float = 1e-4

    def __post_init__(self) -> None:
        _at_least(self.beta, 0, "beta")
        _at_least(self.lam, 0, "lam")


@dataclass(frozen=True)
class VQOptions:
    """``codes`` codebook vectors of ``dim`` numbers (dim divides --latent-dim); ``commitment``:
    the weight of the encoder's pull to its code (0.25 in the paper)."""

    codes: int = 128
    dim: int = 1
    commitment: float = 0.25

    def __post_init__(self) -> None:
        _at_least(self.codes, 1, "codes")
        _at_least(self.dim, 1, "dim")
        _at_least(self.commitment, 0, "commitment")


@dataclass(frozen=True)
class AdversarialOptions:
    """``adversarial``: the weight of the term that fools the discriminator; ``hidden``: the
    discriminator's layers."""

    adversarial: float = 1.0
    hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        _at_least(self.adversarial, 0, "adversarial")
        if not self.hidden or not all(h >= 1 for h in self.hidden):
            raise ValueError("hidden must be one or more positive sizes")


BOUNDS = "vaecli.builtin.bounds"
PRIORS = "vaecli.builtin.priors"
REGULARIZED = "vaecli.builtin.regularized"
ADVERSARIAL = "vaecli.builtin.adversarial"
MODELS = (
    ModelSpec(
        "vae",
        "Variational auto-encoder on the ELBO (Kingma & Welling 2013); --beta, --free-bits, --iw-samples.",
        "vaecli.model:VAE",
    ),
    ModelSpec(
        "cvae",
        "Class-conditional VAE: q(z|x,y), p(x|z,y) (Sohn et al. 2015); sample --label draws a class.",
        "vaecli.model:VAE",
        conditional=True,
    ),
    ModelSpec("ae", "Deterministic auto-encoder: reconstruction only, no prior, no likelihood.", f"{BOUNDS}:AE"),
    ModelSpec(
        "iwae", "Importance-weighted auto-encoder, k samples (Burda et al. 2015).", f"{BOUNDS}:IWAE", IWAEOptions
    ),
    ModelSpec(
        "miwae",
        "m IWAE bounds of k samples each, averaged (Rainforth et al. 2018).",
        f"{BOUNDS}:MIWAE",
        MIWAEOptions,
    ),
    ModelSpec(
        "piwae",
        "Encoder on the MIWAE bound, decoder on the IWAE bound of m*k samples (Rainforth et al. 2018).",
        f"{BOUNDS}:PIWAE",
        MIWAEOptions,
    ),
    ModelSpec(
        "ciwae",
        "beta*ELBO + (1-beta)*IWAE bound of k samples (Rainforth et al. 2018).",
        f"{BOUNDS}:CIWAE",
        CIWAEOptions,
    ),
    ModelSpec(
        "vae2",
        "Two stochastic layers, x-z1-z2 (Burda et al. 2015); --iw-samples for their IWAE.",
        f"{BOUNDS}:TwoLayer",
        TwoLayerOptions,
    ),
    ModelSpec(
        "vamp",
        "VampPrior: a mixture of posteriors of learned pseudo-inputs (Tomczak & Welling 2018).",
        f"{PRIORS}:VampPrior",
        VampOptions,
    ),
    ModelSpec(
        "planar", "Posterior through planar flows (Rezende & Mohamed 2015).", f"{PRIORS}:PlanarFlow", FlowOptions
    ),
    ModelSpec(
        "radial", "Posterior through radial flows (Rezende & Mohamed 2015).", f"{PRIORS}:RadialFlow", FlowOptions
    ),
    ModelSpec(
        "iaf", "Posterior through inverse autoregressive flow (Kingma et al. 2016).", f"{PRIORS}:IAF", IAFOptions
    ),
    ModelSpec(
        "hvae",
        "Hamiltonian VAE: tempered leapfrog steps after q(z|x) (Caterini et al. 2018).",
        f"{PRIORS}:HVAE",
        HVAEOptions,
    ),
    ModelSpec(
        "wae",
        "Wasserstein auto-encoder, MMD penalty (Tolstikhin et al. 2018); no likelihood.",
        f"{REGULARIZED}:WAE",
        MMDOptions,
    ),
    ModelSpec(
        "infovae",
        "InfoVAE: ELBO plus an MMD between q(z) and the prior (Zhao et al. 2019).",
        f"{REGULARIZED}:InfoVAE",
        InfoOptions,
    ),
    ModelSpec(
        "rae-l2",
        "Regularised auto-encoder, decoder weight norm (Ghosh et al. 2020); no likelihood.",
        f"{REGULARIZED}:RAE",
        RAEOptions,
    ),
    ModelSpec(
        "rae-gp",
        "Regularised auto-encoder, decoder gradient penalty (Ghosh et al. 2020); no likelihood.",
        f"{REGULARIZED}:RAEGP",
        RAEOptions,
    ),
    ModelSpec(
        "vqvae",
        "Vector-quantised auto-encoder (van den Oord et al. 2017); no likelihood.",
        f"{REGULARIZED}:VQVAE",
        VQOptions,
    ),
    ModelSpec(
        "aae",
        "Adversarial auto-encoder: a discriminator on the codes (Makhzani et al. 2016); no likelihood.",
        f"{ADVERSARIAL}:AAE",
        AdversarialOptions,
    ),
    ModelSpec(
        "vaegan",
        "VAE with an image discriminator (Larsen et al. 2016, pixel reconstruction).",
        f"{ADVERSARIAL}:VAEGAN",
        AdversarialOptions,
    ),
)


@hookimpl
def register_models(register):
    for spec in MODELS:
        register(spec)
