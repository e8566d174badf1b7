"""Tests of the plugin system (``vaecli.plugins``) through real, faithfully simulated entry points.

Every test builds a tiny "site" folder under ``tmp_path`` holding plugin packages and their
``*.dist-info`` folders (``METADATA`` and ``entry_points.txt``), puts it on ``sys.path`` and
rebuilds the process-wide registry, so ``importlib.metadata.entry_points(group="vaecli")``
finds the plugins exactly as it would find installed distributions.

Self-contained: no fixture from ``conftest.py`` is used.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

import vaecli
import vaecli.plugins as plugins
from vaecli import errors
from vaecli.cli import app

BUILTIN_ARCHS = {"mlp", "conv"}
BUILTIN_LIKELIHOODS = {"bernoulli", "continuous-bernoulli", "gaussian", "logistic", "negbin", "poisson", "table"}
PAPERS = ["binarized-mnist", "celeba", "dsprites", "3dshapes", "omniglot", "svhn", "cifar100"]
DATASETS_IN_ORDER = [
    "shapes",
    "mnist",
    "fashion-mnist",
    "kmnist",
    "emnist",
    "cifar10",
    *PAPERS,
    "folder",
    "tensor",
    "table",
]
BUILTIN_DATASETS = set(DATASETS_IN_ORDER)
DATASETS = sorted(DATASETS_IN_ORDER)
LIKELIHOODS = sorted(BUILTIN_LIKELIHOODS)
BUILTIN_PLUGINS = ["models", "samplers", "architectures", "likelihoods", "datasets", "recipes"]
BUILTIN_RECIPES = [
    "pytorch-example",
    "kingma-welling",
    "pythae-vae",
    "burda-vae",
    "burda-iwae",
    "rainforth-miwae",
    "rainforth-piwae",
    "rainforth-ciwae",
    "tomczak-vamp",
    "tabular",
]

# Top-level modules the fake plugins define; removed from sys.modules around every test.
FAKE_MODULES = (
    "goodplug",
    "brokenplug",
    "raiserplug",
    "badsigplug",
    "unknownhookplug",
    "clashplug",
    "mlpthief",
    "notspecplug",
    "otherplug",
    "cmdplug",
    "cmdplug2",
    "trylastplug",
    "hijackplug",
    "badparts",
)


# --------------------------------------------------------------------------------------------
# Plugin sources
# --------------------------------------------------------------------------------------------

GOOD_PLUGIN = """
from dataclasses import dataclass

import vaecli


@dataclass(frozen=True)
class TinyOptions:
    hidden: int = 16


def build_tiny(shape, options):
    import math

    from torch import nn

    input_shape, latent_dim, params_per_pixel = shape.input_shape, shape.latent_dim, shape.params_per_pixel

    c, h, w = input_shape
    d = math.prod(input_shape)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(d, options.hidden), nn.ReLU(),
                                     nn.Linear(options.hidden, 2 * latent_dim))

        def forward(self, x):
            mean, logvar = self.net(x).chunk(2, dim=-1)
            return mean, logvar

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(latent_dim, options.hidden), nn.ReLU(),
                                     nn.Linear(options.hidden, params_per_pixel * d))

        def forward(self, z):
            return self.net(z).view(z.shape[0], params_per_pixel * c, h, w)

    return Encoder(), Decoder()


def build_likelihood(options):
    from vaecli.builtin.dists import Bernoulli

    return Bernoulli()


def load_blank(request, options):
    import torch

    images = torch.zeros((4, 1, 8, 8), dtype=torch.uint8)
    return vaecli.DatasetSplits(train=vaecli.Split(images), test=vaecli.Split(images[:2]))


@vaecli.hookimpl
def register_architectures(register):
    register(vaecli.ArchitectureSpec(name="tiny", help="A tiny MLP from a plugin.",
                                     build=build_tiny, options=TinyOptions))


@vaecli.hookimpl
def register_likelihoods(register):
    register(vaecli.LikelihoodSpec(name="tinybern", help="Bernoulli, from a plugin.",
                                   build=build_likelihood))


@vaecli.hookimpl
def register_datasets(register):
    register(vaecli.DatasetSpec(name="blank", help="Blank 8x8 images.", load=load_blank))
"""

BROKEN_PLUGIN = """
raise ImportError("needs the package frobnicate")
"""

RAISER_PLUGIN = """
import vaecli


def _build(*args):
    raise AssertionError("never built")


@vaecli.hookimpl
def register_architectures(register):
    register(vaecli.ArchitectureSpec(name="half", help="registered, then the hook raises", build=_build))
    raise RuntimeError("boom in the hook")


@vaecli.hookimpl
def register_datasets(register):
    register(vaecli.DatasetSpec(name="raiserdata", help="fine", load=_build))
"""

BADSIG_PLUGIN = """
import vaecli


def _build(*args):
    raise AssertionError("never built")


@vaecli.hookimpl
def register_architectures(register, extra):
    register(vaecli.ArchitectureSpec(name="badsig-arch", help="x", build=_build))


@vaecli.hookimpl
def register_datasets(register):
    register(vaecli.DatasetSpec(name="badsig-data", help="x", load=_build))
"""

UNKNOWN_HOOK_PLUGIN = """
import vaecli


def _build(*args):
    raise AssertionError("never built")


@vaecli.hookimpl
def register_foo(register):
    pass


@vaecli.hookimpl
def register_architectures(register):
    register(vaecli.ArchitectureSpec(name="unknownhook-arch", help="x", build=_build))
