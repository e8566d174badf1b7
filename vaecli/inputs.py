"""The inputs of the commands: ``DATASET:SPLIT[:INDEX]``, an image file or a folder of images,
converted to what a model expects, with the classes a class-conditional model needs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from . import kinds
from .data import load_dataset, preprocessing, split_dataset_name
from .errors import UsageError
from .images import (
    BINARIZE_SEEDS,
    IMAGE_FILES,
    binarize,
    class_labels,
    conform,
    describe_shape,
    drop_alpha,
    image_files,
    read_image,
)
from .plugins import registry

__all__ = ["Inputs", "load_input", "condition", "input_labels", "class_name"]

SPLITS = ("train", "test")


@dataclass
class Inputs:
    """Images named by the user, already converted to what the model expects."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: Optional[torch.Tensor]  # (N,) int64, or None
    class_names: Optional[list]
    factors: dict  # name -> (N,) tensor (the shapes dataset's factors of variation)
    source: str
    warnings: list
    binarize_seed: Optional[int] = BINARIZE_SEEDS["test"]  # None: already binarized (dataset splits)
    rows: Optional[torch.Tensor] = None  # rows: the raw values (N, columns) as read (``images`` are model inputs)

    def __len__(self) -> int:
        return len(self.images)


def _parse_dataset_input(text: str) -> Optional[tuple[str, str, Optional[int]]]:
    """``NAME:SPLIT`` or ``NAME:SPLIT:INDEX`` (parsed from the right, so a NAME may hold ':')."""
    parts = text.split(":")
    index = None
    if len(parts) >= 3 and parts[-1].lstrip("-").isdigit():
        index = int(parts.pop())
    if len(parts) >= 2 and parts[-1] in SPLITS:
        return ":".join(parts[:-1]), parts[-1], index
    return None


def load_input(
    text: str,
    meta: Optional[dict] = None,
    data_dir: Optional[Path | str] = None,
    download: bool = True,
    limit: Optional[int] = None,
) -> Inputs:
    """Resolve an INPUT argument for a model whose checkpoint metadata is ``meta`` (None: for no
    model in particular; images then keep their shape, a folder's that of its first image).

    ``mnist:test`` and ``mnist:test:7`` name a dataset split or one image of it (the
    checkpoint's own dataset is loaded with its recorded options); anything else is an image
    file or a folder of images. Images are converted to the model's input shape when that is
    unambiguous (grey <-> RGB; a resize keeping the aspect ratio, with a warning). ``limit``:
    at most that many images (the first ones). For a model trained on binarized images, the
    inputs are binarized by the same fixed draw as in training (``BINARIZE_SEEDS``).
    """
    meta = meta or {}
    layout = kinds.layout_of(meta["model"]) if "model" in meta else None
    if layout is not None:
        return _load_rows(text, meta, layout, data_dir, download, limit)
    inputs = _load_input(text, meta, data_dir, download, limit)
    if preprocessing(meta) != "none" and inputs.binarize_seed is not None:
        inputs.images = binarize(inputs.images, inputs.binarize_seed)
        inputs.binarize_seed = None
    return inputs


