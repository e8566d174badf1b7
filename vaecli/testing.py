"""Contract checks for plugin authors: call them from your plugin's tests.

Each check goes through vaecli's plugin registry, so it also proves that the installed entry
point registers the part under the name you expect, and it fails with an ``AssertionError``
that says which part of the contract (``vaecli.hookspecs``) was broken::

    from vaecli import testing

    def test_my_architecture():
        testing.check_architecture("myarch", input_shape=(3, 32, 32))

    def test_my_family(tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)  # it writes checkpoints and pictures here
        testing.check_family("myfamily", options={"k": 3})

    def test_train_through_the_cli():
        result = testing.invoke("train", "shapes", "--arch", "myarch", "--epochs", "1")
        assert result.exit_code == 0, result.output

Checks run on the CPU with tiny batches; they take a second or so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from .factory import create_model
from .hookspecs import DatasetSplits
from .model import VAE
from .plugins import registry

__all__ = ["check_architecture", "check_likelihood", "check_dataset", "check_recipe", "check_family", "invoke"]


def _registered(kind: str, name: str):
    reg = registry()
    assert name in reg.parts[kind], (
        f"no {kind} '{name}' is registered; registered: {', '.join(reg.names(kind))}"
        + "".join(f"\n  plugin {p.label}: {'; '.join(p.errors)}" for p in reg.plugins if p.errors)
    )
    return reg.parts[kind][name]


def check_architecture(
    name: str,
    input_shape: tuple = (1, 28, 28),
    *,
    latent_dim: int = 4,
    options: Optional[dict] = None,
    likelihood: str = "bernoulli",
    likelihood_options: Optional[dict] = None,
    num_classes: int = 0,
    batch: int = 3,
) -> VAE:
    """Build architecture ``name`` into a VAE as ``vae train`` does and check the contract:
    the encoder gives ``(mean, logvar)`` of shape ``(B, latent_dim)``, the decoder gives
    likelihood parameters ``(B, P * C, H, W)``, the objective is finite and every parameter gets a
    gradient, and a second build has the same parameter names and shapes (so checkpoints load).
    With ``num_classes`` > 0 the class-conditional variant is checked. Returns the model."""
    spec = _registered("architecture", name).spec
    if num_classes:
        assert spec.conditional, f"architecture '{name}' is not registered with conditional=True"
    config = {
        "architecture": {"name": name, "options": dict(options or {})},
        "likelihood": {"name": likelihood, "options": dict(likelihood_options or {})},
        "input_shape": list(input_shape),
        "latent_dim": latent_dim,
        "kind": "cvae" if num_classes else "vae",  # the built-in families that use the architecture as it is
        "num_classes": num_classes,
    }
    torch.manual_seed(0)
    model = create_model(config)
    c, h, w = input_shape
    x = torch.rand(batch, c, h, w)
    if registry().get("likelihood", likelihood).spec.data_range == "binary":
        x = x.round()
    y = torch.arange(batch) % num_classes if num_classes else None
    onehot = model.one_hot(y, batch) if num_classes else None
    args = (onehot,) if num_classes else ()

    mean, logvar = model.encoder(x, *args)
    assert tuple(mean.shape) == (batch, latent_dim), (
        f"encoder mean has shape {tuple(mean.shape)}, expected {(batch, latent_dim)}"
    )
    assert tuple(logvar.shape) == (batch, latent_dim), (
        f"encoder logvar has shape {tuple(logvar.shape)}, expected {(batch, latent_dim)}"
    )
    params = model.decoder(mean, *args)
    expected = (batch, model.likelihood.params_per_pixel * c, h, w)
    assert tuple(params.shape) == expected, f"decoder output has shape {tuple(params.shape)}, expected {expected}"

    model.train()
    terms = model(x, labels=y)
    assert torch.isfinite(terms.objective).all(), "the objective is not finite"
    terms.objective.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters that get no gradient: {', '.join(missing)}"

    again = create_model(config)
    first = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    second = {k: tuple(v.shape) for k, v in again.state_dict().items()}
    assert first == second, "two builds with the same options differ in parameter names or shapes"
    return model.eval()


def likelihoods_for(kind: str = "image") -> list:
    """The registered likelihoods that model ``kind`` (image, vector, counts, table)."""
    from .kinds import accepts

    reg = registry()
    return [n for n in reg.names("likelihood") if reg.get("likelihood", n).spec.data_range in accepts(kind)]


def architectures_for(kind: str = "image") -> list:
    """The registered architectures that take ``kind``."""
    reg = registry()
    return [
        n for n in reg.names("architecture") if kind in getattr(reg.get("architecture", n).spec, "kinds", ("image",))
    ]


def example_rows(kind: str, n: int = 64, seed: int = 0) -> tuple[Any, Any]:
    """A small ``Layout`` of ``kind`` (vector, counts; a table has a numeric, a categorical, a
    binary and a count column) and ``n`` random raw rows of it, one cell in 16 missing."""
    from . import kinds
    from .hookspecs import Column

    gen = torch.Generator().manual_seed(seed)
    if kind == "table":
        columns = [
            Column("x", "numeric"),
            Column("c", "categorical", ("a", "b", "c")),
            Column("b", "binary"),
            Column("k", "count"),
        ]
        raw = torch.stack(
            [
                torch.randn(n, generator=gen) * 3 + 10,
                torch.randint(0, 3, (n,), generator=gen).float(),
                torch.randint(0, 2, (n,), generator=gen).float(),
                torch.poisson(torch.full((n,), 2.0), generator=gen),
            ],
            dim=1,
        )
    elif kind == "counts":
        columns = [Column(f"x{j}", "count") for j in range(4)]
        raw = torch.poisson(torch.full((n, 4), 3.0), generator=gen)
    else:
        columns = [Column(f"x{j}", "numeric") for j in range(4)]
        raw = torch.randn(n, 4, generator=gen)
    raw[torch.rand(raw.shape, generator=gen) < 1 / 16] = float("nan")
    raw[0] = raw[0].nan_to_num(0.0)  # no column empty, whatever the draw
    return kinds.learn(kind, columns, raw), raw


def check_likelihood(
    name: str, input_shape: tuple = (1, 4, 4), *, options: Optional[dict] = None, batch: int = 3
) -> Any:
    """Build likelihood ``name`` and check the contract on random parameters ``(B, P, C, H, W)``
    (for a likelihood of rows, ``(B, P, F)`` of an ``example_rows`` layout, after ``bind``):
    ``log_prob`` gives one finite value per example, ``mean`` and ``sample`` have the data's
    shape, and for the bounded data ranges they lie in [0, 1]. Returns the built likelihood."""
    from . import kinds
    from . import options as opts

    spec = _registered("likelihood", name).spec
    lik = spec.build(opts.build(spec.options, dict(options or {}), f"likelihood '{name}'"))
    p = lik.params_per_pixel
    assert isinstance(p, int) and p >= 1, f"params_per_pixel must be a positive int, got {p!r}"
    torch.manual_seed(0)
    if spec.data_range in ("count", "table"):  # rows: an example layout, bound first
        layout, raw = example_rows("counts" if spec.data_range == "count" else "table", batch)
        lik.bind(layout)
        shape: tuple = (layout.features,)
        x = kinds.to_model(layout, raw)
    else:
        lik.bind(None)
        shape = tuple(input_shape)
        x = torch.rand(batch, *shape)
        if spec.data_range == "binary":
            x = x.round()
        elif spec.data_range == "8bit":
            x = (x * 255).round() / 255
    params = torch.randn(batch, lik.params_per_pixel, *shape, requires_grad=True)  # as the VAE passes them
    log_prob = lik.log_prob(x, params)
    assert tuple(log_prob.shape) == (batch,), f"log_prob has shape {tuple(log_prob.shape)}, expected {(batch,)}"
    assert torch.isfinite(log_prob).all(), "log_prob is not finite"
    log_prob.sum().backward()
    assert params.grad is not None and torch.isfinite(params.grad).all(), "log_prob has no finite gradient"
    with torch.no_grad():
        for what, method in (("mean", lik.mean), ("sample", lik.sample)):
            value = method(params)
            assert tuple(value.shape) == (batch, *shape), (
                f"{what} has shape {tuple(value.shape)}, expected {(batch, *shape)}"
            )
            assert torch.isfinite(value).all(), f"{what} is not finite"
            if spec.data_range in ("binary", "unit", "8bit"):
                assert value.min() >= 0 and value.max() <= 1, f"{what} leaves [0, 1]"
    return lik


def check_dataset(
    name: str, *, options: Optional[dict] = None, data_dir: Optional[Path] = None, download: bool = False
) -> DatasetSplits:
    """Load dataset ``name`` as ``vae train`` does, which refuses images that are not uint8
    ``(N, C, H, W)``, empty splits, splits of two shapes and labels of another length (a
    ``VaeError``); then check what the loader leaves to ``vae train --model cvae``: int64 labels
    from 0, with a class name for every label. Returns the splits."""
    from .data import load_dataset

    _registered("dataset", name)
    loaded = load_dataset(name, dict(options or {}), data_dir, download)
    splits = loaded.splits
    if splits.columns is not None:
        loaded.learn_layout()  # rows: every column has values, every type is known
    for which in ("train", "test"):
        labels = getattr(splits, which).labels
        if labels is not None:
            assert labels.dtype == torch.int64, f"{which} labels must be int64, not {labels.dtype}"
            assert int(labels.min()) >= 0, f"{which} labels must not be negative"
            if splits.class_names is not None:
                assert int(labels.max()) < len(splits.class_names), f"a {which} label has no class name"
    return splits


def check_recipe(name: str):
    """Check recipe ``name`` as ``vae train --recipe`` uses it, without training or loading
    data: its settings are ``TrainConfig`` fields of the right types, valid together, and its
    architecture, likelihood and their options build, and its dataset is registered; its
    ``published`` figure, if any, holds numbers or strings. Returns the ``TrainConfig``."""
    from .config import TrainConfig
    from .data import split_dataset_name
    from .errors import VaeError
    from .factory import model_section
    from .recipes import Recipe, apply

    found = _registered("recipe", name)
    recipe = Recipe(found.spec, provider=found.plugin.provider())
    try:
        config = apply(TrainConfig(), recipe, set())
        config.check()
        model_section(config)
        dataset, _ = split_dataset_name(config.dataset)
    except VaeError as exc:
        raise AssertionError(f"recipe '{name}': {exc}") from None
    _registered("dataset", dataset)
    for key, value in (found.spec.published or {}).items():
        assert isinstance(key, str) and isinstance(value, (int, float, str)), (
            f"recipe '{name}': published {key!r} must be a number or a string, got {value!r}"
        )
    return config


def invoke(*args: Any, **kwargs: Any):
    """Run ``vae ARGS...`` in this process, with plugin commands added, and return click's
    ``Result`` (``exit_code``, ``stdout``, ``stderr``, ``output``)."""
    from typer.testing import CliRunner

    from .cli import app

    registry().add_commands(app)
    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


TINY_RUN = (
    *("--data-option", "n_train=96", "--data-option", "n_test=48", "--data-option", "size=8"),
    *("--arch-option", "hidden=32", "--latent-dim", "4", "--batch-size", "32", "--device", "cpu"),
)


def _ok(*args: Any):
    result = invoke(*args)
    assert result.exit_code == 0, f"vae {' '.join(map(str, args))} failed:\n{result.output}"
    return result


def check_family(name: str, options: Optional[dict] = None, epochs: int = 3) -> VAE:
    """Train model family ``name`` on tiny shapes through ``vae train --model NAME`` (in the
    current folder) and check the contract: the reconstruction term falls over ``epochs``;
    every term of ``TERMS`` is logged; 1 epoch then ``--resume`` gives the run of ``epochs``
    straight, bit for bit (weights, optimizer, random state, metrics); and sample, encode,
    decode, reconstruct, interpolate, plot-latent and evaluate work on the checkpoint
    (evaluate reporting an NLL exactly when the family has a likelihood). Returns the model."""
    from . import checkpoint
    from .api import load, metadata

    _registered("model", name)
    args = [*TINY_RUN, "--model", name]
    for key, value in (options or {}).items():
        args += ["--model-option", f"{key}={value}"]
    _ok("train", "shapes", *args, "--epochs", str(epochs), "-o", "straight.safetensors")
    _ok("train", "shapes", *args, "--epochs", "1", "-o", "resumed.safetensors")
    _ok("train", "--resume", "resumed.safetensors", "--epochs", str(epochs))
    a, b = checkpoint.read("straight.safetensors"), checkpoint.read("resumed.safetensors")
    state = [k for k in a.tensors if k.split(".")[0] in ("model", "optim", "rng")]
    assert sorted(state) == sorted(k for k in b.tensors if k.split(".")[0] in ("model", "optim", "rng"))
    differ = [k for k in state if not torch.equal(a.tensors[k], b.tensors[k])]
    assert not differ, f"resuming is not exact: {', '.join(differ[:5])} differ"
    strip = lambda ms: [{k: v for k, v in m.items() if k != "seconds"} for m in ms]  # noqa: E731
    assert strip(a.meta["metrics"]) == strip(b.meta["metrics"]), "resumed metrics differ"

    meta = metadata("resumed.safetensors")
    first, last = meta["metrics"][0], meta["metrics"][-1]
    assert last["train_recon"] < first["train_recon"], f"the reconstruction did not fall: {first} -> {last}"
    model = load("resumed.safetensors")
    for term in model.TERMS:
        assert f"train_{term}" in last, f"term {term} is not logged"
    label = ["--label", "0"] if model.num_classes else []
    _ok("sample", "resumed.safetensors", "-n", "4", "-o", "s.png", *label)
    _ok("encode", "resumed.safetensors", "shapes:test", "-o", "z.npy")
    _ok("decode", "resumed.safetensors", "z.npy", "-o", "d.png", *label)
    _ok("reconstruct", "resumed.safetensors", "shapes:test", "-n", "4", "-o", "r.png")
    ends = [] if model.HAS_PRIOR else ["shapes:test:0", "shapes:test:1"]
    _ok("interpolate", "resumed.safetensors", *ends, "--steps", "3", "-o", "i.png", *label)
    _ok("plot-latent", "resumed.safetensors", "shapes:test", "-o", "p.png")
    import json

    numbers = json.loads(_ok("evaluate", "resumed.safetensors", "shapes:test", "-k", "4", "--json").stdout)
    assert ("nll" in numbers) == model.HAS_LIKELIHOOD, f"evaluate gave {sorted(numbers)}"
    return model
