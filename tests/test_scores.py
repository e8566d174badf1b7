"""Sample-quality scores (``vae evaluate --fid --kid --precision-recall``) and ``vae train-scorer``.

The code path of the Inception network is run with random weights written to a safetensors
file (no real weights can be downloaded here); the scores themselves are checked on small
random feature networks: FID(x, x) = 0 and noise > blur > identity."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_DATA, one_line_error
from vaecli import scores
from vaecli.data import load_dataset

pytest.importorskip("torch_fidelity", reason="the scores extra (pip install 'vaecli[scores]')")


def _images(n: int = 300, size: int = 16) -> torch.Tensor:
    """Shapes in [0, 1], (n, 1, size, size)."""
    data = load_dataset("shapes", {"n_train": n, "n_test": 8, "size": size})
    return data.splits.train.images.float() / 255


def _random_net(seed: int) -> scores.FeatureNet:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
    )
    return scores.module_net(net, "random")


def _blur(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _noisy(x: torch.Tensor) -> torch.Tensor:
    return (x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fid_is_zero_for_the_same_images_and_orders_noise_over_blur_over_identity(seed):
    net, x = _random_net(seed), _images()
    real = scores.features_of(net, x, len(x))
    same = scores.compare(real, real, fid=True, kid=True, pr=True)
    assert same["fid"] == pytest.approx(0, abs=1e-6)
    assert abs(same["kid_mean"]) < 1e-3 and same["precision"] == same["recall"] == 1.0
    blurred = scores.compare(real, scores.features_of(net, _blur(x), len(x)), kid=True, pr=True)
    noisy = scores.compare(real, scores.features_of(net, _noisy(x), len(x)), kid=True, pr=True)
    assert noisy["fid"] > blurred["fid"] > 10 * max(same["fid"], 1e-6)
    assert noisy["kid_mean"] > blurred["kid_mean"] > same["kid_mean"]
    assert noisy["precision"] < same["precision"]


def test_fid_matches_the_closed_form_of_two_gaussians():
    """Features drawn from N(0, I) and N(m, s^2 I) in 4 dimensions: FID -> |m|^2 + 4 (1 - s)^2."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, 4, generator=gen, dtype=torch.float64)
    b = 0.5 * torch.randn(200_000, 4, generator=gen, dtype=torch.float64) + torch.tensor([1.0, 0, 0, 2])
    assert scores.compare(a, b)["fid"] == pytest.approx(1 + 4 + 4 * 0.25, rel=0.01)


def _inception_weights(path: Path) -> None:
    """Randomly initialised weights of torch-fidelity's Inception, as a safetensors file."""
    from unittest import mock

    from safetensors.torch import save_file
    from torch_fidelity import feature_extractor_inceptionv3 as module

    with (
        mock.patch.object(module, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(module.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None),
    ):
        torch.manual_seed(0)
        net = module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "inception.safetensors"
    _inception_weights(path)
    return path


def test_fid_on_inception_features_reads_the_weights_file_without_pickle(vae, tiny_ckpt, inception_file, monkeypatch):
    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setenv("VAECLI_FID_WEIGHTS", str(inception_file))
    from PIL import Image

    Path("real").mkdir()  # six test images (Inception at 299x299 is slow on a CPU)
    for i, image in enumerate(load_dataset("shapes", dict(TINY_DATA)).splits.test.images[:6]):
        Image.fromarray(image[0].numpy()).save(f"real/{i}.png")
    args = ("evaluate", tiny_ckpt, "real", "--fid", "--kid", "--precision-recall", "--samples", "5", "--json")
    result = vae(*args, "--device", "cpu")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["features"] == "Inception-v3 (FID weights)" and found["comparable_with_papers"] is True
    assert found["samples"] == 5 and found["real"] == 6
    assert found["fid"] > 0 and found["kid_subset_size"] == 5 and 0 <= found["precision"] <= 1


def test_without_weights_it_says_where_to_get_them(vae, tiny_ckpt, monkeypatch):
    monkeypatch.delenv("VAECLI_FID_WEIGHTS", raising=False)
    one_line_error(
        vae("evaluate", tiny_ckpt, "--fid"),
        2,
        "--fid-weights",
        "VAECLI_FID_WEIGHTS",
        "docs/scores.md",
        "vae train-scorer",
    )


def test_weights_of_another_network_are_one_line(vae, tiny_ckpt):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, "other.safetensors")
    one_line_error(
        vae("evaluate", tiny_ckpt, "--fid", "--fid-weights", "other.safetensors"), 2, "not the FID Inception-v3 weights"
    )
    Path("junk.safetensors").write_bytes(b"junk")
    one_line_error(
        vae("evaluate", tiny_ckpt, "--fid", "--fid-weights", "junk.safetensors"), 2, "not a safetensors file"
    )
    one_line_error(vae("evaluate", tiny_ckpt, "--fid", "--fid-weights", "absent.safetensors"), 2, "no such file")


