"""`vae train --config run.toml` and `vae info CKPT --config`: a run's options in a TOML file,
the command line winning over the file and the file over its recipe; the file `vae info`
prints trains the same run again."""

from __future__ import annotations

from pathlib import Path

import pytest

import vaecli
from conftest import TINY_CLI, one_line_error

TINY_TOML = """
latent-dim = 3
batch-size = 32
epochs = 1
device = "cpu"

[data-option]
n_train = 96
n_test = 48
size = 8

[arch-option]
hidden = [32]
"""


def _training(path) -> dict:
    return vaecli.metadata(path)["training"]


def test_the_config_that_info_prints_trains_the_same_run(vae, tmp_path):
    args = [*TINY_CLI, "--epochs", "1", "--lr", "0.002", "--beta", "2", "--binarize", "dynamic", "--device", "cpu"]
    assert vae("train", "shapes", *args, "-o", "a.safetensors").exit_code == 0
    printed = vae("info", "a.safetensors", "--config")
    assert printed.exit_code == 0, printed.output
    assert "beta = 2.0" in printed.stdout and "[arch-option]" in printed.stdout
    Path("run.toml").write_text(printed.stdout)
    result = vae("train", "--config", "run.toml", "-o", "b.safetensors")
    assert result.exit_code == 0, result.output
    a, b = _training("a.safetensors"), _training("b.safetensors")
    assert {k for k in a if a[k] != b[k]} == {"out"}
    assert vaecli.metadata("a.safetensors")["metrics"][0]["test_nelbo"] == pytest.approx(
        vaecli.metadata("b.safetensors")["metrics"][0]["test_nelbo"], rel=1e-6
    )


def test_the_command_line_wins_over_the_file_and_the_file_over_its_recipe(vae, tmp_path):
    Path("run.toml").write_text('recipe = "pytorch-example"\nlr = 0.01\nno-download = true\n' + TINY_TOML)
    result = vae(
        "train",
        "shapes",
        "--config",
        "run.toml",
        "--lr",
        "0.005",
        "--arch-option",
        "activation=tanh",
        "-o",
        "c.safetensors",
    )
    assert result.exit_code == 0, result.output
    t = _training("c.safetensors")
    assert t["lr"] == 0.005  # the flag
    assert t["epochs"] == 1 and t["latent_dim"] == 3 and t["download"] is False  # the file
    assert t["arch_options"] == {"hidden": [32], "activation": "tanh"}  # the file's table, merged with the flag
    assert t["recipe"]["name"] == "pytorch-example" and t["batch_size"] == 32  # the file over the recipe's 128


@pytest.mark.parametrize(
    "text, needles",
    [
        ("latent-dims = 3\n", ["unknown option 'latent-dims'", "did you mean 'latent-dim'"]),
        ('epochs = "ten"\n', ["epochs must be an integer", "'ten'"]),
        ("epochs = 0\n", ["--epochs must be at least 1"]),
        ("force = true\n", ["unknown option 'force'"]),
        ("lr = 0.1\nlr = 0.2\n", ["not valid TOML"]),
        ("--lr = 0.2\n", ["unknown option '--lr'", "did you mean 'lr'"]),
        ("latent-dim = 3\nlatent_dim = 4\n", ["'latent_dim' sets latent_dim a second time"]),
        ("[arch-option]\nhidden = {a = {b = 1}}\n", ["arch-option must be a table of options"]),
        ("x = " + "[" * 20 + "]" * 20 + "\n", ["nests deeper than 8 levels"]),
        ("recipe = 3\n", ["recipe must be a recipe's name or file"]),
    ],
)
def test_a_bad_config_is_one_line_and_trains_nothing(vae, tmp_path, text, needles):
    Path("bad.toml").write_text(text)
    line = one_line_error(vae("train", "shapes", "--config", "bad.toml", "-o", "x.safetensors"), 2, "--config bad.toml")
    for needle in needles:
        assert needle in line
    assert not Path("x.safetensors").exists()


def test_resume_takes_no_config(vae, tiny_ckpt, tmp_path):
    Path("run.toml").write_text("epochs = 3\n")
    line = one_line_error(vae("train", "--resume", tiny_ckpt, "--config", "run.toml"), 2)
    assert "--config" in line and "cannot change them" in line
