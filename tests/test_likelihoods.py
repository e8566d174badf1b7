"""Numerical checks of every registered decoder likelihood: shapes, support, gradients,
normalisation, agreement with torch.distributions (or an independent float64 formula), stability
at extreme parameters, and samples against the mean.

Each check is looked up by likelihood name in a table; a built-in likelihood without an entry in
every table fails ``test_every_builtin_likelihood_is_checked`` (and the parametrized test that
misses it), so that a new likelihood cannot arrive untested. Third-party likelihoods get the
generic contract test and are skipped by the numerical ones.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import (
    AffineTransform,
    Bernoulli,
    ContinuousBernoulli,
    Normal,
    SigmoidTransform,
    TransformedDistribution,
    Uniform,
)

import vaecli.options
from vaecli import errors
from vaecli.builtin.dists import cb_icdf, cb_log_norm, cb_mean
from vaecli.plugins import registry
from vaecli.testing import likelihoods_for

pytestmark = pytest.mark.usefixtures("one_thread")

# Options each likelihood is tested with (the first is the default).
VARIANTS = {
    "bernoulli": [{}],
    "continuous-bernoulli": [{}],
    "gaussian": [{}, {"learn_sigma": "shared"}, {"learn_sigma": "pixel"}],
    "logistic": [{}, {"min_log_scale": -3.0}],
}
DATA_RANGE = {"bernoulli": "binary", "continuous-bernoulli": "unit", "gaussian": "real", "logistic": "8bit"}
LEVELS = torch.arange(256, dtype=torch.float64) / 255  # the 8-bit grid, scaled to [0, 1]


def _build(name: str, **opts):
    spec = registry().get("likelihood", name).spec
    return spec.build(vaecli.options.build(spec.options, opts, f"likelihood '{name}'"))


def _pointwise(lik, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """log p(x_i | params_i) of N single pixels: x (N,), params (N, P) -> (N,)."""
    return lik.log_prob(x.view(-1, 1, 1, 1), params.reshape(len(x), -1, 1, 1, 1))


def _simpson(y: torch.Tensor, h: float) -> torch.Tensor:
    """Simpson's rule along the last axis (an odd number of points, spacing h)."""
    assert y.shape[-1] % 2 == 1
    return h / 3 * (y[..., 0] + y[..., -1] + 4 * y[..., 1:-1:2].sum(-1) + 2 * y[..., 2:-1:2].sum(-1))


def _integral(lik, params: torch.Tensor, lo: float, hi: float, n: int) -> torch.Tensor:
    """The integral of exp(log_prob) over [lo, hi] for each row of params (K, P): (K,)."""
    grid = torch.linspace(lo, hi, n, dtype=torch.float64)
    k = params.shape[0]
    x = grid.repeat(k)  # (K * n,)
    p = params.to(torch.float64).repeat_interleave(n, dim=0)  # (K * n, P)
    return _simpson(_pointwise(lik, x, p).exp().view(k, n), (hi - lo) / (n - 1))


def _level_sums(lik, params: torch.Tensor) -> torch.Tensor:
    """The sum of exp(log_prob) over the 256 levels for each row of params (K, P): (K,)."""
    k = params.shape[0]
    x = LEVELS.to(params.dtype).repeat(k)
    p = params.repeat_interleave(256, dim=0)
    return _pointwise(lik, x, p).double().exp().view(k, 256).sum(1)


# -- bernoulli ---------------------------------------------------------------------------------


def normalised_bernoulli():
    lik = _build("bernoulli")
    logits = torch.tensor([-30.0, -3.0, -1e-4, 0.0, 0.7, 12.0, 30.0], dtype=torch.float64)
    p0 = _pointwise(lik, torch.zeros_like(logits), logits[:, None]).exp()
    p1 = _pointwise(lik, torch.ones_like(logits), logits[:, None]).exp()
    torch.testing.assert_close(p0 + p1, torch.ones_like(logits), rtol=0, atol=1e-12)


def reference_bernoulli():
    lik = _build("bernoulli")
    torch.manual_seed(0)
    params = 4 * torch.randn(5, 1, 2, 3, 3)
    x = torch.randint(0, 2, (5, 2, 3, 3)).float()
    ref = Bernoulli(logits=params[:, 0]).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(lik.log_prob(x, params), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lik.mean(params), Bernoulli(logits=params[:, 0]).mean)


