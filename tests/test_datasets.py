"""The built-in datasets on tiny data made here: the torchvision family from synthetic IDX files
in torchvision's raw-folder layout, ``folder:PATH`` from generated PNGs and JPEGs, ``tensor:PATH``
from .npy/.npz/.safetensors files; every refusal is one UsageError line."""

from __future__ import annotations

import json
import os
import pickle
import string
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaecli.data import load_dataset, split_dataset_name
from vaecli.errors import DataUnavailableError, UsageError
from vaecli.plugins import registry

# -- helpers ----------------------------------------------------------------------------------


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """IDX3 (magic 2051, big-endian sizes) as the MNIST family ships it, unzipped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def idx_data(n: int, seed: int, h: int = 4, w: int = 5) -> np.ndarray:
    """Non-square, so that a transpose shows."""
    return np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)


def png(path: Path, array, mode: str | None = None, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path, fmt)
    return path


def grey(value: int, h: int = 4, w: int = 4) -> np.ndarray:
    return np.full((h, w), value, dtype=np.uint8)


def rgb(colour, h: int = 4, w: int = 4) -> np.ndarray:
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (h, w, 3)).copy()


def usage_error(name: str, *needles: str, **kwargs) -> str:
    """Loading ``name`` fails with a one-line UsageError holding every needle."""
    with pytest.raises(UsageError) as info:
        load_dataset(name, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


def firsts(split) -> list[int]:
    """The first pixel of each image: the tests write images that are one value each."""
    return split.images[:, 0, 0, 0].tolist()


# -- the registry ---------------------------------------------------------------------------------


def test_every_dataset_is_registered_as_a_builtin():
    reg = registry()
    for name in ("shapes", "mnist", "fashion-mnist", "kmnist", "emnist", "cifar10", "folder", "tensor"):
        assert reg.get("dataset", name).plugin.builtin, name
    assert reg.get("dataset", "folder").spec.argument == "path"
    assert reg.get("dataset", "tensor").spec.argument == "path"
    assert reg.get("dataset", "mnist").spec.argument == ""
    fields = {name: list(reg.get("dataset", name).spec.options.__dataclass_fields__) for name in ("folder", "tensor")}
    assert fields == {
        "folder": ["path", "image_size", "grayscale", "test_fraction", "seed"],
        "tensor": ["path", "test_fraction", "seed"],
    }


def test_split_dataset_name_sets_the_path_option():
    assert split_dataset_name("folder:my/images") == ("folder", {"path": "my/images"})
    assert split_dataset_name("tensor:C:/data/x.npz") == ("tensor", {"path": "C:/data/x.npz"})
    assert split_dataset_name("mnist") == ("mnist", {})
    with pytest.raises(UsageError, match="takes no argument"):
        split_dataset_name("mnist:foo")
    with pytest.raises(UsageError, match="folder:PATH"):
        split_dataset_name("folder:")


def test_shapes_keeps_its_factors_of_variation():
    data = load_dataset("shapes", {"n_train": 6, "n_test": 4, "size": 8})
    assert data.splits.train.images.shape == (6, 1, 8, 8)
    assert set(data.splits.train.factors) == {"shape", "scale", "orientation", "pos_x", "pos_y"}
    assert data.splits.class_names == ["square", "ellipse", "heart"]
    assert data.splits.notes == []


# -- the torchvision family -------------------------------------------------------------------------

MNIST_LIKE = {
    "mnist": ("MNIST", [str(d) for d in range(10)]),
    "fashion-mnist": (
        "FashionMNIST",
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    ),
    "kmnist": ("KMNIST", ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]),
}


def write_mnist_like(data_dir: Path, folder: str, n_train: int = 5, n_test: int = 3):
    raw = data_dir / folder / "raw"
    train, test = idx_data(n_train, 1), idx_data(n_test, 2)
    train_labels, test_labels = np.arange(n_train) % 10, (np.arange(n_test) + 7) % 10
    write_idx_images(raw / "train-images-idx3-ubyte", train)
    write_idx_labels(raw / "train-labels-idx1-ubyte", train_labels)
    write_idx_images(raw / "t10k-images-idx3-ubyte", test)
    write_idx_labels(raw / "t10k-labels-idx1-ubyte", test_labels)
    return train, train_labels, test, test_labels


@pytest.mark.parametrize("name", sorted(MNIST_LIKE))
def test_mnist_family_reads_torchvision_raw_files(tmp_path, name):
    folder, class_names = MNIST_LIKE[name]
    train, train_labels, test, test_labels = write_mnist_like(tmp_path / "data", folder)
    data = load_dataset(name, data_dir=tmp_path / "data", download=False)
    s = data.splits
    assert s.train.images.dtype == torch.uint8 and s.train.images.shape == (5, 1, 4, 5)
    assert np.array_equal(s.train.images[:, 0].numpy(), train)
    assert np.array_equal(s.test.images[:, 0].numpy(), test)
    assert s.train.labels.dtype == torch.int64 and s.train.labels.tolist() == train_labels.tolist()
    assert s.test.labels.tolist() == [7, 8, 9]
    assert s.class_names == class_names
    assert data.input_shape == (1, 4, 5)


def test_emnist_letters_are_transposed_and_labelled_from_zero(tmp_path):
    raw = tmp_path / "EMNIST" / "raw"
    train, test = idx_data(4, 3), idx_data(2, 4)
    write_idx_images(raw / "emnist-letters-train-images-idx3-ubyte", train)
    write_idx_labels(raw / "emnist-letters-train-labels-idx1-ubyte", np.array([1, 2, 26, 13]))
    write_idx_images(raw / "emnist-letters-test-images-idx3-ubyte", test)
    write_idx_labels(raw / "emnist-letters-test-labels-idx1-ubyte", np.array([26, 1]))
    s = load_dataset("emnist", data_dir=tmp_path, download=False).splits
    assert s.train.images.shape == (4, 1, 5, 4)  # stored (W, H): read back upright
    assert np.array_equal(s.train.images[:, 0].numpy(), train.transpose(0, 2, 1))
    assert np.array_equal(s.test.images[:, 0].numpy(), test.transpose(0, 2, 1))
    assert s.train.labels.tolist() == [0, 1, 25, 12] and s.test.labels.tolist() == [25, 0]
    assert s.class_names == list(string.ascii_lowercase)
    assert [s.class_names[k] for k in s.train.labels] == ["a", "b", "z", "m"]


def test_emnist_labels_outside_the_letters_are_refused(tmp_path):
    raw = tmp_path / "EMNIST" / "raw"
    for split in ("train", "test"):
        write_idx_images(raw / f"emnist-letters-{split}-images-idx3-ubyte", idx_data(2, 5))
        write_idx_labels(raw / f"emnist-letters-{split}-labels-idx1-ubyte", np.array([0, 3]))  # 0: not a letter
    with pytest.raises(DataUnavailableError, match="labels outside the 26 classes"):
        load_dataset("emnist", data_dir=tmp_path, download=False)


def test_mnist_offline_message_is_unchanged(tmp_path):
    with pytest.raises(DataUnavailableError) as info:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    raw = tmp_path / "MNIST" / "raw"
    assert str(info.value) == (
        f"MNIST files not found in {raw} (missing train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        f"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte) and --no-download was given; pass --data-dir to "
        f"the folder that holds MNIST/raw, or allow the download"
    )


@pytest.mark.parametrize(
    "name,folder,a_file",
    [
        ("fashion-mnist", "FashionMNIST/raw", "train-images-idx3-ubyte"),
        ("kmnist", "KMNIST/raw", "t10k-labels-idx1-ubyte"),
        ("emnist", "EMNIST/raw", "emnist-letters-train-images-idx3-ubyte"),
        ("cifar10", "cifar-10-batches-bin", "data_batch_1.bin"),
    ],
)
def test_offline_without_files_names_the_folder_torchvision_uses(tmp_path, name, folder, a_file):
    with pytest.raises(DataUnavailableError) as info:
        load_dataset(name, data_dir=tmp_path / "nowhere", download=False)
    message = str(info.value)
    assert f"not found in {tmp_path / 'nowhere' / folder} " in message
    assert a_file in message and "--no-download" in message and f"holds {folder}," in message
    assert "\n" not in message
    assert not (tmp_path / "nowhere").exists()  # nothing created, nothing asked of torchvision


def test_cifar10_offline_lists_every_missing_file(tmp_path):
    batches = tmp_path / "cifar-10-batches-bin"
    batches.mkdir()
    (batches / "data_batch_1.bin").write_bytes(b"")
    with pytest.raises(DataUnavailableError) as info:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert "data_batch_1.bin" not in message
    assert "missing data_batch_2.bin, data_batch_3.bin, data_batch_4.bin, data_batch_5.bin, test_batch.bin)" in message


def test_partial_mnist_lists_only_the_missing_files(tmp_path):
    write_mnist_like(tmp_path, "KMNIST")
    (tmp_path / "KMNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataUnavailableError, match=r"\(missing t10k-labels-idx1-ubyte\)"):
        load_dataset("kmnist", data_dir=tmp_path, download=False)


def test_damaged_idx_files_are_one_line_not_a_traceback(tmp_path):
    write_mnist_like(tmp_path, "FashionMNIST")
    (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"not an IDX file at all")
    with pytest.raises(DataUnavailableError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    raw = tmp_path / "FashionMNIST" / "raw"
    assert str(info.value).startswith(f"could not load or download Fashion-MNIST into {raw} (")
    assert "\n" not in str(info.value)


# -- folder:PATH -------------------------------------------------------------------------------------


def test_folder_subfolders_are_classes_and_test_fraction_is_held_out(tmp_path):
    root = tmp_path / "imgs"
    for i in range(6):
        png(root / "cat" / f"c{i}.png", grey(10 + i))
    for i in range(4):
        png(root / "dog" / f"d{i}.png", grey(100 + i))
    data = load_dataset(f"folder:{root}", {"test_fraction": "0.2", "seed": "3"})
    s = data.splits
    assert s.class_names == ["cat", "dog"]
    assert (len(s.train), len(s.test)) == (8, 2)
    values = firsts(s.train) + firsts(s.test)
    assert sorted(values) == [10, 11, 12, 13, 14, 15, 100, 101, 102, 103]  # every image once
    assert firsts(s.train) == sorted(firsts(s.train))  # each split keeps the files' order
    for split in (s.train, s.test):  # each label is its image's folder
        assert split.labels.tolist() == [0 if v < 100 else 1 for v in firsts(split)]
    assert s.train.images.shape[1:] == (1, 4, 4) and s.notes == []
    again = load_dataset(f"folder:{root}", {"test_fraction": "0.2", "seed": "3"}).splits
    assert firsts(again.test) == firsts(s.test)  # seeded
    others = [
        firsts(load_dataset(f"folder:{root}", {"test_fraction": "0.2", "seed": str(k)}).splits.test)
        for k in range(4, 9)
    ]
    assert any(o != firsts(s.test) for o in others)


def test_folder_holds_out_at_least_one_image_each_way(tmp_path):
    root = tmp_path / "two"
    png(root / "a.png", grey(1))
    png(root / "b.png", grey(2))
    s = load_dataset(f"folder:{root}", {"test_fraction": "0.01"}).splits
    assert (len(s.train), len(s.test)) == (1, 1)
    assert s.class_names is None and s.train.labels is None
    s = load_dataset(f"folder:{root}", {"test_fraction": "0.99"}).splits
    assert (len(s.train), len(s.test)) == (1, 1)


def test_folder_path_is_stored_absolute(tmp_path):
    png(tmp_path / "rel" / "a.png", grey(1))
    png(tmp_path / "rel" / "b.png", grey(2))
    data = load_dataset("folder:rel")  # the tests run in tmp_path
    assert data.options.path == str((tmp_path / "rel").resolve())
    assert data.section()["dataset"]["options"]["path"] == str((tmp_path / "rel").resolve())


def test_folder_skips_non_images_in_one_note_and_ignores_dot_files(tmp_path):
    root = tmp_path / "mixed"
    png(root / "a.png", grey(1))
    png(root / "b.png", grey(2))
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes())
    (root / ".DS_Store").write_bytes(b"\0junk")
    png(root / ".hidden" / "secret.png", grey(3))
    frames = [Image.fromarray(grey(v)) for v in (7, 8)]
    frames[0].save(root / "c_anim.gif", save_all=True, append_images=frames[1:])
    s = load_dataset(f"folder:{root}").splits
    assert sorted(firsts(s.train) + firsts(s.test)) == [1, 2, 7]
    assert s.notes == [
        f"folder {root}: skipped 2 files: broken.png, notes.txt",
        f"folder {root}: took the first frame of 1 animated image: c_anim.gif",
    ]


def test_folder_note_names_five_files_then_counts(tmp_path):
    root = tmp_path / "many"
    png(root / "x" / "a.png", grey(1))
    png(root / "x" / "b.png", grey(2))
    for i in range(7):
        (root / "x" / f"t{i}.txt").write_text("text")
    s = load_dataset(f"folder:{root}").splits
    assert s.notes == [f"folder {root}: skipped 7 files: x/t0.txt, x/t1.txt, x/t2.txt, x/t3.txt, x/t4.txt and 2 more"]
    assert s.class_names == ["x"]


def test_folder_without_images_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    usage_error(f"folder:{tmp_path / 'empty'}", f"{tmp_path / 'empty'} holds no readable images (it is empty)")
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(3):
        (texts / f"{i}.txt").write_text("x")
    usage_error(f"folder:{texts}", f"{texts} holds no readable images (3 other files)")
    usage_error(f"folder:{tmp_path / 'missing'}", f"folder {tmp_path / 'missing'}: no such folder")
    png(tmp_path / "one" / "a.png", grey(1))
    usage_error(f"folder:{tmp_path / 'one'}", "holds only 1 image", "at least 2")
    np.save(tmp_path / "arr.npy", np.zeros((2, 4, 4), np.uint8))
    usage_error(f"folder:{tmp_path / 'arr.npy'}", "not a folder", f"tensor:{tmp_path / 'arr.npy'}")
    usage_error("folder", "folder:PATH")


def test_folder_of_mixed_sizes_needs_image_size(tmp_path):
    root = tmp_path / "sizes"
    png(root / "a.png", grey(1, 4, 4))
    png(root / "b.png", grey(2, 6, 8))
    message = usage_error(f"folder:{root}", "4x4 a.png", "6x8 b.png", "--image-size N")
    assert message.startswith(f"folder {root}: the images differ in size")
    s = load_dataset(f"folder:{root}", {"image_size": "4"}).splits
    assert s.train.images.shape[1:] == (1, 4, 4)
    assert sorted(firsts(s.train) + firsts(s.test)) == [1, 2]


def test_image_size_centre_crops_and_resizes_the_shorter_side(tmp_path):
    root = tmp_path / "crop"
    wide = np.tile(np.arange(8, dtype=np.uint8) * 10, (4, 1))  # 4x8, column c holds 10c
    png(root / "a_wide.png", wide)
    tall = np.zeros((16, 8), np.uint8)
    tall[8:] = 200  # top half black, bottom half 200: shorter side 8 -> 4, so 8x4, rows 2..5 kept
    png(root / "b_tall.png", tall)
    s = load_dataset(f"folder:{root}", {"image_size": "4", "test_fraction": "0.5"}).splits
    images = torch.cat([s.train.images, s.test.images])
    by_name = {int(x[0, 0, 0]): x[0] for x in images}  # a_wide starts at 20, b_tall at 0
    assert by_name[20].tolist() == [[20, 30, 40, 50]] * 4  # same size: a plain centre crop
    crop = by_name[0]
    assert crop.shape == (4, 4)
    assert crop[0].tolist() == [0] * 4 and crop[-1].tolist() == [200] * 4  # away from the antialiased edge


def test_rgb_and_grey_together_make_rgb(tmp_path):
    root = tmp_path / "colour"
    png(root / "a_red.png", rgb((255, 0, 0)))
    png(root / "b_grey.png", grey(100))
    png(root / "c_alpha.png", np.dstack([rgb((10, 20, 30)), grey(0)]), "RGBA")
    png(root / "d_grey.jpg", grey(128), fmt="JPEG")
    s = load_dataset(f"folder:{root}", {"test_fraction": "0.25", "seed": "1"}).splits
    images = torch.cat([s.train.images, s.test.images])
    assert images.shape[1:] == (3, 4, 4)
    colours = sorted(tuple(x[:, 0, 0].tolist()) for x in images)
    jpeg = [c for c in colours if c not in ((255, 0, 0), (100, 100, 100), (10, 20, 30))]
    assert len(jpeg) == 1 and all(abs(v - 128) <= 2 for v in jpeg[0]) and len(set(jpeg[0])) == 1
    assert {(255, 0, 0), (100, 100, 100), (10, 20, 30)} <= set(colours)  # alpha dropped, grey spread to RGB
    assert s.notes == []


def test_grey_content_stored_as_rgb_is_one_channel(tmp_path):
    root = tmp_path / "greyrgb"
    png(root / "a.png", rgb((50, 50, 50)))
    png(root / "b.png", rgb((60, 60, 60)))
    s = load_dataset(f"folder:{root}").splits
    assert s.train.images.shape[1:] == (1, 4, 4)
    assert sorted(firsts(s.train) + firsts(s.test)) == [50, 60]
    assert s.notes == [f"folder {root}: the 2 images are stored as RGB but hold only grey; using one channel"]
    png(root / "c.png", grey(70))  # with a grey file among them: grey, nothing to say
    s = load_dataset(f"folder:{root}", {"test_fraction": "0.3"}).splits
    assert s.train.images.shape[1:] == (1, 4, 4)
    assert sorted(firsts(s.train) + firsts(s.test)) == [50, 60, 70] and s.notes == []


def test_grayscale_uses_itu_601_luma_as_pillow(tmp_path):
    root = tmp_path / "luma"
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (12, 200, 99)]
    for i, colour in enumerate(colours):
        png(root / f"{i}.png", rgb(colour))
    s = load_dataset(f"folder:{root}", {"grayscale": "yes", "test_fraction": "0.25"}).splits
    assert s.train.images.shape[1:] == (1, 4, 4)
    expected = sorted(Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0)) for c in colours)
    assert sorted(firsts(s.train) + firsts(s.test)) == expected == [29, 76, 132, 150]


def test_train_and_test_subfolders_are_the_splits(tmp_path):
    root = tmp_path / "split"
    png(root / "train" / "b" / "1.png", grey(1))
    png(root / "train" / "a" / "2.png", grey(2))
    png(root / "train" / "a" / "3.png", grey(3))
    png(root / "test" / "b" / "4.png", grey(4))
    png(root / "test" / "c" / "5.jpg", grey(200), fmt="JPEG")
    png(root / "extra.png", grey(9))  # beside train/ and test/: not read, but said
    png(root / "more" / "x.png", grey(9))
    s = load_dataset(f"folder:{root}", {"test_fraction": "0.5"}).splits  # ignored: the folder has its split
    assert s.notes == [f"folder {root}: read train/ and test/ only; ignored 2 other entries: extra.png, more/"]
    assert firsts(s.train) == [2, 3, 1]  # sorted by path: a/2, a/3, b/1
    assert s.class_names == ["a", "b", "c"]
    assert s.train.labels.tolist() == [0, 0, 1] and s.test.labels.tolist() == [1, 2]
    assert firsts(s.test)[0] == 4 and abs(firsts(s.test)[1] - 200) <= 2


def test_train_and_test_subfolders_without_classes(tmp_path):
    root = tmp_path / "flat"
    png(root / "train" / "1.png", grey(1))
    png(root / "train" / "2.png", grey(2))
    png(root / "test" / "3.png", grey(3))
    (root / "test" / "readme.txt").write_text("x")
    s = load_dataset(f"folder:{root}").splits
    assert (firsts(s.train), firsts(s.test)) == ([1, 2], [3])
    assert s.class_names is None and s.train.labels is None and s.test.labels is None
    assert s.notes == [f"folder {root}: skipped 1 file: test/readme.txt"]
    (root / "test" / "3.png").unlink()
    usage_error(f"folder:{root}", f"{root / 'test'} holds no readable images (1 other file)")


@pytest.mark.parametrize(
    "values,needle",
    [
        ({"test_fraction": "1.5"}, "test_fraction must lie between 0 and 1"),
        ({"test_fraction": "0"}, "test_fraction"),
        ({"image_size": "-1"}, "image_size must be 0"),
        ({"grayscale": "maybe"}, "not a boolean"),
        ({"colour": "1"}, "has no option colour"),
    ],
)
def test_folder_options_are_checked(tmp_path, values, needle):
    usage_error(f"folder:{tmp_path}", needle, option_values=values)


# -- tensor:PATH -------------------------------------------------------------------------------------


def base_images(n: int = 10, c: int = 3, h: int = 6, w: int = 5) -> np.ndarray:
    """(N, C, H, W) uint8 with every value distinct enough to catch a wrong transpose."""
    return (np.arange(n * c * h * w) % 251).astype(np.uint8).reshape(n, c, h, w)


def all_images(s) -> np.ndarray:
    return np.concatenate([s.train.images.numpy(), s.test.images.numpy()])


def test_npy_nhw_is_grey_with_a_held_out_test_split(tmp_path):
    x = base_images(10, 1)[:, 0]  # (N, H, W)
    np.save(tmp_path / "x.npy", x)
    data = load_dataset(f"tensor:{tmp_path / 'x.npy'}", {"test_fraction": "0.3", "seed": "2"})
    s = data.splits
    assert (len(s.train), len(s.test)) == (7, 3) and s.train.images.shape[1:] == (1, 6, 5)
    assert s.train.labels is None and s.class_names is None and s.notes == []
    rows = {tuple(img.ravel()) for img in all_images(s)}
    assert rows == {tuple(img.ravel()) for img in x}
    assert data.options.path == str((tmp_path / "x.npy").resolve())


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("channels", [1, 3])
def test_npy_layouts(tmp_path, layout, channels):
    x = base_images(6, channels)
    np.save(tmp_path / "x.npy", x if layout == "NCHW" else x.transpose(0, 2, 3, 1))
    s = load_dataset(f"tensor:{tmp_path / 'x.npy'}", {"test_fraction": "0.5"}).splits
    got = all_images(s)
    assert got.shape[1:] == (channels, 6, 5)
    assert sorted(map(bytes, got)) == sorted(map(bytes, x))


def test_ambiguous_layouts_take_the_fewer_channels_and_say_so(tmp_path):
    x = base_images(2, 3, 4, 5)
    np.save(tmp_path / "x.npy", x.transpose(0, 2, 3, 1))  # (2, 4, 5, 3): 4 channels first, or 3 last
    s = load_dataset(f"tensor:{tmp_path / 'x.npy'}").splits
    assert sorted(map(bytes, all_images(s))) == sorted(map(bytes, x))
    assert s.notes == [f"tensor {tmp_path / 'x.npy'}: images of shape (2, 4, 5, 3) read as (N, H, W, C)"]


def test_four_channels_drop_alpha_with_a_note(tmp_path):
    x = base_images(4, 4)
    np.save(tmp_path / "rgba.npy", x.transpose(0, 2, 3, 1))
    s = load_dataset(f"tensor:{tmp_path / 'rgba.npy'}").splits
    assert sorted(map(bytes, all_images(s))) == sorted(map(bytes, x[:, :3]))
    assert s.notes == [f"tensor {tmp_path / 'rgba.npy'}: dropped the alpha channel of images"]


@pytest.mark.parametrize("image_key,label_key", [("images", "labels"), ("x", "y"), ("images", None)])
def test_npz_images_and_labels(tmp_path, image_key, label_key):
    x = base_images(8, 1)
    arrays = {image_key: x}
    if label_key:
        arrays[label_key] = np.array([0, 1, 2, 3, 4, 0, 1, 2], dtype=np.int32)
    np.savez(tmp_path / "d.npz", **arrays)
    s = load_dataset(f"tensor:{tmp_path / 'd.npz'}", {"test_fraction": "0.25"}).splits
    assert (len(s.train), len(s.test)) == (6, 2)
    if label_key:
        assert s.class_names == ["0", "1", "2", "3", "4"] and s.train.labels.dtype == torch.int64
        index = {bytes(img): k for img, k in zip(x, arrays[label_key])}  # labels travel with their images
        for split in (s.train, s.test):
            assert split.labels.tolist() == [index[bytes(img)] for img in split.images.numpy()]
    else:
        assert s.train.labels is None and s.class_names is None


@pytest.mark.parametrize(
    "keys", [("x_train", "x_test", "y_train", "y_test"), ("train_images", "test_images", "train_labels", "test_labels")]
)
def test_npz_with_its_own_split(tmp_path, keys):
    x_train, x_test = base_images(5, 3), base_images(2, 3)[:, :, ::-1].copy()
    np.savez_compressed(
        tmp_path / "d.npz",
        **{
            keys[0]: x_train.transpose(0, 2, 3, 1),
            keys[1]: x_test.transpose(0, 2, 3, 1),
            keys[2]: np.array([1, 0, 1, 0, 1], np.uint8),
            keys[3]: np.array([2, 0]),
        },
    )
    s = load_dataset(f"tensor:{tmp_path / 'd.npz'}", {"test_fraction": "0.5"}).splits
    assert np.array_equal(s.train.images.numpy(), x_train) and np.array_equal(s.test.images.numpy(), x_test)
    assert s.train.labels.tolist() == [1, 0, 1, 0, 1] and s.test.labels.tolist() == [2, 0]
    assert s.class_names == ["0", "1", "2"]


def test_safetensors_images_labels_and_split(tmp_path):
    from safetensors.numpy import save_file
    from safetensors.torch import save_file as save_torch

    x = base_images(4, 3)
    save_file({"images": x, "labels": np.array([3, 2, 1, 0], np.int64)}, str(tmp_path / "a.safetensors"))
    s = load_dataset(f"tensor:{tmp_path / 'a.safetensors'}", {"test_fraction": "0.25"}).splits
    index = {bytes(img): k for img, k in zip(x, [3, 2, 1, 0])}
    assert s.train.labels.tolist() == [index[bytes(img)] for img in s.train.images.numpy()]
    assert s.class_names == ["0", "1", "2", "3"]
    xt = torch.from_numpy(base_images(3, 1)).float() / 255  # floats exactly on the 8-bit levels
    save_torch({"x_train": xt, "x_test": xt[:1].clone()}, str(tmp_path / "b.safetensors"))
    s = load_dataset(f"tensor:{tmp_path / 'b.safetensors'}").splits
    assert np.array_equal(s.train.images.numpy(), base_images(3, 1)) and s.notes == []
    assert s.train.labels is None
    ends = torch.tensor([[[0.0, 1.0]]] * 2, dtype=torch.bfloat16)  # no numpy dtype: read through float32
    save_torch({"images": ends}, str(tmp_path / "c.safetensors"))
    assert load_dataset(f"tensor:{tmp_path / 'c.safetensors'}").splits.train.images[0, 0].tolist() == [[0, 255]]


def test_float_images_are_rounded_with_a_note_when_values_change(tmp_path):
    exact = base_images(3, 1).astype(np.float32) / 255
    np.save(tmp_path / "exact.npy", exact)
    s = load_dataset(f"tensor:{tmp_path / 'exact.npy'}").splits
    assert sorted(map(bytes, all_images(s))) == sorted(map(bytes, base_images(3, 1))) and s.notes == []
    halves = np.array([[[0.5, 0.0], [1.0, 0.2]]] * 2, np.float64)  # 0.5*255 = 127.5 -> 128, 0.2*255 = 51
    np.save(tmp_path / "halves.npy", halves)
    s = load_dataset(f"tensor:{tmp_path / 'halves.npy'}").splits
    assert s.train.images[0, 0].tolist() == [[128, 0], [255, 51]]
    assert len(s.notes) == 1 and "rounded the float values of images to the 256 levels" in s.notes[0]
    np.save(tmp_path / "bool.npy", np.array([[[True, False]]] * 2))
    s = load_dataset(f"tensor:{tmp_path / 'bool.npy'}").splits
    assert s.train.images[0, 0].tolist() == [[255, 0]]


def _write_cifar_bin(folder, rng, per_file: int = 2):
    """The six batches of CIFAR-10's binary release: records of a label byte and the R, G, B
    32x32 planes. Returns the (images, labels) written, train and test."""
    folder.mkdir(parents=True)
    written = {"train": ([], []), "test": ([], [])}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        images = rng.integers(0, 256, (per_file, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, per_file, dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels[:, None], images.reshape(per_file, -1)], axis=1).tobytes())
        split = "test" if name.startswith("test") else "train"
        written[split][0].append(images)
        written[split][1].append(labels)
    return {k: (np.concatenate(v[0]), np.concatenate(v[1])) for k, v in written.items()}


def test_cifar10_is_read_from_the_binary_release_without_unpickling(tmp_path):
    written = _write_cifar_bin(tmp_path / "cifar-10-batches-bin", np.random.default_rng(0))
    loaded = load_dataset("cifar10", data_dir=tmp_path, download=False)
    for name in ("train", "test"):
        split = getattr(loaded.splits, name)
        images, labels = written[name]
        assert split.images.shape == (len(images), 3, 32, 32) and split.images.dtype == torch.uint8
        assert np.array_equal(split.images.numpy(), images)  # the R, G, B planes are channels 0, 1, 2
        assert split.labels.dtype == torch.int64 and split.labels.tolist() == labels.tolist()
    assert loaded.splits.class_names[:2] == ["airplane", "automobile"] and len(loaded.splits.train) == 10


def test_a_truncated_cifar10_batch_is_one_line(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    _write_cifar_bin(folder, np.random.default_rng(0))
    (folder / "test_batch.bin").write_bytes((folder / "test_batch.bin").read_bytes()[:-5])
    with pytest.raises(DataUnavailableError, match="could not load or download CIFAR-10 .*3073-byte"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)


def test_tensor_refusals_are_one_line_usage_errors(tmp_path):
    t = tmp_path

    def refused(name: str, *needles: str):
        usage_error(f"tensor:{t / name}", str(t / name), *needles)

    (t / "x.txt").write_text("1 2 3")
    refused("x.txt", "unknown suffix '.txt'", ".npy, .npz or .safetensors")
    refused("missing.npy", "no such file")
    (t / "dir.npy").mkdir()
    refused("dir.npy", "is a folder", "folder:")
    np.savez(t / "nokey.npz", pictures=base_images(2), classes=np.arange(2))
    refused("nokey.npz", "no images", "keys found: pictures, classes")
    np.save(t / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    refused("obj.npy", "pickled (object) array")
    np.savez(t / "obj.npz", images=np.array([[1], "two"], dtype=object))
    refused("obj.npz", "images is a pickled (object) array")
    with open(t / "pickle.npy", "wb") as f:
        pickle.dump(np.zeros((2, 4, 4)), f)
    refused("pickle.npy", "not a NumPy .npy file", "never loaded")
    (t / "junk.safetensors").write_bytes(os.urandom(64))
    refused("junk.safetensors", "cannot read it as .safetensors")
    (t / "junk.npz").write_bytes(b"PK\x03\x04" + os.urandom(64))
    refused("junk.npz", "cannot read it as .npz")
    np.save(t / "flat.npy", np.zeros((4, 16), np.uint8))  # (N, D): rows (counts), not images
    from vaecli.data import load_dataset

    assert load_dataset(f"tensor:{t / 'flat.npy'}", data_dir=t).kind == "counts"
    np.save(t / "text.npy", np.array([["a", "b"], ["c", "d"]]))
    refused("text.npy", "rows must be numbers")
    np.save(t / "five.npy", np.zeros((2, 1, 4, 4, 1), np.uint8))
    refused("five.npy", "has 5 dimensions")
    np.save(t / "channels.npy", np.zeros((2, 5, 4, 6), np.uint8))
    refused("channels.npy", "has shape (2, 5, 4, 6)", "C = 1, 3 or 4")
    np.save(t / "empty.npy", np.zeros((0, 4, 4), np.uint8))
    refused("empty.npy", "holds no images")
    np.save(t / "ints.npy", np.zeros((2, 4, 4), np.int32))
    refused("ints.npy", "dtype int32", "uint8 (0 to 255), floats in [0, 1]")
    nan = np.zeros((2, 4, 4), np.float32)
    nan[0, 0, 0] = np.nan
    np.save(t / "nan.npy", nan)
    refused("nan.npy", "NaN or infinite")
    np.save(t / "big.npy", np.full((2, 4, 4), 255.0, np.float32))
    refused("big.npy", "values from 255 to 255", "must lie in [0, 1]")
    np.save(t / "neg.npy", np.full((2, 4, 4), -0.5, np.float32))
    refused("neg.npy", "values from -0.5 to -0.5")
    np.savez(t / "short.npz", x=base_images(3, 1), y=np.array([0, 1]))
    refused("short.npz", "y has shape (2,) for 3 images")
    np.savez(t / "flabels.npz", x=base_images(3, 1), y=np.array([0.0, 1.0, 1.0]))
    refused("flabels.npz", "y has dtype float64", "integer class indices")
    np.savez(t / "neglabels.npz", x=base_images(3, 1), y=np.array([0, -1, 1]))
    refused("neglabels.npz", "holds -1", "from 0")
    np.savez(t / "half.npz", x_train=base_images(3, 1))
    refused("half.npz", "has x_train but no x_test")
    np.savez(t / "halflabels.npz", x_train=base_images(3, 1), x_test=base_images(1, 1), y_train=np.arange(3))
    refused("halflabels.npz", "has y_train but no y_test")
    np.savez(t / "mismatch.npz", x_train=base_images(3, 1), x_test=base_images(1, 3))
    refused("mismatch.npz", "x_train are (1, 6, 5)", "x_test are (3, 6, 5)")
    np.save(t / "one.npy", base_images(1, 1))
    refused("one.npy", "holds only 1 image")


# -- through the CLI -----------------------------------------------------------------------------


def test_train_on_a_folder_through_the_cli(vae, tmp_path, monkeypatch, one_thread):
    root = tmp_path / "pngs"
    rng = np.random.default_rng(0)
    for i in range(20):
        png(root / ("even" if i % 2 == 0 else "odd") / f"{i:02d}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    (root / "notes.txt").write_text("not an image")  # in no subfolder: skipped, so labels still hold
    result = vae(
        "train",
        f"folder:{root}",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--latent-dim",
        "2",
        "--arch-option",
        "hidden=16",
        "--batch-size",
        "8",
        "-o",
        "m.safetensors",
    )
    assert result.exit_code == 0, result.output
    info = vae("info", "m.safetensors")
    assert info.exit_code == 0 and "folder" in info.stdout
    meta = json.loads(vae("info", "m.safetensors", "--json").stdout)
    assert meta["data"]["dataset"]["name"] == "folder"
    assert meta["data"]["dataset"]["options"]["path"] == str(root.resolve())
    assert meta["data"]["class_names"] == ["even", "odd"]
    assert (meta["data"]["n_train"], meta["data"]["n_test"]) == (18, 2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # a path recorded in a checkpoint is not read unless the user names it
    refused = vae("evaluate", tmp_path / "m.safetensors", "-k", "2")
    assert refused.exit_code == 2 and f"folder:{root.resolve()}:test" in refused.stderr, refused.output
    result = vae("evaluate", tmp_path / "m.safetensors", f"folder:{root}:test", "-k", "2")
    assert result.exit_code == 0, result.output
