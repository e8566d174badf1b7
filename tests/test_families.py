"""Every registered model family, through the same door: it trains (its loss falls), resumes
bit for bit, and samples, encodes, decodes, reconstructs, interpolates, plots and evaluates
through the normal commands; a family with a likelihood gives a bound on log p(x) that agrees
with log p(x) integrated on a grid. Parametrized over the registry, so a new family is tested
by registering it."""

from __future__ import annotations

import math

import pytest
import torch

import vaecli
from vaecli import factory, testing
from vaecli.errors import UsageError
from vaecli.model import VAE, log_normal
from vaecli.plugins import registry
from vaecli.training.memory import batch_need, weights_need

FAMILIES = registry().names("model")
# small options where the default is sized for MNIST
SMALL_OPTIONS = {
    "vamp": {"components": 8},
    "vae2": {"z1": 4, "hidden": 8},
    "aae": {"hidden": 16},
    "vaegan": {"hidden": 16},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_at_least_sixteen_families_each_with_a_help_line():
    assert len(FAMILIES) >= 16, FAMILIES
    for name in FAMILIES:
        spec = registry().get("model", name).spec
        assert spec.help and "\n" not in spec.help and len(spec.help) < 110, name
        assert factory.family_class(spec).TERMS, name


@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_resumes_exactly_and_works_in_every_command(family):
    model = testing.check_family(family, SMALL_OPTIONS.get(family))
    if not model.HAS_LIKELIHOOD:
        text = testing.invoke("evaluate", "resumed.safetensors", "shapes:test").stdout
        assert "no likelihood of x" in text


def _grid_log_px(model, x: torch.Tensor, extent: float = 7.0, steps: int = 801) -> torch.Tensor:
    """log p(x) = log sum_z p(x|z) p(z) dz on a grid over a 1-dimensional latent space."""
    z = torch.linspace(-extent, extent, steps).unsqueeze(1)
    with torch.no_grad():
        log_joint = torch.stack([model.log_px(xi.expand(steps, *xi.shape), z) for xi in x])  # (B, steps)
        log_joint = log_joint + model.log_prior(z)
    return torch.logsumexp(log_joint, dim=1) + math.log(2 * extent / (steps - 1))


LIKELIHOOD_FAMILIES = [
    f
    for f in FAMILIES
    if factory.family_class(registry().get("model", f).spec).HAS_LIKELIHOOD and f not in ("cvae", "vae2")
]


@pytest.mark.parametrize("family", LIKELIHOOD_FAMILIES)
def test_the_importance_sampled_bound_agrees_with_log_px_on_a_grid(family):
    """With the family's log_weights, (1/k) sum w_i is an unbiased estimate of p(x): at large k
    its log matches log p(x) integrated numerically (a 1-d latent space), and the bound is
    below it. A wrong log q (a flow's log-determinant, a Hamiltonian weight) shows here."""
    options = {"vamp": {"components": 3}}.get(family, {})
    section = {
        "kind": family,
        "family": {"options": options},
        "latent_dim": 1,
        "input_shape": [1, 2, 2],
        "architecture": {"name": "mlp", "options": {"hidden": [8]}},
        "likelihood": {"name": "bernoulli", "options": {}},
    }
    torch.manual_seed(3)
    model = factory.create_model(section).eval()
    x = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1.0]]).view(3, 1, 2, 2)
    exact = _grid_log_px(model, x)
    from vaecli.evaluation import importance_sampled

    gen = torch.Generator().manual_seed(0)
    bound, _, elbo = importance_sampled(model, x, 50000, gen, chunk=10000)
    assert torch.all(elbo.float() <= exact + 1e-3), (elbo, exact)
    torch.testing.assert_close(bound.float(), exact, atol=0.02, rtol=0)


