"""Tests of the vaecli-resnet plugin: the architecture contract (vaecli.testing), the entry
point, option errors through the CLI, and end-to-end training, sampling and a cvae."""

from __future__ import annotations

from importlib import metadata

import pytest
import torch

import vaecli
from vaecli import testing
from vaecli.plugins import registry

SMALL = {"channels": "4,8", "groups": 2}  # two stages, quick to build and run
TINY_SHAPES = ("--data-option", "n_train=64", "--data-option", "n_test=32")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


SHAPES = [(3, 32, 32), (3, 64, 64), (1, 28, 28), (1, 8, 8), (3, 13, 20)]


@pytest.mark.parametrize("input_shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("likelihood, p", [("bernoulli", 1), ("gaussian", 1), ("logistic", 2)])
def test_contract(input_shape, likelihood, p):
    """P = 2 through the logistic (location, log-scale); check_architecture takes no likelihood
    options, so gaussian runs with its fixed sigma (P = 1)."""
    model = testing.check_architecture("resnet", input_shape, options=SMALL, likelihood=likelihood)
    assert model.likelihood.params_per_pixel == p
    with torch.no_grad():
        out = model.decoder(torch.zeros(2, 4))
    assert tuple(out.shape) == (2, p * input_shape[0], *input_shape[1:])


@pytest.mark.parametrize("input_shape", [(3, 32, 32), (1, 8, 8), (3, 13, 20)], ids=lambda s: "x".join(map(str, s)))
def test_conditional_contract_and_labels_matter(input_shape):
    model = testing.check_architecture("resnet", input_shape, options=SMALL, num_classes=3)
    z = torch.randn(2, 4)
    first, second = torch.eye(3)[[0, 0]], torch.eye(3)[[1, 1]]
    with torch.no_grad():
        assert not torch.allclose(model.decoder(z, first), model.decoder(z, second))
        x = torch.rand(2, *input_shape)
        assert not torch.allclose(model.encoder(x, first)[0], model.encoder(x, second)[0])
    with pytest.raises(TypeError, match="class-conditional"):
        model.decoder(z)


def test_default_options_on_rgb_32():
    model = testing.check_architecture("resnet", (3, 32, 32), latent_dim=8, likelihood="logistic", batch=2)
    names = dict(model.named_modules())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in names.values())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in names.values())
    # three stride-2 stages: 32x32 -> 4x4 with 64 channels, flattened into the linear layer
    assert model.encoder.head.in_features == 64 * 4 * 4
    assert model.encoder.head.out_features == 2 * 8
    assert model.decoder.feature_shape == (64, 4, 4)
    assert model.decoder.head.in_features == 8


def test_stage_sides_round_up_and_odd_sizes_come_back():
    from vaecli_resnet.nets import stage_sides

    assert stage_sides(13, 20, (4, 8, 8)) == [(13, 20), (7, 10), (4, 5), (2, 3)]
    assert stage_sides(8, 8, (4, 8, 8)) == [(8, 8), (4, 4), (2, 2), (1, 1)]
    with pytest.raises(ValueError, match="at most 3 stages.*channels=4,8,16$"):
        stage_sides(8, 8, (4, 8, 16, 32))
    with pytest.raises(ValueError, match="mlp"):
        stage_sides(1, 5, (4,))


def test_no_batch_statistics():
    """GroupNorm: an image's code does not depend on the rest of the batch, nor on train/eval."""
    model = testing.check_architecture("resnet", (1, 28, 28), options=SMALL)
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        alone = model.encoder(x[:1])[0]
        batch = model.encoder(x)[0][:1]
        model.train()
        training = model.encoder(x[:1])[0]
    torch.testing.assert_close(alone, batch, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(alone, training)


def test_found_through_its_entry_point():
    import vaecli_resnet

    registered = registry().get("architecture", "resnet")
    assert registered.plugin.distribution == "vaecli-resnet"
    assert registered.plugin.version == metadata.version("vaecli-resnet") == vaecli_resnet.__version__
    assert registered.spec.conditional is True
    entry_points = metadata.distribution("vaecli-resnet").entry_points
    assert [(e.group, e.name, e.value) for e in entry_points] == [("vaecli", "resnet", "vaecli_resnet")]


@pytest.mark.parametrize(
    "option, message",
    [
        ("channels=8,8,8,8", "8x8 images allow at most 3 stages"),
        ("channels=8,0", "channels must be positive"),
        ("channels=", "channels needs at least one entry"),
        ("blocks=0", "blocks must be at least 1"),
        ("groups=-2", "groups must be at least 1"),
        ("depth=3", "has no option depth"),
    ],
)
def test_bad_option_is_a_one_line_usage_error(in_tmp, option, message):
    result = testing.invoke(
        "train",
        "shapes",
        "--arch",
        "resnet",
        "--arch-option",
        option,
        *TINY_SHAPES,
        "--data-option",
        "size=8",
        "--epochs",
        "1",
        "--device",
        "cpu",
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert not list(in_tmp.iterdir())  # no checkpoint written


def test_train_sample_and_metadata_through_the_cli(in_tmp):
    ckpt = in_tmp / "resnet.safetensors"
    result = testing.invoke(
        "train",
        "shapes",
        "--arch",
        "resnet",
        "--arch-option",
        "channels=4,8",
        "--arch-option",
        "groups=2",
        *TINY_SHAPES,
        "--data-option",
        "size=16",
        "--epochs",
        "1",
        "--latent-dim",
        "4",
        "--device",
        "cpu",
        "-o",
        ckpt,
    )
    assert result.exit_code == 0, result.output
    result = testing.invoke("sample", ckpt, "-n", "4", "-o", "grid.png")
    assert result.exit_code == 0, result.output
    assert (in_tmp / "grid.png").stat().st_size > 0

    meta = vaecli.metadata(ckpt)
    arch = meta["model"]["architecture"]
    assert arch["name"] == "resnet"
    assert arch["provider"]["distribution"] == "vaecli-resnet"
    assert arch["provider"]["version"] == metadata.version("vaecli-resnet")
    assert arch["options"] == {"channels": [4, 8], "blocks": 1, "groups": 2}
    assert meta["model"]["input_shape"] == [1, 16, 16]

    model = vaecli.load(ckpt)  # rebuilt from the metadata through the plugin
    assert tuple(model.sample(3).shape) == (3, 1, 16, 16)


def test_cvae_trains_through_the_cli(in_tmp):
    result = testing.invoke(
        "train",
        "shapes",
        "--model",
        "cvae",
        "--arch",
        "resnet",
        "--arch-option",
        "channels=4,8",
        "--arch-option",
        "groups=2",
        *TINY_SHAPES,
        "--data-option",
        "size=16",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "-o",
        "c.safetensors",
    )
    assert result.exit_code == 0, result.output
    meta = vaecli.metadata(in_tmp / "c.safetensors")
    assert meta["model"]["kind"] == "cvae" and meta["model"]["num_classes"] > 0
    model = vaecli.load(in_tmp / "c.safetensors")
    assert model.encoder.num_classes == model.decoder.num_classes == meta["model"]["num_classes"]