def test_bernoulli_gradients_on_grey_targets():
    """Grey targets: values and both gradients as torch's binary cross-entropy gives them."""
    lik = _build("bernoulli")
    torch.manual_seed(1)
    params = (6 * torch.randn(4, 1, 1, 5, 5, dtype=torch.float64)).requires_grad_(True)
    x = torch.rand(4, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    ours = lik.log_prob(x, params)
    ref = -torch.nn.functional.binary_cross_entropy_with_logits(params[:, 0], x, reduction="none").flatten(1).sum(1)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    ours_grads = torch.autograd.grad((ours * weights).sum(), (params, x))
    ref_grads = torch.autograd.grad((ref * weights).sum(), (params, x))
    for a, b in zip(ours_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def extremes_bernoulli():
    lik = _build("bernoulli")
    logits = torch.tensor([-80.0, -80.0, 80.0, 80.0, 0.0])
    x = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0])
    params = logits[:, None].clone().requires_grad_(True)
    lp = _pointwise(lik, x, params)
    lp.sum().backward()
    torch.testing.assert_close(lp, torch.tensor([0.0, -80.0, -80.0, 0.0, -math.log(2)]), rtol=1e-6, atol=1e-6)
    assert torch.isfinite(params.grad).all()


def sample_mean_bernoulli():
    lik = _build("bernoulli")
    logits = torch.tensor([-3.0, -0.5, 0.0, 1.0, 4.0])
    params = logits.view(1, 1, 5, 1, 1).expand(20000, 1, 5, 1, 1)
    draws = lik.sample(params, generator=torch.Generator().manual_seed(1))
    _assert_sample_mean(draws, lik.mean(params[:1])[0])


# -- continuous Bernoulli ----------------------------------------------------------------------

CB_LOGITS = [-30.0, -5.0, -1e-3, 0.0, 1e-4, 0.3, 5.0, 30.0]


def _cb_log_norm_ref(eta: torch.Tensor) -> torch.Tensor:
    """log(eta / tanh(eta / 2)) in float64, directly (log 2 at 0); accurate for |eta| > 1e-6."""
    eta = eta.double()
    safe = torch.where(eta == 0, torch.ones_like(eta), eta)
    return torch.where(eta == 0, torch.full_like(eta, math.log(2)), torch.log(safe / torch.tanh(safe / 2)))


def _cb_mean_ref(eta: torch.Tensor) -> torch.Tensor:
    """1 / (1 - e^-eta) - 1 / eta in float64 (error ~1e-16/|eta|), and 1/2 + eta/12 - eta^3/720
    for |eta| < 1e-3 (error < 1e-19)."""
    eta = eta.double()
    small = eta.abs() < 1e-3
    safe = torch.where(small, torch.ones_like(eta), eta)
    return torch.where(small, 0.5 + eta / 12 - eta**3 / 720, -1 / torch.expm1(-safe) - 1 / safe)


def normalised_cb():
    lik = _build("continuous-bernoulli")
    logits = torch.tensor(CB_LOGITS, dtype=torch.float64)[:, None]
    total = _integral(lik, logits, 0.0, 1.0, 20001)
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-9)


