"""vaecli-resnet: a residual convolutional encoder/decoder for vaecli, ``vae train --arch resnet``.

Encoder: a 3x3 stem convolution, then one stage per entry of ``channels``: a stride-2 3x3
convolution to the stage's channels that halves the sides (rounding up), then ``blocks``
pre-activation residual blocks (x + (GroupNorm -> SiLU -> conv 3x3) twice); then GroupNorm ->
SiLU -> flatten [+ one-hot y] -> linear to (mean, logvar). The decoder mirrors it: z [+ y] ->
linear -> the encoder's last feature map, then per stage residual blocks and a nearest-neighbour
upsampling (plus a 3x3 convolution) to the exact size the encoder had there, so odd sides come
back exactly; then GroupNorm -> SiLU -> conv 3x3 to the P * C likelihood parameters.

GroupNorm, not BatchNorm: no batch statistics, so training and evaluation agree and the batch
size does not matter. Importing this module imports no torch; the modules live in ``nets.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

import vaecli

try:
    __version__ = metadata.version("vaecli-resnet")
except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
    __version__ = "0.0.0"


@dataclass(frozen=True)
class ResNetOptions:
    """``channels``: channels of each stage, one stage (a stride-2 downsampling, then residual
    blocks) per entry, so 3 entries shrink 32x32 to 4x4 and 8x8 to 1x1; ``blocks``: residual
    blocks per stage; ``groups``: GroupNorm groups (a layer whose channel count it does not
    divide uses their greatest common divisor)."""

    channels: tuple[int, ...] = (16, 32, 64)
    blocks: int = 1
    groups: int = 8

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError("channels needs at least one entry, e.g. channels=16,32,64")
        if any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive, got channels={','.join(str(c) for c in self.channels)}")
        if self.blocks < 1:
            raise ValueError(f"blocks must be at least 1, got blocks={self.blocks}")
        if self.groups < 1:
            raise ValueError(f"groups must be at least 1, got groups={self.groups}")


def build_resnet(shape: vaecli.ModelShape, options: ResNetOptions):
    from .nets import ResNetDecoder, ResNetEncoder, stage_sides

    sides = stage_sides(*shape.input_shape[1:], options.channels)  # ValueError if too small
    return (
        ResNetEncoder(shape.input_shape, shape.latent_dim, options, sides, shape.num_classes),
        ResNetDecoder(shape.input_shape, shape.latent_dim, shape.params_per_pixel, options, sides, shape.num_classes),
    )


@vaecli.hookimpl
def register_architectures(register):
    register(
        vaecli.ArchitectureSpec(
            name="resnet",
            help="Residual conv encoder/decoder (GroupNorm, SiLU, stride-2 stages); for 32x32 and 64x64 "
            "RGB, adapts to any image size.",
            build=build_resnet,
            options=ResNetOptions,
            conditional=True,
        )
    )
