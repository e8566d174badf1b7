"""The plugin contract of vaecli: the hooks a plugin implements and the specs it registers.

A plugin is a module (or object) with functions marked ``@vaecli.hookimpl``, made known to
vaecli through an entry point in the group ``vaecli``::

    # pyproject.toml of a plugin distribution
    [project.entry-points.vaecli]
    myarch = "myarch_package"

    # myarch_package/__init__.py
    import vaecli

    @vaecli.hookimpl
    def register_architectures(register):
        register(vaecli.ArchitectureSpec(name="myarch", help="...", build=build))

The built-in model families, architectures, likelihoods, datasets and recipes (``vaecli.builtin``) are
registered through these same hooks. This module imports no torch, so that loading plugins stays cheap;
register specs whose ``build``/``load`` functions import heavy libraries when they are called.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import typer
    from torch import nn

PROJECT = "vaecli"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class NoOptions:
    """Options of a part that takes none."""


# --------------------------------------------------------------------------------------------
# Specs: what a plugin registers.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """What an architecture must fit (more fields may come; they will have defaults).

    ``input_shape``: ``(C, H, W)`` of the images, or ``(F,)`` for rows (vectors, counts and
    tables: F model inputs per row, a table's categories one-hot); ``latent_dim``: D;
    ``params_per_pixel``: P, the likelihood parameters per image channel and pixel (per input
    of a row); ``num_classes``: K, 0 for an unconditional model; ``layout``: for rows, the
    ``vaecli.kinds.Layout`` of the inputs (their columns, types and scaling; rows may hold NaN
    for missing cells, which an encoder should read as 0), None for images. For a class-conditional model (``vae train --model cvae``, K > 0) the
    encoder is called as ``encoder(x, y)`` and the decoder as ``decoder(z, y)``, with ``y`` the
    one-hot labels ``(B, K)`` (floats); only architectures registered with
    ``conditional=True`` are asked to build one.
    """

    input_shape: tuple
    latent_dim: int
    params_per_pixel: int = 1
    num_classes: int = 0
    layout: Any = None


KINDS = ("image", "vector", "counts", "table")  # the kinds of data (``vaecli.kinds``)


@dataclass(frozen=True)
class Column:
    """One column of rows a dataset returns: its ``name``, its ``type`` (``numeric``: real
    values; ``categorical``: one of ``categories``, stored as its index; ``binary``: 0 or 1;
    ``count``: a non-negative integer), and for a categorical column its ``categories`` (text,
    in the order of their indices)."""

    name: str
    type: str = "numeric"
    categories: tuple = ()


@dataclass(frozen=True)
class ArchitectureSpec:
    """An encoder/decoder pair.

    ``build(shape, options)`` gets a ``ModelShape`` and an instance of the ``options``
    dataclass (fields with defaults, set by the user with ``--arch-option KEY=VALUE``) and
    returns ``(encoder, decoder)``, two ``torch.nn.Module``:

    - the encoder maps images ``(B, C, H, W)`` (floats, preprocessed) to ``(mean, logvar)``,
      each ``(B, latent_dim)``;
    - the decoder maps ``z`` ``(B, latent_dim)`` to likelihood parameters
      ``(B, P * C, H, W)``; channel ``p * C + c`` holds parameter ``p`` of image channel ``c``.

    ``conditional``: the architecture can build a class-conditional pair (``shape.num_classes``
    > 0; see ``ModelShape``). ``kinds``: the kinds of data it takes (``image``, ``vector``,
    ``counts``, ``table``); for rows, the encoder gets ``(B, F)`` and the decoder returns
    ``(B, P * F)``.
    """

    name: str
    help: str
    build: Callable[[ModelShape, Any], tuple[nn.Module, nn.Module]]
    options: type = NoOptions
    conditional: bool = False
    kinds: tuple = ("image",)


@dataclass(frozen=True)
class ModelSpec:
    """A model family (``vae train --model NAME``): what the model is made of beyond its
    encoder, decoder and likelihood, its loss, its prior, and how to estimate log p(x).

    ``family``: a subclass of ``vaecli.VAE``, or its import path ``"package.module:Class"``
    (imported when a model is built, so that listing plugins stays cheap). It is built as
    ``family(encoder, decoder, likelihood, latent_dim, input_shape, num_classes=K,
    options=OPTIONS)`` and overrides what differs from the VAE: ``loss`` (named per-example
    terms and the objective), ``prior_sample`` and ``log_prior``, ``log_weights`` (importance
    weights for ``vae evaluate``), ``parameter_groups`` (parameters with an objective of their
    own, such as a discriminator), and the class attributes ``TERMS``, ``OBJECTIVE_SETTINGS``,
    ``HAS_LIKELIHOOD`` and ``STOCHASTIC``. See docs/models.md for the contract and an example.

    ``options``: a dataclass of the family's options (``--model-option KEY=VALUE``).
    ``conditional``: the family is conditioned on the class (``num_classes`` > 0; it needs a
    dataset with labels and an architecture registered with ``conditional=True``).
    """

    name: str
    help: str
    family: Any
    options: type = NoOptions
    conditional: bool = False


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler of latent codes for ``vae sample --sampler NAME``: a density fitted, after
    training, to the codes of the training images (a Gaussian mixture, a flow, a second VAE, an
    autoregressive model of discrete codes), decoded by the model.

    ``sampler``: a subclass of ``vaecli.samplers.Sampler``, or its import path
    ``"package.module:Class"``; it says which models it fits (``refuses``), what it fits on
    (``codes``), how (``fit``) and how it draws (``sample``). A fitted sampler is saved beside
    the checkpoint and reused. ``options``: a dataclass (``--sampler-option KEY=VALUE``).
    """

    name: str
    help: str
    sampler: Any
    options: type = NoOptions


@dataclass(frozen=True)
class LikelihoodSpec:
    """A decoder likelihood p(x | z).

    ``build(options)`` returns a ``vaecli.Likelihood`` (a ``torch.nn.Module``; it may hold
    learned parameters, such as a shared sigma) that says how many parameters per pixel it
    needs and gives ``log_prob(x, params)`` summed per example, ``mean(params)`` and
    ``sample(params)``. For rows, vaecli then calls its ``bind(layout)`` with the data's
    ``vaecli.kinds.Layout`` (columns, scaling, whether cells are missing) before training or
    loading, where it may create parameters of the data's width.

    ``data_range`` names the values it models (images arrive as 8-bit images scaled to [0, 1];
    the numeric columns of rows standardised, counts as they are):

    - ``"binary"``: {0, 1}; ``--binarize static|dynamic`` is only for these. Without it, grey
      levels are accepted as the usual relaxation (a cross-entropy, not a normalised likelihood);
    - ``"unit"``: a density over [0, 1] (refuses binarized data, where it is unbounded);
    - ``"8bit"``: a distribution over the 256 levels k/255 (refuses binarized data);
    - ``"real"``: a density over the real line (images, vectors, a table's numeric columns);
    - ``"count"``: a distribution over the non-negative integers (counts);
    - ``"table"``: a table of typed columns, one term per column.
    """

    name: str
    help: str
    build: Callable[[Any], Any]
    options: type = NoOptions
    data_range: str = "unit"


DATA_RANGES = ("binary", "unit", "8bit", "real", "count", "table")


@dataclass
class Split:
    """One split of a dataset held in memory.

    ``images``: the examples: uint8 images ``(N, C, H, W)``, or, for a dataset that returns
    ``columns``, float32 rows ``(N, len(columns))`` (a categorical cell holds its category's
    index, a missing cell NaN); ``labels``: int64 tensor ``(N,)`` or None;
    ``factors``: named per-example values (for example a shape's scale and rotation), each a
    tensor ``(N,)``, for colouring latent plots.
    """

    images: torch.Tensor
    labels: Optional[torch.Tensor] = None
    factors: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class DatasetSplits:
    """What a dataset loader returns: a train and a test split, optional class names, and
    ``notes``: things the user should hear once (``"skipped 2 files: a.txt, b.png"``).
    ``sha256`` is left to vaecli (which computes it from the tensors, or keeps it in its cache).

    Rows: ``columns`` (a list of ``Column``) says the splits hold rows, not images, and ``kind``
    which kind of rows: ``vector`` (real values), ``counts`` (integer counts) or ``table``
    (named columns of several types). vaecli learns the scaling of the numeric columns on the
    train split, records it in the checkpoint and undoes it on output."""

    train: Split
    test: Split
    class_names: Optional[list] = None
    notes: list = field(default_factory=list)
    sha256: Optional[str] = None  # the content's digest (``vaecli.datacache.digest``), where known
    columns: Optional[list] = None
    kind: str = "image"
    held_out: Any = (
        None  # rows from one file split by a seeded draw: which rows of the file are the test split (N,) bool
    )


@dataclass(frozen=True)
class DataRequest:
    """Where a loader finds its files and whether it may download them."""

    data_dir: Path
    download: bool = True


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: ``load(request, options)`` returns ``DatasetSplits``.

    Raise ``vaecli.errors.DataUnavailableError`` when the files are missing and may not be
    downloaded, with a message saying where they were looked for, and ``UsageError`` for
    unusable input (an empty folder, a wrong array shape).

    ``argument``: the name of an option that ``NAME:VALUE`` sets, so that ``folder:PATH`` means
    the dataset ``folder`` with ``path=PATH``; empty when the dataset takes no argument.
    """

    name: str
    help: str
    load: Callable[[DataRequest, Any], DatasetSplits]
    options: type = NoOptions
    argument: str = ""


@dataclass(frozen=True)
class RecipeSpec:
    """A named set of training settings that ``vae train --recipe NAME`` applies, so that a
    model from a paper is one command; flags the user types still win.

    ``settings`` maps ``vaecli.TrainConfig`` field names to values, as a TOML recipe file
    writes them: ``dataset``, ``dataset_options``, ``arch``, ``arch_options`` (a dict such as
    ``{"hidden": [400], "activation": "relu"}``), ``likelihood``, ``likelihood_options``,
    ``model``, ``latent_dim``, ``epochs``, ``batch_size``, ``lr``, ``optimizer``,
    ``weight_decay``, ``lr_schedule``, ``lr_step``, ``lr_gamma``, ``lr_milestones``,
    ``grad_clip``, ``beta``, ``kl_warmup``, ``free_bits``, ``iw_samples``, ``binarize``,
    ``seed``. They are checked when the recipe is used (an unknown key is an error naming it);
    the machine and the files of a run (``device``, ``precision``, ``compile``, ``data_dir``,
    ``download``, ``out``, ``force``, ``save_every``, ``max_memory``, ``viz_dir``, ``tensorboard``) are not a
    recipe's to set.

    ``help``: one line; ``source``: where the settings come from (a citation, and any way in
    which they differ from it); ``published``: optional, the figure the source reports, e.g.
    ``{"nll": 89.78, "iw_samples": 200, "epochs": 500}`` (numbers or strings), which
    ``vae recipes`` and ``benchmarks/quality.py`` compare with.
    """

    name: str
    help: str
    source: str
    settings: dict = field(default_factory=dict)
    published: Optional[dict] = None


# --------------------------------------------------------------------------------------------
# Hooks: what a plugin implements.
# --------------------------------------------------------------------------------------------


@hookspec
def register_architectures(register: Callable[[ArchitectureSpec], None]) -> None:
    """Register encoder/decoder architectures: call ``register(ArchitectureSpec(...))``."""


@hookspec
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register model families: call ``register(ModelSpec(...))``."""


@hookspec
def register_samplers(register: Callable[[SamplerSpec], None]) -> None:
    """Register latent samplers: call ``register(SamplerSpec(...))``."""


@hookspec
def register_likelihoods(register: Callable[[LikelihoodSpec], None]) -> None:
    """Register decoder likelihoods: call ``register(LikelihoodSpec(...))``."""


@hookspec
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register datasets: call ``register(DatasetSpec(...))``."""


@hookspec
def register_recipes(register: Callable[[RecipeSpec], None]) -> None:
    """Register named training recipes: call ``register(RecipeSpec(...))``."""


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add subcommands to ``vae``: decorate functions with ``@app.command()``."""
