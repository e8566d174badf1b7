"""A memory-mapped uint8 cache of the user's own images (``folder:`` and ``tensor:`` datasets).

A loader converts its source once (decoding, rounding, colour mode, the held-out test split)
into raw ``(N, C, H, W)`` uint8 files, ``train.u8`` and ``test.u8``, with the labels, factors,
class names and notes in ``index.safetensors``, in a folder of its own under ``DATA_DIR/cache``. The
folder's name is a hash of the source's key (each file's path, size and modification time, and
the loader's options), so a changed source builds a new cache and an unchanged one is used
again. A cache that fits in a quarter of the available memory is read into it; a larger one is
memory-mapped, in milliseconds however large, and nothing is read until used: an epoch reads the
batches it draws (``gather``), and ``touched`` hands the pages back to the page cache once
``TRIM_BYTES`` of them are held, so the resident memory of a run stays bounded whatever the
size of the data set.

A cache is written in a temporary folder and renamed into place when complete: a killed build
leaves no half cache, and two processes building the same one both end with the same files.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import shutil
import weakref
from pathlib import Path
from typing import Any, Optional

import torch

from .hookspecs import DatasetSplits, Split

__all__ = ["cache_folder", "open_cache", "Writer", "gather", "touched", "trim", "digest", "TRIM_BYTES"]

IN_MEMORY_SHARE = 0.25  # a cache up to this share of the available memory is read, not mapped
FORMAT = 2  # bump when the layout or a loader's conversion changes: old caches are then not used
TRIM_BYTES = 256 << 20  # mapped pages held before they are handed back (per process)
_MAPS: list = []  # (weak reference to a live mapping, its file, the address of its first byte)
_read_since_trim = 0
_baseline = -1  # file-backed bytes held just after the last trim


def cache_folder(data_dir: Path, kind: str, key: Any) -> Path:
    """``DATA_DIR/cache/KIND-HASH`` of a source's ``key`` (any JSON value)."""
    text = json.dumps({"format": FORMAT, "kind": kind, "key": key}, sort_keys=True, default=str)
    return Path(data_dir) / "cache" / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}"


def _combine(image_hashes: list, labels: tuple) -> str:
    h = hashlib.sha256()
    for part in image_hashes:
        h.update(part.encode())
    for y in labels:
        h.update(b"none" if y is None else y.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def digest(splits: DatasetSplits) -> str:
    """The sha256 of a data set's content: the bytes of both splits' uint8 images and their
    labels (what ``--resume`` compares, so that changed data is caught whatever its counts).
    Kept in a cache's index when it is written; else computed here, about 2 GB/s."""
    if splits.sha256:
        return splits.sha256
    parts = []
    for split in (splits.train, splits.test):
        h = hashlib.sha256()
        h.update(split.images.detach().cpu().contiguous().numpy().data.cast("B"))
        parts.append(h.hexdigest())
    splits.sha256 = _combine(parts, (splits.train.labels, splits.test.labels))
    return splits.sha256


def _map(path: Path, shape: tuple, read: bool) -> torch.Tensor:
    """The uint8 file ``path`` as a tensor of ``shape``: read into memory (``read``), or mapped
    copy-on-write: the file is never changed, and pages are read from it when touched."""
    import numpy as np

    size = math.prod(shape)
    if path.stat().st_size != size:
        raise OSError(f"{path.name} holds {path.stat().st_size} bytes, not {size}")
    if read:
        return torch.from_numpy(np.fromfile(path, dtype=np.uint8).reshape(shape))
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    tensor = torch.from_numpy(np.frombuffer(mapped, dtype=np.uint8).reshape(shape))
    _MAPS.append((weakref.ref(mapped), path, tensor.data_ptr()))
    return tensor


def open_cache(folder: Path) -> Optional[DatasetSplits]:
    """The cached splits of ``folder``, or None when there is no complete cache. A cache that
    fits in ``IN_MEMORY_SHARE`` of the available memory is read (at disk or page-cache speed),
    so that its epochs run at the speed of memory; a larger one is memory-mapped."""
    from safetensors import safe_open

    from .device import free_bytes

    index = folder / "index.safetensors"
    if not index.is_file():
        return None
    try:
        with safe_open(str(index), framework="pt") as f:
            meta = json.loads(f.metadata()["vaecli.cache"])
            labels = {k: f.get_tensor(k) for k in f.keys()}
        shape = tuple(int(s) for s in meta["shape"])
        total = (int(meta["n_train"]) + int(meta["n_test"])) * math.prod(shape)
        read = total <= IN_MEMORY_SHARE * free_bytes(torch.device("cpu"))
        splits = [
            Split(
                _map(folder / f"{which}.u8", (int(meta[f"n_{which}"]), *shape), read),
                labels.get(f"{which}.labels"),
                {name: labels[f"{which}.factor.{name}"] for name in meta.get("factors", [])},
            )
            for which in ("train", "test")
        ]
    except (OSError, ValueError, KeyError, TypeError):  # damaged (a disk full, a hand): built again
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return DatasetSplits(
        train=splits[0],
        test=splits[1],
        class_names=meta["class_names"],
        notes=list(meta["notes"]),
        sha256=meta["sha256"],
    )


class Writer:
    """Writes a cache: ``add(images, split)`` appends uint8 ``(n, C, H, W)`` images to ``train``
    or ``test`` (or, with a boolean ``test_rows`` mask, each row to its split), then ``finish``
    renames the temporary folder into place and maps it. Used as a context manager, a failure
    removes the temporary folder."""

    def __init__(self, folder: Path, shape: tuple) -> None:
        self.folder, self.shape = folder, tuple(int(s) for s in shape)
        self.tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.files = {which: open(self.tmp / f"{which}.u8", "wb") for which in ("train", "test")}
        self.counts = {"train": 0, "test": 0}
        self.hashes = {"train": hashlib.sha256(), "test": hashlib.sha256()}

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind: Any, *rest: Any) -> None:
        for f in self.files.values():
            f.close()
        if kind is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def add(self, images: torch.Tensor, split: str = "", test_rows: Optional[torch.Tensor] = None) -> None:
        if tuple(images.shape[1:]) != self.shape:
            raise ValueError(f"images of shape {tuple(images.shape[1:])} in a cache of {self.shape}")
        parts = {split: images} if test_rows is None else {"train": images[~test_rows], "test": images[test_rows]}
        for which, rows in parts.items():
            if len(rows):
                data = rows.contiguous().numpy().tobytes()
                self.files[which].write(data)
                self.hashes[which].update(data)
                self.counts[which] += len(rows)

    def finish(
        self,
        labels: tuple = (None, None),
        class_names: Optional[list] = None,
        notes: Optional[list] = None,
        factors: tuple = ({}, {}),
    ) -> DatasetSplits:
        """Close the files, write the index (``labels`` and ``factors``, name -> values, of the
        train and test splits), put the cache in place and open it."""
        from safetensors.torch import save_file

        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        meta: dict[str, Any] = {"shape": list(self.shape), "class_names": class_names, "notes": list(notes or [])}
        meta.update({f"n_{which}": n for which, n in self.counts.items()})
        meta["factors"] = list(factors[0])  # in the loader's order
        meta["sha256"] = _combine([self.hashes[w].hexdigest() for w in ("train", "test")], labels)
        tensors = {f"{which}.labels": y.contiguous() for which, y in zip(("train", "test"), labels) if y is not None}
        for which, named in zip(("train", "test"), factors):
            tensors.update({f"{which}.factor.{name}": v.clone() for name, v in named.items()})
        save_file(tensors, str(self.tmp / "index.safetensors"), metadata={"vaecli.cache": json.dumps(meta)})
        try:
            self.tmp.rename(self.folder)
        except OSError:  # another process finished the same cache first: theirs is as good
            shutil.rmtree(self.tmp, ignore_errors=True)
        splits = open_cache(self.folder)
        assert splits is not None
        return splits


