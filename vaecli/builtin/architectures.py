"""Built-in architectures (torch is imported only when a model is built)."""

from __future__ import annotations

from dataclasses import dataclass

from ..hookspecs import ArchitectureSpec, hookimpl

ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "silu", "leaky_relu", "softplus")


@dataclass(frozen=True)
class MLPOptions:
    """``hidden``: sizes of the hidden layers (the decoder mirrors them); ``activation``: one of
    relu, tanh, elu, gelu, silu, leaky_relu, softplus."""

    hidden: tuple[int, ...] = (400,)
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be positive, got {self.hidden}")


def build_mlp(shape, options: MLPOptions):
    from .nets import MLPDecoder, MLPEncoder

    return (
        MLPEncoder(shape.input_shape, shape.latent_dim, options.hidden, options.activation),
        MLPDecoder(shape.input_shape, shape.latent_dim, shape.params_per_pixel, options.hidden,
                   options.activation),
    )


@hookimpl
def register_architectures(register):
    register(ArchitectureSpec(
        name="mlp",
        help="Fully connected encoder and decoder (default: one hidden layer of 400 ReLU units).",
        build=build_mlp,
        options=MLPOptions,
    ))
