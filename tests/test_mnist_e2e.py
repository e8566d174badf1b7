"""End to end on the real MNIST files in ../shared/data (skipped where they are absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(
    not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists(),
    reason=f"real MNIST files not found in {SHARED_DATA}/MNIST/raw (only the team's machines have them)",
)


def test_one_mnist_epoch_learns_digits(vae):
    result = vae(
        "train",
        "mnist",
        "--data-dir",
        SHARED_DATA,
        "--no-download",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "-o",
        "m.safetensors",
    )
    assert result.exit_code == 0, result.output
    meta = json.loads(vae("info", "m.safetensors", "--json").stdout)
    assert meta["data"]["n_train"] == 60000 and meta["data"]["n_test"] == 10000
    assert meta["model"]["input_shape"] == [1, 28, 28]
    assert meta["data"]["class_names"] == [str(d) for d in range(10)]
    # The classic PyTorch example is at about 128 nats after its first epoch.
    assert 100 < meta["metrics"][0]["test_nelbo"] < 135
    assert vae("sample", "m.safetensors", "-n", "64", "-o", "grid.png").exit_code == 0
    image = Image.open("grid.png")
    assert image.size == (8 * (84 + 6) + 6,) * 2  # 28 px scaled x3, padding 6
    assert 20 < sum(image.convert("L").tobytes()) / (image.size[0] * image.size[1]) < 160

    # The commands on a trained model, on the real test split.
    ev = vae("evaluate", "m.safetensors", "mnist:test", "--iw-samples", "5", "--json", "--data-dir", SHARED_DATA)
    assert ev.exit_code == 0, ev.output
    numbers = json.loads(ev.stdout)
    assert numbers["examples"] == 10000 and numbers["pixels"] == 784
    assert numbers["nll"] < numbers["nelbo"] < 135  # the IWAE bound is tighter than the ELBO
    assert abs(numbers["nelbo"] - meta["metrics"][0]["test_nelbo"]) < 1.0  # same model, other noise
    assert vae("encode", "m.safetensors", "mnist:test", "-o", "z.safetensors").exit_code == 0
    from safetensors.torch import load_file

    z = load_file("z.safetensors")
    assert z["mean"].shape == (10000, 20) and z["labels"][:3].tolist() == [7, 2, 1]  # MNIST's first test digits
    assert vae("reconstruct", "m.safetensors", "mnist:test:0", "-o", "r.png").exit_code == 0
    assert Image.open("r.png").size == (84 + 12, 2 * 84 + 18)  # one input above its reconstruction
