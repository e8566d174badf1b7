"""Every bad input, through the CLI: one ``error:`` line saying what is wrong (naming the file or
value and the reason), exit 2 for bad usage or input (1 for a failure at run time, such as a
dataset missing offline), no traceback, and nothing in the folder created, changed or deleted.

One matrix: each case builds its bad input in the test's own folder, snapshots the folder
(names, sizes, mtimes, hashes of the bytes, the folders' own mtimes, which catch a temporary
file made and removed), runs the command and compares. Hostile pickles would create a marker
file if anything unpickled them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import pickle
import random
import resource
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_CLI, one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")

CKPT = "model.safetensors"  # a copy of tiny_ckpt (latent 3, 8x8 grey shapes) in the test's folder
MARKER = "unpickled"  # created by unpickling any of the hostile pickles below


# -- hostile and broken inputs ----------------------------------------------------------------


class _Touch:
    """Unpickling this creates the file ``path``: proof that something was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def _marker() -> str:
    return str(Path.cwd() / MARKER)


def _pickle_bytes(protocol: int = pickle.DEFAULT_PROTOCOL) -> bytes:
    return pickle.dumps({"state_dict": {"w": [0.0, 1.0]}, "hook": _Touch(_marker())}, protocol=protocol)


def _pt_bytes() -> bytes:
    buffer = io.BytesIO()  # a PyTorch .pt file (a zip holding a pickle), as torch.save writes it
    torch.save({"model": {"weight": torch.zeros(2, 2)}, "hook": _Touch(_marker())}, buffer)
    return buffer.getvalue()


def test_the_hostile_pickles_run_code_when_unpickled(tmp_path):
    """The inputs are what they claim: unpickling either one creates the marker."""
    pickle.loads(_pickle_bytes())
    assert (tmp_path / MARKER).exists()
    (tmp_path / MARKER).unlink()
    torch.load(io.BytesIO(_pt_bytes()), weights_only=False)
    assert (tmp_path / MARKER).exists()


def _rewrite_metadata(src: Path, dst: str, edit: Callable[[dict], None]) -> None:
    """Copy checkpoint ``src`` to ``dst`` with ``edit`` applied to its decoded metadata, and the
    hashes recomputed: an intact file whose metadata says something else than its weights."""
    from safetensors import safe_open
    from safetensors.torch import save

    from vaecli import checkpoint

    with safe_open(str(src), "pt") as f:
        raw, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    meta = {k: json.loads(v) if k in checkpoint.JSON_KEYS else v for k, v in raw.items()}
    edit(meta)
    raw = {k: json.dumps(v) if k in checkpoint.JSON_KEYS else str(v) for k, v in meta.items()}
    raw["tensor_sha256"] = checkpoint.tensor_hash(tensors)
    if "meta_sha256" in raw:  # newer checkpoints hash their metadata too
        raw["meta_sha256"] = checkpoint.meta_hash(raw)
    Path(dst).write_bytes(save(tensors, metadata=raw))


def _arch(**changes):
    return lambda meta: meta["model"]["architecture"].update(changes)


def _png(path: str, array, mode: Optional[str] = None) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array), mode).save(path)


def _npy(path: str, array) -> None:
    np.save(path, np.asarray(array), allow_pickle=False)


def _npy_header_only(path: str, shape: tuple, body: int) -> None:
    """A .npy file whose header declares ``shape`` (uint8) followed by ``body`` zero bytes."""
    from test_fuzz import _npy_header

    Path(path).write_bytes(_npy_header(shape, "|u1") + bytes(body))


def _npz_header_only(path: str, shape: tuple) -> None:
    """A .npz whose ``images`` member declares ``shape`` but holds a header and 1000 bytes."""
    _npy_header_only("member.npy", shape, 1000)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.write("member.npy", "images.npy")
    Path("member.npy").unlink()


