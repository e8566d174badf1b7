"""The plugin manager: built-ins and entry points, each loaded in its own guard, and registries.

Built-in plugins (``vaecli.builtin.*``) and third-party entry points in the group ``vaecli`` go
through the same pluggy hooks. A plugin that fails to import, has a hook with a wrong signature,
raises inside a hook or claims a name already taken becomes one warning naming its
distribution; the rest of vaecli works, and ``vae plugins`` shows the plugin with its error.

``VAECLI_LOAD_PLUGINS`` (a comma list of entry-point or distribution names; empty for none)
limits which third-party plugins load. Built-ins always load.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Optional, cast

import pluggy

from . import hookspecs
from .errors import PluginMissingError, unknown_name
from .hookspecs import ArchitectureSpec, DatasetSpec, LikelihoodSpec, ModelSpec, RecipeSpec, SamplerSpec
from .version import __version__

ENTRY_POINT_GROUP = "vaecli"
BUILTIN_MODULES = (
    "vaecli.builtin.models",
    "vaecli.builtin.samplers",
    "vaecli.builtin.architectures",
    "vaecli.builtin.likelihoods",
    "vaecli.builtin.datasets",
    "vaecli.builtin.recipes",
)

# kind -> (hook name, spec class)
KINDS: dict[str, tuple[str, type]] = {
    "model": ("register_models", ModelSpec),
    "sampler": ("register_samplers", SamplerSpec),
    "architecture": ("register_architectures", ArchitectureSpec),
    "likelihood": ("register_likelihoods", LikelihoodSpec),
    "dataset": ("register_datasets", DatasetSpec),
    "recipe": ("register_recipes", RecipeSpec),
}


@dataclass
class PluginInfo:
    """One plugin: where it came from, what it registered, and what went wrong, if anything."""

    name: str
    distribution: str
    version: str
    builtin: bool = False
    pm_name: str = ""
    registers: dict = field(default_factory=dict)  # kind -> [names]
    commands: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.distribution} {self.version})"

    def provider(self) -> dict:
        """What a checkpoint records about the plugin that provided a part."""
        return {"distribution": self.distribution, "version": self.version, "plugin": self.name}

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "registers": self.registers,
            "commands": self.commands,
            "error": "; ".join(self.errors) or None,
        }


@dataclass
class Registered:
    spec: Any
    plugin: PluginInfo


def _describe_exc(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0]


def _normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Foo_Bar`` == ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _command_name(command: Any) -> str:
    from typer.main import get_command_name

    return command.name or get_command_name(command.callback.__name__)


def _spec_problem(spec: Any, spec_cls: type) -> Optional[str]:
    """Why a registered spec cannot be used, or None."""
    if not isinstance(spec, spec_cls):
        return f"registered {type(spec).__name__}, not a {spec_cls.__name__}"
    spec = cast(Any, spec)
    if not isinstance(spec.name, str) or not spec.name or any(c.isspace() for c in spec.name):
        return f"registered a {spec_cls.__name__} with a bad name {spec.name!r}"
    if spec_cls is RecipeSpec:  # data, not code: its settings are checked against TrainConfig when used
        return _recipe_problem(spec)
    if not (isinstance(spec.options, type) and dataclasses.is_dataclass(spec.options)):
        return f"{spec.name}: options must be a dataclass"
    if spec_cls in (ModelSpec, SamplerSpec):
        family = spec.family if spec_cls is ModelSpec else spec.sampler
        ok = isinstance(family, type) or (isinstance(family, str) and re.fullmatch(r"[\w.]+:\w+", family))
        what = "family" if spec_cls is ModelSpec else "sampler"
        return None if ok else f"{spec.name}: {what} must be a class or an import path 'package.module:Class'"
    func = getattr(spec, "build", None) or getattr(spec, "load", None)
    if not callable(func):
        return f"{spec.name}: its build/load is not callable"
    return None


def _recipe_problem(spec: RecipeSpec) -> Optional[str]:
    if not isinstance(spec.help, str) or not isinstance(spec.source, str):
        return f"{spec.name}: help and source must be strings"
    if not isinstance(spec.settings, dict) or not all(isinstance(k, str) for k in spec.settings):
        return f"{spec.name}: settings must be a dict of TrainConfig field names to values"
    if spec.published is not None and not isinstance(spec.published, dict):
        return f"{spec.name}: published must be a dict (such as {{'nll': 89.78, 'iw_samples': 200}}) or None"
    return None


# What a plugin may raise while it loads or runs a hook and still be merely "broken":
# everything but Ctrl-C (a plugin that calls sys.exit() must not end the CLI either).
_PLUGIN_FAILURES = (Exception, SystemExit)


class Registry:
    """All plugins and the architectures, likelihoods, datasets and recipes they registered."""

    def __init__(self, warn: Optional[Callable[[str], None]] = None) -> None:
        self._warn_fn = warn or _print_warning
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self.skipped: list[PluginInfo] = []  # installed, but left out by VAECLI_LOAD_PLUGINS
        self.parts: dict[str, dict[str, Registered]] = {kind: {} for kind in KINDS}
        self._commands_added: set[int] = set()
        self._load_builtins()
        self._load_entry_points()
        for kind in KINDS:
            self._collect(kind)

    # -- loading ------------------------------------------------------------------------------

    def _fail(self, info: PluginInfo, what: str) -> None:
        info.errors.append(what)
        kind = "built-in plugin" if info.builtin else "plugin"
        self._warn_fn(f"{kind} {info.label}: {what} (see `vae plugins`)")

    def _add(self, obj: Any, info: PluginInfo) -> None:
        pm_name = f"{info.distribution}:{info.name}"
        try:
            self.pm.register(obj, name=pm_name)
        except Exception as exc:  # a hook with a wrong signature, or a plugin registered twice
            if self.pm.get_plugin(pm_name) is not None:
                self.pm.unregister(name=pm_name)
            self._fail(info, _describe_exc(exc))
            return
        # A hook this vaecli does not know (perhaps from a newer one) is reported and ignored;
        # the plugin's other hooks still work.
        unknown = [c.name for c in (self.pm.get_hookcallers(obj) or []) if not c.has_spec()]
        if unknown:
            self._fail(info, f"implements unknown hook(s) {', '.join(unknown)}, ignored")
        info.pm_name = pm_name  # set only once registered: _impls looks plugins up by it

    def _load_builtins(self) -> None:
        for module_name in BUILTIN_MODULES:
            info = PluginInfo(
                name=module_name.rsplit(".", 1)[-1],
                distribution="vaecli",
                version=__version__,
                builtin=True,
            )
            self.plugins.append(info)
            self._add(importlib.import_module(module_name), info)

    def _load_entry_points(self) -> None:
        allowed = os.environ.get("VAECLI_LOAD_PLUGINS")
        allow = None if allowed is None else {_normalize(n.strip()) for n in allowed.split(",") if n.strip()}
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist_name, version = "unknown", "?"
            try:
                dist = getattr(ep, "dist", None)
                if dist is not None:
                    dist_name = dist.metadata["Name"] or "unknown"
                    version = dist.version or "?"
            except Exception:  # malformed metadata: still load the plugin, under "unknown"
                pass
            info = PluginInfo(name=ep.name, distribution=dist_name, version=version)
            if allow is not None and _normalize(ep.name) not in allow and _normalize(dist_name) not in allow:
                self.skipped.append(info)
                continue
            self.plugins.append(info)
            try:
                obj = ep.load()
            except _PLUGIN_FAILURES as exc:  # the plugin's own import failed
                self._fail(info, f"failed to load: {_describe_exc(exc)}")
                continue
            self._add(obj, info)

    def _impls(self, hook_name: str):
        """A hook's implementations in load order (built-ins first, then entry points by
        name), whatever tryfirst/trylast say: the first to claim a name keeps it.
        Wrappers are skipped: these hooks register, they do not wrap."""
        impls = {
            impl.plugin_name: impl
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls()
            if not (impl.hookwrapper or getattr(impl, "wrapper", False))
        }
        for info in self.plugins:
            impl = impls.get(info.pm_name)
            if impl is not None:
                yield impl, info

    def _collect(self, kind: str) -> None:
        hook_name, spec_cls = KINDS[kind]
        table = self.parts[kind]
        for impl, info in self._impls(hook_name):
            found: list[Any] = []
            try:
                impl.function(**dict.fromkeys(impl.argnames, found.append))
            except _PLUGIN_FAILURES as exc:
                self._fail(info, f"{hook_name} raised {_describe_exc(exc)}")
                continue
            for spec in found:
                problem = _spec_problem(spec, spec_cls)
                if problem:
                    self._fail(info, f"{hook_name}: {problem}")
                    continue
                taken = table.get(spec.name)
                if taken is not None:
                    self._fail(
                        info, f"{kind} '{spec.name}' is already registered by {taken.plugin.label}; this one is ignored"
                    )
                    continue
                table[spec.name] = Registered(spec, info)
                info.registers.setdefault(kind, []).append(spec.name)

    def add_commands(self, app: Any) -> None:
        """Let plugins add subcommands to the Typer ``app`` (once per app). A command whose
        name is taken (by vaecli or an earlier plugin) is refused with an error naming both."""
        if id(app) in self._commands_added:
            return
        self._commands_added.add(id(app))
        owners = {_command_name(c): "vaecli (built-in)" for c in app.registered_commands}
        for impl, info in self._impls("register_commands"):
            before = list(app.registered_commands)
            try:
                impl.function(**dict.fromkeys(impl.argnames, app))
            except _PLUGIN_FAILURES as exc:
                app.registered_commands[:] = before
                self._fail(info, f"register_commands raised {_describe_exc(exc)}")
                continue
            added = [c for c in app.registered_commands if not any(c is b for b in before)]
            kept = []
            for command in added:
                name = _command_name(command)
                if name in owners:
                    self._fail(info, f"command '{name}' is already registered by {owners[name]}; this one is ignored")
                    continue
                owners[name] = info.label
                kept.append(command)
                info.commands.append(name)
            app.registered_commands[:] = before + kept

    # -- lookup -------------------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        return sorted(self.parts[kind])

    def get(self, kind: str, name: str, provider: Optional[dict] = None) -> Registered:
        """The registered part, or an error listing the known names.

        With ``provider`` (from a checkpoint), a missing part names the distribution to install.
        """
        try:
            return self.parts[kind][name]
        except KeyError:
            pass
        if isinstance(provider, dict) and provider.get("distribution") not in (None, "vaecli"):
            raise PluginMissingError(self._missing(kind, name, provider))
        raise unknown_name(kind, name, self.names(kind))

    def _missing(self, kind: str, name: str, provider: dict) -> str:
        """Why a checkpoint's part from a plugin distribution is not here, and what to do."""
        dist, version = provider["distribution"], provider.get("version", "")
        made = f"this checkpoint's {kind} '{name}' comes from the plugin distribution {dist} {version}".rstrip()
        same = lambda p: _normalize(p.distribution) == _normalize(dist)  # noqa: E731
        loaded = [p for p in self.plugins if same(p)]
        if loaded:
            p = loaded[0]
            why = f"is broken ({'; '.join(p.errors)})" if p.errors else f"does not register {kind} '{name}'"
            return f"{made}; the installed {p.distribution} {p.version} {why}; see `vae plugins`"
        if any(same(p) for p in self.skipped):
            return (
                f"{made}, which is installed but left out by VAECLI_LOAD_PLUGINS="
                f"{os.environ.get('VAECLI_LOAD_PLUGINS', '')!r}; add {dist} to it"
            )
        pin = f"=={version}" if version and version != "?" else ""
        return f"{made}, which is not installed; install it with: pip install {dist}{pin}"


def _print_warning(message: str) -> None:
    from .console import warn

    warn(message)


_REGISTRY: Optional[Registry] = None


def registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY


def reset() -> None:
    """Forget the loaded plugins (tests, or after installing a plugin in a running process)."""
    global _REGISTRY
    _REGISTRY = None
