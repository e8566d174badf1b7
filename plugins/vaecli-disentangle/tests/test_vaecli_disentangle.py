"""Tests of vaecli-disentangle: the entry point, the total-correlation estimate against cases
whose answer is known, and both families through vaecli's family contract (train, exact
resume, every command)."""

from __future__ import annotations

import math

import pytest
import torch
from vaecli_disentangle.families import dip_penalty, total_correlation

from vaecli import testing
from vaecli.plugins import registry


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


def test_the_entry_point_registers_the_families():
    reg = registry()
    for name in ("btcvae", "factorvae", "annealedvae", "dipvae"):
        part = reg.get("model", name)
        assert part.plugin.distribution == "vaecli-disentangle" and part.spec.help


def _codes(correlated: bool, n: int = 3000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(n, 2, generator=gen)
    if correlated:
        mean[:, 1] = mean[:, 0]
    logvar = torch.full((n, 2), math.log(0.05**2))
    z = mean + 0.05 * torch.randn(n, 2, generator=gen)
    return z, mean, logvar


def test_total_correlation_is_near_zero_for_independent_codes_and_large_for_copies():
    """With the batch as the whole data set (N = B) the estimate is the aggregate posterior's.
    Independent dimensions: TC ~ 0. A copied dimension: TC ~ the entropy a second
    independent dimension would add, log(sigma_prior / sigma_post) + 1/2 ~ 3 nats."""
    z, mean, logvar = _codes(False)
    assert abs(total_correlation(z, mean, logvar, len(z)).mean().item()) < 0.2
    z, mean, logvar = _codes(True)
    assert 2.0 < total_correlation(z, mean, logvar, len(z)).mean().item() < 4.0


def test_beta_one_is_the_vae_objective():
    section = {
        "kind": "btcvae",
        "family": {"options": {"beta": 1.0}},
        "latent_dim": 3,
        "input_shape": [1, 4, 4],
        "architecture": {"name": "mlp", "options": {"hidden": [8]}},
        "likelihood": {"name": "bernoulli", "options": {}},
    }
    from vaecli.factory import create_model

    torch.manual_seed(0)
    model = create_model(section)
    x = torch.rand(5, 1, 4, 4).round()
    loss = model(x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss.objective, (loss.recon + loss.kl).mean())


@pytest.mark.parametrize("family, options", [("btcvae", {"beta": 4}), ("factorvae", {"hidden": 16})])
def test_family_contract(family, options):
    model = testing.check_family(family, options)
    assert model.kind == family and set(model.TERMS) >= {"recon", "kl", "tc"}


@pytest.mark.parametrize(
    "family, options",
    [("annealedvae", {"iterations": 3}), ("dipvae", {"kind": "i"}), ("dipvae", {"kind": "ii"})],
)
def test_new_family_contract(family, options):
    model = testing.check_family(family, options)
    assert model.kind == family


def test_dip_penalty_is_zero_at_the_identity_and_counts_each_part():
    mean = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])  # covariance I
    logvar = torch.full((4, 2), -30.0)
    assert dip_penalty(mean, logvar, "i", 10.0, 100.0).item() == pytest.approx(0.0, abs=1e-6)
    # DIP-II adds E[sigma^2] = 1 to the diagonal: (2 - 1)^2 per dimension, weighted by lambda_d
    assert dip_penalty(mean, torch.zeros(4, 2), "ii", 10.0, 3.0).item() == pytest.approx(2 * 3.0)
    copied = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])  # covariance [[1, 1], [1, 1]]
    assert dip_penalty(copied, logvar, "i", 10.0, 100.0).item() == pytest.approx(10.0 * 2)


def test_capacity_rises_to_c_max_and_resumes_with_the_model():
    from vaecli.factory import create_model

    section = {
        "kind": "annealedvae",
        "family": {"options": {"c_max": 4.0, "iterations": 2, "gamma": 1.0}},
        "latent_dim": 2,
        "input_shape": [1, 2, 2],
        "architecture": {"name": "mlp", "options": {"hidden": [4]}},
        "likelihood": {"name": "bernoulli", "options": {}},
    }
    model = create_model(section).train()
    x = torch.ones(3, 1, 2, 2)
    seen = [model(x, generator=torch.Generator().manual_seed(0)).terms["capacity"][0].item() for _ in range(4)]
    assert seen == [0.0, 2.0, 4.0, 4.0]
    assert int(model.state_dict()["steps"]) == 4  # in the checkpoint with the weights


@pytest.mark.parametrize("name", [r[0] for r in __import__("vaecli_disentangle").RECIPES])
def test_each_dsprites_recipe_builds_its_model(name):
    """The recipe's settings are valid: its model section builds, on dSprites' 64x64 shape."""
    from vaecli import recipes
    from vaecli.factory import create_model, model_section

    config = recipes.config(name)
    assert config.dataset == "dsprites" and config.arch == "conv" and config.latent_dim == 10
    section = model_section(config)
    section["input_shape"] = [1, 64, 64]
    model = create_model(section)
    assert model.kind == config.model
    assert model(torch.rand(2, 1, 64, 64).round(), generator=torch.Generator().manual_seed(0)).objective.isfinite()
