"""docs/plugins.md stays true: its example plugin is installed exactly as written (its files,
with a ``*.dist-info`` made from its own pyproject.toml) and each part runs; every hook of
``vaecli.hookspecs`` has a section on the page and a test here; the console output the page
shows is what vaecli prints."""

from __future__ import annotations

import importlib
import json
import math
import re
import sys
from pathlib import Path

import pytest
import tomllib
import torch

import vaecli
from conftest import one_line_error
from vaecli import hookspecs, plugins, testing
from vaecli.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
TEXT = DOC.read_text()
FILES = dict(re.findall(r"```\w+ file=(\S+)\n(.*?)```", TEXT, re.S))
CONSOLE = re.findall(r"```console\n(.*?)```", TEXT, re.S)
SMALL = [
    "--data-option",
    "n_train=64",
    "--data-option",
    "n_test=32",
    "--latent-dim",
    "4",
    "--batch-size",
    "32",
    "--device",
    "cpu",
]


def _hooks() -> list[str]:
    return sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), f"{hookspecs.PROJECT}_spec"))


def _console_after(command: str) -> list[str]:
    """The lines the page shows after ``$ COMMAND`` up to the next prompt."""
    for block in CONSOLE:
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if line == f"$ {command}":
                rest = []
                for after in lines[i + 1 :]:
                    if after.startswith("$ "):
                        break
                    rest.append(after)
                return rest
    raise AssertionError(f"docs/plugins.md shows no `$ {command}`")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example plugin, installed from the page: its files and a dist-info from its pyproject."""
    folder = tmp_path_factory.mktemp("site")
    for name, text in FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    project = tomllib.loads(FILES["pyproject.toml"])["project"]
    info = folder / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    eps = project["entry-points"]["vaecli"]
    (info / "entry_points.txt").write_text("[vaecli]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    return folder


@pytest.fixture(autouse=True)
def _example_installed(site, monkeypatch):
    """Only the example plugin loads (not whatever else this environment has), and the commands
    it adds to the app are taken away again afterwards."""
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("VAECLI_LOAD_PLUGINS", "vaecli-example")
    monkeypatch.setattr(app, "registered_commands", list(app.registered_commands))
    plugins.reset()
    yield
    plugins.reset()
    for name in [m for m in sys.modules if m.split(".")[0] == "vaecli_example"]:
        del sys.modules[name]


def _train(*extra: str) -> Path:
    result = testing.invoke(
        "train", "stripes", "--arch", "linear", "--likelihood", "laplace", "--epochs", "1", *SMALL, *extra
    )
    assert result.exit_code == 0, result.output
    return Path("stripes-linear.safetensors")


def test_every_hook_has_a_section_and_a_test():
    hooks = _hooks()
    assert hooks == [
        "register_architectures",
        "register_commands",
        "register_datasets",
        "register_likelihoods",
        "register_models",
        "register_recipes",
        "register_samplers",
    ]
    headings = re.findall(r"^### (\S+)$", TEXT, re.M)
    for hook in hooks:
        assert hook in headings, f"docs/plugins.md has no section '### {hook}'"
        assert callable(globals().get(f"test_hook_{hook}")), f"no test_hook_{hook} in {__file__}"
        assert f"def {hook}(" in FILES["vaecli_example/__init__.py"], f"the example does not implement {hook}"


def test_the_example_registers_one_part_of_each_kind():
    result = testing.invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    listed = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    example = listed["example"]
    assert (example["distribution"], example["version"], example["builtin"]) == ("vaecli-example", "0.1.0", False)
    assert example["registers"] == {
        "architecture": ["linear"],
        "likelihood": ["laplace", "zip"],
        "dataset": ["stripes", "sensors"],
        "recipe": ["stripes-linear"],
        "model": ["mixture"],
        "sampler": ["gaussian"],
    }
    assert example["commands"] == ["params"]
    assert example["error"] is None
    assert [p for p in listed.values() if not p["builtin"]] == [example]


def test_hook_register_architectures():
    model = testing.check_architecture("linear", (1, 16, 16), latent_dim=4)
    assert sum(p.numel() for p in model.encoder.parameters()) == 256 * 8 + 8
    no_bias = testing.check_architecture("linear", (3, 5, 7), latent_dim=2, options={"bias": False})
    assert sum(p.numel() for p in no_bias.decoder.parameters()) == 2 * 105
    # linear: the decoder of a mix of codes is the mix of the decoded codes (bias removed)
    z1, z2 = torch.randn(1, 2), torch.randn(1, 2)
    with torch.no_grad():
        assert torch.allclose(no_bias.decoder(z1 + 2 * z2), no_bias.decoder(z1) + 2 * no_bias.decoder(z2), atol=1e-5)


def test_hook_register_likelihoods():
    lik = testing.check_likelihood("laplace", (1, 3, 3), options={"scale": 0.25})
    torch.manual_seed(1)
    params, x = torch.randn(5, 1, 1, 3, 3), torch.randn(5, 1, 3, 3)
    expected = torch.distributions.Laplace(params[:, 0], 0.25).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(lik.log_prob(x, params), expected, atol=1e-5)
    mu = torch.full((1, 1, 1, 100, 100), 0.3)
    draws = lik.sample(mu, torch.Generator().manual_seed(0))
    assert abs((draws - 0.3).abs().mean().item() - 0.25) < 0.01  # E|x - mu| = b
    assert abs(draws.median().item() - 0.3) < 0.01
    one_line_error(
        testing.invoke("train", "stripes", "--likelihood", "laplace", "--likelihood-option", "scale=0", *SMALL),
        2,
        "scale must be positive",
    )
    assert not list(Path.cwd().iterdir())


def test_hook_register_models(monkeypatch):
    result = testing.invoke(
        "train",
        "stripes",
        "--model",
        "mixture",
        "--model-option",
        "components=3",
        "--epochs",
        "3",
        *SMALL,
        "-o",
        "m.safetensors",
    )
    assert result.exit_code == 0, result.output
    meta = vaecli.metadata("m.safetensors")
    first, last = meta["metrics"][0], meta["metrics"][-1]
    assert meta["model"]["kind"] == "mixture" and meta["model"]["family"]["options"] == {"components": 3}
    assert meta["model"]["family"]["provider"]["distribution"] == "vaecli-example"
    assert last["train_nelbo"] < first["train_nelbo"]
    model = vaecli.load("m.safetensors")
    # the prior is the mixture torch.distributions computes
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=torch.zeros(3)),
        torch.distributions.Independent(
            torch.distributions.Normal(model.prior_mean, torch.exp(0.5 * model.prior_logvar)), 1
        ),
    )
    z = torch.randn(6, 4)
    with torch.no_grad():
        torch.testing.assert_close(model.log_prior(z), mix.log_prob(z), rtol=1e-5, atol=1e-5)
    draws = model.prior_sample(20000, torch.Generator().manual_seed(0)).detach()
    torch.testing.assert_close(draws.mean(0), mix.mean.detach(), atol=0.08, rtol=0)
    for args in (
        ["sample", "-n", "4", "-o", "s.png"],
        ["evaluate", "-k", "8"],
        ["encode", "stripes:test", "-o", "z.npy"],
    ):
        done = testing.invoke(args[0], "m.safetensors", *args[1:])
        assert done.exit_code == 0, done.output
    # without the plugin, the checkpoint says what to install
    monkeypatch.setenv("VAECLI_LOAD_PLUGINS", "")
    plugins.reset()
    one_line_error(
        testing.invoke("sample", "m.safetensors", "-o", "t.png"),
        1,
        "model 'mixture' comes from the plugin distribution vaecli-example 0.1.0",
    )
    one_line_error(
        testing.invoke("train", "stripes", "--model", "mixture", *SMALL),
        2,
        "unknown model 'mixture'",
    )


def test_hook_register_samplers():
    result = testing.invoke("train", "stripes", "--epochs", "1", *SMALL, "-o", "g.safetensors")
    assert result.exit_code == 0, result.output
    drawn = testing.invoke("sample", "g.safetensors", "--sampler", "gaussian", "-o", "g.png")
    assert drawn.exit_code == 0 and "fitted on" in drawn.stdout, drawn.output
    model = vaecli.load("g.safetensors")
    from vaecli import sampling

    fitted, _ = sampling.fitted(model, Path("g.safetensors"), "gaussian", {}, lambda: None)  # reused: no images asked
    codes = model.encode_all(vaecli.read_inputs("stripes:train", model))[0]
    torch.testing.assert_close(fitted.mean, codes.mean(0), atol=1e-4, rtol=0)
    draws = fitted.sample(20000, torch.Generator().manual_seed(0), model)
    torch.testing.assert_close(torch.cov(draws.T), torch.cov(codes.T), atol=0.05, rtol=0.05)


def test_hook_register_datasets():
    splits = testing.check_dataset("stripes", options={"n_train": 50, "n_test": 20, "size": 8})
    images, labels = splits.train.images[:, 0].long(), splits.train.labels
    assert images.shape == (50, 8, 8) and set(images.unique().tolist()) <= {0, 255}
    assert set(labels.tolist()) == {0, 1} and splits.class_names == ["horizontal", "vertical"]
    horizontal, vertical = images[labels == 0], images[labels == 1]
    assert (horizontal == horizontal[:, :, :1]).all()  # every row is one value
    assert (vertical == vertical[:, :1, :]).all()  # every column is one value
    assert not (horizontal == horizontal[:, :1, :]).all()  # and they do stripe
    again = testing.check_dataset("stripes", options={"n_train": 50, "n_test": 20, "size": 8})
    assert torch.equal(again.train.images, splits.train.images)
    assert not torch.equal(splits.test.images[:20], splits.train.images[:20])


def test_hook_register_recipes():
    config = testing.check_recipe("stripes-linear")
    assert (config.dataset, config.arch, config.likelihood, config.latent_dim, config.lr, config.epochs) == (
        "stripes",
        "linear",
        "laplace",
        4,
        3e-3,
        5,
    )
    assert config.likelihood_options == {"scale": 0.2}
    small = ["--data-option", "n_train=64", "--data-option", "n_test=32", "--batch-size", "32", "--device", "cpu"]
    result = testing.invoke("train", "--recipe", "stripes-linear", "--epochs", "1", *small, "-o", "r.safetensors")
    assert result.exit_code == 0, result.output
    meta = vaecli.metadata("r.safetensors")
    assert meta["model"]["architecture"]["name"] == "linear"
    assert meta["model"]["likelihood"]["options"] == {"scale": 0.2}
    t = meta["training"]
    assert (t["lr"], t["epochs"], t["latent_dim"]) == (3e-3, 1, 4)  # --epochs won over the recipe's 5
    assert t["recipe"]["name"] == "stripes-linear"
    assert t["recipe"]["provider"]["distribution"] == "vaecli-example"
    listed = {r["name"]: r for r in json.loads(testing.invoke("recipes", "--json").stdout)}
    assert listed["stripes-linear"]["provider"]["distribution"] == "vaecli-example"
    # the page's TOML file trains as it says
    Path("wide.toml").write_text(re.search(r'```toml\n(name = "stripes-wide".*?)```', TEXT, re.S).group(1))
    result = testing.invoke("train", "--recipe", "wide.toml", "--epochs", "1", *small, "-o", "w.safetensors")
    assert result.exit_code == 0, result.output
    t = vaecli.metadata("w.safetensors")["training"]
    assert (t["latent_dim"], t["likelihood_options"], t["recipe"]["name"]) == (8, {"scale": 0.2}, "stripes-wide")
    assert t["recipe"]["file"] == str(Path("wide.toml").resolve())


def test_hook_register_commands():
    ckpt = _train()  # 16x16 stripes, latent 4, as on the page
    result = testing.invoke("params", ckpt)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == _console_after(f"vae params {ckpt}")
    assert "Count a model's parameters" in testing.invoke("params", "--help").stdout


def test_missing_plugin_message_is_as_documented(site):
    ckpt = _train()
    sys.path.remove(str(site))  # uninstalled (the fixture's monkeypatch puts sys.path back)
    importlib.invalidate_caches()
    plugins.reset()
    [documented] = _console_after(f"vae sample {ckpt}")
    line = one_line_error(testing.invoke("sample", ckpt), 1)
    assert line == documented


def test_the_pages_testing_snippet_runs(tmp_path, monkeypatch):
    snippet = re.search(r"```python\n(from vaecli import testing\n.*?)```", TEXT, re.S).group(1)
    namespace: dict = {}
    exec(compile(snippet, "docs/plugins.md", "exec"), namespace)
    namespace["test_linear"]()
    namespace["test_train_through_the_cli"](tmp_path, monkeypatch)
    assert (tmp_path / "stripes-linear.safetensors").exists()


TOOLBOX = (
    "vaecli.console",
    "vaecli.inputs",
    "vaecli.viz",
    "vaecli.nets",
    "vaecli.images",
    "vaecli.errors",
    "vaecli.likelihood",
    "vaecli.model",
    "vaecli.samplers",
    "vaecli.testing",
)


@pytest.mark.parametrize("module", TOOLBOX)
def test_every_toolbox_name_is_listed_in_all_and_on_the_page(module):
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    assert names, f"{module} has no __all__"
    section = TEXT[TEXT.index("## The toolbox") : TEXT.index("## Checkpoints remember your plugin")]
    for name in names:
        assert hasattr(mod, name), f"{module}.__all__ names {name}, which it lacks"
        assert f"`{name}" in section or f"{name}`" in section or f".{name}`" in section, (
            f"docs/plugins.md's toolbox section does not name {module}.{name}"
        )


def test_a_dataset_of_rows_and_a_likelihood_of_counts(tmp_path):
    """The page's rows: the sensors table trains, samples rows in its own columns, and the
    zero-inflated Poisson keeps the contract and matches its formula."""
    splits = testing.check_dataset("sensors", options={"n_train": 64, "n_test": 32})
    assert splits.kind == "table" and [c.type for c in splits.columns] == ["numeric", "categorical", "binary", "count"]
    result = testing.invoke(
        "train", "sensors", "-e", "1", "-z", "2", "--data-option", "n_train=64", "-o", "s.safetensors"
    )
    assert result.exit_code == 0, result.output
    assert "rows of 4 columns (table)" in result.stderr
    result = testing.invoke("sample", "s.safetensors", "-n", "20", "-o", "s.csv")
    assert result.exit_code == 0, result.output
    lines = Path("s.csv").read_text().splitlines()
    assert lines[0] == "temperature,site,door_open,events" and len(lines) == 21
    assert {line.split(",")[1] for line in lines[1:]} <= {"roof", "cellar", "garden"}
    lik = testing.check_likelihood("zip")
    x = torch.tensor([[0.0, 3.0]])
    params = torch.tensor([[[0.5, 0.5], [0.0, 0.0]]])  # log rate, logit pi
    rate, pi = math.exp(0.5), 0.5
    p0 = pi + (1 - pi) * math.exp(-rate)
    p3 = (1 - pi) * math.exp(-rate) * rate**3 / 6
    assert torch.allclose(lik.log_prob(x, params), torch.tensor([math.log(p0) + math.log(p3)]), atol=1e-5)
    import numpy as np

    np.save(tmp_path / "c.npy", np.random.default_rng(0).poisson(1.0, size=(80, 3)))
    result = testing.invoke(
        "train", f"tensor:{tmp_path / 'c.npy'}", "-l", "zip", "-e", "1", "-z", "2", "-o", "z.safetensors"
    )
    assert result.exit_code == 0, result.output