def reference_cb():
    lik = _build("continuous-bernoulli")
    # torch.distributions in float64: its own Taylor region is |sigmoid(eta) - 1/2| < 1e-3
    # (|eta| < 4e-3), covered by the first values. Beyond |eta| ~ 30 it clamps the
    # probabilities (1 - sigmoid(40) rounds to eps) and is itself wrong, so there the
    # reference is the closed form in float64.
    eta = torch.tensor(
        [-20.0, -6.0, -1.0, -0.5, -0.3, -3e-3, -1e-3, -1e-5, 0.0, 1e-6, 2e-3, 5e-3, 0.2, 0.49, 0.51, 2.0, 9.0, 20.0],
        dtype=torch.float64,
    )
    x = torch.linspace(0, 1, 11, dtype=torch.float64)
    ee, xx = eta.repeat_interleave(len(x)), x.repeat(len(eta))
    torch_cb = ContinuousBernoulli(logits=ee)
    # float64: the module's own Taylor branch (|eta| < 0.5) is truncated at eta^6 (error < 1e-8)
    torch.testing.assert_close(_pointwise(lik, xx, ee[:, None]), torch_cb.log_prob(xx), rtol=0, atol=1e-8)
    torch.testing.assert_close(cb_mean(eta), ContinuousBernoulli(logits=eta).mean, rtol=0, atol=1e-8)
    # float32 against the same float64 numbers: a few float32 ulps
    lp32 = _pointwise(lik, xx.float(), ee.float()[:, None])
    torch.testing.assert_close(lp32.double(), torch_cb.log_prob(xx), rtol=0, atol=2e-6)
    torch.testing.assert_close(cb_mean(eta.float()).double(), ContinuousBernoulli(logits=eta).mean, rtol=0, atol=2e-7)
    # every logit up to 80, float32, against the closed forms in float64
    wide = torch.cat([torch.linspace(-80, 80, 1601), torch.logspace(-7, 0, 50), -torch.logspace(-7, 0, 50)])
    # (float32 eps is 1.2e-7: log C in [0.69, 4.4] within 3 eps relative, the mean within 2 eps)
    torch.testing.assert_close(cb_log_norm(wide).double(), _cb_log_norm_ref(wide), rtol=3.6e-7, atol=0)
    torch.testing.assert_close(cb_mean(wide).double(), _cb_mean_ref(wide), rtol=0, atol=2.4e-7)
    # and log p(x | eta) = eta x - log((e^eta - 1) / eta), another way to write the same density
    eta_m = torch.tensor([-12.0, -2.0, 0.7, 3.0, 12.0], dtype=torch.float64)
    ee, xx = eta_m.repeat_interleave(len(x)), x.repeat(len(eta_m))
    torch.testing.assert_close(
        _pointwise(lik, xx, ee[:, None]), ee * xx - torch.log(torch.expm1(ee) / ee), rtol=0, atol=1e-12
    )


def extremes_cb():
    lik = _build("continuous-bernoulli")
    eta = torch.tensor([-80.0, -80.0, -80.0, 80.0, 80.0, 80.0, 1e-30, -1e-30, 0.0, 0.5, -0.5])
    x = torch.tensor([0.0, 0.5, 1.0, 0.0, 0.5, 1.0, 0.0, 1.0, 0.3, 1.0, 1.0])
    params = eta[:, None].clone().requires_grad_(True)
    lp = _pointwise(lik, x, params)
    lp.sum().backward()
    assert torch.isfinite(lp).all() and torch.isfinite(params.grad).all()
    ref = eta.double() * x.double() - torch.nn.functional.softplus(eta.double()) + _cb_log_norm_ref(eta)
    torch.testing.assert_close(lp.double(), ref, rtol=1e-6, atol=1e-5)  # 80 - 80 + log 80 at x = 1
    # d log C / d eta = sigmoid(eta) - mean(eta): the gradient is right on both sides of the
    # Taylor threshold and at 0
    eta = torch.cat([torch.linspace(-80, 80, 321), torch.tensor([0.0, 1e-6, -0.4999, 0.4999, 0.5, 0.5001])])
    eta = eta.double().requires_grad_(True)
    cb_log_norm(eta).sum().backward()
    torch.testing.assert_close(eta.grad, torch.sigmoid(eta.detach()) - _cb_mean_ref(eta.detach()), rtol=0, atol=1e-9)
    eta32 = eta.detach().float().requires_grad_(True)
    cb_log_norm(eta32).sum().backward()
    torch.testing.assert_close(eta32.grad.double(), eta.grad, rtol=0, atol=3e-7)
    # the inverse CDF, float32, against the naive float64 formula log1p(u expm1(eta)) / eta
    eta = torch.tensor(
        [-100.0, -80.0, -30.0, -20.0, -1.5, -1.0, -0.7, -1e-5, 0.0, 1e-5, 0.2, 1.0, 1.5, 3.0, 20.0, 30.0, 80.0, 100.0]
    )
    u = torch.tensor([0.0, 1e-7, 1e-6, 0.1, 0.5, 0.9, 1 - 1e-6, 1 - 6e-8])
    ee, uu = eta.repeat_interleave(len(u)), u.repeat(len(eta))
    e64, u64 = ee.double(), uu.double()
    naive = torch.where(e64 == 0, u64, torch.log1p(u64 * torch.expm1(e64)) / e64)
    x = cb_icdf(ee, uu)
    assert torch.isfinite(x).all() and (x >= 0).all() and (x <= 1).all()
    torch.testing.assert_close(x.double(), naive, rtol=0, atol=3e-7)  # a few float32 ulps of 1
    assert torch.equal(cb_icdf(torch.zeros(3), torch.tensor([0.0, 0.25, 1.0])), torch.tensor([0.0, 0.25, 1.0]))