"""


def _arch_plugin(*names: str, help: str = "x") -> str:
    """A plugin registering architectures with the given names."""
    calls = "\n".join(f"    register(vaecli.ArchitectureSpec(name={n!r}, help={help!r}, build=_build))" for n in names)
    return (
        "import vaecli\n\n\n"
        "def _build(*args):\n    raise AssertionError('never built')\n\n\n"
        "@vaecli.hookimpl\n"
        "def register_architectures(register):\n" + calls + "\n"
    )


NOT_SPEC_PLUGIN = """
import vaecli


def _build(*args):
    raise AssertionError("never built")


@vaecli.hookimpl
def register_architectures(register):
    register({"name": "dictarch", "build": _build})
    register(vaecli.LikelihoodSpec(name="wrongkind", help="a likelihood given as architecture",
                                   build=_build))
    register(vaecli.ArchitectureSpec(name="realarch", help="the good one", build=_build))
"""

CMD_PLUGIN = '''
import vaecli


@vaecli.hookimpl
def register_commands(app):
    @app.command()
    def hello(name: str = "world"):
        """Say hello from a plugin."""
        print(f"hello {name}, from cmdplug")
'''

CMD_PLUGIN_UNDERSCORE = '''
import vaecli


@vaecli.hookimpl
def register_commands(app):
    @app.command()
    def say_hello():
        """A command whose function name has an underscore."""
        print("hi")
'''

CMD_PLUGIN_NOTHING = """
import vaecli


@vaecli.hookimpl
def register_commands(app):
    pass
"""

TRYLAST_PLUGIN = """
import vaecli


def _build(*args):
    raise AssertionError("never built")


@vaecli.hookimpl(trylast=True)
def register_architectures(register):
    register(vaecli.ArchitectureSpec(name="mlp", help="stolen with trylast", build=_build))
"""

HIJACK_PLUGIN = """
import vaecli


@vaecli.hookimpl
def register_commands(app):
    @app.command()
    def train():
        print("hijacked vae train")
"""


# --------------------------------------------------------------------------------------------
# Helpers and fixtures
# --------------------------------------------------------------------------------------------


def _forget_fake_modules() -> None:
    for name in list(sys.modules):
        if name.split(".", 1)[0] in FAKE_MODULES:
            del sys.modules[name]


@pytest.fixture(autouse=True)
def _isolated_plugins(monkeypatch, tmp_path):
    """A fresh registry, no plugin filter, no debug mode and an unchanged Typer app.

    Entry points are looked up as importlib.metadata does, but only in the folders of this
    test's ``tmp_path`` that are on ``sys.path``: plugins really installed in this environment
    (say ``plugins/vaecli-resnet``) stay out of these tests, and a site folder leaving
    ``sys.path`` is an uninstall."""
    from importlib import metadata

    def entry_points(group):
        roots = [p for p in sys.path if p.startswith(str(tmp_path))]
        return [ep for dist in metadata.distributions(path=roots) for ep in dist.entry_points if ep.group == group]

    monkeypatch.setattr(plugins, "metadata", SimpleNamespace(entry_points=entry_points))
    monkeypatch.delenv("VAECLI_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("VAECLI_DEBUG", raising=False)
    # `add_commands` (also run by `vae plugins`) appends to the module-level app: give the app
    # copies of its lists for this test; monkeypatch puts the original lists back afterwards.
    monkeypatch.setattr(app, "registered_commands", list(app.registered_commands))
    monkeypatch.setattr(app, "registered_groups", list(app.registered_groups))
    _forget_fake_modules()
    importlib.invalidate_caches()
    plugins.reset()
    yield
    plugins.reset()
    _forget_fake_modules()
    importlib.invalidate_caches()


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """An empty site folder, first on sys.path."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def install(
    site: Path,
    package: str,
    source: str,
    *,
    dist: str | None = None,
    version: str = "0.1.0",
    ep_name: str | None = None,
) -> None:
    """Write ``package/__init__.py`` and ``package-VERSION.dist-info`` into ``site``, with an
    entry point ``EP_NAME = package`` in the group ``vaecli``."""
    dist = dist or f"vaecli-{package}"
    ep_name = ep_name or package
    pkg = site / package
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(source))
    info = site / f"{package}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[vaecli]\n{ep_name} = {package}\n")
    importlib.invalidate_caches()


def install_good(site: Path) -> None:
    install(site, "goodplug", GOOD_PLUGIN, dist="vaecli-goodplug", version="1.2.3")


def fresh_registry() -> tuple[plugins.Registry, list[str]]:
    """A new registry (not the process-wide one) and the warnings it gave."""
    warnings: list[str] = []
    importlib.invalidate_caches()
    return plugins.Registry(warn=warnings.append), warnings


def plugin(reg: plugins.Registry, name: str) -> plugins.PluginInfo:
    found = [p for p in reg.plugins if p.name == name]
    assert len(found) == 1, f"expected one plugin {name!r}, got {[p.label for p in reg.plugins]}"
    return found[0]


def third_party(reg: plugins.Registry) -> list[str]:
    return [p.name for p in reg.plugins if not p.builtin]


def assert_builtins_intact(reg: plugins.Registry) -> None:
    assert BUILTIN_ARCHS <= set(reg.names("architecture"))
    assert BUILTIN_LIKELIHOODS <= set(reg.names("likelihood"))
    assert BUILTIN_DATASETS <= set(reg.names("dataset"))
    assert reg.get("architecture", "mlp").plugin.distribution == "vaecli"
    assert reg.get("likelihood", "bernoulli").plugin.distribution == "vaecli"
    assert reg.get("dataset", "shapes").plugin.distribution == "vaecli"
    for name in BUILTIN_PLUGINS:
        info = plugin(reg, name)
        assert info.builtin and info.errors == [] and info.distribution == "vaecli"
        assert info.version == vaecli.__version__


def runner() -> CliRunner:
    return CliRunner()


# --------------------------------------------------------------------------------------------
# 0. No third-party plugin at all
# --------------------------------------------------------------------------------------------


