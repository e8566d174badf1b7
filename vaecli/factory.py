"""The one factory of models: from the names of their parts (and options) to a built model.

``model_section`` turns the settings of a run into the ``model`` section a checkpoint records
(names and options checked against the registry); ``create_model`` builds a model from such a
section, for training, for loading a checkpoint and for plugins' tests alike; ``load`` reads a
checkpoint and returns its trained model. ``vaecli.checkpoint`` only reads and writes the format.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any, Optional

import torch

from . import checkpoint, kinds
from . import options as opts
from .errors import CheckpointError, PluginMissingError, UsageError, VaeError, first_line
from .hookspecs import ModelShape
from .model import VAE
from .plugins import Registered, registry

__all__ = [
    "create_model",
    "model_section",
    "settle_data",
    "check_data_kind",
    "model_of",
    "load",
    "check_data_range",
    "family_of",
    "family_class",
]


def family_of(section: dict) -> Registered:
    """The registered model family a ``model`` section names (``kind``; a 0.5.0 section is a
    vae, cvae or ae); a family from a plugin that is not installed names the distribution."""
    family = section.get("family") or {}
    kind = section.get("kind", "vae")
    if not isinstance(kind, str) or not isinstance(family, dict):
        raise CheckpointError("the model's kind must be a family name")
    return registry().get("model", kind, family.get("provider"))


@functools.cache
def family_class(spec: Any) -> type[VAE]:
    """A family's class (``ModelSpec.family``), imported from its path where it is one."""
    family = spec.family
    if isinstance(family, str):
        module, _, name = family.partition(":")
        try:
            family = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise PluginMissingError(f"model '{spec.name}': cannot import its family {spec.family} ({exc})") from None
    if not (isinstance(family, type) and issubclass(family, VAE)):
        raise PluginMissingError(f"model '{spec.name}': its family {family!r} is not a subclass of vaecli.VAE")
    return family


def check_kind(family: Registered, arch: Registered) -> None:
    """A conditional family needs an architecture registered with ``conditional=True``."""
    if family.spec.conditional and not arch.spec.conditional:
        reg = registry()
        able = [n for n in reg.names("architecture") if reg.get("architecture", n).spec.conditional]
        raise UsageError(
            f"architecture '{arch.spec.name}' cannot build a class-conditional model; "
            f"--model {family.spec.name} works with: {', '.join(able) or 'none installed'}"
        )


OBJECTIVE_FLAGS = {
    "beta": "--beta",
    "kl_warmup": "--kl-warmup",
    "free_bits": "--free-bits",
    "iw_samples": "--iw-samples",
}


def check_objective(config: Any, family: Registered) -> None:
    """Refuse objective settings the family does not use (``OBJECTIVE_SETTINGS``)."""
    cls = family_class(family.spec)
    defaults = {"beta": 1.0, "kl_warmup": 0.0, "free_bits": 0.0, "iw_samples": 1}
    unused = [
        OBJECTIVE_FLAGS[k] for k, v in defaults.items() if getattr(config, k) != v and k not in cls.OBJECTIVE_SETTINGS
    ]
    if unused:
        reg = registry()
        users = [n for n in reg.names("model") if _uses(reg.get("model", n), unused[0])]
        raise UsageError(
            f"--model {family.spec.name} has no use for {', '.join(unused)}; "
            f"{unused[0]} is for --model {', '.join(users) or 'none installed'}"
        )


def _uses(family: Registered, flag: str) -> bool:
    try:
        return flag[2:].replace("-", "_") in family_class(family.spec).OBJECTIVE_SETTINGS
    except VaeError:
        return False


def check_data_kind(kind: str, arch_spec: Any, lik_spec: Any) -> None:
    """Refuse an architecture or a likelihood that does not take this kind of data, naming
    those that do."""
    reg = registry()

    def able(what: str, ok) -> list:
        return [n for n in reg.names(what) if ok(reg.get(what, n).spec)]

    if kind in getattr(arch_spec, "kinds", ("image",)) and lik_spec.data_range in kinds.accepts(kind):
        return
    kinds.check_parts(
        kind,
        arch_spec,
        lik_spec,
        able("architecture", lambda s: kind in getattr(s, "kinds", ("image",))),
        able("likelihood", lambda s: s.data_range in kinds.accepts(kind)),
    )


def check_data_range(name: str, data_range: str, binarize_mode: str) -> None:
    """Refuse preprocessing outside the values a likelihood models (see ``LikelihoodSpec``)."""
    if binarize_mode != "none" and data_range != "binary":
        what = {
            "unit": "a density over [0, 1], unbounded on binary pixels",
            "8bit": "a distribution over the 256 levels of 8-bit pixels",
            "real": "a density over real values",
        }.get(data_range, f"data range {data_range!r}")
        raise UsageError(
            f"--binarize {binarize_mode} is for likelihoods over {{0, 1}} such as bernoulli; '{name}' is {what}"
        )