def sample_mean_cb():
    lik = _build("continuous-bernoulli")
    logits = torch.tensor([-30.0, -5.0, -0.3, 0.0, 1e-5, 0.3, 2.0, 5.0, 30.0, 90.0])
    params = logits.view(1, 1, -1, 1, 1).expand(20000, 1, len(logits), 1, 1)
    draws = lik.sample(params, generator=torch.Generator().manual_seed(2))
    _assert_sample_mean(draws, lik.mean(params[:1])[0])
    torch.testing.assert_close(lik.mean(params[:1])[0].flatten().double(), _cb_mean_ref(logits), rtol=0, atol=2e-7)


# -- gaussian ----------------------------------------------------------------------------------

# per option variant: parameters (K, P) and the sigma each means (defaults sigma=0.1, min_sigma=1e-3)
GAUSS_CASES = {
    "no": (torch.tensor([[0.3], [-2.0], [1.5]]), torch.tensor([0.1, 0.1, 0.1])),
    "shared": (torch.tensor([[0.3], [4.0]]), torch.tensor([0.101, 0.101])),
    "pixel": (
        torch.tensor([[0.3, -0.7], [0.5, 0.0], [-1.0, 2.3]]),
        torch.tensor([0.1 * math.exp(-0.7) + 1e-3, 0.101, 0.1 * math.exp(2.3) + 1e-3]),
    ),
}


def normalised_gaussian():
    for mode, (params, _) in GAUSS_CASES.items():
        lik = _build("gaussian", learn_sigma=mode).double()
        total = _integral(lik, params.double(), -15.0, 15.0, 60001)
        torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-9, msg=mode)


def reference_gaussian():
    for mode, (params, sigma) in GAUSS_CASES.items():
        lik = _build("gaussian", learn_sigma=mode)
        x = torch.linspace(-3, 3, 13)
        xx, pp = x.repeat(len(params)), params.repeat_interleave(len(x), 0)
        ref = Normal(pp[:, 0], sigma.repeat_interleave(len(x))).log_prob(xx)
        torch.testing.assert_close(_pointwise(lik, xx, pp), ref, rtol=1e-5, atol=1e-4, msg=mode)
        torch.testing.assert_close(lik.mean(params.view(len(params), -1, 1, 1, 1)).flatten(), params[:, 0])


def extremes_gaussian():
    lik = _build("gaussian", learn_sigma="pixel")
    params = torch.tensor([[0.0, -30.0], [0.0, 30.0], [1e4, 0.0], [-1e4, -80.0]]).requires_grad_(True)
    x = torch.tensor([1.0, 1.0, 0.0, 0.0])
    lp = _pointwise(lik, x, params)
    lp.sum().backward()
    assert torch.isfinite(lp).all() and torch.isfinite(params.grad).all()
    # sigma -> min_sigma (1e-3) as the raw output goes to -inf: a soft floor
    assert lp[0].item() == pytest.approx(
        Normal(0.0, 1e-3 + 0.1 * math.exp(-30)).log_prob(torch.tensor(1.0)).item(), rel=1e-5
    )


def sample_mean_gaussian():
    for mode, (params, sigma) in GAUSS_CASES.items():
        lik = _build("gaussian", learn_sigma=mode)
        p = params.t().reshape(1, -1, len(params), 1, 1).expand(20000, -1, len(params), 1, 1)
        draws = lik.sample(p, generator=torch.Generator().manual_seed(3))
        _assert_sample_mean(draws, lik.mean(p[:1])[0])
        torch.testing.assert_close(draws.std(0).flatten(), sigma, rtol=0.03, atol=0)


# -- discretized logistic ----------------------------------------------------------------------

