"""The data cache of folder: and tensor: datasets: built once, mapped again while the source is
unchanged, built again when it changes, never left half-written, and memory bounded while an
epoch reads through data larger than the hand-back threshold."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaecli import datacache
from vaecli.builtin import arrays, files
from vaecli.data import load_dataset, to_unit


def caches() -> list[str]:
    root = Path(os.environ["VAECLI_DATA_DIR"]) / "cache"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def bump(path: Path) -> None:
    """A new modification time, as an edit would leave."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_tensor_cache_is_mapped_again_and_rebuilt_when_the_file_changes(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (40, 6, 5, 3), dtype=np.uint8)  # NHWC
    np.savez(tmp_path / "d.npz", images=first, labels=np.arange(40) % 4)
    data = load_dataset(f"tensor:{tmp_path / 'd.npz'}", {"test_fraction": "0.25"}).splits
    assert len(caches()) == 1
    expected = torch.from_numpy(first).permute(0, 3, 1, 2)
    both = torch.cat([data.train.images, data.test.images])
    assert sorted(map(bytes, both.flatten(1).numpy())) == sorted(map(bytes, expected.flatten(1).numpy()))

    def no_build(*args):
        raise AssertionError("built again")

    with monkeypatch.context() as m:
        m.setattr(arrays, "_build", no_build)
        again = load_dataset(f"tensor:{tmp_path / 'd.npz'}", {"test_fraction": "0.25"}).splits
    assert torch.equal(again.train.images, data.train.images) and torch.equal(again.test.labels, data.test.labels)

    second = 255 - first
    np.savez(tmp_path / "d.npz", images=second, labels=np.arange(40) % 4)
    bump(tmp_path / "d.npz")
    changed = load_dataset(f"tensor:{tmp_path / 'd.npz'}", {"test_fraction": "0.25"}).splits
    assert torch.equal(changed.train.images, 255 - data.train.images)
    assert len(caches()) == 2
    # other options are another cache
    load_dataset(f"tensor:{tmp_path / 'd.npz'}", {"test_fraction": "0.5"})
    assert len(caches()) == 3


def test_folder_cache_keeps_its_notes_and_follows_a_changed_image(tmp_path, monkeypatch):
    root = tmp_path / "pngs"
    root.mkdir()
    for i in range(6):
        Image.fromarray(np.full((4, 4), 40 * i, np.uint8)).save(root / f"{i}.png")
    (root / "readme.txt").write_text("not an image")
    data = load_dataset(f"folder:{root}", {"test_fraction": "0.5"})
    with monkeypatch.context() as m:
        m.setattr(files, "_build_folder", lambda *a: pytest.fail("built again"))
        again = load_dataset(f"folder:{root}", {"test_fraction": "0.5"})
    assert again.splits.notes == data.splits.notes and "readme.txt" in " ".join(data.splits.notes)
    assert torch.equal(again.splits.train.images, data.splits.train.images)
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(root / "0.png")
    bump(root / "0.png")
    changed = load_dataset(f"folder:{root}", {"test_fraction": "0.5"}).splits
    values = sorted(int(x[0, 0, 0]) for x in torch.cat([changed.train.images, changed.test.images]))
    assert values == [40, 80, 120, 160, 200, 255]


def test_a_cache_is_read_into_memory_when_it_fits_else_mapped(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.arange(10 * 16, dtype=np.uint8).reshape(10, 4, 4))
    held = load_dataset(f"tensor:{tmp_path / 'x.npy'}").splits.train.images
    assert datacache._file_of(held) is None
    monkeypatch.setattr(datacache, "IN_MEMORY_SHARE", 0.0)
    mapped = load_dataset(f"tensor:{tmp_path / 'x.npy'}").splits.train.images
    assert datacache._file_of(mapped) is not None and torch.equal(mapped, held)


def test_a_damaged_cache_is_built_again(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(10 * 16, dtype=np.uint8).reshape(10, 4, 4))
    first = load_dataset(f"tensor:{tmp_path / 'x.npy'}").splits.train.images.clone()
    (cache,) = caches()
    train = Path(os.environ["VAECLI_DATA_DIR"]) / "cache" / cache / "train.u8"
    train.write_bytes(train.read_bytes()[:-5])  # truncated by a full disk, say
    assert torch.equal(load_dataset(f"tensor:{tmp_path / 'x.npy'}").splits.train.images, first)


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.zeros((10, 4, 4), np.uint8))
    monkeypatch.setattr(datacache.Writer, "add", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        load_dataset(f"tensor:{tmp_path / 'x.npy'}")
    assert caches() == []


def test_large_arrays_are_read_in_chunks_with_the_same_result(tmp_path, monkeypatch):
    """Float images, converted chunk by chunk (three rows at a time here), as one pass would."""
    monkeypatch.setattr(arrays, "CHUNK_BYTES", 3 * 4 * 5 * 5)
    x = np.random.default_rng(1).random((11, 5, 5), dtype=np.float32)
    np.savez_compressed(tmp_path / "f.npz", x_train=x[:8], x_test=x[8:])
    data = load_dataset(f"tensor:{tmp_path / 'f.npz'}").splits
    expected = torch.from_numpy(np.rint(x.astype(np.float32) * 255).astype(np.uint8))[:, None]
    assert torch.equal(data.train.images, expected[:8]) and torch.equal(data.test.images, expected[8:])
    assert any("rounded the float values" in n for n in data.notes)


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(not hasattr(os, "preadv") or not Path("/proc/self/status").exists(), reason="Linux")
def test_passes_over_mapped_data_keep_resident_memory_bounded(tmp_path, monkeypatch):
    """160 MB of images. Random batches through ``gather`` (the trainer's) and a sequential pass
    through ``to_unit`` (evaluation's) with the pages handed back every 16 MB: the resident
    memory grows by far less than the data; random batches through the mapping itself, the
    control, grow it by about all of the data."""
    n = 160 * 1024 * 1024 // (3 * 32 * 32)
    images = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(n, 3, 32, 32))
    images[:] = 7
    images[::1000] = 9
    images.flush()
    del images
    monkeypatch.setattr(datacache, "IN_MEMORY_SHARE", 0.0)  # mapped, however much memory is free
    train = load_dataset(f"tensor:{tmp_path / 'big.npy'}", {"test_fraction": "0.01"}).splits.train.images
    monkeypatch.setattr(datacache, "TRIM_BYTES", 16 << 20)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    idx = order[:300]
    assert torch.equal(datacache.gather(train, idx), train.index_select(0, idx))
    passes = {
        "random, gather": lambda i: to_unit(datacache.gather(train, i)),
        "sequential": lambda i: to_unit(train[int(i[0]) : int(i[0]) + 512]),
        "random, mapped (control)": lambda i: train.index_select(0, i).float(),
    }
    growth = {}
    for name, batch in passes.items():
        datacache.trim()
        before = peak = _rss()
        batches = order.split(512) if name.startswith("random") else torch.arange(len(train)).split(512)
        for j, i in enumerate(batches):
            batch(i)
            if j % 10 == 0:
                peak = max(peak, _rss())
        growth[name] = max(peak, _rss()) - before
    data_bytes = train.numel()
    assert growth["random, mapped (control)"] > 0.6 * data_bytes, growth
    assert growth["random, gather"] < 0.2 * data_bytes, growth
    assert growth["sequential"] < 0.2 * data_bytes, growth
