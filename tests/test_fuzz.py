"""Fuzzing: hypothesis drives the checkpoint loader and the latent-file reader with arbitrary bytes
and mutated valid files; only the documented error kinds (``VaeError`` and its subclasses) may
escape, every call returns within seconds, and none raises the process's peak memory by much
(a size field in the bytes must not make a reader allocate what the file does not hold).

Each hypothesis test writes one file per example into a module-scoped folder, overwriting it
(hypothesis and the function-scoped ``tmp_path`` do not mix), and runs derandomized, so that CI
sees the same examples every time. The plain tests further down repeat the most important single
mutations with readable messages, and pin the escapes the fuzzing found (absurd or negative sizes,
options or providers that are not maps, deeply nested JSON, a malformed epoch count).
"""

from __future__ import annotations

import copy
import io
import json
import math
import pickle
import resource
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from vaecli import checkpoint, factory, latents
from vaecli.errors import CheckpointError, PluginMissingError, UsageError, VaeError
from vaecli.model import VAE

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:Initializing zero-element tensors:UserWarning"),
    pytest.mark.filterwarnings("error::RuntimeWarning"),  # numpy's cast warnings: noise on the CLI's stderr
]

# a tiny file must never take longer (a hang fails, rather than stalls, here). 30 s, not 10: an
# INPUT such as shapes:test:999... draws the built-in shapes dataset first, 3 s in a fresh process
# but 11-13 s after the other fuzz tests on a 2-core machine (measured at 9b68141 too)
CALL_SECONDS = 30.0
CALL_MB = 400  # nor raise the peak resident memory by more than this


def fuzz(examples: int):
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- running a reader -------------------------------------------------------------------------


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _outcome(call):
    """``call()``'s result, or the VaeError it raised (with a one-line message). Any other
    exception propagates: that is the bug hypothesis reports and shrinks."""
    peak, start = _peak_mb(), time.perf_counter()
    try:
        result = call()
    except VaeError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message, f"not a one-line message: {message!r}"
        result = exc
    seconds, grown = time.perf_counter() - start, _peak_mb() - peak
    event(type(result).__name__)  # --hypothesis-show-statistics tallies how far the inputs got
    assert seconds < CALL_SECONDS, f"took {seconds:.1f} s"
    assert grown < CALL_MB, f"raised the peak memory by {grown:.0f} MB"
    return result


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _exercise_checkpoint(path: Path, data: bytes) -> None:
    """read, load (and describe) the bytes as a checkpoint; what loads must be a sane model."""
    path.write_bytes(data)
    ckpt = _outcome(lambda: checkpoint.read(path))
    model = _outcome(lambda: factory.load(path))
    if isinstance(ckpt, VaeError):
        assert isinstance(ckpt, CheckpointError), ckpt  # read's only kind of refusal
        assert isinstance(model, VaeError), "load accepted what read refused"
        return
    for key in ("model", "data", "training"):
        assert isinstance(ckpt.meta[key], dict)
    info = _outcome(lambda: checkpoint.describe(path))
    assert not isinstance(info, VaeError), info
    assert info["parameters"] == sum(t.numel() for t in ckpt.section("model.").values())
    if isinstance(model, VaeError):
        return
    assert isinstance(model, VAE) and not model.training
    section = model.meta["model"]
    assert isinstance(section, dict)
    assert model.latent_dim == int(section["latent_dim"])
    assert model.input_shape == tuple(int(s) for s in section["input_shape"])
    x = model.decode(torch.zeros(2, model.latent_dim))
    assert x.shape == (2, *model.input_shape) and torch.isfinite(x).all()


def _exercise_latents(path: Path, data: bytes) -> None:
    """read the bytes as a latent file; what reads must be a table ``check`` handles."""
    path.write_bytes(data)
    result = _outcome(lambda: latents.read(path))
    if isinstance(result, VaeError):
        assert isinstance(result, UsageError) and str(path) in str(result), result
        return
    z, labels = result
    assert z.dtype == torch.float64 and z.dim() == 2 and z.shape[0] > 0 and z.shape[1] > 0
    assert labels is None or (labels.dim() == 1 and labels.shape[0] == z.shape[0])
    checked = _outcome(lambda: latents.check(z, z.shape[1], "LATENTS"))
    if not isinstance(checked, VaeError):
        assert checked.dtype == torch.float32 and torch.isfinite(checked).all()


