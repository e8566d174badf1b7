"""Tests of vaecli-compare: `vae compare` through vaecli's CLI, on tiny checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import vaecli
import vaecli_compare
from vaecli import plugins, testing

WIDE = {"COLUMNS": "200"}  # a table that is not squeezed, whatever the terminal


def _train(path, **settings):
    options = dict(
        dataset="shapes",
        dataset_options={"n_train": 96, "n_test": 48, "size": 8},
        arch_options={"hidden": (32,)},
        latent_dim=3,
        epochs=2,
        batch_size=32,
        device="cpu",
    )
    options.update(settings)
    vaecli.train(out=str(path), **options)
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Four short runs: three comparable ones and a gaussian one; and one with no metrics."""
    folder = tmp_path_factory.mktemp("runs")
    runs = {
        "z3.safetensors": {},
        "z2.safetensors": {"latent_dim": 2, "epochs": 3},
        "beta4.safetensors": {"beta": 4.0},
        "gauss.safetensors": {"likelihood": "gaussian"},
    }
    for name, settings in runs.items():
        _train(folder / name, **settings)

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from vaecli import checkpoint

    source = folder / "z3.safetensors"
    with safe_open(str(source), "pt") as f:
        meta = dict(f.metadata())
    meta["metrics"] = "[]"
    meta["meta_sha256"] = checkpoint.meta_hash(meta)  # a whole file, as a run that saved no epoch
    save_file(load_file(str(source)), str(folder / "nometrics.safetensors"), metadata=meta)
    return folder


@pytest.fixture
def runs(trained, tmp_path, monkeypatch):
    """The checkpoints copied into an empty working folder (nothing lands in the repository)."""
    for path in trained.iterdir():
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def compare(*args):
    return testing.invoke("compare", *args, env=WIDE)


def _best(meta, metric):
    m = min(meta["metrics"], key=lambda m: m[metric])
    return m[metric], m["epoch"]


@pytest.mark.parametrize("metric", ["test_nelbo", "test_kl", "train_recon"])
def test_json_rows_are_the_checkpoints_numbers(runs, metric):
    names = ["z3.safetensors", "z2.safetensors", "beta4.safetensors"]
    result = compare(*names, "--json", "--metric", metric)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # comparable runs: no warning
    rows = json.loads(result.stdout)  # nothing but JSON on stdout
    assert [r["file"] for r in rows] == names
    for row, name in zip(rows, names):
        meta = vaecli.metadata(name)
        metrics = meta["metrics"]
        assert row["final_test_nelbo"] == metrics[-1]["test_nelbo"]
        assert row["final_train_nelbo"] == metrics[-1]["train_nelbo"]
        assert (row["best"], row["best_epoch"]) == _best(meta, metric)
        assert row["metric"] == metric
        assert row["epochs"] == meta["epoch"] == len(metrics)
        assert row["parameters"] == meta["parameters"]
        assert row["seconds"] == pytest.approx(sum(m["seconds"] for m in metrics))
        assert row["latent_dim"] == meta["model"]["latent_dim"]
        assert (row["dataset"], row["likelihood"], row["architecture"]) == ("shapes", "bernoulli", "mlp")
    assert [r["epochs"] for r in rows] == [2, 3, 2]
    assert [r["objective"] for r in rows] == ["ELBO", "ELBO", "beta 4"]


def test_sort_orders_by_the_best_value(runs):
    names = ["z3.safetensors", "z2.safetensors", "beta4.safetensors"]
    rows = json.loads(compare(*names, "--json", "--sort").stdout)
    bests = {n: _best(vaecli.metadata(n), "test_nelbo")[0] for n in names}
    assert [r["file"] for r in rows] == sorted(names, key=bests.get)


def test_table_names_every_file(runs):
    names = ["z3.safetensors", "z2.safetensors", "beta4.safetensors"]
    result = compare(*names)
    assert result.exit_code == 0, result.output
    for name in names:
        assert name in result.stdout
    assert "test -ELBO" in result.stdout and "VAE z=2" in result.stdout and "beta 4" in result.stdout
    assert result.stdout.index("z3.safetensors") < result.stdout.index("z2.safetensors")  # as given


