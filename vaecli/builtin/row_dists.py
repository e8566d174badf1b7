"""Likelihoods of rows: Poisson and negative binomial counts, and a table's columns.

Parameters arrive as ``(B, P, F)``: P per model input of a row (``vaecli.kinds.Layout``).
Missing cells (NaN) drop out of log p(x|z) (Nazabal et al. 2020, HI-VAE); a numeric column
scaled by s for the model adds -log s, so that every number is in the data's own units.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..likelihood import Likelihood, gaussian_log_prob

__all__ = ["Poisson", "NegativeBinomial", "Table", "poisson_log_prob", "negbin_log_prob", "observed"]


def observed(x: torch.Tensor, layout: Any) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``x`` with missing cells set to 0, and the mask of missing cells (None when the data has
    none, so that complete data pays nothing for the check)."""
    if layout is None or not layout.missing:
        return x, None
    missing = torch.isnan(x)
    return x.masked_fill(missing, 0.0), missing


def dropped(lp: torch.Tensor, missing: Optional[torch.Tensor]) -> torch.Tensor:
    return lp if missing is None else lp.masked_fill(missing, 0.0)


def poisson_log_prob(x: torch.Tensor, log_rate: torch.Tensor) -> torch.Tensor:
    """log Poisson(x; e^log_rate) elementwise: x log_rate - e^log_rate - log x!."""
    return x * log_rate - log_rate.exp() - torch.lgamma(x + 1.0)


