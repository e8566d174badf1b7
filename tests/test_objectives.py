"""Training objectives and their settings, checked on values: the beta-VAE weight, free bits,
the IWAE bound against torch.distributions, the class-conditional VAE, the TrainConfig
schedules and checks, binarization, and tiny real runs through ``vaecli.train`` and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence
from typer.testing import CliRunner

import vaecli
from conftest import TINY_CLI, TINY_DATA, one_line_error, tiny_run
from vaecli import checkpoint, factory, training
from vaecli.data import BINARIZE_SEEDS, binarize, load_dataset
from vaecli.errors import UsageError
from vaecli.evaluation import evaluate
from vaecli.factory import check_data_range
from vaecli.factory import create_model as from_config
from vaecli.inputs import load_input
from vaecli.model import VAE, Loss, kl_per_dim
from vaecli.plugins import registry
from vaecli.training import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

D = 4  # latent dimensions of the model-level tests
CLASSES = ["square", "ellipse", "heart"]  # the classes of the built-in shapes dataset


def _flat(text: str) -> str:
    """Rich tables wrap long cells: compare words, not lines."""
    return " ".join(text.split())


# -- tiny random models ---------------------------------------------------------------------


def _model(kind: str = "vae", classes: int = 0, latent: int = D) -> VAE:
    """An untrained mlp/bernoulli model on 8x8 images whose posterior is far from the prior in
    some dimensions and close in others (different KL per dimension)."""
    config = {
        "kind": kind,
        "latent_dim": latent,
        "input_shape": [1, 8, 8],
        "architecture": {"name": "mlp", "options": {"hidden": [16]}},
        "likelihood": {"name": "bernoulli", "options": {}},
    }
    if classes:
        config["num_classes"] = classes
    torch.manual_seed(0)
    model = from_config(config)
    with torch.no_grad():
        model.encoder.head.bias[:latent] = torch.tensor([1.0, -0.5, 0.2, 1.5])[:latent]
        model.encoder.head.bias[latent:] = torch.tensor([-1.0, 0.3, -2.0, 0.0])[:latent]
    return model


def _binary_batch(n: int = 16, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 8, 8, generator=g) > 0.5).float()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference_terms(model: VAE, x: torch.Tensor, eps: torch.Tensor, mean=None, logvar=None, y=None):
    """-log p(x|z) and KL(q||p) per example and dimension, with torch.distributions, for
    z = mean + sigma * eps."""
    if mean is None:
        mean, logvar = model.encoder(x) if y is None else model.encoder(x, y)
    std = (0.5 * logvar).exp()
    z = mean + std * eps
    logits = model.decoder(z) if y is None else model.decoder(z, y)
    recon = -Bernoulli(logits=logits.view_as(x)).log_prob(x).flatten(1).sum(1)
    kl_dims = kl_divergence(Normal(mean, std), Normal(0.0, 1.0))  # (B, D)
    return recon, kl_dims


class _Capture(torch.nn.Module):
    """Wraps an encoder and keeps its last outputs, to take gradients with respect to them."""

    def __init__(self, encoder):
        super().__init__()
        self.inner = encoder
        self.out = None

    def forward(self, x, y=None):
        self.out = self.inner(x) if y is None else self.inner(x, y)
        return self.out


# -- beta ------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 0.25, 1.0, 4.0])
def test_beta_weights_the_kl_term_for_the_same_noise(beta):
    model = _model()
    x = _binary_batch()
    terms = model(x, beta=beta, generator=_gen(7))
    eps = torch.randn(16, D, generator=_gen(7))
    recon, kl_dims = _reference_terms(model, x, eps)
    kl = kl_dims.sum(1)
    torch.testing.assert_close(terms.recon, recon, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms.kl, kl, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(terms.objective, (recon + beta * kl).mean(), rtol=1e-5, atol=1e-4)
    assert kl.mean() > 0.5  # the KL term is large enough for beta to matter


# -- free bits -------------------------------------------------------------------------------


def test_free_bits_above_every_dimension_costs_exactly_d_lambda():
    model = _model()
    x = _binary_batch()
    with torch.no_grad():
        mean, logvar = model.encoder(x)
    batch_kl = kl_per_dim(mean, logvar).mean(0)
    lam = 5.0
    assert (batch_kl < lam).all()
    for beta in (1.0, 0.5):
        terms = model(x, beta=beta, free_bits=lam, generator=_gen(7))
        torch.testing.assert_close(terms.objective, terms.recon.mean() + beta * D * lam, rtol=1e-6, atol=1e-5)
        # recon and kl stay the two parts of the negative ELBO
        elbo = model(x, generator=_gen(7))
        torch.testing.assert_close(terms.recon, elbo.recon)
        torch.testing.assert_close(terms.kl, elbo.kl)


def test_free_bits_zero_is_the_elbo_and_in_between_clamps_each_dimension():
    model = _model()
    x = _binary_batch()
    elbo = model(x, generator=_gen(7))
    torch.testing.assert_close(model(x, free_bits=0.0, generator=_gen(7)).objective, elbo.objective)
    eps = torch.randn(16, D, generator=_gen(7))
    recon, kl_dims = _reference_terms(model, x, eps)
    batch_kl = kl_dims.mean(0)
    lam = float(batch_kl.detach().sort().values[1:3].mean())  # two dimensions below lambda, two above
    assert (batch_kl < lam).sum() == 2
    expected = recon.mean() + 2.0 * torch.maximum(batch_kl, torch.tensor(lam)).sum()
    torch.testing.assert_close(
        model(x, beta=2.0, free_bits=lam, generator=_gen(7)).objective, expected, rtol=1e-5, atol=1e-4
    )


def test_free_bits_give_no_kl_gradient_to_dimensions_below_lambda():
    model = _model()
    model.encoder = _Capture(model.encoder)
    x = _binary_batch()
    with torch.no_grad():
        batch_kl = kl_per_dim(*model.encoder.inner(x)).mean(0)
    lam = float(batch_kl.sort().values[1:3].mean())
    below = batch_kl < lam
    assert below.sum() == 2
    beta = 1.5
    loss = model(x, beta=beta, free_bits=lam, generator=_gen(7)).objective
    g_mean, g_logvar = torch.autograd.grad(loss, model.encoder.out)
    # the same loss, by hand: only the dimensions above lambda carry their KL
    mean, logvar = (t.detach().requires_grad_() for t in model.encoder.out)
    recon, kl_dims = _reference_terms(model, x, torch.randn(16, D, generator=_gen(7)), mean, logvar)
    recon_only = torch.autograd.grad(recon.mean(), (mean, logvar), retain_graph=True)
    ref = recon.mean() + beta * (kl_dims.mean(0) * (~below)).sum()
    r_mean, r_logvar = torch.autograd.grad(ref, (mean, logvar))
    torch.testing.assert_close(g_mean, r_mean, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(g_logvar, r_logvar, rtol=1e-4, atol=1e-6)
    # below lambda: exactly the reconstruction's gradient; above: not
    torch.testing.assert_close(g_mean[:, below], recon_only[0][:, below], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(g_logvar[:, below], recon_only[1][:, below], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(g_mean[:, ~below], recon_only[0][:, ~below], atol=1e-4)


def test_free_bits_above_every_dimension_leave_only_the_reconstruction_gradient():
    x = _binary_batch()
    grads = []
    for objective in ("free_bits", "recon"):
        model = _model()
        terms = model(x, free_bits=50.0, generator=_gen(7))
        (terms.objective if objective == "free_bits" else terms.recon.mean()).backward()
        grads.append([p.grad.clone() for p in model.encoder.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# -- IWAE ------------------------------------------------------------------------------------


def _iwae_reference(model: VAE, x, eps, labels=None, classes=0):
    """-mean(logsumexp_i(log p(x|z_i) + log N(z_i; 0, I) - log N(z_i; mu, sigma)) - log k), one
    decoder call per sample i, with torch.distributions."""
    y = None if labels is None else torch.nn.functional.one_hot(labels, classes).float()
    mean, logvar = model.encoder(x) if y is None else model.encoder(x, y)
    std = (0.5 * logvar).exp()
    b, k, _ = eps.shape
    log_w, log_px = [], []
    for i in range(k):
        z = mean + std * eps[:, i]
        logits = (model.decoder(z) if y is None else model.decoder(z, y)).view_as(x)
        lp = Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
        log_px.append(lp)
        log_w.append(lp + Normal(0.0, 1.0).log_prob(z).sum(1) - Normal(mean, std).log_prob(z).sum(1))
    log_w, log_px = torch.stack(log_w, 1), torch.stack(log_px, 1)  # (B, k)
    bound = torch.logsumexp(log_w, 1) - math.log(k)
    return -bound.mean(), -log_px.mean(1), kl_divergence(Normal(mean, std), Normal(0.0, 1.0)).sum(1)


@pytest.mark.parametrize("k", [2, 5])
def test_iwae_loss_matches_torch_distributions_on_the_same_noise(k):
    model = _model()
    x = _binary_batch()
    terms = model(x, iw_samples=k, generator=_gen(11))
    loss, recon, kl = _iwae_reference(model, x, torch.randn(16, k, D, generator=_gen(11)))
    torch.testing.assert_close(terms.objective, loss, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms.recon, recon, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms.kl, kl, rtol=1e-5, atol=1e-5)
    terms.objective.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_iwae_loss_without_a_generator_draws_independent_noise_per_sample():
    """Training passes no generator: the k samples of an image must still differ (the noise
    is drawn for the (B, k, D) shape, not broadcast from one (B, D) draw)."""
    model = _model()
    x = _binary_batch()
    torch.manual_seed(5)
    terms = model(x, iw_samples=3)
    torch.manual_seed(5)
    eps = torch.randn(16, 3, D)
    loss, recon, _ = _iwae_reference(model, x, eps)
    torch.testing.assert_close(terms.objective, loss, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms.recon, recon, rtol=1e-5, atol=1e-4)


def test_iwae_loss_of_a_cvae_conditions_every_sample_on_its_own_image_class():
    model = _model("cvae", classes=3)
    x = _binary_batch(6)
    labels = torch.tensor([2, 0, 1, 1, 2, 0])
    terms = model(x, labels=labels, iw_samples=3, generator=_gen(5))
    loss, recon, _ = _iwae_reference(model, x, torch.randn(6, 3, D, generator=_gen(5)), labels, 3)
    torch.testing.assert_close(terms.objective, loss, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms.recon, recon, rtol=1e-5, atol=1e-4)


def _iwae_loss(model, x, mean, logvar, k, gen):
    log_w, log_px = model.log_weights(x, None, k, gen, (mean, logvar))
    return Loss(-(torch.logsumexp(log_w, 1) - math.log(k)).mean(), {"recon": -log_px.mean(1)})


def test_iwae_with_one_sample_is_the_elbo_in_expectation():
    model = _model()
    x = _binary_batch().repeat(64, 1, 1, 1)  # 1024 rows: averages over many noise draws
    with torch.no_grad():
        mean, logvar = model.encoder(x)
        elbo = model(x, generator=_gen(21))
        one = _iwae_loss(model, x, mean, logvar, 1, _gen(21))
        # the same noise: the same reconstruction; the KL is a one-sample estimate of the closed form
        torch.testing.assert_close(one.recon, elbo.recon, rtol=1e-6, atol=1e-4)
        draws = torch.stack([_iwae_loss(model, x, mean, logvar, 1, _gen(s)).objective for s in range(8)])
        elbos = torch.stack([model(x, generator=_gen(s)).objective for s in range(8)])
    assert abs(draws.mean() - elbos.mean()) < 0.15, (draws.mean(), elbos.mean())
    assert torch.equal(model(x, iw_samples=1, generator=_gen(3)).objective, model(x, generator=_gen(3)).objective)


def test_the_iwae_bound_is_at_least_the_elbo_and_tightens_with_k():
    model = _model()
    x = _binary_batch().repeat(64, 1, 1, 1)
    with torch.no_grad():
        losses = {k: model(x, iw_samples=k, generator=_gen(1)).objective.item() for k in (1, 2, 8)}
    # -IWAE_k <= -ELBO on average; the gap is nats here, far above the noise (~0.05)
    assert losses[2] <= losses[1] - 0.2, losses
    assert losses[8] <= losses[2] - 0.2, losses


# -- cvae ------------------------------------------------------------------------------------


def test_cvae_needs_labels_to_encode_and_checks_them():
    model = _model("cvae", classes=3).eval()
    x = _binary_batch(4)
    with pytest.raises(ValueError, match="class-conditional.*labels"):
        model.encode(x)
    with pytest.raises(ValueError, match="class-conditional"):
        model(x)
    with pytest.raises(ValueError, match="0 to 2"):
        model.encode(x, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="0 to 2"):
        model.encode(x, torch.tensor([0, -1, 2, 0]))
    with pytest.raises(ValueError, match="3 labels for 4 rows"):
        model.encode(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="0 to 2"):
        model.decode(torch.zeros(2, D), labels=torch.tensor([0, 5]))
    mean, logvar = model.encode(x, torch.tensor([0, 1, 2, 0]))
    assert mean.shape == logvar.shape == (4, D)


def test_cvae_decodes_class_i_mod_k_without_labels_and_the_class_matters():
    model = _model("cvae", classes=3).eval()
    z = torch.randn(7, D, generator=_gen(0))
    default = model.decode(z)
    torch.testing.assert_close(default, model.decode(z, labels=torch.arange(7) % 3))
    by_class = [model.decode(z, labels=torch.full((7,), c)) for c in range(3)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert (by_class[a] - by_class[b]).abs().max() > 1e-3
    for i in range(7):
        torch.testing.assert_close(default[i], by_class[i % 3][i])
    sampled = model.sample(5, generator=_gen(4), labels=torch.full((5,), 2))
    torch.testing.assert_close(sampled, model.decode(torch.randn(5, D, generator=_gen(4)), labels=torch.full((5,), 2)))


def test_evaluate_a_cvae_uses_the_labels():
    model = _model("cvae", classes=3).eval()
    images = (_binary_batch(12) * 255).to(torch.uint8)
    labels = torch.arange(12) % 3
    with pytest.raises(ValueError, match="labels"):
        evaluate(model, images)
    right = evaluate(model, images, labels=labels)
    again = evaluate(model, images, labels=labels)
    wrong = evaluate(model, images, labels=(labels + 1) % 3)
    assert right["nelbo"] == again["nelbo"]
    assert abs(right["nelbo"] - wrong["nelbo"]) > 1e-4
    # -k 1: the ELBO, reconstruction plus closed-form KL
    mean, logvar = model.encode(images, labels)
    assert right["kl"] == pytest.approx(kl_per_dim(mean, logvar).sum(1).mean().item(), rel=1e-5)


# -- TrainConfig: schedules and optimizers ----------------------------------------------------


def test_kl_weight_rises_linearly_over_the_warmup_epochs():
    c = TrainConfig(beta=2.0, kl_warmup=4)
    batches = 10
    assert c.kl_weight(0, batches) == 0.0
    assert c.kl_weight(10, batches) == pytest.approx(0.5)
    assert c.kl_weight(20, batches) == pytest.approx(1.0)  # halfway: beta / 2
    assert c.kl_weight(40, batches) == pytest.approx(2.0)
    assert c.kl_weight(1000, batches) == 2.0
    fractional = TrainConfig(kl_warmup=0.5)
    assert fractional.kl_weight(2, 8) == pytest.approx(0.5)
    assert TrainConfig(beta=3.0).kl_weight(0, batches) == 3.0  # no warm-up: beta from the start


def test_learning_rate_schedules():
    batches = 10
    constant = TrainConfig(lr=0.01, epochs=4)
    assert {constant.learning_rate(s, batches) for s in (0, 17, 39)} == {0.01}
    cosine = TrainConfig(lr=0.01, epochs=4, lr_schedule="cosine")
    assert cosine.learning_rate(0, batches) == pytest.approx(0.01)
    assert cosine.learning_rate(20, batches) == pytest.approx(0.005)
    assert cosine.learning_rate(10, batches) == pytest.approx(0.01 * (1 + math.sqrt(0.5)) / 2)
    last = cosine.learning_rate(39, batches)
    assert 0 < last < 1e-4
    assert cosine.learning_rate(40, batches) == pytest.approx(0.0, abs=1e-12)
    rates = [cosine.learning_rate(s, batches) for s in range(40)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    step = TrainConfig(lr=0.01, epochs=6, lr_schedule="step", lr_step=2, lr_gamma=0.5)
    assert [step.learning_rate(e * batches, batches) for e in range(6)] == pytest.approx(
        [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025]
    )
    assert step.learning_rate(19, batches) == pytest.approx(0.01)  # the last step of epoch 2
    assert step.learning_rate(20, batches) == pytest.approx(0.005)


def test_make_optimizer_adam_and_adamw_with_their_weight_decay_defaults():
    params = [torch.nn.Parameter(torch.zeros(3))]

    def made(**kw):
        opt = training.make_optimizer(TrainConfig(lr=0.003, **kw), params, torch.device("cpu"))
        assert opt.param_groups[0]["fused"]  # one kernel for all parameters
        kind = next(c for c in (torch.optim.AdamW, torch.optim.Adam) if isinstance(opt, c))  # its arithmetic
        return kind, opt.param_groups[0]["weight_decay"], opt.param_groups[0]["lr"]

    assert made() == (torch.optim.Adam, 0.0, 0.003)
    assert made(optimizer="adamw") == (torch.optim.AdamW, 0.01, 0.003)
    assert made(optimizer="adamw", weight_decay=0.0) == (torch.optim.AdamW, 0.0, 0.003)
    assert made(optimizer="adamw", weight_decay=0.2) == (torch.optim.AdamW, 0.2, 0.003)
    assert made(weight_decay=0.1) == (torch.optim.Adam, 0.1, 0.003)


def test_fused_adam_takes_the_same_steps_as_the_reference_implementation():
    torch.manual_seed(0)
    ref = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]
    ours = [torch.nn.Parameter(p.detach().clone()) for p in ref]
    for name, decay in (("adam", 0.1), ("adamw", 0.01)):
        reference = (torch.optim.AdamW if name == "adamw" else torch.optim.Adam)(
            ref, lr=0.01, weight_decay=decay, foreach=False
        )
        fused = training.make_optimizer(
            TrainConfig(optimizer=name, lr=0.01, weight_decay=decay), ours, torch.device("cpu")
        )
        for _step in range(5):
            grads = [torch.randn_like(p) for p in ref]
            for params, opt in ((ref, reference), (ours, fused)):
                for p, g in zip(params, grads):
                    p.grad = g.clone()
                opt.step()
        for a, b in zip(ref, ours):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(ref[0].detach(), torch.zeros(5, 3))


# -- TrainConfig.check ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, needles",
    [
        (dict(iw_samples=2, beta=2.0), ["--iw-samples", "--beta", "importance-weighted"]),
        (dict(iw_samples=2, kl_warmup=1.0), ["--iw-samples", "--kl-warmup"]),
        (dict(iw_samples=2, free_bits=0.1), ["--iw-samples", "--free-bits"]),
        (dict(lr_schedule="step"), ["--lr-schedule step needs --lr-step"]),
        (dict(lr_step=2), ["--lr-step is for --lr-schedule step", "constant"]),
        (dict(lr_schedule="cosine", lr_step=2), ["--lr-step is for --lr-schedule step", "cosine"]),
        (dict(lr_schedule="step", lr_step=1, lr_gamma=0.0), ["--lr-gamma", "(0, 1]", "0.0"]),
        (dict(lr_schedule="step", lr_step=1, lr_gamma=1.5), ["--lr-gamma", "1.5"]),
        (dict(lr_gamma=-0.1), ["--lr-gamma"]),
        (dict(lr_gamma=float("nan")), ["--lr-gamma"]),
        (dict(free_bits=-1.0), ["--free-bits must be a number >= 0", "-1.0"]),
        (dict(kl_warmup=float("inf")), ["--kl-warmup"]),
        (dict(weight_decay=-0.01), ["--weight-decay"]),
        (dict(grad_clip=-1.0), ["--grad-clip"]),
        (dict(iw_samples=0), ["--iw-samples must be at least 1"]),
        # unknown names: the name given and every choice
        (dict(optimizer="sgd"), ["'sgd'", "adam, adamw"]),
        (dict(binarize="always"), ["'always'", "dynamic, none, static"]),
        (dict(lr_schedule="linear"), ["'linear'", "burda, constant, cosine, multistep, step"]),
    ],
)
def test_check_refuses_each_invalid_setting_with_a_clear_message(settings, needles):
    with pytest.raises(UsageError) as info:
        TrainConfig(**settings).check()
    for needle in needles:
        assert needle in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "settings, needles",
    [
        (dict(model="ae", beta=2.0), ["--model ae has no use for --beta", "--beta is for --model", "vae"]),
        (dict(model="ae", kl_warmup=1.0), ["--model ae", "--kl-warmup"]),
        (dict(model="ae", free_bits=0.5), ["--model ae", "--free-bits"]),
        (dict(model="ae", iw_samples=3), ["--model ae", "--iw-samples"]),
        (dict(model="iwae", iw_samples=3), ["--model iwae", "--iw-samples"]),
        (dict(model="gan"), ["unknown model 'gan'", "ae, ciwae, cvae"]),
        (dict(model="iwae", model_options={"q": "1"}), ["model 'iwae' has no option q", "k=5"]),
        (dict(model="iwae", model_options={"k": "0"}), ["model 'iwae'", "k must be at least 1"]),
    ],
)
def test_the_family_refuses_settings_it_has_no_use_for(settings, needles):
    with pytest.raises(UsageError) as info:
        factory.model_section(TrainConfig(**settings))
    for needle in needles:
        assert needle in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "settings",
    [
        dict(),
        dict(iw_samples=5),
        dict(beta=4.0, kl_warmup=2.5, free_bits=0.25),
        dict(model="cvae", beta=0.5),
        dict(lr_schedule="step", lr_step=3, lr_gamma=1.0),
        dict(lr_schedule="cosine"),
        dict(model="ae"),
        dict(optimizer="adamw", weight_decay=0.0, grad_clip=1.0),
        dict(binarize="dynamic", iw_samples=2),
    ],
)
def test_check_accepts_valid_combinations(settings):
    TrainConfig(**settings).check()


@pytest.mark.parametrize("likelihood", ["continuous-bernoulli", "gaussian", "logistic"])
@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_binarize_is_refused_for_likelihoods_not_over_0_1(likelihood, mode):
    data_range = registry().get("likelihood", likelihood).spec.data_range
    assert data_range != "binary"
    with pytest.raises(UsageError) as info:
        check_data_range(likelihood, data_range, mode)
    message = str(info.value)
    assert f"--binarize {mode}" in message and f"'{likelihood}'" in message and "bernoulli" in message
    check_data_range(likelihood, data_range, "none")


def test_binarize_is_accepted_for_bernoulli():
    spec = registry().get("likelihood", "bernoulli").spec
    for mode in ("none", "static", "dynamic"):
        check_data_range("bernoulli", spec.data_range, mode)


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--likelihood", "gaussian", "--binarize", "static"], ["--binarize static", "'gaussian'"]),
        (["--iw-samples", "3", "--beta", "2"], ["--iw-samples", "--beta"]),
        (["--lr-schedule", "step"], ["--lr-step"]),
        (["--optimizer", "sgd"], ["'sgd'", "adam, adamw"]),
    ],
)
def test_train_refuses_invalid_objectives_in_one_line(vae, args, needles):
    one_line_error(vae("train", *TINY_CLI, "--epochs", "1", "-o", "x.safetensors", *args), 2, *needles)


# -- binarize --------------------------------------------------------------------------------


def test_binarize_draws_0_or_255_with_probability_value_over_255():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 1, 8, 8), generator=g, dtype=torch.uint8)
    out = binarize(images, 5)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert set(out.unique().tolist()) <= {0, 255}
    assert torch.equal(out, binarize(images, 5))
    assert not torch.equal(out, binarize(images, 6))
    assert torch.equal(out[images == 0], torch.zeros_like(out[images == 0]))
    assert torch.equal(out[images == 255], torch.full_like(out[images == 255], 255))
    assert torch.equal(
        binarize(torch.full((3, 1, 8, 8), 255, dtype=torch.uint8), 0), torch.full((3, 1, 8, 8), 255, dtype=torch.uint8)
    )
    flat51 = binarize(torch.full((400, 1, 16, 16), 51, dtype=torch.uint8), 9).double()
    assert flat51.mean().item() == pytest.approx(0.2 * 255, abs=0.01 * 255)  # ~7 sigma
    for value in (13, 128, 240):
        share = (binarize(torch.full((100, 1, 16, 16), value, dtype=torch.uint8), 2) == 255).double().mean()
        assert share.item() == pytest.approx(value / 255, abs=0.015)


# -- tiny real runs ----------------------------------------------------------------------------

TINY = tiny_run()
BATCHES = math.ceil(TINY_DATA["n_train"] / 32)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs of each objective (trained once for the module), by name -> checkpoint path."""
    folder = tmp_path_factory.mktemp("objectives")
    settings = {
        "warmup": dict(epochs=2, kl_warmup=2, lr_schedule="cosine", optimizer="adamw", grad_clip=1.0),
        "free_bits": dict(epochs=1, free_bits=0.5),
        "iwae": dict(epochs=1, iw_samples=3),
        "static": dict(epochs=2, binarize="static"),
        "dynamic": dict(epochs=1, binarize="dynamic"),
        "cvae_iwae": dict(epochs=1, model="cvae", iw_samples=2),
    }
    paths = {}
    for name, extra in settings.items():
        paths[name] = folder / f"{name}.safetensors"
        vaecli.train(**TINY, **extra, out=str(paths[name]))
    return paths


