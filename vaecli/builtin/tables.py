"""``table:PATH``: rows of named columns from a CSV file (the standard library's reader: any
separator, quoting, a byte-order mark, a header detected or given) or a Parquet file (pyarrow,
the ``tables`` extra).

Column types are inferred from the values and can be set: a column whose every value is a
number is ``numeric`` (``binary`` when they are all 0 and 1), any other ``categorical`` (its
categories sorted); ``count`` only when named. Empty cells, ``NA``, ``NaN``, ``null`` and ``?``
are missing. ``label=COLUMN`` makes a categorical column's categories the class labels (it
stays in the table: a synthetic table has it too). The test split is ``test=PATH`` (a file of
the same columns) or a seeded ``test_fraction`` of the rows.
"""

from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import UsageError
from ..hookspecs import Column, DataRequest, DatasetSplits, Split
from .files import check_fraction, holdout, need_path, resolved

MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet")
MAX_CATEGORIES = 10_000
SNIFF_BYTES = 64 << 10


@dataclass(frozen=True)
class TableOptions:
    """``path``: the CSV or Parquet file (stored absolute); ``label``: a column whose categories
    are the class labels (for colours, and conditional models); ``categorical``, ``numeric``,
    ``binary``, ``count``: columns of that type (comma lists; the others are inferred);
    ``drop``: columns to leave out; ``header``: auto, yes or no (no: columns named c0, c1, ...);
    ``sep``: the separator (auto: detected); ``test``: a file of test rows (else
    ``test_fraction`` of the rows, chosen by ``seed``; 0: none held out, the test numbers are
    then those of the training rows)."""

    path: str = ""
    label: str = ""
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    binary: tuple[str, ...] = ()
    count: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    header: str = "auto"
    sep: str = "auto"
    test: str = ""
    test_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", resolved(self.path))
        object.__setattr__(self, "test", resolved(self.test))
        if self.test_fraction != 0:
            check_fraction(self.test_fraction)
        if self.header not in ("auto", "yes", "no"):
            raise ValueError(f"header must be auto, yes or no, got {self.header!r}")
        if self.sep != "auto" and len(self.sep.replace("\\t", "\t")) != 1:
            raise ValueError(f"sep must be one character (or auto), got {self.sep!r}")
        named = [c for group in (self.categorical, self.numeric, self.binary, self.count) for c in group]
        twice = sorted({c for c in named if named.count(c) > 1})
        if twice:
            raise ValueError(f"column {twice[0]!r} is given two types")


# -- reading ----------------------------------------------------------------------------------


def _number(text: Any) -> Optional[float]:
    """A cell as a number, NaN when missing, None when it is text."""
    if text is None:
        return math.nan
    if isinstance(text, bool):
        return float(text)
    if isinstance(text, (int, float)):
        return float(text)
    t = str(text).strip()
    if t.lower() in MISSING:
        return math.nan
    try:
        v = float(t)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in MISSING


