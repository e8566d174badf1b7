"""Built-in architectures (torch is imported only when a model is built).

Both are class-conditional on request (``shape.num_classes`` K > 0): the one-hot labels are
appended to the input of the first fully connected layer of the encoder and of the decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hookspecs import ArchitectureSpec, hookimpl

ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "silu", "leaky_relu", "softplus")


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")


@dataclass(frozen=True)
class MLPOptions:
    """``hidden``: sizes of the hidden layers (the decoder mirrors them); ``activation``: one of
    relu, tanh, elu, gelu, silu, leaky_relu, softplus."""

    hidden: tuple[int, ...] = (400,)
    activation: str = "relu"

    def __post_init__(self) -> None:
        _check_activation(self.activation)
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be positive, got {self.hidden}")


def build_mlp(shape, options: MLPOptions):
    from ..nets import MLPDecoder, MLPEncoder

    return (
        MLPEncoder(
            shape.input_shape, shape.latent_dim, options.hidden, options.activation, num_classes=shape.num_classes
        ),
        MLPDecoder(
            shape.input_shape,
            shape.latent_dim,
            shape.params_per_pixel,
            options.hidden,
            options.activation,
            num_classes=shape.num_classes,
        ),
    )


@dataclass(frozen=True)
class ConvOptions:
    """``channels``: output channels of the stride-2 convolutions, each halving the height and
    width (the decoder mirrors them with transposed convolutions); ``hidden``: sizes of the
    fully connected layers between the feature map and the latent code (empty: none), as in mlp;
    ``activation``: one of relu, tanh, elu, gelu, silu, leaky_relu, softplus."""

    channels: tuple[int, ...] = (32, 64)
    hidden: tuple[int, ...] = (256,)
    activation: str = "relu"

    def __post_init__(self) -> None:
        _check_activation(self.activation)
        if not self.channels:
            raise ValueError("channels needs at least one entry, e.g. channels=32,64")
        if any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive, got {','.join(str(c) for c in self.channels)}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be positive (hidden= for none), got {self.hidden}")


def build_conv(shape, options: ConvOptions):
    from ..nets import ConvDecoder, ConvEncoder

    return (
        ConvEncoder(
            shape.input_shape,
            shape.latent_dim,
            options.channels,
            options.hidden,
            options.activation,
            num_classes=shape.num_classes,
        ),
        ConvDecoder(
            shape.input_shape,
            shape.latent_dim,
            shape.params_per_pixel,
            options.channels,
            options.hidden,
            options.activation,
            num_classes=shape.num_classes,
        ),
    )


@hookimpl
def register_architectures(register):
    register(
        ArchitectureSpec(
            name="mlp",
            help="Fully connected encoder and decoder (default: one hidden layer of 400 ReLU units); images and rows.",
            build=build_mlp,
            options=MLPOptions,
            conditional=True,
            kinds=("image", "vector", "counts", "table"),
        )
    )
    register(
        ArchitectureSpec(
            name="conv",
            help="Convolutional encoder (stride-2 convs) and transposed-conv decoder; adapts to any image size.",
            build=build_conv,
            options=ConvOptions,
            conditional=True,
        )
    )
