"""Where the mathematics of rows is exact, vae must reach it.

1. Factor analysis. A linear decoder with a Gaussian likelihood of learned diagonal noise is
   factor analysis, and its optimal ELBO is the exact log-likelihood (the posterior is Gaussian
   and a linear encoder can hold it; Lucas et al. 2019). On rows drawn from a factor-analysis
   model, vae's test -ELBO and IWAE NLL (``vae train tensor:... --arch-option hidden=``) are set
   beside scikit-learn's ``FactorAnalysis`` exact test log-likelihood.
2. Negative binomial counts. On counts drawn from a known negative binomial model whose mean
   depends on a 2-dimensional latent code, the dispersion vae fits for each feature is set beside
   the true one.

    python benchmarks/rows_exactness.py [--epochs 200]

Prints a table and writes benchmarks/rows_exactness.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def factor_analysis(folder: Path, epochs: int, seed: int = 0) -> dict:
    from sklearn.decomposition import FactorAnalysis

    rng = np.random.default_rng(seed)
    d, k, n_train, n_test = 12, 3, 20_000, 5_000
    w = rng.normal(0, 1, (d, k)) * rng.uniform(0.5, 2, d)[:, None]
    mu = rng.normal(0, 5, d)
    psi = rng.uniform(0.1, 1.0, d)  # the noise variance of each feature
    z = rng.normal(size=(n_train + n_test, k))
    x = (z @ w.T + mu + rng.normal(size=(n_train + n_test, d)) * np.sqrt(psi)).astype(np.float32)
    np.savez(folder / "fa.npz", x_train=x[:n_train], x_test=x[n_train:])
    fa = FactorAnalysis(n_components=k, random_state=0).fit(x[:n_train].astype(np.float64))
    exact = -float(fa.score(x[n_train:].astype(np.float64)))  # -log p(x) per row, nats
    truth_model = FactorAnalysis(n_components=k)
    truth_model.components_, truth_model.noise_variance_, truth_model.mean_ = w.T, psi, mu
    true_nll = -float(truth_model.score(x[n_train:].astype(np.float64)))
    ckpt = folder / "fa.safetensors"
    start = time.perf_counter()
    _train(folder / "fa.npz", ckpt, epochs, "--arch-option", "hidden=", "-z", str(k))
    seconds = time.perf_counter() - start
    got = json.loads(_vae("evaluate", str(ckpt), "-k", "1000", "--json"))
    return {
        "rows": [n_train, n_test],
        "features": d,
        "factors": k,
        "epochs": epochs,
        "train_seconds": round(seconds, 1),
        "sklearn_exact_nll": exact,
        "true_model_nll": true_nll,
        "vae_nelbo": got["nelbo"],
        "vae_nll_k1000": got["nll"],
        "nelbo_gap_percent": 100 * (got["nelbo"] - exact) / abs(exact),
    }


def negative_binomial(folder: Path, epochs: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    d, k, n = 8, 2, 25_000
    theta = np.array([0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 1.5, 4.0])
    w = rng.normal(0, 0.6, (d, k))
    b = rng.uniform(0.5, 2.5, d)
    z = rng.normal(size=(n, k))
    mean = np.exp(z @ w.T + b)
    counts = rng.poisson(rng.gamma(theta, mean / theta))  # NB(mean, theta) as a gamma-Poisson mixture
    np.save(folder / "counts.npy", counts.astype(np.int64))
    ckpt = folder / "nb.safetensors"
    _train(folder / "counts.npy", ckpt, epochs, "-l", "negbin", "-z", str(k), "--arch-option", "hidden=64")
    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as f:
        fitted = f.get_tensor("model.likelihood.log_theta").exp().numpy()
    error = np.abs(fitted - theta) / theta
    return {
        "rows": n,
        "features": d,
        "epochs": epochs,
        "true_theta": theta.tolist(),
        "fitted_theta": [round(float(t), 3) for t in fitted],
        "relative_error": [round(float(e), 3) for e in error],
        "largest_relative_error": float(error.max()),
    }


def _vae(*args: str) -> str:
    return subprocess.run(["vae", *args], check=True, capture_output=True, text=True).stdout


def _train(data: Path, ckpt: Path, epochs: int, *model: str) -> None:
    """``vae train tensor:DATA`` with the ``model`` options, the same optimiser for every check."""
    common = ["-e", str(epochs), "-b", "256", "--lr", "3e-3", "--lr-schedule", "cosine"]
    _vae("train", f"tensor:{data}", *model, *common, "-o", str(ckpt), "--force", "--data-dir", str(data.parent))


def main() -> None:
    import sys

    sys.path.insert(0, str(HERE))
    from train_speed import keep, rendered, table_options

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=200)
    table_options(parser, "rows_exactness")
    args = parser.parse_args()

    if rendered(args, TITLE, table_lines):
        return
    with tempfile.TemporaryDirectory() as tmp:
        fa = factor_analysis(Path(tmp), args.epochs)
        nb = negative_binomial(Path(tmp), args.epochs)
    results = {"factor_analysis": fa, "negative_binomial": nb}
    keep(args, TITLE, table_lines, results)


TITLE = "## Rows where the mathematics is exact: factor analysis and negative binomial counts, CPU"


def table_lines(results: dict) -> list:
    fa, nb = results["factor_analysis"], results["negative_binomial"]
    lines = [
        f"Factor analysis: {fa['features']} features, {fa['factors']} factors, {fa['rows'][0]:,} training and "
        f"{fa['rows'][1]:,} test rows; vae with a linear encoder and decoder (`--arch-option hidden=`), a Gaussian "
        f"of learned sigma per feature, {fa['epochs']} epochs. Test rows, nats per row:",
        "",
        "| model | -log p(x) |",
        "| --- | --- |",
        f"| scikit-learn FactorAnalysis, exact | {fa['sklearn_exact_nll']:.4f} |",
        f"| the generating model, exact | {fa['true_model_nll']:.4f} |",
        f"| vae, -ELBO | {fa['vae_nelbo']:.4f} ({fa['nelbo_gap_percent']:+.3f}%) |",
        f"| vae, NLL (IWAE, k = 1000) | {fa['vae_nll_k1000']:.4f} |",
        "",
        f"Negative binomial: {nb['rows']:,} rows of {nb['features']} counts whose mean depends on a 2-D latent code, "
        f"`vae train tensor:counts.npy -l negbin -z 2`, {nb['epochs']} epochs: the inverse dispersion theta of "
        "each feature.",
        "",
        "| | " + " | ".join(f"x{j}" for j in range(nb["features"])) + " |",
        "| --- |" + " --- |" * nb["features"],
        "| true | " + " | ".join(f"{t:.2f}" for t in nb["true_theta"]) + " |",
        "| fitted | " + " | ".join(f"{t:.2f}" for t in nb["fitted_theta"]) + " |",
        "| error | " + " | ".join(f"{100 * e:.0f}%" for e in nb["relative_error"]) + " |",
        "",
        f"Command: `python benchmarks/rows_exactness.py --epochs {fa['epochs']} --write`.",
    ]
    return lines


if __name__ == "__main__":
    main()
