"""Recipes: the built-ins are valid and say what the papers say, `vae train --recipe` applies one
with the typed options winning, TOML files of the same form, one-line errors for bad ones, `vae
info` shows the recipe, every option and a line that repeats the run bit for bit, `vae recipes`,
the multistep and Burda learning-rate schedules, and a recipe registered by a plugin."""

from __future__ import annotations

import dataclasses
import importlib
import json
import shlex
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import torch

import vaecli
from conftest import TINY_CLI, one_line_error, tiny_run
from vaecli import checkpoint, plugins, recipes, testing
from vaecli.recipes import _toml
from vaecli.training import TrainConfig, burda_stage

pytestmark = pytest.mark.usefixtures("one_thread")

BUILTINS = [
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
RUN_KEYS = {
    "device",
    "precision",
    "compile",
    "data_dir",
    "download",
    "out",
    "force",
    "save_every",
    "viz_dir",
    "tensorboard",
    "recipe",
}


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def _settings(name: str) -> dict:
    return plugins.registry().parts["recipe"][name].spec.settings


def _same_weights(a, b) -> None:
    ta, tb = checkpoint.read(a).tensors, checkpoint.read(b).tensors
    keys = sorted(k for k in ta if k.startswith("model."))
    assert keys and keys == sorted(k for k in tb if k.startswith("model."))
    assert [k for k in keys if not torch.equal(ta[k], tb[k])] == []


# --------------------------------------------------------------------------------------------
# The built-in recipes
# --------------------------------------------------------------------------------------------


def test_builtins_are_registered_in_order_by_the_builtin_plugin():
    reg = plugins.registry()
    assert list(reg.parts["recipe"]) == BUILTINS
    assert {r.plugin.name for r in reg.parts["recipe"].values()} == {"recipes"}
    assert all(r.plugin.builtin for r in reg.parts["recipe"].values())


@pytest.mark.parametrize("name", BUILTINS)
def test_each_builtin_is_a_valid_set_of_train_settings(name):
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    spec = plugins.registry().parts["recipe"][name].spec
    assert set(spec.settings) <= fields - RUN_KEYS
    assert spec.help and "\n" not in spec.help and spec.source
    config = testing.check_recipe(name)  # types, check(), architecture and likelihood build, dataset exists
    for key, value in spec.settings.items():
        assert getattr(config, key) == value, key
    assert config.recipe["name"] == name and config.recipe["provider"]["distribution"] == "vaecli"


def test_builtins_say_what_their_sources_say():
    s = {name: _settings(name) for name in BUILTINS}
    ex = s["pytorch-example"]
    assert (ex["arch_options"], ex["latent_dim"], ex["likelihood"], ex["binarize"]) == (
        {"hidden": [400], "activation": "relu"},
        20,
        "bernoulli",
        "none",
    )
    assert (ex["lr"], ex["batch_size"], ex["epochs"], ex["optimizer"]) == (1e-3, 128, 10, "adam")
    kw = s["kingma-welling"]
    assert (kw["arch_options"], kw["latent_dim"], kw["likelihood"], kw["batch_size"]) == (
        {"hidden": [500], "activation": "tanh"},
        20,
        "bernoulli",
        100,
    )
    py = s["pythae-vae"]
    assert (py["arch_options"], py["latent_dim"], py["binarize"]) == (
        {"hidden": [400], "activation": "relu"},
        40,
        "static",
    )
    assert (py["batch_size"], py["lr"], py["epochs"], py["lr_milestones"]) == (100, 1e-4, 500, [200, 350])
    assert py["lr_gamma"] == pytest.approx(0.630957344)
    for name, k, nll in (("burda-vae", 1, 86.76), ("burda-iwae", 50, 84.78)):
        b = s[name]
        assert (b["arch_options"], b["latent_dim"], b["binarize"], b["batch_size"]) == (
            {"hidden": [200, 200], "activation": "tanh"},
            50,
            "dynamic",
            20,
        )
        assert (b["lr"], b["lr_schedule"], b["epochs"], b["iw_samples"]) == (1e-3, "burda", 3280, k)
        assert plugins.registry().parts["recipe"][name].spec.published == {
            "nll": nll,
            "iw_samples": 5000,
            "epochs": 3280,
        }
    assert plugins.registry().parts["recipe"]["pythae-vae"].spec.published == {
        "nll": 89.78,
        "iw_samples": 200,
        "epochs": 500,
    }
    for name, family, options in (
        ("rainforth-miwae", "miwae", {"m": 8, "k": 8}),
        ("rainforth-piwae", "piwae", {"m": 8, "k": 8}),
        ("rainforth-ciwae", "ciwae", {"beta": 0.05, "k": 64}),
    ):
        r = s[name]
        assert (r["model"], r["model_options"], r["lr_schedule"], r["batch_size"]) == (family, options, "burda", 20)
    vamp = s["tomczak-vamp"]
    assert (vamp["model"], vamp["model_options"], vamp["latent_dim"], vamp["kl_warmup"]) == (
        "vamp",
        {"components": 500},
        40,
        100,
    )
    assert "eps" in plugins.registry().parts["recipe"]["burda-vae"].spec.source  # the deviation is said
    assert "Adagrad" in plugins.registry().parts["recipe"]["kingma-welling"].spec.source


def test_pythae_schedule_is_torchs_multisteplr():
    config = testing.check_recipe("pythae-vae")
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[200, 350, 500, 750, 1000], gamma=10 ** (-1 / 5))
    batches = 600
    for epoch in range(config.epochs):
        for step in (epoch * batches, (epoch + 1) * batches - 1):
            assert config.learning_rate(step, batches) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12), epoch
        opt.step()
        sched.step()
    assert config.learning_rate(499 * batches, batches) == pytest.approx(1e-4 * 10 ** (-2 / 5))


