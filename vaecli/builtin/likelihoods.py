"""Built-in decoder likelihoods."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..hookspecs import LikelihoodSpec, NoOptions, hookimpl

SIGMA_MODES = ("auto", "no", "shared", "pixel", "feature")
COUNT_LIKELIHOODS = ("negbin", "poisson")


@dataclass(frozen=True)
class GaussianOptions:
    """``sigma``: the fixed standard deviation (or the initial one when learned);
    ``learn_sigma``: ``no`` (fixed), ``shared`` (one learned sigma for all pixels), ``pixel``
    (the decoder outputs a sigma per pixel), ``feature`` (rows: one learned sigma per feature,
    from 1 in the standardised units) or ``auto`` (``no`` for images, ``feature`` for rows);
    ``min_sigma``: added to a learned sigma, so that it stays above it."""

    sigma: float = 0.1
    learn_sigma: str = "auto"
    min_sigma: float = 1e-3

    def __post_init__(self) -> None:
        if self.learn_sigma not in SIGMA_MODES:
            raise ValueError(f"learn_sigma must be one of {', '.join(SIGMA_MODES)}, got {self.learn_sigma!r}")
        if not self.sigma > 0 or not self.min_sigma > 0:
            raise ValueError("sigma and min_sigma must be positive")


@dataclass(frozen=True)
class LogisticOptions:
    """``min_log_scale``: the lower clamp of the decoder's log-scale (-7 in PixelCNN++), so
    that a bin's probability cannot collapse onto one level and blow up the gradient."""

    min_log_scale: float = -7.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.min_log_scale):
            raise ValueError(f"min_log_scale must be a finite number, got {self.min_log_scale!r}")


@dataclass(frozen=True)
class NegBinOptions:
    """``theta``: the initial inverse dispersion of every feature (learned per feature; the
    variance is mean + mean^2 / theta)."""

    theta: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.theta) and self.theta > 0):
            raise ValueError(f"theta must be a positive number, got {self.theta!r}")


@dataclass(frozen=True)
class TableOptions:
    """``counts``: the likelihood of count columns, negbin (learned dispersion per column) or
    poisson; ``min_sigma``: the floor of a numeric column's learned sigma (standardised units)."""

    counts: str = "negbin"
    min_sigma: float = 1e-3

    def __post_init__(self) -> None:
        if self.counts not in COUNT_LIKELIHOODS:
            raise ValueError(f"counts must be one of {', '.join(COUNT_LIKELIHOODS)}, got {self.counts!r}")
        if not self.min_sigma > 0:
            raise ValueError("min_sigma must be positive")


def build_poisson(options):
    from .row_dists import Poisson

    return Poisson()


def build_negbin(options: NegBinOptions):
    from .row_dists import NegativeBinomial

    return NegativeBinomial(options.theta)


def build_table(options: TableOptions):
    from .row_dists import Table

    return Table(options.counts, options.min_sigma)


def build_bernoulli(options):
    from .dists import Bernoulli

    return Bernoulli()


def build_gaussian(options: GaussianOptions):
    from .dists import Gaussian

    return Gaussian(options.sigma, options.learn_sigma, options.min_sigma)


def build_continuous_bernoulli(options):
    from .dists import ContinuousBernoulli

    return ContinuousBernoulli()


def build_logistic(options: LogisticOptions):
    from .dists import DiscretizedLogistic

    return DiscretizedLogistic(options.min_log_scale)


@hookimpl
def register_likelihoods(register):
    register(
        LikelihoodSpec(
            name="bernoulli",
            help="Bernoulli over binary pixels (grey levels as the usual relaxation); logits, summed binary cross-entropy.",
            build=build_bernoulli,
            options=NoOptions,
            data_range="binary",
        )
    )
    register(
        LikelihoodSpec(
            name="continuous-bernoulli",
            help="Continuous Bernoulli: the normalised Bernoulli density on [0, 1] (Loaiza-Ganem & Cunningham 2019); logits.",
            build=build_continuous_bernoulli,
            options=NoOptions,
            data_range="unit",
        )
    )
    register(
        LikelihoodSpec(
            name="gaussian",
            help="Gaussian with fixed sigma (default 0.1 for images), or a learned shared, per-pixel or (rows: the default) per-feature sigma.",
            build=build_gaussian,
            options=GaussianOptions,
            data_range="real",
        )
    )
    register(
        LikelihoodSpec(
            name="logistic",
            help="Discretized logistic over the 256 levels of 8-bit images (PixelCNN++, one component); "
            "NLL in bits/dim comparable with papers.",
            build=build_logistic,
            options=LogisticOptions,
            data_range="8bit",
        )
    )
    register(
        LikelihoodSpec(
            name="negbin",
            help="Negative binomial over integer counts (rows), mean from the decoder and a learned dispersion per feature (as scVI).",
            build=build_negbin,
            options=NegBinOptions,
            data_range="count",
        )
    )
    register(
        LikelihoodSpec(
            name="poisson",
            help="Poisson over integer counts (rows); the decoder gives each feature's log rate.",
            build=build_poisson,
            options=NoOptions,
            data_range="count",
        )
    )
    register(
        LikelihoodSpec(
            name="table",
            help="A table's columns, each its own term: Gaussian (numeric), categorical, Bernoulli (binary), negative binomial or Poisson (count).",
            build=build_table,
            options=TableOptions,
            data_range="table",
        )
    )