def _metrics(path):
    return checkpoint.read(path).meta["metrics"]


def test_warmup_and_cosine_are_recorded_per_epoch(runs):
    m = _metrics(runs["warmup"])
    assert [r["kl_weight"] for r in m] == pytest.approx([0.5, 1.0])
    total = 2 * BATCHES
    expected_lr = [1e-3 * 0.5 * (1 + math.cos(math.pi * (e * BATCHES - 1) / total)) for e in (1, 2)]
    assert [r["lr"] for r in m] == pytest.approx(expected_lr, rel=1e-9)
    assert 0 < m[-1]["lr"] < 1e-3 * 0.1
    for r in m:  # beta < 1 on some steps: the objective is below the negative ELBO
        assert r["train_objective"] < r["train_nelbo"]
    training = checkpoint.read(runs["warmup"]).meta["training"]
    assert (training["kl_warmup"], training["lr_schedule"], training["optimizer"], training["grad_clip"]) == (
        2,
        "cosine",
        "adamw",
        1.0,
    )


def test_the_objective_is_the_negative_elbo_with_beta_1(runs):
    for r in _metrics(runs["static"]) + _metrics(runs["dynamic"]):
        assert r["kl_weight"] == 1.0 and r["lr"] == 1e-3
        assert r["train_objective"] == pytest.approx(r["train_nelbo"], rel=1e-6)


