"""Latent samplers (``vae sample --sampler NAME``): each registered one fits, draws, is saved
beside the checkpoint and reused, refuses models it does not fit in one line; and each fitted
density draws what it was fitted to, on codes whose distribution is known."""

from __future__ import annotations

import pytest
import torch

from vaecli import factory, sampling, testing
from vaecli.errors import UsageError
from vaecli.plugins import registry

FITTED = [n for n in registry().names("sampler") if n != "prior"]
FAST = {
    "two-stage": {"epochs": 2, "hidden": 16},
    "maf": {"epochs": 2, "hidden": 16},
    "pixelcnn": {"epochs": 2, "hidden": 16},
}

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(kind: str = "vae", latent: int = 2, **options):
    section = {
        "kind": kind,
        "family": {"options": options},
        "latent_dim": latent,
        "input_shape": [1, 4, 4],
        "architecture": {"name": "mlp", "options": {"hidden": [8]}},
        "likelihood": {"name": "bernoulli", "options": {}},
    }
    torch.manual_seed(0)
    return factory.create_model(section).eval()


def test_four_fitted_samplers_and_the_prior_each_with_a_help_line():
    assert len(FITTED) >= 4 and "prior" in registry().names("sampler")
    for name in registry().names("sampler"):
        assert registry().get("sampler", name).spec.help


@pytest.fixture(scope="module")
def vq_ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vq")
    result = testing.invoke(
        "train", "shapes", *["--data-option", "n_train=96", "--data-option", "n_test=48", "--data-option", "size=8"],
        *["--arch-option", "hidden=32", "--latent-dim", "4", "--batch-size", "32", "--device", "cpu", "--epochs", "1", "--model", "vqvae"],
        "--model-option", "codes=8", "-o", str(folder / "vq.safetensors"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return folder / "vq.safetensors"


@pytest.mark.parametrize("name", FITTED)
def test_each_sampler_fits_saves_reuses_and_refits(name, tiny_ckpt, vq_ckpt, tmp_path):
    import shutil

    source = vq_ckpt if name == "pixelcnn" else tiny_ckpt
    ckpt = tmp_path / source.name
    shutil.copy(source, ckpt)
    args = [a for k, v in FAST.get(name, {}).items() for a in ("--sampler-option", f"{k}={v}")]
    first = testing.invoke("sample", str(ckpt), "-n", "9", "-o", str(tmp_path / "a.png"), "--sampler", name, *args)
    assert first.exit_code == 0, first.output
    assert "fitted on 96 codes of shapes:train" in first.stdout
    saved = sampling.sampler_path(ckpt, name)
    assert saved.exists()
    again = testing.invoke("sample", str(ckpt), "-n", "9", "-o", str(tmp_path / "b.png"), "--sampler", name, *args)
    assert again.exit_code == 0 and "reused" in again.stdout, again.output
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()  # the same fit, the same draws
    forced = testing.invoke("sample", str(ckpt), "-o", str(tmp_path / "c.png"), "--sampler", name, *args, "--refit")
    assert forced.exit_code == 0 and "fitted on" in forced.stdout, forced.output
    if name != "pixelcnn":  # another option: fitted again, not the saved one reused
        other = {"gmm": "components=2"}.get(name, "epochs=1")
        changed = testing.invoke(
            "sample", str(ckpt), "-o", str(tmp_path / "d.png"), "--sampler", name, "--sampler-option", other
        )
        assert changed.exit_code == 0 and "fitted on" in changed.stdout, changed.output


def test_pixelcnn_refuses_a_model_without_discrete_codes(tiny_ckpt, tmp_path):
    result = testing.invoke("sample", str(tiny_ckpt), "-o", str(tmp_path / "x.png"), "--sampler", "pixelcnn")
    assert result.exit_code == 2 and "for vector-quantised models (--model vqvae), not a vae" in result.stderr
    bad = testing.invoke("sample", str(tiny_ckpt), "-o", str(tmp_path / "x.png"), "--sampler", "gmm", "-t", "0.5")
    assert bad.exit_code == 2 and "--temperature" in bad.stderr


def _gaussian_codes(n: int = 4000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    mean = torch.tensor([2.0, -1.0])
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    return mean + torch.randn(n, 2, generator=gen) @ torch.linalg.cholesky(cov).T, mean, cov


@pytest.mark.parametrize(
    "name, options, tol",
    [("maf", {"epochs": 40}, 0.12), ("two-stage", {"epochs": 40, "layers": 2}, 0.2), ("gmm", {"components": 3}, 0.1)],
)
def test_a_fitted_density_draws_the_distribution_it_was_fitted_to(name, options, tol):
    codes, mean, cov = _gaussian_codes()
    sampler = sampling.build(_model(), name, options)
    sampler.fit(codes, torch.Generator().manual_seed(0))
    with torch.no_grad():
        draws = sampler.sample(4000, torch.Generator().manual_seed(2), None)
    assert draws.shape == (4000, 2)
    torch.testing.assert_close(draws.mean(0), mean, atol=tol, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), cov, atol=2 * tol, rtol=0)


def test_gmm_finds_two_clusters():
    gen = torch.Generator().manual_seed(0)
    codes = torch.cat([torch.randn(500, 2, generator=gen) * 0.1 + 3, torch.randn(1500, 2, generator=gen) * 0.1 - 3])
    sampler = sampling.build(_model(), "gmm", {"components": 2})
    sampler.fit(codes, torch.Generator().manual_seed(0))
    draws = sampler.sample(4000, torch.Generator().manual_seed(1), None)
    share = (draws[:, 0] > 0).float().mean().item()
    assert abs(share - 0.25) < 0.03 and (draws.abs() - 3).abs().max() < 1.0


def test_pixelcnn_learns_a_rule_of_the_code_sequence():
    """Codes whose every piece is the previous one plus 1 (mod K): draws follow the rule."""
    model = _model("vqvae", latent=6, codes=5, dim=1)
    start = torch.randint(5, (2000, 1), generator=torch.Generator().manual_seed(0))
    codes = (start + torch.arange(6)) % 5
    sampler = sampling.build(model, "pixelcnn", {"epochs": 30, "hidden": 32, "layers": 2})
    sampler.fit(codes, torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = sampler.sample(500, torch.Generator().manual_seed(1), model)
        idx = model.indices(z)
    follows = ((idx[:, 1:] - idx[:, :-1]) % 5 == 1).float().mean().item()
    assert follows > 0.95, follows


def test_an_unknown_sampler_option_is_one_line():
    with pytest.raises(UsageError, match="sampler 'gmm' has no option k"):
        sampling.build(_model(), "gmm", {"k": "3"})