def _load_input(text, meta, data_dir, download, limit) -> Inputs:
    expected = tuple(int(s) for s in meta["model"]["input_shape"]) if "model" in meta else None
    if not text.strip():
        raise UsageError("INPUT is empty; give DATASET:SPLIT, an image file or a folder")
    path = Path(text).expanduser()
    if path.is_dir():
        return _load_folder(path, expected, limit)
    if path.is_file():
        warnings: list = []
        image = read_image(path, warnings)
        images, notes = conform(image, expected or tuple(drop_alpha(image).shape[1:]), str(path))
        return Inputs(images, None, None, {}, str(path), warnings + notes)
    parsed = _parse_dataset_input(text)
    if parsed is None:
        known = registry().names("dataset")
        if text in known:
            raise UsageError(f"INPUT {text}: say which split, e.g. {text}:test or {text}:train:0")
        if path.suffix.lower() in IMAGE_FILES:
            raise UsageError(f"INPUT {text}: no such file")
        raise UsageError(
            f"INPUT {text!r} is not a file, a folder or DATASET:SPLIT[:INDEX] (datasets: {', '.join(sorted(known))})"
        )
    name, split_name, index = parsed
    trained_on = meta.get("data", {}).get("dataset", {})
    base, argument = split_dataset_name(name)
    same = trained_on.get("name") == base and all(
        _same_value(trained_on.get("options", {}).get(k), v) for k, v in argument.items()
    )
    spec = registry().get("dataset", base).spec if base in registry().names("dataset") else None
    if same and spec is not None and spec.argument and not argument:
        recorded = trained_on.get("options", {}).get(spec.argument)
        raise UsageError(
            f"INPUT {text}: the checkpoint was trained on {base}:{recorded}, a {spec.argument} it records but "
            f"vae does not read unless you name it; give it as INPUT: {base}:{recorded}:{split_name}"
        )
    if data_dir is None:
        recorded = meta.get("training", {}).get("data_dir")
        data_dir = recorded if recorded and Path(recorded).is_dir() else None
    if same:  # the checkpoint's own dataset, with the options it was trained with
        loaded = load_dataset(base, trained_on.get("options"), data_dir, download, trained_on.get("provider"))
    else:
        loaded = load_dataset(name, None, data_dir, download)
    split = getattr(loaded.splits, split_name)
    images, labels, factors = split.images, split.labels, dict(split.factors or {})
    expected = expected or tuple(drop_alpha(images).shape[1:])
    drawn = preprocessing(meta) != "none" and tuple(images.shape[1:]) == expected
    if drawn:  # the whole split, so that it is training's draw (else after conform, in load_input)
        images = binarize(images, BINARIZE_SEEDS[split_name])
    if index is not None:
        if not 0 <= index < len(images):
            raise UsageError(
                f"INPUT {text}: index {index} is out of range; {name}:{split_name} "
                f"has {len(images)} images (0 to {len(images) - 1})"
            )
        sel = slice(index, index + 1)
        images = images[sel]
        labels = None if labels is None else labels[sel]
        factors = {k: v[sel] for k, v in factors.items()}
    if limit is not None:
        images, labels = images[:limit], None if labels is None else labels[:limit]
        factors = {k: v[:limit] for k, v in factors.items()}
    images, warnings = conform(images, expected, text)
    return Inputs(
        images,
        labels,
        loaded.splits.class_names,
        factors,
        text,
        list(loaded.splits.notes) + warnings,
        binarize_seed=None if drawn else BINARIZE_SEEDS[split_name],
    )


