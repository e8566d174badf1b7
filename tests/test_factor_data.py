"""dsprites and 3dshapes from small files made here in the official layouts, with their factors;
the missing file named in one line; the metrics through `vae evaluate --disentanglement`."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from conftest import one_line_error
from vaecli.data import load_dataset
from vaecli.errors import DataUnavailableError


def write_dsprites(data_dir, shapes=3, scales=2, orientations=2, xs=3, ys=3):
    """Every combination, as the official file: imgs (N, 64, 64) of 0/1, latents_values and
    latents_classes (N, 6), and a pickled metadata entry that must never be read."""
    grid = np.array(
        list(itertools.product([0], range(shapes), range(scales), range(orientations), range(xs), range(ys)))
    )
    n = len(grid)
    imgs = np.zeros((n, 64, 64), np.uint8)
    for i, (_, s, sc, o, x, y) in enumerate(grid):
        side = 6 + 4 * sc + s
        top, left = 8 + 12 * y, 8 + 12 * x + o
        imgs[i, top : top + side, left : left + side] = 1
    values = grid.astype(np.float64)
    folder = data_dir / "dsprites"
    folder.mkdir(parents=True)
    np.savez_compressed(
        folder / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
        imgs=imgs,
        latents_values=values,
        latents_classes=grid,
        metadata=np.array([{"date": "April 2017"}], dtype=object),
    )
    return imgs, grid


def test_dsprites_official_layout(tmp_path):
    imgs, grid = write_dsprites(tmp_path)
    data = load_dataset("dsprites", {"test_fraction": "0.25"}, tmp_path, download=False).splits
    assert len(data.train) + len(data.test) == len(imgs) and data.train.images.shape[1:] == (1, 64, 64)
    assert set(data.train.factors) == {"color", "shape", "scale", "orientation", "pos_x", "pos_y"}
    # each image still carries its own factors: find it in the grid from its pixels
    for images, factors in ((data.train.images, data.train.factors), (data.test.images, data.test.factors)):
        for i in range(0, len(images), 7):
            row = [int(factors[k][i]) for k in ("color", "shape", "scale", "orientation", "pos_x", "pos_y")]
            j = next(j for j in range(len(grid)) if grid[j].tolist() == row)
            assert np.array_equal(images[i, 0].numpy(), imgs[j] * 255)
    assert data.class_names == ["square", "ellipse", "heart"]
    assert data.train.labels.tolist() == data.train.factors["shape"].tolist()


def write_3dshapes(data_dir, n_each=2):
    h5py = pytest.importorskip("h5py")
    grid = np.array(
        list(itertools.product(*[np.linspace(0, 0.9, n_each)] * 3, [0.75, 1.25], [0.0, 1.0, 2.0, 3.0], [-30.0, 30.0]))
    )
    n = len(grid)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    folder = data_dir / "3dshapes"
    folder.mkdir(parents=True)
    with h5py.File(folder / "3dshapes.h5", "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("labels", data=grid)
    return images, grid


def test_3dshapes_official_layout(tmp_path):
    images, grid = write_3dshapes(tmp_path)
    data = load_dataset("3dshapes", {}, tmp_path, download=False).splits
    assert data.train.images.shape[1:] == (3, 64, 64) and len(data.train) + len(data.test) == len(images)
    shape = data.train.factors["shape"]
    assert sorted(set(shape.tolist())) == [0, 1, 2, 3] and data.train.factors["scale"].max() == 1
    # rows keep their order within a split: the first training image is the first image not held out
    first = data.train.images[0].permute(1, 2, 0).numpy()
    k = next(i for i in range(len(images)) if np.array_equal(images[i], first))
    assert data.train.factors["orientation"][0] == int(grid[k, 5] > 0)


@pytest.mark.parametrize(
    "name, file", [("dsprites", "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"), ("3dshapes", "3dshapes.h5")]
)
def test_a_missing_file_is_named_with_where_it_comes_from(tmp_path, name, file):
    with pytest.raises(DataUnavailableError, match=file) as info:
        load_dataset(name, {}, tmp_path, download=False)
    assert "github.com/google-deepmind" in str(info.value) and "\n" not in str(info.value)


def test_evaluate_disentanglement_json(vae, tmp_path):
    pytest.importorskip("sklearn")
    write_dsprites(tmp_path, shapes=3, scales=3, orientations=2, xs=4, ys=4)
    ckpt = tmp_path / "d.safetensors"
    common = ["--data-dir", str(tmp_path), "--no-download"]
    trained = vae(
        "train",
        "dsprites",
        "--epochs",
        "1",
        "--latent-dim",
        "4",
        "--arch-option",
        "hidden=16",
        "-o",
        ckpt,
        "--device",
        "cpu",
        *common,
    )
    assert trained.exit_code == 0, trained.output
    result = vae("evaluate", str(ckpt), "dsprites:test", "--disentanglement", "--json", *common)
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    assert numbers["factors"] == ["shape", "scale", "orientation", "pos_x", "pos_y"] and numbers["skipped"] == ["color"]
    assert all(0 <= numbers[m] <= 1 for m in ("mig", "dci_disentanglement", "sap", "modularity"))
    table = vae("evaluate", str(ckpt), "dsprites:test", "--disentanglement", *common).stdout
    assert "mig" in table and "left out, one value only: color" in table


def test_evaluate_disentanglement_without_factors_is_one_line(vae, tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8))
    ckpt = tmp_path / "t.safetensors"
    vae(
        "train",
        f"tensor:{tmp_path / 'x.npy'}",
        "--epochs",
        "1",
        "--arch-option",
        "hidden=8",
        "-o",
        ckpt,
        "--device",
        "cpu",
    )
    given = vae("evaluate", ckpt, f"tensor:{tmp_path / 'x.npy'}:test", "--disentanglement")
    one_line_error(given, 2, "no factors of variation", "factors file")


def test_a_factors_file_beside_tensor_data(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (12, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x[:8], x_test=x[8:])
    rows = ["size,angle"] + [f"{i % 3},{0.5 * i}" for i in range(12)]
    (tmp_path / "d.factors.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(f"tensor:{tmp_path / 'd.npz'}").splits
    assert list(data.train.factors) == ["size", "angle"]
    assert data.train.factors["size"].tolist() == [i % 3 for i in range(8)]  # whole numbers: categories
    assert data.test.factors["angle"].tolist() == [4.0, 4.5, 5.0, 5.5]
    (tmp_path / "d.factors.csv").write_text("\n".join(rows[:-1]) + "\n")  # one row short: a new key, an error
    with pytest.raises(Exception, match="11 rows of factors for 12 images"):
        load_dataset(f"tensor:{tmp_path / 'd.npz'}")


def test_a_factors_file_in_a_folder(tmp_path):
    from PIL import Image

    root = tmp_path / "pngs"
    root.mkdir()
    lines = ["file,brightness"]
    for i in range(6):
        Image.fromarray(np.full((4, 4), 40 * i, np.uint8)).save(root / f"{i}.png")
        lines.append(f"{i}.png,{i}")
    (root / "factors.csv").write_text("\n".join(lines) + "\n")
    data = load_dataset(f"folder:{root}", {"test_fraction": "0.5"}).splits
    assert not data.notes  # factors.csv is not an image to skip
    for split in (data.train, data.test):
        assert (split.images[:, 0, 0, 0] // 40).tolist() == split.factors["brightness"].tolist()


def test_plot_latent_factors_heat_map(vae, tiny_ckpt, tmp_path):
    from PIL import Image

    result = vae("plot-latent", tiny_ckpt, "--factors", "-o", tmp_path / "f.png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "f.png") as image:
        assert image.width > 300 and image.height > 200
    assert vae("plot-latent", tiny_ckpt, "--traverse", "-o", tmp_path / "t.png").exit_code == 0


def test_captured_names_the_factor_a_dimension_knows():
    import torch

    from vaecli.pictures import captured

    gen = torch.Generator().manual_seed(0)
    scale, noise = torch.rand(2000, generator=gen), torch.randn(2000, generator=gen)
    mean = torch.stack([noise, 3 * scale], dim=1)
    assert captured(mean, {"scale": scale, "colour": torch.zeros(2000)}) == {1: "scale"}