def model_section(config: Any) -> dict:
    """The ``model`` section of the checkpoint metadata of a run (a ``TrainConfig``), options
    checked against their specs; ``input_shape`` is filled in once the data is loaded."""
    reg = registry()
    arch = reg.get("architecture", config.arch)
    arch_opts = opts.build(arch.spec.options, config.arch_options, f"architecture '{config.arch}'")
    if config.likelihood == "auto":  # the kind's own, chosen once the data is known (``settle_data``)
        likelihood = {"name": "auto", "options": dict(config.likelihood_options)}
    else:
        lik = reg.get("likelihood", config.likelihood)
        lik_opts = opts.build(lik.spec.options, config.likelihood_options, f"likelihood '{config.likelihood}'")
        check_data_range(lik.spec.name, lik.spec.data_range, config.binarize)
        likelihood = {"name": lik.spec.name, "options": opts.to_json(lik_opts), "provider": lik.plugin.provider()}
    family = reg.get("model", config.model)
    family_opts = opts.build(family.spec.options, config.model_options, f"model '{config.model}'")
    check_kind(family, arch)
    check_objective(config, family)
    return {
        "kind": config.model,
        "latent_dim": int(config.latent_dim),
        "input_shape": None,
        "family": {
            "options": opts.to_json(family_opts),
            "provider": family.plugin.provider(),
            "objective": family_class(family.spec).OBJECTIVE,
        },
        "architecture": {"name": config.arch, "options": opts.to_json(arch_opts), "provider": arch.plugin.provider()},
        "likelihood": likelihood,
    }


def settle_data(section: dict, config: Any, kind: str, layout: Any) -> None:
    """Once the data is loaded: its layout (rows) in the ``model`` section, the kind's own
    likelihood where the run asked for ``auto``, and the parts checked against the kind."""
    reg = registry()
    if config.likelihood == "auto":
        config.likelihood = kinds.default_likelihood(kind)
        lik = reg.get("likelihood", config.likelihood)
        lik_opts = opts.build(lik.spec.options, config.likelihood_options, f"likelihood '{config.likelihood}'")
        check_data_range(lik.spec.name, lik.spec.data_range, config.binarize)
        section["likelihood"] = {
            "name": config.likelihood,
            "options": opts.to_json(lik_opts),
            "provider": lik.plugin.provider(),
        }
    if kind != "image" and config.binarize != "none":
        raise UsageError(f"--binarize is for images; this dataset is {kind} rows")
    if layout is not None:
        section["layout"] = layout.to_json()
        section["input_shape"] = [layout.features]
    arch = reg.get("architecture", section["architecture"]["name"])
    check_data_kind(kind, arch.spec, reg.get("likelihood", section["likelihood"]["name"]).spec)


def _sizes(values: Any, what: str, count: int, low: int) -> tuple:
    """``count`` whole numbers >= ``low`` (a model's recorded sizes), or a CheckpointError."""
    ok = (
        isinstance(values, (list, tuple))
        and len(values) == count
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in values)
    )
    if not ok:
        raise CheckpointError(
            f"the model's {what} must be {count} whole number(s) of at least {low}, got {values!r}"[:300]
        )
    return tuple(values)


def create_model(section: dict, mixin: Optional[type] = None) -> VAE:
    """Build an (untrained) model from a ``model`` section (``model_section``, or a checkpoint's
    metadata) through the plugin registry: the family's class, with ``mixin``'s methods where
    given. A part whose plugin is missing names the distribution to install."""
    reg = registry()
    arch_cfg, lik_cfg = section["architecture"], section["likelihood"]
    for what, part in (("architecture", arch_cfg), ("likelihood", lik_cfg)):
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise CheckpointError(f"the model's {what} must be a map with a name")
    layout = kinds.layout_of(section)
    input_shape = _sizes(section["input_shape"], "input_shape", 3 if layout is None else 1, low=1)
    if layout is not None and input_shape[0] != layout.features:
        raise CheckpointError(
            f"the model's input_shape {list(input_shape)} is not its layout's {layout.features} inputs"
        )
    latent_dim = _sizes([section["latent_dim"]], "latent_dim", 1, low=1)[0]
    num_classes = _sizes([section.get("num_classes", 0)], "num_classes", 1, low=0)[0]
    arch = reg.get("architecture", arch_cfg["name"], arch_cfg.get("provider"))
    lik_name = lik_cfg["name"]
    if lik_name == "auto":  # a section made before its data was known: the kind's own likelihood
        lik_name = kinds.default_likelihood("image" if layout is None else layout.kind)
    lik = reg.get("likelihood", lik_name, lik_cfg.get("provider"))
    arch_opts = opts.build(arch.spec.options, arch_cfg.get("options", {}), f"architecture '{arch.spec.name}'")
    lik_opts = opts.build(lik.spec.options, lik_cfg.get("options", {}), f"likelihood '{lik.spec.name}'")
    family = family_of(section)
    check_kind(family, arch)
    family_opts = opts.build(
        family.spec.options, (section.get("family") or {}).get("options", {}), f"model '{family.spec.name}'"
    )
    cls = family_class(family.spec)
    if mixin is not None:
        cls = _with_mixin(mixin, cls)
    if not family.spec.conditional:
        num_classes = 0
    likelihood = lik.spec.build(lik_opts)
    kind = "image" if layout is None else layout.kind
    check_data_kind(kind, arch.spec, lik.spec)
    try:
        likelihood.bind(layout)
    except ValueError as exc:
        raise UsageError(f"likelihood '{lik.spec.name}': {exc}") from None
    shape = cls.arch_shape(
        ModelShape(input_shape, latent_dim, likelihood.params_per_pixel, num_classes, layout), family_opts
    )
    try:
        encoder, decoder = arch.spec.build(shape, arch_opts)
    except ValueError as exc:
        raise UsageError(f"architecture '{arch.spec.name}': {exc}") from None
    try:
        model = cls(encoder, decoder, likelihood, latent_dim, input_shape, num_classes=num_classes, options=family_opts)
    except ValueError as exc:
        raise UsageError(f"model '{family.spec.name}': {exc}") from None
    model.kind = family.spec.name
    return model