def test_builtins_only_without_plugins(site):
    reg, warnings = fresh_registry()
    assert warnings == []
    assert [p.name for p in reg.plugins] == BUILTIN_PLUGINS
    assert reg.names("architecture") == ["conv", "mlp"]
    assert reg.names("likelihood") == LIKELIHOODS
    assert reg.names("dataset") == DATASETS
    assert plugin(reg, "architectures").registers == {"architecture": ["mlp", "conv"]}
    assert plugin(reg, "likelihoods").registers == {"likelihood": LIKELIHOODS}
    assert plugin(reg, "datasets").registers == {"dataset": DATASETS_IN_ORDER}
    assert plugin(reg, "recipes").registers == {"recipe": BUILTIN_RECIPES}
    assert_builtins_intact(reg)


def test_registry_is_process_wide_until_reset(site):
    first = plugins.registry()
    assert plugins.registry() is first
    install_good(site)  # installed while the process runs: seen only after reset()
    assert "tiny" not in plugins.registry().names("architecture")
    plugins.reset()
    second = plugins.registry()
    assert second is not first
    assert "tiny" in second.names("architecture")


# --------------------------------------------------------------------------------------------
# 1. A good plugin
# --------------------------------------------------------------------------------------------


def test_good_plugin_registers_its_parts(site):
    install_good(site)
    reg, warnings = fresh_registry()
    assert warnings == []
    assert reg.names("architecture") == ["conv", "mlp", "tiny"]
    assert reg.names("likelihood") == LIKELIHOODS + ["tinybern"]
    assert reg.names("dataset") == sorted(DATASETS + ["blank"])

    info = plugin(reg, "goodplug")
    assert info.distribution == "vaecli-goodplug"
    assert info.version == "1.2.3"
    assert info.builtin is False
    assert info.errors == []
    assert info.registers == {"architecture": ["tiny"], "likelihood": ["tinybern"], "dataset": ["blank"]}
    assert info.label == "goodplug (vaecli-goodplug 1.2.3)"
    assert info.provider() == {"distribution": "vaecli-goodplug", "version": "1.2.3", "plugin": "goodplug"}
    assert info.to_json() == {
        "name": "goodplug",
        "distribution": "vaecli-goodplug",
        "version": "1.2.3",
        "builtin": False,
        "registers": {"architecture": ["tiny"], "likelihood": ["tinybern"], "dataset": ["blank"]},
        "commands": [],
        "error": None,
    }
    tiny = reg.get("architecture", "tiny")
    assert tiny.plugin is info
    assert tiny.spec.help == "A tiny MLP from a plugin."
    assert isinstance(tiny.spec, vaecli.ArchitectureSpec)
    assert reg.get("likelihood", "tinybern").plugin is info
    assert reg.get("dataset", "blank").plugin is info
    # built-ins first, then entry points
    assert [p.name for p in reg.plugins] == BUILTIN_PLUGINS + ["goodplug"]
    assert_builtins_intact(reg)


def test_good_plugin_through_process_registry_builds_a_working_model(site):
    import torch

    from vaecli.factory import create_model as from_config

    install_good(site)
    assert "tiny" in plugins.registry().names("architecture")
    config = {
        "kind": "vae",
        "latent_dim": 3,
        "input_shape": [1, 8, 8],
        "architecture": {
            "name": "tiny",
            "options": {"hidden": 5},
            "provider": {"distribution": "vaecli-goodplug", "version": "1.2.3", "plugin": "goodplug"},
        },
        "likelihood": {
            "name": "tinybern",
            "options": {},
            "provider": {"distribution": "vaecli-goodplug", "version": "1.2.3", "plugin": "goodplug"},
        },
    }
    model = from_config(config)
    n_params = sum(p.numel() for p in model.parameters())
    # encoder 64*5+5 + 5*6+6, decoder 3*5+5 + 5*64+64
    assert n_params == (64 * 5 + 5) + (5 * 6 + 6) + (3 * 5 + 5) + (5 * 64 + 64)
    images = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert tuple(images.shape) == (4, 1, 8, 8)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


# --------------------------------------------------------------------------------------------
# 2. A plugin whose import fails
# --------------------------------------------------------------------------------------------


def test_plugin_whose_import_fails_is_one_warning(site):
    install(site, "brokenplug", BROKEN_PLUGIN, dist="vaecli-brokenplug", version="0.4.0")
    install_good(site)
    reg, warnings = fresh_registry()

    assert len(warnings) == 1
    assert "vaecli-brokenplug" in warnings[0]
    assert "0.4.0" in warnings[0]
    assert "failed to load" in warnings[0]
    assert "ImportError: needs the package frobnicate" in warnings[0]
    assert "vae plugins" in warnings[0]

    info = plugin(reg, "brokenplug")
    assert info.errors == ["failed to load: ImportError: needs the package frobnicate"]
    assert info.registers == {}
    assert info.to_json()["error"] == "failed to load: ImportError: needs the package frobnicate"
    # the rest of vaecli works: built-ins and other plugins
    assert_builtins_intact(reg)
    assert plugin(reg, "goodplug").errors == []
    assert "tiny" in reg.names("architecture")


def test_warning_goes_to_stderr_by_default(site, capsys):
    install(site, "brokenplug", BROKEN_PLUGIN, dist="vaecli-brokenplug", version="0.4.0")
    importlib.invalidate_caches()
    reg = plugins.registry()
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines == [
        "vae: warning: plugin brokenplug (vaecli-brokenplug 0.4.0): failed to load: "
        "ImportError: needs the package frobnicate (see `vae plugins`)"
    ]
    assert_builtins_intact(reg)


# --------------------------------------------------------------------------------------------
# 3. A hook that raises
# --------------------------------------------------------------------------------------------