def test_without_torch_fidelity_it_is_one_line(vae, tiny_ckpt, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    one_line_error(vae("evaluate", tiny_ckpt, "--fid"), 2, "pip install 'vaecli[scores]'")


def test_quality_options_without_a_score_are_refused(vae, tiny_ckpt):
    one_line_error(vae("evaluate", tiny_ckpt, "--samples", "10"), 2, "go with --fid")


@pytest.fixture(scope="module")
def scorer_file(tmp_path_factory, one_thread):
    """A scorer of the tiny checkpoint's 8x8 shapes (briefly trained: its features are what count)."""
    from vaecli.scorer import train

    path = tmp_path_factory.mktemp("scorer") / "scorer.safetensors"
    info = train("shapes", path, options={"n_train": 600, "n_test": 100, "size": 8}, epochs=2, batch_size=32)
    return path, info


def test_train_scorer_learns_the_classes(tmp_path, one_thread):
    from safetensors import safe_open

    from vaecli.scorer import train

    path = tmp_path / "scorer.safetensors"
    info = train("shapes", path, options={"n_train": 2000, "n_test": 300, "size": 16}, epochs=8, batch_size=32, lr=2e-3)
    assert info["test_accuracy"] > 0.7  # square, ellipse or heart at any size, place and angle: chance is a third
    with safe_open(str(path), framework="pt") as f:
        recorded = json.loads(f.metadata()["vaecli_scorer"])
    assert recorded["dataset"] == "shapes" and recorded["input_shape"] == [1, 16, 16] and recorded["classes"] == 3
    assert recorded["class_names"] == ["square", "ellipse", "heart"]
    assert recorded["test_accuracy"] == info["test_accuracy"]


def test_train_scorer_command(vae):
    result = vae(
        "train-scorer",
        "shapes",
        "--dataset-option",
        "n_train=96",
        "--dataset-option",
        "n_test=48",
        "--dataset-option",
        "size=8",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "-o",
        "s.safetensors",
    )
    assert result.exit_code == 0, result.output
    assert "Wrote s.safetensors" in result.stdout and "test accuracy" in result.stdout
    one_line_error(vae("train-scorer", "shapes", "-o", "s.safetensors"), 2, "already exists", "--force")
    one_line_error(vae("train-scorer", "shapes", "-o", "s.pt"), 2, "must end in .safetensors")


def test_scorer_fid_of_a_model_is_below_that_of_noise_and_labelled_not_comparable(vae, tiny_ckpt, scorer_file):
    from vaecli.scorer import load

    path, _ = scorer_file
    result = vae("evaluate", tiny_ckpt, "--fid", "--precision-recall", "--scorer", path, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["comparable_with_papers"] is False and "not comparable with Inception FID" in found["features"]
    net, _ = load(path)
    test = load_dataset("shapes", dict(TINY_DATA)).splits.test.images
    real = scores.features_of(net, test, len(test))
    noise = torch.rand(len(test), 1, 8, 8, generator=torch.Generator().manual_seed(0))
    against_noise = scores.compare(real, scores.features_of(net, noise, len(noise)))["fid"]
    assert 0 < found["fid"] < against_noise
    table = vae("evaluate", tiny_ckpt, "--fid", "--scorer", path, "--device", "cpu")
    assert table.exit_code == 0 and "FID" in table.stdout and "not comparable" in table.stdout


def test_a_scorer_of_other_images_is_one_line(vae, tiny_ckpt, tmp_path):
    from vaecli.scorer import train

    train("shapes", tmp_path / "s16.safetensors", options={"n_train": 64, "n_test": 16, "size": 16}, epochs=1)
    one_line_error(
        vae("evaluate", tiny_ckpt, "--fid", "--scorer", tmp_path / "s16.safetensors"), 2, "takes 1x16x16 images"
    )
    Path("fake.safetensors").write_bytes(b"{}")
    assert vae("evaluate", tiny_ckpt, "--fid", "--scorer", "fake.safetensors").exit_code != 0
