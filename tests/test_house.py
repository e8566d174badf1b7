"""The house rules: style, types, import layers, module size, public names for plugins, one
declaration per setting, and the README's Python API examples run as written."""

from __future__ import annotations

import ast
import doctest
import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert Path(found).exists(), f"{name} is not installed: pip install '.[test]'"
    return found


def _run(*command: str) -> None:
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"


def test_ruff_lint():
    _run(sys.executable, "-m", "ruff", "check", ".")


def test_ruff_format():
    _run(sys.executable, "-m", "ruff", "format", "--check", ".")


def test_mypy_on_the_package():
    _run(sys.executable, "-m", "mypy")


def test_no_import_runs_upward():
    _run(_tool("lint-imports"))


def test_no_module_is_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "vaecli").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def _public(module: str, name: str) -> bool:
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    if names is not None:
        return name in names
    return not name.startswith("_")


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except ModuleNotFoundError:
        return False


def test_plugins_import_only_public_names():
    wrong = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vaecli":
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    private = any(part.startswith("_") for part in full.split("."))
                    if private or not (_is_module(full) or _public(node.module, alias.name)):
                        wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} from {node.module} import {alias.name}")
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                source = ast.unparse(node.value)
                if source.split(".")[0] == "vaecli":
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} {source}.{node.attr}")
    assert not wrong, "plugins/ use names that are not public:\n" + "\n".join(wrong)


def test_a_setting_is_one_declaration():
    """Every field of TrainConfig is a `vae train` option with its help, a recipe key unless it is
    a setting of the run, and checked from its declaration."""
    import typer

    from vaecli import recipes
    from vaecli.cli import app
    from vaecli.config import TrainConfig, settings
    from vaecli.errors import UsageError

    train = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    params = {p.name: p for p in train.params}
    for s in settings():
        if s.flag:
            assert s.name in params, f"vae train has no option for the setting {s.name}"
            if s.flag != "DATASET":
                assert params[s.name].help == s.help, s.name
                assert s.flag.split("/")[0] in params[s.name].opts, (s.flag, params[s.name].opts)
        spec = recipes.RecipeSpec(name="t", help="", source="", settings={s.name: getattr(TrainConfig(), s.name)})
        if s.recipe:
            recipes.settings_of(recipes.Recipe(spec))
        else:
            with pytest.raises(UsageError, match="setting of the run"):
                recipes.settings_of(recipes.Recipe(spec))
        if s.minimum is not None or s.positive:
            with pytest.raises(UsageError, match=re.escape(s.flag)):
                TrainConfig(**{s.name: -1}).check()


def _doctest(text: str, name: str, tmp_path: Path, monkeypatch, globs: dict) -> None:
    monkeypatch.chdir(tmp_path)
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, globs, name, name, 0)
    assert test.examples, f"{name} has no >>> examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=lambda s: sys.stdout.write(s))
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (output above)"


def test_the_readmes_python_api_section_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API") :]
    section = section[: section.index("\n## ", 3)]
    _doctest(
        "\n".join(re.findall(r"```pycon\n(.*?)```", section, re.S)), "README.md: Python API", tmp_path, monkeypatch, {}
    )


def test_the_api_modules_example_runs(tmp_path, monkeypatch):
    import vaecli.api

    _doctest(vaecli.api.__doc__ or "", "vaecli.api", tmp_path, monkeypatch, {"tmp": tmp_path})