def test_free_bits_and_iwae_objectives_differ_from_the_negative_elbo(runs):
    (fb,) = _metrics(runs["free_bits"])
    # per batch: sum_j max(lambda, KL_j) - sum_j KL_j, between 0 and D * lambda
    assert 0 < fb["train_objective"] - fb["train_nelbo"] <= 3 * 0.5 + 1e-9
    for name in ("iwae", "cvae_iwae"):
        (iw,) = _metrics(runs[name])
        assert iw["train_objective"] < iw["train_nelbo"] - 1e-3  # the IWAE bound is tighter
    meta = checkpoint.read(runs["cvae_iwae"]).meta
    assert (meta["model"]["kind"], meta["model"]["num_classes"], meta["training"]["iw_samples"]) == ("cvae", 3, 2)


def test_grad_clip_is_applied(tmp_path):
    """With a gradient norm clipped to 1e-12, Adam's steps are ~1e-4 of their size (g << eps)."""
    moved = {}
    for clip in (0.0, 1e-12):
        result = vaecli.train(**TINY, epochs=1, grad_clip=clip, out=str(tmp_path / f"c{clip}.safetensors"))
        torch.manual_seed(0)  # the run's initialisation (seed 0)
        init = from_config(result.model.meta["model"])
        moved[clip] = max(
            (a - b).abs().max().item() for a, b in zip(result.model.state_dict().values(), init.state_dict().values())
        )
        assert checkpoint.read(result.path).meta["training"]["grad_clip"] == clip
    assert moved[0.0] > 1e-3  # lr 1e-3 for 3 steps
    assert moved[1e-12] < 1e-5


