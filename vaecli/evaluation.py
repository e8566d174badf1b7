"""Numbers of a trained model, in nats per example: the negative ELBO and its parts, the
importance-weighted NLL (Burda et al. 2015), bits per dimension and active units. The test pass
of every training epoch and ``vae evaluate`` go through ``evaluate``."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

from .model import VAE, accumulator_dtype, gaussian_noise

__all__ = ["evaluate", "test_pass", "encode_all", "importance_sampled", "EVAL_SEED", "ACTIVE_UNIT_THRESHOLD"]

EVAL_SEED = 1234  # evaluation noise: the test pass of every training epoch and `vae evaluate` draw the same
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2015): a unit is active when Cov_x E_q[z_u] > 0.01


@torch.no_grad()
def importance_sampled(
    model: VAE,
    x: torch.Tensor,
    k: int,
    generator: Optional[torch.Generator] = None,
    chunk: int = 0,
    labels: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The importance-weighted bound of Burda et al. (2015) with ``k`` samples z_i ~ q(z|x):

        log p(x) >= log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x),

    tighter as k grows, with the family's weights (``VAE.log_weights``). Samples are drawn
    ``chunk`` at a time (all at once by default), so that k = 5000 fits in memory. Returns (the
    bound, the mean of log p(x|z_i), the mean of the log weights: the ELBO), each ``(B,)`` in
    nats, for a batch ``x`` of preprocessed floats.
    """
    posterior = model.posterior(x, labels)  # (B, D)
    b = x.shape[0]
    chunk = chunk or k
    acc = accumulator_dtype(x.device)
    total = torch.full((b,), -math.inf, device=x.device, dtype=acc)
    recon = torch.zeros(b, device=x.device, dtype=acc)
    elbo = torch.zeros(b, device=x.device, dtype=acc)
    for start in range(0, k, chunk):
        s = min(chunk, k - start)
        log_w, log_px = model.log_weights(x, labels, s, generator, posterior)  # (B, S), (B, S)
        total = torch.logaddexp(total, torch.logsumexp(log_w.to(acc), dim=1))
        recon += log_px.to(acc).sum(1)
        elbo += log_w.to(acc).sum(1)
    return total - math.log(k), recon / k, elbo / k


def _batch(labels: Optional[torch.Tensor], start: int, size: int) -> Optional[torch.Tensor]:
    return None if labels is None else labels[start : start + size]


