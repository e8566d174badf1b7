"""Torch modules of the built-in likelihoods. Parameters arrive as (B, P, C, H, W)."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..likelihood import Likelihood, gaussian_log_prob


class _BernoulliLogProb(torch.autograd.Function):
    """log Bernoulli(x; sigmoid(l)) = x l - softplus(l), elementwise, written as
    x l - relu(l) + log(sigmoid(|l|)): stable for any l (sigmoid(|l|) lies in [0.5, 1]; the
    absolute error is that of one float, under 1e-7 per pixel) and about three times faster on
    a CPU than torch's binary cross-entropy, whose log1p is not vectorised there. The gradient,
    x - sigmoid(l), is computed in backward from the saved logits."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, x)
        return torch.addcmul(torch.sigmoid(logits.abs()).log_().sub_(logits.relu()), x, logits)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, x = ctx.saved_tensors
        d_logits = (x - torch.sigmoid(logits)).mul_(grad) if ctx.needs_input_grad[0] else None
        d_x = logits * grad if ctx.needs_input_grad[1] else None
        return d_logits, d_x


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Elementwise log-probability of ``x`` (0/1 or grey values in [0, 1]) under
    Bernoulli(sigmoid(``logits``)), as ``-binary_cross_entropy_with_logits(logits, x)``."""
    logits, x = torch.broadcast_tensors(logits, x.to(logits.dtype))
    return _BernoulliLogProb.apply(logits, x)


class Bernoulli(Likelihood):
    """p(x|z) = prod Bernoulli(x; sigmoid(logits)); log-probability through a stable form of
    the binary cross-entropy with logits (``bernoulli_log_prob``), valid for grey values in
    [0, 1] too."""

    params_per_pixel = 1

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        logits = params[:, 0]  # (B, C, H, W)
        return bernoulli_log_prob(logits, x).flatten(1).sum(dim=1)  # (B,)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params[:, 0])

    def sample(self, params: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return torch.bernoulli(self.mean(params), generator=generator)


class Gaussian(Likelihood):
    """p(x|z) = prod N(x; mu, sigma^2), sigma fixed, shared and learned, or per pixel; for rows
    (``bind``) also learned per feature (``feature``, the default there). A learned sigma is
    exp(raw) + min_sigma, so it never reaches zero. On rows, missing cells drop out and a
    feature the data scaled by s adds -log s (the density in the data's own units)."""

    def __init__(self, sigma: float, learn_sigma: str, min_sigma: float) -> None:
        super().__init__()
        self.learn_sigma = learn_sigma
        self.sigma0 = sigma
        self.params_per_pixel = 2 if learn_sigma == "pixel" else 1
        self.min_log_sigma = math.log(min_sigma)
        log_sigma = torch.tensor(math.log(sigma))
        if learn_sigma == "shared":
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)
        self.register_buffer("log_scale", None, persistent=False)  # rows: log of each feature's scaling

    def bind(self, layout) -> None:
        super().bind(layout)
        if layout is None:
            if self.learn_sigma == "feature":
                raise ValueError("learn_sigma=feature is for rows (vectors, tables); for images use shared or pixel")
            return
        if self.learn_sigma in ("auto", "feature"):  # rows: one learned sigma per feature, from 1 (scaled data)
            self.learn_sigma = "feature"
            del self.log_sigma
            start = 0.0 if self.sigma0 == 0.1 else math.log(self.sigma0)
            self.log_sigma = nn.Parameter(torch.full((layout.features,), start))
        self.log_scale = layout.log_scale()

    def _log_sigma(self, params: torch.Tensor) -> torch.Tensor:
        if self.learn_sigma in ("no", "auto"):
            return self.log_sigma
        raw: torch.Tensor = self.log_sigma
        if self.learn_sigma == "pixel":
            raw = params[:, 1] + raw  # the decoder predicts an offset from the initial sigma
        # sigma = exp(raw) + min_sigma: a soft floor that never stops the gradient
        return torch.logaddexp(raw, torch.full_like(raw, self.min_log_sigma))

    def column_log_probs(self, x: torch.Tensor, params: torch.Tensor) -> Optional[torch.Tensor]:
        if self.layout is None:
            return None
        from .row_dists import dropped, observed

        x0, missing = observed(x, self.layout)
        lp = gaussian_log_prob(x0, params[:, 0], self._log_sigma(params)) - self.log_scale
        return dropped(lp, missing)  # (B, F)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        if self.layout is not None:
            return self.column_log_probs(x, params).sum(dim=1)  # type: ignore[union-attr]
        lp = gaussian_log_prob(x, params[:, 0], self._log_sigma(params))
        return lp.flatten(1).sum(dim=1)  # (B,)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params[:, 0]

    def sample(self, params: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        mu = params[:, 0]
        sigma = self._log_sigma(params).exp().expand_as(mu)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + sigma * noise


# -- continuous Bernoulli ---------------------------------------------------------------------

_CB_TAYLOR = 0.5  # |eta| below this: Taylor series (truncation error < 5e-11 there)
_CB_SAMPLE_TAYLOR = 1e-4  # |eta| below this: the inverse CDF to first order in eta


def cb_log_norm(eta: torch.Tensor) -> torch.Tensor:
    """log C of the continuous Bernoulli with logits ``eta``, elementwise.

    C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) with lambda = sigmoid(eta), which is
    C = eta / tanh(eta / 2): even in eta, 2 at eta = 0. With a = |eta|,

        log C = log a - log(1 - e^-a) + log(1 + e^-a)        (no overflow for any a),
        log C = log 2 + log1p(a^2/12 - a^4/720 + a^6/30240 - a^8/1209600)   (a < 0.5),

    the series at small a avoiding the 0/0 at a = 0 and the cancellation in the gradient
    (truncation error below 3e-11 there).
    """
    a = eta.abs()
    small = a < _CB_TAYLOR
    a_big = torch.where(small, torch.ones_like(a), a)  # keeps the unused branch (and its gradient) finite
    exact = torch.log(a_big) - torch.log(-torch.expm1(-a_big)) + torch.log1p(torch.exp(-a_big))
    a2 = torch.where(small, a, torch.zeros_like(a)).pow(2)
    taylor = math.log(2.0) + torch.log1p(a2 * (1.0 / 12 + a2 * (-1.0 / 720 + a2 * (1.0 / 30240 - a2 / 1209600))))
    return torch.where(small, taylor, exact)


def cb_mean(eta: torch.Tensor) -> torch.Tensor:
    """E[x] of the continuous Bernoulli with logits ``eta``: 1 / (1 - e^-eta) - 1 / eta, and
    for |eta| < 0.5 its series 1/2 + eta/12 - eta^3/720 + eta^5/30240 - eta^7/1209600
    (Bernoulli numbers; truncation error below 5e-11 there)."""
    small = eta.abs() < _CB_TAYLOR
    e_big = torch.where(small, torch.ones_like(eta), eta)
    exact = -1.0 / torch.expm1(-e_big) - 1.0 / e_big  # expm1 -> inf for eta << 0 gives 0 + 1/|eta|
    e = torch.where(small, eta, torch.zeros_like(eta))
    e2 = e * e
    taylor = 0.5 + e * (1.0 / 12 + e2 * (-1.0 / 720 + e2 * (1.0 / 30240 - e2 / 1209600)))
    return torch.where(small, taylor, exact)


def cb_icdf(eta: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The inverse CDF of the continuous Bernoulli at ``u`` in [0, 1].

    F(x) = (e^(eta x) - 1) / (e^eta - 1), so x = log1p(u expm1(eta)) / eta; for eta > 1 the same
    as 1 + log(u + (1 - u) e^-eta) / eta, which neither overflows nor cancels where u is small
    (a log-sum-exp, so that e^-eta may underflow), and for eta < -1 as
    log(1 - u + u e^eta) / eta, its mirror image; near eta = 0, x = u + eta u (1 - u) / 2.
    Clamped to [0, 1].
    """
    small = eta.abs() < _CB_SAMPLE_TAYLOR
    e = torch.where(small, torch.ones_like(eta), eta)  # no 0/0 in the unused branches
    near = torch.log1p(u * torch.expm1(e.clamp(-1.0, 1.0))) / e  # |eta| <= 1
    log_u, log_1mu = torch.log(u), torch.log1p(-u)  # -inf at u = 0 and 1: logaddexp copes
    high = 1.0 + torch.logaddexp(log_u, log_1mu - e) / e  # eta > 1
    low = torch.logaddexp(log_1mu, log_u + e) / e  # eta < -1
    exact = torch.where(eta > 1.0, high, torch.where(eta < -1.0, low, near))
    taylor = u + eta * u * (1.0 - u) / 2
    return torch.where(small, taylor, exact).clamp(0.0, 1.0)


class ContinuousBernoulli(Likelihood):
    """p(x|z) = prod CB(x; lambda), lambda = sigmoid(eta): the continuous Bernoulli of
    Loaiza-Ganem & Cunningham, "The continuous Bernoulli: fixing a pervasive error in
    variational autoencoders" (NeurIPS 2019), a normalised density on [0, 1]:

        log p(x | eta) = x log lambda + (1 - x) log(1 - lambda) + log C(lambda),

    the first two terms being the Bernoulli cross-entropy, the last its normaliser
    (``cb_log_norm``). The decoder gives the logits eta, one per pixel.
    """

    params_per_pixel = 1

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        eta = params[:, 0]  # (B, C, H, W)
        lp = -F.binary_cross_entropy_with_logits(eta, x, reduction="none") + cb_log_norm(eta)
        return lp.flatten(1).sum(dim=1)  # (B,)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The mean of the CB, 1/(1 - e^-eta) - 1/eta (not lambda = sigmoid(eta), the Bernoulli's)."""
        return cb_mean(params[:, 0])  # (B, C, H, W)

    def sample(self, params: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        eta = params[:, 0]  # (B, C, H, W)
        u = torch.rand(eta.shape, generator=generator, device=eta.device, dtype=eta.dtype)
        return cb_icdf(eta, u)


# -- discretized logistic ---------------------------------------------------------------------

_HALF_BIN = 1.0 / 510  # half the width of a bin of 8-bit levels scaled to [0, 1]
_LOG_255 = math.log(255.0)


class DiscretizedLogistic(Likelihood):
    """p(x|z) = prod P(x; mu, s): the logistic distribution discretized over the 256 levels
    k/255 of 8-bit images (Kingma et al. 2016, IAF; Salimans et al. 2017, PixelCNN++, here with
    one component rather than a mixture). Level k gets the logistic mass of
    [k/255 - 1/510, k/255 + 1/510], the first level extended to -inf and the last to +inf, so
    the 256 probabilities sum to one: these are probabilities, not densities, and the NLL in
    bits/dim compares with published figures.

    Parameters per pixel: the location mu and log s, clamped below at ``min_log_scale``
    (-7 in PixelCNN++). With a = (x + 1/510 - mu)/s and b = (x - 1/510 - mu)/s,

        log(sigmoid(a) - sigmoid(b)) = logsigmoid(a) + logsigmoid(-b) + log(1 - e^(b - a)),

    and logsigmoid(a) at k = 0, logsigmoid(-b) at k = 255.
    """

    params_per_pixel = 2

    def __init__(self, min_log_scale: float = -7.0) -> None:
        super().__init__()
        self.min_log_scale = float(min_log_scale)

    def _loc_log_scale(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return params[:, 0], params[:, 1].clamp(min=self.min_log_scale)  # (B, C, H, W) each

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        mu, log_s = self._loc_log_scale(params)
        inv_s = torch.exp(-log_s)
        centered = x - mu
        a = (centered + _HALF_BIN) * inv_s  # upper edge of the bin, standardised
        b = (centered - _HALF_BIN) * inv_s  # lower edge
        # log(1 - e^(b - a)) with b - a = -d, d = 1 / (255 s) > 0; for small d (large s, where
        # e^(-log s) may underflow) its series log d - d/2 + d^2/24, log d taken from log s.
        d = inv_s / 255.0
        tiny = d < 1e-3
        d_ok = torch.where(tiny, torch.ones_like(d), d)
        series = -log_s - _LOG_255 + d * (d / 24 - 0.5)
        log_width = torch.where(tiny, series, torch.log(-torch.expm1(-d_ok)))
        first = F.logsigmoid(a)  # k = 0: P(X < 1/510)
        last = F.logsigmoid(-b)  # k = 255: P(X > 1 - 1/510)
        inner = first + last + log_width  # every term finite: no NaN in the branches not taken
        lp = torch.where(x < 0.5 / 255, first, torch.where(x > 1.0 - 0.5 / 255, last, inner))
        return lp.flatten(1).sum(dim=1)  # (B,)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The location mu clamped to [0, 1] (what one displays; the mean of the discretized
        distribution differs from it by the mass piled on the edge levels)."""
        return params[:, 0].clamp(0.0, 1.0)

    def sample(self, params: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """A logistic draw mu + s (log u - log(1 - u)) rounded to the nearest level k/255 and
        clamped to [0, 1]: exactly a draw from the discretized distribution."""
        mu, log_s = self._loc_log_scale(params)
        u = torch.rand(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        u = u.clamp(min=torch.finfo(u.dtype).tiny)  # log 0 would be -inf (a draw of level 0)
        y = mu + log_s.exp() * (torch.log(u) - torch.log1p(-u))
        return (torch.round(y * 255.0) / 255.0).clamp(0.0, 1.0)