def test_info_prints_the_objective_and_optimizer(vae, runs):
    text = _flat(vae("info", runs["warmup"]).stdout)
    assert "objective ELBO, KL warm-up over 2 epochs" in text
    assert "optimizer adamw lr 0.001, weight decay 0.01, cosine schedule, gradient norm clipped at 1" in text
    assert "free bits 0.5 nats per dimension" in _flat(vae("info", runs["free_bits"]).stdout)
    text = _flat(vae("info", runs["iwae"]).stdout)
    assert "IWAE bound, k=3" in text and "optimizer adam lr 0.001" in text and "weight decay" not in text
    assert "binarize=static" in _flat(vae("info", runs["static"]).stdout)


def test_binarize_is_recorded_and_evaluate_reproduces_the_test_loss(vae, runs):
    test_images = load_dataset("shapes", dict(TINY_DATA)).splits.test.images
    grey = ((test_images > 0) & (test_images < 255)).sum().item()
    assert grey > 100  # the test split has grey pixels: binarizing it changes the numbers
    for mode in ("static", "dynamic"):
        ckpt = checkpoint.read(runs[mode])
        assert ckpt.meta["data"]["preprocessing"]["binarize"] == mode
        result = vae("evaluate", runs[mode], "-k", "1", "--json", "--device", "cpu")
        assert result.exit_code == 0, result.output
        numbers = json.loads(result.stdout)
        assert numbers["nelbo"] == pytest.approx(ckpt.meta["metrics"][-1]["test_nelbo"], rel=1e-4)
        # the inputs of a binarized model are the fixed draw of the test split
        inputs = load_input("shapes:test", ckpt.meta)
        assert torch.equal(inputs.images, binarize(test_images, BINARIZE_SEEDS["test"]))
        if mode == "static":  # the training split: the draw the model was trained on
            train_images = load_dataset("shapes", dict(TINY_DATA)).splits.train.images
            assert torch.equal(
                load_input("shapes:train", ckpt.meta).images, binarize(train_images, BINARIZE_SEEDS["train"])
            )
        model = vaecli.load(runs[mode])
        grey_loss = evaluate(model, test_images)["nelbo"]
        assert abs(grey_loss - numbers["nelbo"]) > 1e-3


