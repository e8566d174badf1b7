"""Every registered architecture with every registered likelihood on several image sizes
(forward, backward, shapes), the class-conditional variants, the layers of `conv` for any image
size and its too-small error, option validation, and the parameter names of the MLP that
existing checkpoints rely on."""

from __future__ import annotations

import pytest
import torch

from vaecli import options
from vaecli.errors import UsageError
from vaecli.hookspecs import ModelShape
from vaecli.model import VAE
from vaecli.plugins import registry
from vaecli.testing import likelihoods_for

pytestmark = pytest.mark.usefixtures("one_thread")

# Tiny options of the built-ins, given as on the command line; other architectures use defaults.
TINY = {
    "mlp": {"hidden": "16"},
    "conv": {"channels": "4,8", "hidden": "16"},
}
# Extra likelihood settings worth covering besides each likelihood's defaults.
EXTRA_LIKELIHOODS = {"gaussian": [{"learn_sigma": "pixel"}]}
SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8), (1, 7, 7), (3, 13, 20)]
LATENT = 3
BATCH = 4


def _architectures():
    return registry().names("architecture")


def _conditional_architectures():
    reg = registry()
    return [n for n in reg.names("architecture") if reg.get("architecture", n).spec.conditional]


def _likelihood_cases():
    cases = []
    for name in likelihoods_for("image"):
        cases.append(pytest.param(name, {}, id=name))
        for extra in EXTRA_LIKELIHOODS.get(name, []):
            label = ",".join(f"{k}={v}" for k, v in extra.items())
            cases.append(pytest.param(name, extra, id=f"{name}({label})"))
    return cases


def _arch(name, **overrides):
    spec = registry().get("architecture", name).spec
    values = {**TINY.get(name, {}), **overrides}
    return spec, options.build(spec.options, values, f"architecture '{name}'")


def _build(name, shape, params_per_pixel=1, num_classes=0, latent=LATENT, **overrides):
    spec, opts = _arch(name, **overrides)
    return spec.build(ModelShape(tuple(shape), latent, params_per_pixel, num_classes), opts)


def _likelihood(name, values):
    spec = registry().get("likelihood", name).spec
    return spec.build(options.build(spec.options, values, f"likelihood '{name}'"))