# (mu, log-scale): inside and outside [0, 1], at the minimum scale and below it (clamped),
# scales much smaller and much larger than a level, and a huge one
LOGISTIC_PARAMS = [
    (0.5, -3.0),
    (0.0, -7.0),
    (1.0, -7.0),
    (0.3, -20.0),
    (0.77, -5.5),
    (-0.4, -2.0),
    (1.6, -1.0),
    (0.5, 0.0),
    (0.2, 3.0),
    (0.5, 8.0),
    (-3.0, 100.0),
    (40.0, -7.0),
]


def _logistic_ref(mu: float, log_s: float) -> torch.Tensor:
    """The 256 level probabilities in float64 from the logistic CDF (edges to -inf/+inf)."""
    s = math.exp(max(log_s, -7.0))
    logistic = TransformedDistribution(
        Uniform(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)),
        [SigmoidTransform().inv, AffineTransform(mu, s)],
        validate_args=False,
    )
    edges = torch.cat([LEVELS - 0.5 / 255, torch.tensor([1 + 0.5 / 255], dtype=torch.float64)])
    cdf = logistic.cdf(edges)
    cdf[0], cdf[-1] = 0.0, 1.0
    return cdf[1:] - cdf[:-1]


def normalised_logistic():
    params = torch.tensor(LOGISTIC_PARAMS)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        for opts in VARIANTS["logistic"]:
            total = _level_sums(_build("logistic", **opts), params.to(dtype))
            torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=tol, msg=f"{dtype} {opts}")