def test_bits_per_dim_note_says_cross_entropy_or_binarized(vae, runs):
    grey = _flat(vae("evaluate", runs["warmup"], "-k", "2", "--device", "cpu").stdout)
    assert "cross-entropy" in grey and "binarized" not in grey.replace("--binarize", "")
    static = _flat(vae("evaluate", runs["static"], "-k", "2", "--device", "cpu").stdout)
    assert "statically binarized" in static and "cross-entropy" not in static
    dynamic = _flat(vae("evaluate", runs["dynamic"], "-k", "2", "--device", "cpu").stdout)
    assert "dynamically binarized" in dynamic


def test_an_image_file_given_to_a_binarized_model_is_binarized(runs, tmp_path):
    from PIL import Image

    meta = checkpoint.read(runs["static"]).meta
    image = np.full((8, 8), 128, dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "grey.png")
    inputs = load_input(str(tmp_path / "grey.png"), meta)
    assert set(inputs.images.unique().tolist()) == {0, 255}
    assert torch.equal(
        inputs.images, binarize(torch.full((1, 1, 8, 8), 128, dtype=torch.uint8), BINARIZE_SEEDS["test"])
    )


def test_an_image_file_of_another_size_is_binarized_after_its_resize(runs, tmp_path):
    from PIL import Image

    meta = checkpoint.read(runs["static"]).meta
    image = np.random.default_rng(0).integers(0, 256, size=(16, 16), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "big.png")
    inputs = load_input(str(tmp_path / "big.png"), meta)
    assert inputs.images.shape == (1, 1, 8, 8) and any("resized" in w for w in inputs.warnings)
    assert set(inputs.images.unique().tolist()) <= {0, 255}


