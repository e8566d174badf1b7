"""Checkpoints written by vaecli 0.5.0 (tests/fixtures/v050-*.safetensors: a vae, a cvae, an ae and an
IWAE on dynamically binarized shapes, 2 epochs each, made with the 0.5.0 release) still load,
show, sample, evaluate to the numbers they recorded, and resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import vaecli
from vaecli.testing import invoke

DATA = Path(__file__).parent / "fixtures"
KINDS = ("vae", "cvae", "ae", "iwae")


@pytest.mark.parametrize("kind", KINDS)
def test_a_050_checkpoint_loads_and_reads_with_todays_names(kind):
    meta = vaecli.metadata(DATA / f"v050-{kind}.safetensors")
    assert meta["versions"]["vaecli"] == "0.5.0"
    assert [m["epoch"] for m in meta["metrics"]] == [1, 2]
    assert all("test_nelbo" in m and "test_loss" not in m for m in meta["metrics"])
    assert meta["model"]["family"]["objective"] == ("reconstruction" if kind == "ae" else "ELBO")
    model = vaecli.load(DATA / f"v050-{kind}.safetensors")
    assert model.kind == {"iwae": "vae"}.get(kind, kind)
    assert model.sample(4).shape == (4, 1, 8, 8)


@pytest.mark.parametrize("kind", KINDS)
def test_a_050_checkpoint_evaluates_to_the_test_pass_it_recorded(kind):
    """Same weights, same mathematics: evaluate -k 1 with the test pass's seed gives the number
    0.5.0 recorded after the last epoch."""
    path = DATA / f"v050-{kind}.safetensors"
    result = invoke("evaluate", path, "-k", "1", "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    last = vaecli.metadata(path)["metrics"][-1]
    key = "recon" if kind == "ae" else "nelbo"
    assert numbers[key] == pytest.approx(last[f"test_{key}"], rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_a_050_checkpoint_shows_samples_and_resumes(kind, tmp_path, monkeypatch):
    path = tmp_path / f"{kind}.safetensors"
    shutil.copy(DATA / f"v050-{kind}.safetensors", path)
    monkeypatch.chdir(tmp_path)
    info = invoke("info", path)
    assert info.exit_code == 0 and "test -ELBO" in info.stdout, info.output
    assert invoke("sample", path, "-n", "4", "-o", "s.png", "--device", "cpu").exit_code == 0
    resumed = invoke("train", "--resume", path, "--epochs", "3", "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    meta = vaecli.metadata(path)
    assert [m["epoch"] for m in meta["metrics"]] == [1, 2, 3]
    assert meta["versions"]["vaecli"] == vaecli.__version__
