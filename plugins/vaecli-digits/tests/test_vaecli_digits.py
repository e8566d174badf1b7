"""Tests of the vaecli-digits plugin, through vaecli's registry and CLI as a user meets it."""

import json
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import vaecli
from vaecli import testing
from vaecli.errors import DataUnavailableError
from vaecli.plugins import registry
from vaecli_digits import split_indices

N = 1797


@pytest.fixture(scope="module")
def sklearn_digits():
    return load_digits()


@pytest.fixture(scope="module")
def splits():
    return testing.check_dataset("digits")


def test_the_split_sizes_add_up_and_hold_every_class(splits):
    assert len(splits.train) + len(splits.test) == N
    assert len(splits.test) == 359  # 0.2 * 1797 = 359.4
    assert splits.class_names == [str(d) for d in range(10)]
    for split in (splits.train, splits.test):
        assert tuple(split.images.shape[1:]) == (1, 8, 8)
        assert sorted(split.labels.unique().tolist()) == list(range(10))
    # stratified: each class gives 20% of its images to the test split, within one image
    counts = np.bincount(load_digits().target)
    test_counts = torch.bincount(splits.test.labels, minlength=10).numpy()
    assert np.all(np.abs(test_counts - 0.2 * counts) < 1)


def test_no_image_is_in_both_splits_by_index():
    labels = load_digits().target
    train, test = split_indices(labels, 0.2, 0)
    assert len(set(train.tolist()) & set(test.tolist())) == 0
    assert sorted(train.tolist() + test.tolist()) == list(range(N))


@pytest.mark.parametrize("fraction, n_test", [(0.1, 180), (0.5, 899), (0.9, 1617)])
def test_the_test_split_is_the_fraction_rounded(fraction, n_test):
    splits = testing.check_dataset("digits", options={"test_fraction": str(fraction)})
    assert (len(splits.train), len(splits.test)) == (N - n_test, n_test)


def test_pixels_are_the_sklearn_values_scaled_to_8_bits(splits, sklearn_digits):
    expected = np.rint(sklearn_digits.images * 255 / 16).astype(np.uint8)
    train, test = split_indices(sklearn_digits.target, 0.2, 0)
    assert np.array_equal(splits.train.images[:, 0].numpy(), expected[train.numpy()])
    assert np.array_equal(splits.test.images[:, 0].numpy(), expected[test.numpy()])
    assert np.array_equal(splits.test.labels.numpy(), sklearn_digits.target[test.numpy()])
    # one image by hand, found without split_indices: sklearn's image 0 (a "0") has the top row
    # 0 0 5 13 9 1 0 0 and a value 8 at row 2, column 6
    raw = sklearn_digits.images[0]
    assert raw[0].tolist() == [0, 0, 5, 13, 9, 1, 0, 0] and raw[2, 6] == 8
    both = torch.cat([splits.train.images, splits.test.images])[:, 0]
    labels = torch.cat([splits.train.labels, splits.test.labels])
    found = [
        i
        for i in range(N)
        if both[i, 0].tolist() == [0, 0, 80, 207, 143, 16, 0, 0]
        and np.array_equal(both[i].numpy(), np.rint(raw * 255 / 16))
    ]
    assert len(found) == 1 and labels[found[0]] == 0
    assert both[found[0], 2, 6] == 128  # 8 * 255 / 16 = 127.5 rounds up
    assert both.dtype == torch.uint8 and int(both.max()) == 255 and int(both.min()) == 0


def test_the_same_options_give_the_same_split_and_another_seed_another(splits):
    again = testing.check_dataset("digits", options={"test_fraction": "0.2", "seed": "0"})
    assert torch.equal(again.test.images, splits.test.images)
    assert torch.equal(again.train.labels, splits.train.labels)
    other = testing.check_dataset("digits", options={"seed": "1"})
    assert len(other.test) == len(splits.test)
    assert not torch.equal(other.test.images, splits.test.images)


def test_the_plugin_is_found_through_its_entry_point():
    part = registry().get("dataset", "digits")
    assert part.plugin.distribution == "vaecli-digits"
    assert part.plugin.version == version("vaecli-digits")


@pytest.mark.parametrize("fraction", ["1.5", "0", "0.0001"])
def test_a_bad_test_fraction_is_one_error_line(fraction, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = testing.invoke(
        "train", "digits", "--data-option", f"test_fraction={fraction}", "--epochs", "1", "--device", "cpu"
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "test_fraction" in lines[0], result.stderr
    assert "between" in lines[0]
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_train_sample_evaluate_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = testing.invoke(
        "train", "digits", "--epochs", "1", "--device", "cpu", "--batch-size", "64", "-o", "d.safetensors"
    )
    assert result.exit_code == 0, result.output
    data = vaecli.metadata("d.safetensors")["data"]
    assert data["dataset"]["provider"]["distribution"] == "vaecli-digits"
    assert data["dataset"]["provider"]["version"] == version("vaecli-digits")
    assert data["class_names"] == [str(d) for d in range(10)]
    assert (data["n_train"], data["n_test"]) == (1438, 359)

    result = testing.invoke("sample", "d.safetensors", "-n", "16", "-o", "s.png", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.png").stat().st_size > 0

    result = testing.invoke("evaluate", "d.safetensors", "--iw-samples", "5", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    assert (numbers["input"], numbers["examples"], numbers["iw_samples"]) == ("digits:test", 359, 5)
    # evaluate reloads the dataset from the checkpoint's options: the same test split, so with
    # one sample and train's seed it repeats train's test -ELBO
    result = testing.invoke("evaluate", "d.safetensors", "-k", "1", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    test_nelbo = vaecli.metadata("d.safetensors")["metrics"][-1]["test_nelbo"]
    assert json.loads(result.stdout)["nelbo"] == pytest.approx(test_nelbo, rel=1e-5)


def test_a_cvae_trains_on_digits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = testing.invoke(
        "train",
        "digits",
        "--model",
        "cvae",
        "--latent-dim",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--batch-size",
        "64",
        "-o",
        "c.safetensors",
    )
    assert result.exit_code == 0, result.output
    assert vaecli.metadata("c.safetensors")["model"]["kind"] == "cvae"


def test_importing_the_plugin_imports_neither_sklearn_nor_torch():
    code = "import sys, vaecli_digits; print(sorted({'sklearn', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_without_sklearn_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(DataUnavailableError, match="pip install scikit-learn"):
        testing.check_dataset("digits")
