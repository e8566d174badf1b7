"""Built-in decoder likelihoods."""

from __future__ import annotations

from dataclasses import dataclass

from ..hookspecs import LikelihoodSpec, NoOptions, hookimpl

SIGMA_MODES = ("no", "shared", "pixel")


@dataclass(frozen=True)
class GaussianOptions:
    """``sigma``: the fixed standard deviation (or the initial one when learned);
    ``learn_sigma``: ``no`` (fixed), ``shared`` (one learned sigma for all pixels) or ``pixel``
    (the decoder outputs a sigma per pixel); ``min_sigma``: added to a learned sigma, so that it
    stays above it."""

    sigma: float = 0.1
    learn_sigma: str = "no"
    min_sigma: float = 1e-3

    def __post_init__(self) -> None:
        if self.learn_sigma not in SIGMA_MODES:
            raise ValueError(f"learn_sigma must be one of {', '.join(SIGMA_MODES)}, got {self.learn_sigma!r}")
        if not self.sigma > 0 or not self.min_sigma > 0:
            raise ValueError("sigma and min_sigma must be positive")


def build_bernoulli(options):
    from .dists import Bernoulli

    return Bernoulli()


def build_gaussian(options: GaussianOptions):
    from .dists import Gaussian

    return Gaussian(options.sigma, options.learn_sigma, options.min_sigma)


@hookimpl
def register_likelihoods(register):
    register(LikelihoodSpec(
        name="bernoulli",
        help="Bernoulli over pixels in [0, 1]; the decoder gives logits (summed binary cross-entropy).",
        build=build_bernoulli,
        options=NoOptions,
        data_range="unit",
    ))
    register(LikelihoodSpec(
        name="gaussian",
        help="Gaussian with fixed sigma (default 0.1), or a learned shared or per-pixel sigma.",
        build=build_gaussian,
        options=GaussianOptions,
        data_range="real",
    ))
