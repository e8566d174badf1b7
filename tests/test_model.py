"""The mathematics: KL, log-likelihoods and the ELBO against torch.distributions, and every
registered architecture x likelihood through forward and backward."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from vaecli.builtin.dists import Bernoulli as BernoulliLik
from vaecli.builtin.dists import Gaussian as GaussianLik
from vaecli.errors import UsageError
from vaecli.factory import create_model as from_config
from vaecli.model import kl_standard_normal
from vaecli.plugins import registry
from vaecli.testing import likelihoods_for


def _model(arch="mlp", likelihood="bernoulli", shape=(1, 8, 8), latent=3, kind="vae", lik_options=None):
    return from_config(
        {
            "kind": kind,
            "latent_dim": latent,
            "input_shape": list(shape),
            "architecture": {"name": arch, "options": {}},
            "likelihood": {"name": likelihood, "options": lik_options or {}},
        }
    )


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(16, 5, generator=g) * 2
    logvar = torch.randn(16, 5, generator=g)
    ours = kl_standard_normal(mean, logvar)
    ref = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    assert torch.all(ours > 0)
    assert kl_standard_normal(torch.zeros(1, 5), torch.zeros(1, 5)).item() == 0.0


def test_bernoulli_log_prob_matches_torch_on_binary_and_grey_pixels():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 1, 1, 6, 6, generator=g) * 3
    binary = (torch.rand(4, 1, 6, 6, generator=g) > 0.5).float()
    lik = BernoulliLik()
    ref = Bernoulli(logits=logits[:, 0]).log_prob(binary).flatten(1).sum(1)
    torch.testing.assert_close(lik.log_prob(binary, logits), ref)
    grey = torch.rand(4, 1, 6, 6, generator=g)  # the classic MNIST example uses grey values
    p = torch.sigmoid(logits[:, 0])
    manual = (grey * p.log() + (1 - grey) * (1 - p).log()).flatten(1).sum(1)
    torch.testing.assert_close(lik.log_prob(grey, logits), manual, rtol=1e-5, atol=1e-4)


def test_bernoulli_log_prob_is_stable_for_extreme_logits():
    logits = torch.tensor([-200.0, 200.0]).view(1, 1, 1, 1, 2)
    x = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    lp = BernoulliLik().log_prob(x, logits)
    assert torch.isfinite(lp).all()
    assert lp.item() == pytest.approx(-400.0)


@pytest.mark.parametrize("mode", ["no", "shared", "pixel"])
def test_gaussian_log_prob_matches_torch(mode):
    g = torch.Generator().manual_seed(2)
    lik = GaussianLik(sigma=0.3, learn_sigma=mode, min_sigma=1e-3)
    params = torch.randn(3, lik.params_per_pixel, 2, 4, 4, generator=g)
    x = torch.randn(3, 2, 4, 4, generator=g)
    if mode == "pixel":
        sigma = (params[:, 1] + math.log(0.3)).exp() + 1e-3
    elif mode == "shared":
        sigma = torch.full_like(x, 0.3 + 1e-3)
    else:
        sigma = torch.full_like(x, 0.3)
    ref = Normal(params[:, 0], sigma).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(lik.log_prob(x, params), ref, rtol=1e-5, atol=1e-4)
    assert lik.params_per_pixel == (2 if mode == "pixel" else 1)
    assert any(p.requires_grad for p in lik.parameters()) == (mode == "shared")


def test_gaussian_learned_sigma_has_a_soft_floor_that_keeps_its_gradient():
    lik = GaussianLik(sigma=0.3, learn_sigma="pixel", min_sigma=0.01)
    params = torch.zeros(1, 2, 1, 1, 1)
    params[:, 1] = -30.0  # asks for sigma ~ 0
    params.requires_grad_(True)
    x = torch.full((1, 1, 1, 1), 0.5)
    lp = lik.log_prob(x, params)
    assert lp.item() == pytest.approx(Normal(0.0, 0.01).log_prob(torch.tensor(0.5)).item(), rel=1e-4)
    lp.backward()
    assert params.grad[0, 1].abs().item() > 0  # the sigma output still learns


def test_likelihood_means_and_samples():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 1, 1, 5, 5, generator=g)
    b = BernoulliLik()
    torch.testing.assert_close(b.mean(logits), torch.sigmoid(logits[:, 0]))
    draw = b.sample(logits, generator=g)
    assert set(draw.unique().tolist()) <= {0.0, 1.0}
    gauss = GaussianLik(sigma=0.5, learn_sigma="no", min_sigma=1e-3)
    mu = torch.full((4000, 1, 1, 1, 1), 2.0)
    s = gauss.sample(mu, generator=g)
    assert s.mean().item() == pytest.approx(2.0, abs=0.05)
    assert s.std().item() == pytest.approx(0.5, abs=0.05)


def test_negative_elbo_matches_an_independent_computation():
    torch.manual_seed(0)
    model = _model()
    x = torch.rand(5, 1, 8, 8)
    terms = model(x, generator=torch.Generator().manual_seed(7))
    # The same with torch.distributions and the same noise:
    mean, logvar = model.encoder(x)
    std = (0.5 * logvar).exp()
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    logits = model.decoder(mean + std * eps)
    p = torch.sigmoid(logits)
    recon = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    kl = kl_divergence(Normal(mean, std), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(terms.recon, recon, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(terms.kl, kl, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(terms.objective, (recon + kl).mean(), rtol=1e-4, atol=1e-3)
    beta_terms = model(x, beta=4.0, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(beta_terms.objective, (recon + 4.0 * kl).mean(), rtol=1e-4, atol=1e-3)


def test_plain_autoencoder_has_no_kl_and_is_deterministic():
    torch.manual_seed(0)
    model = _model(kind="ae")
    x = torch.rand(4, 1, 8, 8)
    a, b = model(x), model(x)
    assert list(a.terms) == ["recon"] and torch.equal(a.objective, a.recon.mean())
    torch.testing.assert_close(a.recon, b.recon)


def _grid():
    reg = registry()
    return [(a, lik) for a in reg.names("architecture") for lik in likelihoods_for("image")]


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8)])
@pytest.mark.parametrize("arch,likelihood", _grid())
def test_every_architecture_and_likelihood_forward_backward(arch, likelihood, shape):
    torch.manual_seed(0)
    lik_options = {"learn_sigma": "pixel"} if likelihood == "gaussian" else None
    model = _model(arch, likelihood, shape, latent=4, lik_options=lik_options)
    x = torch.rand(6, *shape)
    terms = model(x)
    assert terms.recon.shape == (6,) and terms.kl.shape == (6,)
    assert torch.isfinite(terms.objective)
    terms.objective.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.sample(5).shape == (5, *shape)
    mean, logvar = model.encode(x)
    assert mean.shape == logvar.shape == (6, 4)
    assert model.decode(mean).shape == (6, *shape)
    assert model.reconstruct((x * 255).to(torch.uint8)).shape == (6, *shape)


def test_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = _model()
    x = (torch.rand(32, 1, 8, 8) > 0.7).float()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    first = model(x, generator=gen).objective.item()
    for _ in range(60):
        loss = model(x).objective
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = model(x, generator=gen).objective.item()
    assert last < 0.8 * first, (first, last)


def test_decode_checks_latent_shape():
    model = _model(latent=3)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        model.decode(torch.zeros(2, 4))


def test_an_unknown_family_is_one_error_listing_the_known():
    with pytest.raises(UsageError, match="unknown model 'gan'; known models: aae, ae, "):
        _model(kind="gan")