def trim() -> None:
    """Hand every mapped page back to the page cache (they are read again, from memory, when
    touched): the process's resident memory drops to what it holds besides the data."""
    global _read_since_trim, _baseline
    _read_since_trim, _baseline = 0, -1
    for entry in list(_MAPS):
        mapped = entry[0]()
        if mapped is None or mapped.closed:
            _MAPS.remove(entry)
        elif hasattr(mmap, "MADV_DONTNEED"):  # Linux, macOS; elsewhere the kernel alone decides
            mapped.madvise(mmap.MADV_DONTNEED)


def _file_of(images: torch.Tensor) -> Optional[tuple[Path, int]]:
    """``(cache file, offset of images[0] in it)`` when ``images`` are rows of a live mapping."""
    if images.device.type != "cpu" or images.dtype != torch.uint8 or not images.is_contiguous():
        return None
    start = images.data_ptr()
    for ref, path, base in _MAPS:
        mapped = ref()
        if mapped is not None and not mapped.closed and base <= start < base + len(mapped):
            return path, start - base
    return None


def gather(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``images.index_select(0, index)``; for mapped images read with one ``preadv`` per row
    from the page cache instead of through the mapping, which would map (and count as resident)
    up to a large folio of the file around every row: random batches would soon hold the whole
    data set. About 1.6 us a row."""
    found = _file_of(images) if hasattr(os, "preadv") else None
    if found is None:
        return images.index_select(0, index)
    path, offset = found
    row = images[0].numel()
    out = torch.empty((len(index), *images.shape[1:]), dtype=torch.uint8)
    rows = out.numpy().reshape(len(index), row)
    fd = os.open(path, os.O_RDONLY)
    try:
        for j, i in enumerate(index.tolist()):
            if os.preadv(fd, [rows[j]], offset + i * row) != row:
                raise OSError(f"{path} is shorter than its index says")
    finally:
        os.close(fd)
    return out


def _file_pages() -> int:
    """Bytes of file-backed pages the process holds (Linux: the third field of
    /proc/self/statm, which counts shared libraries too), or -1 where unknown."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[2]) * mmap.PAGESIZE
    except (OSError, IndexError, ValueError):
        return -1


def touched(nbytes: int) -> None:
    """Called with the bytes of each batch read from the data; ``trim`` once the mapped pages
    held have grown by ``TRIM_BYTES`` (measured where the system says it, since the kernel maps
    up to 64 kB around every page read; else counted, 64 times the bytes read)."""
    global _read_since_trim, _baseline
    if not _MAPS:
        return
    held = _file_pages()
    if held >= 0:
        if _baseline < 0:
            _baseline = held
        if held - _baseline >= TRIM_BYTES:
            trim()
            _baseline = _file_pages()
        return
    _read_since_trim += 64 * nbytes
    if _read_since_trim >= TRIM_BYTES:
        trim()
