"""Latent codes on disk: what ``vae encode`` writes and ``vae decode`` reads.

=============  =============================================================================
suffix         content
=============  =============================================================================
``.npy``       the posterior means, float32 ``[N, D]``
``.csv``       a header ``index,label,class,z0,...,z{D-1}`` and one row per image
``.safetensors``  tensors ``mean`` and ``logvar`` ``[N, D]`` and ``labels`` ``[N]`` when known;
               metadata ``format = vaecli-latents`` with the checkpoint and input it came from
=============  =============================================================================

Reading accepts any of these, and any ``.npy`` or ``.csv`` of numbers ``[N, D]``; nothing is
unpickled (``numpy.load(allow_pickle=False)``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Optional

import torch

from .checkpoint import atomic_write
from .errors import UsageError, VaeError
from .header import safetensors_header

SUFFIXES = (".npy", ".csv", ".safetensors")
FORMAT = "vaecli-latents"
_Z_COLUMN = re.compile(r"z\d+$")


def check_suffix(path: Path, flag: str) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise UsageError(f"{flag} {path}: the file name must end in one of {', '.join(SUFFIXES)}")


# -- writing ----------------------------------------------------------------------------------


def write(
    path: Path,
    mean: torch.Tensor,
    logvar: Optional[torch.Tensor],
    labels: Optional[torch.Tensor],
    class_names: Optional[list],
    meta: dict,
) -> None:
    """Write latents atomically in the format the suffix of ``path`` names."""
    path = Path(path)
    mean = mean.detach().float().cpu()
    suffix = path.suffix.lower()
    if suffix == ".npy":
        import numpy as np

        raw = io.BytesIO()
        np.save(raw, mean.numpy(), allow_pickle=False)
        data = raw.getvalue()
    elif suffix == ".csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        header = ["index"] + (["label", "class"] if labels is not None else [])
        w.writerow(header + [f"z{i}" for i in range(mean.shape[1])])
        for i, row in enumerate(mean.tolist()):
            lead: list = [i]
            if labels is not None:
                label = int(labels[i])
                names = class_names or []
                lead += [label, names[label] if 0 <= label < len(names) else ""]
            w.writerow(lead + [repr(v) for v in row])
        data = buf.getvalue().encode()
    elif suffix == ".safetensors":
        from safetensors.torch import save

        tensors = {"mean": mean.contiguous()}
        if logvar is not None:
            tensors["logvar"] = logvar.detach().float().cpu().contiguous()
        if labels is not None:
            tensors["labels"] = labels.detach().long().cpu().contiguous()
        info = {"format": FORMAT, **{k: json.dumps(v) for k, v in meta.items()}}
        if class_names is not None:
            info["class_names"] = json.dumps(list(class_names))
        data = save(tensors, metadata=info)
    else:
        check_suffix(path, "-o")
        return
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise VaeError(f"could not write {path}: {exc.strerror or exc}") from None


# -- reading ----------------------------------------------------------------------------------


def parse_rows(rows: list[str], flag: str = "--z") -> torch.Tensor:
    """``["0.1,-2,3", ...]`` -> ``(N, D)`` floats."""
    values = []
    for text in rows:
        try:
            values.append([float(v) for v in text.replace(" ", "").split(",") if v != ""])
        except ValueError:
            raise UsageError(f"{flag} {text!r}: give numbers separated by commas, e.g. {flag} 0.5,-1") from None
    if len({len(v) for v in values}) > 1:
        raise UsageError(f"{flag}: every row needs the same number of values, got {sorted({len(v) for v in values})}")
    return torch.tensor(values, dtype=torch.float64)


def read(path: Path) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """A latent file -> (latents ``(N, D)`` float64, labels ``(N,)`` or None); a UsageError
    saying what is wrong with anything else."""
    path = Path(path).expanduser()
    check_suffix(path, "LATENTS")
    if path.is_dir():
        raise UsageError(f"LATENTS {path} is a folder; give a {', '.join(SUFFIXES)} file")
    if not path.is_file():
        raise UsageError(f"LATENTS {path}: no such file")
    suffix = path.suffix.lower()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"LATENTS {path}: cannot read it ({exc.strerror or exc})") from None
    if not raw:
        raise UsageError(f"LATENTS {path} is empty")
    labels = None
    if suffix == ".npy":
        z = _read_npy(path, raw)
    elif suffix == ".csv":
        z = _read_csv(path, raw)
    else:
        z, labels = _read_safetensors(path, raw)
    if z.dim() == 1:
        z = z.unsqueeze(0)
    if z.dim() != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise UsageError(f"LATENTS {path}: expected a table [N, D] of latent codes, got shape {list(z.shape)}")
    return z, labels


def _read_npy(path: Path, raw: bytes) -> torch.Tensor:
    import numpy as np
    from numpy.lib import format as npy_format

    if raw[:1] == b"\x80" and raw[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):  # a pickle (protocol 2 to 5)
        raise UsageError(f"LATENTS {path} holds Python objects (a pickle); refused, it is never unpickled")
    if not raw.startswith(npy_format.MAGIC_PREFIX):  # np.load would also open a zip (.npz)
        raise UsageError(f"LATENTS {path} is not a .npy file (it does not start with the .npy signature)")
    stream = io.BytesIO(raw)
    try:  # the header first: the array it declares must fit the bytes before numpy allocates it
        major, _ = npy_format.read_magic(stream)
        read_header = npy_format.read_array_header_1_0 if major == 1 else npy_format.read_array_header_2_0
        shape, _, dtype = read_header(stream)
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, tokenize errors
        why = " ".join(str(exc).split())[:80]
        raise UsageError(f"LATENTS {path} is not a readable .npy file (bad header: {why})") from None
    if dtype.hasobject:
        raise UsageError(f"LATENTS {path} holds Python objects (a pickle); refused, it is never unpickled")
    if dtype.kind not in "fiu":
        raise UsageError(f"LATENTS {path}: the array has dtype {dtype}; latents must be numbers (float or int)")
    declared, held = math.prod(shape) * dtype.itemsize, len(raw) - stream.tell()
    if any(not 0 <= n <= np.iinfo(np.intp).max for n in shape) or declared > held:
        raise UsageError(
            f"LATENTS {path} is truncated or corrupt: its header declares shape "
            f"{str(list(shape))[:60]} of {dtype} but only {held} bytes of data follow"
        )
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UsageError(
                f"LATENTS {path} holds Python objects (a pickle); refused, it is never unpickled"
            ) from None
        raise UsageError(f"LATENTS {path} is not a readable .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise UsageError(f"LATENTS {path} is not a readable .npy file ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise UsageError(f"LATENTS {path} is not a single array")
    if array.dtype.kind not in "fiu":
        raise UsageError(f"LATENTS {path}: the array has dtype {array.dtype}; latents must be numbers (float or int)")
    with np.errstate(all="ignore"):  # float128 too big (or invalid) for float64: inf or nan, refused by check
        return torch.from_numpy(array.astype(np.float64))


def _read_csv(path: Path, raw: bytes) -> torch.Tensor:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"LATENTS {path} is not a text CSV file") from None
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise UsageError(f"LATENTS {path} is not a readable CSV file ({exc})") from None
    if not rows:
        raise UsageError(f"LATENTS {path} has no rows")
    columns = None
    if not _numeric(rows[0]):  # a header: use the z0, z1, ... columns, or all of them
        header = [c.strip() for c in rows.pop(0)]
        columns = [i for i, c in enumerate(header) if _Z_COLUMN.match(c)] or None
    values = []
    for line, row in enumerate(rows, start=2 if columns is not None else 1):
        cells = [row[i] for i in columns if i < len(row)] if columns else row
        try:
            values.append([float(c) for c in cells])
        except ValueError:
            raise UsageError(f"LATENTS {path}, row {line}: not all values are numbers") from None
    if not values:
        raise UsageError(f"LATENTS {path} has a header but no rows")
    if len({len(v) for v in values}) > 1:
        raise UsageError(f"LATENTS {path}: rows have different numbers of values")
    return torch.tensor(values, dtype=torch.float64)


def _numeric(row: list[str]) -> bool:
    try:
        [float(c) for c in row]
        return True
    except ValueError:
        return False


def _read_safetensors(path: Path, raw: bytes) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(raw)
        metadata = safetensors_header(raw).get("__metadata__") or {}
    except (SafetensorError, ValueError, OverflowError, RuntimeError, UnicodeDecodeError) as exc:
        raise UsageError(f"LATENTS {path} is not a readable safetensors file ({str(exc)[:80]})") from None
    except KeyError as exc:  # safetensors knows dtypes (F4, F8_E8M0, ...) that torch does not
        raise UsageError(
            f"LATENTS {path} holds a tensor of dtype {exc.args[0]}, which torch cannot read; latents must be numbers"
        ) from None
    if metadata.get("format") == "vaecli":
        raise UsageError(
            f"LATENTS {path} is a model checkpoint, not latents; make latents with "
            f"`vae encode CKPT INPUT -o latents.safetensors`"
        )
    if "mean" in tensors:
        z = tensors["mean"]
    else:
        matrices = [n for n, t in tensors.items() if t.dim() in (1, 2) and t.is_floating_point()]
        if len(matrices) != 1:
            raise UsageError(
                f"LATENTS {path}: no tensor named 'mean', and not exactly one float "
                f"matrix among {sorted(tensors) or 'no tensors'}"
            )
        z = tensors[matrices[0]]
    if not (z.is_floating_point() or z.dtype in (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8)):
        raise UsageError(f"LATENTS {path}: tensor of dtype {z.dtype}; latents must be numbers")
    labels = tensors.get("labels")
    if labels is not None and (labels.dim() != 1 or labels.shape[0] != (z.shape[0] if z.dim() == 2 else 1)):
        labels = None
    return z.double(), labels


def check(z: torch.Tensor, latent_dim: int, source: str) -> torch.Tensor:
    """Latents the model can decode: ``(N, latent_dim)``, all finite -> float32."""
    if z.shape[1] != latent_dim:
        raise UsageError(
            f"{source}: the latents have {z.shape[1]} dimensions but the model's latent space has {latent_dim}"
        )
    bad = ~torch.isfinite(z).all(dim=1)
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        raise UsageError(f"{source}: {int(bad.sum())} row(s) hold NaN or infinite values (first: row {row}); refused")
    too_big = z.abs().max().item()
    if too_big > 1e6:
        raise UsageError(f"{source}: values up to {too_big:.3g}; latents of a VAE lie within a few units of 0")
    return z.float()


# -- geometry of the latent space -------------------------------------------------------------


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int, method: str = "slerp") -> torch.Tensor:
    """Paths from rows of ``a`` to rows of ``b`` ``(K, D)``: ``(K, steps, D)``, both ends included.

    ``lerp`` is the straight line; ``slerp`` the great-circle path of White (2016), "Sampling
    Generative Networks", which keeps the norm typical of Gaussian draws in high dimensions
    (the straight line passes near the origin, where the prior puts almost no mass).
    """
    dtype, device = a.dtype, a.device
    a, b = a.cpu().double().unsqueeze(1), b.cpu().double().unsqueeze(1)  # (K, 1, D), float64: see below
    t = torch.linspace(0, 1, steps, dtype=torch.float64).view(1, steps, 1)  # (1, S, 1)
    path = (1 - t) * a + t * b
    if method == "slerp":
        cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).clamp(-1, 1).unsqueeze(-1)  # (K, 1, 1)
        omega = torch.arccos(cos)
        sin = torch.sin(omega)
        arc = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / sin.clamp_min(1e-12)
        # (anti)parallel ends have no unique great circle: take the straight line. float64 keeps
        # sin(omega) of exactly opposite float32 codes far below the threshold.
        path = torch.where(sin.abs() < 1e-6, path, arc)
    elif method != "lerp":
        raise UsageError(f"--method must be slerp or lerp, got {method!r}")
    path[:, 0], path[:, -1] = a[:, 0], b[:, 0]  # the ends exactly
    return path.to(device=device, dtype=dtype)


def pca(points: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Project ``(N, D)`` onto its first ``k`` principal components: (``(N, k)``, the fraction of
    variance each explains ``(k,)``). Signs are fixed so that each axis's largest loading is
    positive, for plots that do not flip between runs."""
    centred = points.double() - points.double().mean(0)
    _, s, vt = torch.linalg.svd(centred, full_matrices=False)
    axes = vt[:k]  # (k', D), k' = min(k, N, D)
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    axes = axes * signs.masked_fill(signs == 0, 1)
    var = s.pow(2)
    share = var[:k] / var.sum().clamp_min(1e-30)
    projected = centred @ axes.T
    missing = k - projected.shape[1]  # fewer points (or dimensions) than components
    if missing > 0:
        projected = torch.cat([projected, projected.new_zeros(len(points), missing)], 1)
        share = torch.cat([share, share.new_zeros(missing)])
    return projected, share


def normal_grid(n: int, extent: float = 0.0) -> torch.Tensor:
    """``n`` values spaced evenly in probability under N(0, 1): Phi^-1((i + 0.5) / n), the
    learned-manifold grid of Kingma & Welling (2013, figure 4). ``extent`` > 0: evenly
    spaced in [-extent, extent] instead."""
    if extent > 0:
        return torch.linspace(-extent, extent, n, dtype=torch.float64)
    p = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return torch.special.ndtri(p)
