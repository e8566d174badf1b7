"""The user's own images as datasets: ``folder:PATH`` (image files, recursively) here, and
``tensor:PATH`` (arrays in a ``.npy``, ``.npz`` or ``.safetensors`` file) in ``arrays``.

Both hold the images in memory as uint8 ``(N, C, H, W)``, like every built-in dataset. Without
a test split of their own they hold out ``test_fraction`` of the images (a seeded shuffle).
Images are read and converted by ``vaecli.images``, as the inputs of the commands are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import UsageError
from ..hookspecs import DataRequest, DatasetSplits, Split

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
    """Indices ``(train, test)`` of a seeded shuffle holding out ``fraction`` of ``n`` examples
    (at least one in each split), each in the original order."""
    import torch

    if n < 2:
        raise UsageError(
            f"{what} holds only {_plural(n, 'image')}; a dataset needs at least 2 (one to train on and one to test)"
        )
    n_test = min(n - 1, max(1, round(n * fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_test:].sort().values, order[:n_test].sort().values


# -- folder:PATH ----------------------------------------------------------------------------------


class _FolderReader:
    """Reads the images of one or two split folders, remembering what it skipped."""

    def __init__(self, root: Path, options: FolderOptions) -> None:
        self.root, self.options = root, options
        self.skipped: list[str] = []
        self.animated: list[str] = []
        self.first_size: Optional[tuple] = None  # ((H, W), name) of the first image read

    def read(self, folder: Path) -> tuple[list, list]:
        """``(images (1, C, H, W) with C = 1 or 3, paths as parts below folder)``."""
        from ..images import drop_alpha, image_files, read_image, square

        images, paths, skipped = [], [], 0
        for f in image_files(folder):
            name = f.relative_to(self.root).as_posix()
            frames: list = []
            try:
                image = read_image(f, frames)
            except UsageError:
                self.skipped.append(name)
                skipped += 1
                continue
            if frames:
                self.animated.append(name)
            image = drop_alpha(image)
            if self.options.image_size:
                image = square(image, self.options.image_size)
            self._check_size(image, name)
            images.append(image)
            paths.append(f.relative_to(folder).parts)
        if not images:
            others = f"{_plural(skipped, 'other file')}" if skipped else "it is empty"
            raise UsageError(
                f"{folder} holds no readable images ({others}); folder:PATH needs a folder of "
                f"image files (PNG, JPEG, BMP, GIF, WebP, TIFF, PPM)"
            )
        return images, paths

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


def _one_colour_mode(images: list, grayscale: bool) -> tuple[list, Optional[str]]:
    """All images to one channel count: grey with ``grayscale`` (ITU-R 601 luma, as Pillow's
    ``convert("L")``), else RGB when any image has colour, else grey. Returns a note when all
    the files are RGB but hold only grey."""
    import torch

    from ..images import to_grey

    def is_colour(x) -> bool:
        return x.shape[1] == 3 and not (torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2]))

    if grayscale:
        return [to_grey(x) for x in images], None
    if any(is_colour(x) for x in images):
        return [x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x for x in images], None
    all_rgb = all(x.shape[1] == 3 for x in images)  # then the user may expect RGB: say why not
    note = f"the {len(images)} images are stored as RGB but hold only grey; using one channel" if all_rgb else None
    return [x[:, :1] for x in images], note


def load_folder(request: DataRequest, options: FolderOptions) -> DatasetSplits:
    """``folder:PATH``: every image below PATH (see ``FolderOptions``)."""
    import torch

    from ..images import class_labels

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
    reader = _FolderReader(root, options)
    beside: list = []
    if (root / "train").is_dir() and (root / "test").is_dir():
        parts = {which: reader.read(root / which) for which in ("train", "test")}
        images = parts["train"][0] + parts["test"][0]
        paths = parts["train"][1] + parts["test"][1]
        n_train = len(parts["train"][0])
        train_idx, test_idx = torch.arange(n_train), torch.arange(n_train, len(images))
        beside = sorted(
            p.name + ("/" if p.is_dir() else "")
            for p in root.iterdir()
            if not p.name.startswith(".") and p.name not in ("train", "test")
        )
    else:
        images, paths = reader.read(root)
        train_idx, test_idx = holdout(len(images), options.test_fraction, options.seed, f"folder {root}")
    notes = reader.notes()
    if beside:
        notes.append(
            f"folder {root}: read train/ and test/ only; ignored {len(beside)} other "
            f"{'entry' if len(beside) == 1 else 'entries'}: {_listing(beside)}"
        )
    images, grey_note = _one_colour_mode(images, options.grayscale)
    if grey_note:
        notes.append(f"folder {root}: {grey_note}")
    labels, class_names = class_labels(paths)
    labels_t = None if labels is None else torch.tensor(labels, dtype=torch.int64)
    splits = [
        Split(
            torch.cat([images[i] for i in idx.tolist()]).contiguous(),  # (N, C, H, W)
            None if labels_t is None else labels_t[idx],
        )
        for idx in (train_idx, test_idx)
    ]
    return DatasetSplits(train=splits[0], test=splits[1], class_names=class_names, notes=notes)