def _latents_safetensors(path: str, **tensors) -> None:
    from safetensors.torch import save

    Path(path).write_bytes(save(tensors, metadata={"format": "vaecli-latents"}))


# -- the cases ---------------------------------------------------------------------------------


@dataclass
class Case:
    args: list  # "{ckpt}" is the valid checkpoint's copy
    needles: list
    make: Callable[[Path], None] = lambda src: None  # builds the bad input; src: tiny_ckpt
    code: int = 2
    needs_valid_ckpt: bool = True
    read_only: list = field(default_factory=list)  # folders made unwritable after make()


CASES: list = []


def case(id_: str, *args, **kwargs) -> None:
    CASES.append(pytest.param(Case(*args, **kwargs), id=id_))


# Checkpoints that are not checkpoints, for several commands. Each: (id, file, write(src, path), needles).
BAD_CHECKPOINTS = [
    ("missing", "gone.safetensors", None, ["no such file"]),
    ("empty", "empty.safetensors", lambda src, p: p.write_bytes(b""), ["is empty"]),
    (
        "truncated",
        "cut.safetensors",
        lambda src, p: p.write_bytes(src.read_bytes()[: src.stat().st_size // 2]),
        ["truncated"],
    ),
    (
        "random-bytes",
        "noise.safetensors",
        lambda src, p: p.write_bytes(random.Random(0).randbytes(4096)),
        ["not a readable safetensors"],
    ),
    ("pickle", "evil.pkl", lambda src, p: p.write_bytes(_pickle_bytes()), ["pickle", "never loaded"]),
    (
        "pickle-named-safetensors",
        "evil.safetensors",
        lambda src, p: p.write_bytes(_pickle_bytes()),
        ["pickle", "never loaded"],
    ),
    (
        "pickle-protocol-0",
        "old.pkl",
        lambda src, p: p.write_bytes(_pickle_bytes(protocol=0)),
        ["not a readable safetensors"],
    ),
    ("torch-pt", "model.pt", lambda src, p: p.write_bytes(_pt_bytes()), ["PyTorch .pt", "never loaded"]),
    ("a-folder", "dir.safetensors", lambda src, p: p.mkdir(), ["is a folder"]),
    (
        "safetensors-not-vaecli",
        "other.safetensors",
        lambda src, p: _latents_safetensors(str(p), x=torch.zeros(2, 3)),
        ["not a vaecli checkpoint"],
    ),
    (
        "tensor-bytes-damaged",
        "flipped.safetensors",
        lambda src, p: p.write_bytes(src.read_bytes()[:-1] + bytes([src.read_bytes()[-1] ^ 0xFF])),
        ["damaged"],
    ),
    (
        "newer-format",
        "future.safetensors",
        lambda src, p: _rewrite_metadata(src, str(p), lambda m: m.update(format_version="99")),
        ["newer vaecli", "upgrade"],
    ),
    # intact files (hashes recomputed) whose metadata has the wrong shape: the schema names the field
    (
        "metrics-of-the-wrong-shape",
        "metrics.safetensors",
        lambda src, p: _rewrite_metadata(src, str(p), lambda m: m.update(metrics=[[1, 2], "x"])),
        ["malformed metadata", "metrics[0] must be a map, not a list"],
    ),
    (
        "metric-that-is-text",
        "text.safetensors",
        lambda src, p: _rewrite_metadata(src, str(p), lambda m: m["metrics"][0].update(test_nelbo="low")),
        ["malformed metadata", "metrics[0].test_nelbo must be a number, not text"],
    ),
    (
        "latent-dim-that-is-text",
        "dim.safetensors",
        lambda src, p: _rewrite_metadata(src, str(p), lambda m: m["model"].update(latent_dim="3")),
        ["malformed metadata", "model.latent_dim must be a whole number, not text"],
    ),
    (
        "class-names-not-a-list",
        "names.safetensors",
        lambda src, p: _rewrite_metadata(src, str(p), lambda m: m["data"].update(class_names=7)),
        ["malformed metadata", "data.class_names must be a list"],
    ),
    (
        "options-nested-too-deep",
        "deep.safetensors",
        lambda src, p: _rewrite_metadata(
            src, str(p), lambda m: m["model"]["architecture"]["options"].update(x=json.loads("[" * 40 + "]" * 40))
        ),
        ["malformed metadata", "model nests deeper than 12 levels"],
    ),
]

# "A checkpoint of another architecture than asked": no command takes an expected architecture,
# so the closest meaning is an intact checkpoint (hashes recomputed) whose metadata names another
# architecture than its weights have. Only commands that build the model can see it (`vae info`
# reads the metadata alone). Each: (id, file, edit, exit code, needles).
OTHER_ARCHITECTURES = [
    (
        "wider-mlp",
        "wider.safetensors",
        _arch(options={"hidden": [64], "activation": "relu"}),
        2,
        ["wider.safetensors", "do not fit the architecture"],
    ),
    (
        "conv-named-mlp-weights",
        "conv.safetensors",
        _arch(name="conv", options={}),
        2,
        ["conv.safetensors", "do not fit the architecture"],
    ),
    (
        "other-latent-dim",
        "latent5.safetensors",
        lambda m: m["model"].update(latent_dim=5),
        2,
        ["latent5.safetensors", "do not fit the architecture"],
    ),
    # an architecture from a plugin that is not installed: the environment lacks it (run time)
    (
        "plugin-architecture-missing",
        "plugin.safetensors",
        _arch(name="nosuch-arch", options={}, provider={"distribution": "vaecli-nosuch", "version": "1.0"}),
        1,
        ["nosuch-arch", "vaecli-nosuch", "pip install"],
    ),
]

CKPT_COMMANDS = {
    "sample": ["sample", "{bad}"],
    "info": ["info", "{bad}"],
    "encode": ["encode", "{bad}", "shapes:test", "-o", "z.npy"],
    "evaluate": ["evaluate", "{bad}", "-k", "1"],
    "decode": ["decode", "{bad}", "--z", "0,0,0", "-o", "d.png"],
}


def _write_at(write, name):
    return lambda src: write(src, Path(name)) if write else None


for command, template in CKPT_COMMANDS.items():
    for what, name, write, needles in BAD_CHECKPOINTS:
        case(
            f"{command}-checkpoint-{what}",
            [a.format(bad=name) for a in template],
            [name, *needles],
            make=_write_at(write, name),
            needs_valid_ckpt=False,
        )
    if command == "info":
        continue
    for what, name, edit, code, needles in OTHER_ARCHITECTURES:
        case(
            f"{command}-checkpoint-{what}",
            [a.format(bad=name) for a in template],
            needles,
            make=lambda src, name=name, edit=edit: _rewrite_metadata(src, name, edit),
            code=code,
            needs_valid_ckpt=False,
        )

# Latent files given to `vae decode` (the model's latent space has 3 dimensions).
BAD_LATENTS = [
    ("npy-wrong-dimension", "z.npy", lambda: _npy("z.npy", np.zeros((4, 2), np.float32)), ["2 dimensions", "has 3"]),
    ("npy-3d-array", "z.npy", lambda: _npy("z.npy", np.zeros((2, 3, 1), np.float32)), ["expected a table"]),
    ("npy-no-rows", "z.npy", lambda: _npy("z.npy", np.zeros((0, 3), np.float32)), ["expected a table", "[0, 3]"]),
    ("npy-nan", "z.npy", lambda: _npy("z.npy", [[0.0, 1.0, 2.0], [0.0, np.nan, 1.0]]), ["NaN", "row 1"]),
    ("npy-inf", "z.npy", lambda: _npy("z.npy", [[0.0, -np.inf, 2.0]]), ["infinite"]),
    ("npy-absurd-values", "z.npy", lambda: _npy("z.npy", [[0.0, 1e30, 2.0]]), ["values up to"]),
    ("npy-complex", "z.npy", lambda: _npy("z.npy", np.ones((2, 3), np.complex64)), ["complex64", "numbers"]),
    ("npy-bool", "z.npy", lambda: _npy("z.npy", np.ones((2, 3), bool)), ["bool", "numbers"]),
    ("npy-strings", "z.npy", lambda: _npy("z.npy", np.array([["a", "b", "c"]])), ["dtype", "numbers"]),
    (
        "npy-pickled-objects",
        "z.npy",
        lambda: np.save("z.npy", np.array([[_Touch(_marker())] * 3], dtype=object), allow_pickle=True),
        ["pickle", "never unpickled"],
    ),
    ("npy-garbage", "z.npy", lambda: Path("z.npy").write_bytes(b"\x93NUMPY garbage"), ["not a readable .npy"]),
    ("npy-empty-file", "z.npy", lambda: Path("z.npy").write_bytes(b""), ["is empty"]),
    (
        "csv-strings",
        "z.csv",
        lambda: Path("z.csv").write_text("z0,z1,z2\n0.1,abc,0.3\n"),
        ["row 2", "not all values are numbers"],
    ),
    ("csv-wrong-dimension", "z.csv", lambda: Path("z.csv").write_text("0.1,0.2\n0.3,0.4\n"), ["2 dimensions", "has 3"]),
    (
        "csv-ragged",
        "z.csv",
        lambda: Path("z.csv").write_text("0.1,0.2,0.3\n0.4,0.5\n"),
        ["different numbers of values"],
    ),
    ("csv-nan", "z.csv", lambda: Path("z.csv").write_text("0.1,nan,0.3\n"), ["NaN"]),
    ("csv-header-only", "z.csv", lambda: Path("z.csv").write_text("index,z0,z1,z2\n"), ["no rows"]),
    ("csv-binary", "z.csv", lambda: Path("z.csv").write_bytes(b"\xff\xfe\x00\x81" * 8), ["not a text CSV"]),
    (
        "safetensors-wrong-dimension",
        "z.safetensors",
        lambda: _latents_safetensors("z.safetensors", mean=torch.zeros(2, 4)),
        ["4 dimensions", "has 3"],
    ),
    (
        "safetensors-bool",
        "z.safetensors",
        lambda: _latents_safetensors("z.safetensors", mean=torch.ones(2, 3, dtype=torch.bool)),
        ["torch.bool", "numbers"],
    ),
    (
        "safetensors-nan",
        "z.safetensors",
        lambda: _latents_safetensors("z.safetensors", mean=torch.tensor([[0.0, float("nan"), 0.0]])),
        ["NaN"],
    ),
    (
        "safetensors-garbage",
        "z.safetensors",
        lambda: Path("z.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{oops"),
        ["not a readable safetensors"],
    ),
    ("a-checkpoint", CKPT, lambda: None, ["is a model checkpoint, not latents"]),
    ("missing", "gone.npy", lambda: None, ["no such file"]),
    ("wrong-suffix", "z.txt", lambda: Path("z.txt").write_text("0,0,0\n"), ["must end in one of", ".npy"]),
]
for what, name, make, needles in BAD_LATENTS:
    case(
        f"decode-latents-{what}",
        ["decode", "{ckpt}", name, "-o", "d.png"],
        [name, *needles],
        make=lambda src, make=make: make(),
    )
case("decode-z-not-numbers", ["decode", "{ckpt}", "--z", "0.1,x,0", "-o", "d.png"], ["--z", "'0.1,x,0'", "numbers"])
case(
    "decode-z-wrong-dimension", ["decode", "{ckpt}", "--z", "0.1,0.2", "-o", "d.png"], ["--z", "2 dimensions", "has 3"]
)
case("decode-z-nan", ["decode", "{ckpt}", "--z", "0,nan,0", "-o", "d.png"], ["--z", "NaN"])


def _truncated_png(path: str, keep: Optional[int] = None) -> None:
    """A PNG cut short: by default the end of its pixel data and IEND cut off."""
    _png(path, np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8))
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: keep if keep is not None else len(data) - 30])