def test_hook_that_raises_is_recorded_and_others_still_register(site):
    install(site, "raiserplug", RAISER_PLUGIN, dist="vaecli-raiserplug", version="2.0")
    install_good(site)
    reg, warnings = fresh_registry()

    assert len(warnings) == 1
    assert "vaecli-raiserplug" in warnings[0]
    assert "register_architectures raised RuntimeError: boom in the hook" in warnings[0]
    info = plugin(reg, "raiserplug")
    assert info.errors == ["register_architectures raised RuntimeError: boom in the hook"]
    # what the failed hook registered before raising is dropped; its other hook still works
    assert "half" not in reg.names("architecture")
    assert info.registers == {"dataset": ["raiserdata"]}
    assert reg.get("dataset", "raiserdata").plugin is info
    # other plugins' parts are all there
    assert plugin(reg, "goodplug").registers == {
        "architecture": ["tiny"],
        "likelihood": ["tinybern"],
        "dataset": ["blank"],
    }
    assert_builtins_intact(reg)


# --------------------------------------------------------------------------------------------
# 4. A hook with a wrong signature
# --------------------------------------------------------------------------------------------


def test_hookimpl_with_wrong_signature_is_recorded_not_raised(site):
    install(site, "badsigplug", BADSIG_PLUGIN, dist="vaecli-badsigplug", version="0.0.1")
    install_good(site)
    reg, warnings = fresh_registry()

    assert len(warnings) == 1
    assert "vaecli-badsigplug" in warnings[0]
    info = plugin(reg, "badsigplug")
    assert len(info.errors) == 1
    assert info.errors[0].startswith("PluginValidationError")
    assert "register_architectures" in info.errors[0]
    # the plugin is refused as a whole: none of its hooks registers anything
    assert info.registers == {}
    assert "badsig-arch" not in reg.names("architecture")
    assert "badsig-data" not in reg.names("dataset")
    assert "tiny" in reg.names("architecture")
    assert_builtins_intact(reg)


# --------------------------------------------------------------------------------------------
# 5. A hook that vaecli does not know
# --------------------------------------------------------------------------------------------


def test_unknown_hook_is_recorded(site):
    install(site, "unknownhookplug", UNKNOWN_HOOK_PLUGIN, dist="vaecli-unknownhook", version="0.9")
    reg, warnings = fresh_registry()

    assert len(warnings) == 1
    assert "vaecli-unknownhook" in warnings[0]
    info = plugin(reg, "unknownhookplug")
    # reported, and ignored: the plugin's known hooks still register (a plugin written for a
    # newer vaecli keeps working on an older one)
    assert info.errors == ["implements unknown hook(s) register_foo, ignored"]
    assert info.registers == {"architecture": ["unknownhook-arch"]}
    assert "unknownhook-arch" in reg.names("architecture")
    assert_builtins_intact(reg)


# --------------------------------------------------------------------------------------------
# 6. Name clashes
# --------------------------------------------------------------------------------------------


def test_two_plugins_claiming_one_name(site):
    # entry points load sorted by name: "clashplug" before "otherplug"
    install(site, "clashplug", _arch_plugin("shared", help="first"), dist="vaecli-clash", version="1.0")
    install(site, "otherplug", _arch_plugin("shared", "own", help="second"), dist="vaecli-other", version="2.0")
    reg, warnings = fresh_registry()

    assert len(warnings) == 1
    message = warnings[0]
    assert "otherplug (vaecli-other 2.0)" in message
    assert "clashplug (vaecli-clash 1.0)" in message
    assert "architecture 'shared' is already registered by clashplug (vaecli-clash 1.0)" in message
    # the first registration keeps the name
    shared = reg.get("architecture", "shared")
    assert shared.plugin.name == "clashplug"
    assert shared.spec.help == "first"
    assert plugin(reg, "clashplug").errors == []
    assert plugin(reg, "clashplug").registers == {"architecture": ["shared"]}
    other = plugin(reg, "otherplug")
    assert other.errors == [
        "architecture 'shared' is already registered by clashplug (vaecli-clash 1.0); this one is ignored"
    ]
    # the loser's other, uncontested parts still register
    assert other.registers == {"architecture": ["own"]}
    assert reg.get("architecture", "own").plugin is other


def test_plugin_claiming_a_builtin_name(site):
    install(site, "mlpthief", _arch_plugin("mlp", help="not the real mlp"), dist="vaecli-mlpthief", version="0.1")
    reg, warnings = fresh_registry()

    assert len(warnings) == 1
    assert "mlpthief (vaecli-mlpthief 0.1)" in warnings[0]
    assert "architectures (vaecli " + vaecli.__version__ + ")" in warnings[0]
    thief = plugin(reg, "mlpthief")
    assert thief.errors == [
        f"architecture 'mlp' is already registered by architectures (vaecli {vaecli.__version__}); this one is ignored"
    ]
    assert thief.registers == {}
    mlp = reg.get("architecture", "mlp")
    assert mlp.plugin.builtin and mlp.plugin.distribution == "vaecli"
    assert mlp.spec.help != "not the real mlp"
    assert_builtins_intact(reg)


# --------------------------------------------------------------------------------------------
# 7. Registering something that is not a spec of the hook's kind
# --------------------------------------------------------------------------------------------


def test_registering_a_non_spec_is_recorded(site):
    install(site, "notspecplug", NOT_SPEC_PLUGIN, dist="vaecli-notspec", version="0.2")
    reg, warnings = fresh_registry()

    info = plugin(reg, "notspecplug")
    assert info.errors == [
        "register_architectures: registered dict, not a ArchitectureSpec",
        "register_architectures: registered LikelihoodSpec, not a ArchitectureSpec",
    ]
    assert len(warnings) == 2 and all("vaecli-notspec" in w for w in warnings)
    assert "dictarch" not in reg.names("architecture")
    assert "wrongkind" not in reg.names("architecture")
    assert "wrongkind" not in reg.names("likelihood")
    # the valid spec of the same call still registers
    assert info.registers == {"architecture": ["realarch"]}
    assert_builtins_intact(reg)


