"""Pictures of rows: real against generated, column by column (histograms of numbers, bars of
categories), and the difference of the two tables' correlation matrices as a heat map."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .kinds import Layout
from .viz import _figure, _save_figure

__all__ = ["compare", "correlations"]

MAX_PANELS = 24  # columns drawn (the first ones); the heat map takes every numeric column
MAX_BARS = 12  # categories drawn per column (the most frequent among the real rows)


def correlations(layout: Layout, raw: torch.Tensor) -> torch.Tensor:
    """Pearson correlations ``(C, C)`` of the numeric, binary and count columns of raw rows,
    each pair over the rows where both are present."""
    cols = [j for j, c in enumerate(layout.columns) if c.type != "categorical"]
    x = raw[:, cols].double()
    out = torch.eye(len(cols), dtype=torch.float64)
    for a in range(len(cols)):
        for b in range(a + 1, len(cols)):
            both = ~(torch.isnan(x[:, a]) | torch.isnan(x[:, b]))
            u, v = x[both, a], x[both, b]
            su, sv = u.std(), v.std()
            r = ((u - u.mean()) * (v - v.mean())).mean() / (su * sv) if len(u) > 1 and su > 0 and sv > 0 else 0.0
            out[a, b] = out[b, a] = float(r)
    return out


def compare(layout: Layout, real: torch.Tensor, generated: torch.Tensor, path: Path, title: str) -> tuple[int, int]:
    """One figure: a panel per column (real and generated overlaid, as densities) and the
    correlation difference (generated - real) of the non-categorical columns."""
    import numpy as np

    columns = list(layout.columns)[:MAX_PANELS]
    numeric = [c for c in layout.columns if c.type != "categorical"]
    panels = len(columns) + (1 if len(numeric) > 1 else 0)
    per_row = min(4, panels)
    rows = math.ceil(panels / per_row)
    fig = _figure(3.4 * per_row, 2.7 * rows + 0.4)
    fig.suptitle(title)
    real_np, gen_np = real.double().numpy(), generated.double().numpy()
    for k, c in enumerate(columns):
        ax = fig.add_subplot(rows, per_row, k + 1)
        j = list(layout.columns).index(c)
        a, b = real_np[:, j], gen_np[:, j]
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
        if c.type in ("categorical", "binary"):
            names = list(c.categories) if c.type == "categorical" else ["0", "1"]
            counts_a = np.bincount(a.astype(int), minlength=len(names)) / max(1, len(a))
            counts_b = np.bincount(b.astype(int), minlength=len(names)) / max(1, len(b))
            shown = np.argsort(-counts_a)[:MAX_BARS]
            pos = np.arange(len(shown))
            ax.bar(pos - 0.2, counts_a[shown], 0.4, label="real", color="#4c72b0")
            ax.bar(pos + 0.2, counts_b[shown], 0.4, label="generated", color="#dd8452")
            ax.set_xticks(pos, [str(names[i])[:10] for i in shown], rotation=45 if len(shown) > 4 else 0, fontsize=7)
            ax.set_ylabel("share", fontsize=8)
        else:
            low, high = np.percentile(np.concatenate([a, b]), [0.5, 99.5]) if len(a) + len(b) else (0, 1)
            if (c.type == "count" or getattr(c, "decimals", -1) == 0) and high - low < 60:  # whole numbers: a bin each
                bins = np.arange(math.floor(low), math.ceil(high) + 2) - 0.5
            else:
                bins = np.linspace(low, high if high > low else low + 1, 40)
            ax.hist(a, bins=bins, density=True, alpha=0.55, label="real", color="#4c72b0")
            ax.hist(b, bins=bins, density=True, alpha=0.55, label="generated", color="#dd8452")
            ax.set_ylabel("density", fontsize=8)
        ax.set_title(f"{c.name} ({c.type})", fontsize=9)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7)
    if len(numeric) > 1:
        ax = fig.add_subplot(rows, per_row, panels)
        diff = (correlations(layout, generated) - correlations(layout, real)).numpy()
        image = ax.imshow(diff, cmap="RdBu_r", vmin=-1, vmax=1)
        names = [c.name[:10] for c in numeric]
        ticks = range(len(names)) if len(names) <= 16 else []
        ax.set_xticks(list(ticks), [names[i] for i in ticks], rotation=90, fontsize=6)
        ax.set_yticks(list(ticks), [names[i] for i in ticks], fontsize=6)
        ax.set_title(f"correlation, generated - real\n(largest |diff| {np.abs(diff).max():.2f})", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return _save_figure(fig, path)
