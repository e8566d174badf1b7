"""Kinds of data: images, real vectors, integer counts and tables of typed columns.

A kind says what an example looks like, how raw values become model inputs and back, which
likelihoods and architectures take it, and how a batch is written. Images are the kind of
every checkpoint that records no ``layout``; rows (the other three) are described by a
``Layout``, learned on the training split and recorded in the checkpoint's ``model`` section:

- each column's type and, in the model's input row of ``features`` values, its ``start`` and
  ``width`` (a categorical column is one-hot over its categories: ``width`` = their number);
- a numeric column's ``shift`` and ``scale`` (its mean and standard deviation on the training
  split): the model sees ``(x - shift) / scale`` and its likelihood adds ``-log scale``, so that
  every log-likelihood is in the data's own units;
- a table's numeric column that is non-negative and strongly right-skewed (skewness above
  ``SKEWED``: incomes, durations, amounts with a long tail) is modelled as log(1 + x)
  (``transform``), its density in x's units through the Jacobian -log(1 + x);
- whether any cell is missing (NaN): missing cells are 0 for the encoder and drop out of
  log p(x|z) (Nazabal et al. 2020, HI-VAE).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

import torch

from .errors import CheckpointError, UsageError
from .hookspecs import KINDS

__all__ = [
    "KINDS",
    "COLUMN_TYPES",
    "ColumnLayout",
    "Layout",
    "kind_of",
    "layout_of",
    "learn",
    "to_model",
    "from_model",
    "accepts",
    "check_parts",
    "default_likelihood",
    "ROW_SUFFIXES",
]

COLUMN_TYPES = ("numeric", "categorical", "binary", "count")
# the data ranges (``LikelihoodSpec.data_range``) each kind can be modelled with
ACCEPTS = {
    "image": ("binary", "unit", "8bit", "real"),
    "vector": ("real",),
    "counts": ("count", "real"),
    "table": ("table",),
}
DEFAULT_LIKELIHOOD = {"image": "bernoulli", "vector": "gaussian", "counts": "negbin", "table": "table"}
ROW_SUFFIXES = (".csv", ".npy", ".parquet")


@dataclass(frozen=True)
class ColumnLayout:
    """A column of rows as the model sees it (see the module's text)."""

    name: str
    type: str
    start: int
    width: int = 1
    categories: tuple = ()
    shift: float = 0.0
    scale: float = 1.0
    low: Optional[float] = None  # a numeric column's range and decimals on the training split:
    high: Optional[float] = None  # decoded values are clipped to the range and rounded so
    decimals: int = -1  # (-1: not rounded; 0: whole numbers)
    transform: str = ""  # "log1p": the model sees log(1 + x), scaled

    @property
    def stop(self) -> int:
        return self.start + self.width


@dataclass(frozen=True)
class Layout:
    """The rows of a model: their kind, columns and scaling (recorded as ``model.layout``)."""

    kind: str
    columns: tuple = ()
    missing: bool = False
    labels: str = ""  # the column whose categories are the class labels, if any

    @property
    def features(self) -> int:
        """F: the model's input values per row."""
        return max((c.stop for c in self.columns), default=0)

    @property
    def names(self) -> list:
        return [c.name for c in self.columns]

    def of_type(self, *types: str) -> list:
        return [c for c in self.columns if c.type in types]

    def log_scale(self) -> torch.Tensor:
        """``log scale`` of each model input ``(F,)`` (0 except for scaled numeric columns)."""
        out = torch.zeros(self.features, device="cpu")  # a buffer, moved with the model
        for c in self.columns:
            if c.type == "numeric":
                out[c.start] = math.log(c.scale)
        return out

    def feature_types(self) -> list:
        """The type of the column each model input belongs to ``[F]``."""
        return [c.type for c in self.columns for _ in range(c.width)]

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "missing": self.missing,
            "labels": self.labels,
            "columns": [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(c).items()} for c in self.columns
            ],
        }

    @classmethod
    def from_json(cls, value: Any) -> Layout:
        try:
            columns = tuple(
                ColumnLayout(**{**c, "categories": tuple(str(x) for x in c.get("categories", ()))})
                for c in value["columns"]
            )
            layout = cls(str(value["kind"]), columns, bool(value.get("missing", False)), str(value.get("labels", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"the model's layout of rows is malformed ({type(exc).__name__}: {exc})"[:300]
            ) from None
        start = 0
        for c in sorted(columns, key=lambda c: c.start):  # the inputs, each column's once, none left out
            bad = c.type not in COLUMN_TYPES or c.start != start or c.width < 1 or not (c.scale > 0)
            if bad or c.transform not in ("", "log1p"):
                raise CheckpointError(f"the model's layout of rows is malformed (column {c.name!r})"[:300])
            if c.type == "categorical" and len(c.categories) != c.width:
                raise CheckpointError(f"the model's layout of rows is malformed (categories of {c.name!r})"[:300])
            start = c.stop
        if layout.kind not in KINDS[1:] or not columns:
            raise CheckpointError("the model's layout of rows is malformed (kind or columns)")
        return layout


def layout_of(section: dict) -> Optional[Layout]:
    """The rows' layout a ``model`` section records; None for images."""
    value = section.get("layout")
    return None if value is None else Layout.from_json(value)


def kind_of(meta_or_section: dict) -> str:
    """The kind of data of a checkpoint's metadata (or its ``model`` section)."""
    section = meta_or_section.get("model", meta_or_section)
    layout = section.get("layout") if isinstance(section, dict) else None
    return str(layout.get("kind", "image")) if isinstance(layout, dict) else "image"


# -- learning the layout and converting rows ------------------------------------------------------


TYPE_ORDER = ("numeric", "binary", "count", "categorical")  # the model's inputs: the columns of each type together


def learn(kind: str, columns: list, train: torch.Tensor, labels: str = "") -> Layout:
    """The layout of rows ``train`` ``(N, len(columns))`` of ``columns`` (``Column``): numeric
    columns scaled by their mean and standard deviation on these rows (counts are modelled as
    they are). The model's inputs hold the columns of each type together, in ``TYPE_ORDER``
    (so that a likelihood reads each type as one slice), in the table's order within a type."""
    for col in columns:
        if col.type not in COLUMN_TYPES:
            raise UsageError(f"column {col.name!r}: unknown type {col.type!r}; types: {', '.join(COLUMN_TYPES)}")
    widths = [len(c.categories) if c.type == "categorical" else 1 for c in columns]
    starts, start = [0] * len(columns), 0
    for t in TYPE_ORDER:
        for j, c in enumerate(columns):
            if c.type == t:
                starts[j], start = start, start + widths[j]
    out = []
    present = ~torch.isnan(train)
    for j, col in enumerate(columns):
        values = train[present[:, j], j].double()
        if len(values) == 0:
            raise UsageError(
                f"column {col.name!r} is empty in the training split: every cell is missing; drop it "
                f"(--dataset-option drop={col.name})"
            )
        shift, scale, width = 0.0, 1.0, 1
        low = high = None
        decimals = -1
        transform = ""
        if col.type == "numeric":
            if kind == "table":  # a table's values keep their range and decimals on output (vectors are draws)
                low, high = float(values.min()), float(values.max())
                decimals = _decimals(values)
                if low >= 0 and _skewness(values) > SKEWED:
                    transform, values = "log1p", torch.log1p(values)
            shift = float(values.mean())
            std = float(values.std(unbiased=False)) if len(values) > 1 else 0.0
            scale = std if std > 1e-12 * max(1.0, abs(shift)) and math.isfinite(std) else 1.0
        elif col.type == "categorical":
            width = len(col.categories)
            if width < 1:
                raise UsageError(f"column {col.name!r} is categorical but has no categories")
        out.append(
            ColumnLayout(
                col.name,
                col.type,
                starts[j],
                width,
                tuple(col.categories),
                shift,
                scale,
                low,
                high,
                decimals,
                transform,
            )
        )
    return Layout(kind, tuple(out), bool((~present).any()), labels)


SKEWED = 2.0  # the skewness above which a non-negative numeric column of a table is modelled as log(1 + x)


def _skewness(values: torch.Tensor) -> float:
    std = float(values.std(unbiased=False))
    return float(((values - values.mean()) ** 3).mean()) / std**3 if std > 0 else 0.0


def _decimals(values: torch.Tensor) -> int:
    """The fewest decimals (0 to 6) that write every value exactly, or -1."""
    for d in range(7):
        scaled = values * 10.0**d
        if bool((scaled - scaled.round()).abs().le(1e-6 * scaled.abs().clamp(min=1.0)).all()):
            return d
    return -1


def to_model(layout: Layout, rows: torch.Tensor) -> torch.Tensor:
    """Raw rows ``(N, columns)`` -> model inputs ``(N, F)`` float32 (NaN where missing)."""
    rows = torch.as_tensor(rows)
    if rows.dim() != 2 or rows.shape[1] != len(layout.columns):
        raise UsageError(
            f"rows of {tuple(rows.shape[1:])} values; the model takes rows of {len(layout.columns)} columns"
        )
    out = torch.empty((rows.shape[0], layout.features), dtype=torch.float32)
    for j, c in enumerate(layout.columns):
        v = rows[:, j].float()
        if c.type == "numeric":
            v64 = rows[:, j].double()
            if c.transform == "log1p":
                v64 = torch.log1p(v64.clamp(min=0))
            out[:, c.start] = (v64 - c.shift).div(c.scale).float()
        elif c.type == "categorical":
            missing = torch.isnan(v)
            index = torch.where(missing, torch.zeros_like(v), v).long().clamp(0, c.width - 1)
            block = torch.nn.functional.one_hot(index, c.width).float()
            block[missing] = math.nan
            out[:, c.start : c.stop] = block
        else:
            out[:, c.start] = v
    return out


def from_model(layout: Layout, values: torch.Tensor) -> torch.Tensor:
    """Decoded model outputs ``(N, F)`` (a likelihood's mean or draw) -> raw rows ``(N, columns)``
    float64: numeric columns unscaled, a categorical column's most probable (or drawn) category
    index, binary cells 0 or 1, counts rounded to whole numbers."""
    values = values.detach().to("cpu", torch.float64)
    out = torch.empty((values.shape[0], len(layout.columns)), dtype=torch.float64)
    for j, c in enumerate(layout.columns):
        v = values[:, c.start]
        if c.type == "numeric":
            value = v * c.scale + c.shift
            if c.transform == "log1p":
                value = torch.expm1(value)
            if c.low is not None and c.high is not None:
                value = value.clamp(c.low, c.high)
            if c.decimals >= 0:
                value = (value * 10.0**c.decimals).round() / 10.0**c.decimals
            out[:, j] = value
        elif c.type == "categorical":
            out[:, j] = values[:, c.start : c.stop].argmax(dim=1).double()
        elif c.type == "binary":
            out[:, j] = (v >= 0.5).double()
        else:
            out[:, j] = v.clamp(min=0).round()
    return out


# -- which parts take which kind -----------------------------------------------------------------


def accepts(kind: str) -> tuple:
    """The likelihoods' data ranges that model ``kind``."""
    return ACCEPTS[kind]


def default_likelihood(kind: str) -> str:
    return DEFAULT_LIKELIHOOD[kind]


def check_parts(kind: str, arch_spec: Any, likelihood_spec: Any, arch_names: list, likelihood_names: list) -> None:
    """Refuse, in one line, an architecture or a likelihood that does not take ``kind``."""
    takes = getattr(arch_spec, "kinds", ("image",))
    if kind not in takes:
        raise UsageError(
            f"architecture '{arch_spec.name}' takes {', '.join(takes)} data, not {kind} rows; "
            f"for {kind} data use: {', '.join(arch_names) or 'none installed'}"
        )
    if likelihood_spec.data_range not in ACCEPTS[kind]:
        what = "images" if kind == "image" else f"{kind} data"
        raise UsageError(
            f"likelihood '{likelihood_spec.name}' models {likelihood_spec.data_range} values, not {what}; "
            f"for {what} use: {', '.join(likelihood_names) or 'none installed'}"
        )


def conform(layout: Layout, columns: list, raw: torch.Tensor, source: str) -> tuple[torch.Tensor, list]:
    """Rows read from ``source`` (``columns``, raw values) as the rows of ``layout``: columns
    matched by name (others left out, with a warning), categories by their text. A missing
    column, or a category the model never saw, is a one-line error."""
    by_name = {c.name: j for j, c in enumerate(columns)}
    lacking = [c.name for c in layout.columns if c.name not in by_name]
    if lacking:
        raise UsageError(
            f"{source}: has no column {lacking[0]!r}; the model was trained on {', '.join(layout.names[:20])}"
        )
    out = torch.empty((raw.shape[0], len(layout.columns)), dtype=torch.float64)
    for j, c in enumerate(layout.columns):
        k = by_name[c.name]
        v = raw[:, k].double()
        if c.type == "categorical":
            given = list(columns[k].categories) if columns[k].type == "categorical" else None
            index = {name: i for i, name in enumerate(c.categories)}
            mapped = torch.full_like(v, math.nan)
            present = ~torch.isnan(v)
            for code in torch.unique(v[present]).tolist():
                text = given[int(code)] if given is not None else _number_text(code)
                if text not in index:
                    row = int(torch.nonzero(v == code)[0]) + 1
                    known = ", ".join(map(str, c.categories[:12])) + (" ..." if len(c.categories) > 12 else "")
                    raise UsageError(
                        f"{source}: column {c.name!r} holds {text!r} (row {row}), a category the model never saw "
                        f"in training (it knows: {known})"
                    )
                mapped[v == code] = float(index[text])
            out[:, j] = mapped
        elif columns[k].type == "categorical":
            raise UsageError(f"{source}: column {c.name!r} holds text; the model takes {c.type} values there")
        else:
            out[:, j] = v
    extra = [c.name for c in columns if c.name not in set(layout.names)]
    warnings = [f"{source}: left out column(s) the model does not know: {', '.join(extra[:10])}"] if extra else []
    return out, warnings


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def type_options(layout: Layout) -> dict:
    """The ``table`` dataset options that read a file's columns as the types ``layout`` has."""
    out: dict = {}
    for t in COLUMN_TYPES:
        names = [c.name for c in layout.columns if c.type == t]
        if names:
            out[t] = ",".join(names)
    return out
