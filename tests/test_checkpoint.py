"""Checkpoints: round trip, metadata, integrity, refusal of anything that is not one."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

import vaecli
from vaecli import checkpoint, factory
from vaecli.errors import CheckpointError


def test_round_trip_gives_identical_outputs(tmp_path):
    result = vaecli.train(
        dataset="shapes",
        dataset_options={"n_train": 64, "n_test": 32, "size": 8},
        arch_options={"hidden": (16,)},
        latent_dim=2,
        epochs=1,
        batch_size=16,
        device="cpu",
        out=str(tmp_path / "a.safetensors"),
    )
    loaded = vaecli.load(result.path)
    x = torch.randint(0, 256, (7, 1, 8, 8), dtype=torch.uint8)
    for a, b in zip(result.model.encode(x), loaded.encode(x)):
        assert torch.equal(a, b)
    z = torch.randn(5, 2)
    assert torch.equal(result.model.decode(z), loaded.decode(z))
    s1 = result.model.sample(4, generator=torch.Generator().manual_seed(3))
    s2 = loaded.sample(4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2)
    assert not loaded.training


def test_metadata_describes_the_model(tiny_ckpt):
    ckpt = checkpoint.read(tiny_ckpt)
    meta = ckpt.meta
    assert meta["format"] == "vaecli" and meta["format_version"] == "1"
    assert meta["model"]["architecture"] == {
        "name": "mlp",
        "options": {"hidden": [32], "activation": "relu"},
        "provider": {"distribution": "vaecli", "version": vaecli.__version__, "plugin": "architectures"},
    }
    assert meta["model"]["likelihood"]["name"] == "bernoulli"
    assert meta["model"]["latent_dim"] == 3 and meta["model"]["input_shape"] == [1, 8, 8]
    assert meta["data"]["dataset"]["name"] == "shapes"
    assert meta["data"]["class_names"] == ["square", "ellipse", "heart"]
    assert meta["data"]["preprocessing"]["divide_by"] == 255
    assert meta["training"]["batch_size"] == 32 and meta["training"]["epochs"] == 2
    assert ckpt.epoch == 2 and [m["epoch"] for m in meta["metrics"]] == [1, 2]
    assert meta["versions"]["torch"] == torch.__version__
    # resumable state is there too
    assert "rng.torch" in ckpt.tensors
    assert any(k.startswith("optim.state.") and k.endswith(".exp_avg") for k in ckpt.tensors)
    assert meta["optim"]["param_groups"][0]["lr"] == 1e-3


def _data_offset(raw: bytes) -> int:
    return 8 + int.from_bytes(raw[:8], "little")


def test_a_flipped_byte_is_detected(tiny_ckpt, tmp_path):
    raw = bytearray(tiny_ckpt.read_bytes())
    raw[_data_offset(raw) + 100] ^= 0x01
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged"):
        checkpoint.read(bad)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "is empty"),
        (b"\x80\x04\x95\x10\x00\x00\x00", "pickle"),
        (b"PK\x03\x04" + b"\x00" * 40, "pickle"),
        (os.urandom(256), "not a readable safetensors"),
        (b"\x05\x00", "not a readable safetensors"),
    ],
)
def test_files_that_are_not_checkpoints_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.read(path)


def test_truncated_checkpoint_is_refused(tiny_ckpt, tmp_path):
    raw = tiny_ckpt.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoint.read(path)


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path), metadata={"hello": "world"})
    with pytest.raises(CheckpointError, match="not a vaecli checkpoint"):
        checkpoint.read(path)


def test_a_newer_format_is_refused(tiny_ckpt, tmp_path):
    ckpt = checkpoint.read(tiny_ckpt)
    meta = {k: json.dumps(v) if k in checkpoint.JSON_KEYS else str(v) for k, v in ckpt.meta.items()}
    meta["format_version"] = "99"
    path = tmp_path / "future.safetensors"
    save_file(ckpt.tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="newer vaecli"):
        checkpoint.read(path)


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoint.read(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="is a folder"):
        checkpoint.read(tmp_path)


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "replace", boom)
    with pytest.raises(OSError):
        checkpoint.atomic_write(path, b"new contents")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no temporary file left


def test_tensor_hash_depends_on_dtype_shape_and_values():
    a = {"x": torch.zeros(4)}
    assert checkpoint.tensor_hash(a) == checkpoint.tensor_hash({"x": torch.zeros(4)})
    assert checkpoint.tensor_hash(a) != checkpoint.tensor_hash({"x": torch.zeros(4, dtype=torch.float64)})
    assert checkpoint.tensor_hash(a) != checkpoint.tensor_hash({"x": torch.zeros(2, 2)})
    assert checkpoint.tensor_hash(a) != checkpoint.tensor_hash({"x": torch.tensor([0.0, 0, 0, 1e-30])})
    assert checkpoint.tensor_hash(a) != checkpoint.tensor_hash({"y": torch.zeros(4)})


def test_checkpoint_permissions_follow_the_umask_and_created_stays(tiny_ckpt):
    mode = tiny_ckpt.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    meta = checkpoint.read(tiny_ckpt).meta
    assert meta["created"] <= meta["updated"]
    assert meta["metrics"][0]["train_objective"] == pytest.approx(meta["metrics"][0]["train_nelbo"])


def test_nothing_in_the_package_loads_or_writes_pickles():
    """Checkpoints are safetensors only, and no dataset or input is unpickled either."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]  # the sources, not an installed copy
    root, plugins = repo / "vaecli", repo / "plugins"
    assert (root / "checkpoint.py").exists() and (plugins / "vaecli-resnet").is_dir()
    pattern = re.compile(
        r"\bimport (cloud)?pickle\b|\bfrom (cloud)?pickle\b|\b(cloud)?pickle\.\w|torch\.load\b"
        r"|allow_pickle\s*=\s*True"
    )
    found = [
        f"{path}:{n}"
        for path in [*root.rglob("*.py"), *(plugins.rglob("*.py") if plugins.is_dir() else [])]
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda t, h: h.update(training=h["training"].replace('"batch_size": 32', '"batch_size": 64')),
            "metadata does not match",
        ),
        (lambda t, h: h.update(metrics=h["metrics"].replace('"epoch": 2', '"epoch": 3')), "metadata does not match"),
        (lambda t, h: h.pop("created"), "metadata does not match"),
        (lambda t, h: t.update({k: t[k].double() for k in sorted(t)[:1]}), "tensor data does not match"),
        (lambda t, h: t.pop(sorted(t)[-1]), "tensor data does not match"),
        (lambda t, h: t.update(extra=torch.zeros(3)), "tensor data does not match"),
        (
            lambda t, h: t.update({k: t[k].flip(0) for k in sorted(t) if k.startswith("model.")}),
            "tensor data does not match",
        ),
    ],
    ids=[
        "a-setting",
        "a-metric",
        "a-missing-entry",
        "a-dtype",
        "a-missing-tensor",
        "an-extra-tensor",
        "reordered-weights",
    ],
)
def test_any_change_after_writing_is_detected(tiny_ckpt, tmp_path, change, message):
    """The file is rewritten whole and valid, with the hashes recorded when it was written."""
    ckpt = checkpoint.read(tiny_ckpt)
    tensors = dict(ckpt.tensors)
    header = {k: json.dumps(v) if k in checkpoint.JSON_KEYS else str(v) for k, v in ckpt.meta.items()}
    change(tensors, header)
    bad = tmp_path / "changed.safetensors"
    save_file(tensors, str(bad), metadata=header)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.read(bad)