@torch.no_grad()
def encode_all(
    model: VAE,
    images: torch.Tensor,
    batch_size: int = 1000,
    progress: Optional[Callable[[int], None]] = None,
    labels: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior (mean, logvar) ``(N, D)`` of many uint8 images, in batches, on the CPU."""
    model.eval()
    means, logvars = [], []
    for start in range(0, len(images), batch_size):
        mean, logvar = model.posterior(
            model.prepare(images[start : start + batch_size]), _batch(labels, start, batch_size)
        )
        means.append(mean.float().cpu())
        logvars.append(logvar.float().cpu())
        if progress is not None:
            progress(min(len(images), start + batch_size))
    return torch.cat(means), torch.cat(logvars)


@torch.no_grad()
def evaluate(
    model: VAE,
    images: torch.Tensor,
    iw_samples: int = 1,
    batch_size: int = 0,
    seed: int = EVAL_SEED,
    progress: Optional[Callable[[int], None]] = None,
    labels: Optional[torch.Tensor] = None,
    per_example: bool = False,
) -> dict:
    """Test-set numbers of a trained model, in nats per example (Burda et al. 2015, section 5):

    ``nelbo`` the negative ELBO (reconstruction averaged over the ``iw_samples`` draws, KL in
    closed form) with its parts ``recon`` and ``kl``; ``nll`` the importance-weighted estimate of
    -log p(x) with ``iw_samples`` samples; ``bits_per_dim`` = nll / (pixels * ln 2);
    ``active_units``: latent dimensions whose posterior mean varies across the data
    (Cov_x E_q[z_u] > 0.01); ``kl_per_dim`` (D,). A plain auto-encoder gets ``recon`` only.
    ``progress(n)`` is called with the number of images done. With ``iw_samples=1`` and the
    default seed this is the test pass of each training epoch. Sums stay on the device until
    the end (no host synchronisation per batch, except for ``progress``).

    Rows (a likelihood with a ``layout``): ``columns``, each column's reconstruction term
    E_q[-log p(x_j|z)] (one posterior draw), name -> nats. ``per_example``: also
    ``per_example`` = {"nll": (N,), "nelbo": (N,), and each column's term}, tensors on the CPU
    (an anomaly score per row: its NLL).
    """
    was_training = model.training
    model.eval()
    device = model.device
    gen = torch.Generator(device=device).manual_seed(seed)
    n = len(images)
    pixels = math.prod(model.input_shape)
    k = max(1, int(iw_samples))
    # decoder rows per pass: about 64 MB per float tensor on a GPU; 8 MB on the CPU, where the
    # likelihood's elementwise passes then stay in cache (k=5000 on MNIST: 2.2x faster than 64 MB)
    rows = max(1, (2**21 if torch.device(device).type == "cpu" else 2**24) // pixels)
    batch = batch_size or max(1, min(1000, rows // k))
    chunk = max(1, min(k, rows // batch))
    acc = accumulator_dtype(device)
    nll = torch.zeros((), device=device, dtype=acc)
    recon = torch.zeros((), device=device, dtype=acc)
    elbo = torch.zeros((), device=device, dtype=acc)
    kl_dims: Optional[torch.Tensor] = torch.zeros(model.latent_dim, device=device, dtype=acc)
    terms = torch.zeros(len(model.TERMS), device=device, dtype=acc)  # a family without a likelihood
    # one buffer, not a list of small tensors that would pin the heap between the large ones
    means = torch.empty((n, model.latent_dim), device=device)
    layout: Any = getattr(model.likelihood, "layout", None)
    columns = None if layout is None else torch.zeros(len(layout.columns), device=device, dtype=acc)
    each: dict = {}  # per example: name -> (n,)
    if per_example and model.HAS_LIKELIHOOD:
        each = {"nll": torch.empty(n, device=device, dtype=acc), "nelbo": torch.empty(n, device=device, dtype=acc)}
        each.update({c.name: torch.empty(n, device=device, dtype=acc) for c in (layout.columns if layout else [])})
    for start in range(0, n, batch):
        x = model.prepare(images[start : start + batch])
        y = _batch(labels, start, batch)
        mean, logvar = model.posterior(x, y)
        means[start : start + len(mean)] = mean
        if not model.HAS_LIKELIHOOD:
            found = model.test_terms(x, y, gen)
            terms += torch.stack([found[t].to(acc).sum() for t in model.TERMS])
        else:
            bound, log_px, log_w = importance_sampled(model, x, k, gen, chunk, y)
            nll -= bound.sum()
            recon -= log_px.sum()
            elbo += log_w.sum()
            closed = model.kl_dims(mean, logvar)
            kl_dims = None if closed is None or kl_dims is None else kl_dims + closed.to(acc).sum(0)
            sel = slice(start, start + len(x))
            if columns is not None:
                z = mean + torch.exp(0.5 * logvar) * gaussian_noise(mean, gen)
                found_c = model.likelihood.column_log_probs(x, model.likelihood_params(z, y))
                assert found_c is not None
                terms_c = -found_c.to(acc)  # (B, C)
                columns += terms_c.sum(0)
                for j, c in enumerate(layout.columns if each else []):
                    each[c.name][sel] = terms_c[:, j]
            if each:
                each["nll"][sel] = -bound
                each["nelbo"][sel] = -log_w
        if progress is not None:
            progress(min(n, start + batch))
    model.train(was_training)
    result: dict[str, Any] = {"kind": model.kind, "examples": n, "pixels": pixels}
    activity = means.to(acc).var(dim=0, unbiased=False)  # Cov_x E_q[z_u]
    if not model.HAS_LIKELIHOOD:  # what it has: its terms, and how many units it uses
        found = dict(zip(model.TERMS, (terms / n).tolist()))
        result.update(**model.summary(found), **found)
        result.update(active_units=int((activity > ACTIVE_UNIT_THRESHOLD).sum().item()), latent_dim=model.latent_dim)
        return result
    # the KL in closed form where the family has one (the sampled one otherwise)
    kl = kl_dims.sum().item() / n if kl_dims is not None else (-elbo.item() - recon.item()) / n
    result.update(
        recon=recon.item() / n,
        nelbo=recon.item() / n + kl,
        kl=kl,
        nll=nll.item() / n,
        iw_samples=k,
        bits_per_dim=nll.item() / n / (pixels * math.log(2)),
        active_units=int((activity > ACTIVE_UNIT_THRESHOLD).sum().item()),
        latent_dim=model.latent_dim,
        activity_per_dim=activity.tolist(),
    )
    if kl_dims is not None:
        result["kl_per_dim"] = (kl_dims / n).tolist()
    if columns is not None:
        result["columns"] = dict(zip(layout.names, (columns / n).tolist()))
        result["pixels"] = len(layout.columns)
        del result["bits_per_dim"]  # bits per pixel: for images
    if each:
        result["per_example"] = {k: v.cpu() for k, v in each.items()}
    return result


def test_pass(model: VAE, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> dict:
    """The test pass of an epoch, nats per example: the negative ELBO (one sample, the same
    noise every epoch, so that epochs compare) and its parts (``vae evaluate -k 1`` gives the
    same), or, for a family without a likelihood, its terms."""
    result = evaluate(model, images, iw_samples=1, labels=labels)
    if not model.HAS_LIKELIHOOD:
        return {
            k: v for k, v in result.items() if k in model.TERMS or k in model.summary(dict.fromkeys(model.TERMS, 0.0))
        }
    return {"nelbo": result["nelbo"], "recon": result["recon"], "kl": result["kl"]}