def _load_rows(text: str, meta: dict, layout, data_dir, download: bool, limit: Optional[int]) -> Inputs:
    """Rows for a model of rows: ``DATASET:SPLIT[:INDEX]`` as for images, ``table:PATH`` or
    ``tensor:PATH`` (every row of the file), or a bare ``.csv``/``.parquet``/``.npy`` path; read
    with the model's column types and matched to its columns by name (``kinds.conform``)."""
    if not text.strip():
        raise UsageError("INPUT is empty; give DATASET:SPLIT or a file of rows")
    trained_on = meta.get("data", {}).get("dataset", {})
    parsed = _parse_dataset_input(text)
    index = None
    if parsed is not None:
        name, split_name, index = parsed
        base, argument = split_dataset_name(name)
        same = trained_on.get("name") == base and all(
            _same_value(trained_on.get("options", {}).get(k), v) for k, v in argument.items()
        )
        if same or not argument:
            options = trained_on.get("options") if same else None
            loaded = load_dataset(base if same else name, options, data_dir, download, trained_on.get("provider"))
        else:
            loaded = load_dataset(name, _typed(base, layout, trained_on), data_dir, download)
        split = getattr(loaded.splits, split_name)
        source = text
    else:
        path = Path(text).expanduser()
        if path.is_file():
            base = "tensor" if path.suffix.lower() in (".npy", ".npz", ".safetensors") else "table"
            text_name = f"{base}:{path}"
        else:
            base, _ = split_dataset_name(text)
            text_name = text
            if base not in registry().names("dataset") or base == text:
                raise UsageError(
                    f"INPUT {text!r} is not a file of rows, DATASET:SPLIT or table:PATH (this model takes "
                    f"{layout.kind} rows of {len(layout.columns)} columns)"
                )
        loaded = load_dataset(text_name, _typed(base, layout, trained_on), data_dir, download)
        split = loaded.splits.train if base == "table" else _joined(loaded.splits)
        source = text
    if loaded.splits.columns is None:
        raise UsageError(f"INPUT {text}: holds images; this model takes {layout.kind} rows")
    raw, warnings = kinds.conform(layout, list(loaded.splits.columns), split.images, source)
    labels = split.labels
    if index is not None:
        if not 0 <= index < len(raw):
            raise UsageError(
                f"INPUT {text}: index {index} is out of range; it has {len(raw)} rows (0 to {len(raw) - 1})"
            )
        raw, labels = raw[index : index + 1], None if labels is None else labels[index : index + 1]
    if limit is not None:
        raw, labels = raw[:limit], None if labels is None else labels[:limit]
    factors = {c.name: raw[:, j].float() for j, c in enumerate(layout.columns)}
    return Inputs(
        kinds.to_model(layout, raw),
        labels,
        meta.get("data", {}).get("class_names"),
        factors,
        source,
        list(loaded.splits.notes) + warnings,
        binarize_seed=None,
        rows=raw,
    )


def _typed(base: str, layout, trained_on: dict) -> Optional[dict]:
    """Options that read a ``table`` file with the model's column types (and separator/header)."""
    if base != "table":
        return None
    options = kinds.type_options(layout)
    recorded = trained_on.get("options", {})
    for key in ("sep", "header"):
        if key in recorded:
            options[key] = recorded[key]
    options["test_fraction"] = 0  # every row, in the file's order
    return options


def _joined(splits):
    """Both splits of a file read as one input, in the file's order where the split was a
    seeded holdout (the order of the rows matters for per-row scores)."""
    from .hookspecs import Split

    train, test = splits.train, splits.test
    held_out = splits.held_out
    if held_out is None:
        held_out = torch.arange(len(train) + len(test)) >= len(train)
    images = torch.empty((len(held_out), *train.images.shape[1:]), dtype=train.images.dtype)
    images[~held_out], images[held_out] = train.images, test.images
    labels = None
    if train.labels is not None and test.labels is not None:
        labels = torch.empty(len(held_out), dtype=train.labels.dtype)
        labels[~held_out], labels[held_out] = train.labels, test.labels
    return Split(images, labels)


def _same_value(recorded: Any, given: str) -> bool:
    """Whether an argument (``folder:PATH``) names what the checkpoint recorded."""
    if recorded is None:
        return False
    if str(recorded) == given:
        return True
    try:
        return Path(given).expanduser().resolve() == Path(str(recorded)).expanduser().resolve()
    except OSError:
        return False


