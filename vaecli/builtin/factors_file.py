"""Factors of variation of the user's own images, from a file beside them:

- ``tensor:DATA.npz`` (or ``.npy``, ``.safetensors``): ``DATA.factors.csv``, a header of factor
  names and one row per image in the order of the file (``x_train`` then ``x_test`` where the file
  has both), or ``DATA.factors.npy``, an ``(N, K)`` array, its columns named ``factor_0``...;
- ``folder:PATH``: ``PATH/factors.csv``, a header ``file,NAME,...`` and a row per image, ``file``
  its path below PATH as written in the folder (``cats/001.png``).

A column of whole numbers is a categorical factor (kept as integers), any other a numeric one.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from ..errors import UsageError

MAX_FACTORS = 64


def factors_file(data: Path) -> Optional[Path]:
    """The factors file of ``tensor:`` data ``data``, if there is one."""
    for suffix in (".factors.csv", ".factors.npy"):
        candidate = data.with_name(data.name[: -len(data.suffix)] + suffix)
        if candidate.is_file():
            return candidate
    return None


def _columns(names: list, rows: list, path: Path) -> dict:
    import numpy as np
    import torch

    if not names or len(names) > MAX_FACTORS:
        raise UsageError(f"{path}: give between 1 and {MAX_FACTORS} factor columns, found {len(names)}")
    out = {}
    for j, name in enumerate(names):
        cells = [row[j] for row in rows]
        try:
            values = np.array([float(c) for c in cells], dtype=np.float64)
        except ValueError:
            bad = next(c for c in cells if not _number(c))
            raise UsageError(f"{path}: factor {name} holds {bad!r}; factor values must be numbers") from None
        if not np.isfinite(values).all():
            raise UsageError(f"{path}: factor {name} holds NaN or infinite values")
        whole = bool((values == np.round(values)).all())
        out[name] = torch.from_numpy(values.astype(np.int64) if whole else values)
    return out


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _read_csv(path: Path) -> tuple[list, list]:
    try:
        with open(path, newline="") as f:
            table = [row for row in csv.reader(f) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read it as CSV ({exc})") from None
    if not table:
        raise UsageError(f"{path}: empty; give a header of factor names and a row per image")
    header, rows = [c.strip() for c in table[0]], table[1:]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise UsageError(f"{path}, line {number}: {len(row)} values for {len(header)} columns")
    return header, rows


def read_tensor_factors(path: Path, n: int) -> dict:
    """Factors name -> ``(n,)`` of a ``tensor:`` file's ``n`` images, from ``path``."""
    if path.suffix == ".npy":
        import numpy as np

        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: cannot read it as .npy ({exc})") from None
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or values.dtype.kind not in "iuf":
            raise UsageError(f"{path}: factors must be a numeric (N, K) array, got {values.dtype} {values.shape}")
        names, rows = [f"factor_{j}" for j in range(values.shape[1])], values.astype(str).tolist()
    else:
        names, rows = _read_csv(path)
    if len(rows) != n:
        raise UsageError(f"{path}: {len(rows)} rows of factors for {n} images; give one row per image, in order")
    return _columns(names, rows, path)


def read_folder_factors(root: Path, files: list) -> Optional[dict]:
    """Factors of the images ``files`` (paths below ``root``, in the order read) from
    ``root/factors.csv``, or None without that file."""
    path = root / "factors.csv"
    if not path.is_file():
        return None
    header, rows = _read_csv(path)
    if not header or header[0] != "file":
        raise UsageError(f"{path}: the first column must be 'file' (each image's path below {root})")
    by_file = {row[0].strip(): row[1:] for row in rows}
    missing = [f for f in files if f not in by_file]
    if missing:
        raise UsageError(f"{path}: no row for {len(missing)} image(s), the first {missing[0]}")
    return _columns(header[1:], [by_file[f] for f in files], path)