def _images(shape, n=BATCH, seed=0):
    """Pixels on the 8-bit grid k/255, valid for every data range."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=g).float() / 255


def _one_hot(labels, k):
    return torch.nn.functional.one_hot(torch.as_tensor(labels), k).float()


def _shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


# -- every architecture x likelihood x image size -----------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("lik_name,lik_values", _likelihood_cases())
@pytest.mark.parametrize("arch", _architectures())
def test_forward_backward(arch, lik_name, lik_values, shape):
    torch.manual_seed(0)
    likelihood = _likelihood(lik_name, lik_values)
    p = likelihood.params_per_pixel
    encoder, decoder = _build(arch, shape, params_per_pixel=p)
    model = VAE(encoder, decoder, likelihood, LATENT, shape)
    x = _images(shape)

    mean, logvar = model.encoder(x)
    assert mean.shape == logvar.shape == (BATCH, LATENT)
    c, h, w = shape
    assert model.decoder(mean).shape == (BATCH, p * c, h, w)

    terms = model(x, generator=torch.Generator().manual_seed(1))
    assert terms.recon.shape == terms.kl.shape == (BATCH,)
    assert torch.isfinite(terms.objective)
    terms.objective.backward()
    params = {n: q for n, q in model.named_parameters() if q.requires_grad}
    missing = [n for n, q in params.items() if q.grad is None or not torch.isfinite(q.grad).all()]
    assert params and not missing, f"no finite gradient for {missing}"
    assert any(q.grad.abs().sum() > 0 for q in params.values())


# -- class-conditional ----------------------------------------------------------------------------


def test_the_builtins_are_registered_as_conditional():
    reg = registry()
    for name in ("mlp", "conv"):
        spec = reg.get("architecture", name).spec
        assert spec.conditional, name
        assert spec.help and "\n" not in spec.help
    assert reg.get("architecture", "conv").spec.help.startswith("Convolutional encoder")


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 13, 20), (1, 8, 8)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("arch", _conditional_architectures())
def test_conditional_outputs_depend_on_the_label(arch, shape):
    torch.manual_seed(0)
    k, p = 3, 2
    encoder, decoder = _build(arch, shape, params_per_pixel=p, num_classes=k)
    x = _images(shape)
    y = _one_hot([0, 1, 2, 0], k)
    y_other = _one_hot([1, 2, 0, 2], k)
    z = torch.randn(BATCH, LATENT)

    mean, logvar = encoder(x, y)
    assert mean.shape == logvar.shape == (BATCH, LATENT)
    out = decoder(z, y)
    assert out.shape == (BATCH, p * shape[0], *shape[1:])

    other_mean, _ = encoder(x, y_other)
    assert not torch.allclose(mean, other_mean)
    other_out = decoder(z, y_other)
    assert (out - other_out).flatten(1).abs().amax(1).min() > 0  # every example changed
    # The label alone selects the output: the same label gives the same output.
    torch.testing.assert_close(decoder(z, y.clone()), out)

    (mean.sum() + logvar.sum() + out.sum()).backward()
    for module in (encoder, decoder):
        for n, q in module.named_parameters():
            assert q.grad is not None and torch.isfinite(q.grad).all(), n


@pytest.mark.parametrize("arch", _conditional_architectures())
def test_conditional_modules_need_their_labels(arch):
    shape = (1, 8, 8)
    encoder, decoder = _build(arch, shape, num_classes=3)
    x, z = _images(shape), torch.zeros(BATCH, LATENT)
    with pytest.raises(TypeError, match=r"class-conditional \(3 classes\).*\(B, 3\)"):
        encoder(x)
    with pytest.raises(TypeError, match="class-conditional"):
        decoder(z)
    with pytest.raises(ValueError, match=r"shape \(4, 3\), got \(4, 5\)"):
        decoder(z, _one_hot([0, 1, 2, 4], 5))
    with pytest.raises(ValueError, match=r"got \(4,\)"):
        encoder(x, torch.tensor([0, 1, 2, 0]))

    plain_encoder, plain_decoder = _build(arch, shape)
    with pytest.raises(TypeError, match="unconditional"):
        plain_encoder(x, _one_hot([0, 1, 2, 0], 3))
    with pytest.raises(TypeError, match="unconditional"):
        plain_decoder(z, _one_hot([0, 1, 2, 0], 3))


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_labels_widen_only_the_first_fully_connected_layers(arch):
    shape, k = (3, 13, 20), 5
    plain = [_shapes(m) for m in _build(arch, shape)]
    cond = [_shapes(m) for m in _build(arch, shape, num_classes=k)]
    first = {"mlp": ("body.1.weight", "body.0.weight"), "conv": ("body.0.weight", "body.0.weight")}[arch]
    for before, after, key in zip(plain, cond, first):
        assert before.keys() == after.keys()
        for name in before:
            if name == key:
                assert after[name] == (before[name][0], before[name][1] + k)
            else:
                assert after[name] == before[name], name


# -- the MLP keeps the parameter names of existing checkpoints -------------------------------------


def test_unconditional_mlp_state_dict_is_unchanged():
    """The keys and shapes the MLP had before conditioning existed (checkpoints store them)."""
    encoder, decoder = _build("mlp", (1, 28, 28), latent=20, hidden="400")
    assert _shapes(encoder) == {
        "body.1.weight": (400, 784),
        "body.1.bias": (400,),
        "head.weight": (40, 400),
        "head.bias": (40,),
    }
    assert _shapes(decoder) == {
        "body.0.weight": (400, 20),
        "body.0.bias": (400,),
        "head.weight": (784, 400),
        "head.bias": (784,),
    }
    encoder, decoder = _build("mlp", (3, 8, 8), params_per_pixel=2, latent=5, hidden="32,16")
    assert _shapes(encoder) == {
        "body.1.weight": (32, 192),
        "body.1.bias": (32,),
        "body.3.weight": (16, 32),
        "body.3.bias": (16,),
        "head.weight": (10, 16),
        "head.bias": (10,),
    }
    assert _shapes(decoder) == {
        "body.0.weight": (16, 5),
        "body.0.bias": (16,),
        "body.2.weight": (32, 16),
        "body.2.bias": (32,),
        "head.weight": (384, 32),
        "head.bias": (384,),
    }
    encoder, decoder = _build("mlp", (1, 4, 4), latent=2, hidden="")  # no hidden layer
    assert _shapes(encoder) == {"head.weight": (4, 16), "head.bias": (4,)}
    assert _shapes(decoder) == {"head.weight": (16, 2), "head.bias": (16,)}


# -- conv: layers and sizes --------------------------------------------------------------------------


def test_conv_defaults_on_64x64_rgb():
    torch.manual_seed(0)
    spec = registry().get("architecture", "conv").spec
    opts = spec.options()
    assert (opts.channels, opts.hidden, opts.activation) == ((32, 64), (256,), "relu")
    encoder, decoder = spec.build(ModelShape((3, 64, 64), 20, 1), opts)
    convs = [m for m in encoder.convs if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(3, 32), (32, 64)]
    assert encoder.body[0].in_features == 64 * 16 * 16
    mean, logvar = encoder(_images((3, 64, 64), n=2))
    assert mean.shape == logvar.shape == (2, 20)
    assert decoder.feature_shape == (64, 16, 16)
    assert decoder(mean).shape == (2, 3, 64, 64)


def test_conv_default_parameter_count_on_mnist():
    encoder, decoder = _build("conv", (1, 28, 28), latent=20, channels="32,64", hidden="256")
    count = sum(q.numel() for m in (encoder, decoder) for q in m.parameters())
    # convs 1->32->64 (544 + 32832), 64*7*7 -> 256 -> 40, 20 -> 256 -> 3136, transposed 64->32->1
    assert (
        count
        == 544
        + 32832
        + 3136 * 256
        + 256
        + 256 * 40
        + 40
        + 20 * 256
        + 256
        + 256 * 3136
        + 3136
        + 64 * 32 * 16
        + 32
        + 32 * 16
        + 1
        == 1_691_369
    )


def _max_layers(h, w):
    n, side = 0, min(h, w)
    while side >= 2:
        side, n = side // 2, n + 1
    return n


SIZES = [(h, w) for h in range(2, 18) for w in sorted({h, h + 3, 2 * h + 1})] + [(28, 20), (33, 65)]


@pytest.mark.parametrize("hidden", ["", "6"])
def test_conv_restores_every_size_with_the_most_layers_it_allows(hidden):
    torch.manual_seed(0)
    for h, w in SIZES:
        layers = _max_layers(h, w)
        encoder, decoder = _build(
            "conv", (2, h, w), params_per_pixel=2, latent=2, channels=",".join(["3"] * layers), hidden=hidden
        )
        sides, side = [], (h, w)
        for _ in range(layers):
            side = (side[0] // 2, side[1] // 2)
            sides.append(side)
        assert decoder.feature_shape == (3, *sides[-1]), (h, w)
        mean, _ = encoder(_images((2, h, w), n=2))
        assert mean.shape == (2, 2)
        assert decoder(mean).shape == (2, 4, h, w), (h, w)


def test_conv_without_hidden_layers():
    encoder, decoder = _build("conv", (1, 8, 8), channels="4,8", hidden="")
    assert len(encoder.body) == 0
    assert encoder.head.in_features == 8 * 2 * 2
    assert decoder.body[0].in_features == LATENT and decoder.body[0].out_features == 8 * 2 * 2


@pytest.mark.parametrize(
    "shape,channels,message",
    [
        (
            (1, 8, 8),
            "4,4,4,4",
            "8x8 images allow at most 3 stride-2 layers; channels has 4 (for example channels=4,4,4)",
        ),
        ((1, 7, 7), "4,8,16", "7x7 images allow at most 2 stride-2 layers; channels has 3"),
        ((3, 28, 20), "1,2,3,4,5", "28x20 images allow at most 4 stride-2 layers; channels has 5"),
        ((1, 3, 9), "4,8", "3x9 images allow at most 1 stride-2 layer; channels has 2"),
        ((1, 1, 9), "4", "1x9 images are too small for a stride-2 layer"),
    ],
)
def test_conv_refuses_images_too_small_for_its_layers(shape, channels, message):
    with pytest.raises(ValueError) as info:
        _build("conv", shape, channels=channels)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_too_small_is_one_user_error_naming_the_architecture():
    from vaecli.factory import create_model as from_config

    config = {
        "kind": "vae",
        "latent_dim": 2,
        "input_shape": [1, 8, 8],
        "architecture": {"name": "conv", "options": {"channels": [4, 4, 4, 4]}},
        "likelihood": {"name": "bernoulli", "options": {}},
    }
    with pytest.raises(
        UsageError,
        match=r"^architecture 'conv': 8x8 images allow at most 3 "
        r"stride-2 layers; channels has 4 \(for example channels=4,4,4\)$",
    ):
        from_config(config)


# -- options -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arch,values,message",
    [
        ("conv", {"channels": ""}, "channels needs at least one entry"),
        ("conv", {"channels": "32,0"}, "channels must be positive, got 32,0"),
        ("conv", {"hidden": "-1"}, r"hidden sizes must be positive \(hidden= for none\)"),
        ("conv", {"activation": "sigmoid"}, "activation must be one of relu, tanh"),
        ("conv", {"hidden": "1.5"}, "option hidden"),
        ("conv", {"kernel": "3"}, "has no option kernel"),
        ("mlp", {"hidden": "64,0"}, "hidden sizes must be positive"),
        ("mlp", {"activation": "swish"}, "activation must be one of"),
    ],
)
def test_option_errors_say_what_is_wrong(arch, values, message):
    spec = registry().get("architecture", arch).spec
    with pytest.raises(UsageError, match=f"^architecture '{arch}'.*{message}"):
        options.build(spec.options, values, f"architecture '{arch}'")


def test_conv_options_parse_from_the_command_line_and_check_themselves():
    spec = registry().get("architecture", "conv").spec
    opts = options.build(spec.options, {"channels": "16, 32,64", "hidden": "", "activation": "elu"}, "conv")
    assert (opts.channels, opts.hidden, opts.activation) == ((16, 32, 64), (), "elu")
    assert options.to_json(opts) == {"channels": (16, 32, 64), "hidden": (), "activation": "elu"}
    with pytest.raises(ValueError, match="channels needs at least one entry"):
        spec.options(channels=())