def test_table_marks_only_the_lowest_best_value(runs):
    names = ["z3.safetensors", "z2.safetensors", "beta4.safetensors"]
    rows = [vaecli_compare.summarize(n, vaecli.metadata(n), "test_nelbo") for n in names]
    column = next(c for c in vaecli_compare.table(rows, "test_nelbo").columns if "best" in str(c.header))
    cells = list(column.cells)
    lowest = min(range(3), key=lambda i: rows[i]["best"])
    for i, cell in enumerate(cells):
        assert cell.startswith("[bold green]") == (i == lowest), cells
        assert f"{rows[i]['best']:.2f}" in cell


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_plot_is_written_atomically(runs, suffix, magic):
    before = set(os.listdir())
    result = compare("z3.safetensors", "z2.safetensors", "-o", f"curves{suffix}")
    assert result.exit_code == 0, result.output
    assert set(os.listdir()) - before == {f"curves{suffix}"}  # no temporary file left behind
    with open(f"curves{suffix}", "rb") as f:
        assert f.read(len(magic)) == magic
    if suffix == ".png":
        from PIL import Image

        with Image.open("curves.png") as picture:
            assert picture.format == "PNG"
            assert 600 <= picture.width <= 2000 and 300 <= picture.height <= 1500
            assert picture.width > picture.height


def test_json_with_a_plot_prints_only_json(runs):
    result = compare("z3.safetensors", "z2.safetensors", "--json", "-o", "curves.png")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 2
    assert os.path.getsize("curves.png") > 0


def test_mixed_likelihoods_warn_once_and_still_show_the_table(runs):
    result = compare("z3.safetensors", "gauss.safetensors")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "not comparable" in lines[0] and "likelihoods (bernoulli, gaussian)" in lines[0]
    assert "z3.safetensors" in result.stdout and "gauss.safetensors" in result.stdout
    assert vaecli_compare.not_comparable(json.loads(compare("z3.safetensors", "z2.safetensors", "--json").stdout)) == []


ERRORS = {
    "not a checkpoint": (["notes.txt", "z3.safetensors"], 2, "notes.txt"),
    "no metrics": (["z3.safetensors", "nometrics.safetensors"], 2, "no metrics"),
    "given twice": (["z3.safetensors", "z2.safetensors", "./z3.safetensors"], 2, "given twice"),
    "unknown metric": (["z3.safetensors", "--metric", "nope"], 2, "metric 'nope'; known metrics: "),
    "output is an input": (["z3.safetensors", "z2.safetensors", "-o", "z2.safetensors"], 2, "one of the checkpoints"),
    "missing folder": (["z3.safetensors", "-o", "missing/curves.png"], 2, "does not exist"),
    "bad suffix": (["z3.safetensors", "-o", "curves.jpg"], 2, ".png, .pdf, .svg"),
    "no checkpoint": ([], 2, "Missing argument"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_one_line(runs, case):
    args, code, words = ERRORS[case]
    (runs / "notes.txt").write_text("not a checkpoint\n")
    if "-o" not in args and args:
        args = [*args, "-o", "curves.png"]
    before = {p.name: p.stat().st_mtime_ns for p in runs.iterdir()}
    result = compare(*args)
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert words in lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert {p.name: p.stat().st_mtime_ns for p in runs.iterdir()} == before  # nothing written


def test_help_lists_the_options():
    result = testing.invoke("compare", "--help", env=WIDE)
    assert result.exit_code == 0, result.output
    for option in ("--out", "-o", "--metric", "--sort", "--json", "CKPT"):
        assert option in result.stdout
    assert "Compare training runs side by side" in result.stdout


def test_the_command_is_credited_to_the_plugin():
    testing.invoke("--help")
    owners = [p for p in plugins.registry().plugins if "compare" in p.commands]
    assert len(owners) == 1
    assert owners[0].distribution == "vaecli-compare" and not owners[0].errors


def test_importing_the_plugin_is_light():
    code = (
        "import sys, vaecli_compare; "
        "print(sorted(m for m in ('matplotlib', 'torch', 'rich.table') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