# --------------------------------------------------------------------------------------------
# 8. VAECLI_LOAD_PLUGINS
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, ["brokenplug", "goodplug", "otherplug"]),  # unset: all, sorted by entry-point name
        ("", []),
        (" , ", []),
        ("goodplug", ["goodplug"]),  # by entry-point name
        ("vaecli-goodplug", ["goodplug"]),  # by distribution name
        ("vaecli-other, goodplug", ["goodplug", "otherplug"]),  # mixed, with spaces
        ("nosuchplugin", []),
    ],
)
def test_load_plugins_env(site, monkeypatch, value, expected):
    install_good(site)
    install(site, "otherplug", _arch_plugin("otherarch"), dist="vaecli-other", version="2.0")
    install(site, "brokenplug", BROKEN_PLUGIN, dist="vaecli-brokenplug", version="0.4.0")
    if value is not None:
        monkeypatch.setenv("VAECLI_LOAD_PLUGINS", value)
    reg, warnings = fresh_registry()

    assert third_party(reg) == expected
    assert ("tiny" in reg.names("architecture")) == ("goodplug" in expected)
    assert ("otherarch" in reg.names("architecture")) == ("otherplug" in expected)
    # a plugin that is filtered out is not even imported, so it cannot warn
    assert len(warnings) == (1 if "brokenplug" in expected else 0)
    assert ("brokenplug" in sys.modules) is False
    if "goodplug" not in expected:
        assert "goodplug" not in sys.modules
    # built-ins always load
    assert_builtins_intact(reg)


def test_load_plugins_env_is_read_by_the_process_registry(site, monkeypatch):
    install_good(site)
    monkeypatch.setenv("VAECLI_LOAD_PLUGINS", "")
    assert plugins.registry().names("architecture") == ["conv", "mlp"]
    plugins.reset()
    monkeypatch.delenv("VAECLI_LOAD_PLUGINS")
    assert plugins.registry().names("architecture") == ["conv", "mlp", "tiny"]


# --------------------------------------------------------------------------------------------
# 9. register_commands
# --------------------------------------------------------------------------------------------


