"""Rows written as files: ``.csv`` (the columns' names, categories as their text, whole numbers
for binary and count columns), ``.npy`` (float64 ``(N, columns)``, categories as indices) or
``.parquet`` (typed columns; pyarrow, the ``tables`` extra). Written atomically: a temporary
file beside the target, then a rename."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Optional

import torch

from .errors import UsageError
from .kinds import ROW_SUFFIXES, Layout

__all__ = ["write_rows", "check_rows_output", "cell_text", "ROW_SUFFIXES"]


def check_rows_output(path: Path) -> Path:
    path = Path(path).expanduser()
    if path.suffix.lower() not in ROW_SUFFIXES:
        raise UsageError(f"-o {path}: rows are written to a file ending in one of {', '.join(ROW_SUFFIXES)}")
    from .checkpoint import check_target

    return check_target(path)


def cell_text(column, value: float) -> str:
    """One cell as a CSV writes it: empty when missing, a category's text, a whole number for
    binary and count columns, else the shortest text that reads back as the same float32."""
    if math.isnan(value):
        return ""
    if column.type == "categorical":
        return str(column.categories[int(value)])
    if column.type in ("binary", "count") or getattr(column, "decimals", -1) == 0:
        return str(int(value))
    if getattr(column, "decimals", -1) > 0:
        return f"{value:.{column.decimals}f}"
    return f"{value:.7g}"


def write_rows(
    path: Path,
    layout: Layout,
    values: torch.Tensor,
    extra: Optional[dict] = None,
) -> None:
    """Write raw rows ``values`` ``(N, columns)`` of ``layout`` (and ``extra`` columns, name ->
    ``(N,)``, first) to ``path``."""
    path = Path(path)
    values = values.detach().to("cpu", torch.float64)
    extra = extra or {}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            import numpy as np

            with open(tmp, "wb") as f:
                np.save(f, values.numpy())
        elif suffix == ".parquet":
            _parquet(tmp, layout, values, extra)
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow([*extra, *layout.names])
                extras = [torch.as_tensor(v).tolist() for v in extra.values()]
                for i, row in enumerate(values.tolist()):
                    w.writerow([_plain(e[i]) for e in extras] + [cell_text(c, v) for c, v in zip(layout.columns, row)])
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _plain(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.7g}"
    return str(value)


def _parquet(path: Path, layout: Layout, values: torch.Tensor, extra: dict) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError('writing Parquet needs pyarrow: pip install "vaecli[tables]"') from None
    arrays: list = []
    names: list = []
    for name, v in extra.items():
        arrays.append(pa.array(torch.as_tensor(v).tolist()))
        names.append(name)
    for j, c in enumerate(layout.columns):
        col = values[:, j].tolist()
        cells: list
        if c.type == "categorical":
            cells = [None if math.isnan(v) else str(c.categories[int(v)]) for v in col]
        elif c.type in ("binary", "count"):
            cells = [None if math.isnan(v) else int(v) for v in col]
        else:
            cells = [None if math.isnan(v) else v for v in col]
        arrays.append(pa.array(cells))
        names.append(c.name)
    pq.write_table(pa.table(arrays, names=names), path)