def _load_folder(folder: Path, expected: Optional[tuple], limit: Optional[int] = None) -> Inputs:
    """The images under ``folder`` (sorted; the first ``limit`` readable ones), each converted as
    it is read. Files that are not images are skipped, with one warning. When all images sit in
    subfolders, the subfolder names are the class labels."""
    from .console import progress
    from .device import require_memory

    files = image_files(folder)
    count = len(files) if limit is None else min(limit, len(files))
    if expected is not None:  # the images as read, then joined: twice their uint8 bytes
        require_memory(
            2 * count * math.prod(expected),
            f"INPUT {folder}: {count:,} images of {describe_shape(expected)}",
            "give a folder of fewer images",
            torch.device("cpu"),
        )
    images: list = []
    skipped: list = []
    paths: list = []
    warnings: list = []
    resized, first_reason = 0, ""
    with progress(count, f"reading {folder.name or folder}") as update:
        for f in files:
            if limit is not None and len(images) >= limit:
                break
            update(len(images) + len(skipped))
            notes: list = []
            try:
                image = read_image(f, notes)
            except UsageError as exc:
                skipped.append(f.relative_to(folder).as_posix())
                first_reason = first_reason or str(exc)
                continue
            expected = expected or tuple(drop_alpha(image).shape[1:])
            tensor, resize_notes = conform(image, expected, str(f))  # an image that cannot be converted: refused
            images.append(tensor)
            paths.append(f)
            resized += bool(resize_notes)
            warnings += notes
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        warnings.insert(0, f"{folder}: skipped {len(skipped)} file(s) that are not readable images: {shown}")
    if not images:
        raise UsageError(
            f"INPUT {folder}: the folder holds no readable images"
            + (f" ({len(skipped)} other file(s); first: {first_reason})" if skipped else "")
        )
    if resized and expected is not None:
        warnings.append(f"{folder}: resized {resized} of {len(paths)} image(s) to {expected[1]}x{expected[2]}")
    labels, class_names = class_labels([p.relative_to(folder).parts for p in paths])
    return Inputs(
        torch.cat(images), None if labels is None else torch.tensor(labels), class_names, {}, str(folder), warnings
    )


# -- the classes of a class-conditional model -----------------------------------------------------


def class_name(model, index: int) -> str:
    """``3``, or ``3 (cat)`` where the model's dataset named its classes."""
    names = model.meta.get("data", {}).get("class_names") or []
    return f"{index} ({names[index]})" if index < len(names) and names[index] != str(index) else str(index)


def condition(model, label: Optional[str], n: int) -> Optional[torch.Tensor]:
    """The class of each of ``n`` decoded rows: ``label`` (an index or a class name) for all, or
    None (a cvae then decodes class i % K in row i). A label for an unconditional model is an
    error."""
    if label is None:
        return None
    if not model.num_classes:
        raise UsageError(
            f"--label is for class-conditional models (vae train --model cvae); this is a {model.kind}, not conditional"
        )
    names = [str(c) for c in model.meta.get("data", {}).get("class_names") or []]
    if label in names:
        index = names.index(label)
    elif label.lstrip("-").isdigit() and 0 <= int(label) < model.num_classes:
        index = int(label)
    else:
        shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
        raise UsageError(
            f"--label {label}: not a class of this model; give 0 to {model.num_classes - 1}"
            + (f" or a name: {shown}" if names else "")
        )
    return torch.full((n,), index, dtype=torch.long)


def input_labels(model, inputs: Inputs, label: Optional[str] = None) -> Optional[torch.Tensor]:
    """The class of each input image, which a cvae's encoder is conditioned on (None for other
    models); the input's class names are matched to the model's by name. ``label`` gives
    unlabelled inputs (image files) their class."""
    if not model.num_classes:
        return None
    if inputs.labels is None and label is not None:
        return condition(model, label, len(inputs))
    if inputs.labels is None:
        raise UsageError(
            f"{inputs.source}: a class-conditional model needs each image's class; give "
            f"DATASET:SPLIT, a folder with one subfolder per class, or --label"
        )
    names = [str(c) for c in model.meta.get("data", {}).get("class_names") or []]
    given = [str(c) for c in inputs.class_names or []]
    if not given or given == names:
        return inputs.labels
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise UsageError(
            f"{inputs.source}: class {unknown[0]!r} is not one of this model's classes ({', '.join(names[:20])})"
        )
    return torch.tensor([names.index(given[int(i)]) for i in inputs.labels])
