"""Library-level checks of the latent-space maths behind the new commands: interpolation
(slerp/lerp), PCA, the inverse-CDF grid, latent files, the importance-weighted bound, encoding
and input conversion. Every expected value is computed independently here (torch.linalg,
torch.distributions, Pillow), not copied from the code under test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.distributions import Bernoulli, Normal

import vaecli
from conftest import TINY_DATA
from vaecli import evaluation, latents
from vaecli.data import load_dataset, to_unit
from vaecli.errors import UsageError
from vaecli.evaluation import encode_all
from vaecli.images import conform
from vaecli.inputs import load_input

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model(tiny_ckpt):
    return vaecli.load(tiny_ckpt)


def _test_images():
    return load_dataset("shapes", dict(TINY_DATA)).splits.test


# -- interpolate ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["slerp", "lerp"])
def test_paths_start_at_a_and_end_at_b(method, dtype):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(50, 6, generator=gen, dtype=dtype)
    b = torch.randn(50, 6, generator=gen, dtype=dtype)
    path = latents.interpolate(a, b, 7, method)
    assert path.shape == (50, 7, 6) and path.dtype == dtype
    # within an ulp or two of the ends (exactness is checked separately below)
    torch.testing.assert_close(path[:, 0], a, rtol=0, atol=4 * torch.finfo(dtype).eps * a.abs().max())
    torch.testing.assert_close(path[:, -1], b, rtol=0, atol=4 * torch.finfo(dtype).eps * b.abs().max())


def test_slerp_endpoints_are_exact():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 5, generator=gen), torch.randn(200, 5, generator=gen)
    path = latents.interpolate(a, b, 7, "slerp")
    assert torch.equal(path[:, 0], a)
    assert torch.equal(path[:, -1], b)


def test_lerp_endpoints_are_exact_and_the_midpoint_is_the_mean():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(20, 4, generator=gen), torch.randn(20, 4, generator=gen)
    path = latents.interpolate(a, b, 5, "lerp")
    assert torch.equal(path[:, 0], a) and torch.equal(path[:, -1], b)
    torch.testing.assert_close(path[:, 2], (a + b) / 2)
    # evenly spaced: every step is the same vector (b - a) / 4
    torch.testing.assert_close(path.diff(dim=1), ((b - a) / 4).unsqueeze(1).expand(20, 4, 4))


def test_slerp_of_orthogonal_unit_vectors_stays_on_the_unit_circle():
    e = torch.eye(4, dtype=torch.float64)
    a, b = e[[0, 1]], e[[2, 3]]  # two pairs of orthogonal unit vectors
    steps = 11
    path = latents.interpolate(a, b, steps, "slerp")
    torch.testing.assert_close(path.norm(dim=-1), torch.ones(2, steps, dtype=torch.float64))
    # the great circle: cos(t pi/2) a + sin(t pi/2) b
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    expected = torch.cos(t * math.pi / 2).view(1, -1, 1) * a.unsqueeze(1) + torch.sin(t * math.pi / 2).view(
        1, -1, 1
    ) * b.unsqueeze(1)
    torch.testing.assert_close(path, expected)
    # while the straight line dips to norm 1/sqrt(2) half way
    assert latents.interpolate(a, b, steps, "lerp")[:, 5].norm(dim=-1).tolist() == pytest.approx([0.5**0.5] * 2)


def test_slerp_of_equal_norms_keeps_the_norm_and_equal_angle_steps():
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    b = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    b = b / b.norm(dim=-1, keepdim=True) * a.norm(dim=-1, keepdim=True)  # same norm as a
    path = latents.interpolate(a, b, 9, "slerp")
    torch.testing.assert_close(path.norm(dim=-1), a.norm(dim=-1, keepdim=True).expand(3, 9))
    unit = path / path.norm(dim=-1, keepdim=True)
    angles = torch.arccos((unit[:, 1:] * unit[:, :-1]).sum(-1).clamp(-1, 1))  # (3, 8)
    total = torch.arccos(torch.nn.functional.cosine_similarity(a, b, dim=-1))
    torch.testing.assert_close(angles, (total / 8).unsqueeze(1).expand(3, 8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("factor", [2.0, 1.0, 0.5])
def test_slerp_of_parallel_vectors_falls_back_to_the_straight_line(factor, dtype):
    a = torch.tensor([[1.0, -2.0, 0.5]], dtype=dtype)
    b = factor * a
    path = latents.interpolate(a, b, 6, "slerp")
    assert torch.isfinite(path).all()
    torch.testing.assert_close(path, latents.interpolate(a, b, 6, "lerp"))


@pytest.mark.parametrize("factor", [-1.0, -3.0])
def test_slerp_of_antiparallel_float64_vectors_is_the_straight_line(factor):
    a = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    path = latents.interpolate(a, factor * a, 6, "slerp")
    assert torch.isfinite(path).all()
    torch.testing.assert_close(path, latents.interpolate(a, factor * a, 6, "lerp"))


@pytest.mark.parametrize("factor", [-1.0, -3.0])
def test_slerp_of_antiparallel_float32_vectors_is_the_straight_line(factor):
    a = torch.tensor([[1.0, -2.0, 0.5]])
    path = latents.interpolate(a, factor * a, 6, "slerp")
    torch.testing.assert_close(path, latents.interpolate(a, factor * a, 6, "lerp"))


def test_slerp_from_the_origin_has_no_nan():
    a, b = torch.zeros(1, 3), torch.tensor([[1.0, 2.0, 3.0]])
    path = latents.interpolate(a, b, 5, "slerp")
    assert torch.isfinite(path).all()
    assert torch.isfinite(latents.interpolate(a, a, 5, "slerp")).all()


def test_unknown_interpolation_method_is_a_usage_error():
    with pytest.raises(UsageError, match="slerp or lerp"):
        latents.interpolate(torch.zeros(1, 2), torch.ones(1, 2), 3, "cubic")


# -- pca --------------------------------------------------------------------------------------


def _correlated(n=200, d=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mix = (
        torch.randn(d, d, generator=gen, dtype=torch.float64)
        * torch.tensor([3.0, 2.0, 1.0, 0.5, 0.1], dtype=torch.float64)[:d]
    )
    return torch.randn(n, d, generator=gen, dtype=torch.float64) @ mix.T + 4.0


def test_pca_variance_fractions_match_the_svd():
    points = _correlated()
    proj, share = latents.pca(points, k=2)
    assert proj.shape == (200, 2) and share.shape == (2,)
    centred = points - points.mean(0)
    _, s, vt = torch.linalg.svd(centred, full_matrices=False)
    var = s.pow(2)
    torch.testing.assert_close(share, var[:2] / var.sum())
    assert float(share.sum()) <= 1.0
    assert share[0] >= share[1] > 0
    # the projection: onto the top right-singular vectors, each signed so its largest loading is positive
    axes = vt[:2] * torch.sign(vt[:2].gather(1, vt[:2].abs().argmax(1, keepdim=True)))
    torch.testing.assert_close(proj, centred @ axes.T)
    # the projected variance is what the fractions say
    torch.testing.assert_close(proj.pow(2).sum(0) / centred.pow(2).sum(), share)


def test_pca_of_all_components_explains_everything():
    points = _correlated(d=4)
    proj, share = latents.pca(points, k=4)
    assert float(share.sum()) == pytest.approx(1.0, abs=1e-12)
    # an orthogonal change of basis keeps distances
    dist = dict(compute_mode="donot_use_mm_for_euclid_dist")
    torch.testing.assert_close(torch.cdist(proj, proj, **dist), torch.cdist(points, points, **dist))


def test_pca_signs_do_not_depend_on_the_sign_of_the_data():
    points = _correlated(seed=3)
    a, _ = latents.pca(points)
    b, _ = latents.pca(-points)  # same axes up to sign: the sign rule picks the same orientation
    torch.testing.assert_close(a, -b)


def test_pca_of_a_single_point_still_has_k_components():
    proj, share = latents.pca(torch.tensor([[0.5, -1.0, 2.0]]), k=2)
    assert proj.shape == (1, 2) and share.shape == (2,)


# -- normal_grid ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 10, 20])
def test_normal_grid_is_the_inverse_normal_cdf_of_evenly_spaced_probabilities(n):
    grid = latents.normal_grid(n)
    assert grid.shape == (n,)
    p = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    torch.testing.assert_close(grid, Normal(torch.tensor(0.0, dtype=torch.float64), 1.0).icdf(p), rtol=0, atol=1e-9)
    torch.testing.assert_close(grid, -grid.flip(0), rtol=0, atol=1e-12)  # symmetric about 0
    assert (grid.diff() > 0).all()
    if n % 2:
        assert grid[n // 2].item() == pytest.approx(0.0, abs=1e-15)


def test_normal_grid_with_an_extent_is_even():
    grid = latents.normal_grid(5, 2.0)
    assert grid.tolist() == pytest.approx([-2.0, -1.0, 0.0, 1.0, 2.0])


# -- latent files -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".safetensors"])
def test_latent_files_round_trip(tmp_path, suffix):
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(7, 3, generator=gen)
    logvar = torch.randn(7, 3, generator=gen)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    path = tmp_path / f"z{suffix}"
    latents.write(path, mean, logvar, labels, ["a", "b", "c"], {"latent_dim": 3})
    z, read_labels = latents.read(path)
    assert z.dtype == torch.float64 and z.shape == (7, 3)
    assert torch.equal(z.float(), mean)  # float32 values survive exactly, CSV included
    if suffix == ".safetensors":
        assert torch.equal(read_labels, labels)
    else:
        assert read_labels is None


def test_latents_check_refuses_wrong_width_nan_and_huge_values():
    with pytest.raises(UsageError, match="2 dimensions but the model's latent space has 3"):
        latents.check(torch.zeros(4, 2, dtype=torch.float64), 3, "X")
    with pytest.raises(UsageError, match=r"1 row\(s\) hold NaN"):
        latents.check(torch.tensor([[0.0, float("nan"), 1.0], [0.0, 0.0, 0.0]]), 3, "X")
    with pytest.raises(UsageError, match="infinite"):
        latents.check(torch.tensor([[0.0, float("inf"), 1.0]]), 3, "X")
    with pytest.raises(UsageError, match="values up to"):
        latents.check(torch.tensor([[0.0, 1e9, 1.0]]), 3, "X")
    ok = latents.check(torch.ones(2, 3, dtype=torch.float64), 3, "X")
    assert ok.dtype == torch.float32


# -- the model: encode, decode, reconstruct ---------------------------------------------------


def test_decoding_the_encoded_means_is_reconstruct(model):
    images = _test_images().images[:16]
    mean, _ = model.encode(images)
    torch.testing.assert_close(model.decode(mean), model.reconstruct(images), rtol=0, atol=1e-6)
    # what `vae encode` writes (encode_all, in batches) is the same posterior
    all_mean, all_logvar = encode_all(model, images, batch_size=5)
    torch.testing.assert_close(all_mean, mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(all_logvar, model.encode(images)[1], rtol=0, atol=1e-6)
    assert all_mean.shape == (16, 3)


# -- the importance-weighted bound ------------------------------------------------------------


def _sharpened(model):
    """Move q(z|x) away from the prior (the tiny model barely uses its latents), so that every
    term of the bound matters in the comparison."""
    with torch.no_grad():
        d = model.latent_dim
        model.encoder.head.bias[:d] += torch.tensor([1.0, -0.5, 0.25])
        model.encoder.head.bias[d:] -= 2.0
    return model


def _reference_bound(model, x, eps):
    """log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x) with torch.distributions, for given noise
    eps (B, k, D)."""
    with torch.no_grad():
        mean, logvar = model.posterior(x)
        b, k, d = eps.shape
        q = Normal(mean.unsqueeze(1), torch.exp(0.5 * logvar).unsqueeze(1))
        z = mean.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps
        log_q = q.log_prob(z).sum(-1)
        log_p = Normal(0.0, 1.0).log_prob(z).sum(-1)
        logits = model.likelihood_params(z.reshape(b * k, d))[:, 0]
        xs = x.unsqueeze(1).expand(b, k, *x.shape[1:]).reshape(b * k, *x.shape[1:])
        log_px = Bernoulli(logits=logits, validate_args=False).log_prob(xs).flatten(1).sum(1).view(b, k)
        bound = torch.logsumexp((log_px + log_p - log_q).double(), dim=1) - math.log(k)
    return bound, log_px.double().mean(1)


@pytest.mark.parametrize("k", [1, 7])
def test_importance_sampled_matches_a_direct_computation(model, k):
    model = _sharpened(model)
    x = to_unit(_test_images().images[:6])
    bound, recon, _ = evaluation.importance_sampled(model, x, k, torch.Generator().manual_seed(11))
    eps = torch.randn((6, k, model.latent_dim), generator=torch.Generator().manual_seed(11))
    ref_bound, ref_recon = _reference_bound(model, x, eps)
    assert bound.shape == (6,) and recon.shape == (6,)
    torch.testing.assert_close(bound, ref_bound, rtol=0, atol=1e-4)
    torch.testing.assert_close(recon, ref_recon, rtol=0, atol=1e-4)
    assert not torch.equal(ref_bound, ref_recon)  # the prior and posterior terms are not negligible here


def test_importance_sampled_in_chunks_combines_the_chunks(model):
    model = _sharpened(model)
    x = to_unit(_test_images().images[:4])
    bound, recon, _ = evaluation.importance_sampled(model, x, 10, torch.Generator().manual_seed(5), chunk=4)
    gen = torch.Generator().manual_seed(5)  # the same draws, in the same chunks: 4, 4, 2
    eps = torch.cat([torch.randn((4, s, 3), generator=gen) for s in (4, 4, 2)], dim=1)
    ref_bound, ref_recon = _reference_bound(model, x, eps)
    torch.testing.assert_close(bound, ref_bound, rtol=0, atol=1e-4)
    torch.testing.assert_close(recon, ref_recon, rtol=0, atol=1e-4)


def test_bernoulli_log_prob_is_the_distribution_log_prob(model):
    x = to_unit(_test_images().images[:5])
    params = model.likelihood_params(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)))
    ref = Bernoulli(logits=params[:, 0], validate_args=False).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(model.likelihood.log_prob(x, params), ref, rtol=0, atol=1e-4)


# -- inputs -----------------------------------------------------------------------------------


def test_dataset_split_index_selects_exactly_that_image(model):
    test = _test_images()
    for index in (0, 5, len(test.images) - 1):
        inputs = load_input(f"shapes:test:{index}", model.meta)
        assert torch.equal(inputs.images, test.images[index : index + 1])
        assert inputs.labels.tolist() == [int(test.labels[index])]
        assert inputs.factors["scale"].tolist() == pytest.approx([float(test.factors["scale"][index])])
        assert inputs.class_names == ["square", "ellipse", "heart"]
    whole = load_input("shapes:train", model.meta)
    assert torch.equal(whole.images, load_dataset("shapes", dict(TINY_DATA)).splits.train.images)


def test_rgb_png_becomes_grey_by_luma(model, tmp_path):
    gen = np.random.default_rng(0)
    rgb = gen.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    inputs = load_input(str(tmp_path / "rgb.png"), model.meta)
    assert inputs.images.shape == (1, 1, 8, 8) and inputs.images.dtype == torch.uint8
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    assert np.abs(inputs.images[0, 0].numpy().astype(float) - luma).max() <= 1.0
    assert inputs.warnings == []


def test_conform_resizes_same_aspect_and_refuses_other_aspects():
    images = torch.full((2, 1, 16, 16), 77, dtype=torch.uint8)
    out, warnings = conform(images, (1, 8, 8), "X")
    assert out.shape == (2, 1, 8, 8) and (out == 77).all()
    assert warnings == ["X: resized 2 image(s) from 16x16 to 8x8"]
    with pytest.raises(UsageError, match="expects 8x8 grey images; these are 8x12"):
        conform(torch.zeros(1, 1, 8, 12, dtype=torch.uint8), (1, 8, 8), "X")
    rgba = torch.zeros(1, 4, 8, 8, dtype=torch.uint8)
    rgba[:, :3] = 200
    out, warnings = conform(rgba, (1, 8, 8), "X")  # alpha dropped, then grey
    assert out.shape == (1, 1, 8, 8) and (out == 200).all() and warnings == []
