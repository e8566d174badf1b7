"""Reliability: a checkpoint's header checked before its body is read; weights that overflow
refused at load; no NaN or infinity reported as a result; one writer per checkpoint."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

import vaecli
from conftest import one_line_error
from vaecli import checkpoint
from vaecli.errors import CheckpointError, UsageError, VaeError
from vaecli.header import read_bytes
from vaecli.training.lock import RunLock


def test_a_huge_sparse_file_is_refused_after_reading_its_header(tmp_path):
    path = tmp_path / "sparse.safetensors"
    with open(path, "wb") as f:
        f.truncate(30 * 2**30)  # 30 GB of holes: no disk used
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="declares a header of 0 bytes"):
        read_bytes(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - started < 1 and peak < 1 << 20


def test_a_header_that_declares_more_than_the_file_holds_is_refused(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [10**9], "data_offsets": [0, 4 * 10**9]}}).encode()
    path = tmp_path / "forged.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(100))
    with pytest.raises(CheckpointError, match="do not fit its shape and the file"):
        read_bytes(path)


def _scaled_copy(tiny_ckpt, path, factor: float):
    ckpt = checkpoint.read(tiny_ckpt)
    model = vaecli.load(tiny_ckpt)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(factor)
    checkpoint.save(path, model, ckpt.meta)


def test_finite_weights_that_overflow_are_refused_at_load(vae, tiny_ckpt, tmp_path):
    big = tmp_path / "big.safetensors"
    _scaled_copy(tiny_ckpt, big, 1e30)  # finite, but x W overflows float32 in the second layer
    one_line_error(vae("sample", big, "-n", "4", "-o", tmp_path / "s.png"), 2, "overflows")
    assert not (tmp_path / "s.png").exists()


def test_codes_that_decode_to_non_finite_images_are_an_error_not_a_picture(tiny_ckpt):
    model = vaecli.load(tiny_ckpt)
    assert torch.isfinite(model.decode(torch.zeros(2, 3))).all()
    with pytest.raises(VaeError, match="decoder's output is not finite"):
        model.decode(torch.full((2, 3), float("inf")))


def test_evaluate_never_reports_nan():
    from vaecli.cli.evaluate import _check_finite

    _check_finite({"nll": 80.0, "kl_per_dim": [1.0, 2.0], "input": "x"})
    with pytest.raises(VaeError, match="nll, kl_per_dim came out NaN"):
        _check_finite({"nll": float("nan"), "kl_per_dim": [1.0, float("inf")]})


def test_a_second_writer_is_refused_naming_the_first(vae, tmp_path):
    out = tmp_path / "m.safetensors"
    with RunLock(out):
        assert (tmp_path / "m.safetensors.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(UsageError, match=f"process {os.getpid()}"), RunLock(out):
            pass
    assert not (tmp_path / "m.safetensors.lock").exists()
    with RunLock(out):  # taken again once released
        pass


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "m.safetensors"
    code = f"from vaecli.training.lock import RunLock; import time\nwith RunLock({str(out)!r}): time.sleep(60)"
    env = {**os.environ, "PYTHONPATH": str(Path(vaecli.__file__).parents[1])}  # this vaecli, not another
    holder = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        for _ in range(100):
            if (tmp_path / "m.safetensors.lock").exists() and (tmp_path / "m.safetensors.lock").read_text().strip():
                break
            time.sleep(0.1)
        with pytest.raises(UsageError, match=f"process {holder.pid}"), RunLock(out):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunLock(out):  # the kernel dropped the dead process's lock; its file is left, and reused
        assert (tmp_path / "m.safetensors.lock").read_text().strip() == str(os.getpid())


def _images(seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.random((120, 8, 8)) > 0.5).astype(np.uint8) * 255, rng.integers(0, 3, 120)


def test_resume_refuses_data_whose_content_changed(vae, tmp_path):
    """One pixel changed, the counts and shapes the same: `--resume` names the change."""
    import numpy as np

    x, y = _images()
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    args = ["--arch-option", "hidden=8", "--latent-dim", "2", "--batch-size", "32", "--device", "cpu"]
    result = vae("train", f"tensor:{tmp_path / 'd.npz'}", *args, "--epochs", "1", "-o", tmp_path / "r.safetensors")
    assert result.exit_code == 0, result.output
    recorded = vaecli.metadata(tmp_path / "r.safetensors")["data"]["sha256"]
    assert len(recorded) == 64
    x[7, 3, 3] ^= 255
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    line = one_line_error(vae("train", "--resume", tmp_path / "r.safetensors", "--epochs", "2"), 2)
    assert "the dataset's content changed since it was trained on" in line
    assert f"sha256 {recorded[:12]} then" in line
    x[7, 3, 3] ^= 255  # restored: the same content (a new file time) resumes
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    assert vae("train", "--resume", tmp_path / "r.safetensors", "--epochs", "2").exit_code == 0


def test_the_digest_of_cached_data_is_the_digest_of_its_tensors(tmp_path):
    """The sha256 the cache keeps while writing equals the one computed from the same tensors,
    so a source read through the cache or not is the same data; labels count too."""
    import dataclasses

    from vaecli import datacache
    from vaecli.hookspecs import DatasetSplits, Split

    x, y = _images(1)
    images, labels = torch.from_numpy(x)[:, None], torch.from_numpy(y)
    test_rows = torch.arange(120) % 4 == 0
    with datacache.Writer(tmp_path / "cache", (1, 8, 8)) as writer:
        writer.add(images, "", test_rows)
        cached = writer.finish((labels[~test_rows], labels[test_rows]))
    plain = DatasetSplits(Split(images[~test_rows], labels[~test_rows]), Split(images[test_rows], labels[test_rows]))
    assert cached.sha256 == datacache.digest(plain) == datacache.digest(datacache.open_cache(tmp_path / "cache"))
    relabelled = dataclasses.replace(plain, test=Split(images[test_rows], labels[test_rows] + 1), sha256=None)
    assert datacache.digest(relabelled) != cached.sha256


def test_a_folder_walk_is_bounded(vae, tmp_path, monkeypatch):
    """A folder INPUT holding more files than a folder of images would (a walk of / or ~) is
    refused once the count passes the cap, in one line."""
    from vaecli import images

    monkeypatch.setattr(images, "MAX_LISTED", 5)
    for i in range(3):
        (tmp_path / "many" / f"d{i}").mkdir(parents=True)
        for j in range(3):
            (tmp_path / "many" / f"d{i}" / f"f{j}.png").write_bytes(b"")
    line = one_line_error(vae("train", f"folder:{tmp_path / 'many'}", "--epochs", "1"), 2)
    assert "holds more than 5 files below it; give the folder of the images" in line


def test_a_folder_input_larger_than_memory_is_refused_before_reading(vae, tiny_ckpt, tmp_path, monkeypatch):
    """`vae encode CKPT FOLDER` needs the folder's images in memory: more than is available is
    refused from the file count, before an image is read."""
    from PIL import Image

    from vaecli import device, inputs

    (tmp_path / "pics").mkdir()
    for i in range(3):
        Image.new("L", (8, 8), 40 * i).save(tmp_path / "pics" / f"{i}.png")
    read = []
    monkeypatch.setattr(inputs, "read_image", lambda *a: read.append(a))
    monkeypatch.setattr(device, "free_bytes", lambda d: 100)  # 3 images of 1x8x8: 384 bytes needed
    line = one_line_error(vae("encode", tiny_ckpt, tmp_path / "pics", "-o", tmp_path / "z.npy"), 2)
    assert f"INPUT {tmp_path / 'pics'}: 3 images of" in line
    assert "needs about 0.384 kB of memory but 0.1 kB is available; give a folder of fewer images" in line
    assert not read and not (tmp_path / "z.npy").exists()