def test_the_two_layer_bound_agrees_with_log_px_on_a_grid():
    """vae2: p(x) = integral of p(x|z1) p(z1|z2) p(z2) over a 2-d grid (z1 and z2 one number each)."""
    section = {
        "kind": "vae2",
        "family": {"options": {"z1": 1, "hidden": [4]}},
        "latent_dim": 1,
        "input_shape": [1, 2, 2],
        "architecture": {"name": "mlp", "options": {"hidden": [8]}},
        "likelihood": {"name": "bernoulli", "options": {}},
    }
    torch.manual_seed(5)
    model = factory.create_model(section).eval()
    x = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1.0]]).view(2, 1, 2, 2)
    steps, extent = 301, 7.0
    axis = torch.linspace(-extent, extent, steps)
    z1, z2 = (g.reshape(-1, 1) for g in torch.meshgrid(axis, axis, indexing="ij"))
    with torch.no_grad():
        params = VAE.likelihood_params(model, z1)  # p(x|z1)
        log_p = model.log_prior(z2) + log_normal(z1, *model._p1(z2))
        exact = torch.stack(
            [torch.logsumexp(model.likelihood.log_prob(xi.expand(len(z1), 1, 2, 2), params) + log_p, 0) for xi in x]
        )
    exact = exact + 2 * math.log(2 * extent / (steps - 1))
    from vaecli.evaluation import importance_sampled

    bound, _, _ = importance_sampled(model, x, 50000, torch.Generator().manual_seed(0), chunk=10000)
    torch.testing.assert_close(bound.float(), exact, atol=0.02, rtol=0)


def test_a_family_with_parameter_groups_steps_each_group_on_its_own_objective():
    """aae: the discriminator's gradient comes from its objective only, the model's from its."""
    from vaecli.training.optim import backward, parameter_groups

    torch.manual_seed(0)
    section = {
        "kind": "aae",
        "family": {"options": {"hidden": [8]}},
        "latent_dim": 2,
        "input_shape": [1, 4, 4],
        "architecture": {"name": "mlp", "options": {"hidden": [8]}},
        "likelihood": {"name": "bernoulli", "options": {}},
    }
    model = factory.create_model(section)
    groups = parameter_groups(model, distributed=False)
    assert [g["name"] for g in groups] == ["model", "discriminator"]
    x = torch.rand(6, 1, 4, 4).round()
    loss = model(x, generator=torch.Generator().manual_seed(1))

    class Plain:
        def backward(self, value, **kwargs):
            value.backward(**kwargs)

    backward(Plain(), loss, groups)
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, params in (("model", groups[0]["params"]), ("discriminator", groups[1]["params"])):
        again = model(x, generator=torch.Generator().manual_seed(1)).objectives[name]
        expected = torch.autograd.grad(again, params)
        named = [n for n, p in model.named_parameters() if any(p is q for q in params)]
        for n, g in zip(named, expected):
            torch.testing.assert_close(got[n], g, msg=f"{name}: {n}")
    with pytest.raises(vaecli.VaeError, match="train in one process"):
        parameter_groups(model, distributed=True)


def test_vae_info_says_each_familys_objective(tiny_ckpt):
    section = factory.model_section(vaecli.TrainConfig(model="miwae"))
    assert section["family"]["objective"].startswith("MIWAE")
    assert vaecli.metadata(tiny_ckpt)["model"]["family"]["objective"] == "ELBO"


@pytest.mark.parametrize("family", ["iwae", "miwae", "ciwae", "vamp"])
def test_decoding_samples_in_chunks_gives_the_same_loss_and_gradients(family):
    """With a bound on the rows a step may keep (``--max-memory``), the samples are decoded a
    chunk at a time and recomputed in backward: the same objective and gradients, the same
    noise, and the chunks really taken (the decoder sees at most the bound's rows)."""
    from vaecli.model import Step

    options = {"iwae": {"k": 7}, "miwae": {"m": 2, "k": 3}, "ciwae": {"k": 5, "beta": 0.3}, "vamp": {"components": 2}}
    section = {
        "kind": family,
        "family": {"options": options[family]},
        "latent_dim": 2,
        "input_shape": [1, 4, 4],
        "architecture": {"name": "mlp", "options": {"hidden": [8]}},
        "likelihood": {"name": "bernoulli", "options": {}},
    }
    torch.manual_seed(0)
    model = factory.create_model(section)
    x = torch.rand(5, 1, 4, 4).round()
    seen = []
    model.decoder.register_forward_hook(lambda module, args, out: seen.append(out.shape[0]))

    def objective_and_grads(rows):
        model.sample_rows = rows
        model.zero_grad()
        seen.clear()
        step = Step(1.0, 0.0, 4 if family == "vamp" else 1, torch.Generator().manual_seed(1))
        loss = model.loss(x, step)
        loss.objective.backward()
        return loss.objective.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    whole, whole_grads = objective_and_grads(None)
    assert max(seen) > 10
    chunked, chunked_grads = objective_and_grads(10)  # 5 examples: 2 samples a chunk
    assert max(seen) <= 10
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    assert len(chunked_grads) == len(whole_grads)
    for a, b in zip(chunked_grads, whole_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in whole_grads)


