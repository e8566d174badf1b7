"""The user's own images as datasets: ``folder:PATH`` (image files, recursively) here, and
``tensor:PATH`` (arrays in a ``.npy``, ``.npz`` or ``.safetensors`` file) in ``arrays``.

Both are converted once into the data cache (``vaecli.datacache``): uint8 ``(N, C, H, W)``
files, memory-mapped, so a data set larger than memory trains. Without a test split of their
own they hold out ``test_fraction`` of the images (a seeded shuffle).
Images are read and converted by ``vaecli.images``, as the inputs of the commands are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import UsageError
from ..hookspecs import DataRequest, DatasetSplits

TENSOR_SUFFIXES = (".npy", ".npz", ".safetensors")
LISTED = 5  # names shown in a note before "and N more"


def resolved(path: str) -> str:
    """An absolute, resolved path, so that a checkpoint's options work from any folder."""
    return str(Path(path).expanduser().resolve()) if path else ""


def check_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie between 0 and 1 (exclusive), got {test_fraction}")


@dataclass(frozen=True)
class FolderOptions:
    """``path``: the folder (stored absolute); ``image_size``: resize the shorter side to N and
    centre-crop N x N (0 keeps the size, which all images must then share); ``grayscale``: one
    channel (ITU-R 601 luma), else RGB when any image has colour; ``test_fraction`` and
    ``seed``: the held-out test split when the folder has no ``train/`` and ``test/``."""

    path: str = ""
    image_size: int = 0
    grayscale: bool = False
    test_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", resolved(self.path))
        if self.image_size < 0:
            raise ValueError(f"image_size must be 0 (keep the size) or a side in pixels, got {self.image_size}")
        check_fraction(self.test_fraction)


# -- shared helpers ---------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _listing(names: list) -> str:
    """``a, b, c`` — at most ``LISTED`` names, then ``and N more``."""
    shown = ", ".join(names[:LISTED])
    return shown + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def need_path(path: str, dataset: str) -> Path:
    if not path:
        raise UsageError(f"dataset '{dataset}' needs its path: {dataset}:PATH")
    return Path(path)