# -- the valid files that get mutated -----------------------------------------------------------


@pytest.fixture(scope="module")
def samples(tiny_ckpt, tmp_path_factory) -> dict[str, bytes]:
    """The bytes of a real checkpoint (``"ckpt"``) and of latent files as ``vae encode`` writes
    them (``".npy"``, ``".csv"``, ``".safetensors"``)."""
    folder = tmp_path_factory.mktemp("latents")
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    out = {"ckpt": Path(tiny_ckpt).read_bytes()}
    for suffix in latents.SUFFIXES:
        path = folder / f"z{suffix}"
        latents.write(
            path,
            mean,
            logvar,
            labels,
            ["square", "ellipse", "heart"],
            {"checkpoint": str(tiny_ckpt), "input": "shapes"},
        )
        out[suffix] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _split(data: bytes) -> tuple[dict, bytes]:
    """A safetensors file's bytes -> (its JSON header, the bytes after it)."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _frame(header, body: bytes = b"") -> bytes:
    """A JSON header (anything json.dumps takes, NaN and infinities included) with its correct
    8-byte length, then ``body``."""
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def _resign(raw: dict) -> dict:
    """Recompute the metadata hash (where the file has one) after an edit: an intact file that
    says something else, as a hand edit or a buggy writer would make."""
    if "meta_sha256" in raw and all(isinstance(v, str) for v in raw.values()):
        raw["meta_sha256"] = checkpoint.meta_hash(raw)
    return raw


def _with_metadata(data: bytes, edit, resign: bool = True) -> bytes:
    """The safetensors bytes with ``edit(raw_metadata)`` applied (tensors untouched)."""
    header, body = _split(data)
    raw = dict(header.get("__metadata__") or {})
    edit(raw)
    header["__metadata__"] = _resign(raw) if resign else raw
    return _frame(header, body)


def _with_model(data: bytes, edit) -> bytes:
    """The checkpoint bytes with ``edit(model_section)`` applied, hashes recomputed."""

    def on_raw(raw):
        section = json.loads(raw["model"])
        edit(section)
        raw["model"] = json.dumps(section)

    return _with_metadata(data, on_raw)


# -- strategies -----------------------------------------------------------------------------------

ABSURD_INTS = [2**31, 2**32, 2**53, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**12, 10**30, -1, -(2**63)]
ABSURD = st.sampled_from(ABSURD_INTS)
JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    ABSURD,
    st.floats(),  # NaN and infinities included; json.dumps writes them
    st.text(max_size=12),
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10,
)
SIZES = st.one_of(st.integers(-3, 70), ABSURD, st.floats(), st.sampled_from(["3", "1e3", "inf", "nan", "", "x"]))
PICKLE = pickle.dumps({"state_dict": [0.0, 1.0]}, protocol=4)
ZIP = b"PK\x03\x04" + b"\x00" * 60


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("archive/data.pkl", PICKLE)
    return buffer.getvalue()


def _header_end(data: bytes) -> int:
    n = int.from_bytes(data[:8], "little")
    return 8 + n if 8 + n <= len(data) else len(data)


@st.composite
def byte_mutations(draw, data: bytes, kind: str) -> bytes:
    """1 to 3 of: flip bits at an offset (biased to the header), truncate, insert or delete a run of
    bytes, overwrite a run, and set the header length field (safetensors: 8 bytes, .npy: 2)."""
    out = bytearray(data)
    head = _header_end(data) if kind == ".safetensors" else min(len(data), 128)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite", "length"]))
        n = len(out)
        offset = draw(st.one_of(st.integers(0, max(0, min(head, n) - 1)), st.integers(0, max(0, n - 1))))
        if op == "flip" and n:
            out[offset] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del out[draw(st.integers(0, n)) :]
        elif op == "insert":
            out[offset:offset] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del out[offset : offset + draw(st.integers(1, 64))]
        elif op == "overwrite":
            run = draw(st.binary(min_size=1, max_size=16))
            out[offset : offset + len(run)] = run
        elif op == "length" and kind == ".safetensors":
            length = draw(
                st.one_of(
                    st.sampled_from([0, 1, 2, 7, 8, n - 9, n - 8, n - 7, n, head - 9, head - 7]),
                    ABSURD,
                    st.integers(0, 2**64 - 1),
                )
            )
            out[:8] = struct.pack("<Q", length % 2**64)
        elif op == "length" and kind == ".npy" and n >= 10:
            out[8:10] = struct.pack("<H", draw(st.one_of(st.sampled_from([0, 1, 0xFFFF]), st.integers(0, 0xFFFF))))
    return bytes(out)


ST_DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
DTYPES = st.one_of(st.sampled_from(sorted(ST_DTYPE_BITS)), st.text(max_size=8), JSON)


@st.composite
def header_mutations(draw, data: bytes) -> bytes:
    """A safetensors file with its JSON header changed, re-encoded with a correct length: a
    tensor's dtype, shape or data_offsets, a tensor dropped or added, a metadata value changed
    (hash recomputed or not), or the whole header replaced by arbitrary JSON."""
    header, body = _split(data)
    for _ in range(draw(st.integers(1, 3))):
        names = sorted(k for k in header if k != "__metadata__") if isinstance(header, dict) else []
        op = draw(st.sampled_from(["dtype", "shape", "offsets", "drop", "add", "metadata", "whole", "body"]))
        if op in ("dtype", "shape", "offsets", "drop") and names:
            name = draw(st.sampled_from(names))
            entry = header[name]
            if op == "drop":
                del header[name]
            elif not isinstance(entry, dict):
                continue
            elif op == "dtype":
                entry["dtype"] = draw(DTYPES)
            elif op == "shape":
                entry["shape"] = draw(st.one_of(st.lists(SIZES, max_size=4), JSON))
            else:
                entry["data_offsets"] = draw(
                    st.one_of(st.lists(st.one_of(st.integers(0, len(body) + 8), ABSURD), max_size=3), JSON)
                )
        elif op == "add" and isinstance(header, dict):
            header[draw(st.sampled_from(["mean", "labels", "x", "model.encoder.head.bias"]))] = draw(
                st.one_of(
                    st.fixed_dictionaries(
                        {
                            "dtype": DTYPES,
                            "shape": st.lists(SIZES, max_size=3),
                            "data_offsets": st.lists(st.integers(0, len(body)), min_size=2, max_size=2),
                        }
                    ),
                    JSON,
                )
            )
        elif op == "metadata" and isinstance(header, dict):
            raw = header.get("__metadata__")
            raw = dict(raw) if isinstance(raw, dict) else {}
            key = draw(
                st.one_of(
                    st.sampled_from(sorted(raw) + ["format", "format_version", "epoch", "nope"]), st.text(max_size=6)
                )
            )
            value = draw(st.one_of(st.text(max_size=20), JSON.map(json.dumps), JSON, st.just(None)))
            if value is None:
                raw.pop(key, None)
            else:
                raw[key] = value
            header["__metadata__"] = _resign(raw) if draw(st.booleans()) else raw
        elif op == "whole":
            header = draw(JSON)
        elif op == "body":
            body = body[: draw(st.integers(0, len(body)))] + draw(st.binary(max_size=16))
    return _frame(header, body)


MODEL_FIELDS = [
    ("kind",),
    ("latent_dim",),
    ("input_shape",),
    ("input_shape", 1),
    ("num_classes",),
    ("nope",),
    ("architecture",),
    ("architecture", "name"),
    ("architecture", "options"),
    ("architecture", "options", "hidden"),
    ("architecture", "options", "activation"),
    ("architecture", "options", "channels"),
    ("architecture", "options", "nope"),
    ("architecture", "provider"),
    ("architecture", "provider", "distribution"),
    ("architecture", "provider", "version"),
    ("likelihood",),
    ("likelihood", "name"),
    ("likelihood", "options"),
    ("likelihood", "options", "sigma"),
    ("likelihood", "options", "learn_sigma"),
    ("likelihood", "options", "min_log_scale"),
    ("likelihood", "provider"),
]
NAMES = st.sampled_from(
    [
        "vae",
        "ae",
        "cvae",
        "mlp",
        "conv",
        "nope",
        "bernoulli",
        "gaussian",
        "logistic",
        "continuous-bernoulli",
        "tanh",
        "gelu",
        "shared",
        "pixel",
        "vaecli",
        "vaecli-nope",
        "",
    ]
)
DELETE = object()


@st.composite
def model_sections(draw, section: dict) -> dict:
    """The ``model`` metadata section with 1 to 4 fields set (or deleted): names known and unknown,
    sizes small, negative, absurd, non-finite and non-numeric, arbitrary JSON."""
    section = copy.deepcopy(section)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(MODEL_FIELDS))
        value = draw(st.one_of(st.just(DELETE), SIZES, st.lists(SIZES, max_size=4), NAMES, JSON))
        parent = section
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        last = path[-1]
        if isinstance(parent, dict) and value is DELETE:
            parent.pop(last, None)
        elif (
            isinstance(parent, dict)
            or isinstance(parent, list)
            and isinstance(last, int)
            and last < len(parent)
            and value is not DELETE
        ):
            parent[last] = value
    return section


def _numbers(value):
    """Every number an int() in from_config or options.build could make of ``value``."""
    if isinstance(value, (bool, int, float)):
        yield float(value)
    elif isinstance(value, str):
        for part in value.replace(" ", "").split(","):
            try:
                yield float(part)
            except ValueError:
                pass
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)


def _rarely(draw) -> bool:
    """True in about one draw of five: the odd input among mostly well-formed ones."""
    return draw(st.sampled_from([False, False, False, False, True]))  # hypothesis favours the first


NPY_DESCRS = ["<f4", "<f8", ">f8", "<f2", "|u1", "<u8", "<i8", "|i1"]
NPY_ODD_DESCRS = ["|b1", "<c8", "<U3", "|S2", "|O", "|V8", "<M8[s]", "f8", "float64", "<f16", "|V0"]


@st.composite
def npy_files(draw) -> bytes:
    """A .npy file: magic, a version and header, and a body of the declared size, each of them
    now and then odd (other versions, dtypes, absurd or negative shapes, other keys, arbitrary
    text, a body of another size)."""
    descr = (
        draw(st.sampled_from(NPY_DESCRS))
        if not _rarely(draw)
        else draw(st.one_of(st.sampled_from(NPY_ODD_DESCRS), st.just([("a", "<f4")]), st.text(max_size=6)))
    )
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=2)))
    if _rarely(draw):
        shape = tuple(draw(st.lists(st.one_of(st.integers(0, 5), ABSURD), max_size=3)))
    fortran = draw(st.booleans()) if not _rarely(draw) else draw(st.sampled_from([0, None, "no"]))
    header = repr({"descr": descr, "fortran_order": fortran, "shape": shape})
    if _rarely(draw):
        header = draw(
            st.one_of(
                st.just(header.replace("'shape'", "'shap'")),
                st.just(header[:-1]),
                st.just(header + repr(shape)),
                st.text(max_size=60),
            )
        )
    version = (
        (1, 0)
        if not _rarely(draw)
        else draw(st.one_of(st.sampled_from([(2, 0), (3, 0)]), st.tuples(st.integers(0, 255), st.integers(0, 255))))
    )
    try:
        exact = math.prod(shape) * np.dtype(descr).itemsize
    except Exception:
        exact = -1
    size = exact if 0 <= exact <= 4096 and not _rarely(draw) else draw(st.integers(0, 64))
    body = draw(st.randoms(use_true_random=False)).randbytes(size)
    length_format = "<H" if version[0] == 1 else "<I"
    text = header.encode("latin-1", "replace")
    text += b" " * (-(8 + struct.calcsize(length_format) + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(length_format, len(text)) + text + body


@st.composite
def latent_safetensors(draw) -> bytes:
    """A safetensors file of 0 to 3 tensors (names mean, logvar, labels and others; every dtype
    the format knows, torch or not), consistent sizes or not, and any metadata."""
    header, body = {}, b""
    rng = draw(st.randoms(use_true_random=False))
    names = st.one_of(st.sampled_from(["mean", "logvar", "labels", "z"]), st.text(max_size=4))
    chosen = draw(st.lists(names, max_size=3, unique=True))
    if "mean" not in chosen and not _rarely(draw):
        chosen.insert(0, "mean")
    for name in chosen:
        dtype = (
            draw(st.sampled_from(["F32", "F64", "I64"]))
            if not _rarely(draw)
            else draw(st.sampled_from(sorted(ST_DTYPE_BITS)))
        )
        rows = st.integers(1, 4)
        shape = draw(
            st.lists(st.integers(0, 4), max_size=3)
            if _rarely(draw)
            else st.one_of(st.tuples(rows, rows), st.tuples(rows)).map(list)
        )
        size = -(-math.prod(shape) * ST_DTYPE_BITS[dtype] // 8)
        if _rarely(draw):  # a shape that does not fit the data
            shape = draw(st.lists(st.one_of(st.integers(0, 4), ABSURD), max_size=3))
        start = len(body)
        body += rng.randbytes(size)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [start, len(body)]}
    metadata = draw(
        st.one_of(
            st.none(),
            st.dictionaries(
                st.one_of(st.sampled_from(["format", "checkpoint", "class_names"]), st.text(max_size=5)),
                st.one_of(st.sampled_from(["vaecli-latents", "vaecli", "[]", "null"]), st.text(max_size=8)),
                max_size=3,
            ),
        )
    )
    if metadata is not None:
        header["__metadata__"] = metadata
    return _frame(header, body)


NUMBERS = st.one_of(st.floats().map(repr), st.integers().map(str), st.floats(-5, 5).map(str))
CELLS = st.one_of(
    st.sampled_from(
        [
            "0",
            "1.5",
            "-2",
            " 3 ",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "1e999",
            "-1e999",
            "1e-999",
            "1e308",
            "9" * 400,
            "",
            " ",
            "z0",
            "z1",
            "z10",
            "index",
            "label",
            "class",
            "0x10",
            "1_000",
            "\u0661\u0662",
            "\u00bd",
            "\u221e",
            '"1,2"',
            '"',
            "\x00",
        ]
    ),
    st.text(max_size=8),
)


@st.composite
def csv_files(draw) -> bytes:
    """A table of numbers, with or without a header (z columns or others), now and then odd cells
    ("nan", "1e999", unicode digits, quotes, NUL, arbitrary text), ragged rows, empty lines,
    another separator, newline or encoding; or arbitrary text."""
    columns = draw(st.integers(1, 4))
    cell = st.one_of(NUMBERS, NUMBERS, NUMBERS, CELLS)
    row = st.lists(cell, min_size=columns, max_size=columns) if not _rarely(draw) else st.lists(cell, max_size=5)
    rows = draw(st.lists(row, min_size=0 if _rarely(draw) else 1, max_size=6))
    head = draw(st.sampled_from(["none", "z", "encode", "other"]))
    if head == "z":
        rows.insert(0, [f"z{i}" for i in range(columns)])
    elif head == "encode":
        rows = [["index", "label", "class", *(f"z{i}" for i in range(columns))]] + [
            [str(i), "0", "square", *r] for i, r in enumerate(rows)
        ]
    elif head == "other":
        rows.insert(0, draw(st.lists(CELLS, min_size=1, max_size=5)))
    sep, newline = ",", "\n"
    if _rarely(draw):
        sep, newline = draw(st.sampled_from([";", "\t", ", "])), draw(st.sampled_from(["\r\n", "\r", "\n\n"]))
    text = newline.join(sep.join(r) for r in rows)
    if _rarely(draw):
        text = draw(st.text(max_size=80))
    encoding = "utf-8" if not _rarely(draw) else draw(st.sampled_from(["utf-8-sig", "latin-1", "utf-16"]))
    return text.encode(encoding, "replace")


# -- the checkpoint loader ------------------------------------------------------------------------

HUGE_HEADER = struct.pack("<Q", 2**64 - 1) + b"{}"
ZERO_HEADER = struct.pack("<Q", 0) + b"{}"
PAST_END = struct.pack("<Q", 3) + b"{}"


@fuzz(250)
@given(
    data=st.one_of(
        st.binary(max_size=1024), st.binary(max_size=256).map(lambda b: struct.pack("<Q", len(b)) + b), JSON.map(_frame)
    )
)
@example(data=b"")
@example(data=HUGE_HEADER)
@example(data=ZERO_HEADER)
@example(data=PAST_END)
@example(data=PICKLE)
@example(data=ZIP)
@example(data=_zip_bytes())
@example(data=_frame({"__metadata__": {"format": "vaecli"}}))
@example(
    data=_frame(
        {
            "__metadata__": {
                "format": "vaecli",
                "format_version": "1",
                "model": "{}",
                "data": "{}",
                "training": "{}",
                "tensor_sha256": checkpoint.tensor_hash({}),
            }
        }
    )
)
def test_checkpoint_arbitrary_bytes(scratch, data):
    _exercise_checkpoint(scratch / "bytes.safetensors", data)


@fuzz(300)
@given(draw=st.data())
def test_checkpoint_byte_mutations(samples, scratch, draw):
    _exercise_checkpoint(scratch / "mutated.safetensors", draw.draw(byte_mutations(samples["ckpt"], ".safetensors")))


@fuzz(250)
@given(draw=st.data())
def test_checkpoint_header_mutations(samples, scratch, draw):
    _exercise_checkpoint(scratch / "header.safetensors", draw.draw(header_mutations(samples["ckpt"])))


@fuzz(400)
@given(draw=st.data())
def test_checkpoint_model_metadata(samples, scratch, draw):
    """Intact files (hashes recomputed) whose model metadata names other parts and sizes: load
    builds the model it describes, so it must refuse what it cannot build, or build a sane one."""
    section = json.loads(_split(samples["ckpt"])[0]["__metadata__"]["model"])
    mutated = draw.draw(st.one_of(model_sections(section), JSON))
    data = _with_metadata(samples["ckpt"], lambda raw: raw.update(model=json.dumps(mutated)))
    _exercise_checkpoint(scratch / "model.safetensors", data)


# -- the latent-file reader ---------------------------------------------------------------------


@pytest.mark.parametrize("suffix", latents.SUFFIXES)
@fuzz(120)
@given(data=st.binary(max_size=512))
@example(data=b"")
@example(data=PICKLE)
@example(data=ZIP)
@example(data=_zip_bytes())
@example(data=HUGE_HEADER)
@example(data=ZERO_HEADER)
@example(data=PAST_END)
@example(data=b"\x93NUMPY\x01\x00\xff\xff{}")
def test_latents_arbitrary_bytes(scratch, suffix, data):
    _exercise_latents(scratch / f"bytes{suffix}", data)


@pytest.mark.parametrize("suffix", latents.SUFFIXES)
@fuzz(150)
@given(draw=st.data())
def test_latents_byte_mutations(samples, scratch, suffix, draw):
    _exercise_latents(scratch / f"mutated{suffix}", draw.draw(byte_mutations(samples[suffix], suffix)))


@fuzz(150)
@given(draw=st.data())
def test_latents_safetensors_header_mutations(samples, scratch, draw):
    _exercise_latents(scratch / "header.safetensors", draw.draw(header_mutations(samples[".safetensors"])))


@fuzz(250)
@given(data=latent_safetensors())
def test_latents_safetensors_built(scratch, data):
    _exercise_latents(scratch / "built.safetensors", data)


@fuzz(250)
@given(data=npy_files())
def test_latents_npy_headers(scratch, data):
    _exercise_latents(scratch / "built.npy", data)


@fuzz(250)
@given(data=csv_files())
@example(data=b"z0,z1\n1e999,nan\n")
@example(data=b"\n\n,\n")
@example(data="z0\n\u00e9\n".encode("latin-1"))
def test_latents_csv_text(scratch, data):
    _exercise_latents(scratch / "text.csv", data)


# -- the most important single mutations, with readable failures ------------------------------


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def _set_length(data: bytes, length: int) -> bytes:
    return struct.pack("<Q", length) + data[8:]


CHECKPOINT_CASES = {
    "empty": (lambda d: b"", CheckpointError, "is empty"),
    "a pickle": (lambda d: PICKLE, CheckpointError, "pickle"),
    "a zip (.pt)": (lambda d: _zip_bytes(), CheckpointError, "pickle"),
    "header length 2**64-1": (lambda d: _set_length(d, 2**64 - 1), CheckpointError, "not a readable safetensors"),
    "header length 0": (lambda d: _set_length(d, 0), CheckpointError, "not a readable safetensors"),
    "header length past the end": (lambda d: _set_length(d, len(d)), CheckpointError, "not a readable safetensors"),
    "truncated to half": (lambda d: d[: len(d) // 2], CheckpointError, "truncated or corrupt"),
    "a flipped bit in the weights": (lambda d: _flip(d, _header_end(d) + 100), CheckpointError, "damaged"),
    "no vaecli format": (
        lambda d: _with_metadata(d, lambda raw: raw.pop("format")),
        CheckpointError,
        "not a vaecli checkpoint",
    ),
    "a newer format": (
        lambda d: _with_metadata(d, lambda raw: raw.update(format_version="99")),
        CheckpointError,
        "newer vaecli",
    ),
    "model metadata not JSON": (
        lambda d: _with_metadata(d, lambda raw: raw.update(model="{")),
        CheckpointError,
        "malformed metadata under 'model'",
    ),
    "model metadata a list": (
        lambda d: _with_metadata(d, lambda raw: raw.update(model="[]")),
        CheckpointError,
        "no 'model' metadata",
    ),
    "an unknown architecture": (
        lambda d: _with_model(d, lambda m: m["architecture"].update(name="nope")),
        UsageError,
        "unknown architecture 'nope'",
    ),
    "a plugin's architecture": (
        lambda d: _with_model(
            d,
            lambda m: m["architecture"].update(name="nope", provider={"distribution": "vaecli-nope", "version": "1.0"}),
        ),
        PluginMissingError,
        "pip install vaecli-nope==1.0",
    ),
    "a latent_dim that does not fit": (
        lambda d: _with_model(d, lambda m: m.update(latent_dim=5)),
        CheckpointError,
        "do not fit",
    ),
    "latent_dim not a number": (
        lambda d: _with_model(d, lambda m: m.update(latent_dim="abc")),
        CheckpointError,
        "malformed metadata: model.latent_dim must be a whole number, not text",
    ),
    "latent_dim 2**63": (
        lambda d: _with_model(d, lambda m: m.update(latent_dim=2**63)),
        CheckpointError,
        "malformed model metadata",
    ),
    "an unknown kind": (
        lambda d: _with_model(d, lambda m: m.update(kind="nope")),
        UsageError,
        "unknown model 'nope'; known models: aae, ae, ",
    ),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_checkpoint_single_mutation(samples, tmp_path, case):
    mutate, kind, message = CHECKPOINT_CASES[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(mutate(samples["ckpt"]))
    with pytest.raises(kind, match=message):
        factory.load(path)


def test_checkpoint_with_another_activation_still_loads(samples, tmp_path):
    """An intact file whose metadata names other (parameter-free) choices is a sane model."""
    path = tmp_path / "tanh.safetensors"
    path.write_bytes(_with_model(samples["ckpt"], lambda m: m["architecture"]["options"].update(activation="tanh")))
    model = factory.load(path)
    assert model.meta["model"]["architecture"]["options"]["activation"] == "tanh"
    assert model.decode(torch.zeros(1, 3)).shape == (1, 1, 8, 8)


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, z=np.zeros((2, 3)))
    return buffer.getvalue()


def _npy_header(shape, descr="<f8") -> bytes:
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def _raw_safetensors(dtype: str, shape, data: bytes, name: str = "mean") -> bytes:
    return _frame({name: {"dtype": dtype, "shape": shape, "data_offsets": [0, len(data)]}}, data)


LATENT_CASES = {
    "npy empty": (".npy", lambda s: b"", "is empty"),
    "npy garbage": (".npy", lambda s: b"hello, world", "not a .npy file"),
    "npy a pickle": (".npy", lambda s: PICKLE, "pickle"),
    "npy a broken zip": (".npy", lambda s: ZIP, "not a .npy file"),
    "npy a zip holding a pickle (.pt)": (".npy", lambda s: _zip_bytes(), "not a .npy file"),
    "npy an .npz": (".npy", lambda s: _npz(), "not a .npy file"),
    "npy of Python objects": (".npy", lambda s: _npy(np.array([{"a": 1}], dtype=object)), "pickle"),
    "npy truncated data": (".npy", lambda s: s[".npy"][:-5], "truncated"),
    "npy declares 10**12 rows": (".npy", lambda s: _npy_header((10**12, 3)), "truncated"),
    "npy declares 10**20 rows": (".npy", lambda s: _npy_header((10**20, 3)), "truncated"),
    "npy declares a negative shape": (".npy", lambda s: _npy_header((-1, -(2**62))) + b"\x00" * 8, "shape"),
    "npy of strings": (".npy", lambda s: _npy(np.array([["a"]])), "latents must be numbers"),
    "csv not UTF-8": (".csv", lambda s: "z0\n\u00e9\n".encode("latin-1"), "not a text CSV"),
    "csv a word among numbers": (".csv", lambda s: b"1,2\n3,x\n", "row 2: not all values are numbers"),
    "csv ragged rows": (".csv", lambda s: b"1,2\n3\n", "different numbers of values"),
    "csv only a header": (".csv", lambda s: b"index,z0,z1\n", "a header but no rows"),
    "safetensors header length 2**64-1": (
        ".safetensors",
        lambda s: _set_length(s[".safetensors"], 2**64 - 1),
        "not a readable safetensors",
    ),
    "safetensors header length 0": (
        ".safetensors",
        lambda s: _set_length(s[".safetensors"], 0),
        "not a readable safetensors",
    ),
    "safetensors a checkpoint": (".safetensors", lambda s: s["ckpt"], "a model checkpoint, not latents"),
    "safetensors a dtype torch lacks": (
        ".safetensors",
        lambda s: _raw_safetensors("F8_E8M0", [1, 2], b"ab"),
        "F8_E8M0",
    ),
    "safetensors a 4-bit dtype": (".safetensors", lambda s: _raw_safetensors("F4", [1, 4], b"ab"), "F4"),
    "safetensors no float matrix": (
        ".safetensors",
        lambda s: _raw_safetensors("U8", [1, 2], b"ab", "x"),
        "no tensor named 'mean'",
    ),
}


@pytest.mark.parametrize("case", list(LATENT_CASES))
def test_latents_single_mutation(samples, tmp_path, case):
    suffix, make, message = LATENT_CASES[case]
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(make(samples))
    with pytest.raises(UsageError, match=message) as info:
        latents.read(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "cells,message", [("1e999,0", "NaN or infinite"), ("nan,0", "NaN or infinite"), ("1e7,0", "within a few units")]
)
def test_latents_that_read_but_cannot_be_decoded(tmp_path, cells, message):
    path = tmp_path / "z.csv"
    path.write_text(f"z0,z1\n0,0\n{cells}\n")
    z, _ = latents.read(path)
    with pytest.raises(UsageError, match=message):
        latents.check(z, 2, "LATENTS")


def test_npy_beyond_float64_reads_as_infinite_without_a_warning(tmp_path):
    path = tmp_path / "z.npy"
    path.write_bytes(_npy(np.array([[np.longdouble("1e4000"), 1]], dtype=np.longdouble)))
    z, _ = latents.read(path)  # RuntimeWarnings are errors in this module
    with pytest.raises(UsageError, match="NaN or infinite"):
        latents.check(z, 2, "LATENTS")


def test_the_latent_files_as_written_read_back(samples, tmp_path):
    for suffix in latents.SUFFIXES:
        path = tmp_path / f"z{suffix}"
        path.write_bytes(samples[suffix])
        z, labels = latents.read(path)
        assert z.shape == (6, 3)
        assert labels is None or labels.tolist() == [0, 1, 2, 0, 1, 2]


# -- escapes found by the fuzzing, fixed in checkpoint.py, model.py, options.py and plugins.py -------


def _load_model_edit(samples, tmp_path, edit):
    path = tmp_path / "edited.safetensors"
    path.write_bytes(_with_model(samples["ckpt"], edit))
    with pytest.raises(UsageError):  # CheckpointError, or the usage error for bad sizes and names
        factory.load(path)


def test_load_infinite_size_is_refused(samples, tmp_path):
    _load_model_edit(samples, tmp_path, lambda m: m.update(latent_dim=float("inf")))


def test_load_negative_size_is_refused(samples, tmp_path):
    _load_model_edit(samples, tmp_path, lambda m: m.update(latent_dim=-1))


def test_load_absurd_size_is_refused(samples, tmp_path):
    _load_model_edit(samples, tmp_path, lambda m: m.update(latent_dim=10**12))


def test_load_absurd_option_size_is_refused(samples, tmp_path):
    _load_model_edit(samples, tmp_path, lambda m: m["architecture"]["options"].update(hidden=[10**12]))


def test_load_provider_not_a_map_is_refused(samples, tmp_path):
    _load_model_edit(samples, tmp_path, lambda m: m["architecture"].update(name="nope", provider="x"))


def test_load_options_not_a_map_is_refused(samples, tmp_path):
    _load_model_edit(samples, tmp_path, lambda m: m["architecture"].update(options=[]))


def test_read_deeply_nested_metadata_is_refused(samples, tmp_path):
    path = tmp_path / "deep.safetensors"
    path.write_bytes(_with_metadata(samples["ckpt"], lambda raw: raw.update(data="[" * 100000 + "]" * 100000)))
    with pytest.raises(CheckpointError):
        checkpoint.read(path)


def test_describe_garbage_epoch_is_refused(samples, tmp_path):
    path = tmp_path / "epoch.safetensors"
    path.write_bytes(_with_metadata(samples["ckpt"], lambda raw: raw.update(epoch="two")))
    with pytest.raises(CheckpointError):
        checkpoint.describe(path)