# Images given to `vae encode` and `vae reconstruct` (the model takes 8x8 grey; grey/RGB/alpha,
# palette and CMYK are converted, a size of the same aspect resized): (id, INPUT, make, needles).
BAD_IMAGES = [
    ("16-bit-png", "deep.png", lambda: _png("deep.png", np.full((8, 8), 1000, np.uint16)), ["16-bit"]),
    ("float-tiff", "float.tif", lambda: _png("float.tif", np.full((8, 8), 0.5, np.float32)), ["float"]),
    ("other-aspect-ratio", "wide.png", lambda: _png("wide.png", np.zeros((8, 12), np.uint8)), ["8x12", "aspect"]),
    ("truncated-png", "cut.png", lambda: _truncated_png("cut.png"), ["corrupt"]),
    ("png-header-only", "head.png", lambda: _truncated_png("head.png", keep=40), ["not an image"]),
    ("text-named-png", "notes.png", lambda: Path("notes.png").write_text("not an image at all"), ["not an image"]),
    ("empty-png", "empty.png", lambda: Path("empty.png").write_bytes(b""), ["not an image"]),
    ("missing-png", "gone.png", lambda: None, ["no such file"]),
    ("empty-folder", "imgs", lambda: Path("imgs").mkdir(), ["no readable images"]),
    (
        "folder-of-non-images",
        "imgs",
        lambda: [Path("imgs").mkdir(), Path("imgs/a.txt").write_text("text"), Path("imgs/b.png").write_text("text")],
        ["no readable images", "2 other file(s)", "imgs/a.txt", "not an image"],
    ),
    (
        "folder-of-16-bit-images",
        "imgs",
        lambda: _png("imgs/deep.png", np.full((8, 8), 1000, np.uint16)),
        ["no readable images", "1 other file(s)", "imgs/deep.png", "16-bit"],
    ),
    (
        "folder-with-other-aspect",
        "imgs",
        lambda: [_png("imgs/a.png", np.zeros((8, 8), np.uint8)), _png("imgs/b.png", np.zeros((8, 12), np.uint8))],
        ["b.png", "aspect"],
    ),
]
IMAGE_COMMANDS = {
    "encode": ["encode", "{ckpt}", "{input}", "-o", "z.npy"],
    "reconstruct": ["reconstruct", "{ckpt}", "{input}", "-o", "r.png"],
}
for command, template in IMAGE_COMMANDS.items():
    for what, name, make, needles in BAD_IMAGES:
        case(
            f"{command}-image-{what}",
            [a.replace("{input}", name) for a in template],
            [name, *needles],
            make=lambda src, make=make: make(),
        )

