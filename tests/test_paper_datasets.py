"""The data sets papers report on, each read from tiny files made here in its official layout:
binarized-mnist (.amat), celeba (zip or folder, partition, attributes), omniglot (IWAE's
chardata.mat), svhn (torchvision's .mat files) and cifar100 (the binary release). Nothing is
downloaded: every test passes --no-download or lays out all the files."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ends_in_error
from vaecli.data import load_dataset
from vaecli.errors import DataUnavailableError
from vaecli.testing import invoke


def _scipy_io():
    return pytest.importorskip("scipy.io", reason="the .mat data sets need scipy (the test extra installs it)")


FIVE = ("binarized-mnist", "celeba", "omniglot", "svhn", "cifar100")


def _bits(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, size=(n, 784), dtype=np.uint8)


def _amat(folder: Path, sizes=(("train", 6), ("valid", 2), ("test", 3))) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for i, (split, n) in enumerate(sizes):
        bits = _bits(n, i)
        (folder / f"binarized_mnist_{split}.amat").write_text("".join(" ".join(map(str, row)) + "\n" for row in bits))
        made[split] = bits
    return made


def test_every_one_is_registered():
    listed = json.loads(invoke("plugins", "--json").stdout)["parts"]["dataset"]
    assert set(FIVE) <= set(listed)
    assert all(listed[name]["help"] for name in FIVE)


@pytest.mark.parametrize("name", FIVE)
def test_an_absent_data_set_is_one_line_naming_its_files_and_source(name, tmp_path):
    with pytest.raises(DataUnavailableError) as caught:
        load_dataset(name, None, tmp_path, download=False)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message
    named = {
        "binarized-mnist": "binarized_mnist_train.amat",
        "celeba": "img_align_celeba.zip",
        "omniglot": "chardata.mat",
        "svhn": "train_32x32.mat",
        "cifar100": "train.bin",
    }[name]
    assert named in message and "come from" in message


# -- binarized-mnist ----------------------------------------------------------------------------


def test_binarized_mnist_is_the_bits_of_the_amat_files(tmp_path):
    bits = _amat(tmp_path / "binarized_mnist")
    data = load_dataset("binarized-mnist", None, tmp_path, download=False)
    train, test = data.splits.train.images, data.splits.test.images
    assert train.shape == (6, 1, 28, 28) and test.shape == (3, 1, 28, 28) and train.dtype == torch.uint8
    assert torch.equal(train.view(6, 784), torch.from_numpy(bits["train"]) * 255)
    assert torch.equal(test.view(3, 784), torch.from_numpy(bits["test"]) * 255)
    assert data.splits.train.labels is None and any("validation" in n for n in data.splits.notes)
    both = load_dataset("binarized-mnist", {"train": "train+valid"}, tmp_path, download=False)
    assert torch.equal(
        both.splits.train.images.view(8, 784), torch.from_numpy(np.concatenate([bits["train"], bits["valid"]])) * 255
    )


def test_a_damaged_amat_file_is_one_line(tmp_path):
    _amat(tmp_path / "binarized_mnist")
    (tmp_path / "binarized_mnist" / "binarized_mnist_test.amat").write_text("0 1 2\n")
    with pytest.raises(DataUnavailableError, match="binarized_mnist_test.amat: not lines of 784 zeros and ones"):
        load_dataset("binarized-mnist", None, tmp_path, download=False)


def test_vae_trains_on_binarized_mnist(tmp_path, monkeypatch):
    _amat(tmp_path / "binarized_mnist", (("train", 40), ("valid", 4), ("test", 10)))
    monkeypatch.chdir(tmp_path)
    result = invoke(
        "train",
        "binarized-mnist",
        "--data-dir",
        tmp_path,
        "--no-download",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--arch-option",
        "hidden=16",
        "--latent-dim",
        "2",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    meta = json.loads(invoke("info", "binarized-mnist-mlp.safetensors", "--json").stdout)
    assert meta["data"]["n_train"] == 40 and meta["data"]["n_test"] == 10


# -- celeba -------------------------------------------------------------------------------------

INSIDE, BORDER = (200, 60, 20), (10, 240, 90)
ATTRS = ("Male", "Smiling", "Young")


def _face(inside, border) -> bytes:
    """A 178x218 aligned 'face': ``inside`` in the centre 148x148, ``border`` around it."""
    image = np.zeros((218, 178, 3), dtype=np.uint8)
    image[:] = border
    image[35:183, 15:163] = inside
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=100, subsampling=0)
    return out.getvalue()


def _celeba(root: Path, zipped: bool, parts=(0, 0, 0, 0, 1, 2, 2, 2)) -> list:
    where = root / "celeba"
    where.mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(parts))]
    colours = [tuple((c + 23 * i) % 256 for c in INSIDE) for i in range(len(parts))]
    if zipped:
        with zipfile.ZipFile(where / "img_align_celeba.zip", "w") as z:
            for name, colour in zip(names, colours):
                z.writestr(f"img_align_celeba/{name}", _face(colour, BORDER))
    else:
        (where / "img_align_celeba").mkdir()
        for name, colour in zip(names, colours):
            (where / "img_align_celeba" / name).write_bytes(_face(colour, BORDER))
    (where / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, parts)))
    rows = [f"{n} " + " ".join("1" if (i >> k) & 1 else "-1" for k in range(len(ATTRS))) for i, n in enumerate(names)]
    (where / "list_attr_celeba.txt").write_text(f"{len(names)}\n{' '.join(ATTRS)}\n" + "\n".join(rows) + "\n")
    return colours


@pytest.mark.parametrize("zipped", (True, False))
def test_celeba_splits_crop_attributes_and_labels(tmp_path, zipped):
    colours = _celeba(tmp_path, zipped)
    data = load_dataset("celeba", {"label": "Smiling"}, tmp_path, download=False)
    train, test = data.splits.train, data.splits.test
    assert train.images.shape == (4, 3, 64, 64) and test.images.shape == (3, 3, 64, 64)
    # the centre 148 square only: no pixel of the border survives the crop
    for image, colour in zip(torch.cat([train.images, test.images]), colours[:4] + colours[5:]):
        diff = (image.int() - torch.tensor(colour).view(3, 1, 1)).abs()
        assert diff.float().mean() < 2 and diff.max() < 24, (colour, diff.max())
    assert train.factors["Male"].tolist() == [0, 1, 0, 1] and test.factors["Young"].tolist() == [1, 1, 1]
    assert torch.equal(train.labels, train.factors["Smiling"]) and data.splits.class_names == ["not Smiling", "Smiling"]
    big = load_dataset("celeba", {"size": 128, "n_train": 2}, tmp_path, download=False)
    assert big.splits.train.images.shape == (2, 3, 128, 128) and big.splits.train.labels is None


def test_celeba_is_decoded_once_into_a_cache(tmp_path, monkeypatch):
    from vaecli.builtin import celeba

    _celeba(tmp_path, zipped=True)
    first = load_dataset("celeba", None, tmp_path, download=False)
    assert len(list((tmp_path / "celeba" / "vaecli-cache").glob("*.safetensors"))) == 2

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded the JPEGs again")

    monkeypatch.setattr(celeba, "_images", no_decoding)
    again = load_dataset("celeba", None, tmp_path, download=False)
    assert torch.equal(first.splits.train.images, again.splits.train.images)


def test_celeba_names_a_missing_attribute(tmp_path):
    _celeba(tmp_path, zipped=False)
    with pytest.raises(DataUnavailableError, match="no attribute 'Bald'; its attributes: Male, Smiling, Young"):
        load_dataset("celeba", {"label": "Bald"}, tmp_path, download=False)


def test_vae_trains_on_celeba(tmp_path, monkeypatch):
    _celeba(tmp_path, zipped=True)
    monkeypatch.chdir(tmp_path)
    result = invoke(
        "train",
        "celeba",
        "--data-dir",
        tmp_path,
        "--epochs",
        "1",
        "--arch-option",
        "hidden=8",
        "--latent-dim",
        "2",
        "--device",
        "cpu",
        "-o",
        "faces.safetensors",
    )
    assert result.exit_code == 0, result.output
    assert invoke("sample", "faces.safetensors", "-n", "4", "-o", "s.png").exit_code == 0


# -- omniglot, svhn, cifar100 -------------------------------------------------------------------


def test_omniglot_reads_iwaes_column_major_images_and_alphabets(tmp_path):
    scipy_io = _scipy_io()
    (tmp_path / "omniglot").mkdir()
    data, test = np.zeros((784, 5)), np.full((784, 3), 0.5)
    data[28 * 5 + 2, 0] = 1.0  # IWAE's Fortran order: row 2, column 5 of the first image
    target = np.zeros((50, 5))
    target[[3, 0, 49, 3, 7], range(5)] = 1
    testtarget = np.zeros((50, 3))
    testtarget[1, :] = 1
    scipy_io.savemat(
        tmp_path / "omniglot" / "chardata.mat",
        {"data": data, "target": target, "testdata": test, "testtarget": testtarget},
    )
    loaded = load_dataset("omniglot", None, tmp_path, download=False)
    train = loaded.splits.train
    assert train.images.shape == (5, 1, 28, 28) and loaded.splits.test.images.shape == (3, 1, 28, 28)
    assert train.images[0, 0, 2, 5] == 255 and int(train.images[0].sum()) == 255
    assert loaded.splits.test.images.unique().tolist() == [128]
    assert train.labels.tolist() == [3, 0, 49, 3, 7] and len(loaded.splits.class_names) == 50


def test_svhn_reads_torchvisions_files_with_ten_as_zero(tmp_path):
    scipy_io = _scipy_io()
    rng = np.random.default_rng(0)
    made = {}
    for split, n in (("train", 4), ("test", 2)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [3], [1], [10]][:n], dtype=np.uint8)
        scipy_io.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
        made[split] = (x, y)
    loaded = load_dataset("svhn", None, tmp_path, download=False)
    train = loaded.splits.train
    assert train.images.shape == (4, 3, 32, 32)
    assert torch.equal(train.images, torch.from_numpy(made["train"][0].transpose(3, 2, 0, 1).copy()))
    assert train.labels.tolist() == [0, 3, 1, 0] and loaded.splits.class_names[0] == "0"


def test_cifar100_reads_the_binary_release_fine_or_coarse(tmp_path):
    where = tmp_path / "cifar-100-binary"
    where.mkdir()
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
    labels = np.array([[4, 30], [19, 99], [0, 0]], dtype=np.uint8)
    (where / "train.bin").write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())
    (where / "test.bin").write_bytes(np.concatenate([labels[:1], pixels[:1]], axis=1).tobytes())
    (where / "fine_label_names.txt").write_text("\n".join(f"class{i}" for i in range(100)) + "\n")
    fine = load_dataset("cifar100", None, tmp_path, download=False)
    assert fine.splits.train.images.shape == (3, 3, 32, 32) and fine.splits.train.labels.tolist() == [30, 99, 0]
    assert torch.equal(fine.splits.train.images[1].reshape(-1), torch.from_numpy(pixels[1]))
    assert fine.splits.class_names[99] == "class99"
    coarse = load_dataset("cifar100", {"labels": "coarse"}, tmp_path, download=False)
    assert coarse.splits.train.labels.tolist() == [4, 19, 0] and coarse.splits.class_names is None


def test_the_cli_says_an_absent_data_set_in_one_line(tmp_path):
    ends_in_error(invoke("train", "celeba", "--data-dir", tmp_path, "--epochs", "1"), 1, "CelebA", "come from")


def test_without_scipy_a_mat_file_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    import sys

    from vaecli.errors import UsageError

    (tmp_path / "omniglot").mkdir()
    (tmp_path / "omniglot" / "chardata.mat").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # import scipy.io now fails
    with pytest.raises(UsageError, match=r'needs scipy: pip install "vaecli\[datasets\]"'):
        load_dataset("omniglot", None, tmp_path, download=False)