_MIXED: dict[tuple[type, type], type[VAE]] = {}


def _with_mixin(mixin: type, cls: type[VAE]) -> type[VAE]:
    """``cls`` with the methods of ``mixin`` (``vaecli.api.Model``) first (one class per pair)."""
    key = (mixin, cls)
    if key not in _MIXED:
        _MIXED[key] = type(f"{mixin.__name__}[{cls.__name__}]", (mixin, cls), {})
    return _MIXED[key]


def _malformed(path: Path, exc: BaseException) -> CheckpointError:
    return checkpoint.refuse(path, f"has malformed model metadata ({type(exc).__name__}: {first_line(exc)})")


def check_sizes(path: Path, section: dict, state: dict[str, torch.Tensor]) -> None:
    """Build the model the metadata describes on the meta device (no memory) and compare its
    parameter shapes with the weights in the file, so that a damaged or hostile size (a latent
    dim of 10**12) is refused before anything is allocated. An architecture that cannot be built
    on the meta device is left to the real build."""
    try:
        with torch.device("meta"):
            model = create_model(section)
    except CheckpointError as exc:
        raise checkpoint.refuse(path, f"has malformed model metadata ({exc})") from None
    except VaeError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as exc:
        if isinstance(exc, RuntimeError) and "meta" in str(exc).lower():
            return  # the architecture does something the meta device cannot: build it for real
        raise _malformed(path, exc) from None
    except Exception:  # a plugin's build that needs real tensors
        return
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        differ = sorted(set(expected) ^ set(found)) or [k for k in sorted(expected) if expected[k] != found[k]]
        key = differ[0]
        raise checkpoint.refuse(
            path,
            f"its weights do not fit the architecture it names ({key}: "
            f"{found.get(key, 'missing')} in the file, {expected.get(key, 'none')} expected)",
        )


def model_of(ckpt: checkpoint.Checkpoint, mixin: Optional[type] = None) -> VAE:
    """The model a checkpoint holds, on the CPU, its weights loaded and ``.meta`` set. Sizes
    are checked against the file before anything is allocated; weights that do not fit or are
    not finite are refused."""
    path, section, state = ckpt.path, ckpt.meta["model"], ckpt.section("model.")
    check_sizes(path, section, state)
    try:
        model = create_model(section, mixin)
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError, MemoryError) as exc:
        raise _malformed(path, exc) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # only when the meta-device check could not run
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)
        raise checkpoint.refuse(path, f"its weights do not fit the architecture it names ({reason[:300]})") from None
    if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        raise checkpoint.refuse(path, "holds non-finite (NaN or infinite) weights")
    if not _finite_forward(model):
        raise checkpoint.refuse(
            path, "has weights so large that its encoder or decoder overflows (NaN or infinite outputs)"
        )
    model.meta = ckpt.meta
    return model


def _finite_forward(model: VAE) -> bool:
    """Whether one grey image encodes, and the code 0 decodes, to finite numbers: finite weights
    of absurd size (3e38) pass the finiteness check and overflow here."""
    model.eval()
    try:
        with torch.no_grad():
            grey = torch.full((1, *model.input_shape), 0.5)
            labels = torch.zeros(1, dtype=torch.long) if model.num_classes else None
            mean, logvar = model.posterior(grey, labels)
            params = model.likelihood_params(torch.zeros(1, model.latent_dim), labels)
    except Exception:  # a family whose parts need more than this probe gives: not this check's to judge
        return True
    return bool(torch.isfinite(mean).all() and torch.isfinite(logvar).all() and torch.isfinite(params).all())


def load(path: Path | str, device: str | torch.device = "cpu", mixin: Optional[type] = None) -> VAE:
    """The model in a checkpoint, on ``device``, in eval mode, with ``.meta`` set."""
    return model_of(checkpoint.read(path), mixin).to(device).eval()