# -n: zero, negative, not a number, absurdly large.
for value, needles in [
    ("0", ["-n must be at least 1", "got 0"]),
    ("-1", ["-n must be at least 1", "got -1"]),
    ("abc", ["'-n'", "valid integer"]),
    (str(10**9), ["-n must be at most 10000"]),
]:
    case(f"sample-n-{value}", ["sample", "{ckpt}", "-n", value], needles)
case("reconstruct-n-absurd", ["reconstruct", "{ckpt}", "-n", str(10**9)], ["-n must be at most 10000"])
case("decode-n-absurd", ["decode", "{ckpt}", "--z", "0,0,0", "-n", str(10**9)], ["-n must be at most 10000"])

# Output folders that do not exist or cannot be written; outputs that must not be overwritten.
OUTPUTS = {
    "sample": (["sample", "{ckpt}", "-o"], "s.png"),
    "encode": (["encode", "{ckpt}", "shapes:test", "-o"], "z.npy"),
    "decode": (["decode", "{ckpt}", "--z", "0,0,0", "-o"], "d.png"),
    "reconstruct": (["reconstruct", "{ckpt}", "-o"], "r.png"),
    "train": (["train", *TINY_CLI, "--epochs", "1", "-o"], "m.safetensors"),
}
for command, (template, name) in OUTPUTS.items():
    case(
        f"{command}-out-folder-missing",
        [*template, f"nope/{name}"],
        [f"nope/{name}", "folder nope does not exist"],
        needs_valid_ckpt=command != "train",
    )
    case(
        f"{command}-out-folder-read-only",
        [*template, f"ro/{name}"],
        [f"ro/{name}", "not writable"],
        make=lambda src: Path("ro").mkdir(),
        read_only=["ro"],
        needs_valid_ckpt=command != "train",
    )