def test_train_with_a_memory_bound_matches_the_unbounded_run(tmp_path):
    """`vae train --max-memory` (here so small that every sample is decoded alone) trains the
    same model as without it; a bound below the model and its batch is refused before training."""
    common = dict(
        dataset="shapes",
        dataset_options={"n_train": 64, "n_test": 32, "size": 8},
        arch_options={"hidden": (16,)},
        latent_dim=2,
        model="iwae",
        model_options={"k": 4},
        epochs=2,
        batch_size=32,
        device="cpu",
        precision="fp32",
    )
    free = vaecli.train(**common, out=str(tmp_path / "free.safetensors"))
    weights = weights_need(vaecli.metadata(free.path)["model"])
    batch, row = batch_need(vaecli.load(free.path), common["batch_size"])
    just_one_row = (weights + batch + 1.5 * row) / 2**30  # the model, its batch and one decoded row
    with pytest.raises(UsageError, match="training this model needs about .* or set --max-memory"):
        vaecli.train(**common, max_memory=(weights + batch) / 2**30, out=str(tmp_path / "none.safetensors"))
    bound = vaecli.train(**common, max_memory=just_one_row, out=str(tmp_path / "bound.safetensors"))
    a, b = vaecli.metadata(free.path)["metrics"], vaecli.metadata(bound.path)["metrics"]
    for key in ("train_objective", "test_nelbo"):
        assert a[-1][key] == pytest.approx(b[-1][key], rel=1e-5, abs=1e-4)
    assert a[-1]["train_objective"] < a[0]["train_objective"]


_PEAK = r"""
import resource, sys, torch
from vaecli import factory
from vaecli.model import Step
from vaecli.training.memory import return_large_buffers
torch.set_num_threads(1)
k, rows = int(sys.argv[1]), int(sys.argv[2]) or None
return_large_buffers()
section = {"kind": "iwae", "family": {"options": {"k": k}}, "latent_dim": 4, "input_shape": [1, 28, 28],
           "architecture": {"name": "mlp", "options": {"hidden": [64]}},
           "likelihood": {"name": "bernoulli", "options": {}}}
torch.manual_seed(0)
model = factory.create_model(section)
model.sample_rows = rows
x = torch.rand(16, 1, 28, 28).round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model.loss(x, Step(1.0, 0.0, 1, torch.Generator().manual_seed(0))).objective.backward()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_chunked_samples_keep_the_peak_memory_flat_in_k():
    """Decoding 16 x 4000 samples at once keeps several tensors of 16 x 4000 x 784 floats (200 MB
    each; measured: about 0.8 GB) for backward; in chunks of 2048 rows the step's peak stays under
    two of them (most of it torch's first use) and hardly grows from k=1000 to 4000."""
    import subprocess
    import sys

    def peak_mb(k: int, rows: int) -> float:
        out = subprocess.run([sys.executable, "-c", _PEAK, str(k), str(rows)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        return float(out.stdout.strip().splitlines()[-1])

    one_tensor = 16 * 4000 * 784 * 4 / 2**20
    small, large = peak_mb(1000, 2048), peak_mb(4000, 2048)
    assert large < 2 * one_tensor, (large, one_tensor)
    assert large - small < 100, (small, large)