def negbin_log_prob(x: torch.Tensor, log_mean: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """log NB(x; mean mu = e^log_mean, inverse dispersion theta = e^log_theta) elementwise, the
    parameterisation of scVI (Lopez et al. 2018): variance mu + mu^2 / theta,

        log Gamma(x + theta) - log Gamma(theta) - log x! + theta log(theta / (theta + mu))
        + x log(mu / (theta + mu)),

    with log(theta + mu) as a log-sum-exp, finite for any parameters."""
    theta = log_theta.exp()
    log_sum = torch.logaddexp(log_theta, log_mean)  # log(theta + mu)
    return (
        torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
        + theta * (log_theta - log_sum)
        + x * (log_mean - log_sum)
    )


def _gamma_poisson(mean: torch.Tensor, theta: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """A negative binomial draw as Poisson(Gamma(theta, theta / mean)); the gamma draw from the
    global generator seeded by ``generator`` (torch draws gammas without one)."""
    theta = theta.expand_as(mean)
    if generator is None:
        rate = torch._standard_gamma(theta) * mean / theta
    else:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        devices = [mean.device] if mean.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            rate = torch._standard_gamma(theta) * mean / theta
    return torch.poisson(rate, generator=generator)


class _Rows(Likelihood):
    """A likelihood of rows: one parameter per model input, a term per input."""

    params_per_pixel = 1

    def bind(self, layout: Any) -> None:
        if layout is None:
            raise ValueError(f"likelihood {type(self).__name__.lower()} models rows (vectors, counts), not images")
        super().bind(layout)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        lp = self.column_log_probs(x, params)
        assert lp is not None
        return lp.sum(dim=1)  # (B,)


class Poisson(_Rows):
    """p(x|z) = prod_j Poisson(x_j; rate_j), the decoder giving log rate_j."""

    def column_log_probs(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        x0, missing = observed(x, self.layout)
        return dropped(poisson_log_prob(x0, params[:, 0]), missing)  # (B, F)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params[:, 0].exp()

    def sample(self, params: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return torch.poisson(self.mean(params), generator=generator)


class NegativeBinomial(_Rows):
    """p(x|z) = prod_j NB(x_j; mean_j, theta_j): the decoder gives log mean_j, and each feature
    has a learned inverse dispersion theta_j (gene-wise, as in scVI), initialised at
    ``theta``."""

    def __init__(self, theta: float = 1.0) -> None:
        super().__init__()
        self.theta0 = float(theta)

    def bind(self, layout: Any) -> None:
        super().bind(layout)
        self.log_theta = nn.Parameter(torch.full((layout.features,), math.log(self.theta0)))

    def column_log_probs(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        x0, missing = observed(x, self.layout)
        return dropped(negbin_log_prob(x0, params[:, 0], self.log_theta), missing)  # (B, F)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params[:, 0].exp()

    def sample(self, params: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return _gamma_poisson(self.mean(params), self.log_theta.exp(), generator)


class Table(_Rows):
    """p(x|z) = prod_columns p(x_c | z), each column's own likelihood (a term each):

    - numeric: Gaussian N(mu, sigma_c^2), sigma_c learned per column (in the scaled units, with
      -log scale added);
    - categorical: a categorical over its categories (softmax of the decoder's logits, one per
      category);
    - binary: Bernoulli (logits);
    - count: negative binomial with a learned inverse dispersion per column (``counts=poisson``:
      Poisson).

    The layout holds the inputs of each type together (``vaecli.kinds.TYPE_ORDER``), so each
    type is one slice; categorical columns are one padded block ``(B, columns, widest)``: a
    table of many columns costs a few operations a step.
    """

    cat_gather: torch.Tensor  # buffers set by bind
    cat_pad: torch.Tensor
    log_scale: torch.Tensor
    order: torch.Tensor
    log1p: torch.Tensor
    num_scale: torch.Tensor
    num_shift: torch.Tensor

    def __init__(self, counts: str = "negbin", min_sigma: float = 1e-3) -> None:
        super().__init__()
        self.counts, self.min_log_sigma = counts, math.log(min_sigma)

    def bind(self, layout: Any) -> None:
        super().bind(layout)
        cols = layout.columns
        by_type = {t: sorted((c for c in cols if c.type == t), key=lambda c: c.start) for t in TYPES}
        bounds, start = {}, 0
        for t in TYPES:
            width = sum(c.width for c in by_type[t])
            if by_type[t] and by_type[t][0].start != start:
                raise ValueError(
                    "the layout does not hold each type's inputs together (numeric, binary, count, categorical)"
                )
            bounds[t], start = (start, start + width), start + width
        self.bounds = bounds
        cats = by_type["categorical"]
        widest = max((c.width for c in cats), default=1)
        first = bounds["categorical"][0]
        gather = torch.full(
            (len(cats), widest), bounds["categorical"][1] - first, dtype=torch.long, device="cpu"
        )  # a padding slot
        for i, c in enumerate(cats):
            gather[i, : c.width] = torch.arange(c.start, c.stop, device="cpu") - first
        self.register_buffer("cat_gather", gather, persistent=False)
        self.register_buffer("cat_pad", gather == bounds["categorical"][1] - first, persistent=False)
        scales = torch.tensor([math.log(c.scale) for c in by_type["numeric"]], device="cpu")
        self.register_buffer("log_scale", scales, persistent=False)
        # a column modelled as y = log(1 + x): p(x) = p(y) / (1 + x), and log(1 + x) = y, unscaled
        logged = [getattr(c, "transform", "") == "log1p" for c in by_type["numeric"]]
        self.register_buffer("log1p", torch.tensor(logged, dtype=torch.bool, device="cpu"), persistent=False)
        self.register_buffer(
            "num_scale", torch.tensor([c.scale for c in by_type["numeric"]], device="cpu"), persistent=False
        )
        self.register_buffer(
            "num_shift", torch.tensor([c.shift for c in by_type["numeric"]], device="cpu"), persistent=False
        )
        # (index buffers are made on the CPU even while vaecli sizes a model on the meta device)
        # the column terms come numeric, binary, count, categorical: this puts them in the table's order
        ordered = [cols.index(c) for t in TYPES for c in by_type[t]]
        self.register_buffer(
            "order", torch.argsort(torch.tensor(ordered, dtype=torch.long, device="cpu")), persistent=False
        )
        self.any_log1p = any(logged)
        self.log_sigma = nn.Parameter(torch.zeros(len(by_type["numeric"])))
        self.log_theta = nn.Parameter(torch.zeros(len(by_type["count"])))

    def _part(self, values: torch.Tensor, t: str) -> torch.Tensor:
        low, high = self.bounds[t]
        return values[:, low:high]

    def _sigma(self) -> torch.Tensor:
        return torch.logaddexp(self.log_sigma, torch.full_like(self.log_sigma, self.min_log_sigma))

    def _blocks(self, values: torch.Tensor, pad: float) -> torch.Tensor:
        """The categorical inputs of ``values`` ``(B, F)`` as ``(B, columns, widest)``, padded."""
        part = self._part(values, "categorical")
        padded = torch.cat([part, part.new_full((part.shape[0], 1), pad)], dim=1)
        return padded[:, self.cat_gather]

    def _cat_log_probs(self, p: torch.Tensor) -> torch.Tensor:
        """log P of each category ``(B, K, W)``; the padding -inf (probability 0)."""
        return torch.log_softmax(self._blocks(p, -math.inf), dim=-1)

    def _terms(self, x: torch.Tensor, params: torch.Tensor) -> list:
        """The column terms of each type, ``(B, columns of the type)``, missing cells 0."""
        x0, missing = observed(x, self.layout)
        p = params[:, 0]  # (B, F)
        parts = []
        if self.log_sigma.numel():
            y = self._part(x0, "numeric")
            lp = gaussian_log_prob(y, self._part(p, "numeric"), self._sigma()) - self.log_scale
            if self.any_log1p:
                lp = lp - torch.where(self.log1p, y * self.num_scale + self.num_shift, torch.zeros_like(y))
            parts.append((lp, "numeric"))
        low, high = self.bounds["binary"]
        if high > low:
            from .dists import bernoulli_log_prob

            parts.append((bernoulli_log_prob(self._part(p, "binary"), self._part(x0, "binary")), "binary"))
        if self.log_theta.numel():
            xc, lc = self._part(x0, "count"), self._part(p, "count")
            lp = poisson_log_prob(xc, lc) if self.counts == "poisson" else negbin_log_prob(xc, lc, self.log_theta)
            parts.append((lp, "count"))
        if len(self.cat_gather):
            log_p = self._cat_log_probs(p).masked_fill(self.cat_pad, 0.0)  # 0 * -inf would be NaN
            lp = (self._blocks(x0, 0.0) * log_p).sum(-1)  # (B, K): the one-hot picks its category
            parts.append((lp, "categorical"))
        if missing is None:
            return [lp for lp, _ in parts]
        out = []
        for lp, t in parts:
            gone = self._part(missing, t)
            if t == "categorical":
                gone = gone[:, self.cat_gather[:, 0]]
            out.append(lp.masked_fill(gone, 0.0))
        return out

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return sum(lp.sum(dim=1) for lp in self._terms(x, params))

    def column_log_probs(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return torch.cat(self._terms(x, params), dim=1)[:, self.order]  # (B, columns)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """Per input: the numeric mean, the probability of 1, the count's mean, the categories'
        probabilities (differentiable: a family may train on it)."""
        p = params[:, 0]
        parts = [self._part(p, "numeric"), torch.sigmoid(self._part(p, "binary")), self._part(p, "count").exp()]
        if len(self.cat_gather):
            parts.append(self._flat(self._cat_log_probs(p).exp()))
        return torch.cat(parts, dim=1)

    def _flat(self, blocks: torch.Tensor) -> torch.Tensor:
        """``(B, columns, widest)`` back to the categorical inputs ``(B, their number)``: the
        blocks hold them in order, row by row, padding aside."""
        return blocks[:, ~self.cat_pad]

    def sample(self, params: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        p = params[:, 0]
        mu = self._part(p, "numeric")
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        parts = [mu + self._sigma().exp() * eps]
        parts.append(torch.bernoulli(torch.sigmoid(self._part(p, "binary")), generator=generator))
        rate = self._part(p, "count").exp()
        if self.counts == "poisson":
            parts.append(torch.poisson(rate, generator=generator))
        else:
            parts.append(_gamma_poisson(rate, self.log_theta.exp(), generator) if rate.numel() else rate)
        if len(self.cat_gather):
            probs = self._cat_log_probs(p).exp()
            b, k, w = probs.shape
            chosen = torch.multinomial(probs.reshape(b * k, w), 1, generator=generator).view(b, k)
            parts.append(self._flat(F.one_hot(chosen, w).to(p.dtype)))
        return torch.cat(parts, dim=1)


TYPES = ("numeric", "binary", "count", "categorical")  # vaecli.kinds.TYPE_ORDER