def test_a_dataset_split_of_another_size_is_binarized_after_its_resize(runs, tmp_path):
    meta = checkpoint.read(runs["static"]).meta
    images = np.random.default_rng(0).integers(0, 256, size=(20, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "big.npy", images)
    inputs = load_input(f"tensor:{tmp_path / 'big.npy'}:test", meta)
    assert inputs.images.shape[1:] == (1, 8, 8) and any("resized" in w for w in inputs.warnings)
    assert set(inputs.images.unique().tolist()) <= {0, 255}  # fails: 65 grey levels


# -- cvae through the CLI ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cvae_ckpt(tmp_path_factory):
    from vaecli.cli import app

    path = tmp_path_factory.mktemp("cvae") / "cvae.safetensors"
    result = CliRunner().invoke(
        app, ["train", "shapes", *TINY_CLI, "--epochs", "1", "--model", "cvae", "-o", str(path)]
    )
    assert result.exit_code == 0, result.output
    return path


def test_cvae_info_and_metadata(vae, cvae_ckpt):
    meta = checkpoint.read(cvae_ckpt).meta
    assert meta["model"]["kind"] == "cvae" and meta["model"]["num_classes"] == 3
    assert meta["data"]["class_names"] == CLASSES
    text = _flat(vae("info", cvae_ckpt).stdout)
    assert "CVAE" in text and "3 classes" in text and "square, ellipse, heart" in text


def test_cvae_sample_by_label_name_or_index(vae, cvae_ckpt, tmp_path):
    by_name = vae("sample", cvae_ckpt, "--label", "heart", "-n", "4", "-o", "a.png", "--device", "cpu")
    assert by_name.exit_code == 0, by_name.output
    assert "of class 2 (heart)" in by_name.stdout
    by_index = vae("sample", cvae_ckpt, "--label", "2", "-n", "4", "-o", "b.png", "--device", "cpu")
    assert by_index.exit_code == 0, by_index.output
    other = vae("sample", cvae_ckpt, "--label", "square", "-n", "4", "-o", "c.png", "--device", "cpu")
    assert other.exit_code == 0, other.output
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()
    default = vae("sample", cvae_ckpt, "-n", "6", "-o", "d.png", "--device", "cpu")
    assert default.exit_code == 0, default.output


@pytest.mark.parametrize("label", ["7", "3", "-1", "circle"])
def test_cvae_sample_of_an_unknown_label_names_the_classes(vae, cvae_ckpt, label):
    one_line_error(
        vae("sample", cvae_ckpt, "--label", label, "-o", "x.png", "--device", "cpu"),
        2,
        f"--label {label}",
        "0 to 2",
        "square, ellipse, heart",
    )


def test_label_on_a_model_without_classes_is_an_error(vae, runs):
    for args in (
        ["sample", runs["iwae"], "--label", "0"],
        ["decode", runs["iwae"], "--z", "0,0,0", "--label", "1"],
        ["interpolate", runs["iwae"], "--label", "0"],
        ["plot-latent", runs["iwae"], "--traverse", "--label", "0"],
    ):
        one_line_error(vae(*args, "-o", "x.png", "--device", "cpu"), 2, "--label", "class-conditional")


def test_cvae_commands_on_the_default_dataset_input(vae, cvae_ckpt, tmp_path):
    commands = [
        ["reconstruct", cvae_ckpt, "-n", "6", "-o", "r.png"],
        ["encode", cvae_ckpt, "shapes:test", "-o", "z.npy"],
        ["decode", cvae_ckpt, "--z", "0,0,0", "--z", "1,0,-1", "--label", "ellipse", "-o", "d.png"],
        ["decode", cvae_ckpt, "z.npy", "-o", "d2.png"],
        ["plot-latent", cvae_ckpt, "--traverse", "-o", "t.png"],
        ["plot-latent", cvae_ckpt, "--traverse", "--label", "heart", "-o", "t2.png"],
        ["plot-latent", cvae_ckpt, "--manifold", "--label", "1", "--grid", "4", "-o", "m.png"],
        ["plot-latent", cvae_ckpt, "-o", "s.png"],
        ["interpolate", cvae_ckpt, "--pairs", "2", "--steps", "3", "-o", "i.png"],
        ["interpolate", cvae_ckpt, "shapes:test", "shapes:train", "--pairs", "2", "--steps", "3", "-o", "j.png"],
        ["interpolate", cvae_ckpt, "shapes:test:0", "shapes:test:1", "--label", "heart", "--steps", "3", "-o", "k.png"],
    ]
    for args in commands:
        result = vae(*args, "--device", "cpu")
        assert result.exit_code == 0, (args, result.output)
    for name in ("r", "d", "d2", "t", "t2", "m", "s", "i", "j", "k"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    # encode conditions the encoder on each image's class
    model = vaecli.load(cvae_ckpt)
    split = load_dataset("shapes", dict(TINY_DATA)).splits.test
    mean, _ = model.encode(split.images, split.labels)
    torch.testing.assert_close(torch.from_numpy(np.load("z.npy")), mean, rtol=1e-5, atol=1e-6)
    wrong, _ = model.encode(split.images, (split.labels + 1) % 3)
    assert (wrong - mean).abs().max() > 1e-4


def test_cvae_evaluate_reproduces_the_test_loss_with_labels(vae, cvae_ckpt):
    result = vae("evaluate", cvae_ckpt, "-k", "1", "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    last = checkpoint.read(cvae_ckpt).meta["metrics"][-1]
    assert json.loads(result.stdout)["nelbo"] == pytest.approx(last["test_nelbo"], rel=1e-6)


def test_cvae_on_an_image_without_a_class_is_aone_line_error(vae, cvae_ckpt, tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "one.png")
    for command in ("reconstruct", "evaluate", "encode"):
        args = [command, cvae_ckpt, "one.png"] + (["-o", "z.npy"] if command == "encode" else [])
        one_line_error(vae(*args, "--device", "cpu"), 2, "one.png", "class-conditional model needs each image's class")


def test_cvae_on_a_dataset_without_labels_is_an_error(vae, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(40, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "unlabelled.npy", images)
    args = ["--arch-option", "hidden=16", "--latent-dim", "2", "--batch-size", "16", "--device", "cpu", "--epochs", "1"]
    one_line_error(
        vae("train", "tensor:unlabelled.npy", *args, "--model", "cvae", "-o", "c.safetensors"),
        2,
        "--model cvae is class-conditional: it needs class labels",
        "has none",
    )
    assert not (tmp_path / "c.safetensors").exists()
    plain = vae("train", "tensor:unlabelled.npy", *args, "-o", "v.safetensors")  # the same data trains a vae
    assert plain.exit_code == 0, plain.output


# -- review fixes: API compatibility, checkpoint format, labels from files and --label ----------


def test_forward_keeps_the_positional_beta_of_0_2_and_refuses_labels_without_classes():
    model, x = _model(), _binary_batch()
    positional = model(x, 0.0, _gen(7))
    keyword = model(x, beta=0.0, generator=_gen(7))
    torch.testing.assert_close(positional.objective, keyword.objective)
    assert not torch.allclose(positional.objective, model(x, 1.0, _gen(7)).objective)  # beta 0 drops the KL
    with pytest.raises(ValueError, match="not class-conditional"):
        model(x, labels=torch.zeros(len(x), dtype=torch.long))


def test_cvae_and_binarized_checkpoints_are_format_2_the_others_format_1(runs, cvae_ckpt):
    from safetensors import safe_open

    def version(path):
        with safe_open(str(path), framework="pt") as f:
            return f.metadata()["format_version"]

    assert version(cvae_ckpt) == "2"
    assert version(runs["static"]) == "2" and version(runs["dynamic"]) == "2"
    assert version(runs["free_bits"]) == "1"


def test_decode_of_a_cvae_uses_the_labels_of_an_encoded_file(vae, cvae_ckpt, tmp_path):
    assert vae("encode", cvae_ckpt, "shapes:test", "-o", "z.safetensors", "--device", "cpu").exit_code == 0
    model = vaecli.load(cvae_ckpt)
    codes, labels = vaecli.latents.read(tmp_path / "z.safetensors")
    assert labels is not None and len(set(labels[:6].tolist())) > 1
    r = vae("decode", cvae_ckpt, "z.safetensors", "-n", 6, "-o", "d.png", "--nrow", 6, "--device", "cpu")
    assert r.exit_code == 0, r.output
    from PIL import Image

    picture = np.asarray(Image.open(tmp_path / "d.png").convert("L"), dtype=np.float64)
    by_file = vaecli.viz.grid(model.decode(codes[:6], labels=labels[:6].long()), nrow=6)
    by_index = vaecli.viz.grid(model.decode(codes[:6]), nrow=6)  # class i % K
    assert picture.shape == tuple(by_file.shape[-2:])
    err_file = np.abs(picture - by_file[0].numpy() * 255).mean()
    err_index = np.abs(picture - by_index[0].numpy() * 255).mean()
    assert err_file < 1.0 < err_index


def test_label_gives_an_image_file_its_class(vae, cvae_ckpt, tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((8, 8), 255, dtype=np.uint8)).save(tmp_path / "b.png")
    r = vae("interpolate", cvae_ckpt, "a.png", "b.png", "--label", "heart", "-o", "i.png", "--device", "cpu")
    assert r.exit_code == 0, r.output
    r = vae("plot-latent", cvae_ckpt, "a.png", "--traverse", "--label", "0", "-o", "t.png", "--device", "cpu")
    assert r.exit_code == 0, r.output


def test_the_checkpoints_own_folder_named_relatively_is_its_dataset(vae, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for cls in ("cat", "dog"):
        (tmp_path / "photos" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "photos" / cls / f"{i}.png")
    args = ["--arch-option", "hidden=16", "-z", "2", "-b", "8", "--device", "cpu", "--epochs", "1"]
    r = vae("train", "folder:photos", "--model", "cvae", *args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "folder-photos-mlp-cvae.safetensors").exists()
    for name in ("folder:photos:test", "folder:./photos:test", f"folder:{tmp_path / 'photos'}/:test"):
        r = vae("evaluate", "folder-photos-mlp-cvae.safetensors", name, "-k", 1, "--json", "--device", "cpu")
        assert r.exit_code == 0, (name, r.output)
        assert json.loads(r.stdout)["examples"] == 1  # 10% of 12 images held out


def test_tensor_labels_must_be_class_indices(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 2, 10**9]))
    with pytest.raises(UsageError, match="labels go up to 1000000000"):
        load_dataset(f"tensor:{tmp_path / 'd.npz'}")