def _read_csv(path: Path, options: TableOptions) -> tuple[list, list]:
    """(column names, columns of raw text cells)."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
        sample = head.decode("utf-8-sig", errors="replace")
    except OSError as exc:
        raise UsageError(f"table {path}: cannot read it ({exc.strerror or exc})") from None
    if not sample.strip():
        raise UsageError(f"table {path}: the file is empty")
    if options.sep != "auto":
        delimiter = options.sep.replace("\\t", "\t")
    else:
        try:
            delimiter = csv.Sniffer().sniff("\n".join(sample.splitlines()[:20]), ",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    names: Optional[list] = None
    columns: list = []
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="strict") as f:
            reader = csv.reader(f, delimiter=delimiter)
            first = next(reader, None)
            while first is not None and not any(c.strip() for c in first):
                first = next(reader, None)
            if first is None:
                raise UsageError(f"table {path}: the file is empty")
            header = options.header == "yes" or (
                options.header == "auto" and any(_number(c) is None and not _is_missing(c) for c in first)
            )
            if header:
                names = [c.strip() for c in first]
                rows_iter: Any = reader
            else:
                names = [f"c{j}" for j in range(len(first))]
                rows_iter = itertools.chain([first], reader)
            columns = [[] for _ in names]
            width = len(names)
            for row in rows_iter:
                if len(row) != width:
                    if not any(c.strip() for c in row):
                        continue  # a blank line
                    raise UsageError(
                        f"table {path}: line {reader.line_num} has {len(row)} fields; "
                        f"{'the header has' if header else 'the first line has'} {width}"
                    )
                for col, cell in zip(columns, row):
                    col.append(cell)
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"table {path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 CSV"
        ) from None
    except csv.Error as exc:
        raise UsageError(f"table {path}: not readable as CSV ({exc})") from None
    _check_names(path, names)
    if not columns or not columns[0]:
        raise UsageError(f"table {path}: holds a header but no rows")
    return names, columns


def _check_names(path: Path, names: list) -> None:
    seen = set()
    for j, n in enumerate(names):
        if not n:
            raise UsageError(f"table {path}: column {j + 1} has no name in the header")
        if n in seen:
            raise UsageError(f"table {path}: two columns are named {n!r}")
        seen.add(n)


def _read_parquet(path: Path) -> tuple[list, list]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError('reading Parquet needs pyarrow: pip install "vaecli[tables]"') from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow's own error kinds
        from ..errors import first_line

        raise UsageError(f"table {path}: not readable as Parquet ({first_line(exc)})") from None
    names = [str(n) for n in table.column_names]
    _check_names(path, names)
    if table.num_rows == 0:
        raise UsageError(f"table {path}: holds no rows")
    return names, [table.column(n).to_pylist() for n in names]


TEXT_BYTES_IN_MEMORY = 16  # a cell of CSV text read as a Python string and parsed: about 16x its bytes


def read_file(path: Path, options: TableOptions) -> tuple[list, list]:
    """(column names, columns of cells) of a CSV or Parquet file, read whole: a file whose cells
    would not fit in the memory available is refused in one line before it is read."""
    if path.is_dir():
        raise UsageError(f"table {path}: is a folder; give a .csv or .parquet file")
    if not path.exists():
        raise UsageError(f"table {path}: no such file")
    import torch

    from ..device import require_memory

    require_memory(
        TEXT_BYTES_IN_MEMORY * path.stat().st_size,
        f"table {path} ({path.stat().st_size / 2**20:,.0f} MB)",
        "tables are read whole for now: take a sample of the rows, or save the numbers as a .npy array (tensor:)",
        torch.device("cpu"),
    )
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path)
    return _read_csv(path, options)


# -- types ------------------------------------------------------------------------------------


class _Cells:
    """One column's cells, parsed once: which are missing, and all as numbers where they are
    (None when any cell is text)."""

    def __init__(self, cells: list) -> None:
        import numpy as np

        self.cells = cells
        texts = [c.strip() if isinstance(c, str) else c for c in cells]
        self.missing = np.fromiter(
            (
                t is None or (t.lower() in MISSING if isinstance(t, str) else isinstance(t, float) and t != t)
                for t in texts
            ),
            dtype=bool,
            count=len(texts),
        )
        try:
            numbers = np.array(["nan" if m else t for t, m in zip(texts, self.missing)], dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            numbers = None
        if numbers is not None and not np.isfinite(numbers[~self.missing]).all():
            numbers = None  # 'inf' is text here
        self.numbers = numbers

    def first_text(self) -> int:
        return next(i for i, c in enumerate(self.cells) if not self.missing[i] and _number(c) is None)


def _infer(name: str, cells: _Cells, options: TableOptions) -> str:
    for kind in ("categorical", "numeric", "binary", "count"):
        if name in getattr(options, kind):
            return kind
    if name == options.label or cells.numbers is None:
        return "categorical"
    present = set(cells.numbers[~cells.missing].tolist()) if len(cells.numbers) < 2_000_000 else {2.0}
    if present and present <= {0.0, 1.0}:
        return "binary"
    return "numeric"


def _text(cell: Any) -> str:
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def _values(path: Path, name: str, kind: str, cells: _Cells, categories: list) -> Any:
    """The cells of one column as float64 (category indices for a categorical one; NaN where
    missing). ``categories`` is extended with new ones where it is not fixed."""
    import numpy as np

    if kind == "categorical":
        index = {c: i for i, c in enumerate(categories)}
        out = np.full(len(cells.cells), np.nan)
        for row, (cell, gone) in enumerate(zip(cells.cells, cells.missing)):
            if gone:
                continue
            t = _text(cell)
            if t not in index:
                index[t] = len(categories)
                categories.append(t)
            out[row] = index[t]
        return out
    if cells.numbers is None:
        row = cells.first_text()
        raise UsageError(
            f"table {path}: column {name!r} is {kind}, but row {row + 1} holds {str(cells.cells[row])[:40]!r}; "
            f"give --dataset-option categorical={name} if it is a category"
        )
    v = cells.numbers
    present = ~np.isnan(v)
    if kind == "binary":
        bad = present & (v != 0) & (v != 1)
        if bad.any():
            row = int(np.argmax(bad))
            raise UsageError(f"table {path}: column {name!r} is binary, but row {row + 1} holds {v[row]:g}")
    if kind == "count":
        bad = present & ((v < 0) | (v != np.round(v)))
        if bad.any():
            row = int(np.argmax(bad))
            raise UsageError(
                f"table {path}: column {name!r} holds counts, but row {row + 1} holds {v[row]:g} "
                f"(counts are whole numbers from 0)"
            )
    return v


def _columns(path: Path, names: list, cells: list, options: TableOptions) -> tuple[list, list]:
    """The kept columns (``Column``) and their parsed cells, types inferred or given."""
    for what in ("categorical", "numeric", "binary", "count", "drop"):
        unknown = [c for c in getattr(options, what) if c not in names]
        if unknown:
            raise UsageError(f"table {path}: no column {unknown[0]!r} ({what}=); columns: {', '.join(names[:30])}")
    if options.label and options.label not in names:
        raise UsageError(f"table {path}: no column {options.label!r} (label=); columns: {', '.join(names[:30])}")
    if options.label in options.drop:
        raise UsageError(f"table {path}: column {options.label!r} is the label and cannot be dropped")
    kept = [(n, _Cells(c)) for n, c in zip(names, cells) if n not in options.drop]
    if not kept:
        raise UsageError(f"table {path}: every column is dropped")
    out = []
    for name, col in kept:
        if col.missing.all():
            raise UsageError(f"table {path}: column {name!r} is empty (every cell is missing); drop={name}")
        out.append(Column(name, _infer(name, col, options)))
    return out, [c for _, c in kept]


def load_table(request: DataRequest, options: TableOptions) -> DatasetSplits:
    """``table:PATH``: see the module's text."""
    import torch

    path = need_path(options.path, "table")
    if path.suffix.lower() not in TABLE_SUFFIXES and path.exists() and not path.is_dir():
        raise UsageError(f"table {path}: unknown suffix '{path.suffix or '(none)'}'; give a .csv or .parquet file")
    names, cells = read_file(path, options)
    columns, cells = _columns(path, names, cells, options)
    test_cells = None
    if options.test:
        test_path = Path(options.test)
        test_names, all_test = read_file(test_path, options)
        by_name = dict(zip(test_names, all_test))
        lacking = [c.name for c in columns if c.name not in by_name]
        if lacking:
            raise UsageError(f"table {test_path}: has no column {lacking[0]!r}, which {path.name} has")
        test_cells = [_Cells(by_name[c.name]) for c in columns]
    categories: list = [[] for _ in columns]
    # categories sorted by their text, from both files, so that their order does not depend on the rows
    for j, col in enumerate(columns):
        if col.type == "categorical":
            found = {
                _text(c)
                for part in (cells, test_cells)
                if part
                for c, gone in zip(part[j].cells, part[j].missing)
                if not gone
            }
            if len(found) > MAX_CATEGORIES:
                raise UsageError(
                    f"table {path}: column {col.name!r} has {len(found):,} categories (at most {MAX_CATEGORIES:,}); "
                    f"if it is a number, give numeric={col.name}; if an identifier, drop={col.name}"
                )
            categories[j] = sorted(found, key=_category_key)
    columns = [Column(c.name, c.type, tuple(categories[j])) for j, c in enumerate(columns)]

    def matrix(parts: list, where: Path) -> Any:
        import numpy as np

        values = [_values(where, c.name, c.type, part, list(c.categories)) for c, part in zip(columns, parts)]
        return torch.from_numpy(np.stack(values, axis=1))  # float64: cells kept exactly

    everything = matrix(cells, path)
    held_out = None
    if test_cells is not None:
        train, test = everything, matrix(test_cells, Path(options.test))
    elif options.test_fraction == 0:  # no held-out rows (reading rows to score them, say)
        train = test = everything
    else:
        held_out = holdout(len(everything), options.test_fraction, options.seed, f"table {path}")
        train, test = everything[~held_out], everything[held_out]
    labels: tuple = (None, None)
    class_names = None
    if options.label:
        j = [c.name for c in columns].index(options.label)
        class_names = list(columns[j].categories)
        codes = [torch.nan_to_num(x[:, j], nan=-1).long() for x in (train, test)]
        if any(bool((y < 0).any()) for y in codes):
            raise UsageError(f"table {path}: the label column {options.label!r} has missing cells")
        labels = tuple(codes)
    return DatasetSplits(
        Split(train, labels[0]),
        Split(test, labels[1]),
        class_names=class_names,
        columns=columns,
        kind="table",
        held_out=held_out,
    )


def _category_key(text: str) -> tuple:
    """Numbers in numeric order, then text."""
    v = _number(text)
    return (0, v, "") if v is not None and not math.isnan(v) else (1, 0.0, text)