def test_non_finite_weights_with_matching_hashes_are_refused(tiny_ckpt, tmp_path):
    model = vaecli.load(tiny_ckpt)
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    path = tmp_path / "nan.safetensors"
    checkpoint.save(path, model, checkpoint.read(tiny_ckpt).meta)
    checkpoint.read(path)  # intact as a file ...
    with pytest.raises(CheckpointError, match="non-finite"):
        factory.load(path)  # ... but not a model to use


def test_saving_never_takes_hashes_from_the_metadata_given(tiny_ckpt, tmp_path):
    ckpt = checkpoint.read(tiny_ckpt)
    model = vaecli.load(tiny_ckpt)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    path = tmp_path / "changed.safetensors"
    checkpoint.save(path, model, ckpt.meta)  # meta still holds the old tensor_sha256 and meta_sha256
    again = checkpoint.read(path)
    assert again.meta["tensor_sha256"] != ckpt.meta["tensor_sha256"]


def test_metrics_written_by_0_5_with_the_old_keys_read_with_the_new_ones(tiny_ckpt, tmp_path, monkeypatch):
    """vaecli 0.5 called the negative ELBO train_loss and test_loss; such a checkpoint still shows
    its metrics, and resumes into one metrics log with one set of keys."""
    ckpt = checkpoint.read(tiny_ckpt)
    old = [
        {("train_loss" if k == "train_nelbo" else "test_loss" if k == "test_nelbo" else k): v for k, v in m.items()}
        for m in ckpt.meta["metrics"]
    ]
    assert "test_loss" in old[0] and "test_nelbo" not in old[0]
    path = tmp_path / "old.safetensors"
    model = factory.model_of(ckpt)
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("optim", "versions", "updated")}
    meta["metrics"] = old
    optimizer = torch.optim.Adam(model.parameters())
    checkpoint.load_optimizer_state(optimizer, ckpt)
    checkpoint.save(path, model, meta, optimizer=optimizer, rng=True, extra={"rng.train": ckpt.tensors["rng.train"]})
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:  # the file holds the old keys, as 0.5 wrote them
        assert json.loads(f.metadata()["metrics"])[0]["test_loss"] == old[0]["test_loss"]
    read = vaecli.metadata(path)["metrics"]
    assert [m["test_nelbo"] for m in read] == [m["test_loss"] for m in old]
    assert all("test_loss" not in m and "train_loss" not in m for m in read)
    monkeypatch.chdir(tmp_path)
    result = vaecli.resume(path, epochs=3)
    assert [m["epoch"] for m in result.metrics] == [1, 2, 3]
    assert all({"train_nelbo", "test_nelbo"} <= set(m) for m in result.metrics)
    log = [json.loads(line) for line in (tmp_path / "old.metrics.jsonl").read_text().splitlines()]
    assert [m["test_nelbo"] for m in log[:2]] == [m["test_loss"] for m in old]
