"""Every registered architecture x likelihood, as each model kind, trains and then works with
the commands that use a checkpoint: sample, encode, evaluate and info."""

from __future__ import annotations

import json

import numpy as np
import pytest

import vaecli
from conftest import TINY_DATA
from vaecli.plugins import registry
from vaecli.testing import likelihoods_for

TINY_OPTIONS = {"mlp": {"hidden": (16,)}, "conv": {"channels": (4, 8), "hidden": (16,)}}
KINDS = ("vae", "cvae", "ae")


def _combinations():
    archs, likelihoods = registry().names("architecture"), likelihoods_for("image")
    combos = [(a, lik) for a in archs for lik in likelihoods]
    # each combination once, the model kinds taking turns, so that every pair and every kind is covered
    return [(a, lik, KINDS[i % len(KINDS)]) for i, (a, lik) in enumerate(combos)]


@pytest.mark.parametrize("arch,likelihood,kind", _combinations())
def test_trains_and_every_command_works(arch, likelihood, kind, vae, tmp_path, one_thread):
    path = tmp_path / "m.safetensors"
    binarize = "dynamic" if registry().get("likelihood", likelihood).spec.data_range == "binary" else "none"
    result = vaecli.train(
        dataset="shapes",
        dataset_options=dict(TINY_DATA),
        arch=arch,
        arch_options=TINY_OPTIONS.get(arch, {}),
        likelihood=likelihood,
        model=kind,
        latent_dim=2,
        epochs=1,
        batch_size=32,
        device="cpu",
        out=str(path),
        binarize=binarize,
    )
    assert np.isfinite(result.metrics[-1]["test_nelbo" if kind != "ae" else "test_recon"])

    meta = json.loads(vae("info", path, "--json").stdout)
    assert meta["model"]["architecture"]["name"] == arch
    assert meta["model"]["likelihood"]["name"] == likelihood
    assert meta["model"]["kind"] == kind
    assert meta["model"].get("num_classes", 0) == (3 if kind == "cvae" else 0)
    assert meta["data"]["preprocessing"]["binarize"] == binarize

    sample_args = ["--label", "heart"] if kind == "cvae" else []
    r = vae("sample", path, "-n", 4, "-o", "s.png", *sample_args)
    assert r.exit_code == 0, r.output
    r = vae("encode", path, "shapes:test", "-o", "z.npy")
    assert r.exit_code == 0, r.output
    assert np.load("z.npy").shape == (TINY_DATA["n_test"], 2)

    r = vae("evaluate", path, "-k", "1", "--json")
    assert r.exit_code == 0, r.output
    numbers = json.loads(r.stdout)
    # -k 1 with the default seed is the test pass of the last epoch (the same fixed binarization)
    key = "recon" if kind == "ae" else "nelbo"
    assert numbers[key] == pytest.approx(result.metrics[-1][f"test_{key}"], rel=1e-5, abs=1e-4)