def reference_logistic():
    lik = _build("logistic")
    for mu, log_s in LOGISTIC_PARAMS:
        if log_s > 50:
            continue  # exp(-100) is beyond what the reference's affine map can resolve
        ref = _logistic_ref(mu, log_s)
        for dtype, ptol, ltol in ((torch.float64, 1e-12, 1e-6), (torch.float32, 2e-6, 1e-3)):
            params = torch.tensor([mu, log_s], dtype=dtype).expand(256, 2)
            lp = _pointwise(lik, LEVELS.to(dtype), params).double()
            msg = f"mu={mu} log_s={log_s} {dtype}"
            torch.testing.assert_close(lp.exp(), ref, rtol=0, atol=ptol, msg=msg)
            # log-probabilities where the reference's CDF differences are themselves accurate
            ok = ref > 1e-6
            torch.testing.assert_close(lp[ok], ref[ok].log(), rtol=0, atol=ltol, msg=msg)
    # the huge scale: each inner level gets about 1 / (4 * 255 s), the edges half each
    lp = _pointwise(lik, LEVELS.float(), torch.tensor([0.5, 100.0]).expand(256, 2))
    assert torch.isfinite(lp).all()
    assert lp[128].item() == pytest.approx(-100.0 - math.log(4 * 255), abs=1e-4)
    assert lp[0].item() == pytest.approx(-math.log(2), abs=1e-6)
    # mean: the location, clamped to [0, 1]
    params = torch.tensor([[-0.5, 0.0], [0.25, 0.0], [1.5, 0.0]]).view(3, 2, 1, 1, 1)
    torch.testing.assert_close(lik.mean(params).flatten(), torch.tensor([0.0, 0.25, 1.0]))
    # min_log_scale clamps: anything below it means it
    lik4 = _build("logistic", min_log_scale=-4.0)
    x = torch.tensor([0.0, 0.5, 0.51, 1.0])
    a = _pointwise(lik4, x, torch.tensor([0.5, -30.0]).expand(4, 2))
    b = _pointwise(lik4, x, torch.tensor([0.5, -4.0]).expand(4, 2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def extremes_logistic():
    lik = _build("logistic")
    # x exactly 0 and 1 (the edge levels), tiny scales, locations far outside [0, 1]
    mus = torch.tensor([-1e3, -1.0, 0.0, 1 / 255, 0.5, 1.0, 2.0, 1e3])
    log_s = torch.tensor([-7.0, -30.0, 0.0, 20.0])
    mm, ss = mus.repeat_interleave(len(log_s)), log_s.repeat(len(mus))
    for value in (0.0, 1.0, 1 / 255, 254 / 255):
        params = torch.stack([mm, ss], 1).requires_grad_(True)
        lp = _pointwise(lik, torch.full_like(mm, value), params)
        lp.sum().backward()
        assert torch.isfinite(lp).all() and torch.isfinite(params.grad).all(), value
        assert (lp <= 1e-6).all()
    # the edge levels take all the mass beyond them: x = 0 with mu = -1 (and x = 1 with mu = 2)
    # at the smallest scale is certain; with mu = 0, P(x = 0) = sigmoid(1 / (510 s)), s = e^-7
    lp = _pointwise(
        lik, torch.tensor([0.0, 1.0, 0.0, 1.0]), torch.tensor([[-1.0, -7.0], [2.0, -7.0], [0.0, -7.0], [1.0, -9.0]])
    )
    edge = -math.log1p(math.exp(-math.exp(7) / 510))
    torch.testing.assert_close(lp, torch.tensor([0.0, 0.0, edge, edge]), rtol=0, atol=1e-6)


def sample_mean_logistic():
    lik = _build("logistic")
    cases = torch.tensor([[0.5, -3.0], [0.3, -4.0], [0.71, -2.5], [0.5, -7.0], [0.02, -5.0]])
    n = 20000
    params = cases.t().reshape(1, 2, len(cases), 1, 1).expand(n, 2, len(cases), 1, 1)
    draws = lik.sample(params, generator=torch.Generator().manual_seed(4))
    # mu well inside [0, 1] (the edges hold no mass): the sample mean is mu
    _assert_sample_mean(draws[:, :4], lik.mean(params[:1])[0, :4])
    # and the levels drawn have the probabilities of the reference, edge case included: the
    # Kolmogorov-Smirnov distance of the empirical CDF (critical value 1.95/sqrt(n) = 0.014 at
    # the 0.1 % level for a continuous law; a discrete one only makes it smaller)
    for i, (mu, log_s) in enumerate(cases.tolist()):
        counts = torch.bincount((draws[:, i].flatten() * 255).round().long(), minlength=256).double()
        ks = (counts.cumsum(0) / n - _logistic_ref(mu, log_s).cumsum(0)).abs().max().item()
        assert ks < 1.95 / math.sqrt(n), (mu, log_s, ks)


def _assert_sample_mean(draws: torch.Tensor, mean: torch.Tensor) -> None:
    """The mean over the first axis of ``draws`` matches ``mean`` within 5 standard errors."""
    n = draws.shape[0]
    tol = 5 * draws.double().std(0) / math.sqrt(n) + 1e-6
    err = (draws.double().mean(0) - mean.double()).abs()
    assert (err <= tol).all(), f"sample mean off by {err.flatten().tolist()} (tolerance {tol.flatten().tolist()})"


# -- the tables and the parametrized tests ----------------------------------------------------

NORMALISED = {
    "bernoulli": normalised_bernoulli,
    "continuous-bernoulli": normalised_cb,
    "gaussian": normalised_gaussian,
    "logistic": normalised_logistic,
}
REFERENCE = {
    "bernoulli": reference_bernoulli,
    "continuous-bernoulli": reference_cb,
    "gaussian": reference_gaussian,
    "logistic": reference_logistic,
}
EXTREMES = {
    "bernoulli": extremes_bernoulli,
    "continuous-bernoulli": extremes_cb,
    "gaussian": extremes_gaussian,
    "logistic": extremes_logistic,
}
SAMPLE_MEAN = {
    "bernoulli": sample_mean_bernoulli,
    "continuous-bernoulli": sample_mean_cb,
    "gaussian": sample_mean_gaussian,
    "logistic": sample_mean_logistic,
}
TABLES = {
    "variants": VARIANTS,
    "data range": DATA_RANGE,
    "normalisation": NORMALISED,
    "reference": REFERENCE,
    "extremes": EXTREMES,
    "sample mean": SAMPLE_MEAN,
}


def _names() -> list[str]:
    return likelihoods_for("image")  # the likelihoods of rows: tests/test_rows.py


def _builtin(name: str) -> bool:
    return registry().get("likelihood", name).plugin.builtin


def _variants() -> list:
    return [
        pytest.param(name, opts, id="-".join([name, *(f"{k}={v}" for k, v in opts.items())]))
        for name in _names()
        for opts in VARIANTS.get(name, [{}])
    ]


def _check(table: dict, what: str, name: str):
    if name not in table:
        if _builtin(name):
            pytest.fail(f"built-in likelihood '{name}' has no {what} check in tests/test_likelihoods.py")
        pytest.skip(f"third-party likelihood '{name}': no {what} check here")
    return table[name]


def test_every_builtin_likelihood_is_checked():
    builtins = {n for n in _names() if _builtin(n)}
    assert {"bernoulli", "continuous-bernoulli", "gaussian", "logistic"} <= builtins
    for what, table in TABLES.items():
        assert set(table) == builtins, f"{what}: checks for {sorted(table)}, built-ins {sorted(builtins)}"


@pytest.mark.parametrize("name", _names())
def test_data_range_is_declared(name):
    from vaecli.hookspecs import DATA_RANGES

    spec = registry().get("likelihood", name).spec
    assert spec.data_range in DATA_RANGES
    if _builtin(name):
        assert spec.data_range == _check(DATA_RANGE, "data range", name)


def _in_support(data_range: str, s: torch.Tensor) -> bool:
    if data_range == "binary":
        return set(s.unique().tolist()) <= {0.0, 1.0}
    if data_range == "unit":
        return bool(((s >= 0) & (s <= 1)).all())
    if data_range == "8bit":
        return bool(((s >= 0) & (s <= 1)).all()) and torch.equal(s, torch.round(s * 255) / 255)
    return bool(torch.isfinite(s).all())


@pytest.mark.parametrize("name,opts", _variants())
def test_shapes_support_and_gradients(name, opts):
    torch.manual_seed(0)
    spec = registry().get("likelihood", name).spec
    lik = _build(name, **opts)
    p = lik.params_per_pixel
    b, c, h, w = 3, 2, 4, 5
    params = (2 * torch.randn(b, p, c, h, w)).requires_grad_(True)
    if spec.data_range == "binary":
        x = torch.randint(0, 2, (b, c, h, w)).float()
    else:
        x = torch.randint(0, 256, (b, c, h, w)).float() / 255  # what every dataset delivers
    lp = lik.log_prob(x, params)
    assert lp.shape == (b,) and lp.dtype == torch.float32 and torch.isfinite(lp).all()
    lp.sum().backward()
    assert torch.isfinite(params.grad).all()
    assert all(params.grad[:, i].abs().sum() > 0 for i in range(p)), "a parameter gets no gradient"
    learned = [q for q in lik.parameters() if q.requires_grad]
    assert all(q.grad is not None and torch.isfinite(q.grad).all() for q in learned)
    with torch.no_grad():
        mean = lik.mean(params)
        draw = lik.sample(params, generator=torch.Generator().manual_seed(5))
        again = lik.sample(params, generator=torch.Generator().manual_seed(5))
    assert mean.shape == draw.shape == (b, c, h, w)
    assert torch.isfinite(mean).all()
    assert torch.equal(draw, again), "sample ignores its generator"
    assert _in_support(spec.data_range, draw), f"samples outside the {spec.data_range} support"
    if spec.data_range in ("binary", "unit", "8bit"):
        assert _in_support("unit", mean)


@pytest.mark.parametrize("name", _names())
def test_normalised(name):
    _check(NORMALISED, "normalisation", name)()


@pytest.mark.parametrize("name", _names())
def test_matches_reference(name):
    _check(REFERENCE, "reference", name)()


@pytest.mark.parametrize("name", _names())
def test_stable_at_extremes(name):
    _check(EXTREMES, "extremes", name)()


@pytest.mark.parametrize("name", _names())
def test_sample_mean_matches_mean(name):
    torch.manual_seed(0)
    _check(SAMPLE_MEAN, "sample mean", name)()


# -- options and registration ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "x"])
def test_logistic_min_log_scale_must_be_finite(value):
    spec = registry().get("likelihood", "logistic").spec
    with pytest.raises(errors.UsageError, match="min_log_scale"):
        vaecli.options.build(spec.options, {"min_log_scale": value}, "likelihood 'logistic'")


def test_logistic_options_reach_the_module():
    lik = _build("logistic", min_log_scale="-4.5")
    assert lik.min_log_scale == -4.5 and lik.params_per_pixel == 2
    assert _build("continuous-bernoulli").params_per_pixel == 1
    assert "bits/dim" in registry().get("likelihood", "logistic").spec.help