case(
    "sample-out-is-a-folder",
    ["sample", "{ckpt}", "-o", "grid.png"],
    ["grid.png", "is a folder"],
    make=lambda src: Path("grid.png").mkdir(),
)
case(
    "train-out-existing-checkpoint",
    ["train", *TINY_CLI, "--epochs", "1", "-o", CKPT],
    [CKPT, "already exists", "--force"],
)
case(
    "encode-out-existing-file",
    ["encode", "{ckpt}", "shapes:test", "-o", "z.npy"],
    ["z.npy", "already exists", "--force"],
    make=lambda src: Path("z.npy").write_bytes(b"precious"),
)
case(
    "encode-out-is-the-checkpoint",
    ["encode", "{ckpt}", "shapes:test", "-o", CKPT, "--force"],
    [CKPT, "is the checkpoint itself"],
)

# Sizes that would need more memory than the machine has: refused before anything is allocated.
case(
    "train-latent-dim-absurd",
    ["train", *TINY_CLI, "--latent-dim", str(10**8), "-o", "big.safetensors"],
    ["training this model needs about 176 GB of memory", "lower --latent-dim"],
    needs_valid_ckpt=False,
)
case(
    "train-hidden-absurd",
    ["train", *TINY_CLI, "--arch-option", f"hidden={10**8}", "-o", "big.safetensors"],
    ["training this model needs about", "lower --latent-dim or the architecture's sizes"],
    needs_valid_ckpt=False,
)
case(
    "train-batch-size-absurd",
    ["train", *TINY_CLI, "--batch-size", str(10**9), "-o", "big.safetensors"],
    ["training this model needs about", "lower --batch-size"],
    needs_valid_ckpt=False,
)
case(
    "train-max-memory-too-small",
    ["train", *TINY_CLI, "--max-memory", "0.000001", "-o", "big.safetensors"],
    ["training this model needs about", "--max-memory allows 1.07 kB"],
    needs_valid_ckpt=False,
)
case(
    "train-shapes-n-train-absurd",
    ["train", "shapes", "--data-option", f"n_train={10**12}", "-o", "big.safetensors"],
    ["shapes: drawing 1,000,000,002,000 images of 32x32 needs about", "lower n_train or n_test"],
    needs_valid_ckpt=False,
)
case(
    "train-npy-header-claims-more-than-the-file",
    ["train", "tensor:bomb.npy", "--epochs", "1", "-o", "big.safetensors"],
    ["bomb.npy", "declares (100000000000, 28, 28) of uint8", "the file holds 1,000", "truncated or forged"],
    make=lambda src: _npy_header_only("bomb.npy", (10**11, 28, 28), 1000),
    needs_valid_ckpt=False,
)
case(
    "train-npz-member-claims-more-than-it-holds",
    ["train", "tensor:bomb.npz", "--epochs", "1", "-o", "big.safetensors"],
    ["bomb.npz", "images declares (100000000000, 28, 28)", "truncated or forged"],
    make=lambda src: _npz_header_only("bomb.npz", (10**11, 28, 28)),
    needs_valid_ckpt=False,
)
case(
    "train-recipe-nested-too-deep",
    ["train", "--recipe", "deep.toml", "-o", "big.safetensors"],
    ["recipe file deep.toml", "nests"],
    make=lambda src: Path("deep.toml").write_text("[settings]\nx = " + "[" * 5000 + "]" * 5000 + "\n"),
    needs_valid_ckpt=False,
)
case(
    "train-recipe-file-huge",
    ["train", "--recipe", "huge.toml", "-o", "big.safetensors"],
    ["recipe file huge.toml", "at most 1 MB"],
    make=lambda src: Path("huge.toml").write_text("# " + "x" * (2 << 20) + "\n"),
    needs_valid_ckpt=False,
)