def holdout(n: int, fraction: float, seed: int, what: str):
    """Which of ``n`` examples are held out for testing, ``(n,)`` bool: ``fraction`` of them
    (at least one in each split) by a seeded shuffle."""
    import torch

    if n < 2:
        raise UsageError(
            f"{what} holds only {_plural(n, 'image')}; a dataset needs at least 2 (one to train on and one to test)"
        )
    n_test = min(n - 1, max(1, round(n * fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    test_rows = torch.zeros(n, dtype=torch.bool)
    test_rows[order[:n_test]] = True
    return test_rows


# -- folder:PATH ----------------------------------------------------------------------------------


@dataclass
class _Record:
    """One decoded image in the records file: where, how many channels, whether in colour."""

    offset: int
    channels: int
    colour: bool
    parts: tuple
    split: str  # "train" or "test" under train/ and test/, else ""


class _FolderReader:
    """Decodes the images of one or two split folders into a records file (each image's bytes at
    its own channel count), remembering what it skipped; nothing is held in memory but a record
    per image."""

    def __init__(self, root: Path, options: FolderOptions, out) -> None:
        self.root, self.options, self.out = root, options, out
        self.records: list[_Record] = []
        self.skipped: list[str] = []
        self.animated: list[str] = []
        self.first_size: Optional[tuple] = None  # ((H, W), name) of the first image read
        self.done = 0  # files read, for the progress bar

    def read(self, folder: Path, files: list, split: str, update) -> None:
        import torch

        from ..images import drop_alpha, read_image, square, to_grey

        skipped, before = 0, len(self.records)
        for f in files:
            name = f.relative_to(self.root).as_posix()
            frames: list = []
            try:
                image = read_image(f, frames)
            except UsageError:
                self.skipped.append(name)
                skipped += 1
                continue
            finally:
                self.done += 1
                update(self.done)
            if frames:
                self.animated.append(name)
            image = drop_alpha(image)
            if self.options.image_size:
                image = square(image, self.options.image_size)
            if self.options.grayscale:
                image = to_grey(image)
            self._check_size(image, name)
            grey = image.shape[1] == 1 or (
                torch.equal(image[:, 0], image[:, 1]) and torch.equal(image[:, 1], image[:, 2])
            )
            self.records.append(
                _Record(self.out.tell(), int(image.shape[1]), not grey, f.relative_to(folder).parts, split)
            )
            self.out.write(image.contiguous().numpy().tobytes())
        if len(self.records) == before:
            others = f"{_plural(skipped, 'other file')}" if skipped else "it is empty"
            raise UsageError(
                f"{folder} holds no readable images ({others}); folder:PATH needs a folder of "
                f"image files (PNG, JPEG, BMP, GIF, WebP, TIFF, PPM)"
            )

    def _check_size(self, image, name: str) -> None:
        size = tuple(int(s) for s in image.shape[2:])
        if self.first_size is None:
            self.first_size = (size, name)
        elif size != self.first_size[0]:
            (h0, w0), name0 = self.first_size
            raise UsageError(
                f"folder {self.root}: the images differ in size ({h0}x{w0} {name0}, {size[0]}x{size[1]} "
                f"{name}); pass --image-size N to resize and centre-crop them all to NxN"
            )

    def notes(self) -> list[str]:
        notes = []
        if self.skipped:
            notes.append(f"folder {self.root}: skipped {_plural(len(self.skipped), 'file')}: {_listing(self.skipped)}")
        if self.animated:
            notes.append(
                f"folder {self.root}: took the first frame of "
                f"{_plural(len(self.animated), 'animated image')}: {_listing(self.animated)}"
            )
        return notes

    def channels(self) -> tuple[int, Optional[str]]:
        """All images to one channel count: grey with ``grayscale`` (ITU-R 601 luma, as Pillow's
        ``convert("L")``, done when read), else RGB when any image has colour, else grey. With a
        note when all the files are RGB but hold only grey."""
        if any(r.colour for r in self.records):
            return 3, None
        if not self.options.grayscale and all(r.channels == 3 for r in self.records):
            return 1, f"the {len(self.records)} images are stored as RGB but hold only grey; using one channel"
        return 1, None


def _source_key(root: Path, options: FolderOptions, listed: list) -> dict:
    """What names a folder's cache: its path, the options, and each file's path, size and time."""
    import dataclasses

    files = []
    for _, _, paths in listed:
        for f in paths:
            st = f.stat()
            files.append([f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns])
    return {"path": str(root), "options": dataclasses.asdict(options), "files": files}


def load_folder(request: DataRequest, options: FolderOptions) -> DatasetSplits:
    """``folder:PATH``: every image below PATH (see ``FolderOptions``), through the data cache:
    decoded once into a memory-mapped uint8 cache (``vaecli.datacache``) and mapped again while
    no file below PATH changes."""
    from .. import datacache
    from ..images import image_files

    root = need_path(options.path, "folder")
    if not root.exists():
        raise UsageError(f"folder {root}: no such folder; give folder:PATH an existing folder of images")
    if not root.is_dir():
        hint = (
            f"; for an array file write tensor:{root}"
            if root.suffix.lower() in TENSOR_SUFFIXES
            else "; give folder:PATH a folder of images"
        )
        raise UsageError(f"folder {root}: not a folder{hint}")
    beside: list = []
    if (root / "train").is_dir() and (root / "test").is_dir():
        listed = [(split, root / split, image_files(root / split)) for split in ("train", "test")]
        beside = sorted(
            p.name + ("/" if p.is_dir() else "")
            for p in root.iterdir()
            if not p.name.startswith(".") and p.name not in ("train", "test")
        )
    else:
        listed = [("", root, [f for f in image_files(root) if f != root / "factors.csv"])]
    key = _source_key(root, options, listed)
    if (root / "factors.csv").is_file():
        st = (root / "factors.csv").stat()
        key["factors"] = [st.st_size, st.st_mtime_ns]
    cache = datacache.cache_folder(request.data_dir, "folder", key)
    cached = datacache.open_cache(cache)
    if cached is not None:
        return cached
    return _build_folder(cache, root, options, listed, beside)


def _build_folder(cache: Path, root: Path, options: FolderOptions, listed: list, beside: list) -> DatasetSplits:
    """Decode every image into a records file (one pass, a progress bar), then write the cache's
    train and test files in the colour mode all the images share."""
    import numpy as np
    import torch

    from .. import datacache
    from ..console import progress
    from ..images import class_labels
    from .factors_file import read_folder_factors

    cache.parent.mkdir(parents=True, exist_ok=True)
    records_path = cache.with_name(f"{cache.name}.records-{os.getpid()}")
    try:
        with open(records_path, "wb") as out:
            reader = _FolderReader(root, options, out)
            total = sum(len(files) for *_, files in listed)
            with progress(total, f"reading {root.name or root}") as update:
                for split, folder, files in listed:
                    reader.read(folder, files, split, update)
        records = reader.records
        notes = reader.notes()
        if beside:
            notes.append(
                f"folder {root}: read train/ and test/ only; ignored {len(beside)} other "
                f"{'entry' if len(beside) == 1 else 'entries'}: {_listing(beside)}"
            )
        channels, grey_note = reader.channels()
        if grey_note:
            notes.append(f"folder {root}: {grey_note}")
        labels, class_names = class_labels([r.parts for r in records])
        labels_t = None if labels is None else torch.tensor(labels, dtype=torch.int64)
        if listed[0][0]:  # train/ and test/
            test_rows = torch.tensor([r.split == "test" for r in records])
        else:
            test_rows = holdout(len(records), options.test_fraction, options.seed, f"folder {root}")
        below = ["/".join(((r.split,) if r.split else ()) + tuple(r.parts)) for r in records]
        factors = read_folder_factors(root, below) or {}
        (h, w), _ = reader.first_size  # type: ignore[misc]
        raw = (
            np.memmap(records_path, dtype=np.uint8, mode="r") if records_path.stat().st_size else np.zeros(0, np.uint8)
        )
        with datacache.Writer(cache, (channels, h, w)) as writer, progress(len(records), "caching") as update:
            for start in range(0, len(records), CHUNK):
                chunk = records[start : start + CHUNK]
                images = torch.stack([_converted(raw, r, channels, h, w) for r in chunk])
                writer.add(images, test_rows=test_rows[start : start + CHUNK])
                update(start + len(chunk))
            del raw
            splits = writer.finish(
                (None, None) if labels_t is None else (labels_t[~test_rows], labels_t[test_rows]),
                class_names,
                notes,
                ({k: v[~test_rows] for k, v in factors.items()}, {k: v[test_rows] for k, v in factors.items()}),
            )
    finally:
        records_path.unlink(missing_ok=True)
    return splits


CHUNK = 1024  # images converted and written at a time


def _converted(raw, record: _Record, channels: int, h: int, w: int):
    """One record as ``(C, H, W)`` uint8 in the cache's channel count."""
    import numpy as np
    import torch

    n = record.channels * h * w
    image = torch.from_numpy(np.array(raw[record.offset : record.offset + n])).view(record.channels, h, w)
    if image.shape[0] == channels:
        return image
    return image.expand(3, h, w) if channels == 3 else image[:1]
