"""Fuzzing the readers test_fuzz.py does not reach: the image reader, the ``tensor:`` array
readers (``.npy``, ``.npz``, ``.safetensors`` through the data cache), the INPUT parser and the
``KEY=VALUE`` option parsers of every registered part. As there, only vae's own errors may
escape, with one-line messages, in bounded time and memory (``_outcome``), derandomized so that
CI sees the same examples every run."""

from __future__ import annotations

import io
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image
from test_fuzz import _npy_header, _outcome, fuzz

from vaecli import images, inputs
from vaecli import options as opts
from vaecli.builtin.arrays import TensorOptions, load_tensor
from vaecli.errors import UsageError, VaeError
from vaecli.hookspecs import DataRequest
from vaecli.plugins import registry

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::UserWarning"),  # PIL's warnings on odd files
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-readers")


def _mutate(draw, data: bytes) -> bytes:
    """``data`` with a few bytes overwritten, cut short or with bytes inserted (``draw``: a
    strategy's draw function, or hypothesis's ``st.data()`` object)."""
    draw = getattr(draw, "draw", draw)
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "cut", "insert"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def _png(mode: str = "RGB", size: tuple = (5, 4)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128).save(buffer, "PNG")
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (its CRC made right) over a tiny body."""
    import zlib

    data = bytearray(_png())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


# -- the image reader ---------------------------------------------------------------------------

VALID_IMAGES = [_png(mode) for mode in ("L", "RGB", "RGBA", "P", "1", "I;16")]


@fuzz(150)
@given(draw=st.data())
@example(draw=None)
def test_image_reader(scratch, draw):
    if draw is None:
        data = _png_claiming(60000, 60000)  # a decompression bomb by its header
    elif draw.draw(st.booleans()):
        data = draw.draw(st.binary(max_size=512))
    else:
        data = _mutate(draw, draw.draw(st.sampled_from(VALID_IMAGES)))
    path = scratch / "image.png"
    path.write_bytes(data)
    result = _outcome(lambda: images.read_image(path))
    if isinstance(result, VaeError):
        assert isinstance(result, UsageError) and str(path) in str(result)
        return
    assert result.dtype == torch.uint8 and result.dim() == 4 and result.shape[0] == 1
    assert result.shape[1] in (1, 2, 3, 4) and result.numel() <= Image.MAX_IMAGE_PIXELS * 4


# -- tensor: arrays ---------------------------------------------------------------------------


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npy_with_header(shape, descr: str, body: int) -> bytes:
    return _npy_header(shape, descr) + bytes(body)


def _npz(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


GOOD_IMAGES = _npy_bytes((np.arange(6 * 8 * 8) % 256).astype(np.uint8).reshape(6, 8, 8))
GOOD_LABELS = _npy_bytes(np.array([0, 1, 2, 0, 1, 2]))
SIZES = st.one_of(st.integers(0, 9), st.sampled_from([2**31, 2**40, 10**11, -1]))


@st.composite
def array_files(draw) -> tuple[str, bytes]:
    """(suffix, bytes): a .npy with an arbitrary header (shape, dtype) over a short body; an .npz
    of such members (images and labels, or a train/test pair); or a valid file mutated."""
    kind = draw(st.sampled_from(["header", "npz", "mutated-npy", "mutated-npz", "bytes"]))
    shape = tuple(draw(st.lists(SIZES, max_size=5)))
    descr = draw(st.sampled_from(["|u1", "<f4", "<f8", "|b1", "<i8", "<u2", "<c8", "|O", "<U3", "|V4", "zz"]))
    header = _npy_with_header(shape, descr, draw(st.integers(0, 700)))
    if kind == "header":
        return ".npy", header
    if kind == "npz":
        names = draw(st.sampled_from([["images.npy"], ["images.npy", "labels.npy"], ["x_train.npy", "x_test.npy"]]))
        return ".npz", _npz({name: header if i == 0 else GOOD_LABELS for i, name in enumerate(names)})
    if kind == "mutated-npy":
        return ".npy", _mutate(draw, GOOD_IMAGES)
    if kind == "mutated-npz":
        return ".npz", _mutate(draw, _npz({"images.npy": GOOD_IMAGES, "labels.npy": GOOD_LABELS}))
    return draw(st.sampled_from([".npy", ".npz", ".safetensors"])), draw(st.binary(max_size=300))


@fuzz(200)
@given(file=array_files())
@example(file=(".npy", _npy_with_header((10**11, 28, 28), "|u1", 1000)))
@example(file=(".npz", _npz({"images.npy": _npy_with_header((10**11, 28, 28), "|u1", 1000)})))
@example(file=(".npy", _npy_with_header((2**40,), "<i8", 64)))
def test_tensor_arrays(scratch, file):
    suffix, data = file
    folder = Path(tempfile.mkdtemp(dir=scratch))  # its own cache: a cache is keyed by size and time
    try:
        path = folder / f"data{suffix}"
        path.write_bytes(data)
        result = _outcome(lambda: load_tensor(DataRequest(folder / "cache"), TensorOptions(path=str(path))))
        if isinstance(result, VaeError):
            assert isinstance(result, UsageError) and str(path) in str(result), result
            return
        for split in (result.train, result.test):
            assert split.images.dtype == torch.uint8 and split.images.dim() == 4
            assert split.labels is None or split.labels.shape == (len(split.images),)
        assert len(result.train) + len(result.test) <= 64  # no more images than the bytes hold
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- the INPUT parser ---------------------------------------------------------------------------

# INPUT text: dataset names and splits, indices, file-like names; never an absolute path or a
# parent folder (a folder INPUT is walked: the fuzz runs in an empty folder of its own)
PARTS = st.sampled_from(
    ["mnist", "shapes", "folder", "tensor", "test", "train", "nosuch", "x.png", "z.npy", ":", "::", "7", "-1"]
)
INPUT_TEXT = st.one_of(
    st.lists(
        st.one_of(PARTS, st.text(alphabet=st.characters(blacklist_characters="/\\~."), max_size=6)), max_size=5
    ).map("".join),
    st.tuples(PARTS, st.just(":"), PARTS, st.just(":"), st.integers(-(2**70), 2**70).map(str)).map("".join),
)


@fuzz(150)
@given(text=INPUT_TEXT)
@example(text="shapes:test:999999999999999999999")
@example(text="mnist:test")
@example(text="tensor:test")
def test_input_parser(scratch, text, monkeypatch):
    folder = Path(tempfile.mkdtemp(dir=scratch))
    monkeypatch.chdir(folder)
    try:
        if text in ("", ".") or text.startswith(".."):
            return
        data_dir = folder / "data"
        result = _outcome(lambda: inputs.load_input(text, None, data_dir, download=False, limit=16))
        if not isinstance(result, VaeError):
            assert result.images.dtype == torch.uint8 and 0 < len(result.images) <= 16
    finally:
        monkeypatch.chdir(scratch)
        shutil.rmtree(folder, ignore_errors=True)


# -- option parsers -----------------------------------------------------------------------------

KINDS = ("architecture", "likelihood", "model", "dataset")
PART_NAMES = [(kind, name) for kind in KINDS for name in registry().names(kind)]
VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1e999", "nan", "inf", "3", "512,256", "[1,2]", "true", "yes", "", "=", ",", "relu"]),
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=12),
)


@fuzz(300)
@given(
    part=st.sampled_from(PART_NAMES),
    pairs=st.lists(st.one_of(st.tuples(st.text(max_size=10), VALUES).map("=".join), st.text(max_size=12)), max_size=4),
)
def test_option_parsers(part, pairs):
    """``--arch-option``, ``--likelihood-option``, ``--model-option``, ``--data-option``: text
    from the command line parsed into each registered part's options."""
    kind, name = part
    spec = registry().get(kind, name).spec
    fields = opts._field_types(spec.options)
    if fields and pairs:  # a known key now and then, so that values reach the conversions
        pairs = [
            f"{sorted(fields)[len(p) % len(fields)]}={p.partition('=')[2]}" if i % 2 else p for i, p in enumerate(pairs)
        ]
    result = _outcome(lambda: opts.build(spec.options, opts.parse_pairs(pairs, f"--{kind}-option"), f"{kind} '{name}'"))
    if not isinstance(result, VaeError):
        assert isinstance(result, spec.options)