# --------------------------------------------------------------------------------------------
# The Burda et al. schedule
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "epoch, stage",
    [
        (0, 0),
        (1, 1),
        (3, 1),
        (4, 2),
        (12, 2),
        (13, 3),
        (39, 3),
        (40, 4),
        (120, 4),
        (121, 5),
        (363, 5),
        (364, 6),
        (1092, 6),
        (1093, 7),
        (3279, 7),
        (3280, 8),
    ],
)
def test_burda_schedule_at_stage_boundaries(epoch, stage):
    config = TrainConfig(lr_schedule="burda", lr=1e-3, epochs=3280)
    batches = 3000  # 60,000 images in batches of 20
    for step in (epoch * batches, epoch * batches + 1, (epoch + 1) * batches - 1):
        assert config.learning_rate(step, batches) == pytest.approx(1e-3 * 10 ** (-stage / 7), rel=1e-12)
    assert TrainConfig(lr_schedule="burda", lr=4e-3).learning_rate(epoch * 7, 7) == pytest.approx(
        4e-3 * 10 ** (-stage / 7), rel=1e-12
    )  # scaled from --lr


def test_burda_schedule_is_3_to_the_i_epochs_for_i_0_to_7():
    stages = Counter(burda_stage(e) for e in range(3280))
    assert stages == {i: 3**i for i in range(8)}
    assert TrainConfig(lr_schedule="burda").learning_rate(3279, 1) == pytest.approx(1e-4)  # 1e-3 * 10^(-7/7)


def test_burda_schedule_in_training_and_after_resume(vae):
    args = [*TINY_CLI, "--lr-schedule", "burda", "--epochs", "5"]
    _ok(vae("train", *args, "-o", "straight.safetensors"))
    _ok(vae("train", *TINY_CLI, "--lr-schedule", "burda", "--epochs", "2", "-o", "r.safetensors"))
    _ok(vae("train", "--resume", "r.safetensors", "--epochs", "5"))
    for path in ("straight.safetensors", "r.safetensors"):
        lrs = [m["lr"] for m in vaecli.metadata(path)["metrics"]]  # each epoch's last step
        assert lrs == pytest.approx([1e-3 * 10 ** (-i / 7) for i in (0, 1, 1, 1, 2)], rel=1e-12)
    _same_weights("straight.safetensors", "r.safetensors")
    assert "burda schedule" in vae("info", "r.safetensors").stdout