# Unknown names: the message lists the known ones.
case(
    "train-unknown-dataset",
    ["train", "nosuch", *TINY_CLI],
    ["unknown dataset 'nosuch'", "mnist", "shapes"],
    needs_valid_ckpt=False,
)
case(
    "train-unknown-architecture",
    ["train", "--arch", "nosuch", *TINY_CLI],
    ["unknown architecture 'nosuch'", "conv", "mlp"],
    needs_valid_ckpt=False,
)
case(
    "train-unknown-likelihood",
    ["train", "--likelihood", "zipf", *TINY_CLI],
    ["unknown likelihood 'zipf'", "bernoulli", "gaussian"],
    needs_valid_ckpt=False,
)
case(
    "train-unknown-model-kind",
    ["train", "--model", "gan", *TINY_CLI],
    ["unknown model 'gan'", "vae", "cvae"],
    needs_valid_ckpt=False,
)
case(
    "encode-unknown-dataset", ["encode", "{ckpt}", "nosuch:test", "-o", "z.npy"], ["unknown dataset 'nosuch'", "mnist"]
)

# A dataset missing offline: a failure at run time (DataUnavailableError, exit 1), nothing created in
# the data folder.
case(
    "train-mnist-missing-offline",
    ["train", "mnist", "--no-download", "--data-dir", "data", "--epochs", "1", "--device", "cpu"],
    ["MNIST files not found", "data", "--no-download"],
    make=lambda src: Path("data").mkdir(),
    code=1,
    needs_valid_ckpt=False,
)
case(
    "evaluate-mnist-missing-offline",
    ["evaluate", "{ckpt}", "mnist:test", "--no-download", "--data-dir", "data"],
    ["MNIST files not found", "data", "--no-download"],
    make=lambda src: Path("data").mkdir(),
    code=1,
)


