"""Built-in latent samplers (``vae sample --sampler NAME``): their options and registration
(torch-free; the classes live in ``vaecli.samplers`` and ``vaecli.builtin.latent_models``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..hookspecs import SamplerSpec, hookimpl


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not value >= 1:
            raise ValueError(f"{name} must be at least 1, got {value!r}")


@dataclass(frozen=True)
class GMMOptions:
    """``components``: Gaussians of the mixture (full covariances), fitted by EM (scikit-learn)."""

    components: int = 10

    def __post_init__(self) -> None:
        _positive(components=self.components)


@dataclass(frozen=True)
class NetworkOptions:
    """``epochs`` over the training codes, ``hidden`` units per layer, ``layers``: MADEs of a
    flow, hidden layers of the two-stage VAE's networks, causal blocks of the PixelCNN."""

    epochs: int = 30
    hidden: int = 256
    layers: int = 4

    def __post_init__(self) -> None:
        _positive(epochs=self.epochs, hidden=self.hidden, layers=self.layers)


MODELS = "vaecli.builtin.latent_models"
SAMPLERS = (
    SamplerSpec("prior", "The model family's own prior (the default).", "vaecli.samplers:Prior"),
    SamplerSpec(
        "gmm",
        "A Gaussian mixture fitted to the training codes (Ghosh et al. 2020); needs scikit-learn.",
        f"{MODELS}:GaussianMixture",
        GMMOptions,
    ),
    SamplerSpec(
        "two-stage",
        "A second VAE trained on the training codes (Dai & Wipf 2019).",
        f"{MODELS}:TwoStage",
        NetworkOptions,
    ),
    SamplerSpec(
        "maf",
        "A masked autoregressive flow fitted to the training codes (Papamakarios et al. 2017).",
        f"{MODELS}:MAF",
        NetworkOptions,
    ),
    SamplerSpec(
        "pixelcnn",
        "An autoregressive prior over a VQ-VAE's code indices (van den Oord et al. 2017), 1-d causal convolutions.",
        f"{MODELS}:PixelCNN",
        NetworkOptions,
    ),
)


@hookimpl
def register_samplers(register):
    for spec in SAMPLERS:
        register(spec)
