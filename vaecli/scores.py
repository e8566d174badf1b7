"""Sample quality: FID, KID, precision and recall of a model's samples against real images, on
the features of a network (``vae evaluate --fid [--kid] [--precision-recall]``).

The formulas are torch-fidelity's (the ``scores`` extra), the reference implementations of
Heusel et al. 2017 (FID), Bińkowski et al. 2018 (KID) and Kynkäänniemi et al. 2019 (precision,
recall). The features come from one of:

- Inception-v3 with the FID weights (the network of papers' FID), read from a local safetensors
  file: ``--fid-weights PATH`` or ``$VAECLI_FID_WEIGHTS``. Nothing is downloaded, and no pickle
  is read: torch-fidelity's own network is built with the weights of that file.
- a scorer vae trains itself on a labelled split (``vae train-scorer``, ``vaecli.scorer``):
  fully offline, but its numbers are comparable only with other numbers of the same scorer.
- any module mapping images to features (the Python API; the tests use small random ones).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .errors import UsageError, first_line

__all__ = ["FeatureNet", "inception", "features_of", "compare", "WEIGHTS_ENV", "INSTALL"]

INSTALL = "pip install 'vaecli[scores]'"
WEIGHTS_ENV = "VAECLI_FID_WEIGHTS"
WEIGHTS_DOC = "docs/scores.md"
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # torch-fidelity's defaults (smaller sets: the set's size)
PR_NEIGHBOURS = 3


def require() -> Any:
    """torch-fidelity, or a one-line error naming the install."""
    try:
        import torch_fidelity
    except ImportError:
        raise UsageError(
            f"sample-quality scores need torch-fidelity: {INSTALL} (or pip install torch-fidelity)"
        ) from None
    return torch_fidelity


@dataclass
class FeatureNet:
    """A network that maps images ``(N, C, H, W)`` in [0, 1] to features ``(N, D)``."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    name: str  # how the scores say what they were measured with
    comparable: bool  # whether the numbers are those of papers (Inception FID)
    input_shape: Optional[tuple] = None  # the images it takes, where it takes one shape only
    device: torch.device = torch.device("cpu")


def inception(path: Optional[str], device: torch.device) -> FeatureNet:
    """torch-fidelity's Inception-v3 (the TF FID graph, 2048-d pool features) with the weights
    of a safetensors file: ``path``, else ``$VAECLI_FID_WEIGHTS``."""
    require()
    from unittest import mock

    from safetensors.torch import load_file
    from torch_fidelity import feature_extractor_inceptionv3 as module

    path = path or os.environ.get(WEIGHTS_ENV)
    if not path:
        raise UsageError(
            f"--fid needs the Inception weights as a safetensors file: give --fid-weights PATH or set {WEIGHTS_ENV} "
            f"({WEIGHTS_DOC} says where to get them), or score with a scorer of your own: vae train-scorer"
        )
    file = Path(path).expanduser()
    if not file.is_file():
        raise UsageError(f"--fid-weights {file}: no such file ({WEIGHTS_DOC} says where to get it)")
    try:
        state = load_file(str(file))
    except Exception as exc:
        raise UsageError(f"--fid-weights {file}: not a safetensors file ({first_line(exc)})") from None
    try:  # the network's own loader would download or unpickle: it is handed the file's tensors instead
        with mock.patch.object(module, "load_state_dict_from_url", lambda *args, **kwargs: state):
            net = module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    except RuntimeError as exc:
        raise UsageError(f"--fid-weights {file}: not the FID Inception-v3 weights ({first_line(exc)})") from None
    net = net.to(device)

    def forward(images: torch.Tensor) -> torch.Tensor:
        x = (images.clamp(0, 1) * 255).round().to(torch.uint8)  # what it was made for: 8-bit RGB
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        (features,) = net(x.to(device))
        return features

    return FeatureNet(forward, "Inception-v3 (FID weights)", True, None, device)


def module_net(net: torch.nn.Module, name: str, input_shape: Optional[tuple] = None) -> FeatureNet:
    """Any module from images in [0, 1] to features (flattened)."""
    device = next(net.parameters()).device
    return FeatureNet(lambda x: net(x.to(device)).flatten(1), name, False, input_shape, device)


@torch.inference_mode()
def features_of(
    net: FeatureNet,
    images: Callable[[int, int], torch.Tensor] | torch.Tensor,
    count: int,
    batch: int = 200,
    progress: Optional[Callable[[int], None]] = None,
) -> torch.Tensor:
    """The features of ``count`` images, float64 on the CPU. ``images``: a tensor in [0, 1]
    (uint8 is scaled), or ``images(start, stop)`` making them batch by batch (samples)."""
    out = []
    for start in range(0, count, batch):
        stop = min(count, start + batch)
        x = images(start, stop) if callable(images) else images[start:stop]
        if x.dtype == torch.uint8:
            x = x.float() / 255
        out.append(net.forward(x.float()).double().cpu())
        if progress is not None:
            progress(stop)
    return torch.cat(out)


def compare(
    real: torch.Tensor, fake: torch.Tensor, *, fid: bool = True, kid: bool = False, pr: bool = False, seed: int = 0
) -> dict:
    """The scores of features ``fake`` (generated) against ``real``: ``fid``; ``kid_mean``,
    ``kid_std``; ``precision``, ``recall``, ``f_score`` (as asked)."""
    require()
    if len(real) < 2 or len(fake) < 2:
        raise UsageError("sample-quality scores need at least 2 real and 2 generated images")
    result: dict = {}
    if fid:
        from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

        value = fid_statistics_to_metric(
            fid_features_to_statistics(real), fid_features_to_statistics(fake), verbose=False
        )
        result["fid"] = max(0.0, float(value["frechet_inception_distance"]))  # rounding can dip below 0
    if kid:
        from torch_fidelity.metric_kid import kid_features_to_metric

        size = min(KID_SUBSET_SIZE, len(real), len(fake))
        value = kid_features_to_metric(
            fake,
            real,
            kid_subsets=KID_SUBSETS,
            kid_subset_size=size,
            kid_kernel="poly",
            kid_kernel_poly_degree=3,
            kid_kernel_poly_gamma=None,
            kid_kernel_poly_coef0=1,
            rng_seed=seed % 2**32,  # numpy's RandomState takes 32 bits
            verbose=False,
        )
        result.update(
            kid_mean=float(value["kernel_inception_distance_mean"]),
            kid_std=float(value["kernel_inception_distance_std"]),
            kid_subset_size=size,
        )
    if pr:
        from torch_fidelity.metric_prc import prc_features_to_metric

        value = prc_features_to_metric(
            fake.float(),
            real.float(),
            prc_neighborhood=PR_NEIGHBOURS,
            prc_batch_size=10000,
            save_cpu_ram=False,
            verbose=False,
        )
        result.update(
            precision=float(value["precision"]), recall=float(value["recall"]), f_score=float(value["f_score"])
        )
    return result