def test_plugin_adds_a_subcommand(site):
    install(site, "cmdplug", CMD_PLUGIN, dist="vaecli-cmdplug", version="0.5.0")
    reg = plugins.registry()
    before = len(app.registered_commands)
    reg.add_commands(app)
    assert len(app.registered_commands) == before + 1
    reg.add_commands(app)  # once per app
    assert len(app.registered_commands) == before + 1
    assert plugin(reg, "cmdplug").commands == ["hello"]
    assert plugin(reg, "cmdplug").errors == []

    result = runner().invoke(app, ["hello"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello world, from cmdplug\n"
    result = runner().invoke(app, ["hello", "--name", "Ada"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello Ada, from cmdplug\n"

    listing = runner().invoke(app, ["plugins", "--json"])
    assert listing.exit_code == 0, listing.output
    data = json.loads(listing.stdout)
    entry = next(p for p in data["plugins"] if p["name"] == "cmdplug")
    assert entry["commands"] == ["hello"]
    assert entry["distribution"] == "vaecli-cmdplug" and entry["version"] == "0.5.0"
    assert entry["error"] is None

    table = runner().invoke(app, ["plugins"])
    assert table.exit_code == 0, table.output
    assert "commands: hello" in table.stdout


def test_plugins_command_itself_adds_plugin_commands(site):
    install(site, "cmdplug", CMD_PLUGIN, dist="vaecli-cmdplug", version="0.5.0")
    names = lambda: [c.name or c.callback.__name__ for c in app.registered_commands]  # noqa: E731
    assert "hello" not in names()
    result = runner().invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "commands: hello" in result.stdout
    assert "hello" in names()


def test_commands_added_to_the_app_do_not_leak_between_tests():
    # the autouse fixture restored the app: no plugin command from the tests above
    assert {c.callback.__name__ for c in app.registered_commands} >= {"train", "sample", "info", "plugins"}
    assert "hello" not in {c.callback.__name__ for c in app.registered_commands}


def test_register_commands_that_raises_is_recorded(site):
    install(
        site,
        "cmdplug",
        """
        import vaecli

        @vaecli.hookimpl
        def register_commands(app):
            raise ValueError("no commands today")
    """,
        dist="vaecli-cmdplug",
        version="0.5.0",
    )
    warnings: list[str] = []
    reg = plugins.Registry(warn=warnings.append)
    reg.add_commands(app)
    assert plugin(reg, "cmdplug").errors == ["register_commands raised ValueError: no commands today"]
    assert len(warnings) == 1 and "vaecli-cmdplug" in warnings[0]
    assert plugin(reg, "cmdplug").commands == []


# --------------------------------------------------------------------------------------------
# 10. `vae plugins` and `vae plugins --json`
# --------------------------------------------------------------------------------------------


def test_vae_plugins_json(site):
    install_good(site)
    install(site, "brokenplug", BROKEN_PLUGIN, dist="vaecli-brokenplug", version="0.4.0")
    result = runner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # the warning goes to stderr, not into the JSON
    assert "vaecli-brokenplug" in result.stderr and "failed to load" in result.stderr

    by_name = {p["name"]: p for p in data["plugins"]}
    assert list(by_name) == BUILTIN_PLUGINS + ["brokenplug", "goodplug"]
    for name in BUILTIN_PLUGINS:
        assert by_name[name]["distribution"] == "vaecli"
        assert by_name[name]["version"] == vaecli.__version__
        assert by_name[name]["builtin"] is True
        assert by_name[name]["error"] is None
    assert by_name["architectures"]["registers"] == {"architecture": ["mlp", "conv"]}
    assert by_name["likelihoods"]["registers"] == {"likelihood": LIKELIHOODS}
    assert by_name["datasets"]["registers"] == {"dataset": DATASETS_IN_ORDER}
    assert by_name["recipes"]["registers"] == {"recipe": BUILTIN_RECIPES}
    assert by_name["goodplug"] == {
        "name": "goodplug",
        "distribution": "vaecli-goodplug",
        "version": "1.2.3",
        "builtin": False,
        "registers": {"architecture": ["tiny"], "likelihood": ["tinybern"], "dataset": ["blank"]},
        "commands": [],
        "error": None,
    }
    assert by_name["brokenplug"]["distribution"] == "vaecli-brokenplug"
    assert by_name["brokenplug"]["version"] == "0.4.0"
    assert by_name["brokenplug"]["registers"] == {}
    assert by_name["brokenplug"]["error"] == "failed to load: ImportError: needs the package frobnicate"

    parts = data["parts"]
    assert sorted(parts) == ["architecture", "dataset", "likelihood", "model", "recipe", "sampler"]
    assert sorted(parts["recipe"]) == sorted(BUILTIN_RECIPES)
    assert parts["recipe"]["pytorch-example"]["options"].startswith(
        "dataset=mnist, arch=mlp, arch_options={hidden=400, activation=relu}"
    )
    assert sorted(parts["architecture"]) == ["conv", "mlp", "tiny"]
    assert parts["architecture"]["tiny"] == {
        "plugin": "goodplug",
        "distribution": "vaecli-goodplug",
        "help": "A tiny MLP from a plugin.",
        "options": "hidden=16",
    }
    assert parts["architecture"]["mlp"]["distribution"] == "vaecli"
    assert sorted(parts["likelihood"]) == LIKELIHOODS + ["tinybern"]
    assert sorted(parts["dataset"]) == sorted(DATASETS + ["blank"])
    assert parts["dataset"]["blank"]["options"] == "(none)"


def test_vae_plugins_table(site):
    install_good(site)
    install(site, "brokenplug", BROKEN_PLUGIN, dist="vaecli-brokenplug", version="0.4.0")
    result = runner().invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    out = result.stdout
    assert "vae plugins" in out
    for token in (
        "architectures",
        "likelihoods",
        "datasets",
        "built-in",
        "goodplug",
        "1.2.3",
        "tiny",
        "tinybern",
        "blank",
        "brokenplug",
        "0.4.0",
        "ok",
        "failed",
    ):
        assert token in out, token
    # exactly one warning line, on stderr
    warning_lines = [line for line in result.stderr.splitlines() if line.startswith("vae: warning:")]
    assert len(warning_lines) == 1
    assert "brokenplug (vaecli-brokenplug 0.4.0)" in warning_lines[0]


def test_vae_plugins_details(site):
    install_good(site)
    result = runner().invoke(app, ["plugins", "--details"])
    assert result.exit_code == 0, result.output
    assert "hidden=16" in result.stdout  # the tiny architecture's options
    assert "vaecli-goodplug" in result.stdout


# --------------------------------------------------------------------------------------------
# 11. Checkpoints naming parts of plugins that are not installed
# --------------------------------------------------------------------------------------------


def _model_config(arch: dict) -> dict:
    return {
        "kind": "vae",
        "latent_dim": 2,
        "input_shape": [1, 8, 8],
        "architecture": arch,
        "likelihood": {"name": "bernoulli", "options": {}, "provider": {"distribution": "vaecli", "version": "0.1.0"}},
    }


def test_missing_plugin_names_the_distribution_to_install(site):
    from vaecli.factory import create_model as from_config

    config = _model_config(
        {
            "name": "resnetx",
            "options": {},
            "provider": {"distribution": "vaecli-resnetx", "version": "0.3.0", "plugin": "resnetx"},
        }
    )
    with pytest.raises(errors.PluginMissingError) as excinfo:
        from_config(config)
    message = str(excinfo.value)
    assert "'resnetx'" in message
    assert "vaecli-resnetx" in message
    assert "0.3.0" in message
    assert message.endswith("pip install vaecli-resnetx==0.3.0")
    assert excinfo.value.exit_code == 1
    assert not isinstance(excinfo.value, errors.UsageError)


def test_missing_plugin_with_unknown_version_has_no_pin(site):
    reg, _ = fresh_registry()
    with pytest.raises(errors.PluginMissingError) as excinfo:
        reg.get("architecture", "resnetx", {"distribution": "vaecli-resnetx", "version": "?"})
    assert str(excinfo.value).endswith("pip install vaecli-resnetx")


@pytest.mark.parametrize("provider", [None, {}, {"distribution": "vaecli", "version": "0.1.0"}])
def test_unknown_name_without_a_plugin_provider_is_a_usage_error(site, provider):
    from vaecli.factory import create_model as from_config

    arch = {"name": "resnetx", "options": {}}
    if provider is not None:
        arch["provider"] = provider
    with pytest.raises(errors.UsageError) as excinfo:
        from_config(_model_config(arch))
    assert not isinstance(excinfo.value, errors.PluginMissingError)
    assert str(excinfo.value) == "unknown architecture 'resnetx'; known architectures: conv, mlp"
    assert excinfo.value.exit_code == 2


def test_unknown_name_lists_plugin_names_too(site):
    install_good(site)
    reg, _ = fresh_registry()
    with pytest.raises(
        errors.UsageError,
        match=r"^unknown likelihood 'nope'; known likelihoods: "
        r"bernoulli, continuous-bernoulli, gaussian, logistic, negbin, poisson, table, tinybern$",
    ):
        reg.get("likelihood", "nope")


# --------------------------------------------------------------------------------------------
# 12. End to end: train with a plugin's architecture, then lose the plugin
# --------------------------------------------------------------------------------------------


def test_end_to_end_train_with_plugin_then_uninstall(site, tmp_path, monkeypatch):
    from vaecli import checkpoint

    install_good(site)
    path = tmp_path / "t.safetensors"
    result = vaecli.train(
        dataset="shapes",
        dataset_options={"n_train": 64, "n_test": 32, "size": 8},
        arch="tiny",
        latent_dim=2,
        epochs=1,
        batch_size=32,
        out=str(path),
        device="cpu",
    )
    assert result.path == path and path.exists()
    assert len(result.metrics) == 1

    meta = checkpoint.read(path).meta
    arch = meta["model"]["architecture"]
    assert arch["name"] == "tiny"
    assert arch["options"] == {"hidden": 16}
    assert arch["provider"] == {"distribution": "vaecli-goodplug", "version": "1.2.3", "plugin": "goodplug"}
    assert meta["model"]["likelihood"]["provider"]["distribution"] == "vaecli"
    assert meta["data"]["dataset"]["provider"]["distribution"] == "vaecli"

    info = runner().invoke(app, ["info", str(path), "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["model"]["architecture"]["provider"]["version"] == "1.2.3"

    # with the plugin installed the checkpoint loads
    model = vaecli.load(path)
    assert model.latent_dim == 2

    # uninstall: the site leaves sys.path and the registry is rebuilt
    sys.path.remove(str(site))
    _forget_fake_modules()
    importlib.invalidate_caches()
    plugins.reset()
    assert "tiny" not in plugins.registry().names("architecture")

    with pytest.raises(errors.PluginMissingError) as excinfo:
        vaecli.load(path)
    message = str(excinfo.value)
    assert "vaecli-goodplug" in message and "1.2.3" in message
    assert "pip install vaecli-goodplug==1.2.3" in message

    png = tmp_path / "x.png"
    cli = runner().invoke(app, ["sample", str(path), "-o", str(png)])
    assert cli.exit_code == 1, cli.output
    assert "Traceback" not in cli.output
    assert cli.exception is None or isinstance(cli.exception, SystemExit)
    assert cli.stdout == ""
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0] == f"error: {message}"
    assert not png.exists()


def _train_tiny(path: Path) -> Path:
    """One epoch of the good plugin's architecture ``tiny`` on 8x8 shapes."""
    vaecli.train(
        dataset="shapes",
        dataset_options={"n_train": 32, "n_test": 16, "size": 8},
        arch="tiny",
        latent_dim=2,
        epochs=1,
        batch_size=32,
        out=str(path),
        device="cpu",
    )
    return path


def test_end_to_end_plugin_filtered_out_by_env(site, tmp_path, monkeypatch):
    install_good(site)
    path = _train_tiny(tmp_path / "t.safetensors")
    monkeypatch.setenv("VAECLI_LOAD_PLUGINS", "otherplug")
    plugins.reset()
    with pytest.raises(errors.PluginMissingError) as excinfo:
        vaecli.load(path)
    assert str(excinfo.value) == (
        "this checkpoint's architecture 'tiny' comes from the plugin distribution vaecli-goodplug "
        "1.2.3, which is installed but left out by VAECLI_LOAD_PLUGINS='otherplug'; add vaecli-goodplug to it"
    )


def test_checkpoint_part_whose_plugin_is_installed_but_broken(site, tmp_path):
    install_good(site)
    path = _train_tiny(tmp_path / "t.safetensors")
    # the same distribution, now broken at import
    (site / "goodplug" / "__init__.py").write_text(BROKEN_PLUGIN)
    _forget_fake_modules()
    plugins.reset()
    result = runner().invoke(app, ["sample", str(path), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "vae: warning: plugin goodplug (vaecli-goodplug 1.2.3): failed to load: ImportError: needs the "
        "package frobnicate (see `vae plugins`)",
        "error: this checkpoint's architecture 'tiny' comes from the plugin distribution vaecli-goodplug "
        "1.2.3; the installed vaecli-goodplug 1.2.3 is broken (failed to load: ImportError: needs the "
        "package frobnicate); see `vae plugins`",
    ]
    assert not (tmp_path / "x.png").exists()


def test_checkpoint_part_that_the_installed_version_no_longer_registers(site):
    install(site, "otherplug", _arch_plugin("otherarch"), dist="vaecli-other", version="2.0")
    reg, _ = fresh_registry()
    with pytest.raises(errors.PluginMissingError) as excinfo:
        reg.get("architecture", "gone", {"distribution": "Vaecli_Other", "version": "1.0"})
    assert str(excinfo.value) == (
        "this checkpoint's architecture 'gone' comes from the plugin distribution Vaecli_Other 1.0; "
        "the installed vaecli-other 2.0 does not register architecture 'gone'; see `vae plugins`"
    )


# --------------------------------------------------------------------------------------------
# Order, credit and clashes of names (each was a bug once).
# --------------------------------------------------------------------------------------------


def test_trylast_plugin_cannot_take_a_builtin_name(site):
    install(site, "trylastplug", TRYLAST_PLUGIN, dist="vaecli-trylast", version="0.1")
    reg, warnings = fresh_registry()
    assert reg.get("architecture", "mlp").plugin.builtin
    assert plugin(reg, "architectures").errors == []
    assert plugin(reg, "trylastplug").errors != []


def test_commands_are_credited_only_to_their_plugin(site):
    install(site, "cmdplug", CMD_PLUGIN_UNDERSCORE, dist="vaecli-cmdplug", version="0.1")
    install(site, "cmdplug2", CMD_PLUGIN_NOTHING, dist="vaecli-cmdplug2", version="0.1")
    reg, _ = fresh_registry()
    reg.add_commands(app)
    assert plugin(reg, "cmdplug").commands == ["say-hello"]
    assert plugin(reg, "cmdplug2").commands == []


def test_plugin_command_cannot_silently_replace_a_builtin_command(site):
    install(site, "hijackplug", HIJACK_PLUGIN, dist="vaecli-hijack", version="0.1")
    reg, warnings = fresh_registry()
    reg.add_commands(app)
    result = runner().invoke(app, ["train", "--help"])
    assert "hijacked" not in result.output
    assert "--epochs" in result.stdout
    assert plugin(reg, "hijackplug").errors != []


@pytest.mark.parametrize(
    "bad,problem",
    [
        ("vaecli.ArchitectureSpec(name='has space', help='x', build=_build)", "bad name 'has space'"),
        ("vaecli.ArchitectureSpec(name='', help='x', build=_build)", "bad name ''"),
        ("vaecli.ArchitectureSpec(name='nodc', help='x', build=_build, options=dict)", "options must be a dataclass"),
        ("vaecli.ArchitectureSpec(name='nobuild', help='x', build=None)", "not callable"),
    ],
)
def test_unusable_specs_are_refused_at_registration(site, bad, problem):
    source = (
        "import vaecli\n\n\ndef _build(*args):\n    raise AssertionError('never built')\n\n\n"
        "@vaecli.hookimpl\ndef register_architectures(register):\n"
        f"    register({bad})\n"
    )
    name = "badspec" + "".join(c for c in problem if c.isalpha())  # one package per case
    install(site, name, source, dist=f"vaecli-{name}", version="0.1")
    reg, warnings = fresh_registry()
    info = plugin(reg, name)
    assert len(info.errors) == 1 and problem in info.errors[0], info.errors
    assert info.registers == {}
    assert_builtins_intact(reg)


# --------------------------------------------------------------------------------------------
# vaecli.testing: the checks plugin authors run pass on good parts and name what is broken
# --------------------------------------------------------------------------------------------

BADPARTS_PLUGIN = """
import vaecli
from vaecli.builtin.dists import Bernoulli


def build_wrong_shape(shape, options):
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(1, 1)

        def forward(self, x):
            n = x.shape[0]
            return self.net(x.flatten(1)[:, :1]).expand(n, shape.latent_dim), x.new_zeros(n, shape.latent_dim)

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(shape.latent_dim, 1)

        def forward(self, z):  # one pixel too few
            c, h, w = shape.input_shape
            return self.net(z).view(-1, 1, 1, 1).expand(-1, c, h, w - 1)

    return Encoder(), Decoder()


def build_unused(shape, options):
    from torch import nn
    import math

    d = math.prod(shape.input_shape)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(d, 2 * shape.latent_dim)
            self.forgotten = nn.Linear(3, 3)

        def forward(self, x):
            return self.net(x.flatten(1)).chunk(2, dim=1)

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(shape.latent_dim, d * shape.params_per_pixel)

        def forward(self, z):
            return self.net(z).view(-1, shape.params_per_pixel * shape.input_shape[0], *shape.input_shape[1:])

    return Encoder(), Decoder()


class Unbounded(Bernoulli):
    def mean(self, params):
        return params[:, 0] * 10


@vaecli.hookimpl
def register_architectures(register):
    register(vaecli.ArchitectureSpec(name="wrongshape", help="x", build=build_wrong_shape))
    register(vaecli.ArchitectureSpec(name="unused", help="x", build=build_unused))


@vaecli.hookimpl
def register_likelihoods(register):
    register(vaecli.LikelihoodSpec(name="unbounded", help="x", build=lambda options: Unbounded(), data_range="binary"))
"""


def test_testing_checks_pass_on_good_parts(site):
    from vaecli import testing

    install_good(site)
    model = testing.check_architecture("tiny", (1, 8, 8), latent_dim=2)
    assert model.latent_dim == 2 and not model.training
    testing.check_architecture(
        "conv",
        (3, 16, 16),
        likelihood="gaussian",
        options={"channels": "4", "hidden": "8"},
        likelihood_options={"learn_sigma": "pixel"},
    )
    testing.check_architecture("mlp", (1, 8, 8), num_classes=3, options={"hidden": "8"})
    assert testing.check_likelihood("tinybern").params_per_pixel == 1
    splits = testing.check_dataset("blank")
    assert len(splits.train) == 4 and len(splits.test) == 2
    result = testing.invoke("plugins", "--json")
    assert result.exit_code == 0 and "goodplug" in result.stdout


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda t: t.check_architecture("wrongshape", (1, 4, 4)),
            "decoder output has shape (3, 1, 4, 3), expected (3, 1, 4, 4)",
        ),
        (
            lambda t: t.check_architecture("unused", (1, 4, 4)),
            "parameters that get no gradient: encoder.forgotten.weight, encoder.forgotten.bias",
        ),
        (
            lambda t: t.check_architecture("unused", (1, 4, 4), num_classes=2),
            "architecture 'unused' is not registered with conditional=True",
        ),
        (lambda t: t.check_likelihood("unbounded"), "mean leaves [0, 1]"),
        (lambda t: t.check_dataset("nope"), "no dataset 'nope' is registered"),
    ],
)
def test_testing_checks_name_what_is_broken(site, call, message):
    from vaecli import testing

    install(site, "badparts", BADPARTS_PLUGIN, dist="vaecli-badparts", version="0.1")
    with pytest.raises(AssertionError) as excinfo:
        call(testing)
    assert message in str(excinfo.value)
