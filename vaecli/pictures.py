"""Pictures of a model's latent space: a scatter of codes, the learned manifold, traversals.
Each writes one figure and returns its size in pixels."""

from __future__ import annotations

import torch

from . import latents, viz
from .console import warn
from .errors import UsageError
from .inputs import class_name

__all__ = ["scatter", "manifold", "traverse", "factor_information", "captured"]

MAX_TRAVERSE_ROWS = 64


def scatter(model, output, inputs, mean, method, chosen, color_by):
    labels = values = None
    value_name = ""
    if color_by is None:
        color_by = "label" if inputs.labels is not None else None
    if color_by == "label":
        if inputs.labels is None:
            raise UsageError(f"{inputs.source} has no labels to colour by")
        labels = inputs.labels
    elif color_by is not None:
        if color_by not in inputs.factors:
            known = ", ".join(["label"] + sorted(inputs.factors))
            raise UsageError(f"--color-by {color_by}: {inputs.source} records {known}")
        values, value_name = inputs.factors[color_by].float(), color_by
    d = model.latent_dim
    if d == 2 or method == "dims":
        i, j = chosen
        points = mean[:, [i, j]]
        xlabel, ylabel, how = f"z{i}", f"z{j}", ""
    else:
        points, share = latents.pca(mean)
        xlabel, ylabel = (f"PC{k + 1} ({100 * share[k]:.0f}% of variance)" for k in range(2))
        how = ", PCA"
    what = "images" if inputs.rows is None else "rows"
    title = f"Posterior means of {len(mean)} {what} of {inputs.source} ({d}-D latent{how})"
    return viz.scatter(
        points,
        output,
        title=title,
        xlabel=xlabel,
        ylabel=ylabel,
        labels=labels,
        class_names=inputs.class_names if color_by == "label" else None,
        values=values,
        value_name=value_name,
    )


def _decoded_as(model, condition) -> str:
    return "" if condition is None else f", class {class_name(model, int(condition[0]))}"


def manifold(model, output, chosen, size, extent, condition=None):
    i, j = chosen
    values = latents.normal_grid(size, extent)
    z = torch.zeros(size, size, model.latent_dim, dtype=torch.float64)
    z[:, :, i] = values.view(1, size)  # columns: z_i left to right
    z[:, :, j] = values.flip(0).view(size, 1)  # rows: z_j top to bottom, largest first
    images = model.decode(
        z.view(-1, model.latent_dim), labels=None if condition is None else condition.repeat(size * size)
    )
    ticks = [f"{v:.2f}" if size <= 12 or k % max(1, size // 8) == 0 else "" for k, v in enumerate(values.tolist())]
    others = " (other dimensions at 0)" if model.latent_dim > 2 else ""
    spacing = "inverse normal CDF" if not extent else f"even over [-{extent:g}, {extent:g}]"
    return viz.image_table(
        images,
        size,
        output,
        title=f"Learned manifold: z{i} and z{j}, {spacing}{others}{_decoded_as(model, condition)}",
        row_labels=list(reversed(ticks)),
        col_labels=ticks,
        xlabel=f"z{i}",
        ylabel=f"z{j}",
    )


def traverse(model, output, inputs, mean, kl, by_kl, steps, extent, condition=None, by_kl_name=True):
    """Rows: the latent dimensions in ``by_kl`` order (their KL, or with ``by_kl_name`` False
    the variance of a deterministic code), each swept over ``steps`` values."""
    if len(by_kl) > MAX_TRAVERSE_ROWS:
        warn(
            f"showing the {MAX_TRAVERSE_ROWS} of {len(by_kl)} latent dimensions with the largest "
            f"{'KL' if by_kl_name else 'variance'}"
        )
        by_kl = by_kl[:MAX_TRAVERSE_ROWS]
    values = latents.normal_grid(steps, extent)
    base = mean[0].double()
    z = base.repeat(len(by_kl), steps, 1)  # (rows, S, D)
    for row, d in enumerate(by_kl):
        z[row, :, d] = values
    images = model.decode(
        z.view(-1, model.latent_dim), labels=None if condition is None else condition.repeat(len(by_kl) * steps)
    )
    measure = "KL" if by_kl_name else "var"
    knows = captured(mean, inputs.factors) if inputs.factors else {}
    row_labels = [f"z{d}  {measure} {kl[d]:.2f}" + (f"  {knows[d]}" if d in knows else "") for d in by_kl]
    col_labels = [f"{v:.1f}" for v in values.tolist()]
    base_name = inputs.source if len(inputs) == 1 else f"image 0 of {inputs.source}"
    return viz.image_table(
        images,
        len(by_kl),
        output,
        title=f"Latent traversal from {base_name}, rows by " + ("KL (nats)" if by_kl_name else "variance of the code"),
        row_labels=row_labels,
        col_labels=col_labels,
        xlabel="value of the swept dimension",
    )


def captured(mean, factors: dict, threshold: float = 0.2) -> dict:
    """{dimension: the factor it knows most of} for the dimensions whose mutual information
    with some factor is at least ``threshold`` of that factor's entropy."""
    from .disentanglement import information_matrix

    names, matrix = information_matrix(mean.double().cpu().numpy(), {k: v.cpu().numpy() for k, v in factors.items()})
    if not names:
        return {}
    return {d: names[int(row.argmax())] for d, row in enumerate(matrix) if row.max() >= threshold}


def factor_information(model, output, inputs, mean, kl, by_kl, by_kl_name=True):
    """The heat map of each latent dimension's mutual information with each factor of
    ``inputs``, over the factor's entropy; rows in ``by_kl`` order."""
    from .disentanglement import information_matrix

    if not inputs.factors:
        raise UsageError(
            f"{inputs.source} has no factors of variation to draw against; the datasets shapes, dsprites, "
            f"3dshapes and celeba record them, and a folder: or tensor: dataset takes them from a factors file"
        )
    names, matrix = information_matrix(
        mean.double().cpu().numpy(), {k: v.cpu().numpy() for k, v in inputs.factors.items()}
    )
    if not names:
        raise UsageError(f"no factor of {inputs.source} takes more than one value")
    rows = by_kl[:MAX_TRAVERSE_ROWS]
    measure = "KL" if by_kl_name else "var"
    return viz.heatmap(
        matrix[rows],
        output,
        title=f"What each latent dimension knows of each factor ({len(inputs)} images of {inputs.source})",
        row_labels=[f"z{d}  {measure} {kl[d]:.2f}" for d in rows],
        col_labels=names,
        value_name="I(z_d; factor) / H(factor)",
    )