def test_multistep_schedule_and_its_errors(vae):
    config = TrainConfig(lr_schedule="multistep", lr_milestones=[2, 4], lr_gamma=0.5, lr=1.0)
    assert [config.learning_rate(e * 3, 3) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    one_line_error(vae("train", *TINY_CLI, "--lr-schedule", "multistep"), 2, "needs --lr-milestones")
    one_line_error(vae("train", *TINY_CLI, "--lr-milestones", "3"), 2, "--lr-milestones is for --lr-schedule multistep")
    one_line_error(
        vae("train", *TINY_CLI, "--lr-schedule", "multistep", "--lr-milestones", "4,2"), 2, "increasing", "4,2"
    )
    one_line_error(
        vae("train", *TINY_CLI, "--lr-schedule", "multistep", "--lr-milestones", "two"),
        2,
        "--lr-milestones takes whole numbers",
        "'two'",
    )
    assert not list(Path.cwd().glob("*.safetensors"))


# --------------------------------------------------------------------------------------------
# vae train --recipe
# --------------------------------------------------------------------------------------------


def test_recipe_settings_replace_defaults_and_typed_options_win(vae):
    _ok(vae("train", "shapes", "--recipe", "burda-iwae", *TINY_CLI, "--epochs", "1", "-o", "b.safetensors"))
    meta = vaecli.metadata("b.safetensors")
    t = meta["training"]
    # typed: dataset, its options, hidden, latent, batch, epochs; from the recipe: the rest
    assert (t["dataset"], t["dataset_options"]) == ("shapes", {"n_train": "96", "n_test": "48", "size": "8"})
    assert (t["latent_dim"], t["batch_size"], t["epochs"]) == (3, 32, 1)
    assert (t["iw_samples"], t["binarize"], t["lr_schedule"], t["lr"]) == (50, "dynamic", "burda", 1e-3)
    assert t["arch_options"] == {"hidden": "32", "activation": "tanh"}  # merged key by key
    assert meta["model"]["architecture"]["options"] == {"hidden": [32], "activation": "tanh"}
    assert meta["data"]["preprocessing"]["binarize"] == "dynamic"
    rec = t["recipe"]
    assert (rec["name"], rec["file"], rec["provider"]["distribution"]) == ("burda-iwae", None, "vaecli")
    assert rec["settings"] == _settings("burda-iwae") and rec["published"]["nll"] == 84.78


def test_another_arch_or_schedule_drops_the_recipes_options_for_it(vae):
    _ok(
        vae(
            "train",
            "shapes",
            "--recipe",
            "pythae-vae",
            *TINY_CLI,
            "--arch",
            "conv",
            "--arch-option",
            "channels=4",
            "--lr-schedule",
            "constant",
            "--epochs",
            "1",
            "-o",
            "c.safetensors",
        )
    )
    t = vaecli.metadata("c.safetensors")["training"]
    arch = vaecli.metadata("c.safetensors")["model"]["architecture"]
    assert arch["name"] == "conv"
    assert arch["options"] == {"channels": [4], "hidden": [32], "activation": "relu"}  # not the recipe's hidden 400
    assert (t["lr_schedule"], t["lr_milestones"], t["lr_gamma"], t["lr"]) == ("constant", [], 0.1, 1e-4)


def test_recipe_from_python(tmp_path):
    config = recipes.config("pythae-vae", epochs=3, dataset="shapes")
    assert (config.epochs, config.lr, config.latent_dim, config.dataset, config.dataset_options) == (
        3,
        1e-4,
        40,
        "shapes",
        {},
    )
    result = vaecli.train(**tiny_run(recipe="pytorch-example", epochs=1, out=str(tmp_path / "p.safetensors")))
    t = result.model.meta["training"]
    assert (t["recipe"]["name"], t["lr"], t["arch_options"]["activation"], t["epochs"]) == (
        "pytorch-example",
        1e-3,
        "relu",
        1,
    )
    with pytest.raises(TypeError):
        vaecli.train(TrainConfig(), recipe="pytorch-example")


TOML = """
name = "tiny-tanh"
help = "A tiny tanh VAE on shapes."
source = "tests/test_recipes.py"

[settings]
dataset = "shapes"
latent_dim = 2
batch_size = 48
lr = 3e-3
epochs = 2
lr_schedule = "step"
lr_step = 1
lr_gamma = 0.5

[settings.dataset_options]
n_train = 96
n_test = 48
size = 8

[settings.arch_options]
hidden = [16, 8]
activation = "tanh"

[published]
nll = 12.5
note = "made up"
"""


def test_toml_recipe_file(vae):
    Path("tiny.toml").write_text(TOML)
    _ok(vae("train", "--recipe", "tiny.toml", "--device", "cpu", "--epochs", "3", "-o", "t.safetensors"))
    meta = vaecli.metadata("t.safetensors")
    t = meta["training"]
    assert (t["dataset"], t["latent_dim"], t["batch_size"], t["lr"], t["epochs"]) == ("shapes", 2, 48, 3e-3, 3)
    assert meta["model"]["architecture"]["options"] == {"hidden": [16, 8], "activation": "tanh"}
    assert (meta["data"]["n_train"], meta["data"]["n_test"]) == (96, 48)
    assert [m["lr"] for m in meta["metrics"]] == [3e-3, 1.5e-3, 7.5e-4]
    rec = t["recipe"]
    assert (rec["name"], rec["file"], rec["provider"]) == ("tiny-tanh", str(Path("tiny.toml").resolve()), None)
    assert rec["published"] == {"nll": 12.5, "note": "made up"}
    # `vae recipes FILE` checks and prints it; the name defaults to the file's
    Path("other.toml").write_text(TOML.replace('name = "tiny-tanh"\n', ""))
    shown = _toml().loads(_ok(vae("recipes", "other.toml")).stdout)
    assert shown["name"] == "other" and shown["settings"]["arch_options"] == {"hidden": [16, 8], "activation": "tanh"}


@pytest.mark.parametrize("name", BUILTINS)
def test_vae_recipes_name_prints_toml_that_reads_back_the_same(vae, name):
    text = _ok(vae("recipes", name)).stdout
    Path("r.toml").write_text(text)
    again = recipes.read_file("r.toml").spec
    spec = plugins.registry().parts["recipe"][name].spec
    assert (again.name, again.help, again.source, again.settings, again.published) == (
        spec.name,
        spec.help,
        spec.source,
        spec.settings,
        spec.published,
    )


# --------------------------------------------------------------------------------------------
# Bad recipes: one line each, nothing written
# --------------------------------------------------------------------------------------------


BAD_FILES = [
    ("name = \n", "is not valid TOML"),
    ("[settings]\nepoch = 3\n", "unknown setting 'epoch' (did you mean 'epochs'?)"),
    ('[settings]\nlr = "fast"\n', "lr must be a number, got 'fast'"),
    ("[settings]\nepochs = 2.5\n", "epochs must be an integer, got 2.5"),
    ("[settings]\nlatent_dim = true\n", "latent_dim must be an integer, got True"),
    ("[settings]\narch_options = 3\n", "arch_options must be a table of options"),
    ("[settings]\narch_options = {hidden = {a = 1}}\n", "arch_options must be a table of options"),
    ('[settings]\ndevice = "cuda"\n', "'device' is a setting of the run, not of a recipe; give --device"),
    ('[settings]\nprecision = "fp16"\n', "'precision' is a setting of the run"),
    ("[setings]\nepochs = 3\n", "unknown key setings"),
    ('name = "x"\n', "has no [settings] table"),
    ("settings = 3\n", "settings must be a table"),
    ("published = 3\n[settings]\n", "published must be a table"),
    ('name = "two words"\n[settings]\n', "name must be a word without spaces"),
    ("help = 3\n[settings]\n", "help must be a string"),
    ('[settings]\narch_options = {activation = "nope"}\n', "activation must be one of"),
    ('[settings]\nlr_schedule = "weekly"\n', "unknown learning-rate schedule 'weekly'"),
    ("[settings]\nepochs = 0\n", "bad.toml: --epochs must be at least 1, got 0"),
    ('[settings]\nlr_schedule = "multistep"\n', "bad.toml: --lr-schedule multistep needs --lr-milestones"),
    ('[settings]\narch = "nope"\n', "unknown architecture 'nope'"),
]


@pytest.mark.parametrize("text, needle", BAD_FILES, ids=[n for _, n in BAD_FILES])
def test_a_bad_recipe_file_is_one_line(vae, text, needle):
    Path("bad.toml").write_text(text)
    line = one_line_error(vae("train", "--recipe", "bad.toml", *TINY_CLI), 2, needle)
    assert "bad.toml" in line or "unknown" in line or "must be one of" in line
    assert not list(Path.cwd().glob("*.safetensors"))


@pytest.mark.parametrize(
    "args, needles",
    [
        (["train", "--recipe", "nope"], ["unknown recipe 'nope'", "pytorch-example", "NAME.toml"]),
        (["train", "--recipe", "missing.toml"], ["recipe file missing.toml does not exist"]),
        (["train", "--recipe", "folder.toml"], ["recipe file folder.toml is a folder"]),
        (["train", "--recipe", "latin1.toml"], ["recipe file latin1.toml is not UTF-8 text"]),
        (["recipes", "nope"], ["unknown recipe 'nope'"]),
        (["recipes", "missing.toml"], ["does not exist"]),
        (["recipes", "unknown-key.toml"], ["unknown setting 'colour'"]),
    ],
)
def test_bad_recipe_names_and_files_are_one_line(vae, args, needles):
    Path("folder.toml").mkdir()
    Path("latin1.toml").write_bytes('name = "caf\xe9"\n[settings]\n'.encode("latin-1"))
    Path("unknown-key.toml").write_text('[settings]\ncolour = "red"\n')
    one_line_error(vae(*args, *(TINY_CLI if args[0] == "train" else [])), 2, *needles)
    assert not list(Path.cwd().glob("*.safetensors"))


def test_recipe_with_resume_is_refused(vae, tiny_ckpt):
    one_line_error(
        vae("train", "--resume", tiny_ckpt, "--recipe", "pytorch-example"), 2, "--recipe and --resume do not combine"
    )


def test_resume_keeps_the_recipe(vae):
    _ok(vae("train", "--recipe", "pytorch-example", "shapes", *TINY_CLI, "--epochs", "1", "-o", "r.safetensors"))
    _ok(vae("train", "--resume", "r.safetensors", "--epochs", "2"))
    t = vaecli.metadata("r.safetensors")["training"]
    assert (t["recipe"]["name"], t["epochs"]) == ("pytorch-example", 2)


# --------------------------------------------------------------------------------------------
# vae info: the recipe, every option, and the line that repeats the run
# --------------------------------------------------------------------------------------------


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_vae_info_shows_the_recipe_the_options_and_a_repeat_line_that_repeats_it(vae):
    _ok(
        vae(
            "train",
            "shapes",
            "--recipe",
            "pythae-vae",
            *TINY_CLI,
            "--epochs",
            "2",
            "--seed",
            "3",
            "-o",
            "a.safetensors",
        )
    )
    shown = _flat(_ok(vae("info", "a.safetensors")).stdout)
    assert f"recipe pythae-vae (vaecli {vaecli.__version__})" in shown
    assert "epochs 500 -> 2" in shown and "latent_dim 40 -> 3" in shown and "dataset mnist -> shapes" in shown
    assert "published NLL 89.78 (k=200, 500 epochs)" in shown
    assert "Larochelle" in shown  # the source, with how it differs
    assert "lr_milestones=200,350" in shown and "binarize=static" in shown and "seed=3" in shown
    assert "multistep schedule (x0.630957 after epochs 200, 350)" in shown
    training = vaecli.metadata("a.safetensors")["training"]
    line = recipes.repeat_command(training)
    assert _flat(line) in shown
    words = shlex.split(line)
    assert words[:5] == ["vae", "train", "shapes", "--recipe", "pythae-vae"]
    for flag in ("--latent-dim", "--epochs", "--batch-size", "--seed", "--device"):
        assert flag in words
    assert "--precision" not in words  # the run was given auto: it resolves again where it is repeated
    assert "--lr" not in words and "--binarize" not in words  # the recipe's own
    # the line trains the same model, bit for bit
    _ok(vae(*words[1:], "-o", "b.safetensors"))
    _same_weights("a.safetensors", "b.safetensors")
    again = vaecli.metadata("b.safetensors")["training"]
    assert {k: v for k, v in again.items() if k != "out"} == {k: v for k, v in training.items() if k != "out"}


def test_vae_info_of_a_run_without_recipe(vae, tiny_ckpt):
    shown = _flat(_ok(vae("info", tiny_ckpt)).stdout)
    assert "recipe none" in shown and "options dataset=shapes" in shown
    line = recipes.repeat_command(vaecli.metadata(tiny_ckpt)["training"])
    assert "--recipe" not in line and "--latent-dim 3 --epochs 2 --batch-size 32" in line and "shapes" not in line
    assert _flat(line) in shown


def test_repeat_line_of_a_file_recipe_and_of_another_arch(vae):
    Path("tiny.toml").write_text(TOML)
    _ok(
        vae(
            "train",
            "--recipe",
            "tiny.toml",
            "--device",
            "cpu",
            "--arch",
            "conv",
            "--arch-option",
            "channels=4",
            "-o",
            "t.safetensors",
        )
    )
    line = recipes.repeat_command(vaecli.metadata("t.safetensors")["training"])
    words = shlex.split(line)
    assert words[2:4] == ["--recipe", str(Path("tiny.toml").resolve())]
    assert "--arch conv --arch-option channels=4" in line and "hidden" not in line and "tanh" not in line
    _ok(vae(*words[1:], "-o", "again.safetensors"))
    _same_weights("t.safetensors", "again.safetensors")


# --------------------------------------------------------------------------------------------
# vae recipes
# --------------------------------------------------------------------------------------------


def test_vae_recipes_table_and_json(vae):
    shown = _flat(_ok(vae("recipes")).stdout)
    for name in BUILTINS:
        assert name in shown
    assert "Salakhutdinov" in shown and "84.78" in shown and "89.78" in shown  # source and published, in cells
    listed = json.loads(_ok(vae("recipes", "--json")).stdout)
    assert [r["name"] for r in listed] == BUILTINS
    by_name = {r["name"]: r for r in listed}
    assert by_name["pythae-vae"]["published"] == {"nll": 89.78, "iw_samples": 200, "epochs": 500}
    assert by_name["pythae-vae"]["settings"] == _settings("pythae-vae")
    assert by_name["burda-iwae"]["trains"].startswith("mnist (dynamic binarization), mlp 200,200 tanh, latent 50")
    one = json.loads(_ok(vae("recipes", "kingma-welling", "--json")).stdout)
    assert one["settings"]["arch_options"] == {"hidden": [500], "activation": "tanh"}
    assert one["provider"]["distribution"] == "vaecli"
    details = _flat(_ok(vae("plugins", "--details")).stdout)
    assert "recipes" in details and "lr_milestones=200,350" in details


# --------------------------------------------------------------------------------------------
# A recipe from a plugin
# --------------------------------------------------------------------------------------------

PLUGIN = """
import vaecli


@vaecli.hookimpl
def register_recipes(register):
    register(vaecli.RecipeSpec(name="tinyrec", help="Tiny shapes.", source="a test plugin",
                               settings={"dataset": "shapes", "dataset_options": {"n_train": 64, "n_test": 32, "size": 8},
                                         "arch_options": {"hidden": [8]}, "latent_dim": 2, "epochs": 1,
                                         "batch_size": 32},
                               published={"nll": 1.5}))
    register(vaecli.RecipeSpec(name="typo", help="A key that is not a setting.", source="a test plugin",
                               settings={"epoch": 3}))
    register(vaecli.RecipeSpec(name="pytorch-example", help="A thief.", source="", settings={}))
    register(vaecli.RecipeSpec(name="notdict", help="Settings that are no dict.", source="", settings=[1]))
    register("not a spec")
"""


@pytest.fixture
def recipe_plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "recipeplug").mkdir(parents=True)
    (site / "recipeplug" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "vaecli_recipeplug-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vaecli-recipeplug\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text("[vaecli]\nrecipeplug = recipeplug\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("VAECLI_LOAD_PLUGINS", "vaecli-recipeplug")
    importlib.invalidate_caches()
    plugins.reset()
    yield
    plugins.reset()
    sys.modules.pop("recipeplug", None)


def test_a_plugins_recipe(recipe_plugin, vae):
    warnings = []
    reg = plugins.Registry(warn=warnings.append)
    assert list(reg.parts["recipe"]) == BUILTINS + ["tinyrec", "typo"]
    assert reg.parts["recipe"]["pytorch-example"].plugin.builtin  # the thief is refused
    assert len(warnings) == 3
    assert any("recipe 'pytorch-example' is already registered by recipes (vaecli" in w for w in warnings)
    assert any("notdict: settings must be a dict" in w for w in warnings)
    assert any("registered str, not a RecipeSpec" in w for w in warnings)
    assert all("vaecli-recipeplug 0.3.0" in w for w in warnings)

    assert testing.check_recipe("tinyrec").latent_dim == 2
    result = _ok(vae("train", "--recipe", "tinyrec", "--device", "cpu"))
    assert "Recipe: tinyrec" in result.stderr
    t = vaecli.metadata("shapes-mlp.safetensors")["training"]
    assert t["recipe"]["provider"] == {"distribution": "vaecli-recipeplug", "version": "0.3.0", "plugin": "recipeplug"}
    assert (t["latent_dim"], t["dataset_options"]["n_train"]) == (2, 64)
    assert "┃ from" in _ok(vae("recipes")).stdout  # a column for where each came from, now that one is a plugin's
    listed = {r["name"]: r for r in json.loads(_ok(vae("recipes", "--json")).stdout)}
    assert listed["tinyrec"]["provider"]["distribution"] == "vaecli-recipeplug"
    assert listed["tinyrec"]["published"] == {"nll": 1.5}
    one_line_error(vae("train", "--recipe", "typo", *TINY_CLI), 2, "recipe 'typo': unknown setting 'epoch'")
    with pytest.raises(AssertionError, match="unknown setting 'epoch'"):
        testing.check_recipe("typo")