# -- the matrix --------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict:
    """Every file and folder under ``root``: kind, size, mtime and a hash of a file's bytes."""
    state = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        name = path.relative_to(root).as_posix()
        if path.is_dir():
            state[name + "/"] = ("folder", st.st_mtime_ns)
        else:
            state[name] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


PEAK_MB = 500  # what refusing one bad input may add to the process's peak resident memory


@pytest.mark.parametrize("c", CASES)
def test_bad_input_is_refused_with_one_line_and_nothing_written(vae, tiny_ckpt, tmp_path, c):
    if c.needs_valid_ckpt:
        shutil.copy(tiny_ckpt, CKPT)
    c.make(Path(tiny_ckpt))
    try:
        for folder in c.read_only:
            os.chmod(folder, 0o500)
            if os.access(folder, os.W_OK):
                pytest.skip("a folder with mode 0500 is still writable here (running as root)")
        before, peak = _snapshot(tmp_path), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = vae(*[a.replace("{ckpt}", CKPT) for a in c.args])
        one_line_error(result, c.code, *c.needles)
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024  # KiB to MiB
        assert grew < PEAK_MB, f"the peak resident memory grew by {grew:.0f} MB"
        assert _snapshot(tmp_path) == before
        assert not (tmp_path / MARKER).exists()
    finally:
        for folder in c.read_only:
            os.chmod(folder, 0o700)
